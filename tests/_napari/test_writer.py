"""The OME-TIFF writer: what it writes, read_imc reads back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from napari_imc_vae._napari.layer_data import image_layer_data
from napari_imc_vae._napari.writer import image_from_layer_data, write_ome_tiff
from napari_imc_vae.datasets import synthetic_tissue
from napari_imc_vae.io import read_imc


def test_channel_layers_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = synthetic_tissue(shape=(24, 30), n_channels=8)
    image.pixel_size_um = 0.5
    data, kwargs, _ = image_layer_data(image)
    layers = viewer.add_image(data, **kwargs)
    path = tmp_path / "out.ome.tiff"
    written = viewer.layers.save(str(path), selected=False, plugin="napari-imc-vae")
    assert written == [str(path)]
    back = read_imc(path)
    np.testing.assert_array_equal(back.data, image.data)
    assert back.channel_names == image.channel_names
    assert back.metals == image.metals
    assert back.pixel_size_um == pytest.approx(0.5)
    assert len(layers) == 8


def test_multichannel_layer_round_trip(tmp_path, rng):
    data = rng.poisson(3.0, (4, 10, 12)).astype(np.float32)
    meta = {"name": "stack", "scale": (1.0, 1.0), "metadata": {}}
    path = tmp_path / "stack.ome.tiff"
    assert write_ome_tiff(str(path), [(data, meta, "image")]) == [str(path)]
    back = read_imc(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.channel_names == ["ch0", "ch1", "ch2", "ch3"]


def test_writer_rejects_bad_layers(rng):
    img = rng.random((8, 8))
    with pytest.raises(ValueError, match="No layer"):
        image_from_layer_data([])
    with pytest.raises(ValueError, match="RGB"):
        image_from_layer_data([(rng.random((8, 8, 3)), {"name": "p", "rgb": True}, "image")])
    with pytest.raises(ValueError, match="labels layer"):
        image_from_layer_data([(img.astype(int), {"name": "l"}, "labels")])
    with pytest.raises(ValueError, match="differ in size"):
        image_from_layer_data([(img, {"name": "a"}, "image"),
                               (rng.random((9, 8)), {"name": "b"}, "image")])
    with pytest.raises(ValueError, match="unique"):
        image_from_layer_data([(img, {"name": "a"}, "image"), (img, {"name": "a"}, "image")])
