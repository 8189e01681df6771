"""``napari-imc-vae diagnose``: per-channel statistics before/after normalization."""

from __future__ import annotations

import argparse

from napari_imc_vae.cli._common import read_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="IMC file: .mcd, .txt, .ome.tiff, .tiff (+ panel.csv) "
                                     "or a folder of TIFFs")
    parser.add_argument("--acquisition", metavar="A",
                        help="acquisition of an .mcd: identifier (e.g. ROI_001) or 0-based index; "
                             "default the first")
    parser.add_argument("--hot-pixel", type=float, metavar="T",
                        help="hot-pixel filter threshold in counts (steinbock uses 50); "
                             "default off")
    parser.add_argument("--arcsinh", type=float, metavar="C",
                        help="arcsinh(x / C) cofactor (1 or 5 for IMC); default off")
    parser.add_argument("--clip", type=float, metavar="P",
                        help="clip each channel at percentile P (e.g. 99.9); default off")
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON")



def run(args: argparse.Namespace) -> int:
    import json

    from napari_imc_vae.preprocessing import Normalizer, diagnose

    image = read_image(args.path, args.acquisition)
    normalizer = Normalizer.fit(image, hot_pixel_threshold=args.hot_pixel,
                                arcsinh_cofactor=args.arcsinh, clip_percentile=args.clip)
    result = diagnose(image, normalizer)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print(result.format_text())
    return 0


