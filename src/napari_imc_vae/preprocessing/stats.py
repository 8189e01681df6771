"""Per-channel statistics over finite pixels, the robust channel scale, and streaming
accumulators (exact moments, log-binned histograms) for data that never fits in memory at once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from napari_imc_vae.preprocessing.transforms import check_stack

__all__ = ["ChannelStats", "LogHistogram", "RunningMoments", "channel_stats"]


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


# --- streaming ---------------------------------------------------------------------------------


class RunningMoments:
    """Count, mean, sum of squared deviations, min and max of a stream of values.

    Batches are merged with Chan, Golub & LeVeque's pairwise update in float64, so the result
    equals the two-pass ``values.mean()`` / ``values.std()`` over the concatenation to rounding
    (~1e-15 relative), whatever the order or size of the batches.
    """

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        """Add a batch of finite values (any shape)."""
        k = int(values.size)
        if k == 0:
            return
        x = np.asarray(values, dtype=np.float64).ravel()
        m = float(x.mean())
        m2 = float(np.square(x - m).sum())
        n, delta = self.count, m - self.mean
        total = n + k
        self.mean += delta * k / total
        self.m2 += m2 + delta * delta * n * k / total
        self.count = total
        self.min, self.max = min(self.min, float(x.min())), max(self.max, float(x.max()))

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0); 0.0 for an empty stream."""
        return math.sqrt(max(self.m2, 0.0) / self.count) if self.count else 0.0


#: Mantissa bits kept by :class:`LogHistogram`: a bin spans at most 2**-10 (0.098%) of its values.
HISTOGRAM_MANTISSA_BITS = 10
#: Magnitudes below this share one bin (with the zeros): an absolute error of at most 2**-30.
HISTOGRAM_TINY = 2.0**-30
_SHIFT = 52 - HISTOGRAM_MANTISSA_BITS
_TINY_KEY = int(np.float64(HISTOGRAM_TINY).view(np.int64)) >> _SHIFT


def _bin_keys(x: np.ndarray) -> np.ndarray:
    """Monotone integer bin of each finite float64 value: sign, exponent and top mantissa bits.

    Key 0 holds ``|v| < HISTOGRAM_TINY`` (zeros included); key ``k > 0`` holds the magnitudes
    whose float64 bits, shifted right by ``52 - HISTOGRAM_MANTISSA_BITS``, equal
    ``k - 1 + _TINY_KEY``; negative values take the negated key of their magnitude.
    """
    mag = np.abs(x)
    keys = (mag.view(np.int64) >> _SHIFT) - (_TINY_KEY - 1)
    keys[mag < HISTOGRAM_TINY] = 0
    return np.where(x < 0, -keys, keys)


class LogHistogram:
    """Histogram of a stream of finite values with bins of bounded relative width.

    Bins follow the float64 representation: for each power of two, ``2**HISTOGRAM_MANTISSA_BITS``
    equal bins, so a bin holding ``v`` is at most ``2**-10·|v|`` wide (one bin below
    ``HISTOGRAM_TINY`` in magnitude). Each bin keeps the count, the sum and the sum of squares of
    its values; only the range of bins seen is stored (for arcsinh-transformed IMC counts about
    13 octaves: ~13,000 bins, 320 kB).

    :meth:`percentile` follows ``np.percentile``'s linear rule with each order statistic replaced
    by the mean of its bin: the error is at most the width of the bins holding the two order
    statistics, ``≤ 2**-10·max|v|`` of them, and zero when those bins hold one distinct value
    each (the usual case for arcsinh-transformed counts, whose distinct values near a high
    percentile are further apart than 0.1%).
    """

    def __init__(self) -> None:
        self.first = 0  # key of bins[0]
        self.count = np.zeros(0, np.int64)
        self.sum = np.zeros(0, np.float64)
        self.sumsq = np.zeros(0, np.float64)

    @property
    def n(self) -> int:
        return int(self.count.sum())

    def add(self, values: np.ndarray) -> None:
        """Add a batch of finite values (any shape)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        if x.size == 0:
            return
        keys = _bin_keys(x)
        lo, hi = int(keys.min()), int(keys.max())
        if self.count.size == 0:
            self.first = lo
        new_first = min(self.first, lo)
        new_last = max(self.first + self.count.size - 1, hi)
        if new_first != self.first or new_last - new_first + 1 != self.count.size:
            pad = (self.first - new_first, new_last - new_first + 1 - self.count.size - (self.first - new_first))
            self.count, self.sum, self.sumsq = (np.pad(a, pad) for a in (self.count, self.sum, self.sumsq))
            self.first = new_first
        offset = keys - self.first
        size = self.count.size
        self.count += np.bincount(offset, minlength=size)
        self.sum += np.bincount(offset, weights=x, minlength=size)
        self.sumsq += np.bincount(offset, weights=x * x, minlength=size)

    def _bin_mean(self, b: int) -> float:
        return float(self.sum[b] / self.count[b])

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100), ``np.percentile``'s linear rule on bin means.

        Raises
        ------
        ValueError
            When the histogram is empty.
        """
        n = self.n
        if n == 0:
            raise ValueError("percentile of an empty histogram")
        position = q / 100.0 * (n - 1)
        j = int(math.floor(position))
        fraction = position - j
        cumulative = np.cumsum(self.count)
        low = int(np.searchsorted(cumulative, j, side="right"))
        high = int(np.searchsorted(cumulative, min(j + 1, n - 1), side="right"))
        return self._bin_mean(low) + fraction * (self._bin_mean(high) - self._bin_mean(low))

    def clipped_moments(self, limit: float, mean: float, m2: float) -> tuple[float, float]:
        """Mean and population std of ``min(v, limit)`` from the exact unclipped moments.

        ``mean`` and ``m2`` (sum of squared deviations) are those of the unclipped values
        (:class:`RunningMoments`); the bins above ``limit`` give the correction. The values of
        the one bin holding ``limit`` are taken as all below it when their mean is, else as all
        clipped: an error of at most that bin's count × its width (``2**-10·|limit|``) in the
        sum, over the n values.
        """
        n = self.n
        if n == 0:
            return 0.0, 0.0
        keys = np.arange(self.count.size) + self.first
        limit_key = int(_bin_keys(np.array([limit], dtype=np.float64))[0])
        above = keys > limit_key
        b = limit_key - self.first
        if 0 <= b < self.count.size and self.count[b] and self._bin_mean(b) > limit:
            above[b] = True
        count, total, squares = self.count[above], self.sum[above], self.sumsq[above]
        k = float(count.sum())
        # sum of (v - limit) and of (v - mean)**2 - (limit - mean)**2 over the clipped values
        excess = float(total.sum()) - k * limit
        spread = float((squares - 2 * mean * total + count * mean * mean).sum()) - k * (limit - mean) ** 2
        clipped_mean = mean - excess / n
        var = (m2 - spread) / n - (clipped_mean - mean) ** 2
        return clipped_mean, math.sqrt(max(var, 0.0))
