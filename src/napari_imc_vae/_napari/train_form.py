"""The parameter forms of the "Train VAE" widget: normalization, model, training, advanced.

Plain Qt input widgets with the engine's defaults; :meth:`TrainForm.values` turns them into
the engine's config objects (which validate them).
"""

from __future__ import annotations

from dataclasses import asdict

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_imc_vae._napari.normalization_form import NormalizationBox, spin
from napari_imc_vae.engine.critic import CriticConfig
from napari_imc_vae.engine.model import ModelConfig
from napari_imc_vae.engine.trainer import TrainConfig
from napari_imc_vae.preprocessing import NormalizationParams


def ispin(value: int, lo: int, hi: int, *, step: int = 1, tip: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class Collapsible(QWidget):
    """A header button that shows or hides its content (closed by default)."""

    def __init__(self, title: str, content: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.RightArrow)
        self.button.setStyleSheet("QToolButton { border: none; }")
        self.content = content
        content.setVisible(False)
        self.button.toggled.connect(self.set_open)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(content)

    def set_open(self, open_: bool) -> None:
        self.button.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.content.setVisible(open_)


class TrainForm(QWidget):
    """All training parameters, defaulting to the engine's reference values.

    Parameters
    ----------
    normalization : NormalizationParams
        Initial normalization (the workflow's default).
    devices : list of str
        Devices this machine has (``available_devices()``); "auto" is added first.
    """

    def __init__(self, normalization: NormalizationParams, devices: list[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        n, mc, tc, cc = normalization, ModelConfig(in_channels=1), TrainConfig(), CriticConfig()
        # normalization (the Normalize widget's steps)
        self.normalization_box = box = NormalizationBox("Normalization", n)
        self.hot_on, self.hot_threshold = box.hot_on, box.hot_threshold
        self.arcsinh_on, self.cofactor = box.arcsinh_on, box.cofactor
        self.clip_on, self.clip_percentile = box.clip_on, box.clip_percentile
        self.zscore = box.zscore

        # model and training
        self.patch = ispin(mc.patch_size, 2, 256, tip="patch side in pixels (tile size too)")
        self.latent = ispin(mc.latent_dim, 1, 1024, tip="latent dimensions per patch")
        self.steps = ispin(tc.steps, 1, 10_000_000, step=100)
        self.batch = ispin(tc.batch_size, 1, 65536, step=32)
        self.lr = spin(tc.lr, 1e-6, 1.0, decimals=5, step=1e-4)
        self.seed = ispin(tc.seed, 0, 2**31 - 1)
        self.device = QComboBox()
        self.device.addItems(["auto", *devices])
        self.device.setToolTip("auto: the first GPU if there is one, else the CPU")
        form = QFormLayout()
        form.addRow("Patch size", self.patch)
        form.addRow("Latent dimensions", self.latent)
        form.addRow("Steps", self.steps)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("Seed", self.seed)
        form.addRow("Device", self.device)
        self.model_box = QGroupBox("Model and training")
        self.model_box.setLayout(form)

        # advanced: critic weights and architecture
        self.cosine = spin(cc.cosine_weight, 0.0, 100.0, decimals=3, step=0.1)
        self.gradient = spin(cc.gradient_weight, 0.0, 100.0, decimals=3, step=0.1)
        self.kld = spin(cc.kld_scale, 0.0, 100.0, decimals=5, step=1e-3)
        self.free_bits = spin(cc.free_bits, 0.0, 100.0, decimals=2, step=0.5,
                              tip="nats per latent dimension (free bits)")
        self.perm = spin(cc.perm_loss_scale, 0.0, 100.0, decimals=3, step=0.1)
        self.arch = QComboBox()
        self.arch.addItems(["mlp", "conv"])
        self.arch.setCurrentText(mc.arch)
        self.width = ispin(mc.width, 1, 65536, step=32)
        self.depth = ispin(mc.depth, 0, 64)
        form = QFormLayout()
        form.addRow(QLabel("Critic weights (reference defaults)"))
        form.addRow("Cosine", self.cosine)
        form.addRow("Gradient", self.gradient)
        form.addRow("KLD scale", self.kld)
        form.addRow("Free bits", self.free_bits)
        form.addRow("Permutation", self.perm)
        form.addRow(QLabel("Architecture"))
        form.addRow("Arch", self.arch)
        form.addRow("Width", self.width)
        form.addRow("Depth", self.depth)
        inner = QWidget()
        inner.setLayout(form)
        self.advanced = Collapsible("Advanced", inner)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.normalization_box)
        layout.addWidget(self.model_box)
        layout.addWidget(self.advanced)

    # values ----------------------------------------------------------------------------------
    def normalization(self) -> NormalizationParams:
        return self.normalization_box.params()

    def model_config(self) -> dict:
        return {"patch_size": self.patch.value(), "latent_dim": self.latent.value(),
                "width": self.width.value(), "depth": self.depth.value(),
                "arch": self.arch.currentText()}

    def critic_config(self) -> CriticConfig:
        return CriticConfig(cosine_weight=self.cosine.value(), gradient_weight=self.gradient.value(),
                            kld_scale=self.kld.value(), free_bits=self.free_bits.value(),
                            perm_loss_scale=self.perm.value())

    def train_config(self) -> TrainConfig:
        steps = self.steps.value()
        # validate ~10 times a run so the plot and the final report have figures
        return TrainConfig(steps=steps, batch_size=self.batch.value(), lr=self.lr.value(),
                           seed=self.seed.value(), device=self.device.currentText(),
                           val_every=max(1, min(TrainConfig().val_every, steps // 10 or 1)))

    def set_values(self, *, model_config: dict | None = None, critic: CriticConfig | None = None,
                   train: TrainConfig | None = None) -> None:
        """Show a model's settings (e.g. the one being resumed)."""
        boxes = {"patch_size": self.patch, "latent_dim": self.latent, "width": self.width,
                 "depth": self.depth}
        for key, value in (model_config or {}).items():
            if key in boxes:
                boxes[key].setValue(int(value))
            elif key == "arch":
                self.arch.setCurrentText(str(value))
        if critic is not None:
            c = asdict(critic)
            for key, box in (("cosine_weight", self.cosine), ("gradient_weight", self.gradient),
                             ("kld_scale", self.kld), ("free_bits", self.free_bits),
                             ("perm_loss_scale", self.perm)):
                box.setValue(float(c[key]))
        if train is not None:
            self.batch.setValue(train.batch_size)
            self.lr.setValue(train.lr)

    def set_architecture_locked(self, locked: bool) -> None:
        """Resuming fixes the architecture and the normalization (they come from the file)."""
        for box in (self.patch, self.latent, self.width, self.depth, self.arch):
            box.setEnabled(not locked)
        self.normalization_box.setEnabled(not locked)
