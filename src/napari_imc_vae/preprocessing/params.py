"""The user-facing normalization choices, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from napari_imc_vae.preprocessing.transforms import (
    check_cofactor,
    check_percentile,
    check_threshold,
)

__all__ = ["NormalizationParams"]


@dataclass(frozen=True)
class NormalizationParams:
    """Which steps a :class:`Normalizer` runs, in this order; None skips a step.

    Parameters
    ----------
    hot_pixel_threshold : float or None
        Hot-pixel filter threshold ``T >= 0`` in raw counts (steinbock: 50).
    arcsinh_cofactor : float or None
        ``> 0``; the data become ``arcsinh(x / cofactor)``.
    clip_percentile : float or None
        In (0, 100]; each channel is clipped at this percentile of its
        (filtered, transformed) fitting pixels.
    zscore : bool
        Subtract the per-channel mean and divide by the per-channel std.

    Raises
    ------
    ValueError
        For a negative threshold, a cofactor <= 0 or a percentile outside (0, 100].
    TypeError
        For a value that is not a number (or, for ``zscore``, not a bool).
    """

    hot_pixel_threshold: float | None = None
    arcsinh_cofactor: float | None = None
    clip_percentile: float | None = None
    zscore: bool = True

    def __post_init__(self) -> None:
        checks = {
            "hot_pixel_threshold": check_threshold,
            "arcsinh_cofactor": check_cofactor,
            "clip_percentile": check_percentile,
        }
        for name, check in checks.items():
            value = getattr(self, name)
            if value is not None:
                # frozen: store the validated python float, not a numpy scalar
                object.__setattr__(self, name, check(value, name))
        if not isinstance(self.zscore, bool):
            raise TypeError(f"zscore must be True or False, got {self.zscore!r}")

    def to_dict(self) -> dict:
        """Plain dict of python floats / bool / None."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NormalizationParams":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(d, dict):
            raise TypeError(f"params must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"params has unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**d)

    def describe(self) -> str:
        """One line for people, e.g. ``hot pixels T=50 → arcsinh(x/5) → z-score``."""
        steps = []
        if self.hot_pixel_threshold is not None:
            steps.append(f"hot pixels T={self.hot_pixel_threshold:g}")
        if self.arcsinh_cofactor is not None:
            steps.append(f"arcsinh(x/{self.arcsinh_cofactor:g})")
        if self.clip_percentile is not None:
            steps.append(f"clip p{self.clip_percentile:g}")
        if self.zscore:
            steps.append("z-score")
        return " → ".join(steps) if steps else "identity"


#: What training and the widgets use unless told otherwise: steinbock's hot-pixel threshold and
#: the usual IMC arcsinh cofactor, then z-score (no clip).
DEFAULT_NORMALIZATION = NormalizationParams(hot_pixel_threshold=50.0, arcsinh_cofactor=5.0, zscore=True)
