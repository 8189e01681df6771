"""Every command reads folders by the one io rule: steinbock img/ in diagnose, a model trained on
one ROI's single-channel folder applied to another ROI's folder whose files carry another prefix."""

import json

import numpy as np
import pytest
from imc_variants import single_channel_folder, steinbock_folder, steinbock_roi

from napari_imc_vae.cli import main

TINY = ["--patch", "4", "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]


def test_diagnose_reads_a_steinbock_folder(imc_testdata, tmp_path, capsys):
    folder = steinbock_folder(imc_testdata, tmp_path / "img", n=3)
    assert main(["diagnose", str(folder), "--json"]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)  # every image, with a cohort summary
    assert d["n_images"] == 3 and [im["shape"][0] for im in d["images"]] == [5, 5, 5]
    assert d["images"][0]["source"].endswith("20210305_NE_mockData1_001.ome.tiff")
    assert main(["diagnose", str(folder), "--acquisition", "20210305_NE_mockData1_003", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["source"].endswith("_003.ome.tiff")


def test_diagnose_names_the_odd_files_of_a_mixed_folder(imc_testdata, tmp_path, capsys):
    import shutil

    folder = single_channel_folder(tmp_path / "mixed", steinbock_roi(imc_testdata))
    shutil.copy(imc_testdata / "steinbock_img" / "20210305_NE_mockData2_001.ome.tiff", folder)
    assert main(["diagnose", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "odd multi-channel files: 20210305_NE_mockData2_001.ome.tiff" in err


def test_train_on_one_roi_folder_apply_to_another_with_another_prefix(imc_testdata, tmp_path, capsys,
                                                                       one_torch_thread):
    train_dir = single_channel_folder(tmp_path / "ROI1", steinbock_roi(imc_testdata), prefix="ROI1_")
    other = steinbock_roi(imc_testdata, "20210305_NE_mockData2_001")
    apply_dir = single_channel_folder(tmp_path / "slide2", other, prefix="Slide2-ROI_004_",
                                      spelling="{label}({sym}{mass}Di)")  # CD45(Pr141Di) style
    model = tmp_path / "m.pt"
    assert main(["train", str(train_dir), "-o", str(model), "--steps", "3", *TINY]) == 0
    out, err = capsys.readouterr()
    assert "1 image(s), 5 channels" in out  # one image of five channels, not five 1-channel images
    assert "removed the prefix 'ROI1_'" in err
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

    trained = TrainedModel.load(model)
    assert trained.channel_keys == ["Ag107", "Pr141", "Sm147", "Eu153", "Yb172"]
    out_dir = tmp_path / "out"
    assert main(["reconstruct", str(model), str(apply_dir), "-o", str(out_dir)]) == 0
    err = capsys.readouterr().err
    assert "removed the prefix 'Slide2-ROI_004_'" in err and "error" not in err
    assert main(["quality", str(model), str(apply_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == list(other.shape)
    # files sorted by marker in the other folder: matched by metal, not by position
    from napari_imc_vae.io import read_imc

    applied = read_imc(apply_dir)
    assert applied.metals != trained.channel_keys and sorted(applied.metals) == sorted(trained.channel_keys)
    assert np.isfinite(report["report"]["model"]["mse"])
    # a channel missing: the one-line error lists both sides
    next(apply_dir.glob("*Sm147*")).unlink()
    assert main(["quality", str(model), str(apply_dir)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "missing Sm147; " in line and "expected 5 channels: Ag107, Pr141, Sm147, Eu153, Yb172" in line
    assert "the image has 4: " in line and "Pr141" in line
