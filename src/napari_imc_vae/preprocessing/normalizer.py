"""Per-channel normalization built from stored statistics, invertible and serialisable."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from napari_imc_vae.io.image import ImcImage
from napari_imc_vae.preprocessing._channels import ChannelMatch, as_stacks, match_channels
from napari_imc_vae.preprocessing.channel_fit import channel_entry, prepare_channel
from napari_imc_vae.preprocessing.params import NormalizationParams
from napari_imc_vae.preprocessing.transforms import check_stack, filter_hot_pixels

__all__ = ["FORMAT", "FORMAT_VERSION", "Normalizer"]

FORMAT = "napari-imc-vae/normalizer"
FORMAT_VERSION = 1


class Normalizer:
    """hot-pixel filter → arcsinh(x / cofactor) → clip at a percentile → z-score.

    Build one with :meth:`fit`, apply it with ``norm(data)``, undo it with
    :meth:`inverse`, store it with :meth:`to_dict` / :meth:`from_dict`. The
    stored per-channel values are in transformed units (after arcsinh).

    Attributes
    ----------
    channel_names : list of str
        Channel order the normalizer expects.
    channel_keys : list of str
        Identity used to match an :class:`ImcImage`'s channels (metals when the
        fitting image had them, else the names).
    params : NormalizationParams
        The chosen steps.
    mean, std : list of float
        Per-channel z-score statistics (std is 1.0 for constant channels).
    clip_high : list of float or None
        Per-channel clipping limit; None when clipping is off or a channel had
        no finite pixel.
    constant : list of bool
        Channels with a single value (all zero, or no finite pixel) after the
        transforms in the fitting data. With z-score on they map to 0.
    n_finite : list of int
        Finite pixels the statistics were computed from.
    """

    def __init__(self, channel_names, *, params, mean, std, clip_high, constant,
                 n_finite=None, channel_keys=None) -> None:
        self.channel_names = [str(c) for c in channel_names]
        n = len(self.channel_names)
        self.channel_keys = [str(c) for c in (channel_keys or self.channel_names)]
        self.params = params
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.clip_high = [None if v is None else float(v) for v in clip_high]
        self.constant = [bool(v) for v in constant]
        self.n_finite = [int(v) for v in (n_finite if n_finite is not None else [0] * n)]
        lengths = {k: len(getattr(self, k)) for k in
                   ("channel_keys", "mean", "std", "clip_high", "constant", "n_finite")}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"Normalizer needs one value per channel ({n}); got lengths {bad}")

    # --- building -----------------------------------------------------------

    @classmethod
    def fit(cls, images, *, channel_names=None, hot_pixel_threshold=None, arcsinh_cofactor=None,
            clip_percentile=None, zscore=True) -> "Normalizer":
        """Compute per-channel statistics pooled over all pixels of all images.

        Parameters
        ----------
        images : ImcImage, ndarray of shape (C, Y, X), or a sequence of them
            Fitting data. ImcImages listing the same panel in another order
            are matched by channel; arrays must share C. NaN/Inf pixels are
            left out of every statistic.
        channel_names : sequence of str, optional
            Names for the C channels; default: the first ImcImage's names,
            else ``ch0, ch1, …``.
        hot_pixel_threshold, arcsinh_cofactor, clip_percentile, zscore
            See :class:`NormalizationParams`; None skips a step.

        Returns
        -------
        Normalizer

        Raises
        ------
        ValueError
            For bad parameters, images that are not (C, Y, X), or images whose
            channel counts or names disagree.
        """
        params = NormalizationParams(hot_pixel_threshold, arcsinh_cofactor, clip_percentile, zscore)
        stacks, names, keys = as_stacks(images, channel_names)
        mean, std, clip_high, constant, n_finite = [], [], [], [], []
        for c in range(len(names)):
            # one channel at a time bounds memory to one channel of every image
            parts = []
            for s in stacks:
                x = prepare_channel(s[c], params)
                parts.append(x[np.isfinite(x)])
            values = np.concatenate(parts)
            n_finite.append(int(values.size))
            hi = None
            if params.clip_percentile is not None and values.size:
                hi = float(np.percentile(values, params.clip_percentile))
                values = np.minimum(values, hi)
            stats = (float(values.mean()), float(values.std()), values.min(), values.max()) if values.size else None
            for column, value in zip((mean, std, clip_high, constant), channel_entry(stats, hi)):
                column.append(value)
        return cls(names, params=params, mean=mean, std=std, clip_high=clip_high,
                   constant=constant, n_finite=n_finite, channel_keys=keys)

    # --- applying -----------------------------------------------------------

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)

    @property
    def constant_channels(self) -> list[str]:
        """Names of the channels that were constant (or empty) in the fitting data."""
        return [n for n, c in zip(self.channel_names, self.constant) if c]

    def match_channels(self, image: ImcImage) -> ChannelMatch:
        """Where this normalizer's channels are in ``image`` (see :func:`match_channels`).

        Channels are matched by key (metal) when possible, else by name, so another
        channel order is fine; extra channels in the image are left out (listed in
        ``ChannelMatch.ignored``).

        Raises
        ------
        ChannelMismatchError
            A ValueError naming the missing and extra channels when the image lacks some.
        """
        return match_channels(self.channel_names, self.channel_keys, image.channel_names,
                              image.channel_keys, panel="the normalizer's panel")

    def _stack(self, data, name: str) -> np.ndarray:
        if isinstance(data, ImcImage):
            return self.match_channels(data).take(data.data)
        arr = check_stack(data, name)
        if arr.shape[0] != self.n_channels:
            raise ValueError(
                f"{name} must have {self.n_channels} channels ({', '.join(self.channel_names)}), "
                f"got {arr.shape[0]}"
            )
        return arr

    def __call__(self, data) -> np.ndarray:
        """Normalize a stack (or an ImcImage, whose channels are matched by name).

        Parameters
        ----------
        data : ndarray of shape (C, Y, X) or ImcImage

        Returns
        -------
        ndarray of shape (C, Y, X), float32
            NaN where the input was NaN; constant channels are 0 when z-scoring.
            +Inf becomes the clip limit when clipping, else stays infinite.

        Raises
        ------
        ValueError
            If the channel count does not match, or an ImcImage lacks channels of the
            panel (:class:`ChannelMismatchError`; extra channels are left out).
        """
        arr = self._stack(data, "data")
        out = np.empty(arr.shape, dtype=np.float32)
        for c, channel in enumerate(self.normalized_channels(arr)):
            out[c] = channel
        return out

    def normalized_channels(self, data) -> Iterator[np.ndarray]:
        """``self(data)`` one (Y, X) float32 channel at a time: memory for one channel, not C.

        Raises
        ------
        ValueError
            As :meth:`__call__`, when the first channel is asked for.
        """
        arr = self._stack(data, "data")
        threshold = self.params.hot_pixel_threshold
        for c in range(arr.shape[0]):
            x = arr[c] if threshold is None else filter_hot_pixels(arr[c][None], threshold)[0]
            yield self.transform_channel(c, x)

    def transform_channel(self, c: int, x) -> np.ndarray:
        """arcsinh → clip → z-score of values ``x`` of channel ``c`` (no hot-pixel filter).

        Computed in float32, like the output (z-scores are accurate to ~1e-6); the fit's
        statistics are float64.

        Parameters
        ----------
        c : int
            Channel index in this normalizer's order.
        x : array of any shape

        Returns
        -------
        ndarray of the shape of ``x``, float32
        """
        p = self.params
        x = np.asarray(x, dtype=np.float32)
        if p.arcsinh_cofactor is not None:
            x = np.arcsinh(x / np.float32(p.arcsinh_cofactor))
        if self.clip_high[c] is not None:
            x = np.minimum(x, np.float32(self.clip_high[c]))
        if p.zscore and self.constant[c]:
            x = np.where(np.isnan(x), np.float32(np.nan), np.float32(0.0))  # no spread to divide by
        elif p.zscore:
            x = (x - np.float32(self.mean[c])) / np.float32(self.std[c])
        return x

    def normalize_as_read(self, data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model's input, the image as read, and the pixels the hot-pixel filter replaced.

        Parameters
        ----------
        data : ndarray of shape (C, Y, X) or ImcImage

        Returns
        -------
        normalized : ndarray of shape (C, Y, X), float32
            ``self(data)``: what the model sees.
        as_read : ndarray of shape (C, Y, X), float32
            The same normalization without the hot-pixel filter (equal to ``normalized``
            where the filter changed nothing), so that an error against it shows what the
            filter removed.
        replaced : ndarray of shape (C, Y, X), bool
            Where the hot-pixel filter replaced a pixel (all False without the filter).
        """
        arr = self._stack(data, "data")
        threshold = self.params.hot_pixel_threshold
        if threshold is None:
            normalized = self(arr)
            return normalized, normalized, np.zeros(arr.shape, dtype=bool)
        normalized = np.empty(arr.shape, dtype=np.float32)
        replaced = np.zeros(arr.shape, dtype=bool)
        as_read_values = {}  # channel -> normalized values of its replaced pixels as read
        for c in range(arr.shape[0]):
            x = np.asarray(arr[c], dtype=np.float32)
            filtered = filter_hot_pixels(x[None], threshold)[0]
            normalized[c] = self.transform_channel(c, filtered)
            # the filter only lowers a pixel (to its neighbours' maximum): changed means replaced
            hot = (filtered != x) & np.isfinite(x)
            if hot.any():
                replaced[c] = hot
                as_read_values[c] = self.transform_channel(c, x[hot])
        if not as_read_values:  # nothing replaced: the image as read is the model's input
            return normalized, normalized, replaced
        as_read = normalized.copy()
        for c, values in as_read_values.items():
            as_read[c][replaced[c]] = values
        return normalized, as_read, replaced

    def inverse(self, normalized) -> np.ndarray:
        """Map normalized values back to raw units: undoes the z-score and arcsinh.

        Clipping and the hot-pixel filter are not invertible: values above the
        clip limit and replaced hot pixels do not come back. A constant channel
        returns its constant value.

        Parameters
        ----------
        normalized : ndarray of shape (C, Y, X)

        Returns
        -------
        ndarray of shape (C, Y, X), float32
        """
        arr = self._stack(normalized, "normalized")
        out = np.empty(arr.shape, dtype=np.float32)
        p = self.params
        for c in range(arr.shape[0]):  # in float32, in place: the output is float32 anyway
            y = out[c]
            y[...] = arr[c]
            if p.zscore and self.constant[c]:
                y[~np.isnan(y)] = self.mean[c]
            elif p.zscore:
                y *= np.float32(self.std[c])
                y += np.float32(self.mean[c])
            if p.arcsinh_cofactor is not None:
                np.sinh(y, out=y)
                y *= np.float32(p.arcsinh_cofactor)
        return out

    # --- storing ------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain dict (str, float, int, bool, None, lists) for JSON and ``torch.save``.

        Loads with ``torch.load(..., weights_only=True)``; holds no numpy values and no NaN.
        """
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "channel_names": list(self.channel_names),
            "channel_keys": list(self.channel_keys),
            "params": self.params.to_dict(),
            "channels": {
                "mean": list(self.mean),
                "std": list(self.std),
                "clip_high": list(self.clip_high),
                "constant": list(self.constant),
                "n_finite": list(self.n_finite),
            },
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        """Rebuild a normalizer from :meth:`to_dict` output, validating every field.

        Raises
        ------
        ValueError
            Naming the field that is missing, of the wrong length, or invalid.
        """
        from napari_imc_vae.preprocessing._validate import validate_normalizer_dict

        fields = validate_normalizer_dict(d, FORMAT, FORMAT_VERSION)
        try:
            params = NormalizationParams.from_dict(fields.pop("params"))
        except (TypeError, ValueError) as e:
            raise ValueError(f"normalizer dict: params: {e}") from e
        return cls(fields.pop("channel_names"), params=params, **fields)

    def __repr__(self) -> str:
        return (f"Normalizer({self.n_channels} channels, {self.params.describe()}, "
                f"constant={self.constant_channels})")

