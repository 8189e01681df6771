"""``napari-imc-vae export`` and the commands reading a zoo package: train → export → bioimageio test →
reconstruct / quality / motifs / qc from the package give what the model file gives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_imc_vae.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--patch", "8", "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]
TRAIN = "steinbock_img/20210305_NE_mockData3_001.ome.tiff"
OTHER = "steinbock_img/20210305_NE_mockData3_002.ome.tiff"


@pytest.fixture(scope="module")
def exported(imc_testdata, tmp_path_factory):
    """A model trained (tiny) by the CLI on a real ROI, and its package exported by the CLI."""
    folder = tmp_path_factory.mktemp("export")
    model, package = folder / "m.pt", folder / "m.zip"
    assert main(["train", str(imc_testdata / TRAIN), "-o", str(model), "--steps", "4", *TINY]) == 0
    assert main(["export", str(model), "--sample", str(imc_testdata / TRAIN), "-o", str(package),
                 "--author", "Ada Lovelace", "--name", "IMC VAE test panel"]) == 0
    return model, package


def test_bioimageio_test_passes_for_every_weight_format(exported):
    """The zoo's own test, through its command line."""
    pytest.importorskip("bioimageio.core", reason="the bmz extra (bioimageio.core) is not installed")
    _, package = exported
    cli = shutil.which("bioimageio", path=str(Path(sys.executable).parent))
    assert cli, "bioimageio.core is installed but its 'bioimageio' command is not beside this python"
    summary = package.with_suffix(".json")
    run = subprocess.run([cli, "test", str(package), "--summary", str(summary)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    details = json.loads(summary.read_text())["details"]
    reproduced = {d["name"] for d in details if d["name"].startswith("Reproduce test outputs") and
                  d["status"] == "passed"}
    assert any("pytorch_state_dict" in n for n in reproduced) and any("torchscript" in n for n in reproduced)
    assert all(d["status"] == "passed" for d in details), [(d["name"], d["status"]) for d in details]


def _tiffs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: tifffile.imread(p) for p in sorted(folder.glob("*.tif*"))}


@pytest.mark.parametrize("command", ["reconstruct", "motifs", "qc"])
def test_package_gives_the_model_files_outputs(exported, imc_testdata, tmp_path, command):
    model, package = exported
    image = str(imc_testdata / OTHER)
    outputs = {}
    for name, source in (("file", model), ("package", package)):
        out = tmp_path / name
        assert main([command, str(source), image, "-o", str(out)]) == 0
        outputs[name] = _tiffs(out)
    assert outputs["file"] and outputs["file"].keys() == outputs["package"].keys()
    for key, array in outputs["file"].items():
        np.testing.assert_allclose(outputs["package"][key], array, rtol=1e-5, atol=1e-5, err_msg=key)


def test_quality_of_the_package_is_the_model_files(exported, imc_testdata, capsys):
    model, package = exported
    reports = []
    for source in (model, package):
        capsys.readouterr()
        assert main(["quality", str(source), str(imc_testdata / OTHER), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        reports.append({k: v for k, v in report.items() if k not in ("model", "model_sha256")})
    assert reports[0] == reports[1] and reports[0]["report"]["model"]["r2"] is not None


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err)
    return err[-1]


def test_export_refuses_an_output_that_is_not_a_zip(exported, imc_testdata, tmp_path, capsys):
    model, _ = exported
    assert main(["export", str(model), "--sample", str(imc_testdata / TRAIN), "-o", str(tmp_path / "m.yaml")]) == 1
    assert "output must be a .zip file" in _error_line(capsys)
    assert not (tmp_path / "m.yaml").exists()


def test_export_names_the_channel_the_sample_lacks(exported, imc_testdata, tmp_path, capsys):
    from napari_imc_vae.io import read_imc

    model, _ = exported
    image = read_imc(imc_testdata / TRAIN)
    keep = [i for i, key in enumerate(image.channel_keys) if key != "Yb172"]
    lacking = tmp_path / "lacking.ome.tiff"
    tifffile.imwrite(lacking, image.data[keep], metadata={"axes": "CYX", "Channel": {
        "Name": [f"{image.channel_keys[i]}_{image.channel_names[i]}" for i in keep]}})
    assert main(["export", str(model), "--sample", str(lacking), "-o", str(tmp_path / "p.zip")]) == 1
    line = _error_line(capsys)
    assert "Yb172" in line or "H3K27Ac" in line
    assert not (tmp_path / "p.zip").exists()


def test_reconstruct_refuses_a_tampered_package_in_one_line(exported, imc_testdata, tmp_path, capsys):
    import zipfile

    _, package = exported
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(package) as z, zipfile.ZipFile(bad, "w") as out:
        for name in z.namelist():
            content = z.read(name)
            out.writestr(name, content[:-1] + bytes([content[-1] ^ 1]) if name == "weights_torchscript.pt" else content)
    assert main(["reconstruct", str(bad), str(imc_testdata / OTHER), "-o", str(tmp_path / "out")]) == 1
    line = _error_line(capsys)
    assert "weights_torchscript.pt (weights.torchscript) does not match its sha256" in line
