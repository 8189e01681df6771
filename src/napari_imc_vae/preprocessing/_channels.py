"""Bring images to one channel order: pooled fitting, and matching an image to a panel.

:func:`match_channels` is the one rule every caller uses (the normalizer, the model, pooled
fitting): channels are matched by key (metal) when the panel's keys are all in the image, else
by name; channels the panel needs but the image lacks are an error; channels the image has in
excess are left out, and the :class:`ChannelMatch` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_imc_vae.io.image import ImcImage
from napari_imc_vae.preprocessing.transforms import check_stack


class ChannelMismatchError(ValueError):
    """An image lacks channels of a panel (a model's, a normalizer's); the message names them."""


@dataclass(frozen=True)
class ChannelMatch:
    """Where a panel's channels are among an image's.

    Attributes
    ----------
    index : tuple of int
        For each channel of the panel, in the panel's order, its index in the image.
    ignored : tuple of str
        Names of the image's channels that the panel does not have, in image order:
        they are left out.
    """

    index: tuple[int, ...]
    ignored: tuple[str, ...] = ()

    def take(self, data: np.ndarray) -> np.ndarray:
        """The image's (C, Y, X) ``data`` → the panel's channels in the panel's order.

        ``data`` itself (no copy) when it already is in that order.
        """
        index = list(self.index)
        return data if index == list(range(data.shape[0])) else data[index]

    def note(self, owner: str = "the model") -> str | None:
        """``"ignoring channels not in <owner>: a, b"``, or None when none is ignored."""
        return f"ignoring channels not in {owner}: {', '.join(self.ignored)}" if self.ignored else None


def match_channels(names, keys, other_names, other_keys=None, *, panel: str = "the panel") -> ChannelMatch:
    """Find the panel ``names``/``keys`` among an image's channels ``other_names``/``other_keys``.

    Parameters
    ----------
    names, keys : sequence of str
        The panel's channel names and keys (metals, or the names when there are none);
        ``keys`` may be None.
    other_names, other_keys : sequence of str
        The image's; ``other_keys`` may be None (a bare stack).
    panel : str
        What the panel is, for the error message (``"the model's panel"``).

    Returns
    -------
    ChannelMatch
        Matched by key when both sides have keys and every panel key is in the image,
        else by name.

    Raises
    ------
    ChannelMismatchError
        When the image lacks channels of the panel: names the missing channels, the
        image's extra ones and the expected panel, by whichever identity (metal or name)
        the image matches best, so an image without metals is not told that its named
        channels are all "extra".
    """
    other_names = list(other_names)
    pairs = [(keys, other_keys)] if keys is not None and other_keys is not None else []
    pairs.append((names, other_names))
    for mine, theirs in pairs:
        if set(mine) <= set(theirs):
            position = {k: i for i, k in enumerate(theirs)}
            index = tuple(position[k] for k in mine)
            used = set(index)
            return ChannelMatch(index, tuple(n for i, n in enumerate(other_names) if i not in used))

    def gaps(pair):
        mine, theirs = pair
        return [c for c in mine if c not in set(theirs)], [c for c in theirs if c not in set(mine)]

    (mine, _), (missing, extra) = min(((pair, gaps(pair)) for pair in pairs),
                                      key=lambda item: (len(item[1][0]), len(item[1][1])))
    raise ChannelMismatchError(
        f"the image's channels do not match {panel}: missing {missing}, extra {extra or 'none'} "
        f"(expected {len(mine)} channels: {', '.join(map(str, mine))})"
    )


def as_stacks(images, channel_names) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Images → float32 (C,Y,X) stacks in one channel order, plus names and keys.

    ImcImages are matched to the first one's panel by :func:`match_channels` (another order
    is fine, extra channels are left out).
    """
    if isinstance(images, (ImcImage, np.ndarray)):
        images = [images]
    if not isinstance(images, Sequence) or len(images) == 0:
        raise ValueError(
            "images must be an ImcImage, an array of shape (C, Y, X) or a non-empty "
            f"sequence of them, got {type(images).__name__}"
        )
    first = images[0]
    names = list(first.channel_names) if isinstance(first, ImcImage) else None
    keys = list(first.channel_keys) if isinstance(first, ImcImage) else None
    n = check_stack(first.data if isinstance(first, ImcImage) else first, "images[0]").shape[0]
    stacks = []
    for i, img in enumerate(images):
        if isinstance(img, ImcImage) and names is not None:
            # pooled images may list the same panel in another order
            try:
                match = match_channels(names, keys, img.channel_names, img.channel_keys,
                                       panel="the panel of images[0]")
            except ChannelMismatchError as e:
                raise ChannelMismatchError(f"images[{i}]: {e}") from None
            stacks.append(match.take(img.data))
            continue
        arr = check_stack(img.data if isinstance(img, ImcImage) else img, f"images[{i}]")
        if arr.shape[0] != n:
            raise ValueError(
                f"images[{i}] has {arr.shape[0]} channels, expected {n} like images[0]"
            )
        stacks.append(arr)
    if channel_names is not None:
        channel_names = [str(c) for c in channel_names]
        if len(channel_names) != n:
            raise ValueError(
                f"channel_names must have one name per channel ({n}), got {len(channel_names)}"
            )
        names, keys = channel_names, channel_names
    if names is None:
        names = keys = [f"ch{i}" for i in range(n)]
    return stacks, names, keys
