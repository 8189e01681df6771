"""The normalization controls shared by "Normalize channels" and "Train VAE".

One check box and value per optional step (hot-pixel filter, arcsinh, clip), in the order
:class:`~napari_imc_vae.preprocessing.Normalizer` runs them, plus the z-score check box;
:meth:`NormalizationBox.params` turns them into :class:`NormalizationParams`. Qt only: no
torch, so the Normalize widget stays light.
"""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QGroupBox, QWidget

from napari_imc_vae.preprocessing import NormalizationParams


def spin(value: float, lo: float, hi: float, *, decimals: int = 2, step: float = 1.0,
         tip: str = "") -> QDoubleSpinBox:
    """A float spin box.

    Parameters
    ----------
    value : float
        Initial value.
    lo, hi : float
        Range.
    decimals : int
        Digits shown after the point.
    step : float
        Arrow-key / wheel increment.
    tip : str
        Tooltip.

    Returns
    -------
    QDoubleSpinBox
    """
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class NormalizationBox(QGroupBox):
    """A group box of the normalization steps, each value enabled only while its step is on.

    Parameters
    ----------
    title : str
        The group box's title.
    initial : NormalizationParams
        Which steps start checked, and their values (a skipped step shows the usual value:
        T = 50, cofactor 5, 99.9th percentile).

    Attributes
    ----------
    hot_on, arcsinh_on, clip_on, zscore : QCheckBox
    hot_threshold, cofactor, clip_percentile : QDoubleSpinBox
    form : QFormLayout
        The box's layout; a widget may add rows of its own below the steps.
    """

    def __init__(self, title: str, initial: NormalizationParams,
                 parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        n = initial
        self.hot_on = QCheckBox("Hot-pixel filter, T")
        self.hot_on.setChecked(n.hot_pixel_threshold is not None)
        self.hot_threshold = spin(n.hot_pixel_threshold or 50.0, 0.0, 1e6, decimals=1, step=5.0,
                                  tip="steinbock's rule: a pixel more than T counts above "
                                      "all 8 neighbours is replaced by their max")
        self.arcsinh_on = QCheckBox("arcsinh, cofactor")
        self.arcsinh_on.setChecked(n.arcsinh_cofactor is not None)
        self.cofactor = spin(n.arcsinh_cofactor or 5.0, 0.01, 1e6, step=1.0,
                             tip="arcsinh(x / cofactor); 1 or 5 for IMC")
        self.clip_on = QCheckBox("Clip at percentile")
        self.clip_on.setChecked(n.clip_percentile is not None)
        self.clip_percentile = spin(n.clip_percentile or 99.9, 50.0, 100.0, decimals=3, step=0.1,
                                    tip="per channel, after arcsinh")
        self.zscore = QCheckBox("z-score each channel")
        self.zscore.setChecked(n.zscore)
        for check, box in ((self.hot_on, self.hot_threshold), (self.arcsinh_on, self.cofactor),
                           (self.clip_on, self.clip_percentile)):
            check.toggled.connect(box.setEnabled)
            box.setEnabled(check.isChecked())

        self.form = QFormLayout()
        self.form.addRow(self.hot_on, self.hot_threshold)
        self.form.addRow(self.arcsinh_on, self.cofactor)
        self.form.addRow(self.clip_on, self.clip_percentile)
        self.form.addRow(self.zscore)
        self.setLayout(self.form)

    def params(self) -> NormalizationParams:
        """The normalization the controls describe (validated by :class:`NormalizationParams`).

        Returns
        -------
        NormalizationParams
            An unchecked step is None.
        """
        return NormalizationParams(
            hot_pixel_threshold=self.hot_threshold.value() if self.hot_on.isChecked() else None,
            arcsinh_cofactor=self.cofactor.value() if self.arcsinh_on.isChecked() else None,
            clip_percentile=self.clip_percentile.value() if self.clip_on.isChecked() else None,
            zscore=self.zscore.isChecked(),
        )
