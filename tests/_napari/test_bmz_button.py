"""The Train VAE widget's *Export for the BioImage Model Zoo…* and the Reconstruct widget opening a package."""

from __future__ import annotations

import zipfile

import numpy as np

from napari_imc_vae._napari.bmz_button import export_for_zoo
from napari_imc_vae._napari.reconstruct_widget import ReconstructWidget
from napari_imc_vae._napari.train_widget import TrainWidget

FILE = "steinbock_img/20210305_NE_mockData3_003.ome.tiff"
PLUGIN = "napari-imc-vae"


def _run(qtbot, widget, start):
    with qtbot.waitSignal(widget.finished, timeout=120_000) as blocker:
        assert start() is not None
    return blocker.args[0]




def test_export_button_and_reconstruct_from_the_package(make_napari_viewer, imc_testdata, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(imc_testdata / FILE), plugin=PLUGIN)
    train, recon = (viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in ("Train VAE", "Reconstruct"))
    assert isinstance(train, TrainWidget) and isinstance(recon, ReconstructWidget)
    assert not train.export_button.isEnabled()  # nothing trained yet
    f = train.form
    f.patch.value, f.latent.value, f.hidden_width.value, f.depth.value = 8, 4, 32, 1
    f.steps.value, f.batch.value, f.device.value = 3, 32, "cpu"
    _run(qtbot, train, train.train)
    assert train.export_button.isEnabled()
    assert "Export for the BioImage Model Zoo" in train.export_button.text()

    package = export_for_zoo(train, str(tmp_path / "panel"))  # ".zip" is added
    assert package == tmp_path / "panel.zip"
    with zipfile.ZipFile(package) as z:
        assert {"rdf.yaml", "README.md", "cover.png", "weights_torchscript.pt"} <= set(z.namelist())
    model_file = train.save_model(str(tmp_path / "m.pt"))

    image_layers = {layer.name for layer in viewer.layers}
    outputs = []
    for source in (model_file, package):
        for layer in [layer for layer in viewer.layers if layer.name not in image_layers]:
            viewer.layers.remove(layer)
        assert recon.load_model(str(source)) is not None
        _run(qtbot, recon, recon.reconstruct)
        outputs.append({layer.name: np.asarray(layer.data) for layer in viewer.layers
                        if layer.name not in image_layers})
    assert outputs[0] and outputs[0].keys() == outputs[1].keys()
    for name, data in outputs[0].items():
        np.testing.assert_allclose(outputs[1][name], data, rtol=1e-5, atol=1e-5, err_msg=name)
