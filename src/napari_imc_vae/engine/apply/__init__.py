"""Applying a model: the use case and what it draws on.

- :mod:`.use_case`: :func:`~.use_case.apply_to_image` with :class:`~.use_case.ApplySettings`, the
  one home of the CLI's ``reconstruct``/``quality`` and the Reconstruct widget;
- :mod:`.tiling` (numpy only) and :mod:`.inference`: tiled, memory-bounded reconstruction;
- :mod:`.rate_calibration`: the reconstruction in counts, unbiased in sum;
- :mod:`.error_unit`, :mod:`.multiscale_error`, :mod:`.regions`: the error in noise SD, its map
  and the areas worth a look;
- :mod:`.motifs`: tissue motifs from the latent map.
"""
