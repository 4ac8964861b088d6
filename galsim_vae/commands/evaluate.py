"""``galsim-vae evaluate BUNDLE --data DATASET --out DIR``: the evaluation report."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command."""
    from ..evaluation.report.context import N_ISOTROPY

    parser = subparsers.add_parser(
        "evaluate", help="evaluate a model bundle on a data set and write a report",
        description="Write a report folder (report.md, PNG figures, metrics.json): loss "
                    "curves, reconstructions of held-out galaxies and their chi-square per "
                    "pixel, generated galaxies, latent-space maps, morphology statistics "
                    "of generated against held-out galaxies (rendered with the held-out "
                    "PSFs and noise), and the targets met or not.")
    parser.add_argument("bundle", metavar="BUNDLE", help="model bundle folder or shipped name")
    parser.add_argument("--data", required=True, metavar="DATASET",
                        help="data set folder (same stamp size and pixel scale as the bundle)")
    parser.add_argument("--out", required=True, metavar="DIR", help="report folder to write")
    parser.add_argument("--n-generated", type=int, default=None, metavar="N",
                        help="generated galaxies (default: as many as held-out ones, at most 2000)")
    parser.add_argument("--max-heldout", type=int, default=None, metavar="N",
                        help="use at most N held-out galaxies (a seeded random subset)")
    parser.add_argument("--split", choices=("auto", "test", "validation", "train", "all"),
                        default="auto",
                        help="galaxies to evaluate on: auto (the test split, else validation; "
                             "default), one split, or all (a data set the model never saw, "
                             "e.g. real galaxies for a model trained on a simulation)")
    parser.add_argument("--nonparametric", action="store_true",
                        help="also compare Gini, M20, C, A (statmorph; slow, ~0.15 s/stamp)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="galaxies per network call (default: 64)")
    parser.add_argument("--n-isotropy", type=int, default=N_ISOTROPY, metavar="N",
                        help=f"generated galaxies of the isotropy test (default: {N_ISOTROPY}; "
                             "0: no fidelity section)")
    parser.add_argument("--no-selection", action="store_true",
                        help="observe generated galaxies with one fresh noise draw each, not "
                             "given the data set's sample cuts (its MAG_AUTO limit)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``galsim-vae evaluate`` and print the targets."""
    from ..evaluation.report import REPORT_FILE, evaluate

    metrics = evaluate(args.bundle, args.data, args.out, n_generated=args.n_generated,
                       max_heldout=args.max_heldout, nonparametric=args.nonparametric,
                       seed=args.seed, overwrite=args.overwrite, batch_size=args.batch_size,
                       split=args.split, n_isotropy=args.n_isotropy,
                       selection=not args.no_selection)
    met = sum(bool(t["met"]) for t in metrics["targets"])
    print(f"wrote {args.out}/{REPORT_FILE}: reconstruction chi2/pixel "
          f"{metrics['reconstruction']['chi2_per_pixel']}, {met} of "
          f"{len(metrics['targets'])} targets met")
    for target in metrics["targets"] + metrics.get("fidelity_targets", []):
        print(f"  {'met    ' if target['met'] else 'NOT MET'}  {target['target']}: "
              f"{target['value']} ({target['requirement']})")
    return 0
