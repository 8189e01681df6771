"""Model files: what a trained model is on disk, and how it is saved, checked and loaded.

- :mod:`.checkpoint`: :class:`~.checkpoint.TrainedModel` (weights, configs, channels,
  normalizer, optimizer state, history, fitted baseline, motifs and rate calibration), saved
  atomically and loaded from a model file or a BioImage Model Zoo package;
- :mod:`.schema`: one schema for every field, checked before anything is built;
- :mod:`.file_bytes`: the bytes of the file: the zip records' CRC-32 and the SHA-256 of the
  whole file in its zip comment.

The room sits above the others: a model file stores what each of them fitted.
"""
