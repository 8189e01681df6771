"""Results per cell and per cohort.

- :mod:`.use_case`: :func:`~.use_case.cell_tables` and :func:`~.use_case.cohort_qc`, the one home
  of the CLI's ``cells`` and ``qc`` (records in :mod:`.outcome`; resuming and ``torchrun`` in
  :mod:`.cohort_run`);
- :mod:`.table`: one row per segmented cell (intensities, latent, motifs, error, artefacts), the
  artefact pixels from the listed regions in :mod:`.artefact_pixels`;
- :mod:`.qc`: one row per ROI × marker, and which ROIs and markers are worst.
"""
