"""Finding IMC images among a viewer's layers, and rejecting what is not one."""

from __future__ import annotations

import numpy as np
import pytest

from napari_imc_vae._napari.layer_data import image_layer_data
from napari_imc_vae._napari.layers import find_imc_images, imc_image_from_layers
from napari_imc_vae.datasets import synthetic_tissue


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def _add(viewer, image, **kwargs):
    data, kw, _ = image_layer_data(image, **kwargs)
    return viewer.add_image(data, **kw)


def test_channel_layers_form_one_image(viewer):
    image = synthetic_tissue(shape=(32, 40), n_channels=6)
    layers = _add(viewer, image)
    (found,) = find_imc_images(viewer.layers)
    assert found.layers == layers and found.name == image.name
    assert found.channel_names == image.channel_names and found.metals == image.metals
    np.testing.assert_array_equal(found.image.data, image.data)
    assert found.image.data is not layers[0].data
    # Selection order does not matter: channels come back in channel order.
    again = imc_image_from_layers(layers[::-1])
    assert again.channel_names == image.channel_names


def test_two_images_and_a_multichannel_layer(viewer, rng):
    a = synthetic_tissue(shape=(32, 32), n_channels=4, seed=1)
    b = synthetic_tissue(shape=(40, 40), n_channels=5, seed=2)
    _add(viewer, a)
    _add(viewer, b)
    stack = viewer.add_image(rng.random((3, 16, 16)).astype(np.float32), name="stack",
                             scale=(2.0, 2.0))
    found = find_imc_images(viewer.layers)
    assert [f.n_channels for f in found] == [4, 5, 3]
    assert found[2].layers == [stack] and found[2].channel_names == ["ch0", "ch1", "ch2"]
    assert found[2].pixel_size_um == 2.0 and found[2].image.data.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="different images"):
        imc_image_from_layers([viewer.layers[0], viewer.layers[5]])


def test_layers_without_metadata_are_channels_by_name(viewer, rng):
    layers = [viewer.add_image(rng.random((8, 8)), name=n) for n in ("CD45", "CD3")]
    found = imc_image_from_layers(layers)
    assert found.channel_names == ["CD45", "CD3"]
    assert find_imc_images(viewer.layers) == []  # not offered unless selected


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda v, r: [v.add_image(r.random((8, 8, 3)), rgb=True, name="photo")],
         "'photo' is an RGB image"),
        (lambda v, r: [v.add_labels(np.zeros((8, 8), int), name="cells")],
         "'cells' is a Labels layer"),
        (lambda v, r: [v.add_points([[1, 1]], name="pts")], "'pts' is a Points layer"),
        (lambda v, r: [v.add_image(r.random((2, 3, 8, 8)), name="4d")], "'4d' has 4 dimensions"),
        (lambda v, r: [v.add_image(r.random((3, 8, 8)), name="a"),
                       v.add_image(r.random((3, 8, 8)), name="b")], "not a mix"),
        (lambda v, r: [v.add_image(r.random((8, 8)), name="a"),
                       v.add_image(r.random((9, 8)), name="b")], "share one"),
        (lambda v, r: [v.add_image(r.random((8, 8)), name="a", scale=(1, 2))], "non-square"),
        (lambda v, r: [], "No layer selected"),
    ],
)
def test_rejects_what_is_not_an_imc_image(viewer, rng, make, match):
    with pytest.raises(ValueError, match=match):
        imc_image_from_layers(make(viewer, rng))


def test_duplicated_channel_layer_is_rejected(viewer):
    layers = _add(viewer, synthetic_tissue(shape=(16, 16), n_channels=3))
    copy = viewer.add_image(layers[0].data, name="copy", metadata=dict(layers[0].metadata))
    with pytest.raises(ValueError, match="same channel"):
        imc_image_from_layers([*layers, copy])
    assert find_imc_images(viewer.layers) == []
