"""The quality report's figures, thresholds and words (DESIGN §4).

Every threshold is defined once, here, and the words read it: :data:`THRESHOLDS` for the
healthy values on smooth data, and named margins for the comparisons. A verdict is given
only where its comparison is fair: against PCA-k and the mean predictor only when they were
fitted elsewhere than on the patches measured (the training patches, or the baseline stored
in the model file), and the absolute thresholds only on smooth data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from napari_imc_vae.engine.quality.measures import reconstruction_measures

__all__ = ["Measures", "QualityReport", "THRESHOLDS", "SMOOTH_DATA", "NO_BETTER_THAN_MEAN", "WORSE_THAN_CONSTANT"]

#: Healthy values on smooth inputs (DESIGN §4): R² and ratios at least, cosine loss at most.
THRESHOLDS = {"r2": 0.8, "sharpness_ratio": 0.7, "diversity_ratio": 0.7, "active_fraction": 0.25,
              "cosine_loss": 0.1, "perm_accuracy": 0.95}
#: ``target_smoothness`` at or above which the data count as smooth (the thresholds apply).
SMOOTH_DATA = 0.5
#: A model whose R² exceeds the mean predictor's by no more than this has learned nothing useful.
NO_BETTER_THAN_MEAN = 0.01
#: R² below this is worse than predicting each channel by its mean over the measured patches
#: (which scores exactly 0): worse than any constant, whatever the data, baseline or not.
WORSE_THAN_CONSTANT = 0.0


@dataclass
class Measures:
    """DESIGN §4 measures of one predictor on one target; None where not applicable."""

    r2: float
    mse: float
    sharpness_ratio: float
    diversity_ratio: float
    cosine_loss: float
    active_units: int | None = None
    active_fraction: float | None = None
    perm_accuracy: float | None = None
    perm_used: int | None = None
    perm_left_out: int | None = None

    @classmethod
    def measure(cls, x, x_hat, **extra) -> "Measures":
        """From whole arrays (:func:`~napari_imc_vae.engine.quality.measures.reconstruction_measures`:
        patches touching NaN/Inf left out, as in the report)."""
        return cls(**reconstruction_measures(x, x_hat), **extra)


_EMPTY = {f.name: None for f in fields(Measures)}


def _json(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(u) for u in v]
    return v


def _f(v, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else (
        str(v) if isinstance(v, int) else f"{v:.{digits}f}")


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


@dataclass
class QualityReport:
    """Model, PCA-k and mean predictor on the same held-out patches.

    Attributes
    ----------
    model : Measures
        Against the held-out patches.
    pca, mean : Measures or None
        PCA-k and the mean predictor fitted where :attr:`baseline_source` says; None when
        there is no baseline (a model file of the older format).
    model_smooth, pca_smooth, mean_smooth : Measures (or None as above)
        Same reconstructions against the smoothed target (Gaussian σ = 1 px).
    latent_dim : int
    pca_k : int or None
        Components of the baseline.
    n_val : int
        Patches measured (those without NaN/Inf pixels).
    n_train : int or None
        Patches the baseline was fitted on.
    target_smoothness : float
        ``Σ‖∇smooth(x)‖² / Σ‖∇x‖²`` (median over channels): near 1 for smooth data,
        near 0 for shot noise.
    smooth_data : bool
        Whether the absolute thresholds apply.
    smooth_source : str
        ``"image"`` when the caller passed patches cut from a smoothed image,
        ``"patch"`` when each patch was smoothed on its own.
    baseline_source : str or None
        Where the baseline was fitted, in plain words.
    n_skipped_nonfinite : int
        Patches left out because they touch a NaN/Inf pixel.
    n_nonfinite_reconstructions : int
        Measured patches whose reconstruction by the model holds NaN/Inf.
    """

    model: Measures
    pca: Measures | None
    mean: Measures | None
    model_smooth: Measures
    pca_smooth: Measures | None
    mean_smooth: Measures | None
    latent_dim: int
    pca_k: int | None
    n_val: int
    n_train: int | None
    target_smoothness: float
    smooth_data: bool
    smooth_source: str = "patch"
    baseline_source: str | None = None
    n_skipped_nonfinite: int = 0
    n_nonfinite_reconstructions: int = 0
    problems: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.problems = self._problems()

    @property
    def has_baseline(self) -> bool:
        return self.pca is not None and self.mean is not None

    def _problems(self) -> list[str]:
        m, p, smooth, th = self.model, self.pca, self.smooth_data, THRESHOLDS
        out = []
        if self.n_nonfinite_reconstructions:
            out.append("nonfinite_reconstruction")
        if m.active_fraction is not None and m.active_fraction < th["active_fraction"]:
            out.append("posterior_collapse")
        if (p is not None and m.sharpness_ratio < p.sharpness_ratio) or (
                smooth and m.sharpness_ratio < th["sharpness_ratio"]):
            out.append("blur")
        if smooth and m.diversity_ratio < th["diversity_ratio"] or (
                not smooth and p is not None and m.diversity_ratio < p.diversity_ratio):
            out.append("averaged_outputs")
        if p is not None and m.r2 < p.r2:
            out.append("below_pca")
        if self.mean is not None and m.r2 <= self.mean.r2 + NO_BETTER_THAN_MEAN:
            out.append("no_better_than_mean")
        elif m.r2 < WORSE_THAN_CONSTANT:
            out.append("worse_than_constant")
        if smooth and m.r2 < th["r2"]:
            out.append("underfit")
        if smooth and m.cosine_loss > th["cosine_loss"]:
            out.append("channel_mix")
        if m.perm_accuracy is not None and m.perm_accuracy < th["perm_accuracy"]:
            out.append("orientation")
        return out

    def verdicts(self) -> list[str]:
        """Plain-language findings, most serious first."""
        m, p, k, d, th = self.model, self.pca, self.pca_k, self.latent_dim, THRESHOLDS
        probs, out = set(self.problems), []
        if "nonfinite_reconstruction" in probs:
            out.append(f"The model's reconstruction of {self.n_nonfinite_reconstructions} of {self.n_val} "
                       f"patches holds NaN/Inf values: the model is broken (diverged training?); "
                       f"its measures are undefined.")
        if "posterior_collapse" in probs:
            out.append(f"Posterior collapse: only {m.active_units} of {d} latent dimensions carry "
                       f"information (< {th['active_fraction']:.0%}); the decoder ignores most of the latent.")
        if not self.has_baseline:
            out.append("The model file holds no stored baseline (older format), so there is no verdict "
                       "against PCA or the mean patch; retrain (or re-save after training) to get one.")
        elif _finite(m.r2) and _finite(p.r2):
            dr2 = m.r2 - p.r2
            if dr2 >= 0:
                out.append(f"Beats PCA-{k} by ΔR² = {dr2:+.3f} (R² {m.r2:.3f} vs {p.r2:.3f}).")
            else:
                out.append(f"Falls short of PCA-{k} by ΔR² = {dr2:+.3f} (R² {m.r2:.3f} vs {p.r2:.3f}); "
                           f"a linear projection explains more.")
        else:
            out.append(f"R² is undefined (R² {_f(m.r2)}, PCA-{k} {_f(p.r2)}): no verdict against PCA.")
        if "no_better_than_mean" in probs:
            out.append(f"No better than predicting the mean patch (R² within {NO_BETTER_THAN_MEAN} of its "
                       f"{self.mean.r2:.3f}): the model has learned nothing useful.")
        if "worse_than_constant" in probs:
            out.append(f"Worse than a constant: R² {m.r2:.3f} is below {WORSE_THAN_CONSTANT} (each channel "
                       f"predicted by its mean over these patches); the reconstructions mislead.")
        if "blur" in probs:
            below_pca = p is not None and m.sharpness_ratio < p.sharpness_ratio
            ref = f"PCA-{k}'s {p.sharpness_ratio:.3f}" if below_pca else f"{th['sharpness_ratio']}"
            out.append(f"Blurry: sharpness ratio {m.sharpness_ratio:.3f} is below {ref}; "
                       f"reconstructions lose edges and fine structure.")
        elif p is not None:
            out.append(f"Sharpness ratio {_f(m.sharpness_ratio)} "
                       f"({_ratio_text(m.sharpness_ratio, p.sharpness_ratio)} PCA-{k}).")
        else:
            out.append(f"Sharpness ratio {_f(m.sharpness_ratio)}.")
        if "averaged_outputs" in probs:
            ref = f"{th['diversity_ratio']}" if self.smooth_data else f"PCA-{k}'s {p.diversity_ratio:.3f}"
            out.append(f"Averaged outputs: diversity ratio {m.diversity_ratio:.3f} is below {ref} — "
                       f"reconstructions vary less across patches than the data do; samples look alike.")
        if "underfit" in probs:
            out.append(f"Underfits smooth data: R² {m.r2:.3f} is below {th['r2']}.")
        if "channel_mix" in probs:
            out.append(f"Channel mix off: cosine loss {m.cosine_loss:.3f} is above {th['cosine_loss']}.")
        if "orientation" in probs:
            out.append(f"Orientation predictions inconsistent across rotations/flips: accuracy "
                       f"{m.perm_accuracy:.3f} < {th['perm_accuracy']}.")
        if m.perm_used is not None and m.perm_left_out and m.perm_left_out > m.perm_used:
            out.append(f"{m.perm_left_out} of {m.perm_used + m.perm_left_out} patches are symmetric "
                       f"(e.g. empty) and have no orientation; permutation accuracy rests on few patches.")
        if self.n_skipped_nonfinite:
            out.append(f"{self.n_skipped_nonfinite} of {self.n_skipped_nonfinite + self.n_val} patches touch "
                       f"NaN/Inf pixels and were left out of every measure.")
        if not self.smooth_data:
            against = f" (PCA-{k} {_f(self.pca_smooth.r2)})" if self.pca_smooth is not None else ""
            out.append(f"The data are shot-noisy (σ=1 px smoothing keeps {_f(self.target_smoothness * 100, 0)}% "
                       f"of the gradient energy, below {SMOOTH_DATA:.0%}): the absolute thresholds do not "
                       f"apply; against the smoothed target R² is {_f(self.model_smooth.r2)}{against}.")
        if not probs:
            out.append("No problem found." if self.has_baseline else
                       "No problem found by the checks that need no baseline.")
        return out

    def to_dict(self) -> dict:
        """Plain, JSON-safe dict (NaN becomes None), verdicts included.

        Missing baselines appear as dicts of None (``report["pca"]["r2"]`` is null), and
        ``"baseline"`` says where the baseline was fitted and with how many components.
        """
        d = _json(asdict(self))
        for key in ("pca", "mean", "pca_smooth", "mean_smooth"):
            if d[key] is None:
                d[key] = dict(_EMPTY)
        d["baseline"] = {"fitted_on": self.baseline_source, "k": self.pca_k}
        d["verdicts"] = self.verdicts()
        return d

    def checks(self) -> dict[str, list[tuple[str, bool]]]:
        """Per measure, the tests the verdicts applied to it and whether each passed.

        Read off :attr:`problems`, so a table built from it cannot contradict the verdicts:
        on shot-noisy data, for instance, the absolute thresholds of DESIGN §4 are not applied,
        and the tests listed are those that were (the comparison with PCA-k fitted where
        :attr:`baseline_source` says).

        Returns
        -------
        dict of str to list of (str, bool)
            Keyed by :class:`Measures` field (``r2``, ``sharpness_ratio``, ``diversity_ratio``,
            ``cosine_loss``, ``active_units``, ``perm_accuracy``): each test in words
            (``"≥ PCA-16"``, ``"≥ 0.8"``) and whether it passed; an empty list when none applied.
        """
        th, smooth, probs = THRESHOLDS, self.smooth_data, set(self.problems)
        pca = f"PCA-{self.pca_k}" if self.pca is not None else None
        m = self.model
        tests: dict[str, list[tuple[str, str]]] = {key: [] for key in (
            "r2", "sharpness_ratio", "diversity_ratio", "cosine_loss", "active_units", "perm_accuracy")}
        if smooth:
            tests["r2"].append((f"≥ {th['r2']}", "underfit"))
            tests["sharpness_ratio"].append((f"≥ {th['sharpness_ratio']}", "blur"))
            tests["diversity_ratio"].append((f"≥ {th['diversity_ratio']}", "averaged_outputs"))
            tests["cosine_loss"].append((f"≤ {th['cosine_loss']}", "channel_mix"))
        if pca:
            tests["r2"].append((f"≥ {pca}", "below_pca"))
            tests["sharpness_ratio"].append((f"≥ {pca}", "blur"))
            if not smooth:
                tests["diversity_ratio"].append((f"≥ {pca}", "averaged_outputs"))
        if self.mean is not None:
            tests["r2"].append((f"> mean + {NO_BETTER_THAN_MEAN:g}", "no_better_than_mean"))
        if self.mean is None or "worse_than_constant" in probs:
            tests["r2"].append((f"≥ {WORSE_THAN_CONSTANT:g}", "worse_than_constant"))
        if m.active_fraction is not None:
            tests["active_units"].append((f"≥ {th['active_fraction']:.0%} of dims", "posterior_collapse"))
        if m.perm_accuracy is not None:
            tests["perm_accuracy"].append((f"≥ {th['perm_accuracy']}", "orientation"))
        out = {key: [(text, name not in probs) for text, name in found] for key, found in tests.items()}
        if "blur" in probs and len(out["sharpness_ratio"]) == 2:  # say which of the two failed
            below_pca = self.pca is not None and m.sharpness_ratio < self.pca.sharpness_ratio
            below_th = m.sharpness_ratio < th["sharpness_ratio"]
            out["sharpness_ratio"] = [(out["sharpness_ratio"][0][0], not below_th),
                                      (out["sharpness_ratio"][1][0], not below_pca)]
        return out

    def format_text(self, patches: str = "held-out patches") -> str:
        """A table of all measures and the verdicts, for a terminal or a text box.

        The last column is the test each verdict applied (:meth:`checks`) and its outcome,
        ✓ passed or ✗ failed, so the table always agrees with the verdicts.

        Parameters
        ----------
        patches : str
            What the measured patches are, for the first line (e.g. "patches of this image").
        """
        rows = [("R²", "r2"), ("MSE", "mse"), ("sharpness ratio", "sharpness_ratio"),
                ("diversity ratio", "diversity_ratio"), ("cosine loss", "cosine_loss")]
        k = self.pca_k
        pca_name = f"PCA-{k}" if k is not None else "PCA"
        head = f"{'measure':<22}{'model':>9}{pca_name:>9}{'mean':>9}   verdict's test"
        skipped = (f"; patches with NaN/Inf pixels left out: {self.n_skipped_nonfinite}"
                   if self.n_skipped_nonfinite else "")
        lines = [f"Quality on {self.n_val} {patches}, latent dim {self.latent_dim}{skipped}",
                 f"Baseline: {self.baseline_source}" if self.has_baseline else
                 "Baseline: none stored in the model file (older format)", head]
        checks = self.checks()

        def mark(key: str) -> str:
            applied = checks.get(key)
            if applied is None:
                return ""
            return ", ".join(f"{test} {'✓' if ok else '✗'}" for test, ok in applied) or "not tested"

        def cells(measures, key):
            return [_f(getattr(m, key)) if m is not None else "—" for m in measures]

        for label, key in rows:
            vals = cells((self.model, self.pca, self.mean), key)
            lines.append(f"{label:<22}{vals[0]:>9}{vals[1]:>9}{vals[2]:>9}   {mark(key)}".rstrip())
        m = self.model
        pca_au = _f(self.pca.active_units) if self.pca is not None else "—"
        lines.append(f"{'active units':<22}{f'{m.active_units}/{self.latent_dim}':>9}"
                     f"{pca_au:>9}{'—':>9}   {mark('active_units')}")
        lines.append(f"{'permutation accuracy':<22}{_f(m.perm_accuracy):>9}{'—':>9}{'—':>9}   "
                     f"{mark('perm_accuracy')}")
        lines.append(f"(permutation accuracy on {_f(m.perm_used)} patches; {_f(m.perm_left_out)} "
                     f"symmetric ones left out)")
        if not self.smooth_data:
            against = f"{pca_name} fitted as the baseline line says" if self.has_baseline else "nothing"
            lines.append(f"(fixed thresholds such as R² ≥ {THRESHOLDS['r2']} hold for smooth data only; these "
                         f"data are shot-noisy, so the tests compare with {against})")
        lines.append(f"Against the smoothed target (σ = 1 px, per {self.smooth_source}):")
        for label, key in rows:
            vals = cells((self.model_smooth, self.pca_smooth, self.mean_smooth), key)
            lines.append(f"  {label:<20}{vals[0]:>9}{vals[1]:>9}{vals[2]:>9}")
        lines.append("Verdicts:")
        lines.extend(f"- {v}" for v in self.verdicts())
        return "\n".join(lines)


def _ratio_text(a: float, b: float) -> str:
    if not (_finite(a) and _finite(b)):
        return "vs — for"
    return f"{a / b:.2f}× that of" if b > 0 else "vs 0 for"
