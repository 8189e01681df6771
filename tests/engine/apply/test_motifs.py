"""Tissue motifs: scikit-learn k-means on latent vectors, ordered by size, seeded."""

import numpy as np
import pytest

from napari_imc_vae.engine.apply.motifs import MotifModel, motif_table, upsample_grid


@pytest.fixture
def clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat([0, 1, 2], [50, 30, 20])
    return centers, truth, (centers[truth] + rng.normal(0, 0.5, (100, 2))).astype(np.float32)


def test_motifs_find_separated_clusters_largest_first(clusters):
    centers, truth, points = clusters
    motifs = MotifModel.fit(points, 3, seed=1)
    labels = motifs.assign(points)
    assert np.bincount(labels).tolist() == [0, 50, 30, 20]  # 1 = largest, 0 unused
    for j in range(3):
        assert len(set(labels[truth == j])) == 1
    np.testing.assert_allclose(motifs.centers, centers, atol=0.5)


def test_motifs_are_seeded_and_survive_a_model_file_round_trip(clusters):
    _, _, points = clusters
    a, b = MotifModel.fit(points, 3, seed=4), MotifModel.fit(points, 3, seed=4)
    np.testing.assert_array_equal(a.centers, b.centers)
    again = MotifModel.from_state(a.to_state())
    np.testing.assert_array_equal(again.assign(points), a.assign(points))


def test_motifs_on_a_latent_grid_and_bad_input(clusters):
    _, _, points = clusters
    motifs = MotifModel.fit(points, 3)
    grid = points.T.reshape(2, 10, 10)
    assert motifs.assign(grid).shape == (10, 10)
    assert MotifModel.fit(points[:2], 5).k <= 2  # k > distinct points: at most that many
    with pytest.raises(ValueError, match="number of motifs must be"):
        MotifModel.fit(points, 0)
    with pytest.raises(ValueError, match="no finite latent vector"):
        MotifModel.fit(np.full((4, 2), np.nan), 2)
    with pytest.raises(ValueError, match="dimensions"):
        motifs.assign(np.zeros((5, 3)))


def test_upsample_grid_takes_the_nearest_tile_centre():
    grid = np.arange(6).reshape(2, 3)
    up = upsample_grid(grid, 4, (7, 11))
    assert up.shape == (7, 11) and up[0, 0] == 0 and up[6, 10] == 5 and up[1, 1] == 0 and up[1, 2] == 1
    assert up[2, 0] == 3


def test_motif_table_counts_pixels_and_means_raw_intensity():
    labels = np.array([[1, 2], [2, 2]], dtype=np.int32)  # stride 2 over a 4x4 image
    raw = np.zeros((2, 4, 4), np.float32)
    raw[0, :, :] = 1.0
    raw[1, 0, 0] = 8.0  # the one pixel nearest cell (0, 0), motif 1 (upsample_grid rounds y/2)
    raw[1, 3, 3] = np.nan  # left out of the means
    raw[1, 2, 2] = 3.0
    rows = motif_table(labels, 2, raw, ["A", "B"], 2)
    up = upsample_grid(labels, 2, (4, 4))
    assert [r["pixels"] for r in rows] == [int((up == 1).sum()), int((up == 2).sum())]
    assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["A"] == pytest.approx(1.0)
    assert rows[0]["pixels"] == 1 and rows[0]["B"] == pytest.approx(8.0)
    assert rows[1]["B"] == pytest.approx(3.0 / (rows[1]["pixels"] - 1))


def test_an_empty_motif_is_not_listed():
    labels = np.array([[1, 3], [3, 3]], dtype=np.int32)  # motif 2 labels no cell: k-means left it empty
    raw = np.ones((1, 4, 4), np.float32)
    rows = motif_table(labels, 2, raw, ["A"], 3)
    assert [r["motif"] for r in rows] == [1, 3] and all(r["pixels"] > 0 for r in rows)
    assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
