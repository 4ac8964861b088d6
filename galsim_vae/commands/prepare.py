"""``galsim-vae prepare cosmos|deepfield``: make a training set from Hubble data."""

from __future__ import annotations

import argparse

from . import add_command_parsers

#: Sources of ``prepare``: name -> module in galsim_vae.commands.
SOURCES = {"cosmos": "prepare_cosmos", "deepfield": "prepare_deepfield",
           "merge": "prepare_merge"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``prepare`` and its per-source sub-commands."""
    parser = subparsers.add_parser(
        "prepare", help="make a training set from a COSMOS catalog or a deep-field image",
        description="Make a galsim-vae data set folder from Hubble data.")
    sources = parser.add_subparsers(dest="source", metavar="SOURCE")
    sources.required = True
    add_command_parsers(sources, SOURCES.values())
    return parser
