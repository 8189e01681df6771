"""The "look here" list of the Reconstruct widget: regions of high error, ranked; a click centres the view.

Rows are :func:`napari_imc_vae.engine.apply.regions.find_regions`'s regions (the same list the CLI
writes to ``<image>_regions.csv``). Clicking a row centres the viewer's camera on the
region, zooms so that it spans about 120 screen pixels, and shows and selects its point in
the ``high-error regions`` Points layer (hidden until then, so the markers do not clutter the view).
In napari's grid (the comparison view) every panel centres on the region and the Points
layer stays hidden: shown, it would take a grid panel of its own.
"""

from __future__ import annotations

from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from napari_imc_vae._napari.comparison_view import viewer_part

COLUMNS = ("rank", "shape", "area", "mean_error", "channels")
HEADERS = ("#", "shape", "px", "error", "channels carrying it")
_REGION_SCREEN_PX = 120.0  # a region (at least 8 px wide) spans about this many screen pixels


class RegionsTable(QTableWidget):
    """Ranked regions of high error; clicking one centres ``viewer`` on it.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    """

    def __init__(self, viewer, parent=None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.viewer = viewer
        self.regions: list[dict] = []
        self.scale = (1.0, 1.0)
        self.translate = (0.0, 0.0)
        self.layer_name: str | None = None
        self.layer = None
        self.setHorizontalHeaderLabels(HEADERS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.setToolTip("Regions where the model explains the image worst, most excess error first; "
                        "click one to go there")
        self.cellClicked.connect(lambda row, _column: self.go_to(row))

    def set_regions(self, regions: list[dict], *, scale=(1.0, 1.0), translate=(0.0, 0.0),
                    layer=None, layer_name: str | None = None) -> None:
        """Show ``regions`` (world position = pixel × ``scale`` + ``translate``).

        ``layer`` (or, without it, the layer named ``layer_name``) is the Points layer of the
        regions; the layer itself is kept, since result layers are renamed when images come in.
        """
        self.regions = list(regions)
        self.scale, self.translate = tuple(map(float, scale)), tuple(map(float, translate))
        self.layer, self.layer_name = layer, layer_name
        self.setRowCount(len(self.regions))
        for row, region in enumerate(self.regions):
            for column, key in enumerate(COLUMNS):
                value = region[key]
                text = f"{value:.3g}" if isinstance(value, float) else str(value)
                self.setItem(row, column, QTableWidgetItem(text))
        self.resizeColumnsToContents()

    def world_position(self, row: int) -> tuple[float, float]:
        """Where region ``row``'s centroid is in world (viewer) coordinates."""
        region = self.regions[row]
        return (region["y"] * self.scale[0] + self.translate[0], region["x"] * self.scale[1] + self.translate[1])

    def go_to(self, row: int) -> None:
        """Centre the camera on region ``row``, zoom to it and select its point."""
        if not 0 <= row < len(self.regions):
            return
        y, x = self.world_position(row)
        y0, x0, y1, x1 = self.regions[row]["bbox"]
        extent = max(y1 - y0, x1 - x0, 8) * max(self.scale)
        camera = viewer_part(self.viewer, "camera")
        camera.center = (y, x)
        camera.zoom = _REGION_SCREEN_PX / extent  # zoom is screen pixels per world unit
        layer = self.layer
        if layer is None and self.layer_name and self.layer_name in self.viewer.layers:
            layer = self.viewer.layers[self.layer_name]
        if layer is not None and layer in self.viewer.layers:
            if not viewer_part(self.viewer, "grid").enabled:
                layer.visible = True
            layer.selected_data = {row}
