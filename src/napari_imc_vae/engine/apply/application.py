"""What applying a model to one image gives: :class:`ModelApplication` (arrays, regions, motifs,
the quality report and its plain sentences), and the parts of it
:func:`~napari_imc_vae.engine.apply.use_case.apply_to_image` derives from the model and the
reconstruction: the channels' steinbock names, the provenance, the error summary of
``quality.json`` and the per-channel error scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from napari_imc_vae.engine.apply.inference import Reconstruction
from napari_imc_vae.engine.apply.motifs import MotifModel
from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
from napari_imc_vae.io import ImcImage

__all__ = ["ModelApplication", "quality_patches_words", "steinbock_names", "provenance", "error_summary",
           "scale_channel_error"]


@dataclass
class ModelApplication:
    """Everything applying a model to one image gives; channels are the model's, in its order.

    Attributes
    ----------
    image : ImcImage
    reconstruction : Reconstruction
        ``raw`` (counts, >= 0), ``normalized``, ``error`` (calibrated, noise SDs),
        ``residual``, ``channel_error``, ``latent`` (see
        :class:`~napari_imc_vae.engine.apply.inference.Reconstruction`).
    channel_names : list of str
        steinbock-style names of the model's channels (``Pr141_CD45``).
    channel_index : list of int
        Image channel of each model channel.
    ignored_channels : list of str
        Image channels the model does not know (not reconstructed).
    motifs : ndarray of shape (ny, nx), int32, or None
        Motif labels 1 … k on the latent grid (pixel size × stride).
    motif_model : MotifModel or None
    motif_source : str or None
        Whether the motifs are the model's (fitted on its training images) or this image's.
    motif_rows : list of dict
        Per motif: pixels, fraction, mean raw intensity per channel.
    regions : list of dict
        Connected regions of high error, ranked (see :func:`~napari_imc_vae.engine.apply.regions.find_regions`).
    region_threshold : float
        The value of ``region_map`` above which a pixel belongs to a region:
        :data:`~napari_imc_vae.engine.apply.error_unit.REGION_THRESHOLD`, in noise SDs.
    spikes : list of dict
        Isolated spikes: single high-error pixels, apart from the regions (areas); each marks
        whether the hot-pixel filter replaced a value there (see
        :func:`~napari_imc_vae.engine.apply.regions.find_spikes`).
    region_map : ndarray of shape (Y, X) or None
        What the regions are found on: ``reconstruction.error``, the calibrated pixel error
        (the same array; see :attr:`error_map`).
    channel_error_scale : list of float
        Each channel's mean squared error over the image: ``reconstruction.channel_error`` is
        divided by it (1 = that channel's typical error).
    report : QualityReport or None
    quality : dict
        JSON-safe: where the patches came from, the baseline's provenance and the report
        (or ``reason`` why there is none).
    provenance : dict
    markers : list of MarkerSummary
        Per model channel, how much of the image's signal the reconstruction explains, in words
        (see :mod:`~napari_imc_vae.engine.quality.marker_summary`); empty without a raw reconstruction.
    """

    image: ImcImage
    reconstruction: Reconstruction
    channel_names: list[str]
    channel_index: list[int]
    ignored_channels: list[str]
    motifs: np.ndarray | None
    motif_model: MotifModel | None
    motif_rows: list[dict]
    report: object | None
    quality: dict
    provenance: dict = field(default_factory=dict)
    regions: list[dict] = field(default_factory=list)
    region_threshold: float = float("inf")
    channel_error_scale: list[float] = field(default_factory=list)
    motif_source: str | None = None
    region_map: np.ndarray | None = None
    markers: list = field(default_factory=list)
    spikes: list[dict] = field(default_factory=list)

    @property
    def stride(self) -> int:
        return int(self.reconstruction.stride)

    @property
    def error_map(self) -> np.ndarray | None:
        """(Y, X) calibrated pixel error in noise SDs (:data:`ERROR_UNIT_SENTENCE`): the layer,
        ``error.tiff`` and the regions' peak and mean error are all this map."""
        return self.reconstruction.error

    @property
    def residual(self) -> np.ndarray | None:
        """(C, Y, X) float32 signed count residual per model channel in noise SDs (positive:
        more counts measured than predicted; NaN where the input is not finite)."""
        return self.reconstruction.residual

    @property
    def hot_pixel_threshold(self) -> float | None:
        """The hot-pixel filter's threshold the model's normalization used (None: not recorded)."""
        return self.provenance.get("normalization", {}).get("params", {}).get("hot_pixel_threshold")

    def summary_sentences(self) -> list[str]:
        """Three to five plain sentences: is the model good enough to look at, which markers it
        explains well or badly, how many places look like artefacts and where
        (:func:`~napari_imc_vae.engine.quality.summary.summary_sentences`)."""
        from napari_imc_vae.engine.quality.summary import summary_sentences

        searched = self.regions if self.region_map is not None else None
        spikes = self.spikes if self.region_map is not None else None
        if spikes and self.reconstruction.hot_pixels is None:  # the filter's mask was not kept
            spikes = [{**s, "hot_pixel": None} for s in spikes]
        return summary_sentences(self.report, self.markers, searched, shape=tuple(self.image.shape[1:]),
                                 reason=self.quality.get("reason"), spikes=spikes,
                                 hot_pixel_threshold=self.hot_pixel_threshold)

    def report_text(self) -> str:
        """The report for a terminal or a text box: the plain sentences, then the numbers behind
        them after :data:`~napari_imc_vae.engine.quality.summary.NUMBERS_HEADER`."""
        from napari_imc_vae.engine.quality.marker_summary import marker_table
        from napari_imc_vae.engine.quality.summary import two_layer_text

        q, numbers = self.quality, []
        if self.report is not None:
            head = f"{self.image.name}: {quality_patches_words(q, self.image.shape)}."
            if self.motif_source:
                found = len(self.motif_rows)  # empty motifs are not listed
                k = self.motif_model.k if self.motif_model is not None else found
                head += f"\nMotifs: {self.motif_source}" + (f"; {found} of them found here." if found < k else ".")
            numbers.append(f"{head}\n{self.report.format_text('patches of this image')}")
        numbers.append(marker_table(self.markers))
        return two_layer_text(self.summary_sentences(), "\n\n".join(n for n in numbers if n))


def quality_patches_words(quality: dict, shape) -> str:
    """Which patches the report measured, from ``quality`` (``patch_size``, ``stride``,
    ``n_patches``) and the image's ``(C, Y, X)``: all of the image's patches at that stride, or
    (past :data:`~napari_imc_vae.engine.defaults.MAX_QUALITY_PATCHES`) how many evenly spaced of how many."""
    p, stride, used = int(quality["patch_size"]), int(quality["stride"]), int(quality["n_patches"])
    h, w = (int(n) for n in shape[-2:])
    total = ((h - p) // stride + 1) * ((w - p) // stride + 1)
    which = (f"all {total:,} of the image's patches" if used >= total
             else f"{used:,} evenly spaced of the image's {total:,} patches")
    return f"{which} of {p} px at stride {stride}"


def steinbock_names(trained: TrainedModel) -> list[str]:
    """``Pr141_Cytokeratin 5`` names (metal_target) so that readers recover metal and target
    (the io rule, :func:`~napari_imc_vae.io.steinbock_channel_name`: the metal is never doubled)."""
    from napari_imc_vae.io import steinbock_channel_name

    return [steinbock_channel_name(name, key) for name, key in zip(trained.channel_names, trained.channel_keys)]


def provenance(trained: TrainedModel, stride: int) -> dict:
    """What made a result: model file hash (or "unsaved"), normalization, step, stride."""
    return {
        "model_sha256": trained.file_sha256 or "unsaved",
        "model_file": trained.source_file,
        "training_step": int(trained.step),
        "normalization": trained.normalizer.to_dict(),
        "model_config": asdict(trained.model.config),
        "stride": int(stride),
    }


def error_summary(rec, names: list[str], regions: list[dict] | None, spikes: list[dict] | None = None) -> dict:
    """quality.json's ``error``: the unit, its threshold, the image's figures in it."""
    from napari_imc_vae.engine.apply.error_unit import describe_unit

    e = rec.error
    finite = np.isfinite(e)
    out = describe_unit(rec.dispersion, names, scale=rec.noise_scale)
    out.update({"pixels": int(finite.sum()),
                "median": float(np.median(e[finite])) if finite.any() else None,
                "max": float(e[finite].max()) if finite.any() else None,
                "pixels_above_threshold": int((e[finite] > out["region_threshold"]).sum())})
    if regions is not None:
        out["n_regions"] = len(regions)
    if spikes is not None:  # single high pixels, apart from the regions (areas)
        out["n_isolated_spikes"] = sum(not s["hot_pixel"] for s in spikes)
        out["n_hot_pixel_spikes"] = sum(s["hot_pixel"] for s in spikes)
    return out


def scale_channel_error(channel_error: np.ndarray | None) -> list[float]:
    """Divide each channel's squared error by its mean over the image, in place; the means."""
    if channel_error is None:
        return []
    scale = []
    for c in range(channel_error.shape[0]):
        mean = float(np.nanmean(channel_error[c])) if np.isfinite(channel_error[c]).any() else 0.0
        scale.append(mean)
        if mean > 0:
            channel_error[c] /= np.float32(mean)
    return scale
