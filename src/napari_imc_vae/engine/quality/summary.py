"""The report's first layer: three to five plain sentences a biologist reads in a minute.

Is the model good enough to look at, which markers it explains well or badly, which have no
signal to explain, and how many places look like artefacts and where. The words read the
quality report's findings (:attr:`QualityReport.problems <napari_imc_vae.engine.quality.report.QualityReport>`),
the per-marker summaries (:mod:`~napari_imc_vae.engine.quality.marker_summary`) and the regions of high
error; the figures behind them (and the machine-learning names) are the second layer, after
:data:`NUMBERS_HEADER`, which :func:`two_layer_text` puts between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

from napari_imc_vae.engine.quality.marker_summary import EXPLAINED_WORDS, MarkerSummary, marker_label

__all__ = ["NUMBERS_HEADER", "overall_sentences", "marker_sentences", "region_sentence", "summary_sentences",
           "two_layer_text", "split_two_layers", "quality_text"]

#: The line between the plain sentences and the numbers in a report's text.
NUMBERS_HEADER = "The numbers behind this:"
#: Markers named per group in a sentence; the rest are counted ("and 12 more").
_NAMED = 6
_BROKEN = ("nonfinite_reconstruction", "no_better_than_mean", "worse_than_constant", "posterior_collapse")
#: What each finding means for the picture, most serious first (one is said).
_DETAIL = (("blur", "Its reconstruction is smoother than {the_image}: sharp edges and small bright spots are lost."),
           ("averaged_outputs", "Its reconstructions of different places look more alike than the tissue does."),
           ("underfit", "It misses part of {the_images} broad pattern, not only {its} noise."),
           ("channel_mix", "The mix of markers it predicts at a place is often off."),
           ("orientation", "Its description of a place changes when the tissue is turned or mirrored, so "
                           "motifs may split by orientation."))


def overall_sentences(report, reason: str | None = None, *, n_images: int = 1) -> list[str]:
    """One or two sentences: is the model good enough to look at, and what its pictures lose.

    Parameters
    ----------
    report : QualityReport or None
    reason : str, optional
        Why there is no report (shown when ``report`` is None).
    n_images : int
        How many images the report's patches come from: 1 says "this image" (an applied model,
        or training on one image), more say "these images" (held-out patches of several).
    """
    one = n_images == 1
    this = "this image" if one else "these images"
    if report is None:
        return [f"The model's overall quality was not measured on {this} ({reason or 'not asked for'})."]
    probs = set(report.problems)
    if "nonfinite_reconstruction" in probs:
        first = ("Not good enough to look at: the model's output holds invalid values (its training "
                 "probably went wrong); train it again.")
    elif probs & {"no_better_than_mean", "worse_than_constant"}:
        first = ("Not good enough to look at: the reconstruction is no better than a flat average of each "
                 "marker; train the model longer or on more images.")
    elif "posterior_collapse" in probs:
        first = ("Not good enough to look at: the model describes most places alike (it uses few of its "
                 "features); train it longer or with a smaller model.")
    elif not report.has_baseline:
        first = ("The model file is of an older format and holds no yardstick fitted on its training images, "
                 "so there is no verdict on whether it is good enough; train it again to get one.")
    elif "below_pca" in probs:
        first = ("Look with care: a simple linear summary fitted on the same training images keeps more of "
                 f"{this} than the model does; train it longer or on more images.")
    else:
        first = (f"Good enough to look at: the model keeps more of {this} than a simple linear summary "
                 "fitted on the same training images.")
    out = [first]
    if not probs & set(_BROKEN):
        out += [words.format(the_image="the image" if one else "the images",
                             the_images="the image's" if one else "the images'", its="its" if one else "their")
                for name, words in _DETAIL if name in probs][:1]
    return out


def _names(markers: Sequence[MarkerSummary]) -> str:
    labels = [m.label for m in markers]
    if len(labels) > _NAMED:
        labels = labels[:_NAMED - 1] + [f"{len(labels) - _NAMED + 1} more"]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def marker_sentences(markers: Sequence[MarkerSummary]) -> list[str]:
    """Which markers the model explains well or badly, and which have no signal to explain.

    At most two sentences; markers best explained first within each group.
    """
    out = []
    with_signal = sorted((m for m in markers if m.explained is not None), key=lambda m: -m.explained)
    if with_signal:
        groups = []
        for i, (lowest, words) in enumerate(EXPLAINED_WORDS):
            upper = EXPLAINED_WORDS[i - 1][0] if i else float("inf")
            group = [m for m in with_signal if lowest <= m.explained < upper]
            if group:
                groups.append(f"{_names(group)}: {words}")
        out.append("Per marker — " + "; ".join(groups) + ".")
    empty = [m for m in markers if not m.has_signal and m.p99_counts == m.p99_counts]
    if empty:
        verb = "has" if len(empty) == 1 else "have"
        predicted = [m for m in empty if m.predicts_pattern]
        if predicted:
            them = "it" if len(empty) == 1 else ("them" if len(predicted) == len(empty) else _names(predicted))
            out.append(f"{_names(empty)} {verb} almost no signal in this image; the model still predicts some "
                       f"for {them} — do not read it as expression.")
        else:
            out.append(f"{_names(empty)} {verb} almost no signal in this image, and the model predicts none.")
    return out


def _where(y: float, x: float, shape: tuple[int, int]) -> str:
    """``top left`` … ``centre`` … ``bottom right``: the third of the image a point is in."""
    rows, cols = ("top", "middle", "bottom"), ("left", "centre", "right")
    r = rows[min(2, int(3 * y / max(shape[0], 1)))]
    c = cols[min(2, int(3 * x / max(shape[1], 1)))]
    return "centre" if (r, c) == ("middle", "centre") else (f"{r} {c}" if r != "middle" else f"middle {c}")


def _spike_clause(spikes: Sequence[dict] | None, lead: str = "Apart from these, ",
                  hot_pixel_threshold: float | None = None) -> str:
    """Single high pixels, counted apart from the areas: hot pixels the hot-pixel filter replaced
    (more than its threshold, in counts, above their neighbours in a marker) and isolated spikes it kept.

    A spike's ``hot_pixel`` is True (the filter replaced a value there), False (it did not) or
    None (not known: the filter's mask was not kept); ``hot_pixel_threshold`` None: no filter
    (when no spike is a hot pixel).
    """
    if not spikes:
        return ""
    n = len(spikes)
    head = f" {lead}{n} single pixel{'s' * (n != 1)} differ{'s' * (n == 1)} from the model far beyond counting noise"
    spikes_words = "an isolated spike" if n == 1 else "isolated spikes"
    if any(s.get("hot_pixel") is None for s in spikes):
        return f"{head}: {spikes_words}."
    hot = sum(bool(s["hot_pixel"]) for s in spikes)
    if hot_pixel_threshold is None and not hot:
        return f"{head}: {spikes_words}, left as measured (this model has no hot-pixel filter)."
    above = "far above" if hot_pixel_threshold is None else f"more than {hot_pixel_threshold:g} counts above"
    if hot == n:
        return f"{head}: {'a hot pixel' if n == 1 else 'hot pixels'} the hot-pixel filter replaced ({above} " \
               f"{'its' if n == 1 else 'their'} neighbours in a marker)."
    if hot == 0:
        return f"{head}: {spikes_words} the hot-pixel filter kept, as {'it stands no' if n == 1 else 'none stands'} " \
               f"{above} its neighbours in any marker."
    kept = n - hot
    return (f"{head}: {hot} {'is a hot pixel' if hot == 1 else 'are hot pixels'} the hot-pixel filter replaced "
            f"({above} {'its' if hot == 1 else 'their'} neighbours in a marker), {kept} "
            f"{'is an isolated spike' if kept == 1 else 'are isolated spikes'} it kept.")


def region_sentence(regions: Sequence[dict] | None, shape: tuple[int, int],
                    spikes: Sequence[dict] | None = None, *,
                    hot_pixel_threshold: float | None = None) -> list[str]:
    """How many places (areas) look like artefacts, and where the worst ones are; single high
    pixels (``spikes``) counted apart, hot pixels (the filter of ``hot_pixel_threshold`` counts,
    None: none) from the spikes it kept; nothing when not searched."""
    if regions is None:
        return []
    n = len(regions)
    if n == 0:
        return ["No place looks like an artefact: nowhere does an area of the image differ from the model by "
                "much more than counting noise." + _spike_clause(spikes, "Only ", hot_pixel_threshold)]
    places = []
    for r in list(regions)[:2]:
        channel = str(r.get("channels") or "").split(";")[0]
        area = int(r.get("area", 1))
        what = ("a single pixel" if area == 1 else f"{area} neighbouring pixels" if r.get("shape") == "single pixel"
                else f"a line of {area} px" if r.get("shape") == "line" else f"a patch of {area} px")
        in_marker = f" in {marker_label(channel)}" if channel else ""
        places.append(f"{what}{in_marker} at the {_where(r['y'], r['x'], shape)} (x {r['x']:.0f}, y {r['y']:.0f} px)")
    head = ("1 place looks like an artefact (it differs from the model far beyond counting noise): "
            if n == 1 else
            f"{n} places look like artefacts (they differ from the model far beyond counting noise); the worst: ")
    return [head + "; ".join(places) + " — see the regions table." + _spike_clause(spikes, hot_pixel_threshold=hot_pixel_threshold)]


def summary_sentences(report, markers: Sequence[MarkerSummary] = (), regions: Sequence[dict] | None = None, *,
                      shape: tuple[int, int] = (1, 1), reason: str | None = None,
                      spikes: Sequence[dict] | None = None, hot_pixel_threshold: float | None = None) -> list[str]:
    """The first layer of the report: three to five plain sentences.

    Parameters
    ----------
    report : QualityReport or None
    markers : sequence of MarkerSummary
    regions : sequence of dict, optional
        Regions of high error (``y``, ``x`` in pixels, ``area``, ``shape``, ``channels``), worst
        first; None when they were not searched for.
    shape : (int, int)
        The image's (Y, X), to say where a region is.
    reason : str, optional
        Why there is no report.
    spikes : sequence of dict, optional
        Isolated single high pixels (``hot_pixel``: the filter replaced a value there; None: not
        known), counted apart.
    hot_pixel_threshold : float, optional
        The model's hot-pixel filter threshold in counts; None: the model has no filter.
    """
    out = (overall_sentences(report, reason) + marker_sentences(markers)
           + region_sentence(regions, shape, spikes, hot_pixel_threshold=hot_pixel_threshold))
    return out[:5]


def two_layer_text(sentences: Sequence[str], numbers: str) -> str:
    """The sentences, one a line, then :data:`NUMBERS_HEADER` and the numbers (when there are any)."""
    text = "\n".join(sentences)
    return f"{text}\n\n{NUMBERS_HEADER}\n{numbers}" if numbers.strip() else text


def split_two_layers(text: str) -> tuple[list[str], str]:
    """The plain sentences (non-empty lines before :data:`NUMBERS_HEADER`) and the numbers after it."""
    head, sep, tail = (text or "").partition(f"\n{NUMBERS_HEADER}\n")
    if not sep and (text or "").startswith(f"{NUMBERS_HEADER}\n"):
        head, tail = "", text[len(NUMBERS_HEADER) + 1:]
    return [line.strip() for line in head.splitlines() if line.strip()], tail.strip("\n")


def quality_text(report, patches: str = "held-out patches", heading: str = "", *, n_images: int = 1) -> str:
    """A quality report alone (no whole image: at the end of training, or the CLI's ``quality``) in
    two layers: :func:`overall_sentences` and what was measured, then the report's table.

    Parameters
    ----------
    report : QualityReport or None
        None gives "".
    patches : str
        What the measured patches are ("held-out patches", "patches of this image").
    heading : str
        A first line for the numbers (e.g. the image and the patch grid).
    n_images : int
        How many images the patches come from (see :func:`overall_sentences`).
    """
    if report is None:
        return ""
    sentences = overall_sentences(report, n_images=n_images) + [f"Measured on {report.n_val:,} {patches}."]
    numbers = report.format_text(patches)
    return two_layer_text(sentences, f"{heading}\n{numbers}" if heading else numbers)
