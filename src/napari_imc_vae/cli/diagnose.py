"""``napari-imc-vae diagnose``: per-channel statistics before/after normalization."""

from __future__ import annotations

import argparse

from napari_imc_vae.cli._common import add_normalization_arguments, normalization_from_args, read_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="IMC file: .mcd, .txt, .ome.tiff, .tiff (+ panel.csv) "
                                     "or a folder of TIFFs")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier (e.g. ROI_001) or 0-based index; "
                             "default the first")
    add_normalization_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")


def run(args: argparse.Namespace) -> int:
    import json

    from napari_imc_vae.preprocessing import Normalizer, diagnose

    image = read_image(args.path, args.acquisition)
    params = normalization_from_args(args)
    normalizer = Normalizer.fit(image, hot_pixel_threshold=params.hot_pixel_threshold,
                                arcsinh_cofactor=params.arcsinh_cofactor,
                                clip_percentile=params.clip_percentile, zscore=params.zscore)
    result = diagnose(image, normalizer)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(result.format_text())
    return 0
