"""Bring images to one channel order: pooled fitting, and matching an image to a panel.

:func:`match_channels` is the one rule every caller uses (the normalizer, the model, pooled
fitting): each channel is matched by metal when both sides know it, else by label (``Pr141_CD45``
and ``CD45`` are one label); channels the panel needs but the image lacks are an error naming
both sides; channels the image has in excess are left out, and the :class:`ChannelMatch` says which.
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


def match_channels(names, keys, other_names, other_keys=None, *, panel: str = "the panel",
                   image: str = "the image") -> ChannelMatch:
    """Find the panel ``names``/``keys`` among an image's channels ``other_names``/``other_keys``.

    Parameters
    ----------
    names, keys : sequence of str
        The panel's channel names and keys (each channel's metal where known, else its
        name); ``keys`` may be None.
    other_names, other_keys : sequence of str
        The image's; ``other_keys`` may be None (a bare stack).
    panel : str
        What the panel is, for the error message (``"the model's panel"``, ``"model file m.pt"``).
    image : str
        What the image is, for the error message (``"image a.ome.tiff"``).

    Returns
    -------
    ChannelMatch
        Each panel channel is matched **by metal** when it has one and the image knows
        metals, else **by label** (``Pr141_CD45``, ``CD45`` and ``cd45`` are one label:
        :func:`~napari_imc_vae.io._common.label_key`), else by name.

    Raises
    ------
    ChannelMismatchError
        When the image lacks channels of the panel: names the missing channels, the image's
        extra ones, the expected panel and the image's channels, each channel by the identity
        it was matched by (metal or name).
    """
    from napari_imc_vae.io._common import label_key, parse_metal

    names = [str(n) for n in names]
    other_names = [str(n) for n in other_names]
    keys = [str(k) for k in keys] if keys is not None else list(names)
    other_keys = [str(k) for k in other_keys] if other_keys is not None else list(other_names)
    other_metals = [parse_metal(k) if parse_metal(k) == k else None for k in other_keys]
    by_metal: dict[str, list[int]] = {}  # a metal listed twice (a panel error) keeps both, in order
    for j, m in enumerate(other_metals):
        if m:
            by_metal.setdefault(m, []).append(j)
    unlabelled_only = all(other_metals)  # every image channel has a metal: nothing to compare labels with
    used: set[int] = set()
    index, missing, shown = [], [], []
    for name, key in zip(names, keys):
        metal = parse_metal(key) if parse_metal(key) == key else None
        same = [j for j in by_metal.get(metal, ()) if j not in used] if metal else []
        # of two image channels of one metal, the one of this label (else the first left)
        j = next((j for j in same if label_key(other_names[j]) == label_key(name)), same[0] if same else None)
        if j is not None:
            shown.append(metal)
        elif metal and unlabelled_only:
            shown.append(metal)
            j = None
        else:  # by label, among the image channels whose metal (if any) is not a panel metal
            label = label_key(name)
            j = next((j for j, n in enumerate(other_names) if j not in used and
                      (n == name or label_key(n) == label)), None)
            shown.append(name)
        if j is None:
            missing.append(shown[-1])
        else:
            used.add(j)
            index.append(j)
    ignored = tuple(n for j, n in enumerate(other_names) if j not in used)
    if not missing:
        return ChannelMatch(tuple(index), ignored)
    extra = [other_keys[j] for j in range(len(other_names)) if j not in used]
    image_side = list(other_keys)
    repeated = [m for m in dict.fromkeys(missing) if shown.count(m) > image_side.count(m) > 0]
    twice = "".join(f"; {panel} lists {m} {shown.count(m)} times, the image {image_side.count(m)} "
                    f"(a duplicate row in a panel?)" for m in repeated)
    raise ChannelMismatchError(
        f"the channels of {image} do not match {panel}: missing {_listed(missing)}; extra {_listed(extra)} "
        f"(expected {len(shown)} channels: {_listed(shown)}; the image has {len(image_side)}: "
        f"{_listed(image_side)}){twice}"
    )


def _listed(names: list[str], at_most: int = 8) -> str:
    """``"a, b, c"``; past ``at_most`` names, ``"a, …, h and 4 more"``; ``"none"`` for none."""
    more = f" and {len(names) - at_most} more" if len(names) > at_most else ""
    return ", ".join(names[:at_most]) + more if names else "none"


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
