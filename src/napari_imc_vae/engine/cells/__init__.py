"""Results per cell and per cohort.

- :mod:`.table`: one row per segmented cell (intensities, latent, motifs, error, artefacts);
- :mod:`.qc`: one row per ROI × marker, and which ROIs and markers are worst.
"""
