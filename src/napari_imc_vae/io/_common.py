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
_SYMBOL_MASS = re.compile(r"^([A-Z][a-z]?)\(?(\d{2,3})\)?(?:Di)?$")  # Pr141, Pr(141), Pr141Di
_MASS_SYMBOL = re.compile(r"^\(?(\d{2,3})\)?([A-Z][a-z]?)(?:Di)?$")  # 141Pr (Fluidigm labels)
# IMC (CyTOF) detects masses 75-209; outside that "H3", "B7" or "C5" are markers, not metals.
_MASSES = range(75, 210)
# "CD45(Pr141Di)", "CD45 (141Pr)": a label, then the metal in parentheses
_LABEL_METAL = re.compile(r"^(.*?)[\s_-]*\(([^()]+(?:\(\d+\))?[^()]*)\)$")
# readimc / imctools labels: "Cytoker_651((3356))Pr141" -> target, clone/lot, tube, metal.
_FLUIDIGM_SUFFIX = re.compile(r"\(\([^()]*\)\)\s*([A-Za-z]{1,2}\d{1,3})(?:Di)?$")

# Refuse to allocate absurd arrays that a corrupt header can claim.
MAX_NBYTES = 1 << 34


def parse_metal(text: str | None) -> str | None:
    """``"Pr141"`` for ``"Pr141"``, ``"Pr141Di"``, ``"141Pr"``, ``"Pr(141)"`` or ``"(Pr141)"``.

    None when ``text`` is not a metal tag: an unknown element symbol, or a mass outside
    IMC's 75-209 (so that the markers ``H3`` or ``B7`` stay markers).
    """
    if not text:
        return None
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    for pattern, symbol, mass in ((_SYMBOL_MASS, 1, 2), (_MASS_SYMBOL, 2, 1)):
        m = pattern.match(text)
        if m and m.group(symbol) in _ELEMENTS and int(m.group(mass)) in _MASSES:
            return f"{m.group(symbol)}{int(m.group(mass))}"
    return None


def split_identity(text: str | None) -> tuple[str | None, str | None]:
    """Metal and label of a channel named by one string, in the usual spellings.

    ``"Pr141"``, ``"141Pr"``, ``"Pr(141)"``, ``"Pr141Di"`` -> ``("Pr141", None)``;
    ``"141Pr_CD45"``, ``"CD45_141Pr"``, ``"CD45(Pr141Di)"``, ``"CD45 (141Pr)"`` ->
    ``("Pr141", "CD45")``; a Fluidigm label ``"CD45_1234((567))Pr141"`` -> ``("Pr141",
    "CD45")``; ``"CD45"`` -> ``(None, "CD45")``. Between underscores the first token that
    is a metal is the metal; the tokens after it (else before it) are the label.
    """
    text = (text or "").strip()
    if not text:
        return None, None
    metal = parse_metal(text)
    if metal:
        return metal, None
    m = _LABEL_METAL.match(text)
    if m and parse_metal(m.group(2)):
        return parse_metal(m.group(2)), m.group(1).strip() or None
    metal = metal_from_label(text)
    if metal:
        return metal, clean_label(text) or None
    tokens = text.split("_")
    for i, token in enumerate(tokens):
        metal = parse_metal(token)
        if metal:
            label = ("_".join(tokens[i + 1:]) or "_".join(tokens[:i])).strip()
            # "Ag107_107Ag": the label only repeats the metal, spelled as the metal
            return metal, (metal if parse_metal(label) == metal else label) or None
    return None, text


def steinbock_name(metal: str | None, label: str | None) -> str:
    """``Pr141_CD45`` for a metal and a label, else whichever of them there is."""
    if metal and label and parse_metal(label) != metal:
        return f"{metal}_{label}"
    return metal or label or ""


def steinbock_channel_name(name: str, key: str | None = None) -> str:
    """The one export name of a channel known by its name and its key (metal): ``Pr141_CD45``.

    ``name`` may already carry the metal (``"Pr141_CD45"``, read from a folder of
    single-channel files): it is split first (:func:`split_identity`), so the metal is never
    written twice; a ``key`` that is a metal wins over a metal found in the name.
    """
    metal, label = split_identity(name)
    return steinbock_name(parse_metal(key) or metal, label) or name


def label_key(name: str) -> str:
    """What a channel name says about its target, for matching by label.

    ``"Pr141_CD45"``, ``"CD45"`` and ``"cd45"`` give ``"cd45"``; a bare metal gives itself.
    """
    metal, label = split_identity(name)
    return (label or metal or name).strip().casefold()


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
