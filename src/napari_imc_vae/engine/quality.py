"""The quality report: is the reconstruction any good? (DESIGN §4)

:func:`evaluate` measures a model on held-out patches next to two baselines on the
same patches — the mean patch (R² ≈ 0) and PCA with as many components as latent
dimensions, fitted on the training patches — once against the patches themselves
and once against a lightly smoothed target (Gaussian σ = 1 px), which separates
structure from shot noise. :meth:`QualityReport.verdicts` turns the figures into
plain language: posterior collapse, blur, averaged outputs, and how the model
compares with PCA-k.

The absolute thresholds of DESIGN §4 hold for smooth inputs only. Whether the data
are smooth is read off the data: smoothing with σ = 1 px keeps most of the gradient
energy of smooth images and little of shot noise (``target_smoothness`` ≥ 0.5).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from napari_imc_vae.engine import metrics
from napari_imc_vae.engine.baselines import PCABaseline
from napari_imc_vae.engine.tiling import reflect_index

__all__ = ["GridPatches", "Measures", "QualityReport", "evaluate", "gaussian_smooth", "smoothing_radius",
           "THRESHOLDS"]

#: Healthy values on smooth inputs (DESIGN §4).
THRESHOLDS = {"r2": 0.8, "sharpness_ratio": 0.7, "diversity_ratio": 0.7, "active_fraction": 0.25,
              "cosine_loss": 0.1, "perm_accuracy": 0.95}
_SMOOTH_DATA = 0.5  # target_smoothness above which the data count as smooth


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


@dataclass
class Measures:
    """DESIGN §4 measures of one predictor on one target; None where not applicable."""

    r2: float
    mse: float
    sharpness_ratio: float
    diversity_ratio: float
    cosine_loss: float
    active_units: int | None = None
    active_fraction: float | None = None
    perm_accuracy: float | None = None
    perm_used: int | None = None
    perm_left_out: int | None = None

    @classmethod
    def measure(cls, x, x_hat, **extra) -> "Measures":
        return cls(**metrics.reconstruction_measures(x, x_hat), **extra)


def _json(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(u) for u in v]
    return v


def _f(v, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else (
        str(v) if isinstance(v, int) else f"{v:.{digits}f}")


@dataclass
class QualityReport:
    """Model, PCA-k and mean predictor on the same held-out patches.

    Attributes
    ----------
    model, pca, mean : Measures
        Against the held-out patches.
    model_smooth, pca_smooth, mean_smooth : Measures
        Same reconstructions against the smoothed target (Gaussian σ = 1 px).
    latent_dim, pca_k, n_val, n_train : int
    target_smoothness : float
        ``Σ‖∇smooth(x)‖² / Σ‖∇x‖²`` (median over channels): near 1 for smooth data,
        near 0 for shot noise.
    smooth_data : bool
        Whether the absolute DESIGN §4 thresholds apply.
    smooth_source : str
        ``"image"`` when the caller passed patches cut from a smoothed image,
        ``"patch"`` when each patch was smoothed on its own.
    """

    model: Measures
    pca: Measures
    mean: Measures
    model_smooth: Measures
    pca_smooth: Measures
    mean_smooth: Measures
    latent_dim: int
    pca_k: int
    n_val: int
    n_train: int
    target_smoothness: float
    smooth_data: bool
    smooth_source: str = "patch"
    problems: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.problems = self._problems()

    def _problems(self) -> list[str]:
        m, p, smooth, th = self.model, self.pca, self.smooth_data, THRESHOLDS
        out = []
        if self.model.active_fraction is not None and self.model.active_fraction < th["active_fraction"]:
            out.append("posterior_collapse")
        if m.sharpness_ratio < p.sharpness_ratio or (smooth and m.sharpness_ratio < th["sharpness_ratio"]):
            out.append("blur")
        if m.diversity_ratio < (th["diversity_ratio"] if smooth else p.diversity_ratio):
            out.append("averaged_outputs")
        if m.r2 < p.r2:
            out.append("below_pca")
        if smooth and m.r2 < th["r2"]:
            out.append("underfit")
        if smooth and m.cosine_loss > th["cosine_loss"]:
            out.append("channel_mix")
        if m.perm_accuracy is not None and m.perm_accuracy < th["perm_accuracy"]:
            out.append("orientation")
        return out

    def verdicts(self) -> list[str]:
        """Plain-language findings, most serious first."""
        m, p, k, d = self.model, self.pca, self.pca_k, self.latent_dim
        probs, out = set(self.problems), []
        if "posterior_collapse" in probs:
            out.append(f"Posterior collapse: only {m.active_units} of {d} latent dimensions carry "
                       f"information (< 25%); the decoder ignores most of the latent.")
        dr2 = m.r2 - p.r2
        if dr2 >= 0:
            out.append(f"Beats PCA-{k} by ΔR² = {dr2:+.3f} (R² {m.r2:.3f} vs {p.r2:.3f}).")
        else:
            out.append(f"Falls short of PCA-{k} by ΔR² = {dr2:+.3f} (R² {m.r2:.3f} vs {p.r2:.3f}); "
                       f"a linear projection explains more.")
        if m.r2 <= self.mean.r2 + 0.01:
            out.append("No better than predicting the mean patch: the model has learned nothing useful.")
        if "blur" in probs:
            ref = f"PCA-{k}'s {p.sharpness_ratio:.3f}" if m.sharpness_ratio < p.sharpness_ratio else "0.7"
            out.append(f"Blurry: sharpness ratio {m.sharpness_ratio:.3f} is below {ref}; "
                       f"reconstructions lose edges and fine structure.")
        else:
            out.append(f"Sharpness ratio {m.sharpness_ratio:.3f} "
                       f"({_ratio_text(m.sharpness_ratio, p.sharpness_ratio)} PCA-{k}).")
        if "averaged_outputs" in probs:
            out.append(f"Averaged outputs: diversity ratio {m.diversity_ratio:.3f} — reconstructions vary "
                       f"less across patches than the data do; samples look alike.")
        if "underfit" in probs:
            out.append(f"Underfits smooth data: R² {m.r2:.3f} is below 0.8.")
        if "channel_mix" in probs:
            out.append(f"Channel mix off: cosine loss {m.cosine_loss:.3f} is above 0.1.")
        if "orientation" in probs:
            out.append(f"Orientation predictions inconsistent across rotations/flips: accuracy "
                       f"{m.perm_accuracy:.3f} < 0.95.")
        if m.perm_used is not None and m.perm_left_out and m.perm_left_out > m.perm_used:
            out.append(f"{m.perm_left_out} of {m.perm_used + m.perm_left_out} patches are symmetric "
                       f"(e.g. empty) and have no orientation; permutation accuracy rests on few patches.")
        if not self.smooth_data:
            out.append(f"The data are shot-noisy (σ=1 px smoothing keeps {self.target_smoothness:.0%} of "
                       f"the gradient energy): the absolute thresholds do not apply; against the smoothed "
                       f"target R² is {self.model_smooth.r2:.3f} (PCA-{k} {self.pca_smooth.r2:.3f}).")
        if not probs:
            out.append("No problem found.")
        return out

    def to_dict(self) -> dict:
        """Plain, JSON-safe dict (NaN becomes None), verdicts included."""
        d = _json(asdict(self))
        d["verdicts"] = self.verdicts()
        return d

    def format_text(self) -> str:
        """A table of all measures and the verdicts, for a terminal or a text box."""
        rows = [("R²", "r2", "≥ 0.8"), ("MSE", "mse", ""), ("sharpness ratio", "sharpness_ratio", "≥ 0.7"),
                ("diversity ratio", "diversity_ratio", "≥ 0.7"), ("cosine loss", "cosine_loss", "≤ 0.1")]
        k = self.pca_k
        head = f"{'measure':<22}{'model':>9}{f'PCA-{k}':>9}{'mean':>9}   healthy (smooth data)"
        lines = [f"Quality on {self.n_val} held-out patches (PCA fitted on {self.n_train}), "
                 f"latent dim {self.latent_dim}", head]
        for label, key, healthy in rows:
            vals = [_f(getattr(m, key)) for m in (self.model, self.pca, self.mean)]
            lines.append(f"{label:<22}{vals[0]:>9}{vals[1]:>9}{vals[2]:>9}   {healthy}")
        m = self.model
        lines.append(f"{'active units':<22}{f'{m.active_units}/{self.latent_dim}':>9}"
                     f"{_f(self.pca.active_units):>9}{'—':>9}   ≥ 25% of dims")
        lines.append(f"{'permutation accuracy':<22}{_f(m.perm_accuracy):>9}{'—':>9}{'—':>9}   ≥ 0.95"
                     f"  ({m.perm_left_out} symmetric patches left out)")
        lines.append(f"Against the smoothed target (σ = 1 px, per {self.smooth_source}):")
        for label, key, _ in rows:
            vals = [_f(getattr(m, key)) for m in (self.model_smooth, self.pca_smooth, self.mean_smooth)]
            lines.append(f"  {label:<20}{vals[0]:>9}{vals[1]:>9}{vals[2]:>9}")
        lines.append("Verdicts:")
        lines.extend(f"- {v}" for v in self.verdicts())
        return "\n".join(lines)


def _ratio_text(a: float, b: float) -> str:
    return f"{a / b:.2f}× that of" if b > 0 else "vs 0 for"


@torch.no_grad()
def _run_model(model, x: torch.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    recs, mus = [], []
    for b0 in range(0, len(x), batch_size):
        r, mu = model.reconstruct(torch.nan_to_num(x[b0 : b0 + batch_size]).to(device))
        recs.append(r.float().cpu())
        mus.append(mu.float().cpu())
    return torch.cat(recs).numpy(), torch.cat(mus).numpy()


def evaluate(model, val_patches, train_patches, *, batch_size: int = 512, smooth_target=None,
             smooth_data: bool | None = None, perm_patches: int | None = 4096) -> QualityReport:
    """Measure a model and its baselines on held-out patches.

    Parameters
    ----------
    model : nn.Module
        Has ``config.latent_dim``, ``reconstruct(x) -> (recon, mu)`` and
        ``predict_orientation(x)``; evaluated in eval mode, its mode restored after.
    val_patches : array of shape (N, C, P, P)
        Held-out patches in normalized units; NaN allowed (fed to models as 0, left
        out of every measure).
    train_patches : array of shape (M, C, P, P)
        Patches PCA-k and the mean predictor are fitted on.
    batch_size : int
        Patches per model call.
    smooth_target : array of shape (N, C, P, P), optional
        The same patches cut from the image smoothed with :func:`gaussian_smooth`
        (better at patch borders); default: each patch smoothed on its own.
    smooth_data : bool, optional
        Whether the absolute thresholds apply; default: read off the data.
    perm_patches : int, optional
        Held-out patches (evenly spaced) used for the permutation accuracy, which
        costs 8 model calls per patch; None uses all.

    Returns
    -------
    QualityReport

    Raises
    ------
    ValueError
        If the patch arrays do not have matching (C, P, P) shapes.
    """
    # torch.as_tensor first: patches may be tensors on a GPU, which np.asarray cannot read
    x = torch.as_tensor(val_patches).detach().to("cpu", torch.float32)
    tr = torch.as_tensor(train_patches).detach().to("cpu", torch.float32).numpy()
    if x.ndim != 4 or len(x) < 1:
        raise ValueError(f"val_patches must have shape (N, C, P, P) with N >= 1, got {tuple(x.shape)}")
    if tr.ndim != 4 or tr.shape[1:] != tuple(x.shape[1:]):
        raise ValueError(f"train_patches must have shape (M, {', '.join(map(str, x.shape[1:]))}), got {tr.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if smooth_target is None:
        xs, source = gaussian_smooth(x), "patch"
    else:
        xs, source = np.asarray(smooth_target, dtype=np.float32), "image"
        if xs.shape != tuple(x.shape):
            raise ValueError(f"smooth_target must have the shape of val_patches {tuple(x.shape)}, got {xs.shape}")
    d = int(model.config.latent_dim)
    k = min(d, len(tr), int(np.prod(tr.shape[1:])))
    was_training = model.training
    model.eval()
    try:
        rec, mu = _run_model(model, x, batch_size)
        sub = x if perm_patches is None or len(x) <= perm_patches else \
            x[np.linspace(0, len(x) - 1, perm_patches).round().astype(int)]
        acc, used, left = metrics.permutation_accuracy(model, sub, batch_size=max(1, batch_size // 8))
    finally:
        model.train(was_training)
    pca = PCABaseline.fit(tr, k)
    mean = PCABaseline(pca.mean, pca.components[:0], pca.patch_shape)  # PCA with k = 0
    pca_rec, mean_rec = pca.reconstruct(x), mean.reconstruct(x)
    au = metrics.active_units(mu)
    pca_au = metrics.active_units(pca.encode(x))
    smoothness = metrics.sharpness_ratio(x, xs)
    return QualityReport(
        model=Measures.measure(x, rec, active_units=au, active_fraction=au / d, perm_accuracy=acc,
                               perm_used=used, perm_left_out=left),
        pca=Measures.measure(x, pca_rec, active_units=pca_au, active_fraction=pca_au / max(k, 1)),
        mean=Measures.measure(x, mean_rec),
        model_smooth=Measures.measure(xs, rec),
        pca_smooth=Measures.measure(xs, pca_rec),
        mean_smooth=Measures.measure(xs, mean_rec),
        latent_dim=d, pca_k=k, n_val=len(x), n_train=len(tr),
        target_smoothness=smoothness,
        smooth_data=bool(smoothness >= _SMOOTH_DATA) if smooth_data is None else bool(smooth_data),
        smooth_source=source,
    )
