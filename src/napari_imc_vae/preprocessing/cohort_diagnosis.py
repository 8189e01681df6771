"""Diagnose every image of a cohort (a steinbock ``img/`` folder, an ``.mcd``'s acquisitions).

Each image gets its own :class:`~napari_imc_vae.preprocessing.diagnosis.Diagnosis` under ONE
normalizer fitted on the whole cohort (as ``train`` would fit it), and the cohort a summary of
channel statistics: per channel, in how many images it is empty, its scale (p99) across the
images and the images whose scale sits far from the cohort's (a failed stain, a batch
effect, an acquisition with another gain). Images are read one at a time, twice (the fit,
then the statistics): memory is that of one image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from napari_imc_vae.preprocessing.diagnosis import Diagnosis, _fmt, diagnose
from napari_imc_vae.preprocessing.normalizer import Normalizer
from napari_imc_vae.preprocessing.streaming import fit_streaming

__all__ = ["OUTLIER_FACTOR", "FAR_FROM_COHORT", "CohortDiagnosis", "diagnose_cohort"]

#: An image's channel scale (p99) this many times above or below the cohort's median scale of
#: that channel is named: 10× is beyond the spread of a stain between ROIs of one slide.
OUTLIER_FACTOR = 10.0
#: An image's channel whose mean under the cohort's normalizer lies beyond ± this many cohort
#: standard deviations is named in its line.
FAR_FROM_COHORT = 1.0


@dataclass
class CohortDiagnosis:
    """Per-image diagnoses under one cohort normalizer, and per-channel cohort statistics.

    Attributes
    ----------
    images : list of Diagnosis
    names : list of str
        Image names, same order.
    channels : list of dict
        Per channel: ``name``, ``images`` (count), ``empty_in`` (image names), ``p99_median``,
        ``p99_min`` / ``p99_max`` with ``p99_min_image`` / ``p99_max_image``, ``outliers``
        (``{"image", "p99", "factor"}``: scale beyond :data:`OUTLIER_FACTOR` × the median).
    normalizer : Normalizer
    """

    images: list[Diagnosis]
    names: list[str]
    channels: list[dict]
    normalizer: Normalizer

    def to_dict(self) -> dict:
        """JSON-safe: the cohort's channels and every image's own diagnosis."""
        return {"normalization": self.normalizer.params.to_dict(), "n_images": len(self.images),
                "outlier_factor": OUTLIER_FACTOR, "channels": self.channels,
                "images": [{"name": n, **d.to_dict()} for n, d in zip(self.names, self.images)]}

    def format_text(self) -> str:
        """The cohort table, its verdicts, then one line per image."""
        lines = [f"Cohort of {len(self.images)} images; normalization fitted on all of them: "
                 f"{self.normalizer.params.describe()}", "", "Channel scale (p99) across the images"]
        header = ["channel", "images", "empty", "median p99", "lowest p99 (image)", "highest p99 (image)"]
        rows = [[c["name"], str(c["images"]), str(len(c["empty_in"])), _fmt(c["p99_median"]),
                 f"{_fmt(c['p99_min'])} ({c['p99_min_image'] or '-'})",
                 f"{_fmt(c['p99_max'])} ({c['p99_max_image'] or '-'})"] for c in self.channels]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        lines.append("")
        flagged = False
        for c in self.channels:
            if c["empty_in"]:
                flagged = True
                lines.append(f"[!] {c['name']} is empty in {len(c['empty_in'])} of {c['images']} images: "
                             f"{_listed(c['empty_in'])}")
            for o in c["outliers"]:
                flagged = True
                side = "above" if o["factor"] > 1 else "below"
                factor = o["factor"] if o["factor"] > 1 else 1 / o["factor"]
                lines.append(f"[!] {c['name']} in {o['image']}: p99 {_fmt(o['p99'])}, {factor:.3g}× {side} "
                             f"the cohort's median {_fmt(c['p99_median'])}")
        if not flagged:
            lines.append(f"[ok] no empty channel, every image's scale within {OUTLIER_FACTOR:g}× of the cohort's")
        lines += ["", "Per image (normalized with the cohort's normalizer)"]
        lines += [f"- {n}: {_image_line(d)}" for n, d in zip(self.names, self.images)]
        return "\n".join(lines)


def _listed(names: list[str], n: int = 6) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _image_line(d: Diagnosis) -> str:
    c, y, x = d.shape
    notes = []
    if d.empty_channels:
        notes.append(f"empty: {', '.join(d.empty_channels)}")
    # under the cohort's normalizer an image's channel mean is its level in cohort SDs: per-image
    # z-score rules (|mean| <= 0.1) do not apply; beyond ±FAR it sits apart from the cohort
    far = [(a.name, a.mean) for a in d.after if a.mean is not None and abs(a.mean) > FAR_FROM_COHORT]
    if far:
        notes.append(f"far from the cohort (normalized mean beyond ±{FAR_FROM_COHORT:g}): "
                     + ", ".join(f"{name} ({mean:+.2f})" for name, mean in far))
    return f"{c} channels, {y} × {x} px; " + ("; ".join(notes) if notes else "ok")


def _channel_rows(names: list[str], diagnoses: list[Diagnosis]) -> list[dict]:
    rows = []
    for c, channel in enumerate(diagnoses[0].before):
        p99 = np.array([np.nan if d.before[c].p99 is None or d.before[c].is_empty else d.before[c].p99
                        for d in diagnoses], float)
        present = np.flatnonzero(np.isfinite(p99) & (p99 > 0))
        row = {"name": channel.name, "images": len(diagnoses),
               "empty_in": [n for n, d in zip(names, diagnoses) if d.before[c].is_empty],
               "p99_median": None, "p99_min": None, "p99_max": None, "p99_min_image": None,
               "p99_max_image": None, "outliers": []}
        if present.size:
            median = float(np.median(p99[present]))
            lo, hi = present[np.argmin(p99[present])], present[np.argmax(p99[present])]
            row.update(p99_median=median, p99_min=float(p99[lo]), p99_max=float(p99[hi]),
                       p99_min_image=names[lo], p99_max_image=names[hi])
            row["outliers"] = [{"image": names[i], "p99": float(p99[i]), "factor": float(p99[i] / median)}
                               for i in present
                               if p99[i] > OUTLIER_FACTOR * median or p99[i] < median / OUTLIER_FACTOR]
        rows.append(row)
    return rows


def diagnose_cohort(images: Callable[[], Iterable], *, hot_pixel_threshold=None, arcsinh_cofactor=None,
                    clip_percentile=None, zscore=True) -> CohortDiagnosis:
    """Diagnose every image under one normalizer fitted on them all.

    Parameters
    ----------
    images : callable
        Returns a fresh iterable of :class:`~napari_imc_vae.io.ImcImage` each time it is called
        (it is iterated twice: the fit, then the statistics), e.g. a reader of files one by one.
    hot_pixel_threshold, arcsinh_cofactor, clip_percentile, zscore
        The normalization, as :meth:`Normalizer.fit`.

    Raises
    ------
    ValueError
        No image, or images whose channels differ (named by :meth:`Normalizer.match_channels`).
    """
    normalizer = fit_streaming(images(), hot_pixel_threshold=hot_pixel_threshold,
                               arcsinh_cofactor=arcsinh_cofactor, clip_percentile=clip_percentile, zscore=zscore)
    names, diagnoses = [], []
    for image in images():
        names.append(image.name)
        diagnoses.append(diagnose(image, normalizer))
    if not diagnoses:
        raise ValueError("images: the cohort holds no image")
    return CohortDiagnosis(diagnoses, names, _channel_rows(names, diagnoses), normalizer)
