"""Training a model, as one use case: :func:`train_model` with one :class:`TrainSettings`.

- :mod:`.settings`: :class:`TrainSettings` (what the caller chose) and the one rule merging it
  with the defaults or a resumed model (:func:`merge_settings`);
- :mod:`.control`: :class:`StopRequest`, the stop the caller owns;
- :mod:`.outcome`: :class:`TrainPlan` (announced before the first step) and :class:`TrainOutcome`;
- :mod:`.use_case`: :func:`train_model`.

Importing this package loads nothing (names are resolved on first use); the modules load torch.
"""

from napari_imc_vae._lazy import lazy_names

_EXPORTS = {
    "TrainSettings": "settings", "merge_settings": "settings", "MergedSettings": "settings",
    "StopRequest": "control", "TrainPlan": "outcome", "TrainOutcome": "outcome", "train_model": "use_case",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
