"""Export a trained model as a BioImage Model Zoo package (bioimageio spec 0.5).

The package is one zip: ``rdf.yaml`` (the description), the weights twice (``pytorch_state_dict``
with the architecture file that rebuilds the network from torch alone, and ``torchscript``), test
input and output tensors cut from a real image, a cover, a documentation page with a Validation
section, a ``CITATION.cff`` and an attachment with what only this plugin reads back (the PCA
baseline, the motifs, the training histories). Raw counts go in; the reconstruction in counts and
the latent map come out, deterministically (:mod:`~napari_imc_vae.engine.bmz.arch`). The rdf's
``config.napari_imc_vae`` holds the rest of the model file, so that
:func:`~napari_imc_vae.engine.bmz.load.read_package` rebuilds the same model file content.

Needs no bioimageio library: the zoo's own checks (``bioimageio test``) run in the tests.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.util
import io
import re
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_imc_vae import __version__
from napari_imc_vae.engine.model_file import schema as model_schema
from napari_imc_vae.engine.bmz import arch as bmz_arch
from napari_imc_vae.engine.model import vae as model_module
from napari_imc_vae.engine.bmz.load import (
    ARCH_CALLABLE,
    CONFIG_KEY,
    FILES,
    PACKAGE_FORMAT,
    PACKAGE_FORMAT_VERSION,
    SPEC_VERSION,
    package_state,
)
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.io import ImcImage
from napari_imc_vae.io.atomic import atomic_write

__all__ = ["ExportResult", "architecture_source", "export_package", "build_zoo_module", "test_crop"]

#: Side of the test tensor's crop (px, rounded down to the stride); small keeps the package light.
TEST_CROP = 64
#: Tolerances for the zoo's test of the torchscript weights against the test output (raw counts).
REPRODUCIBILITY = {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-3, "mismatched_elements_per_million": 100}
# what the architecture file may import: torch and the standard library it uses
_ALLOWED_IMPORTS = {"__future__", "math", "typing", "dataclasses", "torch", "torch.nn", "torch.nn.functional"}


@dataclass
class ExportResult:
    path: Path
    test_shape: tuple[int, ...]
    crop: tuple[int, int, int, int]  # y0, x0, height, width in the sample image
    max_torchscript_difference: float
    notes: list[str]


def architecture_source() -> str:
    """The package's architecture file: engine/model/vae.py, then engine/bmz/arch.py, importing only torch.

    Raises
    ------
    RuntimeError
        If a line of either would import anything else (the package would not stand alone).
    """
    parts = []
    for module in (model_module, bmz_arch):
        lines = Path(module.__file__).read_text(encoding="utf-8").splitlines()
        keep = [line for line in lines
                if "napari_imc_vae" not in line or not line.lstrip().startswith(("from ", "import "))]
        if module is bmz_arch:  # a second __future__ import would be a syntax error
            keep = [line for line in keep if line.strip() != "from __future__ import annotations"]
        parts.append("\n".join(keep))
    header = (f"# Written by napari-imc-vae {__version__}: the network (engine/model/vae.py) and its zoo wrapper "
              f"(engine/bmz/arch.py).\n# Imports only torch: the package works without napari-imc-vae.\n")
    source = header + "\n\n".join(parts) + "\n"
    _check_imports(source)
    return source


def _check_imports(source: str) -> None:
    import ast

    for node in ast.walk(ast.parse(source)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        bad = [n for n in names if n not in _ALLOWED_IMPORTS]
        if bad:
            raise RuntimeError(f"the architecture file would import {bad}: it must import only torch")


def build_zoo_module(trained: TrainedModel, source: str | None = None, stride: int | None = None, *,
                     folder: str | Path | None = None):
    """The package's :class:`ImcVaeZoo` built from the architecture file's text, with this model's weights.

    Parameters
    ----------
    folder : path-like, optional
        Where the architecture file is written; it must stay there while the module is scripted
        (torch.jit reads the source). Default: a temporary folder, removed at once (eager use).

    Returns
    -------
    (nn.Module, dict)
        The module (eval mode, CPU) and the kwargs the rdf passes to it.
    """
    source = architecture_source() if source is None else source
    if folder is None:
        with tempfile.TemporaryDirectory() as temporary:
            return build_zoo_module(trained, source, stride, folder=temporary)
    path = Path(folder) / FILES["architecture"]
    path.write_text(source, encoding="utf-8")
    name = f"napari_imc_vae_zoo_arch_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    module = sys.modules.get(name)
    if module is None or Path(module.__file__) != path:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    kwargs = zoo_kwargs(trained, stride)
    zoo = getattr(module, ARCH_CALLABLE)(**kwargs)
    zoo.load_state_dict(package_state(trained))
    return zoo.eval(), kwargs


def zoo_kwargs(trained: TrainedModel, stride: int | None = None) -> dict:
    from dataclasses import asdict

    p = trained.normalizer.params
    return {"model_config": asdict(trained.model.config), "hot_pixel_threshold": p.hot_pixel_threshold,
            "arcsinh_cofactor": p.arcsinh_cofactor, "zscore": bool(p.zscore),
            "stride": int(stride or max(1, trained.model.config.patch_size // 2))}


def test_crop(data: np.ndarray, patch: int, stride: int, size: int = TEST_CROP) -> tuple[int, int, int, int]:
    """The square crop (y0, x0, side, side) with the most signal, a side the package accepts.

    The side is a multiple of the stride, at least one patch: the sizes the rdf allows.

    Raises
    ------
    ValueError
        If the image is smaller than the smallest input the package takes.
    """
    smallest = stride * -(-patch // stride)
    _, h, w = data.shape
    side = max(smallest, (min(size, h, w) // stride) * stride)
    if side > min(h, w):
        raise ValueError(f"sample image is {h}×{w} px; the package's test input needs at least "
                         f"{smallest}×{smallest} px (the model's patch, rounded up to the stride)")
    signal = np.nan_to_num(np.arcsinh(np.clip(data, 0, None))).sum(axis=0)  # (Y, X)
    best, best_sum = (0, 0), -1.0
    for y0 in range(0, h - side + 1, max(stride, side // 2)):
        for x0 in range(0, w - side + 1, max(stride, side // 2)):
            total = float(signal[y0:y0 + side, x0:x0 + side].sum())
            if total > best_sum:
                best, best_sum = (y0, x0), total
    return best[0], best[1], side, side


def _torchscript(zoo) -> bytes:
    """The wrapper scripted (its loops and sizes stay general) around the network traced on one batch."""
    tiles = torch.zeros(4, zoo.net.vae.config.in_channels, zoo.patch_size, zoo.patch_size)
    net = zoo.net
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the D4 tables are constants indeed
            zoo.net = torch.jit.trace(net, tiles, check_trace=False)
        scripted = torch.jit.script(zoo)
    finally:
        zoo.net = net
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return buffer.getvalue()


def _tiff(array: np.ndarray) -> bytes:
    """A sample tensor (C, Y, X) as TIFF: readable by imageio, as the spec asks (it reads no .npy there)."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return buffer.getvalue()


def _model_name(trained: TrainedModel, given: str | None) -> str:
    if given:
        name = given
    else:
        targets = [n.split("_", 1)[-1] for n in trained.channel_names]
        name = f"IMC VAE {len(targets)} markers ({', '.join(targets)})"
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", " ", name)  # the characters the spec allows
    name = re.sub(r"\s+", " ", name).strip()[:64].strip()
    if len(name) < 5:
        raise ValueError(f"name must have at least 5 letters, digits or spaces, got {given!r}")
    return name


def export_package(trained: TrainedModel, sample: ImcImage, output: str | Path, *, name: str | None = None,
                   authors: list[str] | None = None, license: str = "CC-BY-4.0",
                   description: str | None = None) -> ExportResult:
    """Write ``trained`` as a zoo package (a zip) at ``output``, its test data cut from ``sample``.

    Parameters
    ----------
    trained : TrainedModel
    sample : ImcImage
        A real image with the model's channels (ideally one it was trained on): the test input is
        its square crop with the most signal, the cover and the Validation figures come from it.
    output : path-like
        The zip to write (atomically).
    name, authors, license, description
        The rdf's fields; default a name from the panel, the user's login name, CC-BY-4.0.

    Returns
    -------
    ExportResult

    Raises
    ------
    ChannelMismatchError
        ``sample`` lacks channels of the model (names them).
    ValueError
        ``sample`` is smaller than a patch, or the torchscript weights do not reproduce the
        state-dict weights (should not happen; names the difference).
    OutputError
        ``output`` cannot be written.
    """
    from napari_imc_vae.engine.bmz import docs as bmz_docs

    match = trained.match_channels(sample)
    data = match.take(sample.data)
    notes = [f"sample image: {match.note()}"] if match.ignored else []
    source = architecture_source()
    with tempfile.TemporaryDirectory() as folder:  # torch.jit.script reads the architecture's source
        zoo, kwargs = build_zoo_module(trained, source, folder=folder)
        stride, patch = kwargs["stride"], trained.model.config.patch_size
        y0, x0, h, w = test_crop(data, patch, stride)
        test_input = np.ascontiguousarray(data[None, :, y0:y0 + h, x0:x0 + w], dtype=np.float32)
        with torch.no_grad():
            recon, latent = (t.numpy() for t in zoo(torch.from_numpy(test_input)))
            script_bytes = _torchscript(zoo)
            scripted = torch.jit.load(io.BytesIO(script_bytes))
            s_recon, s_latent = (t.numpy() for t in scripted(torch.from_numpy(test_input)))
    difference = float(max(np.abs(s_recon - recon).max(), np.abs(s_latent - latent).max()))
    if not (np.allclose(s_recon, recon, rtol=1e-4, atol=1e-4) and np.allclose(s_latent, latent, rtol=1e-4, atol=1e-4)):
        raise ValueError(f"the torchscript weights differ from the state-dict weights by {difference:.3g} "
                         f"on the test input; not exported")
    state = package_state(trained)
    weights = io.BytesIO()
    torch.save(state, weights)
    extras = io.BytesIO()
    torch.save(_extras(trained), extras)
    names = _channel_labels(trained)
    authors = authors or [getpass.getuser() or "unknown"]
    model_name = _model_name(trained, name)
    page = bmz_docs.documentation(trained, sample, model_name, (y0, x0, h, w), kwargs)
    files = {
        FILES["architecture"]: source.encode("utf-8"),
        FILES["state_dict"]: weights.getvalue(),
        FILES["torchscript"]: script_bytes,
        FILES["extras"]: extras.getvalue(),
        FILES["test_input"]: _npy(test_input),
        FILES["test_output"]: _npy(recon),
        FILES["test_latent"]: _npy(latent),
        **{FILES[f"sample_{key}"]: _tiff(array[0]) for key, array in
           (("input", test_input), ("output", recon), ("latent", latent))},
        FILES["cover"]: bmz_docs.cover_png(test_input[0], recon[0], names),
        FILES["documentation"]: page.encode("utf-8"),
        FILES["citation"]: bmz_docs.citation_cff(model_name, authors, license).encode("utf-8"),
    }
    rdf = _rdf(trained, sample, model_name, authors, license, description, kwargs, names, files)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("rdf.yaml", rdf)
            for file_name, content in files.items():
                z.writestr(file_name, content)

    atomic_write(output, write)
    return ExportResult(output, tuple(test_input.shape), (y0, x0, h, w), difference, notes)


def _channel_labels(trained: TrainedModel) -> list[str]:
    from napari_imc_vae.engine.apply.use_case import steinbock_names

    return steinbock_names(trained)


def _extras(trained: TrainedModel) -> dict:
    """What the rdf's config does not hold (tensors, long histories), weights-only loadable."""
    d = trained.to_dict()
    return {key: d[key] for key in ("history", "validation_history", "baseline", "motifs") if key in d}


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _file(files: dict, key: str) -> dict:
    name = FILES[key]
    return {"source": name, "sha256": _sha256(files[name])}


def _rdf(trained, sample, model_name, authors, license, description, kwargs, names, files) -> str:
    import yaml

    from napari_imc_vae.engine.bmz.docs import TAGS, citation_entries

    p, s, d = trained.model.config.patch_size, kwargs["stride"], trained.model.config.latent_dim
    pixel = float(getattr(sample, "pixel_size_um", None) or 1.0)

    def space(axis_id: str, size, scale: float) -> dict:
        return {"type": "space", "id": axis_id, "size": size, "unit": "micrometer", "scale": scale}

    smallest = s * -(-p // s)
    in_axes = [{"type": "batch"}, {"type": "channel", "channel_names": names}] + [
        space(a, {"min": smallest, "step": s}, pixel) for a in ("y", "x")]
    recon_axes = [{"type": "batch"}, {"type": "channel", "channel_names": names}] + [
        space(a, {"tensor_id": "raw", "axis_id": a}, pixel) for a in ("y", "x")]
    latent_axes = [{"type": "batch"}, {"type": "channel", "channel_names": [f"latent{i}" for i in range(d)]}] + [
        space(a, {"tensor_id": "raw", "axis_id": a}, pixel * s) for a in ("y", "x")]
    dtype = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    model_dict = trained.to_dict()
    model_dict["optimizer_state"] = None  # a package is for applying the model, not resuming its training
    ours = {
        "format": PACKAGE_FORMAT, "format_version": PACKAGE_FORMAT_VERSION, "package_version": __version__,
        "model_format_version": model_dict["format_version"],
        **{key: model_dict[key] for key in ("model_config", "critic_config", "train_config", "step",
                                            "channel_names", "channel_keys", "normalizer")},
        **{key: model_dict[key] for key in ("rate_calibration",) if key in model_dict},
        "extras": FILES["extras"],
        # the model file's content hash without its optimizer state: the loader rebuilds that dict from
        # rdf, weights and extras and compares, so a changed part is found even where no sha256 reaches
        "content_sha256": model_schema.content_sha256(model_dict),
        "source_model_sha256": trained.file_sha256,
    }
    rdf = {
        "type": "model", "format_version": SPEC_VERSION, "name": model_name,
        "description": description or (f"Permutation-invariant patch VAE for Imaging Mass Cytometry "
                                       f"({len(names)} markers): raw counts in, reconstruction in counts "
                                       f"and a latent map out."),
        "authors": [{"name": a} for a in authors],
        "cite": citation_entries(),
        "license": license, "tags": TAGS,
        "documentation": _file(files, "documentation"),
        "covers": [_file(files, "cover")],
        "attachments": [_file(files, "citation"), _file(files, "extras")],
        "timestamp": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "inputs": [{"id": "raw", "description": "raw IMC counts, one channel per marker (metal_target)",
                    "axes": in_axes, "test_tensor": _file(files, "test_input"),
                    "sample_tensor": _file(files, "sample_input"), "preprocessing": dtype}],
        "outputs": [
            {"id": "reconstruction", "description": "the model's reconstruction in counts (never negative)",
             "axes": recon_axes, "test_tensor": _file(files, "test_output"),
             "sample_tensor": _file(files, "sample_output"), "postprocessing": dtype},
            {"id": "latent", "description": f"posterior mean of each {p}×{p} px tile, on the tile-centre grid "
                                            f"(stride {s} px): the tissue code",
             "axes": latent_axes, "test_tensor": _file(files, "test_latent"),
             "sample_tensor": _file(files, "sample_latent"), "postprocessing": dtype},
        ],
        "weights": {
            "pytorch_state_dict": {
                **_file(files, "state_dict"),
                "architecture": {**_file(files, "architecture"), "callable": ARCH_CALLABLE, "kwargs": kwargs},
                "pytorch_version": torch.__version__.split("+")[0],
            },
            "torchscript": {**_file(files, "torchscript"), "parent": "pytorch_state_dict",
                            "pytorch_version": torch.__version__.split("+")[0]},
        },
        "config": {"bioimageio": {"reproducibility_tolerance": [REPRODUCIBILITY]}, CONFIG_KEY: ours},
    }
    return yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True, width=120)
