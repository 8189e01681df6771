"""What a model file may hold: one schema for every field, checked before anything is built.

A model file is a plain dict (see :mod:`~napari_imc_vae.engine.model_file.checkpoint`). Everything in it is
checked here — type, range and shape — *before* a model is allocated, so that a damaged or
crafted file is refused with one line naming the field, never a traceback, a 3-minute build
(``depth=100000``), a 25 GB allocation (``width=40000``) or a crash in a fused optimizer kernel
(a wrong-shaped tensor in the optimizer state).

- :mod:`.fields`: the fields a file has, the size limits, :class:`SchemaError` and the small
  checks of one value that every other module uses;
- :mod:`.configs`: format version, top-level fields, the configs and the histories;
- :mod:`.tensors`: the weights and the optimizer state against the model's parameters;
- :mod:`.fitted`: what was fitted at the end of training (baseline, motifs, rate calibration);
- :mod:`.content_hash`: the hash of the loaded content, stored in the file
  (the bytes of the file itself are checked in :mod:`..file_bytes`).

Importing this package loads nothing (names are resolved on first use); the modules load torch.
"""

from napari_imc_vae._lazy import lazy_names

_EXPORTS = {
    "HASH_KEY": "fields", "LIMITS": "fields", "MAX_PARAMETERS": "fields", "SchemaError": "fields",
    "check_config": "configs", "check_histories": "configs", "check_top_level": "configs", "check_version": "configs",
    "check_optimizer_state": "tensors", "check_state_dict": "tensors", "expected_parameters": "tensors",
    "check_baseline": "fitted", "check_motifs": "fitted", "check_rate_calibration": "fitted",
    "content_sha256": "content_hash", "stamp": "content_hash",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_names(__name__, _EXPORTS)
