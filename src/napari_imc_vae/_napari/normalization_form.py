"""The normalization controls shared by "Normalize channels" and "Train VAE" (magicgui).

One check box and value per optional step (hot-pixel filter, arcsinh, clip), in the order
:class:`~napari_imc_vae.preprocessing.Normalizer` runs them, plus the z-score check box;
:meth:`NormalizationForm.params` turns them into :class:`NormalizationParams`. A magicgui
:class:`~magicgui.widgets.Container` of typed widgets (napari's recommended way to build a
form); no torch, so the Normalize widget stays light.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, Container, FloatSpinBox, Label, SpinBox

from napari_imc_vae.preprocessing import NormalizationParams


def float_spin(value: float, lo: float, hi: float, *, decimals: int = 2, step: float = 1.0,
               tip: str = "", label: str = "", name: str = "") -> FloatSpinBox:
    """A float spin box that shows ``decimals`` digits after the point.

    Parameters
    ----------
    value : float
        Initial value.
    lo, hi : float
        Range.
    decimals : int
        Digits shown (and kept) after the point; set before the value, so a small value
        such as 0.001 is not rounded to the two digits Qt starts with.
    step : float
        Arrow-key / wheel increment.
    tip, label, name : str
        Tooltip; row label in a labelled container; name in the container.

    Returns
    -------
    magicgui.widgets.FloatSpinBox
    """
    box = FloatSpinBox(min=lo, max=hi, step=step, tooltip=tip or None, label=label or None,
                       name=name or None)
    box.native.setDecimals(decimals)
    box.value = value
    return box


def int_spin(value: int, lo: int, hi: int, *, step: int = 1, tip: str = "", label: str = "",
             name: str = "") -> SpinBox:
    """An integer spin box (see :func:`float_spin`)."""
    return SpinBox(value=value, min=lo, max=hi, step=step, tooltip=tip or None,
                   label=label or None, name=name or None)


def labelled(widgets, **kwargs) -> Container:
    """A container showing each widget's ``label`` beside it, the labels one width.

    Widgets are added after the container is made: magicgui lines the labels up only for
    widgets added to a finished container, not for those given to its constructor.
    """
    container = Container(**kwargs)
    container.extend(list(widgets))
    return container


def heading(text: str) -> Label:
    """A bold section title inside a form."""
    label = Label(value=text)
    label.native.setStyleSheet("font-weight: bold;")
    return label


class NormalizationForm(Container):
    """The normalization steps, each value enabled only while its step is on.

    Parameters
    ----------
    title : str
        Shown above the steps.
    initial : NormalizationParams
        Which steps start checked, and their values (a skipped step shows the usual value:
        T = 50, cofactor 5, 99.9th percentile).

    Attributes
    ----------
    hot_on, arcsinh_on, clip_on, zscore : magicgui.widgets.CheckBox
    hot_threshold, cofactor, clip_percentile : magicgui.widgets.FloatSpinBox
        A widget may ``append`` rows of its own below the steps.
    """

    def __init__(self, title: str, initial: NormalizationParams) -> None:
        n = initial
        hot_on = CheckBox(text="Hot-pixel filter, T", value=n.hot_pixel_threshold is not None)
        hot_threshold = float_spin(n.hot_pixel_threshold or 50.0, 0.0, 1e6, decimals=1, step=5.0,
                                   tip="steinbock's rule: a pixel more than T counts above "
                                       "all 8 neighbours is replaced by their max")
        arcsinh_on = CheckBox(text="arcsinh, cofactor", value=n.arcsinh_cofactor is not None)
        cofactor = float_spin(n.arcsinh_cofactor or 5.0, 0.01, 1e6, step=1.0,
                              tip="arcsinh(x / cofactor); 1 or 5 for IMC")
        clip_on = CheckBox(text="Clip at percentile", value=n.clip_percentile is not None)
        clip_percentile = float_spin(n.clip_percentile or 99.9, 50.0, 100.0, decimals=3, step=0.1,
                                     tip="per channel, after arcsinh")
        zscore = CheckBox(text="z-score each channel", value=n.zscore)
        rows = []
        for name, check, box in (("hot_row", hot_on, hot_threshold),
                                 ("arcsinh_row", arcsinh_on, cofactor),
                                 ("clip_row", clip_on, clip_percentile)):
            check.changed.connect(lambda on, box=box: setattr(box, "enabled", on))
            box.enabled = check.value
            row = Container(widgets=[check, box], layout="horizontal", labels=False, name=name)
            row.margins = (0, 0, 0, 0)
            rows.append(row)
        super().__init__(widgets=[heading(title), *rows, zscore], labels=False)
        self.hot_on, self.hot_threshold = hot_on, hot_threshold
        self.arcsinh_on, self.cofactor = arcsinh_on, cofactor
        self.clip_on, self.clip_percentile = clip_on, clip_percentile
        self.zscore = zscore

    def params(self) -> NormalizationParams:
        """The normalization the controls describe (validated by :class:`NormalizationParams`).

        Returns
        -------
        NormalizationParams
            An unchecked step is None.
        """
        return NormalizationParams(
            hot_pixel_threshold=self.hot_threshold.value if self.hot_on.value else None,
            arcsinh_cofactor=self.cofactor.value if self.arcsinh_on.value else None,
            clip_percentile=self.clip_percentile.value if self.clip_on.value else None,
            zscore=bool(self.zscore.value),
        )
