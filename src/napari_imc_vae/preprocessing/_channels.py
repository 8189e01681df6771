"""Bring images to one channel order: pooled fitting and matching by channel name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_imc_vae.io.image import ImcImage
from napari_imc_vae.preprocessing.transforms import check_stack


def as_stacks(images, channel_names) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Images → float32 (C,Y,X) stacks in one channel order, plus names and keys."""
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
            idx = match_channels(names, keys, img.channel_names, img.channel_keys)
            stacks.append(img.data[idx])
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


def match_channels(names, keys, other_names, other_keys=None) -> list[int]:
    """Indices into the other channel list that give ``names``' order."""
    for mine, theirs in ((keys, other_keys), (names, other_names)):
        if mine is not None and theirs is not None and set(mine) <= set(theirs):
            pos = {k: i for i, k in enumerate(theirs)}
            return [pos[k] for k in mine]
    missing = [c for c in names if c not in set(other_names)]
    extra = [c for c in other_names if c not in set(names)]
    raise ValueError(f"channels do not match: missing {missing}, extra {extra}")
