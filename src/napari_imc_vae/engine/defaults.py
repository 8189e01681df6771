"""The one home of the engine's defaults and caps that more than one module (or the CLI) uses.

Plain numbers, no imports: the command line reads them while building ``--help`` (no torch),
and every module that needs one imports it from here instead of writing it again. Defaults that
belong to one config dataclass stay on it (``TrainConfig.batch_size``, ``ModelConfig.latent_dim``,
``CriticConfig`` weights); docs/architecture.md lists where each one lives.
"""

#: Minutes of training for each named budget (docs/capacity.md: the default model still gained R²
#: up to 8× the old 2,000-step default), and the budget the CLI and the widget start from.
BUDGET_PRESETS = {"quick": 1.0, "standard": 5.0, "thorough": 15.0}
DEFAULT_BUDGET = "standard"

#: Tissue motifs (k-means clusters of latent vectors) fitted with a model and on an image.
DEFAULT_MOTIFS = 6

#: Tiles per model call when reconstructing a whole image (CLI ``--batch``, ApplySettings).
TILE_BATCH = 2048

#: Held-out patches a validation during training measures, and the report after training
#: (the same evenly spaced patches): bounds their time on big images.
MAX_VAL_PATCHES = 2048

#: Patches the quality report of an applied model is measured on (evenly spaced over the
#: image's grid): 8,192 patches of 40 channels give its figures within ~0.002 of 20,000.
MAX_QUALITY_PATCHES = 8_192

#: Patches of each ROI's quality report in cohort QC (CLI ``qc --quality-patches``). The report's
#: patches and their predictions are held while the image is reconstructed: fewer than
#: :data:`MAX_QUALITY_PATCHES` keep more headroom under a cohort's memory (bench/bench_qc.py);
#: the cohort's figures are the explained share and the calibrated error, which use every pixel.
QC_QUALITY_PATCHES = 2_048

#: Training patches (evenly spaced) the stored PCA / mean baseline and motifs are fitted on at
#: the end of training: enough for 32–128 components of 40-channel 8×8 patches, ~1–3 s on 2 cores.
BASELINE_FIT_PATCHES = 8_192

#: Patches the report's permutation accuracy is measured on (8 orientation predictions each; on
#: all 2,048 patches of a test they took 6× the model's forward pass). The selector is
#: equivariant by construction, so only near-ties can disagree: on real ROIs, subsets of
#: 256–2,048 patches gave exactly the accuracy of all 6,897; 256 pin it to ±0.006 at 0.99
#: (±0.014 at the 0.95 threshold) for an eighth of the cost of 2,048.
PERM_PATCHES = 256

#: Validation policy: about this many validations a run ...
VALIDATIONS_PER_RUN = 10
#: ... but no closer than this: a validation (2,048 patches, their measures, permutation accuracy
#: on 256) costs 3–5 training steps of the default model (5 and 40 channels), so 50 steps apart
#: keep it under ~10% of a run (validating a 60-step run 10 times made it 1.5× slower) ...
MIN_VALIDATION_INTERVAL = 50
#: ... and at least one every this many steps (long runs keep a fine-grained curve).
MAX_VALIDATION_INTERVAL = 200


def validation_interval(steps: int) -> int:
    """Steps between validations for a run of ``steps``: ~10 a run, 50 to 200 steps apart (a run
    shorter than 50 steps validates at its end only; every run does).

    The one validation policy of the CLI and the widget, applied by
    :func:`napari_imc_vae.engine.training.train_model` once the run's steps are known.
    """
    return max(MIN_VALIDATION_INTERVAL, min(MAX_VALIDATION_INTERVAL, steps // VALIDATIONS_PER_RUN))


__all__ = ["BASELINE_FIT_PATCHES", "BUDGET_PRESETS", "DEFAULT_BUDGET", "DEFAULT_MOTIFS", "MAX_QUALITY_PATCHES",
           "MAX_VALIDATION_INTERVAL", "MAX_VAL_PATCHES", "MIN_VALIDATION_INTERVAL", "PERM_PATCHES", "QC_QUALITY_PATCHES",
           "TILE_BATCH", "VALIDATIONS_PER_RUN", "validation_interval"]
