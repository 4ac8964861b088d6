"""``galsim-vae refit-prior BUNDLE DATASET --out BUNDLE``: fit a bundle's flow prior anew."""

from __future__ import annotations

import argparse

from .train import add_flow_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``refit-prior`` sub-command."""
    parser = subparsers.add_parser(
        "refit-prior", help="fit a trained bundle's flow prior anew (same networks)",
        description="Encode the training split of the data set a bundle was trained on with "
                    "the bundle's encoder, fit a new flow prior to the encodings "
                    "(early-stopped on the validation split's) and write a copy of the "
                    "bundle with it.  Flow options left out take the bundle's own.")
    parser.add_argument("bundle", help="bundle folder (or the name of a shipped bundle)")
    parser.add_argument("dataset", metavar="DATASET",
                        help="the data set the bundle was trained on (same standardisation)")
    parser.add_argument("--out", required=True, metavar="BUNDLE", help="bundle folder to write")
    parser.add_argument("--extra-data", action="append", default=[], metavar="DATASET",
                        help="another data set of the same population (same stamp size, "
                             "pixel scale and flux units) whose training and validation "
                             "galaxies the flow is fitted to as well, encoded in the "
                             "bundle's normalisation; repeatable")
    add_flow_arguments(parser, defaults=False)
    parser.add_argument("--noise-correlation", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="refine encodings with the correlated-noise likelihood (with "
                             "--flow-refine-steps; the data set must record its noise models; "
                             "default: as the bundle was trained)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the encodings and the flow (default: the training's)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="keep the encodings here; a second refit with other flow "
                             "settings reads them back (default: none)")
    parser.add_argument("--overwrite", action="store_true", help="replace the --out bundle")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Refit and print the new prior's fit."""
    from ..bundle import read_bundle
    from ..training.refit import refit_prior

    out = refit_prior(args.bundle, args.dataset, args.out, hidden_units=args.flow_units,
                      n_couplings=args.flow_couplings, epochs=args.flow_epochs,
                      orientations=args.flow_orientations,
                      refine_steps=args.flow_refine_steps,
                      refine_rate=args.flow_refine_rate, select=args.flow_select or "nll",
                      spline_bins=args.flow_spline_bins,
                      condition_shift=args.flow_condition_shift,
                      fresh_samples=args.flow_fresh_samples, balance=args.flow_balance,
                      orientation=args.flow_orientation, extra_data=args.extra_data,
                      noise_correlation=args.noise_correlation, seed=args.seed,
                      cache_dir=args.cache_dir, overwrite=args.overwrite)
    fit = read_bundle(out).training["prior_refit"]
    held_out = f", validation {fit['val_nll']:.3f}" if "val_nll" in fit else ""
    kind = f"spline ({fit['spline_bins']} bins)" if fit.get("spline_bins") else "affine"
    shifted = " and a shift linear in the conditions" if fit.get("condition_shift") else ""
    fresh = "fresh posterior samples of " if fit.get("fresh_samples") else ""
    turns = (("the canonical orientation pair" if fit["orientations"] >= 2 else
              "the first canonical orientation") + " of each galaxy"
             if fit.get("orientation") == "canonical"
             else f"{fit['orientations']} orientation(s)")
    extra = (f" of {1 + len(fit['extra_data'])} data sets" if fit.get("extra_data") else "")
    print(f"wrote model bundle {out}: flow prior of {fit['couplings']} {kind} couplings "
          f"({','.join(map(str, fit['units']))}){shifted} fitted to {fresh}{turns}{extra}, "
          f"best epoch {fit['best_epoch']}, NLL {fit['nll']:.3f}{held_out} nats per latent")
    return 0
