"""``galsim-vae export``: add the LiteRT generator to a bundle made before it was part of
every bundle (``train`` writes it since 2026-12-03)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` sub-command."""
    parser = subparsers.add_parser(
        "export", help="add the LiteRT generator (sampling without TensorFlow) to a bundle",
        description="Convert a bundle's decoder and learned prior to LiteRT flat buffers "
                    "(decoder_b*.tflite, prior_b*.tflite; builtin operators only, fixed batches), "
                    "check them against TensorFlow and add them, checksummed, to the bundle "
                    "in place.  Sampling (load_model, VAEGalaxy, YAML, galsim-vae sample) "
                    "then runs without TensorFlow.")
    parser.add_argument("bundle", help="bundle folder (or the name of a shipped bundle)")
    parser.add_argument("--batch", type=int, default=16,
                        help="rows of the batched generator calls; a batch of 1 is exported "
                             "beside it (default 16)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export and print what was written."""
    from ..bundle import read_bundle, resolve_bundle
    from ..bundle.export import export_bundle
    from ..errors import InputDataError

    if args.batch < 1:
        raise InputDataError(f"--batch {args.batch} must be >= 1")
    path = export_bundle(resolve_bundle(args.bundle), batch=args.batch)
    generator = read_bundle(path).generator
    print(f"exported the generator of {str(path)!r}: {', '.join(generator.files())} "
          f"(batches {', '.join(map(str, generator.batches))}; LiteRT against TensorFlow: "
          f"max relative difference "
          f"{generator.max_relative_difference:.2g})")
    return 0
