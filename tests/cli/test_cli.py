"""The command line: diagnose on every real acquisition, JSON without NaN, clean errors."""

import json
import subprocess
import sys

import pytest

from napari_imc_vae.cli import main

# every acquisition of the real test data, by format
GROUPS = {
    "mcd": "raw/*.mcd",
    "txt": "raw/*.txt",
    "ome-imctools": "ometiff_imctools/*.ome.tiff",
    "ome-steinbock": "steinbock_img/*.ome.tiff",
    "tiff-hpf50": "steinbock_img_hpf50/*.tiff",
}


def _no_nan(text: str) -> dict:
    def refuse(token):
        raise AssertionError(f"non-finite {token} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _targets(imc_testdata, pattern):
    if pattern.startswith("raw/"):
        pytest.importorskip("readimc", reason="the mcd extra (readimc) is not installed")
    from napari_imc_vae.io import list_acquisitions

    files = sorted(imc_testdata.glob(pattern))
    assert files, pattern
    for path in files:
        for acq in list_acquisitions(path):
            yield path, acq


@pytest.mark.slow
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_diagnose_every_acquisition_json(imc_testdata, group, capsys):
    n = 0
    for i, (path, acq) in enumerate(_targets(imc_testdata, GROUPS[group])):
        # alternate plain z-score and the full pipeline
        options = ["--hot-pixel", "off", "--arcsinh", "off"] if i % 2 else ["--clip", "99.9"]
        assert main(["diagnose", str(path), "--acquisition", acq, "--json", *options]) == 0
        out = capsys.readouterr().out
        d = _no_nan(out)
        c = d["shape"][0]
        assert c == 5 and len(d["before"]) == len(d["after"]) == len(d["channels"]) == c
        assert d["source"] == str(path)
        assert isinstance(d["verdicts"]["normalized_ok"], bool)
        # fitted on the image itself, z-scoring always passes
        assert d["verdicts"]["normalized_ok"], d["verdicts"]["offenders"]
        n += 1
    expected = {"mcd": 15, "txt": 15, "ome-imctools": 3, "ome-steinbock": 15, "tiff-hpf50": 15}
    assert n == expected[group]


def test_diagnose_text_output(imc_testdata, capsys):
    path = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"
    assert main(["diagnose", str(path), "--arcsinh", "5"]) == 0
    out = capsys.readouterr().out
    assert "Before normalization" in out and "After normalization" in out
    assert "Channel scale" in out and "nan" not in out.lower()


def test_diagnose_mcd_acquisition_choice(imc_testdata, capsys):
    pytest.importorskip("readimc")
    path = imc_testdata / "raw" / "20210305_NE_mockData2.mcd"
    assert main(["diagnose", str(path), "--json"]) == 0  # every acquisition, with a cohort summary
    cohort = _no_nan(capsys.readouterr().out)
    assert [im["acquisition"] for im in cohort["images"]] == ["ROI_001", "ROI_002", "ROI_003"]
    assert main(["diagnose", str(path), "--acquisition", "2", "--json"]) == 0  # 0-based index
    assert _no_nan(capsys.readouterr().out)["acquisition"] == "ROI_003"


def test_diagnose_missing_file(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "nope.ome.tiff")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "nope.ome.tiff" in err
    assert "Traceback" not in err


def test_diagnose_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "broken.tiff"
    bad.write_bytes(b"II*\x00" + b"\x17" * 40)
    assert main(["diagnose", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("napari-imc-vae diagnose: error:") and "broken.tiff" in err
    assert err.count("\n") == 1


def test_diagnose_bad_parameter(imc_testdata, capsys):
    path = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"
    assert main(["diagnose", str(path), "--arcsinh", "0"]) == 1
    assert "arcsinh_cofactor must be > 0" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["diagnose"])
    assert e.value.code == 2


def test_console_script_help_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "napari_imc_vae", "--help"],
                         capture_output=True, text=True, check=True)
    assert "diagnose" in out.stdout
    out = subprocess.run([sys.executable, "-m", "napari_imc_vae", "diagnose", "/nonexistent/x.mcd"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "x.mcd" in out.stderr


def test_diagnose_and_train_share_the_default_normalization(imc_testdata, capsys):
    from napari_imc_vae.cli import build_parser
    from napari_imc_vae.cli._arguments import normalization_from_args
    from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION

    path = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"
    assert main(["diagnose", str(path), "--json"]) == 0
    assert _no_nan(capsys.readouterr().out)["normalization"] == DEFAULT_NORMALIZATION.to_dict()
    assert DEFAULT_NORMALIZATION.to_dict() == {"hot_pixel_threshold": 50.0, "arcsinh_cofactor": 5.0,
                                               "clip_percentile": None, "zscore": True}
    train = build_parser().parse_args(["train", str(path), "-o", "m.pt"])
    assert normalization_from_args(train) == DEFAULT_NORMALIZATION
    for command in ("diagnose", "train"):
        help_text = subprocess.run([sys.executable, "-m", "napari_imc_vae", command, "--help"],
                                   capture_output=True, text=True, check=True).stdout
        assert f"(default: {DEFAULT_NORMALIZATION.describe()})" in help_text


@pytest.mark.parametrize("command", ["diagnose", "train"])
def test_every_normalization_step_accepts_off(imc_testdata, command, capsys):
    from napari_imc_vae.cli import build_parser
    from napari_imc_vae.cli._arguments import normalization_from_args

    path = imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff"
    off = ["--hot-pixel", "off", "--arcsinh", "off", "--clip", "off", "--zscore", "off"]
    extra = ["-o", "m.pt"] if command == "train" else []
    params = normalization_from_args(build_parser().parse_args([command, str(path), *extra, *off]))
    assert params.to_dict() == {"hot_pixel_threshold": None, "arcsinh_cofactor": None,
                                "clip_percentile": None, "zscore": False}
    if command == "diagnose":
        assert main(["diagnose", str(path), "--json", *off]) == 0
        d = _no_nan(capsys.readouterr().out)
        assert d["normalization"] == params.to_dict()
        assert d["after"] == d["before"]  # every step off: the identity
