"""napari sample data contribution: the synthetic tissue of :mod:`napari_imc_vae.datasets`."""

from __future__ import annotations

from napari_imc_vae._napari.layer_data import image_layer_data
from napari_imc_vae.datasets import synthetic_tissue


def make_synthetic_tissue() -> list[tuple]:
    """File > Open Sample > IMC VAE > Synthetic IMC tissue: 32 channels, 256 × 256 px.

    Returns
    -------
    list of tuple
        One layer data tuple (split by napari into one layer per channel).
    """
    return [image_layer_data(synthetic_tissue())]
