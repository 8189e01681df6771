"""The quality report: is the reconstruction any good? (DESIGN §4)

:func:`evaluate` measures a model on held-out patches next to two baselines on the
same patches — the mean patch (R² ≈ 0) and PCA with as many components as latent
dimensions — once against the patches themselves and once against a lightly smoothed
target (Gaussian σ = 1 px), which separates structure from shot noise. The baselines are
fitted where the model was: on training patches given here, or stored in the model file at
the end of training; without either, the report gives no verdict against them.

The measures are accumulated in one pass over chunks (:mod:`~napari_imc_vae.engine.measures`);
patches touching a NaN/Inf pixel are left out of all of them and counted.

The absolute thresholds of DESIGN §4 hold for smooth inputs only. Whether the data
are smooth is read off the data: smoothing with σ = 1 px keeps most of the gradient
energy of smooth images and little of shot noise (``target_smoothness`` ≥ ``SMOOTH_DATA``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_imc_vae.engine import metrics
from napari_imc_vae.engine.baselines import PCABaseline
from napari_imc_vae.engine.measures import PredictionSums, StreamSums, finite_patches, sharpness_between
from napari_imc_vae.engine.report import SMOOTH_DATA, THRESHOLDS, Measures, QualityReport
from napari_imc_vae.engine.tiling import reflect_index

__all__ = ["GridPatches", "Measures", "QualityReport", "evaluate", "gaussian_smooth", "smoothing_radius",
           "PERM_PATCHES", "THRESHOLDS", "TRAINING_PATCHES_SOURCE"]

#: Patches the permutation accuracy is measured on by default: it costs 8 orientation predictions
#: a patch (the measure alone took 6× the model's forward pass over all 2,048 patches of a test),
#: and at 1,024 patches its standard error is at most √(0.95·0.05/1024) ≈ 0.007 at the 0.95
#: threshold (counting a patch's 7 views as one draw).
PERM_PATCHES = 1024
#: ``baseline_source`` when :func:`evaluate` fits the baselines on the training patches it is given.
TRAINING_PATCHES_SOURCE = "training patches given to evaluate"


def smoothing_radius(sigma: float = 1.0, truncate: float = 4.0) -> int:
    """Rows (and columns) on each side that one output pixel of :func:`gaussian_smooth` reads."""
    return max(1, int(truncate * sigma + 0.5))


def _convolve(t: torch.Tensor, weights: list[float], axis: int, index: torch.Tensor, n: int) -> torch.Tensor:
    """1-D convolution along ``axis``: ``n`` outputs from ``t``'s positions ``index`` (reflected)."""
    padded = t.index_select(axis, index)
    out = padded.narrow(axis, 0, n) * weights[0]
    for i in range(1, len(weights)):
        out.add_(padded.narrow(axis, i, n), alpha=weights[i])
    return out


def gaussian_smooth(x, sigma: float = 1.0, truncate: float = 4.0, *,
                    rows: tuple[int, int] | None = None, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Gaussian blur over the last two axes, reflecting at the borders, NaN-aware.

    Smooth the whole image before cutting patches where you can (pass those patches
    as ``smooth_target`` to :func:`evaluate`, or let :class:`GridPatches` do it band by
    band); per patch, the reflection at the patch border slightly over-weights edge
    pixels. NaN pixels are left out of the weighted mean around them and stay NaN.

    Parameters
    ----------
    x : array of shape (..., Y, X)
    sigma : float
        Standard deviation in pixels (> 0).
    truncate : float
        Kernel radius in standard deviations.
    rows : (int, int), optional
        Only the rows ``[start, stop)`` (second-to-last axis) of the result, computed from
        the rows within :func:`smoothing_radius` of them: a band of an image holding that
        many more rows on each side (or reaching the image's border) gives exactly the
        whole image's result for those rows.
    dtype : torch.dtype
        Arithmetic precision: float64 (default) for data of any range, such as raw counts;
        float32 suffices for normalized data and takes half the time and memory.

    Returns
    -------
    ndarray of the same shape (``stop - start`` rows with ``rows``), float32
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    t = t.to("cpu", dtype)
    if t.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (..., Y, X), got shape {tuple(t.shape)}")
    y_axis, x_axis = t.ndim - 2, t.ndim - 1
    y0, y1 = (0, t.shape[y_axis]) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= y0 < y1 <= t.shape[y_axis]:
        raise ValueError(f"rows must be (start, stop) with 0 <= start < stop <= {t.shape[y_axis]}, got {rows}")
    r = smoothing_radius(sigma, truncate)
    w = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    weights = (w / w.sum()).tolist()
    valid = torch.isfinite(t)
    everywhere = bool(valid.all())  # the usual case: the weights sum to 1 at every pixel
    num = t if everywhere else torch.where(valid, t, 0.0)
    den = None if everywhere else valid.to(dtype)
    for axis, lo, hi in ((y_axis, y0, y1), (x_axis, 0, t.shape[x_axis])):
        index = torch.from_numpy(reflect_index(np.arange(lo - r, hi + r), t.shape[axis]))
        num = _convolve(num, weights, axis, index, hi - lo)
        den = None if den is None else _convolve(den, weights, axis, index, hi - lo)
    if den is None:
        return num.to(torch.float32).numpy()
    out = torch.where(valid.narrow(y_axis, y0, y1 - y0), num / den.clamp(min=torch.finfo(dtype).tiny), torch.nan)
    return out.to(torch.float32).numpy()


@dataclass(frozen=True)
class _Band:
    """Patch rows ``[lo, hi)`` and the rows ``[a, b)`` smoothing them reads; positions ``[first, last)``."""

    a: int
    lo: int
    hi: int
    b: int
    first: int
    last: int


class GridPatches:
    """Patches on a stride grid of a normalized image, and the same patches of it smoothed.

    The grid holds a ``patch`` × ``patch`` patch at every multiple of ``stride`` (in Y and X)
    where one fits; when there are more than ``cap``, ``cap`` of them evenly spaced in
    row-major order. The patches are cut band by band as the image's rows arrive: only the
    rows they need, plus :func:`smoothing_radius` rows on each side, are held and smoothed
    (in float32), and what comes out equals cutting them from the whole image and from
    ``gaussian_smooth(image)`` (the smoothed ones up to float32 rounding, ~1e-6 on
    normalized data).

    Feed rows in increasing order with :meth:`add` (every row, as a reconstruction's
    ``on_rows`` gives them, or only the :attr:`row_ranges`), or pull them with :meth:`read`;
    then :meth:`result` gives the patches.

    Parameters
    ----------
    shape : tuple of int
        ``(C, Y, X)`` of the image, at least ``patch`` in Y and X.
    patch, stride : int
    cap : int, optional
        At most this many patches.
    sigma : float
        Of the smoothing (see :func:`gaussian_smooth`).
    band_values : int
        About how many values of image rows one band may hold (memory bound).
    """

    def __init__(self, shape, patch: int, stride: int, *, cap: int | None = None, sigma: float = 1.0,
                 band_values: int = 1 << 21) -> None:
        c, h, w = (int(n) for n in shape)
        if h < patch or w < patch or patch < 1 or stride < 1:
            raise ValueError(f"a {h}×{w} image holds no {patch}×{patch} patch at stride {stride}")
        self.shape, self.patch, self.stride, self.sigma = (c, h, w), int(patch), int(stride), float(sigma)
        ys, xs = np.arange(0, h - patch + 1, stride), np.arange(0, w - patch + 1, stride)
        yy, xx = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
        if cap is not None and yy.size > cap:
            keep = np.linspace(0, yy.size - 1, cap).round().astype(int)
            yy, xx = yy[keep], xx[keep]
        self._yy, self._xx = yy, xx
        self.patches = np.empty((len(yy), c, patch, patch), dtype=np.float32)
        self.smooth = np.empty_like(self.patches)
        self._bands = self._plan(np.unique(yy), max(1, band_values // (c * w)))
        self._next = 0  # next band to cut
        self._buf, self._start = np.empty((c, 0, w), np.float32), 0  # rows [start, start + len)

    def _plan(self, needed: np.ndarray, max_rows: int) -> list[_Band]:
        """Bands of patch rows: a new one where the rows grow too many or a gap opens."""
        p, r, h = self.patch, smoothing_radius(self.sigma), self.shape[1]
        bands, first = [], 0
        for i in range(1, len(needed) + 1):
            if i < len(needed) and needed[i] - needed[i - 1] <= p + 2 * r \
                    and needed[i] + p - needed[first] <= max_rows:
                continue
            lo, hi = int(needed[first]), int(needed[i - 1]) + p
            bands.append(_Band(max(lo - r, 0), lo, hi, min(hi + r, h),
                               int(np.searchsorted(self._yy, lo, "left")),
                               int(np.searchsorted(self._yy, needed[i - 1], "right"))))
            first = i
        return bands

    @property
    def origins(self) -> tuple[np.ndarray, np.ndarray]:
        """Top-left image pixel ``(y, x)`` of every patch, in the order of :meth:`result`."""
        return self._yy, self._xx

    @property
    def row_ranges(self) -> list[tuple[int, int]]:
        """Disjoint, increasing ``(start, stop)`` row ranges, about a band each: the rows needed."""
        out, end = [], 0
        for band in self._bands:
            start = max(band.a, end)
            if band.b > start:
                out.append((start, band.b))
                end = band.b
        return out

    @property
    def complete(self) -> bool:
        return self._next == len(self._bands)

    def add(self, start: int, rows: np.ndarray) -> None:
        """Take the image's rows ``[start, start + rows.shape[1])``, (C, n, X) normalized.

        Rows must come in increasing order; rows no patch needs may be left out.
        """
        end = self._start + self._buf.shape[1]
        if start < end:
            raise ValueError(f"rows must come in increasing order: got row {start} after row {end - 1}")
        if start > end and not self.complete and self._bands[self._next].a < start:
            raise ValueError(f"rows {max(self._bands[self._next].a, end)}…{start - 1} were needed but not given")
        rows = np.asarray(rows, dtype=np.float32)
        if start == end:
            self._buf = np.concatenate([self._buf, rows], axis=1)
        else:  # rows end…start-1 are not needed
            self._buf, self._start = rows.copy(), start
        end = self._start + self._buf.shape[1]
        while not self.complete and self._bands[self._next].b <= end:
            band = self._bands[self._next]
            self._cut(band, self._buf[:, band.a - self._start : band.b - self._start])
            self._next += 1
        keep = min(self._bands[self._next].a, end) if not self.complete else end  # rows later bands need
        if keep > self._start:
            self._buf = self._buf[:, keep - self._start :].copy()
            self._start = keep

    def read(self, rows) -> None:
        """Pull the :attr:`row_ranges` from ``rows(start, stop)`` → (C, stop - start, X) normalized."""
        for start, stop in self.row_ranges:
            self.add(start, rows(start, stop))

    def _cut(self, band: _Band, block: np.ndarray) -> None:
        lo, hi, p = band.lo - band.a, band.hi - band.a, self.patch
        smooth = gaussian_smooth(block, self.sigma, rows=(lo, hi), dtype=torch.float32)
        where = slice(band.first, band.last)
        ys, xs = self._yy[where] - band.lo, self._xx[where]
        for source, target in ((block[:, lo:hi], self.patches), (smooth, self.smooth)):
            windows = np.lib.stride_tricks.sliding_window_view(source, (p, p), axis=(1, 2))
            target[where] = windows[:, ys, xs].transpose(1, 0, 2, 3)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(patches, smooth)``, each (N, C, P, P) float32, in row-major grid order.

        Raises
        ------
        ValueError
            When rows some patch needs never came.
        """
        if not self.complete:
            band = self._bands[self._next]
            raise ValueError(f"rows up to {band.b - 1} are needed; got up to {self._start + self._buf.shape[1] - 1}")
        return self.patches, self.smooth


def _patch_tensor(patches, name: str) -> torch.Tensor:
    """(N, C, P, P) float32 on the CPU; no copy when given float32 on the CPU."""
    # torch.as_tensor first: patches may be tensors on a GPU, which np.asarray cannot read
    t = torch.as_tensor(patches).detach().to("cpu", torch.float32)
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, P, P), got {tuple(t.shape)}")
    return t


def _fit_on(train_patches, shape: tuple[int, ...], latent_dim: int) -> PCABaseline:
    tr = _patch_tensor(train_patches, "train_patches")
    if tuple(tr.shape[1:]) != shape:
        raise ValueError(f"train_patches must have shape (M, {', '.join(map(str, shape))}), got {tuple(tr.shape)}")
    finite = finite_patches(tr)
    n = int(finite.sum())
    if n == 0:
        raise ValueError(f"no training patch without NaN/Inf pixels among the {len(tr)} given: "
                         f"no baseline can be fitted")
    return PCABaseline.fit(tr if n == len(tr) else tr[finite], min(latent_dim, n, int(np.prod(shape))))


@torch.no_grad()
def evaluate(model, val_patches, train_patches=None, *, baseline: PCABaseline | None = None,
             baseline_source: str | None = None, batch_size: int = 512, smooth_target=None,
             smooth_data: bool | None = None, perm_patches: int | None = PERM_PATCHES,
             predictions=None) -> QualityReport:
    """Measure a model and its baselines on held-out patches.

    Parameters
    ----------
    model : nn.Module
        Has ``config.latent_dim``, ``reconstruct(x) -> (recon, mu)`` and
        ``predict_orientation(x)``; evaluated in eval mode, its mode restored after.
    val_patches : array of shape (N, C, P, P)
        Held-out patches in normalized units. Patches touching a NaN/Inf value are left out
        of every measure (counted in ``n_skipped_nonfinite``).
    train_patches : array of shape (M, C, P, P), optional
        Patches PCA-k (k = latent dimensions) and the mean predictor are fitted on (those
        without NaN/Inf values).
    baseline : PCABaseline, optional
        Used when no ``train_patches`` are given: a fitted baseline (e.g. the one stored in the
        model file); the mean predictor is its mean. With neither, the report has no baseline.
    baseline_source : str, optional
        Where the baseline was fitted, in plain words, for the report; default with
        ``train_patches``: :data:`TRAINING_PATCHES_SOURCE`.
    batch_size : int
        Patches per model call and per chunk of the measures.
    smooth_target : array of shape (N, C, P, P), optional
        The same patches cut from the image smoothed with :func:`gaussian_smooth`
        (better at patch borders); default: each patch smoothed on its own.
    smooth_data : bool, optional
        Whether the absolute thresholds apply; default: read off the data.
    perm_patches : int, optional
        Held-out patches (evenly spaced) used for the permutation accuracy, which costs 8
        orientation predictions per patch; None uses all. See :data:`PERM_PATCHES`.
    predictions : (array, array), optional
        The model's ``(recon, mu)`` for ``val_patches`` (N, C, P, P) and (N, D), already
        computed (e.g. by the whole-image reconstruction, whose tiles these patches are):
        the model is then not run on them again.

    Returns
    -------
    QualityReport

    Raises
    ------
    ValueError
        If the patch arrays do not have matching (C, P, P) shapes, or no held-out patch is
        free of NaN/Inf values.
    """
    x = _patch_tensor(val_patches, "val_patches")
    if len(x) < 1:
        raise ValueError(f"val_patches must have shape (N, C, P, P) with N >= 1, got {tuple(x.shape)}")
    shape = tuple(x.shape[1:])
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    xs, source = None, "patch"
    if smooth_target is not None:
        xs, source = _patch_tensor(smooth_target, "smooth_target"), "image"
        if xs.shape != x.shape:
            raise ValueError(f"smooth_target must have the shape of val_patches {tuple(x.shape)}, "
                             f"got {tuple(xs.shape)}")
    d = int(model.config.latent_dim)
    if predictions is not None and (len(predictions) != 2 or len(predictions[0]) != len(x)
                                    or len(predictions[1]) != len(x)):
        raise ValueError(f"predictions must be (recon, mu) for the {len(x)} val_patches")
    if train_patches is not None:
        baseline = _fit_on(train_patches, shape, d)
        baseline_source = baseline_source or TRAINING_PATCHES_SOURCE
    elif baseline is not None:
        if not isinstance(baseline, PCABaseline):
            raise ValueError(f"baseline must be a PCABaseline, got {type(baseline).__name__}")
        if tuple(baseline.patch_shape) != shape:
            raise ValueError(f"the baseline was fitted on patches of shape {tuple(baseline.patch_shape)}; "
                             f"val_patches have {shape}")
    keep = finite_patches(x) if xs is None else finite_patches(x) & finite_patches(xs)
    kept = torch.nonzero(keep).squeeze(1) if not bool(keep.all()) else None
    n = len(x) if kept is None else len(kept)
    if n == 0:
        raise ValueError(f"no patch without NaN/Inf pixels among the {len(x)} held-out patches: "
                         f"nothing to measure")

    def rows(a: torch.Tensor, b0: int, b1: int) -> torch.Tensor:
        return a[b0:b1] if kept is None else a[kept[b0:b1]]
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    data, smooth = StreamSums(), StreamSums()
    fit, pca = PredictionSums(), PredictionSums()
    mean = PredictionSums(baseline.mean_patch()) if baseline is not None else None
    mus, zs, bad = [], [], 0
    was_training = model.training
    model.eval()
    try:
        for b0 in range(0, n, batch_size):
            xb = rows(x, b0, b0 + batch_size)
            sb = rows(xs, b0, b0 + batch_size) if xs is not None else \
                torch.from_numpy(gaussian_smooth(xb, dtype=torch.float32))
            if predictions is None:
                rec, mu = model.reconstruct(xb.to(device))
                rec, mu = rec.to("cpu", torch.float32), mu.to("cpu", torch.float32)
            else:
                rec, mu = (rows(torch.as_tensor(a), b0, b0 + batch_size).to(torch.float32) for a in predictions)
            data.update(xb)
            smooth.update(sb)
            bad += int((~torch.isfinite(fit.update(rec, data, xb, smooth, sb))).sum())
            mus.append(mu)
            if baseline is not None:
                pca_rec, z = baseline.project_finite(xb)
                pca.update(pca_rec, data, xb, smooth, sb)
                mean.update(None, data, xb, smooth, sb)
                zs.append(z)
        sub = perm_patches is not None and n > perm_patches
        pick = torch.from_numpy(np.linspace(0, n - 1, perm_patches).round().astype(np.int64)) if sub else None
        perm_x = (x if kept is None else x[kept]) if pick is None else x[pick if kept is None else kept[pick]]
        acc, used, left = metrics.permutation_accuracy(model, perm_x, batch_size=max(1, batch_size // 8))
    finally:
        model.train(was_training)
    au = metrics.active_units(torch.cat(mus))
    model_m, model_s = fit.measures(Measures, data, smooth, active_units=au, active_fraction=au / d,
                                    perm_accuracy=acc, perm_used=used, perm_left_out=left)
    pca_m = pca_s = mean_m = mean_s = None
    if baseline is not None:
        pca_au = metrics.active_units(torch.cat(zs)) if baseline.k else 0
        pca_m, pca_s = pca.measures(Measures, data, smooth, active_units=pca_au,
                                    active_fraction=pca_au / max(baseline.k, 1))
        mean_m, mean_s = mean.measures(Measures, data, smooth)
    smoothness = sharpness_between(data, smooth)
    return QualityReport(
        model=model_m, pca=pca_m, mean=mean_m, model_smooth=model_s, pca_smooth=pca_s, mean_smooth=mean_s,
        latent_dim=d, pca_k=None if baseline is None else baseline.k, n_val=n,
        n_train=None if baseline is None else baseline.n_patches, target_smoothness=smoothness,
        smooth_data=bool(smoothness >= SMOOTH_DATA) if smooth_data is None else bool(smooth_data),
        smooth_source=source, baseline_source=baseline_source if baseline is not None else None,
        n_skipped_nonfinite=len(x) - n, n_nonfinite_reconstructions=bad,
    )
