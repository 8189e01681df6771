"""One channel-naming rule for what is written (issue 19): a model trained on a folder of
single-channel files (MCD Viewer / histoCAT exports) names its channels ``Pr141_Cytokeratin 5``,
as steinbock does, not ``Pr141_Pr141_Cytokeratin 5``; written and read back, metal and target
come back as in the source."""

from __future__ import annotations

import pytest
from imc_variants import single_channel_folder, steinbock_roi

from napari_imc_vae.engine.apply.use_case import steinbock_names
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import read_imc, steinbock_channel_name
from napari_imc_vae.io._common import parse_metal
from napari_imc_vae.io.outputs import write_map_tiff

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = {"patch_size": 4, "latent_dim": 2, "width": 16, "depth": 1}


def _trained(image):
    run = TrainingRun([image], model_config=TINY, train_config=TrainConfig(steps=1, batch_size=8, device="cpu"))
    return run.run()[0]


def test_a_single_channel_folder_export_is_named_as_steinbock_names_it(imc_testdata, tmp_path):
    roi = steinbock_roi(imc_testdata)  # steinbock's own OME-TIFF: names Pr141_Cytokeratin 5 in the file
    folder = read_imc(single_channel_folder(tmp_path / "roi", roi))
    assert folder.channel_names[1] == "Pr141_Cytokeratin 5"  # the folder reader keeps the metal in the name

    names = steinbock_names(_trained(folder))
    assert names == steinbock_names(_trained(roi))  # the same panel, whichever way it was exported
    assert names[:2] == ["Ag107", "Pr141_Cytokeratin 5"]
    for name, metal in zip(names, roi.metals):
        assert name.split("_")[0] == metal and not parse_metal(name.split("_")[1] if "_" in name else "")

    # written as the CLI writes the reconstruction, and read back: the source's metals and targets
    path = write_map_tiff(tmp_path / "recon.ome.tiff", roi.data, roi.pixel_size_um, channel_names=names)
    back = read_imc(path)
    assert back.metals == roi.metals and back.labels == roi.labels


@pytest.mark.parametrize(("name", "key", "expected"), [
    ("Cytokeratin 5", "Pr141", "Pr141_Cytokeratin 5"), ("Pr141_Cytokeratin 5", "Pr141", "Pr141_Cytokeratin 5"),
    ("Ag107", "Ag107", "Ag107"), ("CD45", "CD45", "CD45"), ("DNA1", "Ir191", "Ir191_DNA1"),
    ("CD45(Pr141Di)", "Pr141", "Pr141_CD45")])
def test_the_export_name_rule(name, key, expected):
    assert steinbock_channel_name(name, key) == expected
