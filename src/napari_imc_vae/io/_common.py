"""What every reader shares: input checks, channel naming, and building the ImcImage."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_imc_vae.io.image import ImcImage, ImcReadError, NonFiniteWarning

# Element symbols, so that a marker such as "Ki67" is not taken for a metal.
_ELEMENTS = frozenset(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge "
    "As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm "
    "Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U "
    "Np Pu Am Cm Bk Cf Es Fm Md No Lr".split()
)
_SYMBOL_MASS = re.compile(r"^([A-Z][a-z]?)(\d{1,3})(?:Di)?$")  # Pr141, Pr141Di
_MASS_SYMBOL = re.compile(r"^(\d{1,3})([A-Z][a-z]?)(?:Di)?$")  # 141Pr (Fluidigm labels)
# readimc / imctools labels: "Cytoker_651((3356))Pr141" -> target, clone/lot, tube, metal.
_FLUIDIGM_SUFFIX = re.compile(r"\(\([^()]*\)\)\s*([A-Za-z]{1,2}\d{1,3})(?:Di)?$")

# Refuse to allocate absurd arrays that a corrupt header can claim.
MAX_NBYTES = 1 << 34


def parse_metal(text: str | None) -> str | None:
    """Return ``"Pr141"`` for ``"Pr141"``, ``"Pr141Di"`` or ``"141Pr"``; None if not a metal."""
    if not text:
        return None
    text = text.strip()
    m = _SYMBOL_MASS.match(text)
    if m and m.group(1) in _ELEMENTS:
        return f"{m.group(1)}{int(m.group(2))}"
    m = _MASS_SYMBOL.match(text)
    if m and m.group(2) in _ELEMENTS:
        return f"{m.group(2)}{int(m.group(1))}"
    return None


def clean_label(label: str | None) -> str:
    """Readable target from a label: ``"Cytoker_651((3356))Pr141"`` -> ``"Cytoker"``."""
    if not label:
        return ""
    text = label.strip()
    stripped = _FLUIDIGM_SUFFIX.sub("", text)
    if stripped != text:
        # Only in the Fluidigm form is a trailing "_651" a clone/lot number, not part of the name.
        text = re.sub(r"_\d+$", "", stripped.strip())
    return text.strip()


def metal_from_label(label: str | None) -> str | None:
    """Metal named at the end of a Fluidigm label (``...((3356))Pr141``), if any."""
    m = _FLUIDIGM_SUFFIX.search(label or "")
    return parse_metal(m.group(1)) if m else None


def display_names(metals: Sequence[str | None], labels: Sequence[str | None]) -> list[str]:
    """One unique display name per channel: the cleaned label, else the metal, else ``ch{i}``.

    A label that only repeats the metal (``"107Ag"`` for Ag107) gives the metal.
    Repeated names get the metal (or the index) appended, so layers stay distinct.
    """
    names = []
    for i, (metal, label) in enumerate(zip(metals, labels)):
        clean = clean_label(label)
        if not clean or (metal and parse_metal(clean) == metal):
            clean = metal or clean or f"ch{i}"
        names.append(clean)
    return make_unique(names, metals)


def make_unique(names: Sequence[str], metals: Sequence[str | None]) -> list[str]:
    """Disambiguate repeated names with the metal, then with the channel index."""
    out = list(names)
    for attempt in ("metal", "index"):
        counts = {n: out.count(n) for n in out}
        if all(c == 1 for c in counts.values()):
            break
        for i, name in enumerate(out):
            if counts[name] > 1:
                if attempt == "metal" and metals[i] and metals[i] != name:
                    out[i] = f"{name} ({metals[i]})"
                elif attempt == "index":
                    out[i] = f"{name} [{i}]"
    return out


def check_file(path: Path) -> None:
    """Raise ImcReadError for a missing, non-regular or empty file."""
    if not path.exists():
        raise ImcReadError(f"{path}: file does not exist")
    if not path.is_file():
        raise ImcReadError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ImcReadError(f"{path}: file is empty (0 bytes)")


def as_stack(data: np.ndarray, path: Path) -> np.ndarray:
    """Real-valued array of 2 or 3 dimensions as float32 (C, Y, X); a 2-D image is one channel."""
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise ImcReadError(f"{path}: pixel type {data.dtype} is not real-valued")
    while data.ndim > 3 and data.shape[0] == 1:  # singleton T/Z axes in front
        data = data[0]
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise ImcReadError(
            f"{path}: expected a 2-D (Y, X) or 3-D (C, Y, X) image, got shape {data.shape}"
        )
    if min(data.shape) == 0:
        raise ImcReadError(f"{path}: image has an empty axis, shape {data.shape}")
    return data.astype(np.float32, copy=False)


def build_image(
    data: np.ndarray,
    path: Path,
    *,
    metals: Sequence[str | None],
    labels: Sequence[str | None],
    names: Sequence[str] | None = None,
    pixel_size_um: float = 1.0,
    acquisition: str | None = None,
) -> ImcImage:
    """Assemble the ImcImage; warn (without changing them) about NaN/Inf pixels."""
    stack = as_stack(data, path)
    if len(metals) != stack.shape[0] or len(labels) != stack.shape[0]:
        raise ImcReadError(
            f"{path}: {stack.shape[0]} channels in the image but "
            f"{len(metals)} channel descriptions"
        )
    if names is None:
        names = display_names(metals, labels)
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        pixel_size_um = 1.0
    image = ImcImage(
        data=stack,
        channel_names=list(names),
        metals=list(metals),
        labels=list(labels),
        pixel_size_um=float(pixel_size_um),
        source=str(path),
        acquisition=acquisition,
    )
    n_bad = image.nonfinite_count
    if n_bad:
        where = f" (acquisition {acquisition})" if acquisition else ""
        warnings.warn(
            f"{path}{where}: {n_bad} non-finite (NaN/Inf) pixel values, kept as read",
            NonFiniteWarning,
            stacklevel=3,
        )
    return image
