"""The dihedral group D4: the 8 rotations/flips of a square patch.

Element ``k`` rotates by ``90° * (k % 4)`` (``torch.rot90`` over the last two axes), then,
for ``k >= 4``, flips the last axis. Transforms are applied as index permutations of the
flattened P×P grid, so a whole batch with a different element per patch is one ``gather``.
"""

from __future__ import annotations

import functools

import torch

N_ELEMENTS = 8


def _apply_reference(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` applied to ``x`` (..., P, P) the slow, obvious way (defines the convention)."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def _tables() -> tuple[list[list[int]], list[int]]:
    # Composition and inverse from the action on a generic 3×3 grid (no symmetric ambiguity).
    probe = torch.arange(9.0).reshape(3, 3)
    views = [_apply_reference(probe, k) for k in range(N_ELEMENTS)]

    def index_of(t: torch.Tensor) -> int:
        return next(i for i, v in enumerate(views) if torch.equal(v, t))

    compose = [[index_of(_apply_reference(views[b], a)) for b in range(N_ELEMENTS)] for a in range(N_ELEMENTS)]
    inverse = [next(b for b in range(N_ELEMENTS) if compose[a][b] == 0) for a in range(N_ELEMENTS)]
    return compose, inverse


_COMPOSE, _INVERSE = _tables()
#: ``D4_COMPOSE[a, b]`` is the index of ``g_a ∘ g_b`` (apply b first, then a).
D4_COMPOSE = torch.tensor(_COMPOSE, dtype=torch.long)
#: ``D4_INVERSE[a]`` is the index of ``g_a⁻¹``.
D4_INVERSE = torch.tensor(_INVERSE, dtype=torch.long)


# The cached tables are made outside inference mode: one first made while reconstructing
# (torch.inference_mode) would be an inference tensor, which training in the same process (the
# widget's Reconstruct, then Resume) could not use in autograd.
@functools.lru_cache(maxsize=32)
@torch.inference_mode(False)
def _permutations_cpu(patch_size: int) -> torch.Tensor:
    grid = torch.arange(patch_size * patch_size).reshape(patch_size, patch_size)
    return torch.stack([_apply_reference(grid, k).reshape(-1) for k in range(N_ELEMENTS)])


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)
def _on_device(name: str, patch_size: int, device: torch.device) -> torch.Tensor:
    # One host-to-device copy per table and device, not one per training step.
    table = {"perm": lambda: _permutations_cpu(patch_size), "inverse": lambda: D4_INVERSE,
             "compose": lambda: D4_COMPOSE}[name]()
    return table.to(device)


def d4_table(name: str, device: torch.device | str | None) -> torch.Tensor:
    """``D4_INVERSE`` (``"inverse"``) or ``D4_COMPOSE`` (``"compose"``) on ``device``, cached."""
    return _on_device(name, 0, torch.device(device or "cpu"))


def d4_permutations(patch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Index permutations (8, P*P): ``g_k(x).flatten()[i] == x.flatten()[perm[k, i]]``."""
    return _on_device("perm", int(patch_size), torch.device(device or "cpu"))


def d4_apply(x: torch.Tensor, k: torch.Tensor | int) -> torch.Tensor:
    """Apply element ``k`` (one per patch, or one for all) to patches.

    Parameters
    ----------
    x : Tensor of shape (B, C, P, P)
    k : LongTensor of shape (B,) or int

    Returns
    -------
    Tensor of shape (B, C, P, P)
    """
    b, c, p, q = x.shape
    if p != q:
        raise ValueError(f"d4_apply needs square patches, got {p}×{q}")
    perms = d4_permutations(p, x.device)
    if isinstance(k, int):
        return x.reshape(b, c, p * p)[:, :, perms[k]].reshape(b, c, p, p)
    index = perms[k].unsqueeze(1).expand(b, c, p * p)  # (B, C, P*P)
    return x.reshape(b, c, p * p).gather(2, index).reshape(b, c, p, p)


def d4_orbit(x: torch.Tensor) -> torch.Tensor:
    """All 8 views of each patch: (B, C, P, P) → (B, 8, C, P, P), view k = g_k(x)."""
    b, c, p, _ = x.shape
    perms = d4_permutations(p, x.device)  # (8, P*P)
    flat = x.reshape(b, c, p * p)
    return flat[:, :, perms].permute(0, 2, 1, 3).reshape(b, N_ELEMENTS, c, p, p)


def _view_slopes(grad: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``<grad, g_{order[j]}(y)>`` per patch for the 8 elements: (B, 8).

    For small patches one batched matmul gives every pixel pair's channel dot product
    (B, P², P²) and each element sums its permutation's entries; that is far cheaper than
    8 gathers of the whole (B, C, P²) tensor when C is large. Big patches use the gathers.
    """
    b, c, p, _ = y.shape
    n = p * p
    perms = d4_permutations(p, y.device)[order]  # (8, P²)
    dtype = torch.promote_types(torch.promote_types(grad.dtype, y.dtype), torch.float32)  # float32 at least
    g, yy = grad.reshape(b, c, n).to(dtype), y.reshape(b, c, n).to(dtype)
    if n <= 256:
        pairs = torch.bmm(g.transpose(1, 2), yy).reshape(b, n * n)  # (B, P²·P²): <g[:, i], y[:, j]>
        index = (torch.arange(n, device=y.device) * n + perms).reshape(-1)  # (8·P²,)
        return pairs.index_select(1, index).view(b, N_ELEMENTS, n).sum(dim=2)
    return torch.stack([(g * yy.index_select(2, perms[j])).sum(dim=(1, 2)) for j in range(N_ELEMENTS)], dim=1)


class _OrientByChoice(torch.autograd.Function):
    """``g_e(y)`` per patch, with ``e`` the argmax of the logits (or its inverse).

    Forward is one gather. Backward gives ``y`` the exact (permuted) gradient and the logits a
    straight-through softmax gradient: the loss's slope towards each of the 8 orientations,
    ``<∂L/∂out, g_j(y)>``, weighted by the softmax Jacobian. This equals differentiating
    ``Σ_j (hard_j + p_j − sg(p_j)) g_j(y)`` without materialising the 8 views in the autograd graph.
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, logits: torch.Tensor, inverse: bool) -> torch.Tensor:
        b, c, p, _ = y.shape
        inv = d4_table("inverse", y.device)
        k = logits.argmax(dim=1)
        element = inv[k] if inverse else k
        ctx.save_for_backward(y, logits, element)
        ctx.inverse = inverse
        return d4_apply(y, element)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        y, logits, element = ctx.saved_tensors
        inv = d4_table("inverse", y.device)
        grad_y = d4_apply(grad, inv[element]) if ctx.needs_input_grad[0] else None
        grad_logits = None
        if ctx.needs_input_grad[1]:
            order = inv if ctx.inverse else torch.arange(N_ELEMENTS, device=y.device)
            slopes = _view_slopes(grad, y, order)  # (B, 8): <∂L/∂out, view j>
            prob = logits.to(slopes.dtype).softmax(dim=1)
            grad_logits = (prob * (slopes - (prob * slopes).sum(dim=1, keepdim=True))).to(logits.dtype)
        return grad_y, grad_logits, None


def orient_by_choice(y: torch.Tensor, logits: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
    """Move each patch by the orientation its logits choose (``g_k``, or ``g_k⁻¹`` when ``inverse``).

    Parameters
    ----------
    y : Tensor of shape (B, C, P, P)
    logits : Tensor of shape (B, 8)

    Returns
    -------
    Tensor of shape (B, C, P, P), with a straight-through gradient for ``logits``.
    """
    return _OrientByChoice.apply(y, logits, inverse)
