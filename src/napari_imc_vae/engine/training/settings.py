"""The one settings object of a training run, and the one rule for merging it with a resumed model.

:class:`TrainSettings` holds what the caller *chose*: the CLI puts in the flags given, the widget
the values of its form. :func:`merge_settings` turns it into the configs the run uses:

- **a new model**: each value the settings give, else the engine's default (``ModelConfig``,
  ``CriticConfig``, ``TrainConfig``, :data:`~napari_imc_vae.preprocessing.DEFAULT_NORMALIZATION`);
- **a resumed model**: its architecture and normalization are kept (an architecture that differs
  is refused; a normalization given is ignored, with a note); how it trains — the loss weights
  and the :data:`CARRIED` training fields (batch size, learning rate, seed, validation region…) —
  is the model's unless the settings give a value; :data:`THIS_RUN` fields (steps, time limit,
  validation interval, device, precision) are never carried over: they belong to this run and
  this machine.

In both cases a budget (``budget_minutes``) sets the steps and the time limit once a few steps are
timed, and the validation interval follows the run's steps
(:func:`~napari_imc_vae.engine.defaults.validation_interval`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType

from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.model.vae import ModelConfig
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION, NormalizationParams

#: TrainConfig fields that belong to this run and this machine: never taken from a resumed model.
THIS_RUN = ("steps", "time_limit_s", "val_every", "device", "precision")
#: TrainConfig fields a resumed model keeps unless the settings give them.
CARRIED = tuple(f.name for f in fields(TrainConfig) if f.name not in THIS_RUN)


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class TrainSettings:
    """What the caller chose for a training run (CLI flags given, the widget's form).

    Attributes
    ----------
    model : mapping
        :class:`~napari_imc_vae.engine.model.vae.ModelConfig` fields other than ``in_channels``.
    critic : mapping
        :class:`~napari_imc_vae.engine.model.critic.CriticConfig` fields.
    train : mapping
        :class:`~napari_imc_vae.engine.training.trainer.TrainConfig` fields; ``val_every`` only to
        override the validation policy.
    normalization : NormalizationParams or None
        None: the default (a new model) or the model's own (resuming).
    budget_minutes : float or None
        Minutes of training, turned into steps from a few steps timed here and kept as the
        time limit; None: ``train["steps"]`` (default 2,000) within ``train["time_limit_s"]``.
    estimate_only : bool
        Prepare the data, time a few steps, return the plan; train nothing.
    """

    model: Mapping = field(default_factory=dict)
    critic: Mapping = field(default_factory=dict)
    train: Mapping = field(default_factory=dict)
    normalization: NormalizationParams | None = None
    budget_minutes: float | None = None
    estimate_only: bool = False

    def __post_init__(self) -> None:
        for name, cls in (("model", ModelConfig), ("critic", CriticConfig), ("train", TrainConfig)):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"TrainSettings.{name} must be a mapping of field names to values, "
                                f"got {type(value).__name__}")
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"TrainSettings.{name}: unknown field(s) {', '.join(unknown)}; "
                                 f"expected some of {', '.join(sorted(known))}")
            object.__setattr__(self, name, _frozen(value))
        if self.budget_minutes is not None and not 0 < float(self.budget_minutes) < float("inf"):
            raise ValueError(f"TrainSettings.budget_minutes must be a number of minutes > 0, "
                             f"got {self.budget_minutes!r}")


@dataclass(frozen=True)
class MergedSettings:
    """The configs a run uses, after :func:`merge_settings`; ``notes`` are for the user."""

    model: dict
    critic: CriticConfig
    train: TrainConfig
    normalization: NormalizationParams | None
    notes: tuple[str, ...] = ()


def merge_settings(settings: TrainSettings, resume=None) -> MergedSettings:
    """The configs of a run: ``settings`` over the defaults, or over a resumed model's own.

    See the module docstring for the rule. ``train.steps`` is provisional under a budget and
    ``train.val_every`` until the steps are known (``train_model`` sets both).

    Raises
    ------
    ValueError
        A bad value (naming the field), or a resumed model asked for another architecture.
    """
    notes = []
    if resume is None:
        critic = CriticConfig(**settings.critic)
        train = TrainConfig(**settings.train)
        normalization = settings.normalization or DEFAULT_NORMALIZATION
        model = dict(settings.model)
    else:
        critic = replace(resume.critic_config, **settings.critic)
        stored = asdict(resume.train_config)
        carried = {k: stored[k] for k in CARRIED if k in stored}
        train = TrainConfig(**{**carried, **settings.train})
        config = asdict(resume.model.config)
        changed = {k: v for k, v in settings.model.items() if k != "in_channels" and config.get(k) != v}
        if changed:
            raise ValueError(f"cannot change the architecture when resuming: {changed}")
        model = {}
        normalization = None
        given = settings.normalization
        if given is not None and given != resume.normalizer.params:
            notes.append("resuming keeps the model's normalization; normalization options ignored")
    return MergedSettings(model, critic, train, normalization, tuple(notes))


__all__ = ["CARRIED", "THIS_RUN", "MergedSettings", "TrainSettings", "merge_settings"]
