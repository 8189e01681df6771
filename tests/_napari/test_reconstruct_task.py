"""The work behind the "Reconstruct" widget without Qt: layer tuples and their display limits.

``reconstruct_task`` and ``result_layers`` are numpy + engine only, so these run without a
display; the widget tests beside this file check the same layers once added to a viewer.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_imc_vae._napari.layer_data import IMC_KEY

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_reconstruction_layers_are_the_models_channels_named_after_their_raw_layers(extra_channel_case):
    """Extra channels: the model's channels are no permutation of the image's, so no argsort."""
    from napari_imc_vae._napari.reconstruct_task import run_reconstruction
    from napari_imc_vae._napari.result_layers import reconstruction_layers
    from napari_imc_vae.engine.apply.inference import apply_model

    trained, image = extra_channel_case
    assert image.channel_names == ["DNA2", "H3K27Ac", "Histone H3", "DNA1", "Ki67"]
    result = run_reconstruction(trained, image, k=2, stride=4)
    assert result.channel_index == [0, 2, 3, 4] and result.ignored_channels == ["H3K27Ac"]
    assert result.raw.shape == result.channel_error.shape == (4, 32, 32)
    rec = apply_model(trained, image, stride=4)  # the model's order
    n = image.n_channels
    base = [f"raw {c}" for c in image.channel_names]
    tuples = reconstruction_layers(
        result, base_names=base, image_name="wide", colormaps=[f"cmap{i}" for i in range(n)],
        contrast=[(i, i + 1.0) for i in range(n)], scale=(1.0, 1.0), translate=(0.0, 0.0), all_markers=True)
    recon = [(data, kw) for data, kw, _ in tuples if kw["metadata"][IMC_KEY]["kind"] == "recon"]
    missed = [(data, kw) for data, kw, _ in tuples if kw["metadata"][IMC_KEY]["kind"] == "missed"]
    assert [kw["name"] for _, kw in recon] == [f"raw {c} [model]" for c in ["DNA2", "Histone H3", "DNA1", "Ki67"]]
    assert [kw["name"] for _, kw in missed] == [f"raw {c} [missed]" for c in ["DNA2", "Histone H3", "DNA1", "Ki67"]]
    for (data, kw), (res, res_kw), i in zip(recon, missed, result.channel_index):
        name = image.channel_names[i]
        assert kw["colormap"] == f"cmap{i}" and kw["contrast_limits"] == (i, i + 1.0)
        info = kw["metadata"][IMC_KEY]
        assert info["channel_name"] == name and info["channel_index"] == i
        j = trained.channel_names.index(name)
        np.testing.assert_array_equal(data, rec.raw[j])
        # the signed residual in the calibrated unit, on symmetric limits
        np.testing.assert_array_equal(res, rec.residual[j])
        lo, hi = res_kw["contrast_limits"]
        assert lo == -hi > -np.inf and res_kw["metadata"][IMC_KEY]["units"] == "noise SD"
    assert not any(kw["visible"] for _, kw, _ in tuples)  # the comparison view is what shows
    assert len(tuples) == 4 + 4 + 5  # recon, per-channel residuals; latent, motifs, hot pixels, regions, error
    # whole-image layers: what they show first, short enough for napari's layer list; no image tag
    # alone in the viewer, the image's short tag with others
    whole = [kw["name"] for _, kw, _ in tuples[8:]]
    assert whole == ["latent map (RGB)", "tissue motifs", "hot pixels", "high-error regions", "error (noise SD)"]
    tagged = reconstruction_layers(
        result, base_names=base, image_name="wide", colormaps=["gray"] * n, contrast=[(0.0, 1.0)] * n,
        scale=(1.0, 1.0), translate=(0.0, 0.0), image_tag="003")
    assert [kw["name"] for _, kw, _ in tagged][-1] == "error (noise SD) · 003"
    assert all(kw["metadata"][IMC_KEY]["source_image"] == "wide" for _, kw, _ in tagged)


def test_contrast_limits_come_from_the_worker_not_the_gui_thread(monkeypatch, extra_channel_case):
    """The layers reuse the limits computed with the reconstruction (the worker thread)."""
    from napari_imc_vae._napari import reconstruct_task, result_layers
    from napari_imc_vae._napari.layer_data import contrast_limits

    trained, image = extra_channel_case
    result = reconstruct_task.run_reconstruction(trained, image, k=2, stride=4, raw_limits=True)
    limits = result.display_limits
    assert limits["error"] == (0.0, reconstruct_task.MISSED_LIMIT)
    assert limits["latent"] == contrast_limits(result.latent.reshape(1, -1))
    assert limits["raw"] == [contrast_limits(image.data[i]) for i in result.channel_index]
    calls = []
    for module in (reconstruct_task, result_layers):
        monkeypatch.setattr(module, "contrast_limits", lambda a: calls.append(a) or (0.0, 1.0))
    n = image.n_channels
    tuples = result_layers.reconstruction_layers(
        result, base_names=list(image.channel_names), image_name="wide", colormaps=["gray"] * n,
        contrast=[(0.0, 1.0)] * n, scale=(1.0, 1.0), translate=(0.0, 0.0), all_markers=True)
    assert calls == []  # nothing recomputed when the layers are built
    by_name = {kw["name"]: kw for _, kw, _ in tuples}
    assert by_name["error (noise SD)"]["contrast_limits"] == limits["error"]
    assert by_name["DNA2 [missed]"]["contrast_limits"] == (-reconstruct_task.MISSED_LIMIT, reconstruct_task.MISSED_LIMIT)
    rows = result_layers.comparison_rows(result, reconstruct_task.default_markers(result),
                                         base_names=list(image.channel_names), image_name="wide",
                                         contrast=[(0.0, 1.0)] * n, scale=(1.0, 1.0), translate=(0.0, 0.0))
    assert calls == [] and 1 <= len(rows) <= 2  # nor when the comparison's rows are


def test_image_tags_are_the_shortest_distinguishing_end_of_each_name():
    from napari_imc_vae._napari.layer_data import image_tags, tagged_name

    assert image_tags(["20210305_NE_mockData5_003"]) == {"20210305_NE_mockData5_003": ""}
    assert image_tags(["20210305_NE_mockData5_003", "20210305_NE_mockData5_004", "20210305_NE_mockData5_003"]) == {
        "20210305_NE_mockData5_003": "003", "20210305_NE_mockData5_004": "004"}
    # whole words only: "x_1003" does not end with the word "003"; "a/roi" and "b/roi" need their folder
    assert image_tags(["x_1003", "y_003", "a/roi", "b/roi"]) == {
        "x_1003": "1003", "y_003": "003", "a/roi": "a/roi", "b/roi": "b/roi"}
    assert image_tags(["s1_ROI_001", "s2_ROI_001", "s2_ROI_002"]) == {
        "s1_ROI_001": "s1_ROI_001", "s2_ROI_001": "s2_ROI_001", "s2_ROI_002": "002"}
    assert tagged_name("hot pixels", "") == "hot pixels" and tagged_name("hot pixels", "002") == "hot pixels · 002"
