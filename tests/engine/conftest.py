"""Engine fixtures on the real IMC test data (skipped when it is absent)."""

from __future__ import annotations

import numpy as np
import pytest


def cut_patches(image: np.ndarray, patch: int = 8, stride: int = 4) -> np.ndarray:
    """Patches (N, C, patch, patch) of a (C, Y, X) image on a stride grid, row-major."""
    windows = np.lib.stride_tricks.sliding_window_view(image, (patch, patch), axis=(1, 2))[:, ::stride, ::stride]
    return np.ascontiguousarray(windows.transpose(1, 2, 0, 3, 4).reshape(-1, image.shape[0], patch, patch))


@pytest.fixture
def one_gloo_process(monkeypatch):
    """The environment torchrun gives a job of one process; any group joined is left after the test."""
    # port 0: the one process's store takes any free port, as no other process connects to it
    for name, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0", "RANK": "0", "WORLD_SIZE": "1",
                        "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    yield
    import torch.distributed as dist

    if dist.is_initialized():  # never leak a group into other tests, whatever the outcome
        dist.destroy_process_group()


@pytest.fixture(scope="session")
def imc_normalized(imc_testdata):
    """Six steinbock ROIs (5 channels), normalized as by default (hot pixels 50, arcsinh/5, z-score).

    Returns ``(train, held_out)``: lists of three (C, Y, X) float32 images each, of different
    acquisitions; the normalizer is fitted on the training ones.
    """
    from napari_imc_vae.io import read_imc
    from napari_imc_vae.preprocessing import Normalizer

    files = sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))
    train = [read_imc(f) for f in files[0:3]]
    held_out = [read_imc(f) for f in files[3:6]]
    norm = Normalizer.fit(train, hot_pixel_threshold=50.0, arcsinh_cofactor=5.0)
    return [norm(im) for im in train], [norm(im) for im in held_out]


@pytest.fixture(scope="session")
def imc_patches(imc_normalized):
    """``(train, held_out)`` 8×8 patches at stride 4 of :func:`imc_normalized`'s images."""
    train, held_out = imc_normalized
    return (np.concatenate([cut_patches(a) for a in train]), np.concatenate([cut_patches(a) for a in held_out]))
