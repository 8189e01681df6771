"""The cohort-motifs use case (engine.apply.motifs_use_case): the ``motifs`` command's one home."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_imc_vae.engine.apply.motifs import MOTIF_FIT_POINTS, MotifModel, upsample_grid
from napari_imc_vae.engine.apply.motifs_outcome import (
    ImageStarted,
    LatentMapDone,
    MotifsOfImage,
    MotifsPlan,
    PooledMotifsFitted,
)
from napari_imc_vae.engine.apply.motifs_use_case import MotifsSettings, cohort_motifs
from napari_imc_vae.engine.apply.use_case import ApplyCancelled, ApplySettings, apply_to_image
from napari_imc_vae.io import ImcImage, read_imc
from napari_imc_vae.preprocessing import ChannelMismatchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROIS = ("20210305_NE_mockData3_001", "20210305_NE_mockData4_001")


@pytest.fixture(scope="module")
def images(imc_testdata) -> list[ImcImage]:
    return [read_imc(imc_testdata / "steinbock_img" / f"{stem}.ome.tiff") for stem in ROIS]


@pytest.fixture(scope="module")
def trained(imc_testdata):
    """A 5-step model of patch 4 trained on one real ROI (its motifs stored, as every model file's)."""
    import torch

    from napari_imc_vae.engine.training.run import TrainingRun
    from napari_imc_vae.engine.training.trainer import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: a second thread only adds contention
    try:
        image = read_imc(imc_testdata / "steinbock_img" / "20210305_NE_mockData1_001.ome.tiff")
        model, _ = TrainingRun([image], model_config={"patch_size": 4, "latent_dim": 4, "width": 16, "depth": 1},
                               train_config=TrainConfig(steps=5, batch_size=16, device="cpu", val_every=5,
                                                        max_val_patches=64)).run()
    finally:
        torch.set_num_threads(threads)
    assert model.motif_model is not None
    return model


def _old_cli(trained, images, seed: int = 0):
    """What ``cli/motifs.py`` computed itself before the use case: (motif model, labels, rows)."""
    settings = ApplySettings(motifs=0, regions=False, quality=False, outputs=("latent",))
    maps = [(im.name, apply_to_image(trained, im, settings).reconstruction, im.shape[1:]) for im in images]
    motifs = trained.motif_model
    if motifs is None:
        vectors = np.concatenate([rec.latent.reshape(rec.latent.shape[0], -1).T for _, rec, _ in maps])
        motifs = MotifModel.fit(vectors, 6, seed=seed, max_fit=MOTIF_FIT_POINTS)
    labels, rows = [], []
    for name, rec, shape in maps:
        labels.append(motifs.assign(rec.latent))
        counts = np.bincount(upsample_grid(labels[-1], rec.stride, shape).ravel(), minlength=motifs.k + 1)[1:]
        total = max(int(counts.sum()), 1)
        rows += [{"image": name, "motif": j + 1, "pixels": int(n), "fraction": n / total}
                 for j, n in enumerate(counts)]
    return motifs, labels, rows


class _Log:
    """Every record and handed-over image, in order."""

    def __init__(self) -> None:
        self.events: list = []

    def progress(self, event) -> None:
        self.events.append(event)

    def image(self, done: MotifsOfImage) -> None:
        self.events.append(done)

    def of(self, kind) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def test_the_models_own_motifs_label_every_image_as_the_command_did(trained, images):
    log = _Log()
    outcome = cohort_motifs(trained, images, on_progress=log.progress, on_image=log.image)
    motifs, labels, rows = _old_cli(trained, images)
    assert outcome.motifs is trained.motif_model and not outcome.pooled and "training images" in outcome.source
    assert outcome.abundance == rows and outcome.images == list(ROIS)
    done = log.of(MotifsOfImage)
    for image, expected, got in zip(images, labels, done):
        np.testing.assert_array_equal(got.labels, expected)
        assert got.stride == 2 and got.grid_pixel_size_um == pytest.approx(image.pixel_size_um * 2)
    for name in ROIS:
        assert sum(r["pixels"] for r in rows if r["image"] == name) == np.prod(images[ROIS.index(name)].shape[1:])
    # the plan first, then per image started → latent map, and the images only once all are applied
    kinds = [type(e).__name__ for e in log.events]
    assert kinds == ["MotifsPlan", "ImageStarted", "LatentMapDone", "ImageStarted", "LatentMapDone",
                     "MotifsOfImage", "MotifsOfImage"]
    assert log.events[0] == MotifsPlan(stored=trained.motif_model.k, pooled=6, seed=0)
    assert [e.grid for e in log.of(LatentMapDone)] == [g.labels.shape for g in done]
    assert all(e.ignored_note is None for e in log.of(ImageStarted))


def test_a_model_without_motifs_gets_them_fitted_once_on_the_pooled_latent_vectors(trained, images):
    old = dataclasses.replace(trained, motif_model=None)  # as a model file from before motifs
    log = _Log()
    outcome = cohort_motifs(old, images, MotifsSettings(seed=3), on_progress=log.progress, on_image=log.image)
    motifs, labels, rows = _old_cli(old, images, seed=3)
    np.testing.assert_array_equal(outcome.motifs.centers, motifs.centers)
    assert outcome.pooled and outcome.abundance == rows
    assert outcome.source == f"{motifs.k} motifs fitted once on latent vectors of all 2 image(s)"
    assert log.of(PooledMotifsFitted) == [PooledMotifsFitted(motifs.k, 2)]
    assert log.events[0] == MotifsPlan(stored=0, pooled=6, seed=3)
    for expected, got in zip(labels, log.of(MotifsOfImage)):
        np.testing.assert_array_equal(got.labels, expected)


def test_an_image_with_channels_the_model_lacks_is_noted_before_it_is_applied(trained, images):
    image = images[0]
    wide = ImcImage(np.concatenate([image.data, image.data[:1]]), [*image.channel_names, "Extra"],
                    metals=[*image.channel_keys, "Xx200"], source="wide.ome.tiff")
    log = _Log()
    outcome = cohort_motifs(trained, [wide], on_progress=log.progress)
    assert log.of(ImageStarted) == [ImageStarted("wide", "ignoring channels not in the model: Extra")]
    _, _, rows = _old_cli(trained, [image])
    assert [r["pixels"] for r in outcome.abundance] == [r["pixels"] for r in rows]


def test_bad_input_stops_before_any_image_is_handed_over(trained, images):
    handed = []
    with pytest.raises(ValueError, match="no images found in an empty folder"):
        cohort_motifs(trained, [], source="an empty folder", on_image=handed.append)
    short = ImcImage(images[1].data[:2], images[1].channel_names[:2], metals=images[1].channel_keys[:2],
                     source="short.ome.tiff")
    with pytest.raises(ChannelMismatchError, match="missing"):
        cohort_motifs(trained, [images[0], short], on_image=handed.append)
    twin = dataclasses.replace(images[1], source="elsewhere/20210305_NE_mockData3_001.ome.tiff")
    assert twin.name == images[0].name
    with pytest.raises(ValueError, match="two images are named '20210305_NE_mockData3_001' .*elsewhere/.*"
                                         "overwrite each other"):
        cohort_motifs(trained, [images[0], twin], on_image=handed.append)
    assert handed == []


@pytest.mark.parametrize("maps_before_cancel, message", [
    (0, "cancelled before applying the model to 20210305_NE_mockData3_001"),
    (1, "cancelled"),  # during the second image's tiles, or before them
    (2, "cancelled before the images were labelled with the motifs"),
])
def test_cancel_stops_before_any_image_is_handed_over(trained, images, maps_before_cancel, message):
    """Cancelled before the first image, at the second, or once every image is applied."""
    log = _Log()
    with pytest.raises(ApplyCancelled, match=message):
        cohort_motifs(trained, images, on_progress=log.progress, on_image=log.image,
                      cancel=lambda: len(log.of(LatentMapDone)) >= maps_before_cancel)
    assert len(log.of(LatentMapDone)) == maps_before_cancel and log.of(MotifsOfImage) == []


@pytest.mark.parametrize("field, value, expected", [
    ("pooled_motifs", 0, "pooled_motifs must be a whole number >= 1, got 0"),
    ("seed", -1, r"seed must be a whole number from 0 to 4294967295, got -1"),
    ("stride", 0, "stride must be a whole number >= 1, got 0"),
    ("batch_size", True, "batch_size must be a whole number >= 1, got True"),
    ("stride", 2.0, r"stride must be a whole number >= 1, got 2.0"),
])
def test_settings_name_the_bad_value(field, value, expected):
    with pytest.raises(ValueError, match=expected):
        MotifsSettings(**{field: value})


def test_settings_compute_the_latent_map_only():
    applied = MotifsSettings(stride=3, batch_size=64, device="cpu", precision="fp32").apply_settings()
    assert applied == ApplySettings(stride=3, batch_size=64, device="cpu", motifs=0, regions=False, quality=False,
                                    outputs=("latent",), precision="fp32")
