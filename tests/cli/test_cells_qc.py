"""``napari-imc-vae cells`` and ``qc`` on real ROIs, with masks made here from the nuclear channel.

A bad pairing of images and masks (a missing mask, a mask of another size, one file for
several images) is one line on stderr, exit status 1, and nothing written.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
import torch

from cell_masks import nuclear_mask
from dist_helpers import torchrun_cmd
from napari_imc_vae.cli import main
from napari_imc_vae.io import read_imc
from napari_imc_vae.io.outputs import OUTPUT_SUFFIXES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROIS = ("20210305_NE_mockData1_002", "20210305_NE_mockData3_002")


@pytest.fixture(scope="module")
def model_file(cells_model, tmp_path_factory):
    """The session's tiny model of :data:`ROIS` (tests/conftest.py), saved."""
    return cells_model.save(tmp_path_factory.mktemp("model") / "m.pt")


@pytest.fixture
def cohort(imc_testdata, tmp_path):
    """A steinbock-like folder: img/ with the two ROIs (links) and masks/ with their masks."""
    img, masks = tmp_path / "steinbock" / "img", tmp_path / "steinbock" / "masks"
    img.mkdir(parents=True)
    masks.mkdir()
    for s in ROIS:
        source = imc_testdata / "steinbock_img" / f"{s}.ome.tiff"
        (img / source.name).symlink_to(source)
        tifffile.imwrite(masks / f"{s}.tiff", nuclear_mask(read_imc(source)))
    return img, masks


def written(folder) -> list[str]:
    """The outputs in ``folder`` (hidden lock and staging entries are not outputs)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _error_line(capsys, command: str) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"napari-imc-vae {command}: error: "), err
    return lines[0]


def test_cells_writes_the_reconstruction_and_one_row_per_cell(model_file, cohort, tmp_path, capsys):
    img, masks = cohort
    out = tmp_path / "out"
    assert main(["cells", str(model_file), str(img), "--masks", str(masks), "-o", str(out), "--device", "cpu",
                 "--motifs", "6"]) == 0
    stdout = capsys.readouterr().out
    for s in ROIS:
        for suffix in (*OUTPUT_SUFFIXES, "_cells.csv", "_cells.h5ad"):
            assert (out / f"{s}{suffix}").is_file(), f"{s}{suffix} missing"
        with open(out / f"{s}_cells.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        labels = tifffile.imread(masks / f"{s}.tiff")
        assert [int(r["cell_id"]) for r in rows] == list(range(1, int(labels.max()) + 1))
        assert sum(int(r["area"]) for r in rows) == int((labels > 0).sum())
        assert {r["image"] for r in rows} == {s}
        touched = sum(r["touched_by_artefact"] == "True" for r in rows)
        spiked = sum(float(r["spike_fraction"]) > 0 for r in rows)
        assert (f"{s}: {len(rows)} cells, {touched} touched by an artefact (a region of high error listed in "
                f"_regions.csv, or a hot pixel the filter replaced); {spiked} hold an isolated single-pixel spike "
                "(listed apart, not counted as an artefact)") in stdout


@pytest.mark.parametrize("fault", ["missing", "other size"])
def test_cells_with_a_mask_missing_or_of_another_size_names_both_and_writes_nothing(
        model_file, cohort, tmp_path, capsys, fault):
    img, masks = cohort
    second = masks / f"{ROIS[1]}.tiff"
    if fault == "missing":
        second.unlink()
        expected = f"the image {ROIS[1]} has no mask in {masks}"
    else:
        tifffile.imwrite(second, np.ones((20, 30), np.uint32))
        expected = f"the mask {second} is 20×30 px but the image {ROIS[1]} is 54×59 px"
    out = tmp_path / "out"
    assert main(["cells", str(model_file), str(img), "--masks", str(masks), "-o", str(out), "--device", "cpu"]) == 1
    assert expected in _error_line(capsys, "cells")
    assert written(out) == []  # the first image, which has a good mask, was not written either


def test_cells_with_one_mask_file_takes_one_image(model_file, cohort, tmp_path, capsys):
    img, masks = cohort
    one = masks / f"{ROIS[0]}.tiff"
    out = tmp_path / "out"
    assert main(["cells", str(model_file), str(img), "--masks", str(one), "-o", str(out), "--device", "cpu"]) == 1
    assert "one mask file" in _error_line(capsys, "cells") and written(out) == []
    image = img / f"{ROIS[0]}.ome.tiff"
    assert main(["cells", str(model_file), str(image), "--masks", str(one), "-o", str(out), "--device", "cpu",
                 "--no-h5ad"]) == 0
    assert (out / f"{ROIS[0]}_cells.csv").is_file() and not (out / f"{ROIS[0]}_cells.h5ad").exists()


def test_cells_without_anndata_writes_the_csv_and_names_the_extra(model_file, cohort, tmp_path, capsys,
                                                                  monkeypatch):
    import sys

    from napari_imc_vae.engine.cells.table import measure_cells
    from napari_imc_vae.io.cell_outputs import write_cell_table

    monkeypatch.setitem(sys.modules, "anndata", None)  # as if the 'cells' extra were not installed
    img, masks = cohort
    out = tmp_path / "out"
    image = img / f"{ROIS[0]}.ome.tiff"
    assert main(["cells", str(model_file), str(image), "--masks", str(masks), "-o", str(out), "--device",
                 "cpu"]) == 0
    assert 'pip install "napari-imc-vae[cells]"' in capsys.readouterr().err
    assert (out / f"{ROIS[0]}_cells.csv").is_file() and not (out / f"{ROIS[0]}_cells.h5ad").exists()
    table = measure_cells(np.ones((4, 4), np.uint16), np.ones((1, 4, 4)), markers=["A"], image_name="t")
    with pytest.raises(ImportError, match=r'writing .h5ad needs anndata: pip install "napari-imc-vae\[cells\]"'):
        write_cell_table(tmp_path, table, h5ad=True)


@pytest.mark.parametrize("command", ["cells", "qc"])
@pytest.mark.parametrize("option, value, expected", [
    ("--batch", "0", "expected a whole number >= 1, got 0"),
    ("--stride", "-2", "expected a whole number >= 1, got -2"),
    ("--motifs", "-1", "expected a whole number >= 0, got -1"),
    ("--batch", "many", "expected a whole number >= 1, got 'many'"),
])
def test_a_count_out_of_range_is_a_usage_error_naming_the_option(tmp_path, capsys, command, option, value,
                                                                 expected):
    if command == "qc" and option == "--motifs":
        option = "--quality-patches"  # qc takes the model's own motifs; its other count
        expected = expected.replace(">= 0", ">= 1")
    out = tmp_path / "out"
    masks = ["--masks", str(tmp_path)] if command == "cells" else []
    with pytest.raises(SystemExit) as stop:
        main([command, str(tmp_path / "m.pt"), str(tmp_path), *masks, "-o", str(out), option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: napari-imc-vae " + command)
    assert f"napari-imc-vae {command}: error: argument {option}: {expected}" in err
    assert not out.exists()  # refused before any work


# --- qc --------------------------------------------------------------------------------------

QC_ROIS = ("20210305_NE_mockData1_003", "20210305_NE_mockData4_001", "20210305_NE_mockData5_001")
HOT = (2, 10, 12)  # (channel, y, x) of the hot pixel put into the last ROI


@pytest.fixture
def qc_folder(imc_testdata, tmp_path):
    """Three real ROIs in a folder (links), the last with one hot pixel (+500 counts) in Laminin."""
    folder = tmp_path / "img"
    folder.mkdir()
    for s in QC_ROIS[:-1]:
        (folder / f"{s}.ome.tiff").symlink_to(imc_testdata / "steinbock_img" / f"{s}.ome.tiff")
    source = imc_testdata / "steinbock_img" / f"{QC_ROIS[-1]}.ome.tiff"
    with tifffile.TiffFile(source) as tif:
        data, xml = tif.series[0].asarray(), tif.ome_metadata
    data[HOT] += 500
    tifffile.imwrite(folder / source.name, data, description=xml.encode(), metadata=None)
    return folder


def _qc_rows(out) -> list[dict]:
    with open(out / "qc_table.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_qc_writes_each_roi_the_table_heatmap_and_names_the_worst(model_file, qc_folder, tmp_path, capsys):
    import json

    from PIL import Image

    out = tmp_path / "qc"
    assert main(["qc", str(model_file), str(qc_folder), "-o", str(out), "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    for s in QC_ROIS:
        for suffix in (*OUTPUT_SUFFIXES, "_qc.json"):
            assert (out / f"{s}{suffix}").is_file(), f"{s}{suffix} missing"
    rows = _qc_rows(out)
    markers = ["Ag107", "Pr141_Cytokeratin 5", "Sm147_Laminin", "Eu153_YBX1", "Yb172_H3K27Ac"]
    assert [(r["roi"], r["marker"]) for r in rows] == [(s, m) for s in QC_ROIS for m in markers]
    hot = {(r["roi"], r["marker"]): int(r["hot_pixels"]) for r in rows}
    assert hot[(QC_ROIS[-1], "Sm147_Laminin")] == 1 and sum(hot.values()) == 1  # the one put there
    assert all(float(r["mean_error"]) > 0 for r in rows)
    assert list(rows[0]) == ["roi", "marker", "explained", "has_signal", "mean_error", "hot_pixels",
                             "regions_single_pixel", "regions_line", "regions_blob", "pixels"]
    assert all(int(r["pixels"]) == int(np.prod(read_imc(qc_folder / f"{r['roi']}.ome.tiff").shape[1:]))
               for r in rows[::5])

    summary = json.loads((out / "qc_summary.json").read_text())
    errors = {}
    for r in rows:
        errors.setdefault(r["roi"], []).append(float(r["mean_error"]))
    worst_roi = max(errors, key=lambda k: np.mean(errors[k]))
    assert summary["worst_rois"][0][0] == worst_roi
    assert summary["worst_rois"][0][1] == pytest.approx(np.mean(errors[worst_roi]), rel=1e-5)  # CSV: 6 digits
    assert f"Worst ROIs: {worst_roi}" in stdout
    # the regions figure is a count of the rows of the _regions.csv files, by shape
    listed = {"single pixel": 0, "line": 0, "blob": 0}
    for s in QC_ROIS:
        with open(out / f"{s}_regions.csv", newline="") as f:
            for region in csv.DictReader(f):
                listed[region["shape"]] += 1
    spikes = sum(json.loads((out / f"{s}_quality.json").read_text())["error"]["n_isolated_spikes"] for s in QC_ROIS)
    assert sum(listed.values()) > 0 and spikes > 0
    counts = (f"regions of high error (the rows of the _regions.csv files): {sum(listed.values())} "
              f"({listed['single pixel']} single pixel, {listed['line']} line, {listed['blob']} blob); "
              f"isolated single-pixel spikes, listed apart: {spikes}.")
    assert counts in stdout and counts in summary["sentences"][2]
    # a marker is ranked on the ROIs where it has signal, and says so when that is not all of them
    signal = {(r["roi"], r["marker"]): r["has_signal"] == "True" for r in rows}
    assert [signal[(s, "Ag107")] for s in QC_ROIS] == [True, False, False]  # "only detectable in mockData1"
    ranked = {m: np.mean([float(r["mean_error"]) for r in rows if r["marker"] == m and signal[(r["roi"], m)]])
              for m in markers}
    expected = sorted(ranked, key=lambda m: -ranked[m])[:3]
    assert [name for name, _ in summary["worst_markers"]] == expected
    assert [v for _, v in summary["worst_markers"]] == pytest.approx([ranked[m] for m in expected], rel=1e-5)
    assert "Ag107" in expected and f"Ag107 ({ranked['Ag107']:.2f}, signal in 1 of 3 ROIs)" in stdout
    with Image.open(out / "qc_heatmap.png") as png:
        assert png.format == "PNG" and png.width >= 640 and png.height > 3 * 22


def test_qc_leaves_markers_without_signal_out_of_the_worst(model_file, imc_testdata, tmp_path, capsys):
    import json

    folder = tmp_path / "img"
    folder.mkdir()
    rois = ("20210305_NE_mockData2_001", "20210305_NE_mockData4_001", "20210305_NE_mockData5_001")
    for s in rois:
        (folder / f"{s}.ome.tiff").symlink_to(imc_testdata / "steinbock_img" / f"{s}.ome.tiff")
    out = tmp_path / "qc"
    assert main(["qc", str(model_file), str(folder), "-o", str(out), "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    rows = _qc_rows(out)
    silent = [m for m in dict.fromkeys(r["marker"] for r in rows)
              if all(r["has_signal"] == "False" for r in rows if r["marker"] == m)]
    assert silent == ["Ag107", "Pr141_Cytokeratin 5"]  # the marker summary's verdict in all three ROIs
    summary = json.loads((out / "qc_summary.json").read_text())
    assert not {name for name, _ in summary["worst_markers"]} & set(silent)
    assert len(summary["worst_markers"]) == 3
    assert "not ranked, almost no signal: Ag107, Pr141_Cytokeratin 5)" in stdout
    # left out although Ag107 has the highest mean error of all the markers in these ROIs
    every = {m: np.mean([float(r["mean_error"]) for r in rows if r["marker"] == m]) for m in
             dict.fromkeys(r["marker"] for r in rows)}
    assert max(every, key=every.get) in silent


def test_qc_started_again_keeps_finished_images_and_does_the_rest(model_file, qc_folder, tmp_path, capsys):
    out = tmp_path / "qc"
    assert main(["qc", str(model_file), str(qc_folder), "-o", str(out), "--device", "cpu"]) == 0
    first = _qc_rows(out)
    # as if stopped during the last image: its files and done-mark are not there
    for p in out.glob(f"{QC_ROIS[-1]}_*"):
        p.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.startswith(QC_ROIS[0])}
    capsys.readouterr()
    assert main(["qc", str(model_file), str(qc_folder), "-o", str(out), "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("done in an earlier run") == 2 and f"{QC_ROIS[-1]}: " in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.startswith(QC_ROIS[0])} == kept
    assert (out / f"{QC_ROIS[-1]}_recon.ome.tiff").is_file()
    assert _qc_rows(out) == first  # the same table as the uninterrupted run


TORCHRUN_HELPER = """
import os, sys
from napari_imc_vae.cli import qc
from napari_imc_vae.engine.cells import use_case
rank = os.environ["RANK"]
_apply, _cohort = use_case.apply_to_image, qc.write_cohort

def apply_to_image(trained, image, *args, **kwargs):
    with open(os.path.join(os.environ["RECORD_DIR"], f"rank{rank}.txt"), "a") as f:
        f.write(image.name + "\\n")
    return _apply(trained, image, *args, **kwargs)

def write_cohort(*args, **kwargs):
    open(os.path.join(os.environ["RECORD_DIR"], f"cohort_by_rank{rank}"), "w").close()
    return _cohort(*args, **kwargs)

use_case.apply_to_image, qc.write_cohort = apply_to_image, write_cohort
from napari_imc_vae.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_qc_under_torchrun_shares_the_images_and_only_rank0_writes_the_summary(model_file, qc_folder, tmp_path):
    import os
    import subprocess

    helper, record, out = tmp_path / "helper.py", tmp_path / "record", tmp_path / "qc"
    helper.write_text(TORCHRUN_HELPER)
    record.mkdir()
    env = dict(os.environ, RECORD_DIR=str(record), OMP_NUM_THREADS="1")
    cmd = torchrun_cmd(helper, "qc", model_file, qc_folder, "-o", out, "--device", "cpu")
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    done = {r: (record / f"rank{r}.txt").read_text().split() for r in (0, 1)}
    assert done == {0: [QC_ROIS[0], QC_ROIS[2]], 1: [QC_ROIS[1]]}  # every other file, none twice
    assert sorted(p.name for p in record.iterdir() if p.name.startswith("cohort")) == ["cohort_by_rank0"]
    assert [r["roi"] for r in _qc_rows(out)][::5] == list(QC_ROIS)  # every rank's rows, in the given order
    assert run.stdout.count("wrote ") == 3 and run.stdout.count("qc of 3 image(s) on 2 process(es)") == 1


# --- diagnose on a cohort ----------------------------------------------------------------------

def test_diagnose_on_a_steinbock_folder_covers_every_image_and_names_the_odd_scales(imc_testdata, capsys):
    import json

    folder = imc_testdata / "steinbock_img"
    assert main(["diagnose", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    files = sorted(folder.glob("*.ome.tiff"))
    assert result["n_images"] == len(files) == 15
    assert [im["name"] for im in result["images"]] == [f.name[: -len(".ome.tiff")] for f in files]
    channels = {c["name"]: c for c in result["channels"]}
    # independent: p99 of each image's raw channel, median over the images
    p99 = [float(np.percentile(read_imc(f).data[1], 99)) for f in files]
    assert channels["Cytokeratin 5"]["p99_median"] == pytest.approx(float(np.median(p99)), rel=1e-6)
    # the data's known issue: Pr141 (Cytokeratin 5) is detectable only in mockData1 and mockData3
    named = {o["image"] for o in channels["Cytokeratin 5"]["outliers"]}
    assert named and all("mockData1" in n or "mockData3" in n for n in named)

    assert main(["diagnose", str(folder)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Cohort of 15 images; normalization fitted on all of them")
    assert all(f"- {f.name[: -len('.ome.tiff')]}: " in text for f in files)
    assert main(["diagnose", str(folder), "--acquisition", "20210305_NE_mockData2_001"]) == 0
    assert capsys.readouterr().out.startswith("Diagnosis of ")  # one image, as before


def test_diagnose_names_a_channel_empty_in_one_image(qc_folder, capsys):
    source = qc_folder / f"{QC_ROIS[0]}.ome.tiff"
    with tifffile.TiffFile(source) as tif:
        data, xml = tif.series[0].asarray(), tif.ome_metadata
    source.unlink()
    data[3] = 0  # YBX1 lost in this acquisition
    tifffile.imwrite(source, data, description=xml.encode(), metadata=None)
    assert main(["diagnose", str(qc_folder)]) == 0
    assert f"[!] YBX1 is empty in 1 of 3 images: {QC_ROIS[0]}" in capsys.readouterr().out
