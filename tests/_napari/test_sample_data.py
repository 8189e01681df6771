"""File > Open Sample > IMC VAE > Synthetic IMC tissue."""

from __future__ import annotations

import numpy as np

from napari_imc_vae._napari.layers import find_imc_images
from napari_imc_vae.datasets import synthetic_tissue


def test_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-imc-vae", "synthetic_tissue")
    expected = synthetic_tissue()
    assert len(layers) == len(viewer.layers) == 32
    assert [layer.name for layer in layers] == expected.channel_names
    assert all(layer.blending == "additive" for layer in layers)
    (found,) = find_imc_images(viewer.layers)
    np.testing.assert_array_equal(found.image.data, expected.data)
    assert found.metals == expected.metals
