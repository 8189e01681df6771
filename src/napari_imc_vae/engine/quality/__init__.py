"""Is the reconstruction any good? Every measure written once, used by validation and the report.

- :mod:`.measures`: R², mse, sharpness, diversity, cosine (one pass over chunks), active units
  and orientation consistency;
- :mod:`.baselines`: the mean patch and PCA-k, fitted where the model was;
- :mod:`.smoothing`: the smoothed target and the grid of report patches;
- :mod:`.evaluate`: :func:`~.evaluate.evaluate`, the report on held-out patches;
- :mod:`.report`: thresholds, verdicts and figures; :mod:`.summary` and :mod:`.marker_summary`:
  the same in plain sentences.
"""
