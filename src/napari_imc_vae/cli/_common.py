"""Helpers shared by the subcommands: reading images, progress, loading models, errors."""

from __future__ import annotations

import argparse
import sys
import warnings

from napari_imc_vae.engine.defaults import BUDGET_PRESETS  # plain numbers: --help loads no torch

PROG = "napari-imc-vae"


class CommandError(Exception):
    """A failure to report as one line on stderr (no traceback), with exit status 1."""




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



# --- shared by train / reconstruct / quality --------------------------------------

def float_or_off(text: str) -> float | str:
    """A number, or ``"off"`` (also ``none``) to skip a normalization step."""
    if text.strip().lower() in ("off", "none"):
        return "off"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}") from None


#: Largest seed: numpy's and scikit-learn's generators take 0 … 2**32 - 1.
MAX_SEED = 2**32 - 1
#: Largest budget in minutes: one day (a larger number is a typo, and 1e308 overflowed the plan).
MAX_BUDGET_MINUTES = 24 * 60.0
_PRESETS = tuple(BUDGET_PRESETS)


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if kind is float and not abs(value) < float("inf"):  # NaN, inf
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (steps, batch, stride, patch, width, ...)."""
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (a count where 0 means none, e.g. --motifs)."""
    value = _number(text, int, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text}")
    return value


def seed_arg(text: str) -> int:
    """A random seed: a whole number in 0 … 2**32 - 1."""
    value = _number(text, int, f"a whole number from 0 to {MAX_SEED}")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED} (2**32 - 1), got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    value = _number(text, float, "a finite number > 0")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (loss weights, free bits, KL target)."""
    value = _number(text, float, "a finite number >= 0")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def budget_arg(text: str) -> str:
    """A training budget: quick, standard, thorough or minutes in (0, 24 h]; kept as given."""
    if text.strip().lower() in _PRESETS:
        return text
    value = _number(text, float, f"{', '.join(_PRESETS)} or a number of minutes")
    if not 0 < value <= MAX_BUDGET_MINUTES:
        raise argparse.ArgumentTypeError(f"expected {', '.join(_PRESETS)} or a number of minutes > 0 and at most "
                                         f"{MAX_BUDGET_MINUTES:g} (one day), got {text}")
    return text


def check_stride(stride: int | None, patch_size: int) -> None:
    """A tile stride from 1 to the model's patch size (None: the default, patch/2)."""
    if stride is not None and not 1 <= stride <= patch_size:
        raise CommandError(f"--stride must be from 1 to the model's patch size {patch_size}, got {stride}")


#: The help's account of :data:`~napari_imc_vae.preprocessing.DEFAULT_NORMALIZATION`, written out
#: so that building the parser imports no numpy (``--help`` stays fast; a test checks the two agree).
DEFAULT_NORMALIZATION_HELP = "hot pixels T=50 → arcsinh(x/5) → z-score"


def add_normalization_arguments(parser: argparse.ArgumentParser) -> None:
    """The normalization flags of ``diagnose`` and ``train``: one default, ``off`` for each step."""
    g = parser.add_argument_group(f"normalization (default: {DEFAULT_NORMALIZATION_HELP})")
    g.add_argument("--hot-pixel", type=float_or_off, metavar="T",
                   help="hot-pixel threshold in counts, or 'off' (default 50)")
    g.add_argument("--arcsinh", type=float_or_off, metavar="C",
                   help="arcsinh(x / C) cofactor, or 'off' (default 5)")
    g.add_argument("--clip", type=float_or_off, metavar="P",
                   help="clip each channel at percentile P, or 'off' (default off)")
    g.add_argument("--zscore", choices=("on", "off"), help="per-channel z-score (default on)")
    g.add_argument("--no-zscore", dest="zscore", action="store_const", const="off",
                   help="same as --zscore off")


def normalization_from_args(args: argparse.Namespace):
    """:data:`~napari_imc_vae.preprocessing.DEFAULT_NORMALIZATION` with the flags given applied."""
    from dataclasses import replace

    from napari_imc_vae.preprocessing import DEFAULT_NORMALIZATION

    changes = {}
    for flag, name in (("hot_pixel", "hot_pixel_threshold"), ("arcsinh", "arcsinh_cofactor"),
                       ("clip", "clip_percentile")):
        value = getattr(args, flag)
        if value is not None:  # not given: the default; "off": skip the step
            changes[name] = None if value == "off" else value
    if args.zscore is not None:
        changes["zscore"] = args.zscore == "on"
    return replace(DEFAULT_NORMALIZATION, **changes)


def normalization_given(args: argparse.Namespace) -> bool:
    """Whether any normalization flag was given."""
    return any(getattr(args, flag) is not None for flag in ("hot_pixel", "arcsinh", "clip", "zscore"))


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


def _read_target(path: str, acquisition: str | None) -> list:
    """The images of one file or single-image folder; an .mcd gives all its acquisitions."""
    from napari_imc_vae.io import read_imc, read_imc_all

    if acquisition is not None:
        return [read_imc(path, acquisition=acquisition_arg(path, acquisition))]
    return list(read_imc_all(path))


def _messages(caught, images) -> list[str]:
    """Warnings (NaN/Inf pixels, tifffile's remarks) and reader notes (a prefix removed), one line each."""
    return [f"warning: {w.message}" for w in caught] + [f"note: {n}" for im in images for n in im.notes]


def read_all(paths: list[str], acquisition: str | None, quiet: bool) -> list:
    """Every image of the given files and folders; an .mcd gives all its acquisitions."""
    images = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in image_targets(paths):
            images.extend(_read_target(path, acquisition))
    if not quiet:
        for line in _messages(caught, images):
            print(f"{PROG}: {line}", file=sys.stderr)
    return images


def stream_all(paths: list[str], acquisition: str | None, quiet: bool):
    """:func:`read_all` as an ``ImageStream``: each file is read when iterated, none is kept.

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


#: Signals that stop a command as Ctrl-C does: a cluster scheduler sends SIGTERM, a closed
#: terminal SIGHUP; each then cleans up (temporary files, caches, locks) and exits "interrupted".
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> None:
    """Make SIGTERM and SIGHUP raise ``KeyboardInterrupt`` as Ctrl-C does (main thread only).

    Called once by the command line before any command runs, so that every command's
    ``finally`` / cleanup runs for them too (by default they end the process on the spot).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for name in STOP_SIGNALS[1:]:
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) == signal.SIG_DFL:
            signal.signal(getattr(signal, name), _raise_interrupt)


class InterruptGuard:
    """Ctrl-C (and SIGTERM, SIGHUP: :data:`STOP_SIGNALS`) for a long command, installed before
    its heavy imports.

    Until :attr:`on_interrupt` is set, a first signal is only recorded and :meth:`check`
    raises ``KeyboardInterrupt`` at the next safe point: an import cut in half leaves torch
    half-loaded (later imports fail with "loaded twice"), and a read cut in half looked like a
    corrupt input. Once :attr:`on_interrupt` is set (training), a first signal calls it
    instead (stop after the current step and save). A second signal raises at once. The
    command line turns ``KeyboardInterrupt`` into "interrupted", exit status 130.
    Outside the main thread (where signals cannot be handled) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self.on_interrupt = None
        self._previous: dict = {}

    def __enter__(self) -> "InterruptGuard":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.on_interrupt is not None:
            self.on_interrupt()

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop signal came and nothing else handles it."""
        if self.requested and self.on_interrupt is None:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        import signal

        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ``rate`` times a second."""

    def __init__(self, label: str, enabled: bool = True, rate: float = 5.0) -> None:
        self.label, self.enabled, self.interval = label, enabled, 1.0 / rate
        self.last, self.drawn = 0.0, False

    def update(self, done: int, total: int, text: str = "", force: bool = False) -> None:
        import time

        now = time.monotonic()
        if not self.enabled or (not force and done < total and now - self.last < self.interval):
            return
        self.last, self.drawn = now, True
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        print(f"\r{self.label} [{bar}] {done}/{total} {text}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.drawn:
            print(file=sys.stderr, flush=True)


def load_model(path: str, device: str | None = None):
    from pathlib import Path

    from napari_imc_vae.engine.checkpoint import TrainedModel
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


def fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"
