"""What a model file may hold: one schema for every field, checked before anything is built.

A model file is a plain dict (see :mod:`~napari_imc_vae.engine.checkpoint`). Everything in it is
checked here — type, range and shape — *before* a model is allocated, so that a damaged or
crafted file is refused with one line naming the field, never a traceback, a 3-minute build
(``depth=100000``), a 25 GB allocation (``width=40000``) or a crash in a fused optimizer kernel
(a wrong-shaped tensor in the optimizer state).

- :mod:`.fields`: the fields a file has, the size limits, :class:`SchemaError` and the small
  checks of one value that every other module uses;
- :mod:`.configs`: format version, top-level fields, the configs and the histories;
- :mod:`.tensors`: the weights and the optimizer state against the model's parameters;
- :mod:`.fitted`: what was fitted at the end of training (baseline, motifs, rate calibration);
- :mod:`.content_hash`: the hash of the loaded content, stored in the file.
"""

from napari_imc_vae.engine.model_schema.configs import check_config, check_histories, check_top_level, check_version
from napari_imc_vae.engine.model_schema.content_hash import content_sha256, stamp
from napari_imc_vae.engine.model_schema.fields import HASH_KEY, LIMITS, MAX_PARAMETERS, SchemaError
from napari_imc_vae.engine.model_schema.fitted import check_baseline, check_motifs, check_rate_calibration
from napari_imc_vae.engine.model_schema.tensors import check_optimizer_state, check_state_dict, expected_parameters

__all__ = ["HASH_KEY", "LIMITS", "MAX_PARAMETERS", "SchemaError", "check_baseline", "check_config",
           "check_histories", "check_motifs", "check_optimizer_state", "check_rate_calibration", "check_state_dict",
           "check_top_level", "check_version", "content_sha256", "expected_parameters", "stamp"]
