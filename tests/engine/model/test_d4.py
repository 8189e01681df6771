"""The hand-written straight-through backward of ``orient_by_choice`` against autograd."""

from __future__ import annotations

import pytest
import torch

from napari_imc_vae.engine.model.d4 import D4_INVERSE, N_ELEMENTS, _apply_reference, d4_apply, orient_by_choice


def _reference(y: torch.Tensor, logits: torch.Tensor, inverse: bool) -> torch.Tensor:
    """``Σ_j (hard_j + p_j − sg(p_j)) · g_{e(j)}(y)`` by autograd, with the slow rot90/flip transforms.

    ``e(j) = j`` (or ``j⁻¹`` when ``inverse``): the forward value is the chosen view, the logits'
    gradient the straight-through softmax one.
    """
    prob = logits.softmax(dim=1)
    hard = torch.nn.functional.one_hot(logits.argmax(dim=1), N_ELEMENTS).to(y.dtype)
    weight = hard + prob - prob.detach()  # (B, 8)
    elements = [int(D4_INVERSE[j]) if inverse else j for j in range(N_ELEMENTS)]
    views = torch.stack([_apply_reference(y, e) for e in elements], dim=1)  # (B, 8, C, P, P)
    return (weight[:, :, None, None, None] * views).sum(dim=1)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("patch", [5, 8, 17])  # 17² > 256: the gather path of the logits' slopes
def test_backward_equals_autograd_of_the_straight_through_sum(patch, inverse):
    g = torch.Generator().manual_seed(patch + inverse)
    y = torch.randn(6, 3, patch, patch, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(6, N_ELEMENTS, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 3, patch, patch, generator=g, dtype=torch.float64)

    out = orient_by_choice(y, logits, inverse=inverse)
    ref = _reference(y, logits, inverse)
    torch.testing.assert_close(out, ref.detach(), rtol=0, atol=1e-12)  # forward: the chosen view
    grad_y, grad_logits = torch.autograd.grad((out * weights).sum(), (y, logits))
    ref_y, ref_logits = torch.autograd.grad((ref * weights).sum(), (y, logits))
    # y's gradient is exactly the permuted one (the soft weights sum to 0, so it matches the reference)
    torch.testing.assert_close(grad_y, ref_y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_logits, ref_logits, rtol=1e-10, atol=1e-12)
    assert grad_logits.abs().max() > 1e-3  # a real gradient, not zeros on both sides


def test_backward_in_float32_within_float_tolerance():
    g = torch.Generator().manual_seed(3)
    y = torch.randn(32, 40, 8, 8, generator=g, requires_grad=True)
    logits = torch.randn(32, N_ELEMENTS, generator=g, requires_grad=True)
    weights = torch.randn(32, 40, 8, 8, generator=g)
    grads = torch.autograd.grad((orient_by_choice(y, logits) * weights).sum(), (y, logits))
    refs = torch.autograd.grad((_reference(y, logits, False) * weights).sum(), (y, logits))
    for got, want in zip(grads, refs):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck_in_the_patches(inverse):
    """Numerical against analytical gradient in float64, for ``y`` (for the logits the forward is
    piecewise constant, so finite differences see 0 where the straight-through gradient is not)."""
    g = torch.Generator().manual_seed(7)
    y = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(3, N_ELEMENTS, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: orient_by_choice(t, logits, inverse=inverse), (y,))


def test_forward_chooses_the_argmax_element():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(8, 2, 6, 6, generator=g)
    logits = torch.eye(N_ELEMENTS) * 5  # patch b chooses element b
    torch.testing.assert_close(orient_by_choice(y, logits), d4_apply(y, torch.arange(N_ELEMENTS)))
    back = orient_by_choice(orient_by_choice(y, logits), logits, inverse=True)
    torch.testing.assert_close(back, y)  # g_k⁻¹ g_k = identity
