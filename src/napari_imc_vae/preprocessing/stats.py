"""Per-channel statistics over finite pixels, and the robust channel scale."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from napari_imc_vae.preprocessing.transforms import check_stack

__all__ = ["ChannelStats", "channel_stats"]


def _num(value) -> float | None:
    """A python float, or None where the value is undefined (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class ChannelStats:
    """Statistics of one channel, computed over its finite pixels only.

    Attributes
    ----------
    name : str
        Channel name.
    n_pixels : int
        All pixels of the channel.
    n_finite : int
        Finite pixels, the ones every statistic below is computed from.
    nonfinite : int
        NaN or ±Inf pixels (``n_pixels - n_finite``).
    min, median, mean, std, p99, max : float or None
        None when the channel has no finite pixel. ``std`` is the population
        standard deviation (ddof=0); percentiles interpolate linearly.
    zero_fraction : float or None
        Fraction of finite pixels that are exactly 0.
    """

    name: str
    n_pixels: int
    n_finite: int
    nonfinite: int
    min: float | None
    median: float | None
    mean: float | None
    std: float | None
    p99: float | None
    max: float | None
    zero_fraction: float | None

    @property
    def is_empty(self) -> bool:
        """No finite pixel, or every finite pixel is 0."""
        return self.n_finite == 0 or (self.min == 0 and self.max == 0)

    @property
    def is_constant(self) -> bool:
        """All finite pixels share one value (includes empty channels)."""
        return self.n_finite == 0 or self.min == self.max

    @property
    def scale(self) -> float | None:
        """Robust magnitude of the channel: ``p99``, or ``max`` when ``p99`` is 0.

        p99 ignores the few hot pixels that make ``max`` useless, but is 0 for
        sparse markers (fewer than 1% non-zero pixels); ``max`` is the fallback
        there. None for empty channels, which have no scale. Meant for counts
        (non-negative); a channel whose p99 and max are both <= 0 has no scale.
        """
        for value in (self.p99, self.max):
            if value is not None and value > 0:
                return value
        return None

    def to_dict(self) -> dict:
        """Plain JSON-safe dict (floats, ints, str, None; never NaN)."""
        return asdict(self)


def _one_channel(name: str, x: np.ndarray) -> ChannelStats:
    finite = x[np.isfinite(x)].astype(np.float64)
    n, k = int(x.size), int(finite.size)
    if k == 0:
        return ChannelStats(name, n, 0, n, None, None, None, None, None, None, None)
    median, p99 = np.percentile(finite, [50.0, 99.0])
    return ChannelStats(
        name=name,
        n_pixels=n,
        n_finite=k,
        nonfinite=n - k,
        min=_num(finite.min()),
        median=_num(median),
        mean=_num(finite.mean()),
        std=_num(finite.std()),
        p99=_num(p99),
        max=_num(finite.max()),
        zero_fraction=float(np.count_nonzero(finite == 0)) / k,
    )


def channel_stats(data, channel_names=None) -> list[ChannelStats]:
    """Per-channel statistics of a stack, over finite pixels only.

    Parameters
    ----------
    data : ndarray of shape (C, Y, X)
        Any real values; NaN/Inf pixels are counted, not used.
    channel_names : sequence of str, optional
        One name per channel; ``ch0, ch1, …`` when omitted.

    Returns
    -------
    list of ChannelStats
        One entry per channel, in order.

    Raises
    ------
    ValueError
        If ``data`` is not 3-D or the number of names differs from C.
    """
    arr = check_stack(data)
    n = arr.shape[0]
    if channel_names is None:
        names = [f"ch{i}" for i in range(n)]
    else:
        names = [str(c) for c in channel_names]
    if len(names) != n:
        raise ValueError(f"channel_names must have one name per channel ({n}), got {len(names)}")
    return [_one_channel(name, arr[i]) for i, name in enumerate(names)]
