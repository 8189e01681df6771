"""Cohorts larger than RAM: the float16 disk cache, the bounded patch pool, the one path choice,
images read one at a time, and training through it all on the real ROIs."""

import gc
import weakref

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.data.cohort import CohortOptions, ImageStream, NormalizedCache, build_sampler
from napari_imc_vae.engine.model.d4 import d4_apply
from napari_imc_vae.engine.data.patches import PatchSampler
from napari_imc_vae.engine.data.pool import PatchPool
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import read_imc
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, Normalizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1}


def coded_image(h: int, w: int, image_id: int) -> np.ndarray:
    """Channel 0 = row, 1 = column, 2 = image id: every pixel says where it is (exact in float16)."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([yy, xx, np.full((h, w), image_id)]).astype(np.float32)


def cached(images, tmp_path) -> NormalizedCache:
    cache = NormalizedCache(str(tmp_path))
    for im in images:
        cache.add(im)
    return cache


@pytest.fixture(scope="module")
def real_images(imc_testdata):
    return [read_imc(f) for f in sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))]


def test_pool_patches_are_image_pixels_outside_the_validation_band(tmp_path):
    # a tall image (tiles inside it), a wide one shorter than a tile, one smaller than the patch
    images = [coded_image(150, 130, 0), coded_image(40, 300, 1), coded_image(5, 5, 2)]
    pool = PatchPool(cached(images, tmp_path), 8, val_fraction=0.15, pool_mb=0.2, tile_size=32)
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        base, views, transforms = pool.sample(256, g)
        torch.testing.assert_close(views, d4_apply(base, transforms))
        for patch in base.numpy():
            i, y, x = (int(v) for v in patch[[2, 0, 1], 0, 0])
            np.testing.assert_array_equal(patch, images[i][:, y : y + 8, x : x + 8])
            assert y + 8 <= pool.splits[i].train_rows  # never reaches into the validation band
            seen.add(i)
    assert seen == {0, 1}  # the image smaller than a patch is left out, as in PatchSampler
    views, transforms = pool.sample_views(64, g)
    assert views.shape == (64, 3, 8, 8) and transforms.shape == (64,)


def test_pool_refills_until_every_training_position_is_reached(tmp_path):
    image = coded_image(200, 200, 0)
    pool = PatchPool(cached([image], tmp_path), 8, val_fraction=0.15, pool_mb=0.0, tile_size=16)
    assert pool.n_tiles == 8  # the smallest pool: 8 tiles of 16×16
    g = torch.Generator().manual_seed(1)
    corners = set()
    first = pool.sample(pool.refill_patches - 1, g)[0].numpy()  # before any refill
    before = {(int(p[0, 0, 0]), int(p[1, 0, 0])) for p in first}
    assert len(before) <= pool.n_tiles * 9 * 9  # at most the 8 tiles' corners
    for _ in range(800):
        corner = pool.sample(256, g)[0][:, :2, 0, 0].long()
        corners.update((corner[:, 0] * 1000 + corner[:, 1]).tolist())
    assert max(corners) // 1000 + 8 <= pool.splits[0].train_rows
    assert len(corners) >= 0.95 * pool.n_train  # refilled from everywhere in the training region


def test_pool_draws_every_training_position_equally(tmp_path):
    images = [coded_image(120, 120, 0), coded_image(30, 90, 1)]
    # frequent refills (low reuse): many independent tiles, so 300k draws measure the rule, not the luck
    pool = PatchPool(cached(images, tmp_path), 6, val_fraction=0.15, pool_mb=1.0, tile_size=24, reuse=0.25)
    counts = [np.zeros((s.train_rows - 5, s.width - 5)) for s in pool.splits]
    g = torch.Generator().manual_seed(2)
    for _ in range(300):
        base = pool.sample(1024, g)[0].numpy()[:, :, 0, 0].astype(int)
        for i in (0, 1):
            mine = base[base[:, 2] == i]
            np.add.at(counts[i], (mine[:, 0], mine[:, 1]), 1)
    expected = 300 * 1024 / pool.n_train
    big, small = counts
    assert big.mean() == pytest.approx(expected, rel=0.05) and small.mean() == pytest.approx(expected, rel=0.05)
    # borders as often as the middle (a naive tile sampler draws the corners ~20× less often)
    middle = big[30:70, 30:70].mean()
    for border in (big[:6], big[-6:], big[:, :6], big[:, -6:]):
        assert border.mean() == pytest.approx(middle, rel=0.06)


def test_fixed_patches_are_patch_samplers(tmp_path):
    images = [coded_image(60, 50, 0), coded_image(33, 70, 1), coded_image(9, 40, 2)]
    pool = PatchPool(cached(images, tmp_path), 5, val_fraction=0.2, pool_mb=0.5)
    sampler = PatchSampler(images, 5, val_fraction=0.2)
    assert pool.n_val == sampler.n_val > 0
    for cap in (None, 7, 100):
        torch.testing.assert_close(pool.validation_patches(cap), sampler.validation_patches(cap))
        torch.testing.assert_close(pool.training_patches(cap), sampler.training_patches(cap))


def test_float16_cache_error_is_far_below_the_noise_of_real_rois(real_images, tmp_path):
    normalizer = Normalizer.fit(real_images, **DEFAULT_NORMALIZATION.to_dict())
    cache = NormalizedCache(str(tmp_path))
    worst_ratio = 0.0
    for i, im in enumerate(real_images):
        exact = normalizer(im)
        cache.add(exact)
        assert cache.dtypes[i] == np.float16
        stored = np.asarray(cache.open(i), dtype=np.float32).transpose(2, 0, 1)
        error = np.abs(stored - exact)
        assert (error <= 2.0**-11 * np.maximum(np.abs(exact), 2.0**-14)).all()  # float16 rounding
        # noise: pixel-to-pixel differences (an upper bound that includes real edges)
        noise = np.sqrt(np.mean(np.diff(exact, axis=2) ** 2, axis=(1, 2)) / 2)
        rms = np.sqrt(np.mean(error**2, axis=(1, 2)))
        live = noise > 0
        worst_ratio = max(worst_ratio, float((rms[live] / noise[live]).max()))
    assert worst_ratio < 5e-3  # measured 0.0023: float16 adds 0.2% of the noise at most


def test_cache_stays_float32_where_float16_would_overflow(tmp_path):
    cache = NormalizedCache(str(tmp_path))
    cache.add(np.array([[[1.0, 7e4], [np.nan, -2.0]]], np.float32))
    assert cache.dtypes == [np.float32] and not cache.all_finite
    np.testing.assert_array_equal(np.asarray(cache.open(0))[..., 0], [[1.0, 7e4], [np.nan, -2.0]])


def test_cache_folder_is_deleted_with_the_pool(tmp_path):
    pool = PatchPool(cached([coded_image(40, 40, 0)], tmp_path), 4, pool_mb=0.1)
    folder = pool.cache.path
    assert folder.parent == tmp_path and any(folder.iterdir())
    del pool
    gc.collect()
    assert not folder.exists()
    other = cached([coded_image(20, 20, 0)], tmp_path)
    other.close()
    assert not other.path.exists()


def test_one_rule_picks_ram_or_disk_and_both_give_the_same_patches(real_images, tmp_path):
    normalizer = Normalizer.fit(real_images[:4], **DEFAULT_NORMALIZATION.to_dict())
    kwargs = dict(val_fraction=0.15, device="cpu")
    in_ram = build_sampler(real_images[:4], normalizer, 8, options=CohortOptions(), **kwargs)
    on_disk = build_sampler(real_images[:4], normalizer, 8, **kwargs,
                            options=CohortOptions(in_memory_mb=0, pool_mb=1, cache_dir=str(tmp_path)))
    assert isinstance(in_ram, PatchSampler) and isinstance(on_disk, PatchPool)
    assert on_disk.n_val == in_ram.n_val
    ram_val = in_ram.validation_patches(300)
    torch.testing.assert_close(on_disk.validation_patches(300), ram_val, atol=2e-3 * ram_val.abs().max(), rtol=0)
    # past the budget midway: the images kept so far go to the cache too
    budget_mb = (real_images[0].data.nbytes + 1) / 2**20
    mixed = build_sampler(real_images[:4], normalizer, 8, **kwargs,
                          options=CohortOptions(in_memory_mb=budget_mb, cache_dir=str(tmp_path)))
    assert isinstance(mixed, PatchPool) and len(mixed.cache) == 4


def test_env_sets_the_options_for_cli_and_widget_alike(monkeypatch):
    monkeypatch.setenv("NAPARI_IMC_VAE_IN_MEMORY_MB", "0")
    monkeypatch.setenv("NAPARI_IMC_VAE_POOL_MB", "64")
    assert CohortOptions.from_env() == CohortOptions(in_memory_mb=0.0, pool_mb=64.0)
    monkeypatch.setenv("NAPARI_IMC_VAE_POOL_MB", "lots")
    with pytest.raises(ValueError, match="NAPARI_IMC_VAE_POOL_MB must be a number of MB"):
        CohortOptions.from_env()


def test_a_stream_is_read_file_by_file_and_nothing_is_kept(real_images, tmp_path):
    calls, alive = [], []

    def loader(i):
        def load():
            calls.append(i)
            im = read_imc(real_images[i].source)
            alive.append(weakref.ref(im))
            return im
        return load

    stream = ImageStream([loader(i) for i in range(3)])
    run = TrainingRun(stream, model_config=TINY, data=CohortOptions(in_memory_mb=0, cache_dir=str(tmp_path)),
                      train_config=TrainConfig(steps=2, batch_size=8, device="cpu"))
    assert calls == [0, 1, 2, 0, 1, 2]  # fit, then normalize: each file twice, in order
    gc.collect()
    assert not any(ref() is not None for ref in alive)  # no raw image outlives its turn
    assert run.image_names == [im.name for im in real_images[:3]]
    assert isinstance(run.sampler, PatchPool)


def test_training_through_the_cohort_path_learns_on_real_rois(real_images, tmp_path):
    run = TrainingRun(real_images, model_config={**TINY, "patch_size": 8, "width": 64},
                      data=CohortOptions(in_memory_mb=0, pool_mb=2, cache_dir=str(tmp_path)),
                      train_config=TrainConfig(steps=60, batch_size=64, device="cpu", val_every=30,
                                               max_val_patches=256, seed=0))
    assert isinstance(run.sampler, PatchPool) and run.sampler.n_tiles < 100  # a bounded pool
    trained, stopped = run.run()
    mse = [h["mse"] for h in trained.history]
    assert not stopped and np.mean(mse[-10:]) < 0.7 * np.mean(mse[:10])
    assert np.isfinite(trained.validation_history[-1]["r2"])


def test_cli_trains_through_the_cohort_path_and_leaves_no_cache(imc_testdata, tmp_path, monkeypatch):
    from napari_imc_vae.cli import main

    monkeypatch.setenv("NAPARI_IMC_VAE_IN_MEMORY_MB", "0")
    monkeypatch.setenv("NAPARI_IMC_VAE_CACHE_DIR", str(tmp_path))
    model = tmp_path / "m.pt"
    argv = ["train", str(imc_testdata / "steinbock_img"), "-o", str(model), "--steps", "8", "--patch", "4",
            "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]
    assert main(argv) == 0
    assert model.is_file()
    gc.collect()
    assert not list(tmp_path.glob("napari-imc-vae-cache-*"))
