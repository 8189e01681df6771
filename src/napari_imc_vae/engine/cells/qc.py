"""Cohort quality control: one row per ROI × marker, and which ROIs and markers are worst.

:func:`roi_marker_rows` turns what applying a model to one image gave
(:class:`~napari_imc_vae.engine.apply.use_case.ModelApplication`) into its rows: per marker the share
of its structure the model explains (the report's
:class:`~napari_imc_vae.engine.quality.marker_summary.MarkerSummary`), the mean calibrated error
(mean absolute count residual, in noise SDs: about 0.8 where the counts vary as counting
noise says), the pixels the hot-pixel filter replaced, and the regions of high error whose
error that marker carries, by kind (single pixel: the isolated spikes of
:func:`~napari_imc_vae.engine.apply.regions.find_spikes`; line; blob): one count per marker × event,
so a region carried by three markers counts in three rows. Every row of an image also carries the
image's own counts of distinct events (:data:`ROI_EVENT_KEYS`, not columns of the table): the
summary's sentence counts regions as ``<image>_regions.csv`` lists them and the isolated spikes
apart. The rows of one image are small and JSON-safe: the command line keeps them in a
per-image file, which is also the mark that the image is done (a stopped run resumes from there), and
:class:`CohortSummary` gathers them for the table and the heatmap a person reads first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["HEATMAP_TOP", "QC_COLUMNS", "REGION_KINDS", "ROI_EVENT_KEYS", "roi_marker_rows", "hot_pixels_per_channel",
           "CohortSummary", "heatmap_top"]

#: Shapes a region of high error is given (:func:`~napari_imc_vae.engine.apply.regions.find_regions`).
REGION_KINDS = ("single pixel", "line", "blob")
#: Each kind's column of the cohort table (its ROI's own count is the same name after ``roi_``).
_REGION_COLUMN = {k: f"regions_{k.replace(' ', '_')}" for k in REGION_KINDS}
#: Columns of the cohort table, in this order.
QC_COLUMNS = ("roi", "marker", "explained", "has_signal", "mean_error", "hot_pixels",
              *_REGION_COLUMN.values(), "pixels")
#: Keys each row also holds, the same on every row of a ROI (one figure per ROI, so not written to
#: the per-marker table): its regions by kind, as its ``_regions.csv`` lists them, and its isolated spikes.
ROI_EVENT_KEYS = (*(f"roi_{column}" for column in _REGION_COLUMN.values()), "roi_spikes")
#: The heatmap's colour scale tops at this mean calibrated error (noise SDs) or the largest value:
#: counting noise alone gives about 0.8 (the mean of |Z|), so a cohort the model explains stays
#: dark-to-middle and 2 or more, a marker it clearly does not explain, is bright.
HEATMAP_TOP = 2.0


def hot_pixels_per_channel(data: np.ndarray, threshold: float | None) -> list[int]:
    """Per channel, how many pixels steinbock's hot-pixel filter replaces at ``threshold``
    (0 everywhere when the model's normalization has no filter)."""
    from napari_imc_vae.preprocessing.transforms import filter_hot_pixels

    if threshold is None:
        return [0] * data.shape[0]
    counts = []
    for c in range(data.shape[0]):  # one channel at a time: memory of one channel, not the stack
        channel = data[c:c + 1]
        counts.append(int((filter_hot_pixels(channel, threshold) != channel).sum()))  # NaN != NaN: not replaced
    return counts


def roi_marker_rows(app) -> list[dict]:
    """One JSON-safe dict per marker of one image (columns :data:`QC_COLUMNS`).

    Parameters
    ----------
    app : ModelApplication
        Applied with ``residual`` among the outputs (the per-marker error) and regions on.
    """
    image, rec = app.image, app.reconstruction
    # channel by channel: indexing all model channels at once would copy the whole image
    hot = [hot_pixels_per_channel(image.data[i : i + 1], app.hot_pixel_threshold)[0] for i in app.channel_index]
    markers = {m.name: m for m in getattr(app, "markers", None) or []}
    spikes = getattr(app, "spikes", None) or []
    events = dict(zip(ROI_EVENT_KEYS, [*(sum(r["shape"] == k for r in app.regions) for k in REGION_KINDS),
                                       len(spikes)]))
    rows = []
    for c, name in enumerate(app.channel_names):
        error = None
        if rec.residual is not None:
            r = np.abs(rec.residual[c])
            finite = np.isfinite(r)
            error = float(r[finite].mean(dtype=np.float64)) if finite.any() else None
        summary = markers.get(name)
        carried = [r for r in app.regions if name in str(r.get("channels", "")).split(";")]
        # isolated spikes (single high pixels, listed apart from the regions) count as single pixels
        carried += [{"shape": "single pixel"} for s in spikes
                    if name in str(s.get("channels", "")).split(";")]
        rows.append({"roi": image.name, "marker": name,
                     "explained": None if summary is None else summary.explained,
                     "has_signal": None if summary is None else bool(summary.has_signal),
                     "mean_error": error, "hot_pixels": hot[c],
                     **{column: sum(r["shape"] == k for r in carried) for k, column in _REGION_COLUMN.items()},
                     "pixels": int(image.shape[1] * image.shape[2]), **events})
    return rows


@dataclass
class CohortSummary:
    """The rows of every ROI (:func:`roi_marker_rows`), and what a person reads first."""

    rows: list[dict]

    @property
    def rois(self) -> list[str]:
        return list(dict.fromkeys(r["roi"] for r in self.rows))

    @property
    def markers(self) -> list[str]:
        return list(dict.fromkeys(r["marker"] for r in self.rows))

    def matrix(self, column: str = "mean_error") -> np.ndarray:
        """(ROIs, markers) of ``column``, NaN where it was not measured."""
        rois, markers = {n: i for i, n in enumerate(self.rois)}, {n: j for j, n in enumerate(self.markers)}
        out = np.full((len(rois), len(markers)), np.nan)
        for r in self.rows:
            value = r.get(column)
            if value is not None:
                out[rois[r["roi"]], markers[r["marker"]]] = float(value)
        return out

    def rois_with_signal(self) -> dict[str, tuple[int, int]]:
        """Per marker: in how many ROIs it has signal (``has_signal`` not false), of how many measured."""
        signal = self.matrix("has_signal")
        return {name: (int((signal[:, j] != 0.0).sum()), len(self.rois)) for j, name in enumerate(self.markers)}

    @property
    def markers_without_signal(self) -> list[str]:
        """Markers the marker summary finds almost no signal in (``has_signal`` false) in every ROI."""
        return _without_signal(self.rois_with_signal())

    def worst(self, n: int = 3) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The ``n`` ROIs and the ``n`` markers of highest mean calibrated error (name, value).

        A marker is ranked on the ROIs where it has signal (``has_signal`` not false): a channel of
        counting noise alone is no staining problem, whatever its error; one without signal
        anywhere (:attr:`markers_without_signal`) is not ranked.
        """
        m = self.matrix("mean_error")
        with_signal = np.where(self.matrix("has_signal") == 0.0, np.nan, m)

        def top(names: Sequence[str], values: np.ndarray) -> list[tuple[str, float]]:
            order = [i for i in np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable") if np.isfinite(values[i])]
            return [(names[i], float(values[i])) for i in order[:n]]

        return top(self.rois, _nanmean(m, 1)), top(self.markers, _nanmean(with_signal, 0))

    def headline(self, unit: str = "noise SD", n: int = 3) -> str:
        """One line naming the worst ROIs and markers, for the picture's title and the terminal."""
        rois, markers = self.worst(n)
        fmt = ", ".join
        signal = self.rois_with_signal()
        silent = _without_signal(signal)  # markers_without_signal, without counting again

        def ranked(name: str, v: float) -> str:  # a marker ranked on only some ROIs says on how many
            k, of = signal[name]
            return f"{name} ({v:.2f}{f', signal in {k} of {of} ROIs' if k < of else ''})"

        return (f"Worst ROIs: {fmt(f'{name} ({v:.2f})' for name, v in rois) or 'none measured'}; "
                f"worst markers: {fmt(ranked(name, v) for name, v in markers) or 'none measured'} "
                f"(mean calibrated error, {unit}"
                + (f"; not ranked, almost no signal: {fmt(silent)})" if silent else ")"))

    def sentences(self, unit: str = "noise SD") -> list[str]:
        """A few plain lines for the terminal: the cohort, the worst, the artefacts."""
        hot = sum(int(r["hot_pixels"]) for r in self.rows)
        # distinct events, from each ROI's own counts: a region carried by three markers is one region
        per_roi = {r["roi"]: r for r in self.rows}
        counted = [r for r in per_roi.values() if all(k in r for k in ROI_EVENT_KEYS)]
        regions = {k: sum(int(r[f"roi_{_REGION_COLUMN[k]}"]) for r in counted) for k in REGION_KINDS}
        spikes = sum(int(r["roi_spikes"]) for r in counted)
        unexplained = [f"{r['roi']}/{r['marker']}" for r in self.rows
                       if r.get("has_signal") and r.get("explained") is not None and r["explained"] < 0.25]
        lines = [f"{len(self.rois)} ROI(s) × {len(self.markers)} marker(s).", self.headline(unit) + ".",
                 f"Hot pixels replaced: {hot:,}; regions of high error (the rows of the _regions.csv files): "
                 f"{sum(regions.values()):,} (" + ", ".join(f"{v:,} {k}" for k, v in regions.items())
                 + f"); isolated single-pixel spikes, listed apart: {spikes:,}."
                 + (f" Not counted: {len(per_roi) - len(counted)} ROI(s) done by an earlier version (run them "
                    "again to count them)." if len(counted) < len(per_roi) else "")]
        if unexplained:
            lines.append(f"Markers with signal the model explains poorly (< 25%): {', '.join(unexplained[:8])}"
                         + (f" and {len(unexplained) - 8} more" if len(unexplained) > 8 else "") + ".")
        return lines


def heatmap_top(matrix: np.ndarray) -> float:
    """Where the heatmap's colour scale of ``matrix`` (mean calibrated errors) tops: :data:`HEATMAP_TOP`,
    or the largest value when one is larger."""
    return max(HEATMAP_TOP, float(np.nanmax(matrix, initial=0.0)))


def _nanmean(m: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` of the finite values; NaN where there is none (no warning)."""
    finite = np.isfinite(m)
    n = finite.sum(axis=axis)
    return np.where(n > 0, np.where(finite, m, 0.0).sum(axis=axis) / np.maximum(n, 1), np.nan)


def _without_signal(signal: dict[str, tuple[int, int]]) -> list[str]:
    """The markers of :meth:`CohortSummary.rois_with_signal` with signal in no ROI."""
    return [name for name, (k, _) in signal.items() if k == 0]
