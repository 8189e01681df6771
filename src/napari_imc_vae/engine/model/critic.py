"""The critic: MSE + cosine + gradient + free-bits KL + permutation consistency (DESIGN §3).

``loss = mse + cosine_weight·cosine + gradient_weight·gradient + kld_scale·KLD_freebits
+ perm_loss_scale·perm``; every term is returned on its own so it can be logged and plotted.
NaN pixels of the target are excluded from every term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from napari_imc_vae.engine.model.d4 import d4_table


@dataclass
class CriticConfig:
    """Loss weights: the reference project's, except the gradient term, which is off by default.

    The ablation on real IMC (docs/ablation.md) found that the gradient term's L1 on pixel
    differences mostly fits shot noise and pulls reconstructions flat: without it they were
    sharper and less averaged at equal or better R², on every held-out ROI, and on smooth
    feature maps sharper at the same R². :meth:`reference` gives the reference's full critic.
    """

    cosine_weight: float = 0.5
    gradient_weight: float = 0.0
    kld_scale: float = 0.001
    free_bits: float = 2.0  # nats per latent dimension
    perm_loss_scale: float = 0.8
    #: A target for the KL in nats per patch (0: off). When set, the KL term is
    #: ``|KL − kl_target|`` (a capacity, Burgess et al. 2018) instead of the free-bits floor:
    #: how much the latent carries is then asked for, not left to ``free_bits × latent_dim``.
    kl_target: float = 0.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ValueError(f"CriticConfig.{name} must be a number >= 0, got {value!r}")

    @classmethod
    def reference(cls) -> "CriticConfig":
        """The reference project's full critic (its "after"): the gradient term at weight 1.0."""
        return cls(gradient_weight=1.0)


#: Per-pixel channel vectors with a smaller norm count as "no direction" for the cosine term.
ZERO_VECTOR_NORM = 1e-3


def masked_mse(recon: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over valid elements (all when ``valid`` is None). Shapes (B, C, P, P)."""
    if valid is None:
        return (recon - target).square().mean()
    # mask the difference, not its square: d(x²)/dx at a NaN/Inf target is NaN, and 0·NaN = NaN
    diff = torch.where(valid, recon - target, 0.0)
    return diff.square().sum() / valid.sum().clamp_min(1)


def cosine_term(recon: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """The critic's cosine term: 1 − cosine similarity of the C-channel vector of each pixel.

    A differentiable 0-d tensor on one batch (logged as ``"cosine_loss"``); the quality
    report's measure of the same name is ``cosine_loss`` of
    :func:`napari_imc_vae.engine.quality.measures.reconstruction_measures`.

    Averaged over pixels whose channels are all valid (all pixels when ``valid`` is None) and
    whose true vector is not ~0 (an all-zero pixel has no direction). Returns 0 when no pixel
    qualifies.
    """
    t = target if valid is None else torch.where(valid, target, 0.0)
    # by hand rather than F.cosine_similarity, which scales both full tensors by their norms:
    # at hundreds of channels those elementwise passes cost more than the model's matmuls
    t_norm = t.norm(dim=1).detach()
    keep = t_norm > ZERO_VECTOR_NORM  # (B, P, P)
    if valid is not None:
        keep &= valid.all(dim=1)
    cos = (recon * t).sum(dim=1) / (recon.norm(dim=1) * t_norm).clamp_min(1e-8)  # (B, P, P)
    return torch.where(keep, 1.0 - cos, 0.0).sum() / keep.sum().clamp_min(1)


def gradient_loss(recon: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences of reconstruction and target.

    The mean of the two directions' means; a difference counts only where both pixels are valid
    (everywhere when ``valid`` is None).
    """
    # differences are linear: ∇recon − ∇target = ∇(recon − target), one subtraction instead of two
    error = recon - (target if valid is None else torch.where(valid, target, 0.0))
    terms = []
    for dim in (-1, -2):
        d_error = torch.diff(error, dim=dim).abs()
        if valid is None:
            terms.append(d_error.mean())
            continue
        n = valid.shape[dim]
        both = valid.narrow(dim, 0, n - 1) & valid.narrow(dim, 1, n - 1)
        terms.append(torch.where(both, d_error, 0.0).sum() / both.sum().clamp_min(1))
    return 0.5 * (terms[0] + terms[1])


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) ‖ N(0, 1)) per sample and dimension: ½(μ² + σ² − 1 − log σ²), shape (B, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kld_free_bits(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw KL (sum over dims of the batch mean) and the free-bits KL ``Σ_j max(λ, mean_b KL_bj)``.

    Free bits (Kingma et al. 2016) act on each dimension's batch-mean KL, so a dimension below
    λ nats costs a constant and gets no gradient pushing it to the prior.
    """
    per_dim = kl_per_dimension(mu, logvar).mean(dim=0)  # (D,)
    return per_dim.sum(), per_dim.clamp_min(free_bits).sum()


def base_logits_from_views(view_logits: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """The orientation logits of the untransformed patches, read off their views' logits.

    For an exactly equivariant scorer (``score_k(x) = s(g_k⁻¹ x)``) and a view ``v = g_t x``,
    ``score_j(x) = score_k(v)`` with ``g_k = g_t ∘ g_j``; so no second pass is needed.

    Parameters
    ----------
    view_logits : Tensor of shape (B, 8)
    transforms : LongTensor of shape (B,)
        D4 element ``t`` that made each view.
    """
    compose = d4_table("compose", transforms.device)
    return view_logits.gather(1, compose[transforms])  # [b, j] = view_logits[b, compose[t_b, j]]


def permutation_consistency(
    view_logits: torch.Tensor, base_logits: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy making the permuter's prediction for a view agree with the view's transform.

    For a patch ``x`` and a view ``g_t x`` the consistent prediction for the view is
    ``g_t ∘ pred(x)``. Our permuter is equivariant by construction, so this term works as a margin:
    it drives the chosen orientation's probability up, keeping choices stable under noise and
    rounding, where a near-tie would flip the canonical frame.

    Parameters
    ----------
    view_logits : Tensor of shape (B, 8)
        Orientation logits for the views.
    base_logits : Tensor of shape (B, 8)
        Orientation logits for the untransformed patches.
    transforms : LongTensor of shape (B,)
        D4 element that made each view.
    """
    compose = d4_table("compose", transforms.device)
    target = compose[transforms, base_logits.argmax(dim=1)]
    return F.cross_entropy(view_logits.float(), target.detach())


@dataclass
class CriticTerms:
    """Every term of one evaluation of the critic (0-d tensors), named as they are logged.

    ``kld_loss`` is the raw KL, what the latent carries; it is logged only. ``kld_floored`` is
    the free-bits KL (or ``|KL − kl_target|`` with a target), the term that enters ``loss``
    (times ``kld_scale``).
    """

    loss: torch.Tensor
    mse: torch.Tensor
    cosine_loss: torch.Tensor
    gradient_loss: torch.Tensor
    kld_loss: torch.Tensor  # raw KL: what the latent actually carries
    kld_floored: torch.Tensor
    perm_loss: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        names = list(vars(self))  # one device-to-host transfer for all terms, not one each
        values = torch.stack([getattr(self, k).detach().float() for k in names]).tolist()
        return dict(zip(names, values))


def critic(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    config: CriticConfig,
    *,
    valid: torch.Tensor | None = None,
    all_finite: bool = False,
    perm_loss: torch.Tensor | None = None,
) -> CriticTerms:
    """Evaluate the full critic.

    Parameters
    ----------
    recon, target : Tensor of shape (B, C, P, P)
        Reconstruction and target in normalized units (target may hold NaN: excluded).
    mu, logvar : Tensor of shape (B, D)
    config : CriticConfig
    valid : BoolTensor of shape (B, C, P, P), optional
        Defaults to the finite elements of ``target``.
    all_finite : bool
        The caller knows every element of ``target`` is finite: the terms skip masking, which
        is most of their cost on many-channel patches.
    perm_loss : Tensor, optional
        The permutation-consistency term (0 when not given).
    """
    recon, target = recon.float(), target.float()
    if all_finite:
        valid = None
    elif valid is None:
        valid = torch.isfinite(target)
    mse = masked_mse(recon, target, valid)
    # a term weighted 0 is still logged, but builds no autograd graph (its backward is the
    # cost at many channels, and the gradient term is off by default)
    with torch.set_grad_enabled(torch.is_grad_enabled() and config.cosine_weight != 0):
        cos = cosine_term(recon, target, valid)
    with torch.set_grad_enabled(torch.is_grad_enabled() and config.gradient_weight != 0):
        grad = gradient_loss(recon, target, valid)
    kld_raw, kld_floored = kld_free_bits(mu.float(), logvar.float(), config.free_bits)
    if config.kl_target > 0:
        kld_floored = (kld_raw - config.kl_target).abs()
    perm = perm_loss if perm_loss is not None else torch.zeros((), device=recon.device)
    loss = (
        mse
        + config.cosine_weight * cos
        + config.gradient_weight * grad
        + config.kld_scale * kld_floored
        + config.perm_loss_scale * perm
    )
    return CriticTerms(loss, mse, cos, grad, kld_raw, kld_floored, perm)
