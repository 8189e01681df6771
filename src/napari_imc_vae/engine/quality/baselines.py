"""Baselines a patch VAE must beat (DESIGN §4): the mean patch and PCA with k components.

Patches are flattened to F = C·P·P features and centred on the training mean.
``PCABaseline.fit(patches, 0)`` is the mean predictor. Training patches touching a NaN/Inf
value are left out of the fit (and counted); in patches to reconstruct, a missing value is
replaced by the training mean: it carries no signal either way.

The baseline is fitted once, where the model was (at the end of training), and stored in the
model file with :meth:`PCABaseline.to_state`: float32 tensors and ints, loadable with
``torch.load(weights_only=True)``; 4 MB for 512 channels of 8×8 patches at k = 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_imc_vae.engine.quality.measures import finite_patches

__all__ = ["PCABaseline", "MeanBaseline"]

# Exact eigendecomposition of the smaller Gram matrix (min(N, F)² · max(N, F) multiply-adds in
# float64) up to this cost; above, a randomized SVD (Halko et al. 2011, seeded: the same patches
# give the same components) in float32, within noise of exact for the leading components.
_EXACT_FLOPS = 1 << 31
_OVERSAMPLE, _POWER_ITERATIONS = 16, 7
_STATE_FORMAT = 1


def _flatten(patches, name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    x = torch.as_tensor(np.asarray(patches) if not isinstance(patches, torch.Tensor) else patches)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, P, P), got shape {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float32).flatten(1), tuple(int(n) for n in x.shape[1:])


@dataclass
class PCABaseline:
    """Linear projection onto the leading ``k`` principal components of training patches.

    Attributes
    ----------
    mean : Tensor of shape (F,), float32
        Training mean of the flattened patches.
    components : Tensor of shape (k, F), float32
        Orthonormal principal directions, largest variance first.
    patch_shape : tuple of int
        ``(C, P, P)``.
    n_patches : int
        Training patches it was fitted on (those without NaN/Inf values).
    n_skipped_nonfinite : int
        Training patches left out because they touch a NaN/Inf value.
    """

    mean: torch.Tensor
    components: torch.Tensor
    patch_shape: tuple[int, ...]
    n_patches: int = 0
    n_skipped_nonfinite: int = 0

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
            Components to keep, ``0 <= k <= min(N', C·P·P)`` with N' the patches without
            NaN/Inf values; 0 gives the mean predictor.

        Raises
        ------
        ValueError
            If ``patches`` is not 4-D, holds no patch without NaN/Inf values, or ``k`` is out of range.
        """
        x, shape = _flatten(patches, "patches")
        finite = finite_patches(x)
        n_all = len(x)
        if not bool(finite.all()):
            x = x[finite]
        n, f = x.shape
        if n < 1:
            raise ValueError(f"patches must hold at least one patch without NaN/Inf values, got 0 of {n_all}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= min(n, f):
            raise ValueError(f"k must be an int in 0..min(N, C*P*P) = {min(n, f)}, got {k!r}")
        # float32 sums of row chunks added in float64: sum(dtype=float64) would copy x in float64
        mean = (sum(chunk.sum(dim=0).double() for chunk in x.split(1024)) / n).to(torch.float32)  # (F,)
        if k == 0:
            comps = torch.zeros(0, f, dtype=torch.float32)
        elif min(n, f) ** 2 * max(n, f) <= _EXACT_FLOPS:
            comps = _exact_components((x - mean).double(), int(k)).float()
        else:
            comps = _randomized_components(x, mean, int(k))
        return cls(mean, comps.contiguous(), shape, n, n_all - n)

    def _check(self, x: torch.Tensor, shape: tuple[int, ...]) -> None:
        if shape != self.patch_shape:
            raise ValueError(f"patches must have shape (N, {', '.join(map(str, self.patch_shape))}), "
                             f"got (N, {', '.join(map(str, shape))})")

    def encode(self, patches) -> torch.Tensor:
        """Coefficients of the patches on the components: (N, k) float32 (NaN/Inf read as the mean)."""
        x, shape = _flatten(patches, "patches")
        self._check(x, shape)
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
        rec = torch.addmm(self.mean, z, self.components)
        return rec.reshape(len(z), *self.patch_shape).numpy()

    def project_finite(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction (B, C, P, P) and coefficients (B, k) of finite float32 patches on the CPU.

        The fast path of the quality report: two thin matmuls, no masking and no copies.
        """
        flat = x.reshape(len(x), -1)
        z = torch.addmm(-(self.mean @ self.components.T), flat, self.components.T)
        return torch.addmm(self.mean, z, self.components).view_as(x), z

    def mean_patch(self) -> torch.Tensor:
        """The mean predictor's patch: (C, P, P) float32."""
        return self.mean.view(self.patch_shape)

    # -- storage in a model file ------------------------------------------------------------------
    def to_state(self) -> dict:
        """Plain float32 tensors and ints, for ``torch.save`` (``weights_only=True`` loads it)."""
        c, h, w = self.patch_shape
        return {"format": _STATE_FORMAT, "mean": self.mean.detach().to("cpu", torch.float32).contiguous(),
                "components": self.components.detach().to("cpu", torch.float32).contiguous(),
                "channels": int(c), "patch_height": int(h), "patch_width": int(w), "k": int(self.k),
                "n_patches": int(self.n_patches), "n_skipped_nonfinite": int(self.n_skipped_nonfinite)}

    @classmethod
    def from_state(cls, state) -> "PCABaseline":
        """Rebuild from :meth:`to_state`'s dict (keys it does not know, such as provenance, are ignored).

        Raises
        ------
        ValueError
            Naming what is missing or inconsistent.
        """
        if not isinstance(state, dict):
            raise ValueError(f"baseline state must be a dict, got {type(state).__name__}")
        ints = ("format", "channels", "patch_height", "patch_width", "k", "n_patches", "n_skipped_nonfinite")
        missing = [key for key in ("mean", "components", *ints) if key not in state]
        if missing:
            raise ValueError(f"baseline state lacks {', '.join(missing)}")
        for key in ints:
            if isinstance(state[key], bool) or not isinstance(state[key], int) or state[key] < 0:
                raise ValueError(f"baseline state's {key} must be an int >= 0, got {state[key]!r}")
        if state["format"] != _STATE_FORMAT:
            raise ValueError(f"baseline state has format {state['format']}; this version reads {_STATE_FORMAT}")
        shape = (state["channels"], state["patch_height"], state["patch_width"])
        f, k = int(np.prod(shape)), state["k"]
        mean, comps = state["mean"], state["components"]
        for key, t, want in (("mean", mean, (f,)), ("components", comps, (k, f))):
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise ValueError(f"baseline state's {key} must be a float tensor, got {type(t).__name__}")
            if tuple(t.shape) != want:
                raise ValueError(f"baseline state's {key} must have shape {want} for patches {shape} and "
                                 f"k = {k}, got {tuple(t.shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"baseline state's {key} holds NaN/Inf values")
        if 0 in shape or k > f:
            raise ValueError(f"baseline state's patch shape {shape} and k = {k} are inconsistent")
        return cls(mean.to("cpu", torch.float32).contiguous(), comps.to("cpu", torch.float32).contiguous(),
                   shape, state["n_patches"], state["n_skipped_nonfinite"])


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


def _randomized_components(x: torch.Tensor, mean: torch.Tensor, k: int) -> torch.Tensor:
    """Leading ``k`` right singular vectors of ``x − mean`` (N, F) by a seeded randomized range finder.

    The centring is applied to the thin products, never to ``x``: no second copy of the patches
    (1 GB for 8,192 patches of 512 channels).
    """
    n, f = x.shape
    q = min(k + _OVERSAMPLE, n, f)

    def times(m: torch.Tensor) -> torch.Tensor:  # (x − mean) @ m, m (F, q)
        return x @ m - mean @ m

    def transposed_times(m: torch.Tensor) -> torch.Tensor:  # (x − mean)ᵀ @ m, m (N, q)
        return x.T @ m - torch.outer(mean, m.sum(dim=0))

    probe = torch.randn(f, q, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    basis = torch.linalg.qr(times(probe)).Q  # (N, q)
    for _ in range(_POWER_ITERATIONS):  # re-orthonormalized each half step: float32 stays accurate
        basis = torch.linalg.qr(times(torch.linalg.qr(transposed_times(basis)).Q)).Q
    small = transposed_times(basis).T.double()  # (q, F): x − mean ≈ basis · small
    _, _, vh = torch.linalg.svd(small, full_matrices=False)
    return vh[:k].float()


class MeanBaseline(PCABaseline):
    """The constant predictor: every patch is reconstructed as the training mean patch."""

    @classmethod
    def fit(cls, patches, k: int = 0) -> "MeanBaseline":
        if k != 0:
            raise ValueError(f"k must be 0 for the mean predictor, got {k!r}")
        base = PCABaseline.fit(patches, 0)
        return cls(base.mean, base.components, base.patch_shape, base.n_patches, base.n_skipped_nonfinite)
