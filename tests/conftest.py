"""Shared fixtures: the real IMC test data beside the project, and seeded generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMC_TESTDATA = PROJECT_ROOT.parent / "shared" / "data" / "imc-testdata"


@pytest.fixture(scope="session")
def imc_testdata() -> Path:
    """Folder of the Bodenmiller IMC test data (skips when it is not beside the project)."""
    if not IMC_TESTDATA.is_dir():
        pytest.skip(f"IMC test data not found at {IMC_TESTDATA}")
    return IMC_TESTDATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """Run the test with one intra-op torch thread, restoring the previous count afterwards.

    Tiny models on a few shared cores: a second intra-op thread only adds contention.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``;
    torch is imported here, not at the top, so Qt- and io-only tests never load it.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: The ROIs :func:`cells_model` is trained on (54×59 and 51×64 px, 5 channels).
CELLS_TRAIN_ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002")


@pytest.fixture(scope="session")
def cells_model(imc_testdata):
    """A tiny model (20 steps, latent 4, width 16) of :data:`CELLS_TRAIN_ROIS`, with its own motifs.

    Shared by the per-cell table and cohort-QC tests of the engine and of the CLI.
    """
    import torch

    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.io import read_imc

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        images = [read_imc(imc_testdata / "steinbock_img" / f"{s}.ome.tiff") for s in CELLS_TRAIN_ROIS]
        trained, _ = TrainingRun(images, model_config={"latent_dim": 4, "width": 16, "depth": 1},
                                 train_config=TrainConfig(steps=20, batch_size=64, device="cpu", seed=0)).run()
    finally:
        torch.set_num_threads(threads)
    return trained


@pytest.fixture(scope="session")
def extra_channel_case():
    """A 3-step model of four channels, and an image with those four reordered plus one it lacks.

    Returns ``(trained, image)``: the image's channels are DNA2, H3K27Ac, Histone H3, DNA1,
    Ki67; the model never saw H3K27Ac. Shared by the reconstruction tests with and without Qt.
    """
    from napari_imc_vae.datasets import synthetic_tissue
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.io import ImcImage

    full = synthetic_tissue(shape=(32, 32), n_channels=5)
    known = [0, 1, 3, 4]  # 'H3K27Ac' (index 2) is the channel the model never saw
    panel = ImcImage(full.data[known], [full.channel_names[i] for i in known],
                     metals=[full.metals[i] for i in known], source="panel.ome.tiff")
    trained, _ = TrainingRun(
        [panel], model_config={"patch_size": 8, "latent_dim": 4, "width": 32, "depth": 1},
        train_config=TrainConfig(steps=3, batch_size=32, device="cpu", val_every=3, max_val_patches=32),
    ).run()
    order = [4, 2, 0, 3, 1]
    image = ImcImage(full.data[order], [full.channel_names[i] for i in order],
                     metals=[full.metals[i] for i in order], source="wide.ome.tiff")
    return trained, image
