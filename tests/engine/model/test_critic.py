"""The critic: every term against values computed by hand, every weight acting on the total."""

import math
from dataclasses import replace

import pytest
import torch

from napari_imc_vae.engine.model.critic import (
    base_logits_from_views,
    CriticConfig,
    cosine_term,
    critic,
    gradient_loss,
    kl_per_dimension,
    kld_free_bits,
    masked_mse,
    permutation_consistency,
)
from napari_imc_vae.engine.model.d4 import N_ELEMENTS, d4_apply


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_reference_values_and_defaults_differ_only_by_the_gradient_term():
    c = CriticConfig.reference()
    assert (c.cosine_weight, c.gradient_weight, c.kld_scale, c.free_bits, c.perm_loss_scale) == (
        0.5, 1.0, 0.001, 2.0, 0.8)
    # the ablation (docs/ablation.md) turned the gradient term off by default
    assert CriticConfig() == CriticConfig(**{**vars(c), "gradient_weight": 0.0})


@pytest.mark.parametrize("field", ["cosine_weight", "gradient_weight", "kld_scale", "free_bits", "perm_loss_scale"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), "1"])
def test_bad_weights_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"CriticConfig\.{field}"):
        CriticConfig(**{field: value})


def test_masked_mse_by_hand_with_nan_excluded():
    target = t([[[[1.0, float("nan")], [3.0, 0.0]]]])  # (1, 1, 2, 2)
    recon = t([[[[2.0, 100.0], [1.0, 0.5]]]])
    # (1)² + (2)² + (0.5)² over 3 valid pixels; the NaN pixel is left out
    assert masked_mse(recon, target, torch.isfinite(target)).item() == pytest.approx((1 + 4 + 0.25) / 3)


def test_cosine_term_by_hand_zero_and_nan_pixels_excluded():
    # (B=1, C=2, 2, 2): the channel vector of each pixel
    target = torch.zeros(1, 2, 2, 2)
    recon = torch.zeros(1, 2, 2, 2)
    target[0, :, 0, 0], recon[0, :, 0, 0] = t([1.0, 0.0]), t([0.0, 2.0])  # orthogonal: 1 − 0 = 1
    target[0, :, 0, 1], recon[0, :, 0, 1] = t([3.0, 4.0]), t([6.0, 8.0])  # parallel: 0
    target[0, :, 1, 0], recon[0, :, 1, 0] = t([0.0, 0.0]), t([5.0, -1.0])  # all zero: no direction, left out
    target[0, :, 1, 1], recon[0, :, 1, 1] = t([float("nan"), 1.0]), t([1.0, 0.0])  # a NaN channel: left out
    valid = torch.isfinite(target)
    assert cosine_term(recon, target, valid).item() == pytest.approx(0.5)
    # opposite direction: 1 − (−1) = 2
    recon[0, :, 0, 1] = t([-3.0, -4.0])
    assert cosine_term(recon, target, valid).item() == pytest.approx(1.5)
    # a cosine of 0.6: target (1, 0), recon (3, 4)
    recon[0, :, 0, 0] = t([3.0, 4.0])
    assert cosine_term(recon, target, valid).item() == pytest.approx(((1 - 0.6) + 2.0) / 2)


def test_cosine_term_zero_when_no_pixel_has_a_direction():
    z = torch.zeros(2, 3, 4, 4)
    assert cosine_term(torch.randn(2, 3, 4, 4), z, torch.ones_like(z, dtype=torch.bool)).item() == 0.0


def test_gradient_loss_by_hand():
    target = t([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [5.0, 0.0, 1.0]]]])  # (1, 1, 3, 3)
    recon = t([[[[1.0, 1.0, 1.0], [0.0, 1.0, 4.0], [2.0, 2.0, 0.0]]]])
    tt, rr = target[0, 0].tolist(), recon[0, 0].tolist()
    horiz = [abs((rr[i][j + 1] - rr[i][j]) - (tt[i][j + 1] - tt[i][j])) for i in range(3) for j in range(2)]
    vert = [abs((rr[i + 1][j] - rr[i][j]) - (tt[i + 1][j] - tt[i][j])) for i in range(2) for j in range(3)]
    expected = 0.5 * (sum(horiz) / 6 + sum(vert) / 6)
    got = gradient_loss(recon, target, torch.ones_like(target, dtype=torch.bool))
    assert got.item() == pytest.approx(expected)
    assert expected > 0


def test_gradient_loss_skips_differences_touching_nan():
    target = t([[[[0.0, float("nan"), 3.0], [1.0, 1.0, 1.0]]]])  # (1, 1, 2, 3)
    recon = t([[[[0.0, 9.0, 0.0], [0.0, 2.0, 0.0]]]])
    # horizontal: row 0 has no pair of valid neighbours; row 1: |2 − 0| and |−2 − 0|
    # vertical: columns 0 and 2 only: |0 − 1| and |0 − (−2)|
    expected = 0.5 * ((2 + 2) / 2 + (1 + 2) / 2)
    got = gradient_loss(recon, target, torch.isfinite(target))
    assert got.item() == pytest.approx(expected)


def test_gradient_loss_zero_for_a_shifted_copy():
    target = torch.randn(2, 3, 5, 5)
    assert gradient_loss(target + 7.0, target, torch.ones_like(target, dtype=torch.bool)).item() < 1e-6


def kl_by_hand(mu: float, logvar: float) -> float:
    return 0.5 * (mu**2 + math.exp(logvar) - 1.0 - logvar)


def test_kl_per_dimension_by_hand():
    mu, logvar = t([[0.0, 1.0, -2.0]]), t([[0.0, 0.5, -1.0]])
    expected = [kl_by_hand(0.0, 0.0), kl_by_hand(1.0, 0.5), kl_by_hand(-2.0, -1.0)]
    torch.testing.assert_close(kl_per_dimension(mu, logvar), t([expected]))
    assert expected[0] == 0.0  # the prior itself costs nothing


def test_kld_free_bits_floor_active_and_inactive():
    # batch of 2, 2 dims: per-dimension batch means
    mu, logvar = t([[3.0, 0.1], [1.0, -0.1]]), t([[0.0, 0.0], [0.0, 0.0]])
    d0 = (kl_by_hand(3.0, 0.0) + kl_by_hand(1.0, 0.0)) / 2  # 2.5 nats
    d1 = (kl_by_hand(0.1, 0.0) + kl_by_hand(-0.1, 0.0)) / 2  # 0.005 nats
    raw, floored = kld_free_bits(mu, logvar, free_bits=0.0)  # inactive: floored == raw
    assert raw.item() == pytest.approx(d0 + d1) and floored.item() == pytest.approx(d0 + d1)
    raw, floored = kld_free_bits(mu, logvar, free_bits=2.0)  # active on dim 1 only
    assert raw.item() == pytest.approx(d0 + d1)
    assert floored.item() == pytest.approx(d0 + 2.0)
    raw, floored = kld_free_bits(mu, logvar, free_bits=10.0)  # active on both
    assert floored.item() == pytest.approx(20.0)


def test_free_bits_act_on_the_batch_mean_not_per_sample():
    # one sample far above λ, one at the prior: per-sample flooring would give 4.5 + 2 = 6.5 → mean 3.25;
    # the batch-mean KL is 2.25, above λ = 2, so no floor at all
    mu, logvar = t([[3.0], [0.0]]), t([[0.0], [0.0]])
    _, floored = kld_free_bits(mu, logvar, free_bits=2.0)
    assert floored.item() == pytest.approx(2.25)


def test_free_bits_give_no_gradient_below_the_floor():
    mu = t([[0.1, 3.0]]).requires_grad_()
    logvar = torch.zeros(1, 2, requires_grad=True)
    _, floored = kld_free_bits(mu, logvar, free_bits=2.0)
    floored.backward()
    assert mu.grad[0, 0].item() == 0.0  # 0.005 nats < λ: constant
    assert mu.grad[0, 1].item() == pytest.approx(3.0)  # d/dmu ½mu² = mu


def test_critic_logs_raw_kld_separately():
    recon = target = torch.zeros(1, 1, 2, 2)
    mu, logvar = t([[0.1, 0.0]]), t([[0.0, 0.0]])
    terms = critic(recon, target, mu, logvar, CriticConfig(free_bits=2.0))
    assert terms.kld_loss.item() == pytest.approx(0.005)
    assert terms.kld_floored.item() == pytest.approx(4.0)
    assert terms.loss.item() == pytest.approx(0.001 * 4.0)
    assert set(terms.as_floats()) == {"loss", "mse", "cosine_loss", "gradient_loss", "kld_loss",
                                      "kld_floored", "perm_loss"}


def test_critic_nan_targets_excluded_everywhere():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 4, 4, generator=g)
    recon = torch.randn(2, 3, 4, 4, generator=g)
    mu, logvar = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    holey = target.clone()
    holey[0, 1, 2, 3] = float("nan")
    holey[1, :, 0, 0] = float("nan")
    terms = critic(recon, holey, mu, logvar, CriticConfig())
    assert all(math.isfinite(v) for v in terms.as_floats().values())
    valid = torch.isfinite(holey)
    assert terms.mse.item() == pytest.approx(((recon - target)[valid] ** 2).mean().item(), rel=1e-6)
    # the value under the NaN does not matter: refilling it with anything changes nothing
    other = holey.clone()
    other[~valid] = 1e6
    again = critic(recon, other, mu, logvar, CriticConfig(), valid=valid)
    for k, v in terms.as_floats().items():
        assert again.as_floats()[k] == pytest.approx(v, rel=1e-6), k


def test_each_weight_moves_the_total_by_weight_times_term():
    g = torch.Generator().manual_seed(1)
    recon, target = torch.randn(4, 3, 4, 4, generator=g), torch.randn(4, 3, 4, 4, generator=g)
    mu, logvar = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g) - 2.0
    perm = torch.tensor(1.7)
    base_cfg = CriticConfig.reference()
    base = critic(recon, target, mu, logvar, base_cfg, perm_loss=perm)
    expected_total = (base.mse + 0.5 * base.cosine_loss + 1.0 * base.gradient_loss
                      + 0.001 * base.kld_floored + 0.8 * perm)
    assert base.loss.item() == pytest.approx(expected_total.item())
    assert base.perm_loss.item() == pytest.approx(1.7)
    for name, term in [("cosine_weight", base.cosine_loss), ("gradient_weight", base.gradient_loss),
                       ("kld_scale", base.kld_floored), ("perm_loss_scale", base.perm_loss)]:
        assert term.item() > 0, name  # otherwise the check below proves nothing
        new = getattr(base_cfg, name) + 2.5
        moved = critic(recon, target, mu, logvar, replace(base_cfg, **{name: new}), perm_loss=perm)
        assert (moved.loss - base.loss).item() == pytest.approx(2.5 * term.item(), rel=1e-5), name
    # free_bits moves the floored KL, and the total by kld_scale times that change
    high = critic(recon, target, mu, logvar, replace(base_cfg, free_bits=50.0), perm_loss=perm)
    assert high.kld_floored.item() == pytest.approx(5 * 50.0)
    assert high.kld_loss.item() == pytest.approx(base.kld_loss.item())
    assert (high.loss - base.loss).item() == pytest.approx(0.001 * (250.0 - base.kld_floored.item()), rel=1e-5)
    # all weights 0: the total is the MSE alone
    zero = CriticConfig(cosine_weight=0, gradient_weight=0, kld_scale=0, free_bits=0, perm_loss_scale=0)
    assert critic(recon, target, mu, logvar, zero, perm_loss=perm).loss.item() == pytest.approx(base.mse.item())


def _compose_by_hand(a: int, b: int) -> int:
    """The element equal to g_a ∘ g_b, found by acting on a generic 3×3 grid."""
    grid = torch.arange(9.0).reshape(1, 1, 3, 3)
    both = d4_apply(d4_apply(grid, b), a)
    return next(k for k in range(N_ELEMENTS) if torch.equal(d4_apply(grid, k), both))


def test_permutation_consistency_on_hand_made_logits():
    # base predictions 2 and 5; views made with elements 3 and 6
    base = torch.full((2, N_ELEMENTS), -5.0)
    base[0, 2], base[1, 5] = 5.0, 5.0
    transforms = torch.tensor([3, 6])
    targets = [_compose_by_hand(3, 2), _compose_by_hand(6, 5)]
    # uniform logits: cross-entropy log 8
    assert permutation_consistency(torch.zeros(2, N_ELEMENTS), base, transforms).item() == pytest.approx(math.log(8))
    # confident and right: near 0
    right = torch.full((2, N_ELEMENTS), -20.0)
    right[0, targets[0]], right[1, targets[1]] = 20.0, 20.0
    assert permutation_consistency(right, base, transforms).item() < 1e-6
    # confident but wrong (the raw transform, not composed with the base prediction): large
    wrong = torch.full((2, N_ELEMENTS), -20.0)
    wrong[0, 3], wrong[1, 6] = 20.0, 20.0
    assert targets != [3, 6]
    assert permutation_consistency(wrong, base, transforms).item() > 30
    # an exact value: logits (2 at the target, 0 elsewhere) → −log(e² / (e² + 7))
    mixed = torch.zeros(2, N_ELEMENTS)
    mixed[0, targets[0]], mixed[1, targets[1]] = 2.0, 2.0
    expected = -math.log(math.exp(2) / (math.exp(2) + 7))
    assert permutation_consistency(mixed, base, transforms).item() == pytest.approx(expected, rel=1e-6)


def test_permutation_consistency_gradient_only_to_the_view_logits():
    base = torch.randn(3, N_ELEMENTS, requires_grad=True)
    view = torch.randn(3, N_ELEMENTS, requires_grad=True)
    permutation_consistency(view, base, torch.tensor([0, 1, 7])).backward()
    assert base.grad is None or base.grad.abs().sum() == 0
    assert view.grad.abs().sum() > 0


def test_nan_and_inf_targets_give_finite_gradients():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 3, 4, 4, generator=g)
    target[0, 0, 1, 1], target[1, 2, 0, 3], target[1, :, 2, 2] = float("nan"), float("inf"), float("-inf")
    recon = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    mu = torch.randn(2, 4, generator=g, requires_grad=True)
    logvar = torch.zeros(2, 4, requires_grad=True)
    terms = critic(recon, target, mu, logvar, CriticConfig())
    terms.loss.backward()
    assert torch.isfinite(terms.loss) and torch.isfinite(recon.grad).all() and torch.isfinite(mu.grad).all()
    assert recon.grad.abs().sum() > 0


def test_unmasked_fast_path_equals_masked_terms_on_finite_targets():
    torch.manual_seed(3)
    recon, target = torch.randn(4, 6, 5, 5), torch.randn(4, 6, 5, 5)
    target[0, :, 1, 1] = 0.0  # an all-zero pixel: left out of the cosine term either way
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    masked = critic(recon, target, mu, logvar, CriticConfig()).as_floats()
    fast = critic(recon, target, mu, logvar, CriticConfig(), all_finite=True).as_floats()
    assert fast == pytest.approx(masked, rel=1e-6, abs=1e-7)


def test_base_logits_from_views_equal_a_second_pass_of_the_selector():
    from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE

    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=7, patch_size=6)).eval()
    base = torch.randn(16, 7, 6, 6)
    transforms = torch.arange(16) % N_ELEMENTS
    with torch.no_grad():
        view_logits = model.frame(d4_apply(base, transforms))
        expected = model.frame(base)
    got = base_logits_from_views(view_logits, transforms)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(view_logits[1:8], expected[1:8], atol=1e-3)  # the views' own logits differ
