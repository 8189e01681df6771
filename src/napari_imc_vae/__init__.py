"""Train a permutation-invariant VAE on Imaging Mass Cytometry images, in napari or headless.

Importing the package loads nothing heavy: no torch, napari or Qt.
"""

__version__ = "0.1.0"
