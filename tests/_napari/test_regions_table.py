"""The Reconstruct widget's "look here" table: ranked regions; a click centres the view on one."""

import numpy as np
import pytest

from napari_imc_vae._napari.comparison_view import viewer_part
from napari_imc_vae._napari.regions_table import RegionsTable


@pytest.fixture
def regions():
    return [
        {"rank": 1, "y": 90.0, "x": 40.0, "area": 49, "mean_error": 20.0, "shape": "blob", "channels": "CD45",
         "bbox": (80, 30, 100, 50)},
        {"rank": 2, "y": 10.0, "x": 10.0, "area": 1, "mean_error": 50.0, "shape": "single pixel",
         "channels": "Ki67", "bbox": (10, 10, 11, 11)},
    ]


def test_clicking_a_region_centres_the_view_and_selects_its_point(make_napari_viewer, qtbot, regions):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((120, 120), np.float32), scale=(2.0, 2.0), translate=(5.0, 0.0))
    viewer.add_points(np.array([[r["y"], r["x"]] for r in regions]), scale=(2.0, 2.0), translate=(5.0, 0.0),
                      name="img_regions", visible=False)
    table = RegionsTable(viewer)
    qtbot.addWidget(table)
    table.set_regions(regions, scale=(2.0, 2.0), translate=(5.0, 0.0), layer_name="img_regions")
    assert table.rowCount() == 2 and table.item(1, 1).text() == "single pixel"
    assert table.item(0, 4).text() == "CD45"
    table.cellClicked.emit(1, 0)
    camera = viewer_part(viewer, "camera")  # viewer.camera is deprecated since napari 0.9
    assert tuple(camera.center[-2:]) == pytest.approx((25.0, 20.0))  # pixel × scale + translate
    assert viewer.layers["img_regions"].selected_data == {1} and viewer.layers["img_regions"].visible
    zoom_small = camera.zoom
    table.go_to(0)
    assert tuple(camera.center[-2:]) == pytest.approx((185.0, 80.0))
    assert camera.zoom < zoom_small  # a larger region: zoomed out further
    table.set_regions([])
    assert table.rowCount() == 0
    table.go_to(3)  # nothing to go to: nothing happens


def test_in_the_grid_the_points_stay_hidden(make_napari_viewer, regions):
    """In the comparison view (napari's grid) a shown Points layer would take a panel of its own."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((120, 120), np.float32))
    viewer.add_points(np.array([[r["y"], r["x"]] for r in regions]), name="img_regions", visible=False)
    viewer_part(viewer, "grid").enabled = True
    table = RegionsTable(viewer)
    table.set_regions(regions, layer_name="img_regions")
    table.go_to(0)
    assert tuple(viewer_part(viewer, "camera").center[-2:]) == pytest.approx((90.0, 40.0))
    assert not viewer.layers["img_regions"].visible and viewer.layers["img_regions"].selected_data == {0}
