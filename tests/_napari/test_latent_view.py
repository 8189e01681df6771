"""The latent map shown as the RGB of its first three principal components (numpy, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_imc_vae._napari.latent_view import latent_pca_rgb, latent_rgb_layer


def _latent_with_regions(rng, d=8, ny=30, nx=40):
    """Left half, right half and a central square, each with its own latent code, plus noise."""
    codes = rng.normal(0, 3, (3, d))
    region = np.zeros((ny, nx), int)
    region[:, nx // 2:] = 1
    region[10:20, 15:25] = 2
    z = codes[region].transpose(2, 0, 1) + rng.normal(0, 0.1, (d, ny, nx))
    return z.astype(np.float32), region


def test_regions_of_one_code_get_one_colour_and_different_codes_differ(rng):
    z, region = _latent_with_regions(rng)
    rgb, explained = latent_pca_rgb(z)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    # three codes span two directions: the third component is noise and explains little
    assert explained[0] + explained[1] > 0.99 and explained[2] < 0.01
    means = np.array([rgb[region == r, :2].mean(0) for r in range(3)])
    spread = max(rgb[region == r, :2].std(0).max() for r in range(3))
    gaps = [np.abs(means[a] - means[b]).max() for a, b in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 10 * spread, (gaps, spread)


def test_the_rare_region_is_bright_whatever_the_sign_of_the_latent_axes(rng):
    z, region = _latent_with_regions(rng)
    signs = np.array([-1, 1, -1, 1, 1, -1, 1, 1], np.float32)[:, None, None]
    rgb = latent_pca_rgb(z)[0]
    np.testing.assert_allclose(rgb[..., :2], latent_pca_rgb(z * signs)[0][..., :2], atol=1e-5)
    np.testing.assert_allclose(rgb[..., :2], latent_pca_rgb(-z)[0][..., :2], atol=1e-5)
    # 1 component: the small square (100 of 1,200 cells) at the bright end when it is the tail
    one = np.where(region == 2, 5.0, 0.0)[None] + rng.normal(0, 0.1, (1, 30, 40))
    for sign in (1, -1):
        bright = latent_pca_rgb((sign * one).astype(np.float32))[0][..., 0]
        assert bright[region == 2].mean() > 0.9 and bright[region != 2].mean() < 0.1


def test_non_finite_cells_are_black_and_do_not_shift_the_rest(rng):
    z, _ = _latent_with_regions(rng)
    clean, _ = latent_pca_rgb(z)
    z[3, 0, 0], z[0, 5, 7], z[1, 29, 39] = np.nan, np.inf, -np.inf
    rgb, _ = latent_pca_rgb(z)
    for y, x in ((0, 0), (5, 7), (29, 39)):
        assert (rgb[y, x] == 0).all()
    mask = np.ones((30, 40), bool)
    mask[0, 0] = mask[5, 7] = mask[29, 39] = False
    assert np.abs(rgb[mask] - clean[mask]).max() < 0.05


def test_fewer_than_three_dims_and_degenerate_maps():
    one = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    rgb, explained = latent_pca_rgb(one)
    assert (rgb[..., 1:] == 0).all() and explained.tolist() == [1.0, 0.0, 0.0]
    assert rgb[0, 0, 0] == 0 and rgb[2, 3, 0] == 1
    rgb, explained = latent_pca_rgb(np.full((4, 3, 3), np.nan, np.float32))
    assert (rgb == 0).all() and (explained == 0).all()
    with pytest.raises(ValueError, match=r"shape \(D, ny, nx\)"):
        latent_pca_rgb(np.zeros((3, 3)))


def test_layer_tuple_is_2d_on_the_tile_grid_and_keeps_the_full_map(rng):
    z, _ = _latent_with_regions(rng)
    kwargs = {"name": "img_latent", "scale": (1.0, 4.0, 4.0), "translate": (0.0, 2.0, 3.0),
              "colormap": "viridis", "contrast_limits": (-1.0, 1.0), "visible": False,
              "metadata": {"imc": {"kind": "latent", "image": "img_latent"}}}
    data, out, kind = latent_rgb_layer((z, kwargs, "image"))
    assert kind == "image" and data.shape == (30, 40, 3) and out["rgb"] is True
    assert out["scale"] == (4.0, 4.0) and out["translate"] == (2.0, 3.0)
    assert out["name"] == "img_latent" and out["visible"] is False and "colormap" not in out
    info = out["metadata"]["imc"]
    assert info["kind"] == "latent" and info["latent"] is z
    assert len(info["latent_rgb"]["explained_variance"]) == 3
    assert "latent" not in kwargs["metadata"]["imc"]  # the input tuple is left as it was
