"""Everything that imports napari, Qt, magicgui or pyqtgraph (the rest of the package does not).

- :mod:`.reader`, :mod:`.writer`, :mod:`.sample_data`: npe2 contributions (``napari.yaml``);
- :mod:`.layer_data`: ImcImage → layer data tuples, layer naming and metadata conventions;
- :mod:`.layers`, :mod:`.picker`: find IMC images among a viewer's layers (shared by widgets);
- :mod:`.normalize_widget` (+ :mod:`.normalize_task`, :mod:`.stats_view`): "Normalize channels".
"""
