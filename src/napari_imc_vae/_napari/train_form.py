"""The parameter form of the "Train VAE" widget: normalization, model, training, advanced.

A magicgui :class:`~magicgui.widgets.Container` of typed widgets with the engine's defaults;
:meth:`TrainForm.normalization`, :meth:`TrainForm.model_config`, :meth:`TrainForm.critic_config`
and :meth:`TrainForm.train_config` turn them into the engine's config objects (which
validate them). The dock widget shows it through ``form.native``.
"""

from __future__ import annotations

from dataclasses import asdict

from magicgui.widgets import CheckBox, ComboBox, Container

from napari_imc_vae._napari.normalization_form import (
    NormalizationForm,
    float_spin,
    heading,
    int_spin,
    labelled,
)
from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.model import ModelConfig
from napari_imc_vae.engine.trainer import TrainConfig
from napari_imc_vae.preprocessing import NormalizationParams


class TrainForm(Container):
    """All training parameters, defaulting to the engine's reference values.

    Parameters
    ----------
    normalization : NormalizationParams
        Initial normalization (the workflow's default).
    devices : list of str
        Devices this machine has (``available_devices()``); "auto" is added first.

    Attributes
    ----------
    normalization_form : NormalizationForm
    patch, latent, steps, batch, seed, hidden_width, depth : magicgui.widgets.SpinBox
        (``hidden_width``, not ``width``: a magicgui widget's ``width`` is its size on screen)
    lr, cosine, gradient, kld, free_bits, perm : magicgui.widgets.FloatSpinBox
    device, arch : magicgui.widgets.ComboBox
    show_advanced : magicgui.widgets.CheckBox
        Shows the ``advanced`` container (critic weights and architecture; hidden at first).
    """

    def __init__(self, normalization: NormalizationParams, devices: list[str]) -> None:
        mc, tc, cc = ModelConfig(in_channels=1), TrainConfig(), CriticConfig()
        norm = NormalizationForm("Normalization", normalization)

        basic = {
            "patch": int_spin(mc.patch_size, 2, 256, label="Patch size",
                              tip="patch side in pixels (tile size too)"),
            "latent": int_spin(mc.latent_dim, 1, 1024, label="Latent dimensions",
                               tip="latent dimensions per patch"),
            "steps": int_spin(tc.steps, 1, 10_000_000, step=100, label="Steps"),
            "batch": int_spin(tc.batch_size, 1, 65536, step=32, label="Batch size"),
            "lr": float_spin(tc.lr, 1e-6, 1.0, decimals=5, step=1e-4, label="Learning rate"),
            "seed": int_spin(tc.seed, 0, 2**31 - 1, label="Seed"),
            "device": ComboBox(choices=["auto", *devices], value="auto", label="Device",
                               tooltip="auto: the first GPU if there is one, else the CPU"),
        }
        model = labelled(basic.values())

        advanced_widgets = {
            "cosine": float_spin(cc.cosine_weight, 0.0, 100.0, decimals=3, step=0.1, label="Cosine"),
            "gradient": float_spin(cc.gradient_weight, 0.0, 100.0, decimals=3, step=0.1,
                                   label="Gradient"),
            "kld": float_spin(cc.kld_scale, 0.0, 100.0, decimals=5, step=1e-3, label="KLD scale"),
            "free_bits": float_spin(cc.free_bits, 0.0, 100.0, decimals=2, step=0.5, label="Free bits",
                                    tip="nats per latent dimension (free bits)"),
            "perm": float_spin(cc.perm_loss_scale, 0.0, 100.0, decimals=3, step=0.1,
                               label="Permutation"),
            "arch": ComboBox(choices=["mlp", "conv"], value=mc.arch, label="Arch"),
            "hidden_width": int_spin(mc.width, 1, 65536, step=32, label="Width"),
            "depth": int_spin(mc.depth, 0, 64, label="Depth"),
        }
        critic_rows, arch_rows = list(advanced_widgets.values())[:5], list(advanced_widgets.values())[5:]
        advanced = Container(widgets=[heading("Critic weights (reference defaults)"),
                                      labelled(critic_rows), heading("Architecture"),
                                      labelled(arch_rows)], labels=False, visible=False)
        show_advanced = CheckBox(text="Advanced: critic weights and architecture", value=False)
        show_advanced.changed.connect(lambda on: setattr(advanced, "visible", on))

        super().__init__(widgets=[norm, heading("Model and training"), model, show_advanced, advanced],
                         labels=False)
        self.margins = (0, 0, 0, 0)
        self.normalization_form, self.model_box, self.advanced = norm, model, advanced
        self.show_advanced = show_advanced
        for name, widget in {**basic, **advanced_widgets}.items():
            setattr(self, name, widget)

    # values ----------------------------------------------------------------------------------
    def normalization(self) -> NormalizationParams:
        return self.normalization_form.params()

    def model_config(self) -> dict:
        return {"patch_size": self.patch.value, "latent_dim": self.latent.value,
                "width": self.hidden_width.value, "depth": self.depth.value, "arch": self.arch.value}

    def critic_config(self) -> CriticConfig:
        return CriticConfig(cosine_weight=self.cosine.value, gradient_weight=self.gradient.value,
                            kld_scale=self.kld.value, free_bits=self.free_bits.value,
                            perm_loss_scale=self.perm.value)

    def train_config(self) -> TrainConfig:
        steps = self.steps.value
        # validate ~10 times a run so the plot and the final report have figures
        return TrainConfig(steps=steps, batch_size=self.batch.value, lr=self.lr.value,
                           seed=self.seed.value, device=self.device.value,
                           val_every=max(1, min(TrainConfig().val_every, steps // 10 or 1)))

    def set_values(self, *, model_config: dict | None = None, critic: CriticConfig | None = None,
                   train: TrainConfig | None = None) -> None:
        """Show a model's settings (e.g. the one being resumed)."""
        boxes = {"patch_size": self.patch, "latent_dim": self.latent, "width": self.hidden_width,
                 "depth": self.depth}
        for key, value in (model_config or {}).items():
            if key in boxes:
                boxes[key].value = int(value)
            elif key == "arch":
                self.arch.value = str(value)
        if critic is not None:
            c = asdict(critic)
            for key, box in (("cosine_weight", self.cosine), ("gradient_weight", self.gradient),
                             ("kld_scale", self.kld), ("free_bits", self.free_bits),
                             ("perm_loss_scale", self.perm)):
                box.value = float(c[key])
        if train is not None:
            self.batch.value = train.batch_size
            self.lr.value = train.lr

    def set_architecture_locked(self, locked: bool) -> None:
        """Resuming fixes the architecture and the normalization (they come from the file)."""
        for box in (self.patch, self.latent, self.hidden_width, self.depth, self.arch):
            box.enabled = not locked
        self.normalization_form.enabled = not locked
