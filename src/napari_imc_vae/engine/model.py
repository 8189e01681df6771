"""Permutation-invariant patch VAE: a D4 frame selector, an MLP encoder/decoder, a linear bottleneck.

A patch of the image is a small grid graph whose nodes (pixels) carry the C channels. Tissue has
no canonical orientation, so the latent must be the same for the 8 rotations/flips (D4) of a patch.
The reference reached this with a graph transformer that saw each node's neighbours as an
unordered set; it could not encode direction and underfitted (DESIGN §3). Here a *frame selector*
(the permuter) scores the 8 orientations with an exactly D4-equivariant function, the patch is
turned into the winning (canonical) orientation, and a position-aware encoder encodes that. The
decoder draws the canonical patch and the permuter's choice moves it back into the input's
orientation (straight-through hard choice), so every view is reconstructed in its own orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_imc_vae.engine.d4 import D4_INVERSE, N_ELEMENTS, d4_orbit

# -- blocks ---------------------------------------------------------------------------------------


class ResidualMLP(nn.Module):
    """Pre-norm residual MLP block; plain GEMMs keep the CPU and GPU busy."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.gelu(self.fc1(self.norm(h))))


class PixelMixer(nn.Module):
    """Per-pixel channel mixing (a 1×1 convolution): many channels → a few features per pixel.

    Identity when the image has few channels, so 5-channel IMC goes straight to the encoder.
    """

    def __init__(self, in_channels: int, features: int):
        super().__init__()
        self.identity = features == in_channels
        self.fc = nn.Identity() if self.identity else nn.Linear(in_channels, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, P, P) → (B, F, P, P)
        if self.identity:
            return x
        return F.gelu(self.fc(x.movedim(1, -1))).movedim(-1, 1)


class FrameSelector(nn.Module):
    """Scores the 8 orientations of a patch, exactly D4-equivariantly.

    ``score_k(x) = s(g_k⁻¹ x)`` with one shared scorer ``s`` (a per-pixel MLP, then learned
    templates over the P×P grid). For a transformed patch ``h x`` the scores are the same numbers
    permuted, so ``argmax`` moves with ``h`` and the canonical view ``g_{k*}⁻¹ x`` is invariant.
    """

    def __init__(self, in_channels: int, patch_size: int, features: int = 16, templates: int = 32):
        super().__init__()
        self.pixel = nn.Sequential(nn.Linear(in_channels, features), nn.GELU(), nn.Linear(features, features))
        self.templates = nn.Linear(patch_size * patch_size * features, templates)
        self.readout = nn.Linear(templates, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Orientation logits (B, 8) for patches (B, C, P, P)."""
        phi = self.pixel(x.movedim(1, -1)).movedim(-1, 1)  # (B, F, P, P); commutes with D4
        views = d4_orbit(phi)[:, D4_INVERSE.to(x.device)]  # (B, 8, F, P, P); view k = g_k⁻¹ φ
        h = F.gelu(self.templates(views.flatten(2)))  # (B, 8, T)
        return self.readout(h).squeeze(-1)  # (B, 8)


# -- config and model -----------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Architecture of :class:`PatchVAE`; stored in model files to rebuild the model."""

    in_channels: int
    patch_size: int = 8
    latent_dim: int = 32
    width: int = 512
    depth: int = 2
    #: Per-pixel features before flattening; 0 = the channel count up to 64, else 64.
    pixel_features: int = 0
    frame_features: int = 16
    frame_templates: int = 32

    def __post_init__(self) -> None:
        for name in ("in_channels", "patch_size", "latent_dim", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.patch_size < 2:
            raise ValueError(f"ModelConfig.patch_size must be at least 2, got {self.patch_size}")
        if self.depth < 0:
            raise ValueError(f"ModelConfig.depth must be >= 0, got {self.depth}")

    @property
    def features(self) -> int:
        return self.pixel_features or min(self.in_channels, 64)


@dataclass
class VAEOutput:
    recon: torch.Tensor  # (B, C, P, P), in the input's orientation
    mu: torch.Tensor  # (B, D)
    logvar: torch.Tensor  # (B, D)
    orientation_logits: torch.Tensor  # (B, 8)
    orientation: torch.Tensor  # (B,) long: g_k maps the canonical patch onto the input


class PatchVAE(nn.Module):
    """D4-invariant VAE over (C, P, P) patches in normalized units."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, p, f, w, d = config.in_channels, config.patch_size, config.features, config.width, config.latent_dim
        self.frame = FrameSelector(c, p, config.frame_features, config.frame_templates)
        self.mix_in = PixelMixer(c, f)
        self.encoder = nn.Sequential(
            nn.Linear(f * p * p, w), *[ResidualMLP(w) for _ in range(config.depth)], nn.LayerNorm(w)
        )
        # The bottleneck is linear: an activation here (the reference's SiLU) floors sigma and blurs.
        self.to_latent = nn.Linear(w, 2 * d)
        self.decoder = nn.Sequential(nn.Linear(d, w), *[ResidualMLP(w) for _ in range(config.depth)], nn.LayerNorm(w))
        self.to_pixels = nn.Linear(w, f * p * p)
        self.mix_out = nn.Identity() if self.mix_in.identity else nn.Linear(f, c)

    # canonical frame ----------------------------------------------------------------------------
    def _choice_weights(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard one-hot choice in the forward pass, softmax gradient in the backward (straight-through)."""
        k = logits.argmax(dim=1)  # (B,)
        hard = F.one_hot(k, N_ELEMENTS).to(logits.dtype)
        if not torch.is_grad_enabled():
            return hard, k
        soft = logits.softmax(dim=1)
        return hard + soft - soft.detach(), k

    def _decode_canonical(self, z: torch.Tensor) -> torch.Tensor:
        c, p, f = self.config.in_channels, self.config.patch_size, self.config.features
        h = self.to_pixels(self.decoder(z)).view(-1, f, p, p)  # (B, F, P, P)
        if isinstance(self.mix_out, nn.Identity):
            return h
        return self.mix_out(F.gelu(h).movedim(1, -1)).movedim(-1, 1).reshape(-1, c, p, p)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patches (B, C, P, P) → mu (B, D), logvar (B, D), choice weights (B, 8), orientation (B,)."""
        logits = self.frame(x)
        weights, k = self._choice_weights(logits)
        views = d4_orbit(x)[:, D4_INVERSE.to(x.device)]  # (B, 8, C, P, P); view k = g_k⁻¹ x
        canonical = torch.einsum("bk,bkcij->bcij", weights, views)  # exactly g_{k*}⁻¹ x forward
        stats = self.to_latent(self.encoder(self.mix_in(canonical).flatten(1)))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar, weights, logits

    def decode(self, z: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Latents (B, D) and orientation choice (B, 8) → patches (B, C, P, P) in that orientation."""
        canonical = self._decode_canonical(z)
        return torch.einsum("bk,bkcij->bcij", weights, d4_orbit(canonical))

    def forward(self, x: torch.Tensor, *, sample: bool | None = None) -> VAEOutput:
        """Reconstruct patches; samples z in training mode, uses mu otherwise (or as ``sample`` says)."""
        mu, logvar, weights, logits = self.encode(x)
        sample = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        recon = self.decode(z, weights)
        return VAEOutput(recon, mu, logvar, logits, logits.argmax(dim=1))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic reconstruction (B, C, P, P) and latent mean (B, D) of patches."""
        out = self.forward(x, sample=False)
        return out.recon, out.mu

    @torch.no_grad()
    def predict_orientation(self, x: torch.Tensor) -> torch.Tensor:
        """Which of the 8 D4 elements maps the canonical patch onto each input patch: (B,) long."""
        return self.frame(x).argmax(dim=1)
