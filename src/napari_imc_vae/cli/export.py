"""``napari-imc-vae export``: a model file → a BioImage Model Zoo package (zip).

Thin over :func:`napari_imc_vae.engine.bmz.export.export_package` (the Train widget's *Export for
the BioImage Model Zoo…* calls the same function).
"""

from __future__ import annotations

import argparse
import sys

from napari_imc_vae.cli._errors import PROG, CommandError
from napari_imc_vae.cli._inputs import load_model, read_image
from napari_imc_vae.cli._outputs import claim_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model file written by 'train' (or a package to re-export)")
    parser.add_argument("-o", "--output", required=True, metavar="PACKAGE.zip", help="the package to write")
    parser.add_argument("--sample", required=True, metavar="IMAGE",
                        help="a real image with the model's channels, ideally one it was trained on: the test "
                             "input is its crop with the most signal; the cover and the Validation figures of "
                             "the documentation come from it")
    parser.add_argument("--acquisition", metavar="A", help="acquisition of an .mcd sample: identifier or 0-based index")
    parser.add_argument("--name", help="the model's name in the zoo (letters, digits, spaces, _+-(); "
                                       "default from the panel)")
    parser.add_argument("--author", action="append", metavar="NAME",
                        help="an author's full name; repeat for several (default your login name)")
    parser.add_argument("--license", default="CC-BY-4.0", metavar="SPDX",
                        help="licence of the model, an SPDX identifier (default CC-BY-4.0)")
    parser.add_argument("--description", help="one or two sentences for the zoo (default: what the model does)")


def run(args: argparse.Namespace) -> int:
    if not args.output.lower().endswith(".zip"):
        raise CommandError(f"output must be a .zip file (a zoo package), got {args.output}")
    with claim_output(args.output, [args.model, args.sample], what="package", is_folder=False):
        return _export(args)


def _export(args: argparse.Namespace) -> int:
    from napari_imc_vae.engine.bmz.export import export_package

    trained, _ = load_model(args.model, "cpu")
    image = read_image(args.sample, args.acquisition, "exporting with")
    result = export_package(trained, image, args.output, name=args.name, authors=args.author,
                            license=args.license, description=args.description)
    for note in result.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)
    y0, x0, h, w = result.crop
    size = result.path.stat().st_size
    print(f"wrote {result.path} ({size / 1e6:.2f} MB): bioimageio spec 0.5, weights pytorch_state_dict and "
          f"torchscript; test input {h}×{w} px at y={y0}, x={x0} of {image.name}")
    print(f"check it with: bioimageio test {result.path}   (pip install 'napari-imc-vae[bmz]')")
    return 0
