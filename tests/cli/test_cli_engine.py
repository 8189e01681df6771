"""The train / reconstruct / quality commands on the real test data, and their one-line errors."""

import json
import re

import numpy as np
import pytest
import tifffile
import torch

from napari_imc_vae.cli import build_parser, main

TINY = ["--patch", "4", "--latent", "4", "--width", "32", "--depth", "1", "--batch", "16", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def no_nan_json(text: str):
    def refuse(token):
        raise AssertionError(f"non-finite {token} in JSON output")

    return json.loads(text, parse_constant=refuse)


def one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"napari-imc-vae {command}: error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def ome_files(imc_testdata):
    return sorted((imc_testdata / "steinbock_img").glob("*.ome.tiff"))


@pytest.fixture(scope="module")
def model_file(ome_files, tmp_path_factory):
    """A tiny model trained from two OME-TIFFs (in this process, through main)."""
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model") / "m.pt"
    assert main(["train", *map(str, ome_files[:2]), "-o", str(path), "--steps", "12", *TINY]) == 0
    return path


def test_train_writes_a_model_and_reports(ome_files, tmp_path, capsys):
    path = tmp_path / "sub" / "m.pt"
    args = ["train", str(ome_files[0]), str(ome_files[3]), "-o", str(path), "--steps", "7", *TINY,
            "--seed", "2", "--lr", "0.002", "--arch", "conv"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert re.search(r"training on cpu: 2 image\(s\), 5 channels", out)
    assert "done after 7 steps" in out and "validation (best, step 7)" in out
    for key in ("loss=", "mse=", "kld_loss=", "perm_loss=", "r2=", "sharpness_ratio=", "diversity_ratio=",
                "active_units=", "perm_accuracy="):
        assert key in out, key
    assert "nan" not in out.lower()
    assert "train [" in err and "7/7" in err  # the progress bar
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

    trained = TrainedModel.load(path)
    cfg = trained.model.config
    assert (cfg.patch_size, cfg.latent_dim, cfg.width, cfg.depth, cfg.arch) == (4, 4, 32, 1, "conv")
    assert trained.step == 7 and trained.train_config.seed == 2 and trained.train_config.lr == 0.002
    assert trained.channel_names == ["Ag107", "Cytokeratin 5", "Laminin", "YBX1", "H3K27Ac"]
    # the default normalization: hot pixels 50, arcsinh(x/5), z-score
    p = trained.normalizer.params
    assert (p.hot_pixel_threshold, p.arcsinh_cofactor, p.clip_percentile, p.zscore) == (50.0, 5.0, None, True)


def test_train_options_reach_the_configs(ome_files, tmp_path, capsys):
    path = tmp_path / "m.pt"
    args = ["train", str(ome_files[0]), "-o", str(path), "--steps", "2", *TINY,
            "--cosine-weight", "0.25", "--gradient-weight", "2", "--kld-scale", "0.01", "--free-bits", "0.5",
            "--perm-scale", "0.1", "--hot-pixel", "off", "--arcsinh", "1", "--clip", "99.9", "--no-zscore",
            "--time-limit", "60"]
    assert main(args) == 0
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

    t = TrainedModel.load(path)
    c = t.critic_config
    assert (c.cosine_weight, c.gradient_weight, c.kld_scale, c.free_bits, c.perm_loss_scale) == (
        0.25, 2.0, 0.01, 0.5, 0.1)
    p = t.normalizer.params
    assert (p.hot_pixel_threshold, p.arcsinh_cofactor, p.clip_percentile, p.zscore) == (None, 1.0, 99.9, False)
    assert t.train_config.time_limit_s == 60.0


def test_help_defaults_match_the_engine():
    from napari_imc_vae.engine.model.critic import CriticConfig
    from napari_imc_vae.engine.model.vae import ModelConfig
    from napari_imc_vae.engine.training.trainer import TrainConfig

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    expected = {"steps": TrainConfig.steps, "batch": TrainConfig.batch_size, "lr": TrainConfig.lr,
                "seed": TrainConfig.seed, "patch": ModelConfig.patch_size, "latent": ModelConfig.latent_dim,
                "width": ModelConfig.width, "depth": ModelConfig.depth, "cosine_weight": CriticConfig.cosine_weight,
                "gradient_weight": CriticConfig.gradient_weight, "kld_scale": CriticConfig.kld_scale,
                "free_bits": CriticConfig.free_bits, "perm_scale": CriticConfig.perm_loss_scale}
    for dest, value in expected.items():
        shown = float(re.search(r"default ([0-9.e-]+)", helps[dest]).group(1))
        assert shown == pytest.approx(float(value)), dest
    # argparse itself defaults to None: the engine's dataclasses decide
    args = parser.parse_args(["train", "x.tiff", "-o", "m.pt"])
    assert all(getattr(args, d) is None for d in expected)
    from napari_imc_vae.engine.training.budget import DEFAULT_BUDGET, PRESETS

    assert f"default {DEFAULT_BUDGET}" in helps["budget"] and args.budget is None
    assert all(f"{name} ({minutes:g} min)" in helps["budget"] for name, minutes in PRESETS.items())


def test_folders_and_mcd_acquisitions(imc_testdata, tmp_path, capsys):
    assert main(["train", str(imc_testdata / "steinbock_img"), "-o", str(tmp_path / "a.pt"), "--steps", "1",
                 *TINY]) == 0
    assert "15 image(s)" in capsys.readouterr().out
    pytest.importorskip("readimc", reason="the mcd extra (readimc) is not installed")
    mcd = imc_testdata / "raw" / "20210305_NE_mockData2.mcd"
    assert main(["train", str(mcd), "-o", str(tmp_path / "b.pt"), "--steps", "1", *TINY]) == 0
    assert "3 image(s)" in capsys.readouterr().out
    assert main(["train", str(mcd), "--acquisition", "ROI_002", "-o", str(tmp_path / "c.pt"), "--steps", "1",
                 *TINY]) == 0
    assert "1 image(s)" in capsys.readouterr().out
    # raw/ holds each acquisition as .mcd and as .txt: the .mcd files are used, not both
    assert main(["train", str(imc_testdata / "raw"), "-o", str(tmp_path / "d.pt"), "--steps", "1", *TINY]) == 0
    assert "15 image(s)" in capsys.readouterr().out


def test_resume_continues_the_step_count(model_file, ome_files, tmp_path, capsys):
    out = tmp_path / "resumed.pt"
    assert main(["train", str(ome_files[4]), "-o", str(out), "--resume", str(model_file), "--steps", "3",
                 "--device", "cpu", "--batch", "16", "--hot-pixel", "10"]) == 0
    captured = capsys.readouterr()
    assert "resuming from step 12" in captured.out and "done after 15 steps" in captured.out
    assert "normalization options ignored" in captured.err
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel

    t = TrainedModel.load(out)
    assert t.step == 15 and len(t.history) == 15
    assert t.normalizer.to_dict() == TrainedModel.load(model_file).normalizer.to_dict()


def test_reconstruct_writes_every_output(model_file, ome_files, tmp_path, capsys):
    image = ome_files[7]
    outdir = tmp_path / "out"
    assert main(["reconstruct", str(model_file), str(image), "-o", str(outdir), "--stride", "2",
                 "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    stem = image.name[: -len(".ome.tiff")]
    names = {f"{stem}_recon.ome.tiff", f"{stem}_error.tiff", f"{stem}_latent.tiff", f"{stem}_quality.json",
             f"{stem}_motifs.tiff", f"{stem}_motifs.csv", f"{stem}_hotpixels.tiff", f"{stem}_regions.csv"}
    assert {p.name for p in outdir.iterdir()} == names
    assert "reconstruct [" in err and "reconstructing" in out

    from napari_imc_vae.io import read_imc

    original = read_imc(image)
    recon = tifffile.imread(outdir / f"{stem}_recon.ome.tiff")
    assert recon.shape == original.shape and recon.dtype == np.float32 and np.isfinite(recon).all()
    with tifffile.TiffFile(outdir / f"{stem}_recon.ome.tiff") as tf:
        assert tf.is_ome and "Pr141_Cytokeratin 5" in tf.ome_metadata
    # our own reader recovers the panel, so the reconstruction can be fed back to the model
    back = read_imc(outdir / f"{stem}_recon.ome.tiff")
    assert back.channel_names == original.channel_names and back.channel_keys == original.channel_keys
    error = tifffile.imread(outdir / f"{stem}_error.tiff")
    assert error.shape == original.shape[1:] and np.isfinite(error).all() and (error >= 0).all()
    latent = tifffile.imread(outdir / f"{stem}_latent.tiff")
    _, h, w = original.shape
    assert latent.shape == (4, -(-h // 2), -(-w // 2))  # one latent per stride-2 grid point
    # the raw-unit reconstruction is what apply_model gives
    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
    from napari_imc_vae.engine.apply.inference import apply_model

    np.testing.assert_allclose(recon, apply_model(TrainedModel.load(model_file), original, stride=2).raw)

    q = no_nan_json((outdir / f"{stem}_quality.json").read_text())
    assert q["n_patches"] == ((h - 4) // 2 + 1) * ((w - 4) // 2 + 1) and q["stride"] == 2 and q["patch_size"] == 4
    # the baseline is the one stored in the model file, fitted on the model's training patches
    assert "training patches" in q["baseline"] and "20210305_NE_mockData1_001" in q["baseline"]
    report = q["report"]
    assert {"model", "pca", "mean", "verdicts", "latent_dim", "pca_k"} <= set(report)
    assert report["latent_dim"] == 4 and report["verdicts"]
    assert isinstance(report["model"]["r2"], float)


def test_extra_channels_are_ignored_with_one_line(model_file, ome_files, tmp_path, capsys):
    from napari_imc_vae.io import read_imc

    original = read_imc(ome_files[7])
    labels = [n if n == m else f"{m}_{n}" for n, m in zip(original.channel_names, original.metals)]
    extra = np.full((1, *original.shape[1:]), 7.0, np.float32)
    wider = tmp_path / "wider.ome.tiff"
    tifffile.imwrite(wider, np.concatenate([original.data[:2], extra, original.data[2:]]), photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": [*labels[:2], "Gd155_CD3", *labels[2:]]}})
    note = "ignoring channels not in the model: CD3"
    assert main(["reconstruct", str(model_file), str(wider), "-o", str(tmp_path / "w"), "--stride", "2",
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "ignoring" in line] == [f"napari-imc-vae: note: {note}"]
    assert main(["reconstruct", str(model_file), str(ome_files[7]), "-o", str(tmp_path / "o"), "--stride", "2",
                 "--device", "cpu"]) == 0
    assert "ignoring" not in capsys.readouterr().err
    stem = ome_files[7].name[: -len(".ome.tiff")]
    recon = tifffile.imread(tmp_path / "w" / "wider_recon.ome.tiff")
    assert recon.shape == original.shape  # the model's five channels, not six
    np.testing.assert_array_equal(recon, tifffile.imread(tmp_path / "o" / f"{stem}_recon.ome.tiff"))
    wide_q = no_nan_json((tmp_path / "w" / "wider_quality.json").read_text())
    q = no_nan_json((tmp_path / "o" / f"{stem}_quality.json").read_text())
    assert wide_q["report"] == q["report"]
    # quality: the note on stderr, the JSON on stdout untouched
    assert main(["quality", str(model_file), str(wider), "--json", "--device", "cpu", "--stride", "2"]) == 0
    out, err = capsys.readouterr()
    assert note in err and no_nan_json(out)["report"] == q["report"]


def test_reconstruct_and_quality_give_the_same_report(model_file, ome_files, tmp_path, capsys):
    """reconstruct cuts the quality patches from the rows it normalized; quality normalizes its own."""
    assert main(["reconstruct", str(model_file), str(ome_files[4]), "-o", str(tmp_path), "--device", "cpu"]) == 0
    stem = ome_files[4].name[: -len(".ome.tiff")]
    from_reconstruct = no_nan_json((tmp_path / f"{stem}_quality.json").read_text())
    capsys.readouterr()
    assert main(["quality", str(model_file), str(ome_files[4]), "--json", "--device", "cpu"]) == 0
    from_quality = no_nan_json(capsys.readouterr().out)
    assert from_reconstruct["report"] == from_quality["report"]
    assert from_reconstruct["n_patches"] == from_quality["n_patches"] > 0


def test_quality_text_and_json(model_file, ome_files, capsys):
    assert main(["quality", str(model_file), str(ome_files[9]), "--json", "--device", "cpu"]) == 0
    d = no_nan_json(capsys.readouterr().out)
    _, h, w = d["shape"]
    assert d["image"] == str(ome_files[9])
    assert d["report"]["n_val"] == d["n_patches"] == ((h - 4) // 2 + 1) * ((w - 4) // 2 + 1)
    assert main(["quality", str(model_file), str(ome_files[9])]) == 0
    out = capsys.readouterr().out
    assert f"Quality on {d['n_patches']} patches of this image" in out and "Verdicts:" in out and "PCA-4" in out


def test_reconstruct_an_mcd_acquisition(model_file, imc_testdata, tmp_path, capsys):
    pytest.importorskip("readimc", reason="the mcd extra (readimc) is not installed")
    mcd = imc_testdata / "raw" / "20210305_NE_mockData2.mcd"
    assert main(["reconstruct", str(model_file), str(mcd), "--acquisition", "ROI_003", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "20210305_NE_mockData2_ROI_003_recon.ome.tiff").is_file()
    # channels are matched by metal: the .mcd names them differently from the OME-TIFFs
    assert no_nan_json((tmp_path / "20210305_NE_mockData2_ROI_003_quality.json").read_text())["report"]


# --- errors: one line on stderr, exit 1 ----------------------------------------------------------


def test_corrupt_and_pickled_model_files(ome_files, model_file, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(model_file.read_bytes()[:500])
    assert main(["reconstruct", str(bad), str(ome_files[0]), "-o", str(tmp_path / "o")]) == 1
    assert f"model file {bad} is cut short: 500 bytes" in one_line_error(capsys.readouterr().err, "reconstruct")
    assert not (tmp_path / "o").exists()
    evil = tmp_path / "evil.pt"
    torch.save({"format": "napari-imc-vae/model", "f": print}, evil)
    assert main(["quality", str(evil), str(ome_files[0])]) == 1
    assert "refused" in one_line_error(capsys.readouterr().err, "quality")
    assert main(["train", str(ome_files[0]), "-o", str(tmp_path / "x.pt"), "--resume", str(bad)]) == 1
    assert "bad.pt" in one_line_error(capsys.readouterr().err, "train")


def test_model_for_another_panel(model_file, tmp_path, capsys):
    other = tmp_path / "other.ome.tiff"
    tifffile.imwrite(other, np.ones((3, 20, 20), np.float32),
                     metadata={"axes": "CYX", "Channel": {"Name": ["Ag107", "Pr141_Cytokeratin 5", "Gd155_CD3"]}})
    assert main(["reconstruct", str(model_file), str(other), "-o", str(tmp_path / "o")]) == 1
    line = one_line_error(capsys.readouterr().err, "reconstruct")
    assert "missing Sm147, Eu153, Yb172; extra Gd155 " in line
    assert main(["quality", str(model_file), str(other)]) == 1
    assert "missing" in one_line_error(capsys.readouterr().err, "quality")


def test_image_smaller_than_the_patch(model_file, ome_files, tmp_path, capsys):
    assert main(["train", str(ome_files[0]), "-o", str(tmp_path / "m.pt"), "--steps", "1", "--patch", "64",
                 "--device", "cpu"]) == 1
    assert "patch size 64 is larger than every image (60×60 px)" in one_line_error(capsys.readouterr().err, "train")
    assert not (tmp_path / "m.pt").exists()
    tiny = tmp_path / "tiny.ome.tiff"
    from napari_imc_vae.io import read_imc

    src = read_imc(ome_files[0])
    names = [n if n == m else f"{m}_{n}" for n, m in zip(src.channel_names, src.metals)]
    tifffile.imwrite(tiny, src.data[:, :3, :3], photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": names}})
    assert main(["quality", str(model_file), str(tiny)]) == 1
    assert "smaller than the model's 4×4 patch" in one_line_error(capsys.readouterr().err, "quality")
    # reconstruction works at any size; the quality file says why it has no report
    assert main(["reconstruct", str(model_file), str(tiny), "-o", str(tmp_path / "o")]) == 0
    q = no_nan_json((tmp_path / "o" / "tiny_quality.json").read_text())
    assert q["report"] is None and "smaller" in q["reason"]
    assert tifffile.imread(tmp_path / "o" / "tiny_recon.ome.tiff").shape == (5, 3, 3)


def test_unknown_device_lists_the_available(model_file, ome_files, tmp_path, capsys):
    assert main(["train", str(ome_files[0]), "-o", str(tmp_path / "m.pt"), "--device", "tpu"]) == 1
    line = one_line_error(capsys.readouterr().err, "train")
    assert "'tpu'" in line and re.search(r"available: auto, .*cpu", line)
    assert main(["quality", str(model_file), str(ome_files[0]), "--device", "cuda:42"]) == 1
    assert "available" in one_line_error(capsys.readouterr().err, "quality")


def test_training_failure_is_one_line(ome_files, tmp_path, capsys):
    assert main(["train", str(ome_files[0]), "-o", str(tmp_path / "m.pt"), "--steps", "50", *TINY,
                 "--lr", "1e30"]) == 1
    line = one_line_error(capsys.readouterr().err, "train")
    assert "the loss became" in line and "lower learning rate" in line
    assert not (tmp_path / "m.pt").exists()


def test_bad_values_and_usage(ome_files, tmp_path, capsys):
    for flag, value, expected in (("--steps", "0", "expected a whole number >= 1, got 0"),
                                  ("--kld-scale", "-1", "expected a finite number >= 0, got -1")):
        with pytest.raises(SystemExit) as e:  # refused by the option's type, before any work (#18)
            main(["train", str(ome_files[0]), "-o", str(tmp_path / "m.pt"), flag, value])
        assert e.value.code == 2 and f"argument {flag}: {expected}" in capsys.readouterr().err
    assert main(["train", str(ome_files[0]), "-o", str(tmp_path / "m.pt"), "--arcsinh", "0", *TINY]) == 1
    assert "arcsinh_cofactor" in one_line_error(capsys.readouterr().err, "train")
    assert main(["train", str(tmp_path / "missing.ome.tiff"), "-o", str(tmp_path / "m.pt")]) == 1
    assert "missing.ome.tiff" in one_line_error(capsys.readouterr().err, "train")
    for argv in (["train", str(ome_files[0])], ["reconstruct", "m.pt", "x.tiff"], ["quality", "m.pt"],
                 ["train", "x", "-o", "m.pt", "--arch", "transformer"], ["train", "x", "-o", "m", "--clip", "lots"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    capsys.readouterr()
