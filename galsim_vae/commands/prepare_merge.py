"""``galsim-vae prepare merge SHARD... --out OUT``: join data sets prepared in shards."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``merge`` under ``prepare``."""
    parser = subparsers.add_parser(
        "merge", help="join the shards of 'prepare cosmos --shard i/n' into one data set",
        description="Check that the data sets of 'prepare cosmos --shard 1/n' ... 'n/n' "
                    "belong to one run (same catalog, cuts and options, each shard once) "
                    "and write the data set one run would have written.")
    parser.add_argument("shards", nargs="+", metavar="SHARD", help="the shard folders")
    parser.add_argument("--out", required=True, help="output data set folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Merge the shards; library errors propagate to the CLI's handler."""
    from ..data.dataset import Dataset
    from ..data.merge import merge_datasets

    path = merge_datasets(args.shards, args.out, overwrite=args.overwrite)
    print(f"wrote {Dataset(path).n_galaxies} galaxies from {len(args.shards)} shards to "
          f"{str(path)!r}")
    return 0
