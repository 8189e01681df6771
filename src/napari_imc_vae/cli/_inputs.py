"""Reading a command's inputs: images (one, or a cohort streamed file by file) and model files.

Readers' warnings and notes are printed as one line each on stderr, not as tracebacks.
"""

from __future__ import annotations

import sys
import warnings

from napari_imc_vae.cli._errors import PROG, CommandError


def acquisition_arg(path: str, value: str | None):
    """An identifier the file lists, else a digit string as a 0-based index."""
    if value is None:
        return None
    from napari_imc_vae.io import list_acquisitions

    if value in list_acquisitions(path) or not value.isdigit():
        return value
    return int(value)


def read_image(path: str, acquisition: str | None, what: str = "diagnosing"):
    from napari_imc_vae.io import list_acquisitions, read_imc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_imc(path, acquisition=acquisition_arg(path, acquisition))
        if acquisition is None:
            names = list_acquisitions(path)
            if len(names) > 1:
                listed = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
                print(f"{PROG}: note: {path} holds {len(names)} acquisitions ({listed}); "
                      f"{what} {image.acquisition or image.name}; choose one with --acquisition",
                      file=sys.stderr)
    for w in caught:  # e.g. NaN/Inf pixels: one line each, not a warnings traceback
        print(f"{PROG}: warning: {w.message}", file=sys.stderr)
    for note in image.notes:  # e.g. a file-name prefix removed from the channel names
        print(f"{PROG}: note: {note}", file=sys.stderr)
    return image


def image_targets(paths: list[str]) -> list[str]:
    """The files (or single-image folders) the given paths stand for, in order.

    A folder is what :func:`napari_imc_vae.io.folder_layout` says: one image of
    single-channel files stays one target; a set of stacks or ``.mcd`` files gives its files.
    """
    from pathlib import Path

    from napari_imc_vae.io import folder_layout

    targets = []
    for path in paths:
        layout = folder_layout(path) if Path(path).is_dir() else None
        if layout is not None and layout.kind != "channels":
            targets.extend(str(f) for f in layout.files)
        else:
            targets.append(path)
    return targets


def _read_target(path: str, acquisition: str | None) -> list:
    """The images of one file or single-image folder; an .mcd gives all its acquisitions."""
    from napari_imc_vae.io import read_imc, read_imc_all

    if acquisition is not None:
        return [read_imc(path, acquisition=acquisition_arg(path, acquisition))]
    return list(read_imc_all(path))


def _messages(caught, images) -> list[str]:
    """Warnings (NaN/Inf pixels, tifffile's remarks) and reader notes (a prefix removed), one line each."""
    return [f"warning: {w.message}" for w in caught] + [f"note: {n}" for im in images for n in im.notes]


def stream_all(paths: list[str], acquisition: str | None, quiet: bool):
    """Every image of the given files and folders (an .mcd gives all its acquisitions) as an
    ``ImageStream``: each file is read when iterated, none is kept.

    Training iterates it twice (fit, then normalize), so a cohort larger than RAM never sits in
    memory at once; each warning is printed once.
    """
    import functools

    from napari_imc_vae.engine.data.cohort import ImageStream

    printed: set[str] = set()

    def load(path: str) -> list:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            images = _read_target(path, acquisition)
        for line in _messages(caught, images):
            if not quiet and line not in printed:
                printed.add(line)
                print(f"{PROG}: {line}", file=sys.stderr)
        return images

    return ImageStream([functools.partial(load, path) for path in image_targets(paths)])


def load_model(path: str, device: str | None = None):
    from pathlib import Path

    from napari_imc_vae.engine.model_file.checkpoint import TrainedModel
    from napari_imc_vae.engine.device import resolve_device

    file = Path(path)
    if file.is_dir():
        raise CommandError(f"model file {path} is a directory; give the model file (.pt) written by 'train'")
    if file.exists() and not file.is_file():  # a FIFO would block the read, a device never end
        raise CommandError(f"model file {path} is not a regular file (a pipe, device or socket); "
                           f"give the model file (.pt) written by 'train'")
    dev = resolve_device(device or "auto")  # unknown device: ValueError listing the available ones
    trained = TrainedModel.load(path, map_location=dev)
    for note in trained.notes:  # e.g. a file written before model files carried a content hash
        print(f"{PROG}: note: {note}", file=sys.stderr)
    return trained, dev
