"""Model files: plain-data round trip, atomic writes, refused pickles, corrupt files, panel matching."""

import os
import pathlib
import re
import time
import zipfile

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.model_file import checkpoint
from napari_imc_vae.engine.model_file import schema
from napari_imc_vae.engine.model_file.checkpoint import ChannelMismatchError, ModelFileError, TrainedModel
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.apply.inference import apply_model
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import ImcImage

METALS = ["Ag107", "Pr141", "Sm147", "Eu153"]
NAMES = ["Ag107", "Cytokeratin 5", "Laminin", "YBX1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def imc_image(seed: int = 0, size: int = 24, names=NAMES, metals=METALS) -> ImcImage:
    rng = np.random.default_rng(seed)
    data = rng.poisson(5.0, size=(len(names), size, size)).astype(np.float32)
    return ImcImage(data, list(names), metals=list(metals), labels=list(names), source=f"img{seed}.ome.tiff")


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    torch.set_num_threads(1)
    run = TrainingRun(
        [imc_image(0), imc_image(1)],
        model_config={"patch_size": 4, "latent_dim": 4, "width": 32, "depth": 1},
        train_config=TrainConfig(steps=8, batch_size=16, device="cpu", val_every=4, max_val_patches=32),
    )
    model, stopped = run.run()
    assert not stopped
    return model


def test_round_trip_gives_identical_outputs(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    loaded = TrainedModel.load(path)
    x = torch.randn(5, 4, 4, 4)
    r1, m1 = trained.model.eval().reconstruct(x)
    r2, m2 = loaded.model.reconstruct(x)
    assert torch.equal(r1, r2) and torch.equal(m1, m2)
    assert loaded.model.config == trained.model.config
    assert loaded.critic_config == trained.critic_config and loaded.train_config == trained.train_config
    assert loaded.step == trained.step == 8
    assert loaded.channel_names == NAMES and loaded.channel_keys == METALS
    assert loaded.normalizer.to_dict() == trained.normalizer.to_dict()
    assert loaded.history == trained.history and len(loaded.history) == 8
    assert loaded.validation_history == trained.validation_history
    assert loaded.optimizer_state is not None
    assert loaded.source_file == str(path) and len(loaded.file_sha256) == 64
    assert not loaded.model.training


def test_file_is_plain_data_for_weights_only_loading(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    d = torch.load(path, weights_only=True)
    assert d["format"] == "napari-imc-vae/model" and d["format_version"] == checkpoint.FORMAT_VERSION
    for key in ("package_version", "model_config", "critic_config", "train_config", "state_dict",
                "optimizer_state", "step", "channel_names", "normalizer", "history"):
        assert key in d, key
    assert isinstance(d["model_config"], dict) and d["model_config"]["patch_size"] == 4

    def plain(v) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, (str, int)) and plain(x) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool, torch.Tensor))

    assert plain(d)


def test_atomic_write_leaves_no_temp_files(trained, tmp_path):
    trained.save(tmp_path / "m.pt")
    trained.save(tmp_path / "m.pt")  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_failed_save_keeps_the_existing_file(trained, tmp_path, monkeypatch):
    path = trained.save(tmp_path / "m.pt")
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    monkeypatch.undo()
    TrainedModel.load(path)


def test_missing_truncated_and_corrupt_files(trained, tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        TrainedModel.load(tmp_path / "nope.pt")
    good = trained.save(tmp_path / "m.pt").read_bytes()
    half = len(good) // 2
    cases = {"truncated.pt": (good[:half], f"is cut short: {half:,} bytes, the end of a saved model is missing$"),
             "garbage.pt": (np.random.default_rng(0).bytes(2000),
                            "is not a napari-imc-vae model file: it is not the zip archive every saved model is$"),
             "empty.pt": (b"", r"is empty \(0 bytes\): nothing was saved in it$"),
             "text.pt": (b"not a model\n" * 10, "is not a napari-imc-vae model file: it holds text, not the zip")}
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ModelFileError, match=rf"^model file {re.escape(str(bad))} {message}"):
            TrainedModel.load(bad)


def test_a_flipped_byte_inside_the_weights_is_refused_naming_the_file(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    with zipfile.ZipFile(path) as z:
        record = next(i for i in z.infolist() if i.filename.endswith("data/0"))  # the first weights
    raw = bytearray(path.read_bytes())
    raw[record.header_offset + 200] ^= 0x01  # inside the record's data (headers are < 128 bytes)
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=rf"model file {re.escape(str(path))} is damaged: record "
                                             r"archive/data/0 does not match its checksum"):
        TrainedModel.load(path)


def test_content_changed_after_saving_is_refused_by_the_hash(trained, tmp_path):
    """A file re-written with the same CRCs but other content (an edit): the stored hash says so."""
    d = torch.load(trained.save(tmp_path / "m.pt"), weights_only=True)
    d["step"] = 9
    torch.save(d, tmp_path / "edited.pt")
    with pytest.raises(ModelFileError, match=r"edited\.pt is damaged: field content_sha256: does not match "
                                             r"the file's content"):
        TrainedModel.load(tmp_path / "edited.pt")


def test_a_format_1_file_without_hash_loads_with_a_note(trained, tmp_path):
    d = trained.to_dict()
    d["format_version"] = 1
    torch.save(d, tmp_path / "old.pt")
    old = TrainedModel.load(tmp_path / "old.pt")
    assert old.step == trained.step and len(old.notes) == 1
    assert "written before model files carried a content hash" in old.notes[0] and "old.pt" in old.notes[0]
    # saved again, it carries the hash and loads without a note
    assert TrainedModel.load(old.save(tmp_path / "new.pt")).notes == []
    # format 1 is checked field by field all the same
    d["step"] = -5
    torch.save(d, tmp_path / "old.pt")
    with pytest.raises(ModelFileError, match=r"field step: must be a whole number from 0"):
        TrainedModel.load(tmp_path / "old.pt")


@pytest.mark.parametrize(("key", "value"), [("depth", 100_000), ("width", 40_000)])
def test_huge_dimensions_are_refused_before_anything_is_built(trained, tmp_path, key, value):
    """depth=100000 took 168 s to build and width=40000 asked for ~25 GB before the weights were looked at."""
    d = trained.to_dict()
    d["model_config"][key] = value
    torch.save(schema.stamp(d), tmp_path / "huge.pt")
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=rf"huge\.pt is damaged: field model_config\.{key}: must be a "
                                             rf"whole number from \d+ to {schema.LIMITS[key]}, got {value}"):
        TrainedModel.load(tmp_path / "huge.pt")
    assert time.perf_counter() - start < 5


def test_within_limits_but_too_many_parameters_is_refused_on_the_meta_device(trained, tmp_path):
    d = trained.to_dict()
    d["model_config"].update(width=16384, depth=64)  # 34 billion parameters
    torch.save(schema.stamp(d), tmp_path / "big.pt")
    with pytest.raises(ModelFileError, match=r"field model_config: describes a model of [\d,]+ parameters; "
                                             r"this version loads at most"):
        TrainedModel.load(tmp_path / "big.pt")


def test_non_finite_weights_and_motif_centres_are_refused(trained, tmp_path):
    d = trained.to_dict()
    name = next(iter(d["state_dict"]))
    d["state_dict"][name] = torch.full_like(d["state_dict"][name], float("nan"))
    torch.save(schema.stamp(d), tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match=rf"field state_dict\.{re.escape(name)}: holds NaN or Inf"):
        TrainedModel.load(tmp_path / "nan.pt")
    d = trained.to_dict()
    assert "motifs" in d
    d["motifs"]["centers"] = torch.full_like(d["motifs"]["centers"], float("nan"))
    torch.save(schema.stamp(d), tmp_path / "motifs.pt")
    with pytest.raises(ModelFileError, match=r"field motifs\.centers: holds NaN or Inf"):
        TrainedModel.load(tmp_path / "motifs.pt")


@pytest.mark.parametrize("version", [0, -1])
def test_format_version_below_1_is_refused(trained, tmp_path, version):
    d = trained.to_dict()
    d["format_version"] = version
    torch.save(schema.stamp(d), tmp_path / "v.pt")
    with pytest.raises(ModelFileError, match=rf"field format_version: must be a whole number >= 1, got {version}"):
        TrainedModel.load(tmp_path / "v.pt")


def test_a_folder_or_fifo_is_named_as_such(tmp_path):
    with pytest.raises(ModelFileError, match=r"is a folder, not a model file"):
        TrainedModel.load(tmp_path)
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match=r"pipe\.pt is not a regular file \(a FIFO"):
        TrainedModel.load(fifo)


def test_other_data_is_not_a_model_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ModelFileError, match="not a napari-imc-vae model file"):
        TrainedModel.load(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelFileError, match="not a napari-imc-vae model file"):
        TrainedModel.load(path)


def test_newer_format_asks_for_an_upgrade(trained, tmp_path):
    d = trained.to_dict()
    d["format_version"] = checkpoint.FORMAT_VERSION + 1
    torch.save(schema.stamp(d), tmp_path / "new.pt")
    with pytest.raises(ModelFileError, match="upgrade"):
        TrainedModel.load(tmp_path / "new.pt")


def test_damaged_contents_are_a_model_file_error(trained, tmp_path):
    d = trained.to_dict()
    d["state_dict"] = {k: v[..., :1] if v.ndim else v for k, v in d["state_dict"].items()}
    torch.save(schema.stamp(d), tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"damaged: field state_dict\.\S+: must have shape"):
        TrainedModel.load(tmp_path / "bad.pt")
    d = trained.to_dict()
    del d["normalizer"]
    torch.save(schema.stamp(d), tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="damaged: field normalizer: is missing"):
        TrainedModel.load(tmp_path / "bad.pt")


class Payload:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickled_code_is_refused_and_never_run(trained, tmp_path):
    marker = tmp_path / "pwned"
    d = trained.to_dict()
    d["history"] = [Payload(str(marker))]
    torch.save(d, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match=r"refused.*pickled objects or code.*; it refers to getattr$"):
        TrainedModel.load(tmp_path / "evil.pt")
    assert not marker.exists()
    # a file holding a class instance (not code that runs) is refused too
    torch.save({"format": "napari-imc-vae/model", "x": zipfile.ZipInfo("a")}, tmp_path / "obj.pt")
    with pytest.raises(ModelFileError, match="refused"):
        TrainedModel.load(tmp_path / "obj.pt")
    # and a reference to a function
    torch.save({"format": "napari-imc-vae/model", "f": os.system}, tmp_path / "fn.pt")
    with pytest.raises(ModelFileError, match="refused"):
        TrainedModel.load(tmp_path / "fn.pt")


def test_model_for_another_panel_names_missing_and_extra(trained):
    other = imc_image(2, metals=["Ag107", "Pr141", "Gd155", "Yb172"], names=["Ag107", "CK5", "CD3", "H3"])
    with pytest.raises(ChannelMismatchError, match=r"missing Sm147, Eu153; extra Gd155, Yb172 "):
        apply_model(trained, other)
    # without metals, names are compared
    plain = ImcImage(np.zeros((3, 8, 8), np.float32), ["Ag107", "Laminin", "CD45"])
    with pytest.raises(ChannelMismatchError) as e:
        trained.match_channels(plain)
    assert "missing Cytokeratin 5, YBX1; extra CD45 " in str(e.value)
    assert "expected 4 channels: Ag107, Cytokeratin 5, Laminin, YBX1" in str(e.value)
    # a subset: missing only
    with pytest.raises(ChannelMismatchError, match=r"missing YBX1; extra none"):
        trained.match_channels(ImcImage(np.zeros((3, 8, 8), np.float32), NAMES[:3]))
    assert issubclass(ChannelMismatchError, ValueError)


def test_a_mismatch_names_the_image_file_and_the_model_file_and_lists_at_most_eight(trained, tmp_path):
    import dataclasses

    wide = ImcImage(np.zeros((12, 8, 8), np.float32), [f"x{i}" for i in range(12)], source=str(tmp_path / "w.tiff"))
    saved = dataclasses.replace(trained, source_file=str(tmp_path / "m.pt"))
    with pytest.raises(ChannelMismatchError) as e:
        saved.match_channels(wide)
    assert str(e.value) == (f"the channels of image {tmp_path / 'w.tiff'} do not match model file {tmp_path / 'm.pt'}: "
                            f"missing Ag107, Cytokeratin 5, Laminin, YBX1; extra x0, x1, x2, x3, x4, x5, x6, x7 and 4 "
                            f"more (expected 4 channels: Ag107, Cytokeratin 5, Laminin, YBX1; the image has 12: x0, "
                            f"x1, x2, x3, x4, x5, x6, x7 and 4 more)")
    # a model never saved and an image of no file (built in memory): said so, not named
    unsaved = dataclasses.replace(trained, source_file=None)
    in_memory = dataclasses.replace(wide, source="", acquisition=None)
    with pytest.raises(ChannelMismatchError, match="^the channels of the image do not match the model's panel: "):
        unsaved.match_channels(in_memory)
    # an acquisition of an .mcd is named with its file
    with pytest.raises(ChannelMismatchError, match=r"^the channels of image a\.mcd \(acquisition ROI_002\) do not"):
        unsaved.match_channels(dataclasses.replace(wide, source="a.mcd", acquisition="ROI_002"))


def test_an_unreadable_zip_gives_the_loaders_first_clause_only(trained, tmp_path, monkeypatch):
    """Bytes that tell nothing (a zip holding data.pkl that torch cannot read): the loader's error,
    cut to its first clause, in parentheses."""
    path = trained.save(tmp_path / "m.pt")

    def fails(*args, **kwargs):
        raise RuntimeError("PytorchStreamReader failed reading file data/0: invalid header or archive is "
                           "corrupted. This is an internal miniz error. If you are seeing this error, there is a "
                           "high likelihood that your checkpoint file is corrupted.")

    monkeypatch.setattr(torch, "load", fails)
    with pytest.raises(ModelFileError) as e:
        TrainedModel.load(path)
    assert str(e.value) == (f"model file {path} is damaged: it cannot be read (RuntimeError: failed reading file "
                            f"data/0: invalid header or archive is corrupted)")


def test_same_channels_in_another_order_matched_by_name(trained):
    image = imc_image(5, size=13)
    order = [2, 0, 3, 1]
    shuffled = ImcImage(image.data[order], [NAMES[i] for i in order], metals=[METALS[i] for i in order],
                        labels=[NAMES[i] for i in order], source=image.source)
    match = trained.match_channels(shuffled)
    assert match.index == (1, 3, 0, 2) and match.ignored == ()
    a = apply_model(trained, image, stride=2)
    b = apply_model(trained, shuffled, stride=2)
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.latent, b.latent)
    np.testing.assert_array_equal(a.error, b.error)
    # matched by name when the image has no metals
    by_name = ImcImage(shuffled.data, shuffled.channel_names, source=image.source)
    np.testing.assert_array_equal(apply_model(trained, by_name, stride=2).raw, a.raw)
    # and by metal when the labels differ (another exporter's naming)
    relabelled = ImcImage(shuffled.data, [f"x{i}" for i in range(4)], metals=shuffled.metals, source=image.source)
    np.testing.assert_array_equal(apply_model(trained, relabelled, stride=2).raw, a.raw)


def test_extra_channels_are_ignored_and_named(trained, tmp_path):
    image = imc_image(6, size=13)
    rng = np.random.default_rng(6)
    extra = rng.poisson(50.0, size=(2, 13, 13)).astype(np.float32)
    # two channels the model does not know, one in the middle; the panel's channels reordered
    order = [3, None, 1, 0, None, 2]
    data = np.stack([extra[0] if i is None and k == 1 else extra[1] if i is None else image.data[i]
                     for k, i in enumerate(order)])
    names = [NAMES[i] if i is not None else n for i, n in zip(order, ["", "CD3", "", "", "CD20", ""])]
    metals = [METALS[i] if i is not None else m for i, m in zip(order, ["", "Gd155", "", "", "Yb172", ""])]
    wider = ImcImage(data, names, metals=metals, source="wider.ome.tiff")
    match = TrainedModel.load(trained.save(tmp_path / "m.pt")).match_channels(wider)
    assert match.index == (3, 2, 5, 0) and match.ignored == ("CD3", "CD20")
    assert match.note() == "ignoring channels not in the model: CD3, CD20"
    a = apply_model(trained, image, stride=2)
    b = apply_model(trained, wider, stride=2)
    assert b.raw.shape == (4, 13, 13)  # the model's channels, in the model's order
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.error, b.error)
    # matched by name when the image has no metals
    plain = ImcImage(wider.data, wider.channel_names)
    assert trained.match_channels(plain).ignored == ("CD3", "CD20")
    np.testing.assert_array_equal(apply_model(trained, plain, stride=2).raw, a.raw)
    # missing and extra: the error names both, and the panel
    lacking = ImcImage(wider.data[1:], wider.channel_names[1:], metals=wider.metals[1:])
    with pytest.raises(ChannelMismatchError, match=r"missing Eu153; extra Gd155, Yb172 "
                                                   r"\(expected 4 channels: Ag107, Pr141, Sm147, Eu153; "):
        apply_model(trained, lacking)


def test_any_damaged_bytes_give_model_file_error(trained, tmp_path):
    """Random bytes and truncations at many points: always ModelFileError, never another exception."""
    good = trained.save(tmp_path / "m.pt").read_bytes()
    rng = np.random.default_rng(1)
    payloads = [rng.bytes(int(n)) for n in rng.integers(1, 5000, size=40)]
    payloads += [good[: int(cut)] for cut in rng.integers(1, len(good) - 1, size=40)]
    for i, content in enumerate(payloads):
        bad = tmp_path / f"bad{i}.pt"
        bad.write_bytes(content)
        with pytest.raises(ModelFileError, match="cut short|is empty|damaged|refused|not a napari-imc-vae model"):
            TrainedModel.load(bad)
