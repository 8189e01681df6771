"""The SHA-256 of a model file's bytes in its zip comment: a changed byte outside the stored data
(zip headers, timestamps, alignment padding) is refused; files saved before the hash still load."""

import hashlib
import re
import struct
import zipfile

import numpy as np
import pytest
import torch

from napari_imc_vae.engine.model_file.checkpoint import ModelFileError, TrainedModel
from napari_imc_vae.engine.model_file.file_bytes import COMMENT_PREFIX
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.io import ImcImage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMENT_LENGTH = len(COMMENT_PREFIX) + 64


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    rng = np.random.default_rng(0)
    images = [ImcImage(rng.poisson(5.0, size=(3, 20, 20)).astype(np.float32), ["CD3", "CD20", "YBX1"],
                       source=f"img{i}.ome.tiff") for i in range(2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        model, _ = TrainingRun(images, model_config={"patch_size": 4, "latent_dim": 4, "width": 16, "depth": 1},
                               train_config=TrainConfig(steps=4, batch_size=16, device="cpu", val_every=4,
                                                        max_val_patches=32)).run()
    finally:
        torch.set_num_threads(threads)
    return model


def _flipped(path, position: int, name: str):
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x01
    bad = path.with_name(name)
    bad.write_bytes(bytes(raw))
    return bad


def _without_hash(path, name: str):
    """The file as saved before this change: torch.save's zip, no comment (length field 0)."""
    raw = bytearray(path.read_bytes()[:-COMMENT_LENGTH])
    raw[-2:] = b"\0\0"
    old = path.with_name(name)
    old.write_bytes(bytes(raw))
    return old


def _first_weight_byte(path) -> int:
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data/0"))
    assert info.compress_size > 0
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def _places_outside_the_data(path) -> dict[str, int]:
    """Byte positions in zip structure that no record's CRC-32 and no loaded value covers."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data/0"))
        central = z.start_dir
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26: info.header_offset + 30])
    extra = info.header_offset + 30 + name_len
    assert raw[extra: extra + 2] == b"FB"  # torch.save's alignment padding before the tensor's bytes
    padding = extra + 4 if extra_len > 4 else None
    assert raw[central: central + 4] == b"PK\x01\x02"
    places = {"local timestamp": info.header_offset + 10, "central directory timestamp": central + 12}
    if padding is not None:
        places["alignment padding"] = padding
    return places


def test_the_file_hash_is_in_the_zip_comment_and_weights_only_loading_still_works(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        assert z.comment == COMMENT_PREFIX + hashlib.sha256(raw[:-COMMENT_LENGTH]).hexdigest().encode()
        assert z.testzip() is None
    assert trained.file_sha256 == hashlib.sha256(raw).hexdigest()  # provenance: the whole file
    d = torch.load(path, weights_only=True)
    assert d["step"] == trained.step == 4
    loaded = TrainedModel.load(path)
    assert loaded.notes == [] and loaded.file_sha256 == trained.file_sha256


def test_a_changed_byte_in_timestamps_or_padding_is_refused_naming_the_file(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    places = _places_outside_the_data(path)
    assert len(places) == 3
    for what, position in places.items():
        bad = _flipped(path, position, f"{what.replace(' ', '_')}.pt")
        with pytest.raises(ModelFileError, match=rf"model file {re.escape(str(bad))} is damaged: its bytes differ "
                                                 r"from those saved \(SHA-256 in the zip comment\); the change is "
                                                 r"outside the stored data"):
            TrainedModel.load(bad)
        # the control: without the file hash the same change loads, unnoticed (the gap this closes)
        old = _without_hash(bad, "old_" + bad.name)
        assert TrainedModel.load(old).step == 4, what


def test_a_changed_byte_in_the_data_still_names_the_record(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    bad = _flipped(path, _first_weight_byte(path), "data.pt")
    with pytest.raises(ModelFileError, match=rf"model file {re.escape(str(bad))} is damaged: record "
                                             r"archive/data/0 does not match its checksum"):
        TrainedModel.load(bad)


def test_a_changed_or_cut_comment_is_refused(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    size = path.stat().st_size
    hex_digit = _flipped(path, size - 1, "digit.pt")
    with pytest.raises(ModelFileError, match=rf"{re.escape(str(hex_digit))} is damaged: its bytes differ"):
        TrainedModel.load(hex_digit)
    cases = {"prefix.pt": _flipped(path, size - COMMENT_LENGTH, "prefix.pt"),
             "length.pt": _flipped(path, size - COMMENT_LENGTH - 2, "length.pt")}
    cut = path.with_name("cut.pt")
    cut.write_bytes(path.read_bytes()[:-10])
    cases["cut.pt"] = cut
    for name, bad in cases.items():
        with pytest.raises(ModelFileError, match=rf"model file {re.escape(str(bad))} is damaged: its zip comment, "
                                                 r"which holds the file's SHA-256, is changed or cut"):
            TrainedModel.load(bad)


def test_a_model_saved_before_the_file_hash_still_loads(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    old = _without_hash(path, "old.pt")
    with zipfile.ZipFile(old) as z:
        assert z.comment == b""
    loaded = TrainedModel.load(old)
    assert loaded.notes == [] and loaded.step == 4
    assert loaded.file_sha256 == hashlib.sha256(old.read_bytes()).hexdigest()
    x = torch.randn(3, 3, 4, 4)
    assert torch.equal(loaded.model.reconstruct(x)[0], trained.model.eval().reconstruct(x)[0])
    # its records are still checked against their CRC-32
    bad = _flipped(old, _first_weight_byte(old), "old_flipped.pt")
    with pytest.raises(ModelFileError, match=r"old_flipped\.pt is damaged: record archive/data/0 does not match"):
        TrainedModel.load(bad)
    # saved again, it carries the hash
    with zipfile.ZipFile(loaded.save(tmp_path / "again.pt")) as z:
        assert z.comment.startswith(COMMENT_PREFIX)


def _appended(path, extra: bytes, name: str):
    bad = path.with_name(name)
    bad.write_bytes(path.read_bytes() + extra)
    return bad


@pytest.mark.parametrize("n", [1, 200, 65_536])
def test_bytes_appended_after_a_hashed_file_are_refused_naming_the_file(trained, tmp_path, n):
    """Zip readers stop at the comment's declared end; 65,536: past zipfile's reach, not torch.load's."""
    path = trained.save(tmp_path / "m.pt")
    extra = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    bad = _appended(path, extra, f"appended{n}.pt")
    assert torch.load(bad, weights_only=True)["step"] == 4  # the gap: the reader loads it unnoticed
    were = "1 byte was" if n == 1 else f"{n} bytes were"
    with pytest.raises(ModelFileError, match=rf"^model file {re.escape(str(bad))} is damaged: {were} added after "
                                             r"the end of the saved file \(after the zip comment that holds its "
                                             r"SHA-256\)$"):
        TrainedModel.load(bad)


def test_an_appended_end_record_does_not_hide_the_hashed_one(trained, tmp_path):
    """An empty zip's end record (no comment) appended: the search goes past it to the file's own."""
    path = trained.save(tmp_path / "m.pt")
    bad = _appended(path, b"PK\x05\x06" + bytes(18), "empty_zip_appended.pt")
    with pytest.raises(ModelFileError, match=rf"{re.escape(str(bad))} is damaged: 22 bytes were added after"):
        TrainedModel.load(bad)
    # the file's own record and comment appended again: that copy ends the file, the hash refuses it
    twice = _appended(path, path.read_bytes()[-(22 + COMMENT_LENGTH):], "end_twice.pt")
    with pytest.raises(ModelFileError, match=rf"{re.escape(str(twice))} is damaged: its bytes differ from those"):
        TrainedModel.load(twice)


def test_bytes_appended_to_a_file_saved_before_the_hash_load_as_before(trained, tmp_path):
    """Zip readers allow bytes after the end record; with no hash to say otherwise, such files load."""
    old = _without_hash(trained.save(tmp_path / "m.pt"), "old.pt")
    grown = _appended(old, b"\x01" * 200, "old_grown.pt")
    loaded = TrainedModel.load(grown)
    assert loaded.step == 4 and loaded.file_sha256 == hashlib.sha256(grown.read_bytes()).hexdigest()
    # its records are still checked against their CRC-32
    bad = _appended(_flipped(old, _first_weight_byte(old), "old_flipped.pt"), b"\x01" * 200, "old_flipped_grown.pt")
    with pytest.raises(ModelFileError, match=r"old_flipped_grown\.pt is damaged: record archive/data/0 does not"):
        TrainedModel.load(bad)
