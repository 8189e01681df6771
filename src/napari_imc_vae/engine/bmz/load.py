"""Read a BioImage Model Zoo package exported by this plugin back as a :class:`TrainedModel`.

:meth:`TrainedModel.load <napari_imc_vae.engine.model_file.checkpoint.TrainedModel.load>` hands a zip with an
``rdf.yaml`` here, so every command and widget that opens a model file opens a package too. The
model is rebuilt from the package's own parts: the ``pytorch_state_dict`` weights (the network and
its normalization buffers), the rdf's ``config.napari_imc_vae`` (architecture, normalizer,
channels, training settings) and the extras attachment (baseline, motifs, histories); the model
file's checks (:mod:`~napari_imc_vae.engine.model_file.schema`) then run on the result as on a file.

Refused, with a message naming what is wrong: a zip that is not a package, a package of another
spec version or not exported by this plugin, a file the rdf names that is missing or whose sha256
differs, parts that disagree with each other. No bioimageio library is needed.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import torch

__all__ = ["ARCH_CALLABLE", "CONFIG_KEY", "FILES", "PACKAGE_FORMAT", "SPEC_VERSION", "PackageError", "is_package",
           "package_state", "read_package"]

#: The bioimageio model spec the export writes; packages of another 0.5.x are read too.
SPEC_VERSION = "0.5.12"
SPEC_SERIES = "0.5."
#: Our section of the rdf's ``config`` and its format.
CONFIG_KEY = "napari_imc_vae"
PACKAGE_FORMAT = "napari-imc-vae/bmz-package"
PACKAGE_FORMAT_VERSION = 1
ARCH_CALLABLE = "ImcVaeZoo"
#: The package's files.
FILES = {
    "architecture": "imc_vae_zoo.py", "state_dict": "weights_state_dict.pt", "torchscript": "weights_torchscript.pt",
    "extras": "napari_imc_vae_extras.pt", "test_input": "test_input.npy", "test_output": "test_reconstruction.npy",
    "test_latent": "test_latent.npy", "sample_input": "sample_input.tif", "sample_output": "sample_reconstruction.tif",
    "sample_latent": "sample_latent.tif", "cover": "cover.png", "documentation": "README.md",
    "citation": "CITATION.cff",
}
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
_VAE_PREFIX = "net.vae."
_NORMALIZER_BUFFERS = {"norm_mean": "mean", "norm_std": "std"}


def package_state(trained) -> dict:
    """The ``ImcVaeZoo`` state dict of a model: the network under ``net.vae.`` and the normalization buffers."""
    norm = trained.normalizer
    state = {_VAE_PREFIX + k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    state["norm_mean"] = torch.tensor(norm.mean, dtype=torch.float32)
    state["norm_std"] = torch.tensor(norm.std, dtype=torch.float32)
    state["norm_clip_high"] = torch.tensor([float("inf") if v is None else v for v in norm.clip_high],
                                           dtype=torch.float32)
    state["norm_constant"] = torch.tensor(norm.constant, dtype=torch.bool)
    factors = trained.rate_factors
    state["rate_factor"] = torch.tensor([1.0] * norm.n_channels if factors is None else factors, dtype=torch.float32)
    return state


def rdf_name(path: str | Path) -> str | None:
    """The rdf's name in a zip (``rdf.yaml`` or ``bioimageio.yaml`` at the top), or None."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return None
    return next((n for n in RDF_NAMES if n in names), None)


def is_package(path: str | Path) -> bool:
    """Whether ``path`` is a zip holding a zoo description (a model file is a zip too, without one)."""
    return zipfile.is_zipfile(path) and rdf_name(path) is not None


class PackageError(ValueError):
    """A zoo package that cannot be read back; the message names the package and the problem."""


def _error(path, message: str) -> PackageError:
    return PackageError(f"model package {path}: {message}")


def _read_rdf(path: Path, z: zipfile.ZipFile) -> dict:
    import yaml

    name = rdf_name(path)
    try:
        rdf = yaml.safe_load(z.read(name))
    except yaml.YAMLError as e:
        raise _error(path, f"{name} is not valid YAML ({' '.join(str(e).split())[:200]})") from e
    if not isinstance(rdf, dict):
        raise _error(path, f"{name} does not describe a resource (got {type(rdf).__name__})")
    if rdf.get("type") != "model":
        raise _error(path, f"describes a {rdf.get('type')!r}, not a model")
    version = "" if rdf.get("format_version") is None else str(rdf["format_version"])
    if not version.startswith(SPEC_SERIES):
        raise _error(path, f"is written in bioimageio spec format_version {version or '(none)'}; this version "
                           f"reads packages of spec {SPEC_SERIES}x (as 'napari-imc-vae export' writes)")
    ours = (rdf.get("config") or {}).get(CONFIG_KEY) if isinstance(rdf.get("config"), dict) else None
    if not isinstance(ours, dict) or ours.get("format") != PACKAGE_FORMAT:
        raise _error(path, f"is a BioImage Model Zoo model but not one exported by napari-imc-vae (its {name} "
                           f"has no config.{CONFIG_KEY} section); only packages written by 'napari-imc-vae "
                           f"export' can be applied here")
    if not isinstance(ours.get("format_version"), int) or ours["format_version"] > PACKAGE_FORMAT_VERSION:
        raise _error(path, f"config.{CONFIG_KEY}.format_version is {ours.get('format_version')!r}; this version "
                           f"reads up to {PACKAGE_FORMAT_VERSION}: update napari-imc-vae")
    return rdf


def _file_nodes(node, where: str = ""):
    """Every ``{source, sha256}`` the rdf names (weights, architecture, tensors, attachments), with where."""
    if isinstance(node, dict):
        if isinstance(node.get("source"), str):
            yield where, node
        for key, value in node.items():
            yield from _file_nodes(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _file_nodes(value, f"{where}[{i}]")


def _check_files(path: Path, z: zipfile.ZipFile, rdf: dict) -> dict[str, bytes]:
    """Read every file the rdf names; a missing one or one whose sha256 differs is refused."""
    names = set(z.namelist())
    contents = {}
    for where, node in _file_nodes({k: v for k, v in rdf.items() if k != "config"}):
        source = node["source"]
        if "://" in source:
            raise _error(path, f"{where} points outside the package ({source}); an exported package holds its files")
        if source not in names:
            raise _error(path, f"the file {source} named in {where} is missing from the package")
        content = z.read(source)
        expected = node.get("sha256")
        if expected is not None and hashlib.sha256(content).hexdigest() != expected:
            raise _error(path, f"the file {source} ({where}) does not match its sha256 in the rdf: it was changed "
                               f"or damaged after export")
        contents[source] = content
    return contents


def _weights_source(path: Path, rdf: dict) -> str:
    try:
        return rdf["weights"]["pytorch_state_dict"]["source"]
    except (KeyError, TypeError):
        raise _error(path, "has no pytorch_state_dict weights (weights.pytorch_state_dict.source)") from None


def _load_tensors(path: Path, name: str, content: bytes):
    import pickle

    try:
        return torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise _error(path, f"{name} is not a weights-only torch file ({' '.join(str(e).split())[:160]})") from e


def _model_dict(path: Path, rdf: dict, contents: dict[str, bytes], model_format: str) -> dict:
    """The model file's dict (no optimizer state) rebuilt from the package's parts."""
    ours = rdf["config"][CONFIG_KEY]
    weights_name = _weights_source(path, rdf)
    state = _load_tensors(path, weights_name, contents[weights_name])
    extras_name = ours.get("extras")
    if extras_name not in contents:
        raise _error(path, f"config.{CONFIG_KEY}.extras names {extras_name!r}, which is not among the files "
                           f"the rdf lists with a sha256")
    extras = _load_tensors(path, extras_name, contents[extras_name])
    if not isinstance(state, dict) or not isinstance(extras, dict):
        raise _error(path, f"{weights_name} or {extras_name} does not hold a dict of tensors")
    vae_state = {k[len(_VAE_PREFIX):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(_VAE_PREFIX)}
    _check_buffers(path, state, ours.get("normalizer"), weights_name)
    _check_rate_buffer(path, state, ours.get("rate_calibration"), weights_name)
    try:
        d = {"format": model_format, "format_version": ours["model_format_version"],
             "package_version": ours["package_version"],
             **{key: ours[key] for key in ("model_config", "critic_config", "train_config")},
             "state_dict": vae_state, "optimizer_state": None, "step": ours["step"],
             **{key: ours[key] for key in ("channel_names", "channel_keys", "normalizer")},
             "history": extras.get("history", []), "validation_history": extras.get("validation_history", []),
             **{key: extras[key] for key in ("baseline", "motifs") if key in extras},
             **({} if ours.get("rate_calibration") is None else {"rate_calibration": ours["rate_calibration"]})}
    except KeyError as e:
        raise _error(path, f"config.{CONFIG_KEY} lacks {e.args[0]!r}") from None
    return d


def _check_buffers(path: Path, state: dict, normalizer, weights_name: str) -> None:
    """The normalization buffers the zoo's users apply must be the normalizer this plugin applies."""
    channels = (normalizer or {}).get("channels", {}) if isinstance(normalizer, dict) else {}
    for buffer, key in _NORMALIZER_BUFFERS.items():
        stored, expected = state.get(buffer), channels.get(key)
        if not isinstance(stored, torch.Tensor) or not isinstance(expected, list) or \
                not torch.allclose(stored.float(), torch.tensor(expected, dtype=torch.float32)):
            raise _error(path, f"the {buffer} in {weights_name} does not match config.{CONFIG_KEY}.normalizer: "
                               f"the package's parts disagree")


def _check_rate_buffer(path: Path, state: dict, calibration, weights_name: str) -> None:
    """The rate factors the zoo's users apply must be the ones this plugin applies (1 without calibration)."""
    stored = state.get("rate_factor")
    if stored is None and calibration is None:
        return  # a package exported before rate calibration: factor 1 on both sides
    factors = calibration.get("factors") if isinstance(calibration, dict) else None
    expected = factors if isinstance(factors, list) else None
    if not isinstance(stored, torch.Tensor) or expected is None or stored.shape != (len(expected),) or \
            not all(isinstance(f, (int, float)) for f in expected) or \
            not torch.allclose(stored.float(), torch.tensor(expected, dtype=torch.float32)):
        raise _error(path, f"the rate_factor in {weights_name} does not match config.{CONFIG_KEY}.rate_calibration: "
                           f"the package's parts disagree")


def read_package(path: str | Path, model_format: str, error: type[ValueError] = PackageError) -> dict:
    """The model file's dict exported into a zoo package, checked and stamped with its content hash.

    :meth:`TrainedModel.load <napari_imc_vae.engine.model_file.checkpoint.TrainedModel.load>` builds the model
    from it with every check a model file gets.

    Parameters
    ----------
    model_format : str
        The model files' ``format`` tag (``checkpoint.FORMAT``).
    error : type
        The exception raised (the caller's ModelFileError), a ValueError.

    Raises
    ------
    error
        One line naming the package and what is wrong (see the module's docstring).
    """
    from napari_imc_vae.engine.model_file import schema as model_schema

    try:
        return _read(Path(path), model_format, model_schema)
    except PackageError as e:
        if error is PackageError:
            raise
        # the caller's class (checkpoint's ModelFileError): checkpoint imports this module, not back
        raise error(str(e)) from e


def _read(path: Path, model_format: str, model_schema) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                raise _error(path, f"record {bad} does not match its checksum (a changed byte)")
            rdf = _read_rdf(path, z)
            contents = _check_files(path, z, rdf)
    except zipfile.BadZipFile as e:
        raise _error(path, f"is not a readable zip ({e})") from e
    d = _model_dict(path, rdf, contents, model_format)
    stored = rdf["config"][CONFIG_KEY].get("content_sha256")
    try:
        actual = model_schema.content_sha256(d)
    except model_schema.SchemaError as e:
        raise _error(path, f"is damaged: {e}") from e
    if stored != actual:
        raise _error(path, f"its parts (rdf config, weights, extras) are not the ones exported together "
                           f"(config.{CONFIG_KEY}.content_sha256 differs): changed after export")
    return model_schema.stamp(d)
