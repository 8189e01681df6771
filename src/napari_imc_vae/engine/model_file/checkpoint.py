"""Model files: one file, plain data only, loadable with ``torch.load(..., weights_only=True)``.

A file holds the format version, the package version, the configs as plain dicts, the weights,
the optimizer state, the step, the ordered channel names and keys, the normalizer's per-channel
parameters and the training history (DESIGN §6). It is written atomically (temp file, then
``os.replace``) so an interrupted save never leaves a broken model where a good one was, with
the SHA-256 of its bytes in the zip comment (:mod:`~napari_imc_vae.engine.model_file.file_bytes`).
"""

from __future__ import annotations

import os
import pickle
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from napari_imc_vae import __version__
from napari_imc_vae.engine.model_file import schema
from napari_imc_vae.engine.model_file.file_bytes import (add_file_hash, check_file_hash, check_zip_records,
                                                           unreadable_reason)
from napari_imc_vae.engine.quality.baselines import PCABaseline
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE
from napari_imc_vae.engine.apply.motifs import MotifModel
from napari_imc_vae.engine.apply.rate_calibration import RateCalibration
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.io import ImcImage
from napari_imc_vae.io.atomic import atomic_write
from napari_imc_vae.preprocessing import ChannelMatch, ChannelMismatchError, Normalizer, match_channels

__all__ = ["FORMAT", "FORMAT_VERSION", "ChannelMismatchError", "ModelFileError", "TrainedModel"]

FORMAT = "napari-imc-vae/model"
#: 2: the content hash (``content_sha256``) and every field are required. Files of format 1 load
#: with a note: their integrity cannot be checked.
FORMAT_VERSION = 2
#: No model this version writes comes near: MAX_PARAMETERS float32 weights plus two AdamW moments.
MAX_FILE_BYTES = 16 * schema.MAX_PARAMETERS
# ChannelMismatchError (a ValueError) is the preprocessing's: one matching rule for models and
# normalizers (see TrainedModel.match_channels).


class ModelFileError(ValueError):
    """A model file could not be read; the message names the file and the problem."""


@dataclass
class TrainedModel:
    """A model with everything needed to apply it to new images and to resume training."""

    model: PatchVAE
    normalizer: Normalizer
    critic_config: CriticConfig = field(default_factory=CriticConfig)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    step: int = 0
    optimizer_state: dict | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    validation_history: list[dict[str, float]] = field(default_factory=list)
    source_file: str | None = None
    file_sha256: str | None = None
    #: PCA-k (k = latent dims) and the mean patch, fitted on the training patches at the end of
    #: training: the fair yardstick for every later quality report. None in older files.
    baseline: PCABaseline | None = None
    #: Where the baseline was fitted, in words, and on how many patches of which images.
    baseline_info: dict = field(default_factory=dict)
    #: Tissue motifs fitted on the latent vectors of the training patches (None in older files):
    #: applied unchanged to every image, so that a motif means the same tissue in every ROI.
    motif_model: MotifModel | None = None
    #: What loading found that the user should know (a file without a content hash, say).
    notes: list[str] = field(default_factory=list)
    #: Per-channel factors on the reconstruction in counts, measured at the end of training
    #: (:mod:`~napari_imc_vae.engine.apply.rate_calibration`); None in older files: factor 1.
    rate_calibration: RateCalibration | None = None

    @property
    def rate_factors(self) -> list[float] | None:
        """The factors :func:`~napari_imc_vae.engine.apply.inference.reconstruct_image` applies (None: 1)."""
        return None if self.rate_calibration is None else list(self.rate_calibration.factors)

    @property
    def channel_names(self) -> list[str]:
        return list(self.normalizer.channel_names)

    @property
    def channel_keys(self) -> list[str]:
        return list(self.normalizer.channel_keys)

    def match_channels(self, image: ImcImage) -> ChannelMatch:
        """Where this model's channels are in ``image``: indices in the model's order.

        Channels are matched by key (metal) when the image has every one of the model's,
        else by name, so the same panel in another order works. Channels the model does not
        know are left out; ``ChannelMatch.ignored`` names them (say so to the user).

        Raises
        ------
        ChannelMismatchError
            The image lacks channels of the model's panel: names the image's file and the model
            file, the missing channels, the image's extra ones and the panel the model expects.
        """
        panel = f"model file {self.source_file}" if self.source_file else "the model's panel"
        where = f"image {image.source}" if image.source else "the image"
        if image.acquisition:
            where += f" (acquisition {image.acquisition})"
        return match_channels(self.channel_names, self.channel_keys, image.channel_names,
                              image.channel_keys, panel=panel, image=where)

    # saving ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "model_config": asdict(self.model.config),
            "critic_config": asdict(self.critic_config),
            "train_config": asdict(self.train_config),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer_state": _to_cpu(self.optimizer_state),
            "step": int(self.step),
            "channel_names": self.channel_names,
            "channel_keys": self.channel_keys,
            "normalizer": self.normalizer.to_dict(),
            "history": [dict(h) for h in self.history],
            "validation_history": [dict(h) for h in self.validation_history],
            **({} if self.baseline is None else
               {"baseline": {**self.baseline.to_state(), "info": dict(self.baseline_info)}}),
            **({} if self.motif_model is None else {"motifs": self.motif_model.to_state()}),
            **({} if self.rate_calibration is None else {"rate_calibration": self.rate_calibration.to_state()}),
        }

    @property
    def baseline_source(self) -> str | None:
        """The baseline's provenance in words, for reports; None without a stored baseline."""
        if self.baseline is None:
            return None
        return self.baseline_info.get("fitted_on") or f"PCA-{self.baseline.k} fitted on the training patches"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file atomically (the user's umask applies), with its content hash and the
        SHA-256 of its bytes (in the zip comment).

        Raises
        ------
        OutputError
            The file cannot be written (names the path and the cause).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = schema.stamp(self.to_dict())
        written_sha256 = []

        def write(f) -> None:
            torch.save(state, f)
            written_sha256.append(add_file_hash(f))  # the hash into the zip comment

        atomic_write(path, write)
        self.source_file, self.file_sha256 = str(path), written_sha256[-1]
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> TrainedModel:
        """Read a model file written by :meth:`save`: the one place model files are opened.

        Every field is checked (:mod:`~napari_imc_vae.engine.model_file.schema`) before the model is
        built; the content hash stored in the file must match its content, and the SHA-256 in the
        zip comment its bytes. Files of format 1 (written before the content hash) load with a note
        in :attr:`notes`; files saved before the SHA-256 in the comment load as before.

        Raises
        ------
        ModelFileError
            One line naming the file and what is wrong: missing, a folder or a FIFO, empty, cut
            short, not a model file (text, another zip), changed since it was saved, a field of the
            wrong type, range or shape, non-finite weights, a newer format, pickled code (refused
            by weights-only loading).
        """
        path = Path(path)
        _check_path(path)
        from napari_imc_vae.engine.bmz import load as bmz_import

        try:
            sha256, hashed = check_file_hash(path, ModelFileError)
            package = not hashed and bmz_import.is_package(path)  # a BioImage Model Zoo package (zip + rdf.yaml)
            if not package:
                if not hashed:  # the file hash covers the records' bytes, and more
                    check_zip_records(path, ModelFileError)
                d = torch.load(path, map_location="cpu", weights_only=True)
        except ModelFileError:
            raise
        except Exception as e:  # noqa: BLE001 - random bytes make the unpickler fail in any way
            raise ModelFileError(_unreadable(path, e)) from e
        if package:
            d = bmz_import.read_package(path, FORMAT, ModelFileError)
        trained = cls.from_dict(d, source=str(path), sha256=sha256)
        trained.model.to(map_location)
        return trained

    @classmethod
    def from_dict(cls, d: object, *, source: str = "<dict>", sha256: str | None = None) -> TrainedModel:
        """Check every field of a model file's dict, then build the model (see :meth:`load`)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelFileError(f"{source} is not a napari-imc-vae model file")
        try:
            return cls._from_checked(d, source, sha256)
        except ModelFileError:
            raise
        except schema.SchemaError as e:
            raise ModelFileError(f"model file {source} is damaged: {e}") from e
        except Exception as e:  # noqa: BLE001 - whatever a crafted value provokes: one line, not a traceback
            raise ModelFileError(f"model file {source} is damaged: {type(e).__name__}: {e}") from e

    @classmethod
    def _from_checked(cls, d: dict, source: str, sha256: str | None) -> TrainedModel:
        version = schema.check_version(d, FORMAT_VERSION)
        notes = _verify_hash(d, version, source)
        schema.check_top_level(d, version)
        config = ModelConfig(**schema.check_config("model_config", ModelConfig, d["model_config"],
                                                   required=("in_channels",)))
        with torch.device("meta"):  # shapes without memory: the weights are the file's tensors
            model = PatchVAE(config)
        n_parameters = sum(p.numel() for p in model.parameters())
        if n_parameters > schema.MAX_PARAMETERS:
            raise schema.SchemaError("model_config", f"describes a model of {n_parameters:,} parameters; "
                                                     f"this version loads at most {schema.MAX_PARAMETERS:,}")
        expected, shapes = schema.expected_parameters(model)
        schema.check_state_dict(d["state_dict"], expected)
        schema.check_optimizer_state(d.get("optimizer_state"), shapes)
        model.load_state_dict(d["state_dict"], assign=True)
        model.eval()
        try:
            normalizer = Normalizer.from_dict(d["normalizer"])
        except (TypeError, ValueError) as e:
            raise schema.SchemaError("normalizer", str(e)) from e
        _check_channels(d, normalizer, config.in_channels)
        critic_config = CriticConfig(**schema.check_config("critic_config", CriticConfig, d.get("critic_config", {})))
        train_config = TrainConfig(**schema.check_config("train_config", TrainConfig, d.get("train_config", {})))
        schema.check_histories(d)
        baseline, baseline_info = (None, {}) if d.get("baseline") is None else schema.check_baseline(
            d["baseline"], config.in_channels, config.patch_size, config.latent_dim)
        motif_model = None if d.get("motifs") is None else schema.check_motifs(d["motifs"], config.latent_dim)
        rate_calibration = None
        if d.get("rate_calibration") is not None:
            rate_calibration = schema.check_rate_calibration(d["rate_calibration"], config.in_channels)
        else:
            notes.append(f"model file {source} has no rate calibration (saved before models carried one): its "
                         f"reconstruction in counts is not corrected (factor 1) and tends to lie 10-30% below the "
                         f"measured counts; resume its training for a few steps to add one")
        return cls(
            model, normalizer, critic_config, train_config, step=d.get("step", 0),
            optimizer_state=d.get("optimizer_state"), history=list(d.get("history", [])),
            validation_history=list(d.get("validation_history", [])), source_file=source, file_sha256=sha256,
            baseline=baseline, baseline_info=baseline_info, motif_model=motif_model, notes=notes,
            rate_calibration=rate_calibration,
        )


def _check_path(path: Path) -> None:
    """A regular file of plausible size; a folder or FIFO is named as such (opening a FIFO blocks)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except OSError as e:  # a symlink loop, a path through a file, no permission
        raise ModelFileError(f"model file {path} cannot be opened: {e.strerror or e}") from e
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"model file {path} is a folder, not a model file")
    if not stat.S_ISREG(mode):
        raise ModelFileError(f"model file {path} is not a regular file (a FIFO, socket or device)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelFileError(f"model file {path} has {size:,} bytes, more than any model file this version "
                             f"writes ({MAX_FILE_BYTES:,}): not a model file, or damaged")


def _unreadable(path: Path, e: Exception) -> str:
    """One line on a file torch.load could not read: what its bytes show, else the loader's words, short.

    torch's own text runs to several sentences of advice for its users (with terminal colour codes):
    at most its first clause, or the name a refused pickle calls, follows in parentheses.
    """
    reason = unreadable_reason(path)
    if reason is not None:
        return f"model file {path} {reason}"
    if isinstance(e, pickle.UnpicklingError):
        called = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        return (f"model file {path} was refused: it holds pickled objects or code, not plain data (only files "
                f"saved by napari-imc-vae can be loaded){f'; it refers to {called[1]}' if called else ''}")
    # torch's text goes on for lines ("This is an internal miniz error. If you are seeing ..."): its first clause
    said = re.split(r"\. |\n", str(e).replace("PytorchStreamReader failed", "failed"), maxsplit=1)[0][:120]
    return f"model file {path} is damaged: it cannot be read ({type(e).__name__}{': ' + said if said else ''})"


def _verify_hash(d: dict, version: int, source: str) -> list[str]:
    """Compare the stored content hash with the content; returns notes for the user."""
    actual = schema.content_sha256(d)  # also refuses values of types a model file never holds
    stored = d.get(schema.HASH_KEY)
    if stored is None and version < 2:
        return [f"model file {source} was written before model files carried a content hash (format "
                f"{version}): its integrity cannot be checked; load and save it with this version to add one"]
    if stored is None:
        raise schema.SchemaError(schema.HASH_KEY, "is missing: the file cannot be checked for damage")
    if stored != actual:
        raise schema.SchemaError(schema.HASH_KEY, "does not match the file's content: the file was changed "
                                                  "or damaged after it was saved")
    return []


def _check_channels(d: dict, normalizer: Normalizer, in_channels: int) -> None:
    if normalizer.n_channels != in_channels:
        raise schema.SchemaError("normalizer", f"has {normalizer.n_channels} channels; model_config.in_channels "
                                               f"is {in_channels}")
    for key, have in (("channel_names", normalizer.channel_names), ("channel_keys", normalizer.channel_keys)):
        if key in d and d[key] != list(have):
            raise schema.SchemaError(key, f"must be the normalizer's {list(have)[:6]}, got {d[key]!r:.120}")


def _to_cpu(state):
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state
