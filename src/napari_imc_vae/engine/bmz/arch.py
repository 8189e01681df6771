"""The architecture file of a BioImage Model Zoo package: raw counts in, reconstruction and latent map out.

A package must work where napari-imc-vae is not installed, so the file it ships imports only torch.
:func:`napari_imc_vae.engine.bmz.export.architecture_source` writes it as the source of
:mod:`napari_imc_vae.engine.model.vae` (the network itself, unchanged: the exported weights load into
it key for key) followed by this module, with the lines marked ``# bmz: drop`` left out. Here the
D4 helpers the network calls are inference-only (a gather, no straight-through gradient) and
:class:`ImcVaeZoo` wraps the network with what the package's users cannot do themselves:

1. the model's normalization (hot-pixel filter, ``arcsinh(x / cofactor)``, clip, z-score), which
   the spec has no operation for (no arcsinh), from per-channel buffers in the weights;
2. whole-tile reconstruction as the plugin does it (DESIGN §5): tiles of P px at stride P/2,
   reflected borders, Hann-window blending, the posterior mean (deterministic);
3. back to counts: the inverse normalization times the model's per-channel rate factors
   (engine.apply.rate_calibration: the inverse of a mean in arcsinh units lies below the mean count),
   clipped at 0.

Inside this package the module is importable (the network comes from the engine) so that tests
can compare it with the plugin's own reconstruction.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE  # bmz: drop (defined above in the package file)

#: g_k⁻¹ for the 8 elements (rotation by 90°·k, then a flip for k >= 4): rotations invert to
#: 4 - k, and every flip is its own inverse. Tested against engine.model.d4.D4_INVERSE.
ZOO_D4_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def zoo_d4_permutations(patch_size: int, device: torch.device) -> torch.Tensor:
    """Index permutations (8, P*P) of engine.model.d4's convention: ``g_k(x).flatten()[i] == x.flatten()[perm[k, i]]``."""
    grid = torch.arange(patch_size * patch_size, device=device).reshape(patch_size, patch_size)
    views = []
    for k in range(8):
        view = torch.rot90(grid, k % 4, dims=(0, 1))
        views.append((torch.flip(view, dims=(1,)) if k >= 4 else view).reshape(-1))
    return torch.stack(views)


def d4_orbit(x: torch.Tensor) -> torch.Tensor:
    """All 8 views of each patch: (B, C, P, P) → (B, 8, C, P, P), view k = g_k(x)."""
    b, c, p, _ = x.shape
    flat = x.reshape(b, c, p * p)
    return flat[:, :, zoo_d4_permutations(p, x.device)].permute(0, 2, 1, 3).reshape(b, 8, c, p, p)


def orient_by_choice(y: torch.Tensor, logits: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
    """Move each patch (B, C, P, P) by the element its logits (B, 8) choose, or by its inverse."""
    b, c, p, _ = y.shape
    element = logits.argmax(dim=1)
    if inverse:
        element = torch.tensor(ZOO_D4_INVERSE, device=y.device)[element]
    index = zoo_d4_permutations(p, y.device)[element].unsqueeze(1).expand(b, c, p * p)
    return y.reshape(b, c, p * p).gather(2, index).reshape(b, c, p, p)


class PatchNet(nn.Module):
    """The VAE on normalized patches: (B, C, P, P) → reconstruction (B, C, P, P), posterior mean (B, D)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mu, _, logits = self.vae.encode(x)
        return self.vae.decode(mu, logits), mu


def tile_count(size: int, patch_size: int, stride: int) -> int:
    """Tiles along an axis of ``size`` px (engine.apply.tiling.TileGrid's rule)."""
    rest = patch_size - patch_size // 2
    reach = (size - rest + stride - 1) // stride + 1 if size > rest else 1
    return max((size + stride - 1) // stride, reach)


class ImcVaeZoo(nn.Module):
    """Raw IMC counts (B, C, Y, X) → reconstruction in counts (B, C, Y, X), latent map (B, D, Y/S, X/S).

    Parameters
    ----------
    model_config : dict
        The network's architecture (engine.model.vae.ModelConfig's fields).
    hot_pixel_threshold, arcsinh_cofactor : float or None
        Normalization steps; None skips one.
    zscore : bool
    stride : int
        Tile step S; the latent map is on the grid of tile centres (pixel ``(i*S, j*S)``).
    tile_batch : int
        Tiles per call of the network (bounds memory, not the result).
    """

    def __init__(self, model_config: dict, hot_pixel_threshold: Optional[float] = None,
                 arcsinh_cofactor: Optional[float] = None, zscore: bool = True, stride: int = 0,
                 tile_batch: int = 1024):
        super().__init__()
        config = ModelConfig(**model_config)
        self.net = PatchNet(PatchVAE(config))
        self.net.eval()
        c, p = config.in_channels, config.patch_size
        self.patch_size, self.latent_dim = p, config.latent_dim
        self.stride = int(stride) or max(1, p // 2)
        self.tile_batch = int(tile_batch)
        self.use_hot_pixels = hot_pixel_threshold is not None
        self.hot_pixel_threshold = float(hot_pixel_threshold or 0.0)
        self.use_arcsinh = arcsinh_cofactor is not None
        self.cofactor = float(arcsinh_cofactor or 1.0)
        self.zscore = bool(zscore)
        # per-channel statistics in transformed units: part of the weights (the trained state)
        self.register_buffer("norm_mean", torch.zeros(c))
        self.register_buffer("norm_std", torch.ones(c))
        self.register_buffer("norm_clip_high", torch.full((c,), math.inf))
        self.register_buffer("norm_constant", torch.zeros(c, dtype=torch.bool))
        self.register_buffer("rate_factor", torch.ones(c))  # 1: a model without rate calibration
        hann = torch.sin(math.pi * (torch.arange(p, dtype=torch.float64) + 0.5) / p) ** 2
        self.register_buffer("window", torch.outer(hann, hann).float(), persistent=False)

    # normalization --------------------------------------------------------------------------
    def _filter_hot_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """steinbock's rule: a pixel more than T above its 8 neighbours' maximum becomes that maximum."""
        b, c, h, w = x.shape
        padded = F.pad(torch.nan_to_num(x, nan=-math.inf), (1, 1, 1, 1), mode="reflect")
        neighbours: List[torch.Tensor] = []
        for dy in range(3):
            for dx in range(3):
                if dy != 1 or dx != 1:
                    neighbours.append(padded[:, :, dy:dy + h, dx:dx + w])
        m = torch.stack(neighbours).amax(dim=0)
        return torch.where(x - m > self.hot_pixel_threshold, m, x)

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.float()
        if self.use_hot_pixels:
            x = self._filter_hot_pixels(x)
        if self.use_arcsinh:
            x = torch.asinh(x / self.cofactor)
        x = torch.minimum(x, self.norm_clip_high.view(1, -1, 1, 1))
        if self.zscore:
            scaled = (x - self.norm_mean.view(1, -1, 1, 1)) / self.norm_std.view(1, -1, 1, 1)
            x = torch.where(self.norm_constant.view(1, -1, 1, 1), torch.zeros_like(x), scaled)
        return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # unknown pixels: the channel mean

    def to_counts(self, y: torch.Tensor) -> torch.Tensor:
        if self.zscore:
            scaled = y * self.norm_std.view(1, -1, 1, 1) + self.norm_mean.view(1, -1, 1, 1)
            y = torch.where(self.norm_constant.view(1, -1, 1, 1), self.norm_mean.view(1, -1, 1, 1).expand_as(y),
                            scaled)
        if self.use_arcsinh:
            y = torch.sinh(y) * self.cofactor
        y = y * self.rate_factor.view(1, -1, 1, 1)
        return torch.clamp(y, min=0.0)  # counts are never negative

    # tiles ------------------------------------------------------------------------------------
    def reconstruct_normalized(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalized (B, C, Y, X) → normalized reconstruction (B, C, Y, X), latent map (B, D, ny, nx)."""
        b, c, h, w = x.shape
        p, s = self.patch_size, self.stride
        ny, nx = tile_count(h, p, s), tile_count(w, p, s)
        before = p // 2
        below, right = (ny - 1) * s + p - h - before, (nx - 1) * s + p - w - before
        padded = F.pad(x, (before, right, before, below), mode="reflect")  # (B, C, Yp, Xp)
        cols = F.unfold(padded, kernel_size=p, stride=s)  # (B, C*P*P, ny*nx)
        tiles = cols.view(b, c, p, p, ny * nx).permute(0, 4, 1, 2, 3).reshape(-1, c, p, p)
        recons: List[torch.Tensor] = []
        mus: List[torch.Tensor] = []
        for start in range(0, tiles.shape[0], self.tile_batch):
            r, mu = self.net(tiles[start:start + self.tile_batch])
            recons.append(r)
            mus.append(mu)
        recon, mu = torch.cat(recons), torch.cat(mus)
        weighted = (recon * self.window).view(b, ny * nx, c * p * p).transpose(1, 2)
        size = (padded.shape[2], padded.shape[3])
        summed = F.fold(weighted, size, kernel_size=p, stride=s)  # (B, C, Yp, Xp)
        ones = self.window.reshape(1, p * p, 1).expand(1, p * p, ny * nx)
        weights = F.fold(ones, size, kernel_size=p, stride=s)  # (1, 1, Yp, Xp), never zero
        out = (summed / weights)[:, :, before:before + h, before:before + w]
        latent = mu.view(b, ny, nx, -1).permute(0, 3, 1, 2)
        return out, latent

    def forward(self, raw: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        recon, latent = self.reconstruct_normalized(self.normalize(raw))
        return self.to_counts(recon), latent
