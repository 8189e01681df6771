"""Single transforms on small hand-computed arrays."""

import math

import numpy as np
import pytest

from napari_imc_vae.preprocessing import (
    arcsinh_transform,
    clip_percentile,
    filter_hot_pixels,
    inverse_arcsinh,
    percentile_per_channel,
)

# corner (0,0) and (2,2) are hot only under scipy's "mirror" border: "nearest" and
# "reflect" would count the pixel as its own neighbour, "wrap" would see the other corner
GRID = np.array([[100, 10, 0], [20, 30, 0], [0, 0, 90]], dtype=np.float32)


def test_hot_pixels_hand_computed_mirror_border():
    out = filter_hot_pixels(GRID[None], 50)
    expected = np.array([[30, 10, 0], [20, 30, 0], [0, 0, 30]], dtype=np.float32)
    np.testing.assert_array_equal(out[0], expected)
    assert out.dtype == np.float32 and out.shape == (1, 3, 3)


def test_hot_pixels_threshold_is_strict():
    # (2,2): 90 - 30 = 60 is not > 60; (0,0): 100 - 30 = 70 is
    out = filter_hot_pixels(GRID[None], 60)[0]
    assert out[0, 0] == 30 and out[2, 2] == 90


def test_hot_pixels_interior_and_channels_independent():
    data = np.zeros((2, 4, 5), dtype=np.float32)
    data[0, 2, 2] = 100  # 100 - 40 > 50
    data[0, 1, 3] = 40  # below threshold
    data[1, 2, 2] = 500  # neighbour of 600 in the same channel, so it is not hot ...
    data[1, 2, 3] = 600  # ... and 600 - 500 = 100 > 50: replaced by 500
    before = data.copy()
    out = filter_hot_pixels(data, 50)
    assert out[0, 2, 2] == 40  # max of its neighbours is the 40 at (1, 3)
    assert out[0, 1, 3] == 40
    assert out[1, 2, 2] == 500 and out[1, 2, 3] == 500
    np.testing.assert_array_equal(data, before)  # input untouched


def test_hot_pixels_keep_nan_and_ignore_nan_neighbours():
    data = np.zeros((1, 3, 3), dtype=np.float32)
    data[0, 1, 1] = 100
    data[0, 0, 1] = np.nan
    out = filter_hot_pixels(data, 50)[0]
    assert math.isnan(out[0, 1])
    assert out[1, 1] == 0


def test_hot_pixels_single_row_and_pixel_match_scipy_semantics():
    # a length-1 axis mirrors onto itself, so a pixel is its own neighbour: nothing is hot
    row = np.array([[[0, 100, 0, 0]]], dtype=np.float32)
    np.testing.assert_array_equal(filter_hot_pixels(row, 50), row)
    np.testing.assert_array_equal(filter_hot_pixels(np.full((1, 1, 1), 9.0), 0), [[[9.0]]])


@pytest.mark.parametrize("bad, match", [(-1, "threshold must be >= 0"), (float("nan"), "finite")])
def test_hot_pixels_bad_threshold(bad, match):
    with pytest.raises(ValueError, match=match):
        filter_hot_pixels(np.zeros((1, 3, 3)), bad)


def test_hot_pixels_bad_shape():
    with pytest.raises(ValueError, match=r"shape \(C, Y, X\), got shape \(3, 3\)"):
        filter_hot_pixels(np.zeros((3, 3)), 50)


def test_arcsinh_values_and_inverse():
    data = np.array([0, 5, 10, -5], dtype=np.float32).reshape(1, 1, 4)
    out = arcsinh_transform(data, 5)
    np.testing.assert_allclose(out.ravel(), [0, 0.8813736, 1.4436355, -0.8813736], rtol=1e-6)
    np.testing.assert_allclose(inverse_arcsinh(out, 5), data, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -1.0])
def test_arcsinh_bad_cofactor(bad):
    with pytest.raises(ValueError, match=rf"cofactor must be > 0 .*got {float(bad)}"):
        arcsinh_transform(np.zeros((1, 2, 2)), bad)


def test_arcsinh_cofactor_type():
    with pytest.raises(TypeError, match="cofactor must be a real number"):
        arcsinh_transform(np.zeros((1, 2, 2)), "5")


def test_clip_percentile_values():
    data = np.stack([np.arange(1, 101, dtype=np.float32).reshape(10, 10),
                     np.zeros((10, 10), dtype=np.float32)])
    data[0, 0, 0] = np.nan  # left out of the percentile, kept in the output
    assert percentile_per_channel(data, 50) == [pytest.approx(51.0), 0.0]
    out = clip_percentile(data, 50)
    assert np.nanmax(out[0]) == pytest.approx(51.0)
    assert math.isnan(out[0, 0, 0])
    np.testing.assert_array_equal(out[0, 5:], np.full((5, 10), 51.0, dtype=np.float32))
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_array_equal(clip_percentile(data, 100), data)


def test_clip_percentile_precomputed_and_empty_channel():
    data = np.full((2, 2, 2), np.nan, dtype=np.float32)
    data[0] = [[1, 2], [3, np.inf]]
    assert percentile_per_channel(data, 99)[1] is None
    out = clip_percentile(data, 99, upper=[2.5, None])
    np.testing.assert_array_equal(out[0], [[1, 2], [2.5, 2.5]])
    assert np.isnan(out[1]).all()
    with pytest.raises(ValueError, match=r"one limit per channel \(2\), got 1"):
        clip_percentile(data, 99, upper=[1.0])


@pytest.mark.parametrize("bad", [0, -5, 100.5])
def test_clip_bad_percentile(bad):
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
        clip_percentile(np.zeros((1, 2, 2)), bad)
