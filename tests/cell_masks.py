"""Cell masks made in the tests from the nuclear channel, as a user's simple segmentation would be."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def nuclear_labels(nuc: np.ndarray, threshold: float = 2.0) -> np.ndarray:
    """Connected components (8-connected) of a smoothed (Y, X) nuclear channel above ``threshold``."""
    labels, _ = ndimage.label(ndimage.gaussian_filter(nuc, 1) > threshold, structure=np.ones((3, 3)))
    return labels.astype(np.uint16)


def nuclear_mask(image, threshold: float = 2.0) -> np.ndarray:
    """:func:`nuclear_labels` of an ImcImage's H3K27Ac channel."""
    return nuclear_labels(image.data[image.channel_names.index("H3K27Ac")], threshold)
