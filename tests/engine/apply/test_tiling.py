"""Tile geometry without a model: coverage, weights, exact stitching, streaming by bands."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_imc_vae.engine.apply.tiling import BandStitcher, TileGrid, reflect_index, stitch, tile_window

SHAPES = [(1, 1), (3, 17), (8, 8), (61, 47), (2, 1), (1, 9)]


def _coverage(grid: TileGrid) -> np.ndarray:
    """Number of tiles covering each image pixel, computed the slow way."""
    y, x = grid.shape
    ny, nx = grid.n_tiles
    cover = np.zeros((y, x), dtype=int)
    for i in range(ny):
        for j in range(nx):
            y0, x0 = i * grid.stride - grid.pad_before, j * grid.stride - grid.pad_before
            cover[max(y0, 0) : max(y0 + grid.patch_size, 0), max(x0, 0) : max(x0 + grid.patch_size, 0)] += 1
    return cover


@pytest.mark.parametrize("size", [2, 3, 5, 8])
@pytest.mark.parametrize("pad", [0, 1, 4, 7, 20])
def test_reflect_index_matches_numpy_reflect(size, pad):
    a = np.arange(size)
    expected = np.pad(a, pad, mode="reflect")
    assert np.array_equal(reflect_index(np.arange(-pad, size + pad), size), expected)


def test_reflect_index_one_pixel_repeats_it():
    assert np.array_equal(reflect_index([-5, 0, 3], 1), [0, 0, 0])


def test_window_is_smooth_symmetric_and_never_zero():
    for p in (1, 2, 7, 8, 16):
        w = tile_window(p)
        assert w.shape == (p, p)
        assert w.min() > 0
        assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    w = tile_window(8)
    # windows at stride P/2 sum to 1: no ripple in the interior
    assert np.allclose(w[:4, :4] + w[4:, :4] + w[:4, 4:] + w[4:, 4:], 1.0)
    assert w[0, 0] < 0.01 * w.max()  # tapers towards the tile corners


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("patch,stride", [(8, None), (8, 3), (8, 8), (5, 2), (4, 1), (1, 1)])
def test_every_pixel_covered_and_weights_positive(shape, patch, stride):
    grid = TileGrid.create(shape, patch, stride)
    assert _coverage(grid).min() >= 1
    assert grid.weight_sums(0).min() > 0 and grid.weight_sums(1).min() > 0
    ny, nx = grid.n_tiles
    # the stride grid spans the image: tile centres reach the last stride step
    assert ny * grid.stride >= shape[0] and nx * grid.stride >= shape[1]
    assert grid.padded_shape == ((ny - 1) * grid.stride + patch, (nx - 1) * grid.stride + patch)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("patch,stride", [(8, None), (8, 3), (7, 5), (8, 8), (4, 1)])
def test_identity_stitch_returns_image(shape, patch, stride, rng):
    image = rng.normal(size=(3, *shape)).astype(np.float32)
    grid = TileGrid.create(shape, patch, stride)
    tiles = grid.extract(image)
    assert tiles.shape == (grid.total, 3, patch, patch)
    assert np.allclose(stitch(tiles, grid), image, atol=1e-5)


def test_tile_is_centred_on_stride_grid(rng):
    image = rng.normal(size=(1, 20, 30)).astype(np.float32)
    grid = TileGrid.create((20, 30), 8, 4)
    tiles = grid.extract(image).reshape(*grid.n_tiles, 1, 8, 8)
    # tile (i, j) has image pixel (i*S, j*S) at offset P//2
    assert tiles[2, 3, 0, 4, 4] == image[0, 8, 12]
    assert tiles[0, 0, 0, 4, 4] == image[0, 0, 0]
    assert tiles[0, 0, 0, 3, 4] == image[0, 1, 0]  # reflected row -1 reads row 1


def test_tiles_of_tiny_image_reflect():
    image = np.arange(3, dtype=np.float32).reshape(1, 1, 3)
    grid = TileGrid.create((1, 3), 4, 2)
    tiles = grid.extract(image)
    assert np.array_equal(tiles[0, 0, 0], [2, 1, 0, 1])  # x = -2..1 reflected on 0 1 2
    assert np.all(tiles[0, 0] == tiles[0, 0, :1])  # a 1-px axis repeats its pixel


@pytest.mark.parametrize("band", [1, 2, 5])
@pytest.mark.parametrize("stride", [3, 4, 2])  # strided adds, and q×q block adds when S divides P
def test_band_streaming_equals_whole(band, stride, rng):
    shape, patch = (37, 23), 8
    image = rng.normal(size=(2, *shape)).astype(np.float32)
    grid = TileGrid.create(shape, patch, stride)
    tiles = grid.extract(image) * 1.5 + 0.25  # a non-identity "model"
    whole = stitch(tiles, grid)
    stitcher = BandStitcher(grid, 2)
    out = np.full(whole.shape, np.nan, dtype=np.float32)
    ny, nx = grid.n_tiles
    rows_seen = []
    for i0 in range(0, ny, band):
        i1 = min(ny, i0 + band)
        band_tiles = grid.extract(image, i0, i1) * 1.5 + 0.25
        assert np.array_equal(band_tiles, tiles[i0 * nx : i1 * nx])
        y0, y1, rows = stitcher.add(i0, i1, band_tiles)
        out[:, y0:y1] = rows
        rows_seen.extend(range(y0, y1))
    assert rows_seen == list(range(shape[0]))  # each row finished exactly once, in order
    assert np.allclose(out, whole, atol=1e-6)
    assert np.allclose(out, image * 1.5 + 0.25, atol=1e-5)


def test_bands_must_be_consecutive(rng):
    grid = TileGrid.create((20, 20), 8, 4)
    st_ = BandStitcher(grid, 1)
    tiles = grid.extract(rng.normal(size=(1, 20, 20)), 1, 2)
    with pytest.raises(ValueError, match="consecutive"):
        st_.add(1, 2, tiles)
    with pytest.raises(ValueError, match="tiles must have shape"):
        st_.add(0, 1, tiles[:, :, :4])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(shape=(0, 5), patch_size=8), "shape"),
        (dict(shape=(5,), patch_size=8), "shape"),
        (dict(shape=(5, 5), patch_size=0), "patch_size"),
        (dict(shape=(5, 5), patch_size=8, stride=9), "stride"),
        (dict(shape=(5, 5), patch_size=8, stride=0), "stride"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TileGrid.create(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    y=st.integers(1, 40),
    x=st.integers(1, 40),
    patch=st.integers(1, 9),
    stride_frac=st.floats(0.01, 1.0),
)
def test_identity_stitch_property(y, x, patch, stride_frac):
    stride = max(1, round(patch * stride_frac))
    image = np.random.default_rng(y * 100 + x).normal(size=(2, y, x)).astype(np.float32)
    grid = TileGrid.create((y, x), patch, stride)
    assert _coverage(grid).min() >= 1
    assert np.allclose(stitch(grid.extract(image), grid), image, atol=1e-5)
