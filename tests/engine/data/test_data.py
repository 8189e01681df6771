"""The patch sampler: patches are the image's pixels, validation by region, clear errors, NaN kept."""

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.model.d4 import d4_apply
from napari_imc_vae.engine.data.patches import PatchSampler, PatchSizeError


def coded_image(h: int, w: int, channels: int = 2, image_id: int = 0) -> np.ndarray:
    """Channel 0 = row, channel 1 = column, channel 2 = image id (each pixel is identifiable)."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    planes = [yy, xx, np.full((h, w), image_id)][:channels]
    return np.stack(planes).astype(np.float32)


def test_patches_equal_the_image_pixels():
    images = [coded_image(20, 17, 3, 0), coded_image(12, 25, 3, 1)]
    sampler = PatchSampler(images, 4, device="cpu")
    g = torch.Generator().manual_seed(0)
    base, views, transforms = sampler.sample(300, g)
    assert base.shape == views.shape == (300, 3, 4, 4) and transforms.shape == (300,)
    torch.testing.assert_close(views, d4_apply(base, transforms))
    assert set(transforms.tolist()) == set(range(8))
    seen_images = set()
    for patch in base.numpy():
        i = int(patch[2, 0, 0])
        y, x = int(patch[0, 0, 0]), int(patch[1, 0, 0])
        np.testing.assert_array_equal(patch, images[i][:, y : y + 4, x : x + 4])
        seen_images.add(i)
    assert seen_images == {0, 1}


def test_fixed_patches_equal_the_image_pixels():
    image = coded_image(30, 22)
    sampler = PatchSampler([image], 5, device="cpu")
    for patch in np.concatenate([sampler.training_patches().numpy(), sampler.validation_patches().numpy()]):
        y, x = int(patch[0, 0, 0]), int(patch[1, 0, 0])
        np.testing.assert_array_equal(patch, image[:, y : y + 5, x : x + 5])
    capped = sampler.training_patches(max_patches=10)
    assert capped.shape == (10, 2, 5, 5)


@pytest.mark.parametrize(("h", "p", "fraction"), [(40, 4, 0.15), (23, 5, 0.3), (64, 8, 0.1)])
def test_no_validation_row_inside_any_training_patch(h, p, fraction):
    image = coded_image(h, 19)
    sampler = PatchSampler([image], p, val_fraction=fraction, device="cpu")
    assert sampler.n_train > 0 and sampler.n_val > 0
    val_rows = set(np.unique(sampler.validation_patches().numpy()[:, 0]).tolist())
    train_rows = set(np.unique(sampler.training_patches().numpy()[:, 0]).tolist())
    g = torch.Generator().manual_seed(1)
    sampled, _, _ = sampler.sample(5000, g)
    train_rows |= set(np.unique(sampled.numpy()[:, 0]).tolist())
    assert not val_rows & train_rows
    # the band is at the bottom and at least one patch high
    assert min(val_rows) > max(train_rows) and len(val_rows) >= p and max(val_rows) == h - 1


def test_marker_in_the_validation_band_never_reaches_training():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(3, 50, 40)).astype(np.float32)
    image[:, 50 - 10 :] = 1234.5  # the validation band is round(0.2 * 50) = 10 rows
    sampler = PatchSampler([image], 6, val_fraction=0.2, device="cpu")
    val = sampler.validation_patches().numpy()
    assert (val == 1234.5).any()
    g = torch.Generator().manual_seed(2)
    for _ in range(4):
        base, _, _ = sampler.sample(2000, g)
        assert not (base.numpy() == 1234.5).any()
    assert not (sampler.training_patches().numpy() == 1234.5).any()


def test_images_too_small_for_a_split_train_only():
    sampler = PatchSampler([coded_image(6, 10)], 4, val_fraction=0.15, device="cpu")
    assert sampler.n_val == 0 and sampler.n_train == 3 * 7
    assert sampler.validation_patches().shape == (0, 2, 4, 4)


def test_val_fraction_zero_gives_no_validation():
    sampler = PatchSampler([coded_image(30, 30)], 4, val_fraction=0.0, device="cpu")
    assert sampler.n_val == 0 and sampler.n_train == 27 * 27


def test_image_smaller_than_a_patch_is_a_clear_error():
    with pytest.raises(PatchSizeError, match=r"patch size 8 is larger than every image \(5×6 px\).*at most 5"):
        PatchSampler([np.zeros((3, 5, 6), np.float32)], 8)
    assert issubclass(PatchSizeError, ValueError)


def test_small_images_beside_a_large_one_are_skipped():
    big, small = coded_image(20, 20, 3, 0), coded_image(3, 30, 3, 1)
    sampler = PatchSampler([small, big], 4, device="cpu")
    base, _, _ = sampler.sample(500, torch.Generator().manual_seed(0))
    assert set(np.unique(base[:, 2].numpy()).tolist()) == {0.0}


def test_mismatched_channels_and_empty_input():
    with pytest.raises(ValueError, match="same C"):
        PatchSampler([np.zeros((3, 10, 10)), np.zeros((4, 10, 10))], 4)
    with pytest.raises(ValueError, match="at least one image"):
        PatchSampler([], 4)


def test_nan_pixels_are_kept_in_patches():
    image = coded_image(16, 16)
    image[1, 3, 4] = np.nan
    sampler = PatchSampler([image], 4, val_fraction=0.0, device="cpu")
    patches = sampler.training_patches().numpy()
    holes = np.isnan(patches)
    assert holes.any()
    for patch, hole in zip(patches, holes):
        if hole.any():
            y, x = int(patch[0, 0, 0]), int(np.nanmin(patch[1]))
            # the NaN sits exactly where pixel (3, 4) falls in the patch
            assert hole.sum() == 1 and hole[1, 3 - y, 4 - x]
    # every patch covering (3, 4) has it
    covering = sum(1 for y in range(13) for x in range(13) if y <= 3 < y + 4 and x <= 4 < x + 4)
    assert holes.any(axis=(1, 2, 3)).sum() == covering


def test_sample_views_are_samples_views_from_the_same_draws():
    rng = np.random.default_rng(5)
    sampler = PatchSampler([rng.normal(size=(3, 30, 27)).astype(np.float32)], 6, val_fraction=0.2)
    _, views, transforms = sampler.sample(64, torch.Generator().manual_seed(9))
    got, got_t = sampler.sample_views(64, torch.Generator().manual_seed(9))
    assert torch.equal(got_t, transforms) and torch.equal(got, views)
