"""Every field of a real model file mutated (type, shape, range, bytes): through the CLI, each
mutation is one clean line naming the file and the field, exit 1 — no traceback, no crash."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_imc_vae.cli import main
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.engine.model_file.schema import HASH_KEY, stamp

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROI = "20210305_NE_mockData1_001"


@pytest.fixture(scope="module")
def real_model(imc_testdata, tmp_path_factory):
    """A 4-step model of one real steinbock ROI, saved: ``(path, its dict, the ROI's path)``."""
    from napari_imc_vae.engine.training.trainer import TrainConfig
    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.io import read_imc

    image_path = imc_testdata / "steinbock_img" / f"{ROI}.ome.tiff"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        trained, _ = TrainingRun(
            [read_imc(image_path)], model_config={"patch_size": 4, "latent_dim": 4, "width": 16, "depth": 1},
            train_config=TrainConfig(steps=4, batch_size=16, device="cpu", val_every=4, max_val_patches=32),
        ).run()
    finally:
        torch.set_num_threads(threads)
    path = trained.save(tmp_path_factory.mktemp("model") / "m.pt")
    return path, torch.load(path, weights_only=True), image_path


def _replace(d: dict, where: tuple, value) -> None:
    for key in where[:-1]:
        d = d[key]
    if value is _DELETE:
        del d[where[-1]]
    else:
        d[where[-1]] = value


_DELETE = object()
BAD_TYPES = ["abc", None, [1, 2], {"a": 1}, torch.zeros(2)]


def mutations(d: dict):
    """``(label, field named in the message, where, new value)``: each one a file must be refused for."""
    for key in ("model_config", "critic_config", "train_config", "state_dict", "step", "channel_names",
                "channel_keys", "normalizer", "history", "validation_history", "package_version",
                "optimizer_state", "format_version", HASH_KEY):
        yield f"del {key}", key, (key,), _DELETE
    for key in d:
        optional = key in ("optimizer_state", "baseline", "motifs", "rate_calibration")
        for bad in BAD_TYPES:
            if key == "format" or (bad is None and optional) or (bad == "abc" and key == "package_version"):
                continue
            yield f"{key}={bad!r:.20}", key, (key,), bad
    yield "format", "is not a napari-imc-vae model file", ("format",), "napari-imc-vae/other"
    yield "unknown field", "scheduler_state", ("scheduler_state",), {"last_epoch": 3}
    for v in (0, -1, 1.0, True, "2"):
        yield f"format_version={v!r}", "format_version", ("format_version",), v
    yield "format_version=99", "upgrade", ("format_version",), 99
    for v in (-5, 5.0, True, 2**70):
        yield f"step={v!r}", "step", ("step",), v
    for section, numbers in (("model_config", d["model_config"]), ("critic_config", d["critic_config"]),
                             ("train_config", d["train_config"])):
        for key, good in numbers.items():
            text = isinstance(good, str)
            bads = [5, None, [1]] if text else ["abc", [1], -1, math.nan, math.inf, 10**15]
            if key == "time_limit_s":
                bads = ["abc", -1.0, 0.0, math.nan, math.inf]
            for bad in bads:
                yield f"{section}.{key}={bad!r}", f"{section}.{key}", (section, key), bad
        yield f"{section}.unknown", f"{section}.bogus", (section, "bogus"), 1
    yield "depth=100000", "model_config.depth", ("model_config", "depth"), 100000
    yield "width=40000", "model_config.width", ("model_config", "width"), 40000
    yield "train_config.seed=2**32", "train_config.seed", ("train_config", "seed"), 2**32
    yield "train_config.batch_size=0", "train_config.batch_size", ("train_config", "batch_size"), 0
    yield "latent 5 (weights of latent 4)", "state_dict", ("model_config", "latent_dim"), 5
    for name, t in d["state_dict"].items():
        where = ("state_dict", name)
        field = f"state_dict.{name}"
        yield f"{name} shape", field, where, torch.zeros(*t.shape, 2)
        yield f"{name} float64", field, where, t.double()
        yield f"{name} int", field, where, t.long()
        yield f"{name} NaN", field, where, t.clone().reshape(-1).index_fill(0, torch.tensor([0]), math.nan).reshape(t.shape)
        yield f"{name} Inf", field, where, t.clone().reshape(-1).index_fill(0, torch.tensor([0]), math.inf).reshape(t.shape)
        yield f"{name} text", field, where, "abc"
        if t.numel() > 1:  # every element one memory location: fused kernels would read past it
            yield f"{name} stride 0", field, where, torch.zeros(1).expand(*t.shape)
    yield "state_dict extra", "state_dict", ("state_dict", "extra.weight"), torch.zeros(2)
    yield "state_dict missing", "state_dict", ("state_dict", next(iter(d["state_dict"]))), _DELETE
    opt = ("optimizer_state",)
    yield "opt no groups", "optimizer_state", opt + ("param_groups",), _DELETE
    yield "opt groups []", "optimizer_state.param_groups", opt + ("param_groups",), []
    yield "opt params short", "optimizer_state.param_groups[0].params", opt + ("param_groups", 0, "params"), [0, 1]
    for key, bad in (("lr", "abc"), ("lr", math.nan), ("betas", (0.9,)), ("betas", (0.9, 2.0)), ("eps", 0.0),
                     ("weight_decay", -1.0), ("amsgrad", "yes"), ("fused", 3), ("params", "abc")):
        yield f"opt group {key}={bad!r}", f"optimizer_state.param_groups[0].{key}", \
            opt + ("param_groups", 0, key), bad
    state = d["optimizer_state"]["state"]
    for index in list(state)[:3]:
        entry = state[index]
        where = opt + ("state", index)
        field = f"optimizer_state.state[{index}]"
        shape = entry["exp_avg"].shape
        yield f"opt {index} exp_avg shape", f"{field}.exp_avg", where + ("exp_avg",), torch.zeros(*shape, 3)
        yield f"opt {index} exp_avg 1 element", f"{field}.exp_avg", where + ("exp_avg",), torch.zeros(1)
        yield f"opt {index} exp_avg_sq < 0", f"{field}.exp_avg_sq", where + ("exp_avg_sq",), -torch.ones(shape)
        yield f"opt {index} exp_avg NaN", f"{field}.exp_avg", where + ("exp_avg",), torch.full(shape, math.nan)
        yield f"opt {index} exp_avg float64", f"{field}.exp_avg", where + ("exp_avg",), torch.zeros(shape, dtype=torch.float64)
        yield f"opt {index} step NaN", f"{field}.step", where + ("step",), torch.tensor(math.nan)
        yield f"opt {index} step -1", f"{field}.step", where + ("step",), -1.0
        yield f"opt {index} step text", f"{field}.step", where + ("step",), "abc"
        yield f"opt {index} extra", field, where + ("momentum_buffer",), torch.zeros(shape)
        yield f"opt {index} text", field, where, "abc"
    yield "opt state 999", "optimizer_state.state", opt + ("state", 999), copy.deepcopy(state[next(iter(state))])
    yield "opt state text key", "optimizer_state.state", opt + ("state", "x"), {}
    names = d["channel_names"]
    yield "channel_names reordered", "channel_names", ("channel_names",), names[::-1]
    yield "channel_names ints", "channel_names", ("channel_names",), list(range(len(names)))
    yield "channel_keys short", "channel_keys", ("channel_keys",), d["channel_keys"][:2]
    norm = ("normalizer",)
    yield "normalizer std < 0", "normalizer", norm + ("channels", "std"), [-1.0] * len(names)
    yield "normalizer mean NaN", "normalizer", norm + ("channels", "mean"), [math.nan] * len(names)
    yield "normalizer 2 channels", "normalizer", norm + ("channel_names",), names[:2]
    yield "normalizer params bogus", "normalizer", norm + ("params", "bogus"), 1
    yield "normalizer version 0", "normalizer", norm + ("format_version",), 0
    for field in ("history", "validation_history"):
        yield f"{field} of text", field, (field,), ["abc"]
        yield f"{field} value text", f"{field}[0].loss", (field, 0, "loss"), "abc"
        yield f"{field} int key", f"{field}[0]", (field, 0, 3), 1.0
        yield f"{field} None entry", f"{field}[0]", (field, 0), None
    base = ("baseline",)
    yield "baseline components shape", "baseline", base + ("components",), torch.zeros(3, 7)
    yield "baseline mean NaN", "baseline", base + ("mean",), torch.full_like(d["baseline"]["mean"], math.nan)
    yield "baseline channels 3", "baseline", base + ("channels",), 3
    yield "baseline k 0", "baseline", base + ("k",), 0
    yield "baseline info text", "baseline.info", base + ("info",), "abc"
    yield "baseline info nested", "baseline.info.k", base + ("info", "k"), {"a": 1}
    mot = ("motifs",)
    centers = d["motifs"]["centers"]
    yield "motif centres NaN", "motifs.centers", mot + ("centers",), torch.full_like(centers, math.nan)
    yield "motif centres Inf", "motifs.centers", mot + ("centers",), torch.full_like(centers, math.inf)
    yield "motif centres wide", "motifs.centers", mot + ("centers",), torch.zeros(centers.shape[0], 9)
    yield "motif centres 1-D", "motifs.centers", mot + ("centers",), torch.zeros(4)
    yield "motif centres int", "motifs.centers", mot + ("centers",), centers.long()
    yield "motif centres 0 rows", "motifs.centers", mot + ("centers",), torch.zeros(0, centers.shape[1])
    yield "motif seed -1", "motifs.seed", mot + ("seed",), -1
    yield "motif extra key", "motifs", mot + ("k",), 6
    rate = ("rate_calibration",)
    factors = d["rate_calibration"]["factors"]
    yield "rate factor NaN", "rate_calibration.factors[0]", rate + ("factors", 0), math.nan
    yield "rate factor Inf", "rate_calibration.factors[0]", rate + ("factors", 0), math.inf
    yield "rate factor 0", "rate_calibration.factors[0]", rate + ("factors", 0), 0.0
    yield "rate factor 3", "rate_calibration.factors[0]", rate + ("factors", 0), 3.0
    yield "rate factor text", "rate_calibration.factors[0]", rate + ("factors", 0), "abc"
    yield "rate factor True", "rate_calibration.factors[0]", rate + ("factors", 0), True
    yield "rate factors short", "rate_calibration.factors", rate + ("factors",), factors[:-1]
    yield "rate factors long", "rate_calibration.factors", rate + ("factors",), factors + [1.0]
    yield "rate factors tensor", "rate_calibration.factors", rate + ("factors",), torch.ones(len(factors))
    yield "rate factors missing", "rate_calibration", rate + ("factors",), _DELETE
    yield "rate measured_on int", "rate_calibration.measured_on", rate + ("measured_on",), 3
    yield "rate extra key", "rate_calibration", rate + ("bias",), [0.0] * len(factors)


def _one_clean_line(rc: int, err: str, path, field: str, label: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 1, f"{label}: exit {rc}"
    assert len(lines) == 1, f"{label}: {err}"
    assert lines[0].startswith("napari-imc-vae quality: error: "), f"{label}: {lines[0]}"
    assert str(path) in lines[0] and field in lines[0], f"{label}: {lines[0]}"
    assert "Traceback" not in err


def test_every_field_mutated_is_one_clean_line(real_model, tmp_path, capsys):
    path, d, image = real_model
    cases = list(mutations(d))
    assert len(cases) > 300
    for i, (label, field, where, value) in enumerate(cases):
        mutated = copy.deepcopy(d)
        _replace(mutated, where, value)
        if where[0] != HASH_KEY:
            mutated = stamp(mutated)  # a consistent hash: the schema, not the hash, must refuse it
        bad = tmp_path / f"m{i}.pt"
        torch.save(mutated, bad)
        rc = main(["quality", str(bad), str(image)])
        _one_clean_line(rc, capsys.readouterr().err, bad, field, label)
        bad.unlink()


def test_an_unchanged_copy_still_loads(real_model, tmp_path):
    """The control: re-saving the same dict with its hash gives a file that loads."""
    path, d, _ = real_model
    torch.save(stamp(copy.deepcopy(d)), tmp_path / "same.pt")
    assert TrainedModel.load(tmp_path / "same.pt").step == 4


@pytest.mark.parametrize(("outside", "seed"), [(False, 18), (True, 19)], ids=["in_data", "outside_data"])
def test_flipped_bytes_are_refused(real_model, tmp_path, capsys, outside, seed):
    """In the data records (pickle and tensors: ~85% of this small file, ~100% of a real one), or
    outside them: zip headers, timestamps, alignment padding, central directory, the comment with
    the file's SHA-256 (no loaded value covers those; before the file hash such files loaded)."""
    path, _, image = real_model
    raw = path.read_bytes()
    rng = np.random.default_rng(seed)
    for i, position in enumerate(_data_positions(path, rng, 40, outside=outside)):
        content = bytearray(raw)
        content[position] ^= 1 << int(rng.integers(8))
        bad = tmp_path / f"flip{i}.pt"
        bad.write_bytes(bytes(content))
        rc = main(["quality", str(bad), str(image)])
        err = capsys.readouterr().err
        assert rc == 1 and len(err.strip().splitlines()) == 1 and str(bad) in err, (position, err)
        assert "damaged" in err or "corrupt" in err or "refused" in err, err


def _data_positions(path, rng, n: int, *, outside: bool = False) -> list[int]:
    """``n`` byte positions inside the zip records' data, or (``outside``) anywhere else in the file."""
    import struct
    import zipfile

    spans = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            f.seek(info.header_offset)
            name_len, extra_len = struct.unpack("<HH", f.read(30)[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            spans.append((start, start + info.compress_size))
    positions = np.concatenate([np.arange(a, b) for a, b in spans if b > a])
    if outside:
        positions = np.setdiff1d(np.arange(path.stat().st_size), positions)
    return sorted(int(p) for p in rng.choice(positions, n, replace=False))


def test_resume_with_a_wrong_shaped_optimizer_tensor_does_not_crash(real_model, tmp_path):
    """This file made ``train --resume`` end in a segmentation fault (exit 139)."""
    path, d, image = real_model
    mutated = copy.deepcopy(d)
    first = next(iter(mutated["optimizer_state"]["state"]))
    mutated["optimizer_state"]["state"][first]["exp_avg"] = torch.zeros(1)
    bad = tmp_path / "bad_optimizer.pt"
    torch.save(stamp(mutated), bad)
    out = subprocess.run([sys.executable, "-m", "napari_imc_vae", "train", str(image), "--resume", str(bad),
                          "--steps", "2", "--device", "cpu", "-o", str(tmp_path / "out.pt")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-imc-vae train: error: model file"), out.stderr
    assert f"field optimizer_state.state[{first}].exp_avg: must have shape" in lines[0]
    assert not (tmp_path / "out.pt").exists()


def test_a_flipped_byte_via_subprocess_names_the_file(real_model, tmp_path):
    path, _, image = real_model
    content = bytearray(path.read_bytes())
    position = _data_positions(path, np.random.default_rng(1), 1)[0]
    content[position] ^= 0x10
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(content))
    out = subprocess.run([sys.executable, "-m", "napari_imc_vae", "quality", str(bad), str(image)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "damaged" in lines[0], out.stderr


@pytest.mark.parametrize("n", [1, 200])
def test_bytes_appended_to_the_file_are_one_clean_line(real_model, tmp_path, capsys, n):
    path, _, image = real_model
    bad = tmp_path / f"appended{n}.pt"
    bad.write_bytes(path.read_bytes() + b"\n" * n)
    rc = main(["quality", str(bad), str(image)])
    were = "1 byte was" if n == 1 else f"{n} bytes were"
    _one_clean_line(rc, capsys.readouterr().err, bad, f"{were} added after the end of the saved file", f"+{n}")
