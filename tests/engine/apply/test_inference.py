"""Whole-image reconstruction with stand-in models: shapes, exactness, NaN, progress, memmaps."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_imc_vae.engine.apply import inference
from napari_imc_vae.engine.apply.inference import Reconstruction, reconstruct_image
from napari_imc_vae.engine.apply.normalized_rows import normalized_rows
from napari_imc_vae.engine.apply.reconstruction_outputs import memmap_outputs
from napari_imc_vae.engine.apply.tiling import TileGrid


class StandIn(nn.Module):
    """Returns its input (optionally 3×3 box-blurred) and the tile's channel means as latent."""

    def __init__(self, channels: int, patch_size: int = 8, blur: bool = False):
        super().__init__()
        self.config = SimpleNamespace(patch_size=patch_size, in_channels=channels, latent_dim=channels)
        self.gain = nn.Parameter(torch.ones(()))
        self.blur = blur
        self.calls: list[int] = []

    @torch.no_grad()
    def reconstruct(self, x):
        assert not self.training and torch.isfinite(x).all()
        self.calls.append(len(x))
        r = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) if self.blur else x
        return r * self.gain, x.mean(dim=(2, 3))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (61, 47), (8, 8), (2, 30)])
@pytest.mark.parametrize("stride", [None, 3, 8])
def test_identity_model_shapes_and_exactness(shape, stride, rng):
    image = rng.poisson(5.0, size=(3, *shape)).astype(np.float32) + 1  # counts above the rate floor
    rec = reconstruct_image(StandIn(3), image, stride=stride, batch_size=7)
    grid = TileGrid.create(shape, 8, stride)
    assert rec.normalized.shape == rec.raw.shape == rec.channel_error.shape == rec.residual.shape == (3, *shape)
    assert rec.error.shape == shape
    assert rec.latent.shape == (3, *grid.n_tiles)
    assert rec.stride == grid.stride and rec.patch_size == 8 and rec.latent_scale == (grid.stride,) * 2
    assert np.allclose(rec.normalized, image, atol=1e-5)
    assert np.array_equal(rec.raw, rec.normalized)  # no normalizer: raw units are normalized units
    assert np.allclose(rec.error, 0, atol=1e-3) and np.allclose(rec.channel_error, 0, atol=1e-9)
    assert np.allclose(rec.residual, 0, atol=1e-3)


def test_raw_counts_are_never_negative(rng):
    image = rng.normal(size=(2, 20, 21)).astype(np.float32)  # no normalizer: the values are the counts
    rec = reconstruct_image(StandIn(2, blur=True), image)
    assert (rec.normalized < 0).any() and rec.raw.min() == 0.0
    np.testing.assert_array_equal(rec.raw, np.maximum(rec.normalized, 0))


def test_latent_is_on_the_stride_grid(rng):
    image = rng.normal(size=(2, 19, 26)).astype(np.float32)
    rec = reconstruct_image(StandIn(2), image, stride=4)
    grid = TileGrid.create((19, 26), 8, 4)
    tiles = grid.extract(image).reshape(*grid.n_tiles, 2, 8, 8)
    assert np.allclose(rec.latent, tiles.mean(axis=(3, 4)).transpose(2, 0, 1), atol=1e-6)


def test_blurred_model_has_positive_error_equal_to_definition(rng):
    from napari_imc_vae.engine.apply.error_unit import count_residual, dead_area_error, pixel_error
    from napari_imc_vae.engine.apply.multiscale_error import multiscale_error, pooling_inflation

    image = rng.poisson(8.0, size=(4, 20, 21)).astype(np.float32)
    rec = reconstruct_image(StandIn(4, blur=True), image)
    assert rec.error.min() > 0
    assert np.allclose(rec.channel_error, (rec.normalized - image) ** 2, rtol=1e-5, atol=1e-6)
    assert rec.dispersion.shape == rec.noise_scale.shape == (4,)
    residual = count_residual(image, rec.raw, rec.dispersion, scale=rec.noise_scale)
    np.testing.assert_allclose(rec.residual, residual, rtol=1e-5, atol=1e-6)
    # the map is the pixel error or, where larger, the excess pooled over small windows (a small
    # image: the pooling inflation is measured on all of it); never below the pixel error
    expected = multiscale_error(residual, dead_area_error(image, scale=rec.noise_scale),
                                inflation=pooling_inflation(residual, rec.raw))
    np.testing.assert_allclose(rec.error, expected, rtol=1e-5, atol=1e-6)
    assert (rec.error >= pixel_error(residual) - 1e-6).all() and (rec.error > pixel_error(residual) + 0.1).any()


def test_nan_pixels_are_zero_for_the_model_and_nan_in_error(rng):
    image = rng.poisson(5.0, size=(2, 12, 10)).astype(np.float32)
    image[:, 3, 4] = np.nan  # all channels missing
    image[0, 7, 2] = np.nan  # one channel missing
    rec = reconstruct_image(StandIn(2), image)  # StandIn asserts its input is finite
    assert np.isnan(rec.error[3, 4]) and np.isnan(rec.channel_error[:, 3, 4]).all()
    assert np.isnan(rec.channel_error[0, 7, 2]) and np.isfinite(rec.error[7, 2])
    assert np.isnan(rec.residual[0, 7, 2]) and np.isfinite(rec.residual[1, 7, 2])
    assert rec.error[7, 2] == pytest.approx(abs(rec.residual[1, 7, 2]), abs=1e-5)  # one channel: |residual|
    assert np.isfinite(rec.normalized).all()
    assert np.isnan(rec.error).sum() == 1


def test_progress_is_monotone_and_reaches_total(rng, monkeypatch):
    monkeypatch.setattr(inference, "_MIN_BAND_TILES", 1)  # many bands on a small image
    image = rng.normal(size=(1, 33, 29)).astype(np.float32)
    calls = []
    model = StandIn(1)
    rec = reconstruct_image(model, image, stride=3, batch_size=5, on_progress=lambda d, t: calls.append((d, t)))
    total = TileGrid.create((33, 29), 8, 3).total
    done = [d for d, _ in calls]
    assert all(t == total for _, t in calls)
    assert done == sorted(done) and done[-1] == total and len(set(done)) == len(done)
    assert max(model.calls) <= 5
    assert np.allclose(rec.normalized, image, atol=1e-5)


def test_model_mode_restored_and_moved_to_device(rng):
    model = StandIn(1).train()
    reconstruct_image(model, rng.normal(size=(1, 9, 9)), device="cpu")
    assert model.training


def test_memmap_input_and_outputs(tmp_path, rng):
    image = rng.normal(size=(3, 41, 37)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=np.float32, shape=image.shape)
    mm[:] = image
    mm.flush()
    src = np.load(tmp_path / "in.npy", mmap_mode="r")
    model = StandIn(3, blur=True)
    out = memmap_outputs(tmp_path, src.shape, model, stride=3)
    rec = reconstruct_image(model, src, stride=3, out=out)
    assert all(getattr(rec, k) is out[k] for k in out)
    ref = reconstruct_image(model, image, stride=3)
    for name in inference.OUTPUT_NAMES:
        assert np.array_equal(getattr(rec, name), getattr(ref, name)), name
    for v in out.values():
        v.flush()
    assert np.array_equal(np.load(tmp_path / "error.npy"), ref.error)


def test_out_as_object_partial(rng):
    image = rng.normal(size=(2, 6, 7)).astype(np.float32)
    err = np.zeros((6, 7), dtype=np.float32)
    rec = reconstruct_image(StandIn(2, blur=True), image, out=SimpleNamespace(error=err))
    assert rec.error is err and err.max() > 0


def test_normalizer_bands_match_whole_image(rng, monkeypatch):
    preprocessing = pytest.importorskip("napari_imc_vae.preprocessing")
    monkeypatch.setattr(inference, "_MIN_BAND_TILES", 1)
    raw = rng.poisson(3.0, size=(3, 45, 20)).astype(np.float32)
    raw[1, 10, 5] = 500  # a hot pixel next to a band edge is filtered as on the whole image
    raw[1, 11:13] = 500
    norm = preprocessing.Normalizer.fit(raw, hot_pixel_threshold=50, arcsinh_cofactor=5)
    rec = reconstruct_image(StandIn(3), raw, norm, stride=2)
    assert np.allclose(rec.normalized, norm(raw), atol=1e-5)
    # the identity model predicts the counts it is given: only 0 counts under the rate floor differ
    assert np.abs(rec.residual[raw > 0.5]).max() < 0.05 and rec.error.max() < 0.5
    assert np.allclose(rec.raw, norm.inverse(norm(raw)), rtol=1e-4, atol=1e-3)


def test_on_rows_passes_the_normalized_input_once_in_order(rng, monkeypatch):
    preprocessing = pytest.importorskip("napari_imc_vae.preprocessing")
    monkeypatch.setattr(inference, "_MIN_BAND_TILES", 1)  # many bands
    raw = rng.poisson(3.0, size=(3, 45, 20)).astype(np.float32)
    raw[1, 10, 5] = 500
    raw[0, 20:23, 2:4] = np.nan
    norm = preprocessing.Normalizer.fit(raw, hot_pixel_threshold=50, arcsinh_cofactor=5)
    seen = []
    reconstruct_image(StandIn(3), raw, norm, stride=2, batch_size=7,
                      on_rows=lambda start, rows: seen.append((start, rows.copy())))
    assert len(seen) > 3 and [start for start, _ in seen] == list(np.cumsum([0] + [r.shape[1] for _, r in seen[:-1]]))
    np.testing.assert_array_equal(np.concatenate([r for _, r in seen], axis=1), norm(raw))
    # and the same rows on demand, without the reconstruction
    rows = normalized_rows(raw, norm)
    np.testing.assert_array_equal(np.concatenate([rows(0, 17), rows(17, 30), rows(30, 45)], axis=1), norm(raw))


def test_real_model_smoke(rng):
    model_mod = pytest.importorskip("napari_imc_vae.engine.model.vae")
    model = model_mod.PatchVAE(model_mod.ModelConfig(in_channels=3, patch_size=4, latent_dim=5, width=16, depth=1))
    rec = reconstruct_image(model, rng.normal(size=(3, 11, 6)).astype(np.float32))
    assert isinstance(rec, Reconstruction)
    assert rec.latent.shape == (5, 6, 3)
    assert np.isfinite(rec.normalized).all() and np.isfinite(rec.error).all()


@pytest.mark.parametrize(
    "image,kwargs,exc,match",
    [
        (np.zeros((5, 5)), {}, ValueError, "image must have shape"),
        (np.zeros((2, 0, 5)), {}, ValueError, "image must have shape"),
        (np.zeros((2, 5, 5)), {}, ValueError, "2 channels.*in_channels=1"),
        (np.zeros((1, 5, 5)), {"batch_size": 0}, ValueError, "batch_size"),
        (np.zeros((1, 5, 5)), {"stride": 9}, ValueError, "stride"),
        (np.zeros((1, 5, 5)), {"out": {"error": np.zeros((4, 5))}}, ValueError, r"out\['error'\]"),
        (np.zeros((1, 5, 5), dtype=bool), {}, TypeError, "real numbers"),
    ],
)
def test_bad_input(image, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        reconstruct_image(StandIn(1), image, **kwargs)
