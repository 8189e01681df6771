"""What the tests of per-cell tables and cohort QC share: real ROIs and a tiny model of two of them."""

from __future__ import annotations

import pytest

#: The ROIs the tiny model is trained on (54×59 and 51×64 px, 5 channels).
TRAIN_ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002")


@pytest.fixture(scope="session")
def cells_model(imc_testdata):
    """A tiny model (20 steps, latent 4, width 16) of :data:`TRAIN_ROIS`, with its own motifs."""
    import torch

    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.io import read_imc

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        images = [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in TRAIN_ROIS]
        trained, _ = TrainingRun(images, model_config={"latent_dim": 4, "width": 16, "depth": 1},
                                 train_config=TrainConfig(steps=20, batch_size=64, device="cpu", seed=0)).run()
    finally:
        torch.set_num_threads(threads)
    return trained
