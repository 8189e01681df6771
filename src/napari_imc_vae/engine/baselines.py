"""Baselines a patch VAE must beat (DESIGN §4): the mean patch and PCA with k components.

Patches are flattened to F = C·P·P features and centred on the training mean.
``PCABaseline.fit(patches, 0)`` is the mean predictor. NaN in training patches
is replaced by that feature's mean, in patches to reconstruct by the training
mean: a missing value carries no signal either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PCABaseline", "MeanBaseline"]

# below this the exact eigendecomposition of the (F×F or N×N) Gram matrix is cheap; above,
# a randomized SVD with oversampling is within noise of exact for the leading components
_EXACT_LIMIT = 4096


def _flatten(patches, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    x = torch.as_tensor(np.asarray(patches) if not isinstance(patches, torch.Tensor) else patches)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, P, P), got shape {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64).reshape(len(x), -1), tuple(x.shape[1:])


@dataclass
class PCABaseline:
    """Linear projection onto the leading ``k`` principal components of training patches.

    Attributes
    ----------
    mean : Tensor of shape (F,)
        Training mean of the flattened patches.
    components : Tensor of shape (k, F)
        Orthonormal principal directions, largest variance first.
    patch_shape : tuple of int
        ``(C, P, P)``.
    """

    mean: torch.Tensor
    components: torch.Tensor
    patch_shape: tuple[int, ...]

    @property
    def k(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, patches, k: int) -> "PCABaseline":
        """Fit on training patches.

        Parameters
        ----------
        patches : array of shape (N, C, P, P)
        k : int
            Components to keep, ``0 <= k <= min(N, C·P·P)``; 0 gives the mean predictor.

        Raises
        ------
        ValueError
            If ``patches`` is not 4-D or empty, or ``k`` is out of range.
        """
        x, shape = _flatten(patches, "patches")
        n, f = x.shape
        if n < 1:
            raise ValueError("patches must hold at least one patch, got 0")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= min(n, f):
            raise ValueError(f"k must be an int in 0..min(N, C*P*P) = {min(n, f)}, got {k!r}")
        finite = torch.isfinite(x)
        mean = torch.where(finite, x, 0.0).sum(0) / finite.sum(0).clamp(min=1)  # (F,)
        xc = torch.where(finite, x - mean, 0.0)  # (N, F)
        if k == 0:
            comps = torch.zeros(0, f, dtype=torch.float64)
        elif min(n, f) <= _EXACT_LIMIT:
            comps = _exact_components(xc, k)
        else:
            _, _, v = torch.svd_lowrank(xc, q=min(k + 16, min(n, f)), niter=6)
            comps = v[:, :k].T
        return cls(mean, comps.contiguous(), shape)

    def encode(self, patches) -> torch.Tensor:
        """Coefficients of the patches on the components: (N, k)."""
        x, shape = _flatten(patches, "patches")
        if shape != self.patch_shape:
            raise ValueError(f"patches must have shape (N, {', '.join(map(str, self.patch_shape))}), "
                             f"got (N, {', '.join(map(str, shape))})")
        xc = torch.where(torch.isfinite(x), x - self.mean, 0.0)
        return xc @ self.components.T

    def reconstruct(self, patches) -> np.ndarray:
        """Project and rebuild patches.

        Parameters
        ----------
        patches : array of shape (N, C, P, P)

        Returns
        -------
        ndarray of shape (N, C, P, P), float32
        """
        z = self.encode(patches)
        rec = z @ self.components + self.mean
        return rec.reshape(len(z), *self.patch_shape).to(torch.float32).numpy()


def _exact_components(xc: torch.Tensor, k: int) -> torch.Tensor:
    n, f = xc.shape
    if f <= n:
        evals, evecs = torch.linalg.eigh(xc.T @ xc)  # ascending
        return evecs[:, -k:].flip(1).T
    # fewer patches than features: eigenvectors of the N×N Gram matrix map onto the F side
    evals, evecs = torch.linalg.eigh(xc @ xc.T)
    u = evecs[:, -k:].flip(1)  # (N, k)
    # QR keeps the directions orthonormal even where an eigenvalue is ~0 (rank < k)
    return torch.linalg.qr(xc.T @ u).Q.T  # (k, F)


class MeanBaseline(PCABaseline):
    """The constant predictor: every patch is reconstructed as the training mean patch."""

    @classmethod
    def fit(cls, patches, k: int = 0) -> "MeanBaseline":
        if k != 0:
            raise ValueError(f"k must be 0 for the mean predictor, got {k!r}")
        base = PCABaseline.fit(patches, 0)
        return cls(base.mean, base.components, base.patch_shape)
