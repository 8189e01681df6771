"""Everything that imports napari, Qt, magicgui or pyqtgraph (the rest of the package does not).

This package imports none of its modules itself: napari loads each contribution named in
``napari.yaml`` when it is first used.

npe2 contributions (``napari.yaml``):

- :mod:`.reader`: opens every format of :mod:`napari_imc_vae.io` as one layer per channel;
- :mod:`.writer`: saves image layers as one OME-TIFF with channel names;
- :mod:`.sample_data`: the synthetic tissue of :mod:`napari_imc_vae.datasets`;
- :mod:`.normalize_widget`: dock widget "Normalize channels" (statistics, before/after
  histograms, ``[normalized]`` layers beside the raw ones);
- :mod:`.train_widget`: dock widget "Train VAE" (train on the checked images, live loss plot,
  quality report, save / resume a model file);
- :mod:`.reconstruct_widget`: dock widget "Reconstruct" (apply a model to a whole image; adds
  reconstruction, error, latent-map and k-means motif layers).

Launcher:

- :mod:`.launch`: ``python -m napari_imc_vae._napari.launch``: napari with an image and the
  three widgets docked; ``--headless-demo`` runs the whole flow and saves a screenshot.

Helpers of the widgets:

- :mod:`.layer_data`: ImcImage → layer data tuples, layer naming and metadata conventions;
- :mod:`.layers`, :mod:`.picker`, :mod:`.checklist`: find the IMC images among a viewer's
  layers; pick one (combo box) or check several (list);
- :mod:`.normalization_form`: the normalization controls shared by "Normalize channels" and
  "Train VAE" (a magicgui container, like every parameter form here);
- :mod:`.train_form`: the model, training and advanced parameter forms of "Train VAE";
- :mod:`.normalize_task`, :mod:`.train_task`, :mod:`.reconstruct_task`: the work behind each
  widget as plain functions, run in napari worker threads (no Qt);
- :mod:`.result_layers`: a reconstruction's napari layers and comparison rows (no Qt);
  :mod:`.viewer_results`: where they go among the viewer's layers;
- :mod:`.train_model_files`: save, resume from, new model (the "Train VAE" widget's files);
- :mod:`.fold`: a section folded under a header button;
- :mod:`.stats_view`, :mod:`.loss_plot`: statistics table and histograms; live loss plot;
- :mod:`.report_view`: the quality report, verdicts wrapped and tables in a fixed font;
- :mod:`.latent_view`: the latent map as the RGB of its first three principal components (no Qt);
- :mod:`.model_store`: run states and the per-viewer store of the current model (no Qt);
- :mod:`.model_file`: the model file filter and loading a model file with an error notification.
"""
