"""BioImage Model Zoo packages: the exported forward is the plugin's reconstruction, a package loads back
as the same model, it stands alone (no napari_imc_vae importable), and damaged packages are refused."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
import yaml

from napari_imc_vae.engine.bmz.export import architecture_source, build_zoo_module, export_package
from napari_imc_vae.engine.bmz.load import FILES
from napari_imc_vae.engine.model_file.checkpoint import ModelFileError, TrainedModel
from napari_imc_vae.engine.apply.inference import reconstruct_image
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.engine.training.run import TrainingRun
from napari_imc_vae.io import ImcImage, read_imc
from napari_imc_vae.preprocessing import ChannelMismatchError
from napari_imc_vae.preprocessing.params import NormalizationParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_IMAGE = "steinbock_img/20210305_NE_mockData1_002.ome.tiff"  # raw counts, every channel has signal
OTHER_IMAGE = "steinbock_img/20210305_NE_mockData1_003.ome.tiff"


def _train(image: ImcImage, **model) -> TrainedModel:
    # hot pixels, arcsinh, clip and z-score: every step the package's forward re-implements
    params = NormalizationParams(hot_pixel_threshold=50.0, arcsinh_cofactor=5.0, clip_percentile=99.9)
    trained, _ = TrainingRun(
        [image], normalization=params,
        model_config={"patch_size": 8, "latent_dim": 4, "width": 32, "depth": 1, **model},
        train_config=TrainConfig(steps=4, batch_size=32, device="cpu", val_every=4, max_val_patches=32),
    ).run()
    return trained


@pytest.fixture(scope="module")
def train_image(imc_testdata) -> ImcImage:
    return read_imc(imc_testdata / TRAIN_IMAGE)


@pytest.fixture(scope="module")
def case(train_image, tmp_path_factory):
    """A tiny model trained on a real ROI, saved, and exported with that ROI as the sample."""
    folder = tmp_path_factory.mktemp("bmz")
    trained = _train(train_image)
    trained.save(folder / "model.pt")
    result = export_package(trained, train_image, folder / "model.zip", authors=["Test Author"])
    return trained, folder / "model.pt", result


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def _rewrite(src, dst, *, files: dict | None = None, rdf=None):
    """A copy of a package with files replaced (bytes) or left out (None) and the rdf edited."""
    files = files or {}
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out:
        for name in z.namelist():
            if name == "rdf.yaml":
                d = yaml.safe_load(z.read(name))
                out.writestr(name, yaml.safe_dump(rdf(d) if rdf else d, sort_keys=False))
            elif name in files:
                if files[name] is not None:
                    out.writestr(name, files[name])
            else:
                out.writestr(name, z.read(name))
    return dst


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_package_forward_is_the_plugins_reconstruction(train_image, arch):
    """Raw counts through the package's forward = the plugin's tiled reconstruction in counts, and its latent map."""
    trained = _train(train_image, arch=arch, conv_channels=4)
    zoo, kwargs = build_zoo_module(trained)
    crop = trained.match_channels(train_image).take(train_image.data)[:, :48, 8:48]
    with torch.no_grad():
        recon, latent = zoo(torch.from_numpy(np.ascontiguousarray(crop[None], dtype=np.float32)))
    ours = reconstruct_image(trained.model, crop, trained.normalizer, outputs=("raw",),
                             rate_factors=trained.rate_factors)
    assert trained.rate_factors is not None and any(f != 1.0 for f in trained.rate_factors)  # calibrated: the package too
    assert recon.shape == (1, *crop.shape) and latent.shape == (1, 4, 48 // kwargs["stride"], 40 // kwargs["stride"])
    np.testing.assert_allclose(recon[0].numpy(), ours.raw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(latent[0].numpy(), ours.latent, rtol=1e-4, atol=1e-4)
    assert recon.min() >= 0  # counts
    assert ours.raw.std() > 0  # not a trivially flat image


def test_zoo_d4_tables_are_the_engines():
    from napari_imc_vae.engine.bmz import arch as bmz_arch
    from napari_imc_vae.engine.model import d4

    assert list(bmz_arch.ZOO_D4_INVERSE) == d4.D4_INVERSE.tolist()
    for p in (2, 5, 8):
        assert torch.equal(bmz_arch.zoo_d4_permutations(p, torch.device("cpu")), d4.d4_permutations(p))


def test_architecture_file_imports_only_torch():
    import ast

    tree = ast.parse(architecture_source())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split(".")[0] for m in modules} <= {"__future__", "math", "typing", "dataclasses", "torch"}


def test_package_loads_back_as_the_same_model(case, imc_testdata):
    from napari_imc_vae.engine.apply.use_case import apply_to_image

    trained, model_file, result = case
    a, b = TrainedModel.load(model_file), TrainedModel.load(result.path)
    assert b.source_file == str(result.path) and b.notes == []
    assert a.model.state_dict().keys() == b.model.state_dict().keys()
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert a.normalizer.to_dict() == b.normalizer.to_dict() and a.channel_keys == b.channel_keys
    assert a.rate_factors == b.rate_factors and a.rate_factors is not None
    assert torch.equal(a.baseline.components, b.baseline.components)
    np.testing.assert_array_equal(a.motif_model.centers, b.motif_model.centers)
    assert (a.history, a.validation_history, a.step) == (b.history, b.validation_history, b.step)
    other = read_imc(imc_testdata / OTHER_IMAGE)
    ra, rb = apply_to_image(a, other), apply_to_image(b, other)
    for name in ("raw", "error", "latent"):
        np.testing.assert_allclose(getattr(rb.reconstruction, name), getattr(ra.reconstruction, name), rtol=1e-6,
                                   atol=1e-6)
    assert ra.quality["report"] == rb.quality["report"]


def test_package_documents_training_and_validation(case, train_image):
    _, _, result = case
    rdf = _rdf(result.path)
    with zipfile.ZipFile(result.path) as z:
        page = z.read(FILES["documentation"]).decode()
        cover = z.read(FILES["cover"])
        test_input = np.load(io.BytesIO(z.read(FILES["test_input"])))
    assert "## Validation" in page and "PCA" in page and "arcsinh(x/5)" in page
    assert "20210305_NE_mockData1_002" in page  # the training image, by name
    assert cover[:8] == b"\x89PNG\r\n\x1a\n"
    names = rdf["inputs"][0]["axes"][1]["channel_names"]
    assert "Pr141_Cytokeratin 5" in names and len(names) == 5
    assert rdf["format_version"].startswith("0.5.") and set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    assert rdf["authors"] == [{"name": "Test Author"}] and rdf["license"] and rdf["tags"] and rdf["cite"]
    # the test input is real data: the richest crop of the training image, in raw counts
    y0, x0, h, w = result.crop
    assert test_input.shape == (1, 5, h, w) and test_input.max() > 10
    np.testing.assert_array_equal(test_input[0], train_image.data[:, y0:y0 + h, x0:x0 + w])


_STANDALONE = textwrap.dedent("""
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "napari_imc_vae":
                raise ImportError("napari_imc_vae is blocked: the package must stand alone")
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if not p.rstrip("/").endswith("/src")]
    import numpy as np
    from bioimageio.core import create_prediction_pipeline, load_model_description
    from bioimageio.core.digest_spec import get_test_input_sample, get_test_output_sample
    model = load_model_description(sys.argv[1], perform_io_checks=False)
    out = {}
    for weights in ("pytorch_state_dict", "torchscript"):
        with create_prediction_pipeline(model, weight_format=weights) as pipeline:
            got = pipeline.predict_sample_without_blocking(get_test_input_sample(model))
        expected = get_test_output_sample(model)
        out[weights] = {str(k): float(np.abs(got.members[k].data.values - v.data.values).max())
                        for k, v in expected.members.items()}
    out["loaded"] = sorted(m for m in sys.modules if m.startswith("napari_imc_vae"))
    print(json.dumps(out))
""")


def test_package_stands_alone(case):
    """In a python that cannot import napari_imc_vae, bioimageio.core reproduces the package's test outputs."""
    pytest.importorskip("bioimageio.core", reason="the bmz extra (bioimageio.core) is not installed")
    _, _, result = case
    run = subprocess.run([sys.executable, "-I", "-c", _STANDALONE, str(result.path)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    for weights in ("pytorch_state_dict", "torchscript"):
        assert set(out[weights]) == {"reconstruction", "latent"}
        assert max(out[weights].values()) < 1e-3, out


# refusals ------------------------------------------------------------------------------------------


def test_tampered_weights_are_refused(case, tmp_path):
    _, _, result = case
    with zipfile.ZipFile(result.path) as z:
        weights = bytearray(z.read(FILES["state_dict"]))
    weights[len(weights) // 2] ^= 0xFF
    bad = _rewrite(result.path, tmp_path / "bad.zip", files={FILES["state_dict"]: bytes(weights)})
    with pytest.raises(ModelFileError, match=r"weights_state_dict\.pt \(weights\.pytorch_state_dict\) does not "
                                             r"match its sha256"):
        TrainedModel.load(bad)


def test_weights_changed_with_a_matching_sha256_are_refused(case, tmp_path):
    """Someone swaps the weights and fixes the rdf's sha256: the exported content hash still tells."""
    trained, _, result = case
    state = {k: v.clone() for k, v in torch.load(io.BytesIO(zipfile.ZipFile(result.path).read(FILES["state_dict"])),
                                                 weights_only=True).items()}
    key = next(k for k in state if k.startswith("net.vae.") and state[k].is_floating_point())
    state[key] += 0.5
    buffer = io.BytesIO()
    torch.save(state, buffer)
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()

    def fix_sha(rdf):
        rdf["weights"]["pytorch_state_dict"]["sha256"] = digest
        return rdf

    bad = _rewrite(result.path, tmp_path / "swapped.zip", files={FILES["state_dict"]: buffer.getvalue()}, rdf=fix_sha)
    with pytest.raises(ModelFileError, match="changed after export"):
        TrainedModel.load(bad)


@pytest.mark.parametrize("missing", ["state_dict", "extras", "test_input"])
def test_missing_file_is_refused(case, tmp_path, missing):
    _, _, result = case
    bad = _rewrite(result.path, tmp_path / "missing.zip", files={FILES[missing]: None})
    with pytest.raises(ModelFileError, match=rf"the file {FILES[missing]} named in .* is missing from the package"):
        TrainedModel.load(bad)


@pytest.mark.parametrize("version", ["0.4.10", "0.6.0", None])
def test_wrong_spec_version_is_refused(case, tmp_path, version):
    _, _, result = case

    def set_version(rdf):
        rdf["format_version"] = version
        return rdf

    bad = _rewrite(result.path, tmp_path / "version.zip", rdf=set_version)
    shown = version or r"\(none\)"
    with pytest.raises(ModelFileError, match=rf"spec format_version {shown}; this version reads "
                                             r"packages of spec 0\.5\.x"):
        TrainedModel.load(bad)


def test_package_not_exported_by_us_is_refused(case, tmp_path):
    _, _, result = case

    def drop_ours(rdf):
        rdf["config"].pop("napari_imc_vae")
        return rdf

    bad = _rewrite(result.path, tmp_path / "theirs.zip", rdf=drop_ours)
    with pytest.raises(ModelFileError, match="not one exported by napari-imc-vae"):
        TrainedModel.load(bad)


def test_edited_normalizer_is_refused(case, tmp_path):
    _, _, result = case

    def shift_mean(rdf):
        rdf["config"]["napari_imc_vae"]["normalizer"]["channels"]["mean"][0] += 1.0
        return rdf

    bad = _rewrite(result.path, tmp_path / "edited.zip", rdf=shift_mean)
    with pytest.raises(ModelFileError, match=r"norm_mean in weights_state_dict\.pt does not match "
                                             r"config\.napari_imc_vae\.normalizer"):
        TrainedModel.load(bad)


def test_edited_rate_calibration_is_refused(case, tmp_path):
    """The factors the package's forward applies (weights) and the plugin's (rdf) must agree."""
    _, _, result = case

    def scale_factor(rdf):
        rdf["config"]["napari_imc_vae"]["rate_calibration"]["factors"][0] *= 0.9
        return rdf

    bad = _rewrite(result.path, tmp_path / "edited.zip", rdf=scale_factor)
    with pytest.raises(ModelFileError, match=r"rate_factor in weights_state_dict\.pt does not match "
                                             r"config\.napari_imc_vae\.rate_calibration"):
        TrainedModel.load(bad)


def test_image_lacking_a_channel_of_the_package_is_named(case, train_image):
    from napari_imc_vae.engine.apply.use_case import apply_to_image

    _, _, result = case
    trained = TrainedModel.load(result.path)
    keep = [i for i, key in enumerate(train_image.channel_keys) if key != "Sm147"]
    lacking = ImcImage(train_image.data[keep], [train_image.channel_names[i] for i in keep],
                       metals=[train_image.channel_keys[i] for i in keep], source="lacking.ome.tiff")
    with pytest.raises(ChannelMismatchError, match="Sm147|Laminin"):
        apply_to_image(trained, lacking)
