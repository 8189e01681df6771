"""Applying a model: the use cases and what they draw on.

- :mod:`.use_case`: :func:`~.use_case.apply_to_image` with :class:`~.use_case.ApplySettings`, the
  one home of the CLI's ``reconstruct``/``quality`` and the Reconstruct widget;
  :mod:`.application`: what it returns, :class:`~.application.ModelApplication`;
- :mod:`.inference`: tiled, memory-bounded reconstruction (:func:`~.inference.reconstruct_image`,
  :func:`~.inference.apply_model` for a trained model), drawing on :mod:`.tiling` (numpy only),
  :mod:`.normalized_rows` (the input, band by band) and :mod:`.reconstruction_outputs` (the
  output arrays and the calibrated second pass);
- :mod:`.rate_calibration`: the reconstruction in counts, unbiased in sum;
- :mod:`.noise_model`, :mod:`.error_unit`, :mod:`.multiscale_error`, :mod:`.regions`: the counting
  noise fitted per channel, the error in noise SD, its map and the areas worth a look;
- :mod:`.motifs`: tissue motifs from the latent map; :mod:`.motifs_use_case`:
  :func:`~.motifs_use_case.cohort_motifs`, the one home of the CLI's ``motifs`` (records in
  :mod:`.motifs_outcome`).
"""
