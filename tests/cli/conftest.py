"""What the CLI tests share: one tiny model trained by the ``train`` command itself."""

from __future__ import annotations

import pytest

#: ``train`` options of the tiny model: patch 4, latent 4, width 16, 5 steps on the CPU.
TINY_TRAIN = ["--patch", "4", "--latent", "4", "--width", "16", "--depth", "1", "--batch", "16", "--device", "cpu",
              "--steps", "5"]


@pytest.fixture(scope="session")
def tiny_cli_model(imc_testdata, tmp_path_factory):
    """``napari-imc-vae train mockData1_001 --steps 5`` (:data:`TINY_TRAIN`): the saved model's path.

    Shared by the motifs and model-message tests; a test that changes it works on a copy.
    """
    import torch

    from napari_imc_vae.cli import main

    path = tmp_path_factory.mktemp("tiny_cli_model") / "m.pt"
    roi = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        assert main(["train", str(roi), "-o", str(path), *TINY_TRAIN]) == 0
    finally:
        torch.set_num_threads(threads)
    return path
