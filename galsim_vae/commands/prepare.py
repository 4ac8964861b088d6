"""``galsim-vae prepare cosmos|deepfield``: make a training set from Hubble data."""

from __future__ import annotations

import argparse
import importlib

#: Sources of ``prepare``: name -> module in galsim_vae.commands.
SOURCES = {"cosmos": "prepare_cosmos", "deepfield": "prepare_deepfield"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``prepare`` and its per-source sub-commands."""
    parser = subparsers.add_parser(
        "prepare", help="make a training set from a COSMOS catalog or a deep-field image",
        description="Make a galsim-vae data set folder from Hubble data.")
    sources = parser.add_subparsers(dest="source", metavar="SOURCE")
    sources.required = True
    for module_name in SOURCES.values():
        try:
            module = importlib.import_module(f"galsim_vae.commands.{module_name}")
        except ModuleNotFoundError as err:
            if err.name == f"galsim_vae.commands.{module_name}":
                continue
            raise
        module.add_parser(sources)
    return parser
