"""Train a permutation-invariant VAE on Imaging Mass Cytometry images, in napari or headless.

Importing the package loads nothing heavy: no torch, napari or Qt.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning. With spinning, one busy process beside CPU
# training (napari's GUI thread while it draws) cut throughput to 25-45%; OpenMP reads this
# when torch is first imported, so it must be set before (docs/benchmarks.md, "CPU threads").
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
