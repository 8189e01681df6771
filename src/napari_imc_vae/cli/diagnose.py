"""``napari-imc-vae diagnose``: per-channel statistics before/after normalization.

A path holding several images (a steinbock ``img/`` folder, an ``.mcd`` of several
acquisitions) is diagnosed whole unless ``--acquisition`` picks one: every image under one
normalizer fitted on them all, with a cohort summary of channel statistics
(:func:`~napari_imc_vae.preprocessing.cohort_diagnosis.diagnose_cohort`).
"""

from __future__ import annotations

import argparse

from napari_imc_vae.cli._arguments import add_normalization_arguments, normalization_from_args
from napari_imc_vae.cli._inputs import read_image, stream_all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="IMC file: .mcd, .txt, .ome.tiff, .tiff (+ panel.csv) "
                                     "or a folder of TIFFs")
    parser.add_argument("--acquisition", metavar="A",
                        help="one acquisition of an .mcd (identifier, e.g. ROI_001, or 0-based index) or image "
                             "of a folder; default every image, with a cohort summary")
    add_normalization_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from napari_imc_vae.io import list_acquisitions
    from napari_imc_vae.preprocessing import Normalizer, diagnose

    params = normalization_from_args(args)
    if args.acquisition is None and len(list_acquisitions(args.path)) > 1:
        return _run_cohort(args, params)
    image = read_image(args.path, args.acquisition)
    normalizer = Normalizer.fit(image, hot_pixel_threshold=params.hot_pixel_threshold,
                                arcsinh_cofactor=params.arcsinh_cofactor,
                                clip_percentile=params.clip_percentile, zscore=params.zscore)
    result = diagnose(image, normalizer)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(result.format_text())
    return 0


def _run_cohort(args: argparse.Namespace, params) -> int:
    import json

    from napari_imc_vae.preprocessing.cohort_diagnosis import diagnose_cohort

    stream = stream_all([args.path], None, quiet=False)  # read one image at a time, twice
    result = diagnose_cohort(lambda: iter(stream), hot_pixel_threshold=params.hot_pixel_threshold,
                             arcsinh_cofactor=params.arcsinh_cofactor, clip_percentile=params.clip_percentile,
                             zscore=params.zscore)
    print(json.dumps(result.to_dict(), indent=2, allow_nan=False) if args.json else result.format_text())
    return 0
