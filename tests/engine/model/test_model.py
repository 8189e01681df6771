"""The patch VAE: D4-invariant latent, each view reconstructed in its own orientation, linear bottleneck."""

import pytest
import torch
from torch import nn

from napari_imc_vae.engine.model.d4 import D4_COMPOSE, N_ELEMENTS, d4_apply, d4_orbit
from napari_imc_vae.engine.model.vae import ModelConfig, PatchVAE


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(channels: int = 5, arch: str = "mlp", patch: int = 4, seed: int = 0, **kw) -> PatchVAE:
    torch.manual_seed(seed)
    config = ModelConfig(in_channels=channels, patch_size=patch, latent_dim=4, width=32, depth=1, arch=arch, **kw)
    return PatchVAE(config).eval()


def patches(b: int, c: int, p: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, p, p, generator=g)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("channels", [1, 5, 40])
def test_latent_invariant_and_views_reconstructed_in_their_orientation(arch, channels):
    model = tiny(channels, arch)
    x = patches(6, channels)
    views = d4_orbit(x)  # (B, 8, C, P, P)
    recon, mu = model.reconstruct(views.flatten(0, 1))
    recon = recon.view(6, N_ELEMENTS, channels, 4, 4)
    mu = mu.view(6, N_ELEMENTS, -1)
    # the latent of all 8 views is the same
    assert (mu - mu[:, :1]).abs().max() < 1e-5
    # recon(g x) == g recon(x) for every element g
    expected = d4_orbit(recon[:, 0])
    torch.testing.assert_close(recon, expected, atol=1e-5, rtol=1e-5)
    # and the reconstruction is not trivially the same picture for every view
    assert (recon[:, 1] - recon[:, 0]).abs().max() > 1e-3


def test_predicted_orientation_moves_with_the_view():
    model = tiny(5)
    x = patches(16, 5)
    base = model.predict_orientation(x)
    for k in range(N_ELEMENTS):
        got = model.predict_orientation(d4_apply(x, k))
        torch.testing.assert_close(got, D4_COMPOSE[k, base])


def test_forward_outputs_and_output_orientation():
    model = tiny(5)
    x = patches(8, 5)
    out = model(x)
    assert out.recon.shape == x.shape
    assert out.mu.shape == out.logvar.shape == (8, 4)
    assert out.orientation_logits.shape == (8, N_ELEMENTS)
    assert out.orientation.dtype == torch.long
    torch.testing.assert_close(out.orientation, model.predict_orientation(x))


def test_training_mode_samples_eval_mode_uses_mu():
    model = tiny(5)
    x = patches(4, 5)
    a, b = model(x).recon, model(x).recon
    torch.testing.assert_close(a, b)  # eval: z = mu, deterministic
    model.train()
    torch.manual_seed(3)
    c = model(x).recon
    d = model(x).recon
    assert (c - d).abs().max() > 1e-4  # train: z is sampled
    # forward(sample=False) in training mode equals the eval reconstruction
    torch.testing.assert_close(model(x, sample=False).recon, a)


def test_gradients_reach_every_parameter():
    model = tiny(5).train()
    out = model(patches(8, 5))
    (out.recon.square().mean() + out.mu.square().mean() + out.logvar.mean()
     + out.orientation_logits.logsumexp(1).mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # the frame selector gets its gradient through the straight-through choice
    assert not missing, missing


def test_1024_channels_shape():
    torch.manual_seed(0)
    model = PatchVAE(ModelConfig(in_channels=1024, patch_size=4, latent_dim=4, width=16, depth=1)).eval()
    recon, mu = model.reconstruct(patches(2, 1024))
    assert recon.shape == (2, 1024, 4, 4) and mu.shape == (2, 4)
    assert torch.isfinite(recon).all()


def test_bottleneck_is_linear_without_activation():
    model = tiny(5)
    # the layer after the encoder is a plain Linear, nothing in between it and mu/logvar
    assert type(model.to_latent) is nn.Linear
    assert model.to_latent.out_features == 2 * model.config.latent_dim
    # push the bias far out: mu and logvar follow it exactly, in both directions (no SiLU floor)
    with torch.no_grad():
        model.to_latent.weight.zero_()
        model.to_latent.bias.copy_(torch.tensor([-30.0, 7.0, 0.0, 12.0, -25.0, 40.0, -3.0, 0.5]))
    with torch.no_grad():
        out = model(patches(3, 5), sample=False)
    mu, logvar = out.mu, out.logvar
    torch.testing.assert_close(mu, torch.tensor([[-30.0, 7.0, 0.0, 12.0]]).expand(3, 4))
    torch.testing.assert_close(logvar, torch.tensor([[-25.0, 40.0, -3.0, 0.5]]).expand(3, 4))


def test_patch_sizes_other_than_four():
    for p, arch in [(2, "mlp"), (6, "conv"), (8, "conv"), (5, "mlp")]:
        model = tiny(3, arch, patch=p)
        x = patches(2, 3, p)
        recon, _ = model.reconstruct(x)
        assert recon.shape == x.shape
        r2, _ = model.reconstruct(d4_apply(x, 5))
        torch.testing.assert_close(r2, d4_apply(recon, 5), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("in_channels", 0), ("patch_size", 1), ("latent_dim", 0), ("width", -3), ("depth", -1),
     ("arch", "transformer"), ("in_channels", 2.5), ("latent_dim", "8")],
)
def test_bad_config_names_the_field(field, value):
    kwargs = {"in_channels": 5, field: value}
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}"):
        ModelConfig(**kwargs)
