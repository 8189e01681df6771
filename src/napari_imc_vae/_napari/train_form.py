"""The parameter form of the "Train VAE" widget: normalization, model, training, advanced.

A magicgui :class:`~magicgui.widgets.Container` of typed widgets with the engine's defaults;
:meth:`TrainForm.normalization`, :meth:`TrainForm.model_config`, :meth:`TrainForm.critic_config`
and :meth:`TrainForm.train_config` turn them into the engine's config objects (which
validate them), :meth:`TrainForm.budget_minutes` into the training budget. The dock widget
shows it through ``form.native``.
"""

from __future__ import annotations

from dataclasses import asdict, replace

from magicgui.widgets import CheckBox, ComboBox, Container

from napari_imc_vae._napari.normalization_form import (
    NormalizationForm,
    float_spin,
    heading,
    int_spin,
    labelled,
)
from napari_imc_vae._napari.train_task import validation_interval
from napari_imc_vae.engine.training.budget import DEFAULT_BUDGET, PRESETS, parse_budget
from napari_imc_vae.engine.model.critic import CriticConfig
from napari_imc_vae.engine.model.vae import ModelConfig
from napari_imc_vae.engine.training.trainer import TrainConfig
from napari_imc_vae.preprocessing import NormalizationParams


#: The budget choices other than the presets: a number of minutes, or exact steps.
MINUTES, EXACT_STEPS = "minutes", "steps"


def budget_choices() -> list[tuple[str, str]]:
    """``(label, value)`` of the budget box: the presets with their minutes, then the two others."""
    presets = [(f"{name.title()} ({minutes:g} min)", name) for name, minutes in PRESETS.items()]
    return [*presets, ("Minutes…", MINUTES), ("Exact steps", EXACT_STEPS)]


class TrainForm(Container):
    """All training parameters, defaulting to the engine's reference values.

    Parameters
    ----------
    normalization : NormalizationParams
        Initial normalization (``preprocessing.params.DEFAULT_NORMALIZATION``).
    devices : list of str
        Devices this machine has (``available_devices()``); "auto" is added first.

    Attributes
    ----------
    normalization_form : NormalizationForm
    budget : magicgui.widgets.ComboBox
        How long to train: a preset of :data:`~napari_imc_vae.engine.training.budget.PRESETS`,
        :data:`MINUTES` (the ``minutes`` box) or :data:`EXACT_STEPS` (the ``steps`` box); each
        box shows only for its choice. Setting ``steps`` chooses exact steps.
    minutes : magicgui.widgets.FloatSpinBox
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
            "budget": ComboBox(choices=budget_choices(), value=DEFAULT_BUDGET, label="Budget",
                               tooltip="How long to train. A budget becomes a number of steps from a "
                                       "few steps timed on this machine, and is the time limit too"),
            "minutes": float_spin(PRESETS[DEFAULT_BUDGET], 0.01, 100_000.0, decimals=2, step=1.0,
                                  label="Minutes", tip="minutes of training"),
            "steps": int_spin(tc.steps, 1, 10_000_000, step=100, label="Steps",
                              tip="exactly this many steps, however long they take"),
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
        self._critic_rest = cc
        self.normalization_form, self.model_box, self.advanced = norm, model, advanced
        self.show_advanced = show_advanced
        for name, widget in {**basic, **advanced_widgets}.items():
            setattr(self, name, widget)
        self.budget.changed.connect(self._show_budget_box)
        # the steps box is hidden under a budget: a step count set (by a script) means exact steps
        self.steps.changed.connect(lambda _: setattr(self.budget, "value", EXACT_STEPS))
        self._show_budget_box(self.budget.value)

    def _show_budget_box(self, choice: str) -> None:
        self.minutes.visible = choice == MINUTES
        self.steps.visible = choice == EXACT_STEPS

    # values ----------------------------------------------------------------------------------
    def normalization(self) -> NormalizationParams:
        return self.normalization_form.params()

    def model_config(self) -> dict:
        return {"patch_size": self.patch.value, "latent_dim": self.latent.value,
                "width": self.hidden_width.value, "depth": self.depth.value, "arch": self.arch.value}

    def critic_config(self) -> CriticConfig:
        # settings without a box (kl_target) come from the model being resumed, else the defaults
        return replace(self._critic_rest, cosine_weight=self.cosine.value, gradient_weight=self.gradient.value,
                       kld_scale=self.kld.value, free_bits=self.free_bits.value,
                       perm_loss_scale=self.perm.value)

    def train_config(self) -> TrainConfig:
        """The training settings; under a budget, ``steps`` is replaced once the run is timed."""
        steps = self.steps.value
        return TrainConfig(steps=steps, batch_size=self.batch.value, lr=self.lr.value,
                           seed=self.seed.value, device=self.device.value,
                           val_every=validation_interval(steps))

    def budget_minutes(self) -> float | None:
        """Minutes of training the budget box asks for; None for exact steps."""
        choice = self.budget.value
        if choice == EXACT_STEPS:
            return None
        return parse_budget(self.minutes.value if choice == MINUTES else choice)

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
        self._critic_rest = critic or CriticConfig()
        if critic is not None:
            c = asdict(critic)
            for key, box in (("cosine_weight", self.cosine), ("gradient_weight", self.gradient),
                             ("kld_scale", self.kld), ("free_bits", self.free_bits),
                             ("perm_loss_scale", self.perm)):
                box.value = float(c[key])
        if train is not None:
            self.batch.value = train.batch_size
            self.lr.value = train.lr
            self.seed.value = train.seed  # resuming keeps the model's seed, as the CLI does

    def set_architecture_locked(self, locked: bool) -> None:
        """Resuming fixes the architecture and the normalization (they come from the file)."""
        for box in (self.patch, self.latent, self.hidden_width, self.depth, self.arch):
            box.enabled = not locked
        self.normalization_form.enabled = not locked
