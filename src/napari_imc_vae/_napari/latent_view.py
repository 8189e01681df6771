"""The latent map as one 2-D RGB layer: its first three principal components (numpy only).

A (D, ny, nx) latent map added as an image makes napari add a dims slider (labelled "-3",
running over the latent dimensions) that every layer shares, although the raw channels have
no such axis. An IMC scientist rarely wants the D dimensions one by one: they are not
ordered by importance and several may be unused. What the map says is *where the tissue
looks alike to the model*, and the first three principal components of the latent vectors,
shown as red, green and blue, say that at a glance: regions of similar colour have similar
codes (the motifs layer is the same idea, in k discrete clusters). The full map stays in the
layer's metadata for anyone who wants it.
"""

from __future__ import annotations

import numpy as np

#: Each component is stretched between these percentiles of its values onto 0 … 1.
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0
N_COMPONENTS = 3


def latent_pca_rgb(latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB image of the first three principal components of a latent map.

    Parameters
    ----------
    latent : ndarray of shape (D, ny, nx)
        Latent vectors on the tile grid; cells with a non-finite value are shown black.

    Returns
    -------
    rgb : ndarray of shape (ny, nx, 3), float32
        Component k in channel k, stretched from its 1st to its 99th percentile onto 0 … 1.
        With D < 3 the missing channels are 0. Each component's sign is chosen so that its
        scores are skewed to the positive side: the long tail (rarer tissue) is bright, the
        bulk dark, whatever the sign of the latent axes.
    explained : ndarray of shape (3,)
        Fraction of the latent variance each channel's component explains (0 when absent).

    Raises
    ------
    ValueError
        For an array that is not (D, ny, nx).
    """
    z = np.asarray(latent)
    if z.ndim != 3:
        raise ValueError(f"latent must have shape (D, ny, nx), got {z.shape}")
    d, ny, nx = z.shape
    points = z.reshape(d, -1).T.astype(np.float64)  # (N, D); D is small, N up to ~1e6
    finite = np.isfinite(points).all(axis=1)
    rgb = np.zeros((ny * nx, N_COMPONENTS), dtype=np.float32)
    explained = np.zeros(N_COMPONENTS)
    if finite.sum() < 2:
        return rgb.reshape(ny, nx, N_COMPONENTS), explained
    good = points[finite]
    centred = good - good.mean(axis=0)
    cov = centred.T @ centred / (len(good) - 1)
    values, vectors = np.linalg.eigh(cov)  # ascending
    order = np.argsort(values)[::-1][:N_COMPONENTS]
    total = values.clip(min=0).sum()
    for k, idx in enumerate(order):
        scores = centred @ vectors[:, idx]
        if (scores**3).sum() < 0:
            scores = -scores
        lo, hi = np.percentile(scores, [LOW_PERCENTILE, HIGH_PERCENTILE])
        stretched = (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)
        rgb[finite, k] = np.clip(stretched, 0.0, 1.0)
        explained[k] = max(values[idx], 0.0) / total if total > 0 else 0.0
    return rgb.reshape(ny, nx, N_COMPONENTS), explained


def latent_rgb_layer(latent_tuple: tuple, precomputed: tuple[np.ndarray, np.ndarray] | None = None) -> tuple:
    """Turn the (D, ny, nx) latent layer tuple of ``reconstruction_layers`` into a 2-D RGB one.

    Parameters
    ----------
    latent_tuple : (data, kwargs, "image")
        Data (D, ny, nx); ``scale`` and ``translate`` of length 3, the first for the latent axis.
    precomputed : (rgb, explained), optional
        :func:`latent_pca_rgb` of the data, computed beforehand (in a worker thread).

    Returns
    -------
    (rgb, kwargs, "image")
        Same name, visibility and metadata, 2-D ``scale`` / ``translate`` (the tile grid on the
        raw layers), ``rgb=True``; ``metadata["imc"]`` gains ``"latent"`` (the full map) and
        ``"latent_rgb"`` (what the colours are, with the explained variance).
    """
    data, kwargs, _ = latent_tuple
    rgb, explained = latent_pca_rgb(data) if precomputed is None else precomputed
    out = {k: v for k, v in kwargs.items() if k not in ("colormap", "contrast_limits")}
    out["scale"] = tuple(kwargs["scale"])[-2:]
    out["translate"] = tuple(kwargs["translate"])[-2:]
    out["rgb"] = True
    out["contrast_limits"] = (0.0, 1.0)
    meta = dict(kwargs.get("metadata", {}))
    info = dict(meta.get("imc", {}))
    info["latent"] = np.asarray(data)
    info["latent_rgb"] = {
        "channels": "red, green, blue = principal components 1, 2, 3 of the latent vectors",
        "explained_variance": [round(float(e), 4) for e in explained],
        "stretch_percentiles": [LOW_PERCENTILE, HIGH_PERCENTILE],
    }
    meta["imc"] = info
    out["metadata"] = meta
    return rgb, out, "image"
