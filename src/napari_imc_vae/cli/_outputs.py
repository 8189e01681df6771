"""A command's outputs, settled before any work: their names, and the claim on the ``-o`` path."""

from __future__ import annotations

from napari_imc_vae.cli._errors import CommandError
from napari_imc_vae.cli._inputs import acquisition_arg, image_targets


def output_stems(paths: list[str], acquisition: str | None) -> list[tuple[str, str]]:
    """``(stem, source)`` of every image the paths stand for, decided before any reading.

    The stem is the image's name as a safe file name (:func:`~napari_imc_vae.io.output_guard.safe_stem`:
    an ``.mcd`` acquisition description may hold ``/``).

    Raises
    ------
    CommandError
        When two images would write outputs of the same name (``A/roi.ome.tiff`` and
        ``B/roi.ome.tiff``): names both.
    """
    from napari_imc_vae.io import list_acquisitions
    from napari_imc_vae.io.image import source_stem
    from napari_imc_vae.io.output_guard import duplicate_stems, safe_stem

    named = []
    for path in image_targets(paths):
        stem = source_stem(path)
        if path.lower().endswith(".mcd"):
            idents = list_acquisitions(path)
            if acquisition is not None:
                value = acquisition_arg(path, acquisition)
                idents = [idents[value]] if isinstance(value, int) and 0 <= value < len(idents) else [str(value)]
            named += [(safe_stem(f"{stem}_{ident}"), f"{path} ({ident})") for ident in idents]
        else:
            named.append((safe_stem(stem), path))
    clash = duplicate_stems(named)
    if clash:
        raise CommandError(clash)
    return named


def claim_output(output: str, inputs, *, what: str, is_folder: bool):
    """Before any work: refuse an output that would touch an input, check it can be written,
    and lock it for this run.

    Parameters
    ----------
    output : str
        The ``-o`` path: a file (``is_folder=False``, e.g. a model file) or an output folder.
    inputs : sequence of str
        Input files and folders as given on the command line.
    what : str
        ``"model file"``, ``"output folder"``: names the output in messages.

    Returns
    -------
    OutputLock
        Held; use as a context manager (or call ``release``). A second run on the same
        output fails at once naming this one.

    Raises
    ------
    OutputError
        Naming the input it would hit, why it cannot be written, or the run that holds it.
    """
    from pathlib import Path

    from napari_imc_vae.io.atomic import check_output_dir, check_output_file
    from napari_imc_vae.io.output_guard import OutputLock, check_output_apart

    check_output_apart(output, inputs, what=what, is_folder=is_folder)
    new_folder = is_folder and not Path(output).exists()
    if is_folder:
        check_output_dir(output, what)
    else:
        check_output_file(output, what)
    # a folder made here and left empty (the run failed before writing) is removed with the lock
    return OutputLock(output, remove_empty=new_folder).acquire()
