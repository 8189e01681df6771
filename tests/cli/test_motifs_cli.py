"""``napari-imc-vae motifs``: thin over engine.apply.motifs_use_case.cohort_motifs, writes what it gives."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch

from napari_imc_vae.cli import main
from napari_imc_vae.engine.apply.motifs_outcome import MotifsOfImage
from napari_imc_vae.engine.apply.motifs_use_case import MotifsSettings, cohort_motifs
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.io import read_imc

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROIS = ("20210305_NE_mockData3_001", "20210305_NE_mockData4_001")


@pytest.fixture(scope="module")
def model(tiny_cli_model):
    """The session's 5-step model of mockData1_001 (tests/cli/conftest.py)."""
    return tiny_cli_model


def _files(imc_testdata) -> list[str]:
    return [str(imc_testdata / "steinbock_img" / f"{stem}.ome.tiff") for stem in ROIS]


def _engine(model_file, imc_testdata, settings=None) -> tuple[list[MotifsOfImage], list[dict]]:
    done = []
    trained = TrainedModel.load(model_file)
    outcome = cohort_motifs(trained, [read_imc(f) for f in _files(imc_testdata)], settings, on_image=done.append)
    return done, outcome.abundance


def _check_outputs(out, done, abundance) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted([*(f"{d.image}_motifs.tiff" for d in done),
                                                            "motif_abundance.csv"])
    for d in done:
        with tifffile.TiffFile(out / f"{d.image}_motifs.tiff") as tif:
            np.testing.assert_array_equal(tif.asarray(), d.labels)
            assert f'PhysicalSizeX="{d.grid_pixel_size_um}"' in tif.pages[0].description
    with open(out / "motif_abundance.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image"], int(r["motif"]), int(r["pixels"])) for r in rows] == [
        (r["image"], r["motif"], r["pixels"]) for r in abundance]
    assert [float(r["fraction"]) for r in rows] == pytest.approx([r["fraction"] for r in abundance], rel=1e-5)


def test_the_command_writes_what_the_use_case_gives(model, imc_testdata, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["motifs", str(model), *_files(imc_testdata), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    done, abundance = _engine(model, imc_testdata)
    _check_outputs(out, done, abundance)
    lines = captured.out.splitlines()
    assert lines == [*(f"{d.image}: latent map {d.labels.shape[0]}×{d.labels.shape[1]}" for d in done),
                     *(f"wrote {out / d.image}_motifs.tiff" for d in done), f"wrote {out / 'motif_abundance.csv'}"]
    assert captured.err == ""


def test_a_model_file_without_motifs_says_so_and_writes_the_pooled_motifs(model, imc_testdata, tmp_path, capsys):
    d = torch.load(model, weights_only=True)
    del d["motifs"]
    d["format_version"], _ = 1, d.pop("content_sha256")  # a file from before motifs and the hash
    old = tmp_path / "old.pt"
    torch.save(d, old)
    out = tmp_path / "out"
    assert main(["motifs", str(old), *_files(imc_testdata), "-o", str(out), "--seed", "3"]) == 0
    err = capsys.readouterr().err
    done, abundance = _engine(old, imc_testdata, MotifsSettings(seed=3))
    _check_outputs(out, done, abundance)
    assert (f"napari-imc-vae: note: {old} holds no motifs (it predates them): {len({r['motif'] for r in abundance})}"
            f" motifs fitted once on latent vectors of all 2 image(s), the same for every image") in err


def test_an_image_without_the_models_channels_ends_the_run_with_nothing_written(model, imc_testdata, tmp_path,
                                                                                 capsys):
    image = read_imc(_files(imc_testdata)[1])
    short = tmp_path / "short.ome.tiff"
    tifffile.imwrite(short, image.data[:2], metadata={"axes": "CYX", "Channel": {"Name": [
        f"{m}_{n}" for m, n in zip(image.channel_keys[:2], image.channel_names[:2])]}})
    out = tmp_path / "out"
    assert main(["motifs", str(model), _files(imc_testdata)[0], str(short), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"{ROIS[0]}: latent map" in captured.out and "wrote" not in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith(f"napari-imc-vae motifs: error: the channels of image {short} do not match model file "
                           f"{model}: missing ")
    assert not out.exists()  # the folder made for the outputs is removed again
