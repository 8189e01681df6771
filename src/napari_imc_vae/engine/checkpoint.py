"""Model files: one file, plain data only, loadable with ``torch.load(..., weights_only=True)``.

A file holds the format version, the package version, the configs as plain dicts, the weights,
the optimizer state, the step, the ordered channel names and keys, the normalizer's per-channel
parameters and the training history (DESIGN §6). It is written atomically (temp file, then
``os.replace``) so an interrupted save never leaves a broken model where a good one was.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from napari_imc_vae import __version__
from napari_imc_vae.engine.baselines import PCABaseline
from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.model import ModelConfig, PatchVAE
from napari_imc_vae.engine.motifs import MotifModel
from napari_imc_vae.engine.trainer import TrainConfig
from napari_imc_vae.io import ImcImage
from napari_imc_vae.io.atomic import atomic_write
from napari_imc_vae.preprocessing import ChannelMatch, ChannelMismatchError, Normalizer, match_channels

__all__ = ["FORMAT", "FORMAT_VERSION", "ChannelMismatchError", "ModelFileError", "TrainedModel", "file_sha256"]

FORMAT = "napari-imc-vae/model"
FORMAT_VERSION = 1
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
            The image lacks channels of the model's panel: names the missing channels,
            the image's extra ones and the panel the model expects.
        """
        return match_channels(self.channel_names, self.channel_keys, image.channel_names,
                              image.channel_keys, panel="the model's panel")

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
        }

    @property
    def baseline_source(self) -> str | None:
        """The baseline's provenance in words, for reports; None without a stored baseline."""
        if self.baseline is None:
            return None
        return self.baseline_info.get("fitted_on") or f"PCA-{self.baseline.k} fitted on the training patches"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file atomically (the user's umask applies); returns the path.

        Raises
        ------
        OutputError
            The file cannot be written (names the path and the cause).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = self.to_dict()
        atomic_write(path, lambda f: torch.save(state, f))
        self.source_file, self.file_sha256 = str(path), file_sha256(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> TrainedModel:
        """Read a model file written by :meth:`save`.

        Raises
        ------
        ModelFileError
            Missing, truncated or corrupt files, files that are not model files, files from a
            newer format, and files carrying pickled code (refused by weights-only loading).
        """
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file {path} does not exist")
        try:
            d = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            raise ModelFileError(
                f"model file {path} was refused: it holds pickled objects or code, not plain data "
                f"(only files saved by napari-imc-vae can be loaded) [{str(e).splitlines()[0]}]"
            ) from e
        except Exception as e:  # noqa: BLE001 - random bytes make the unpickler fail in any way
            raise ModelFileError(f"model file {path} is truncated or corrupt: {type(e).__name__}: {e}") from e
        return cls.from_dict(d, source=str(path), sha256=file_sha256(path))

    @classmethod
    def from_dict(cls, d: object, *, source: str = "<dict>", sha256: str | None = None) -> TrainedModel:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ModelFileError(f"{source} is not a napari-imc-vae model file")
        version = d.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFileError(
                f"{source} has model format version {version!r}; this napari-imc-vae "
                f"({__version__}) reads versions up to {FORMAT_VERSION}: upgrade the package"
            )
        try:
            model = PatchVAE(ModelConfig(**d["model_config"]))
            model.load_state_dict(d["state_dict"])
            normalizer = Normalizer.from_dict(d["normalizer"])
            critic_config = CriticConfig(**_known(CriticConfig, d["critic_config"]))
            train_config = TrainConfig(**_known(TrainConfig, d["train_config"]))
            stored = d.get("baseline")
            baseline = None if stored is None else PCABaseline.from_state(stored)
            baseline_info = {} if stored is None else dict(stored.get("info", {}))
            motif_model = MotifModel.from_state(d["motifs"]) if "motifs" in d else None
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ModelFileError(f"{source} is damaged: {e}") from e
        model.eval()
        return cls(
            model, normalizer, critic_config, train_config, int(d.get("step", 0)), d.get("optimizer_state"),
            list(d.get("history", [])), list(d.get("validation_history", [])), source, sha256,
            baseline, baseline_info, motif_model,
        )


def _known(cls, values: dict) -> dict:
    """Fields this version knows (a newer file may carry more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _to_cpu(state):
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, for provenance in layer metadata and reports."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
