"""Which flow fit reproduces the aggregate posterior's morphology.

A flow prior is fitted to the encodings of the training split and early-stopped on its
likelihood of the validation split's.  A lower held-out NLL need not mean samples whose
decoded galaxies have the right |g| and size distributions, which is what a user relies on.
This script fits flows with several settings to the same (cached) encodings of a bundle's
training split, draws from each at the conditions of the validation encodings, decodes the
draws and the validation encodings themselves (PSF-free, noiseless) and compares their
HSM |g| and size: mean ratio and two-sample KS statistic, and the worst of the median-size
ratios in five quantile bins of the first condition (the redshift of a cvae2).  The bundle's own flow is the
first row.  The decoded validation encodings are what a perfect prior would give.

Usage::

    python benchmarks/prior_fit.py trained/cvae2_cosmos_sim runs/sim20k_128 \\
        --cache-dir runs/refit_cache --config 8:128,128 --config 12:256,256 --n 8000

A third field gives rational-quadratic spline couplings of that many bins
(``--config 8:128,128:8``; ``FlowPrior(spline_bins=8)``).

``--trajectory N`` fits each flow for all ``--epochs`` without early stopping and prints
the comparison every N epochs (how the morphology moves as the flow fits the training
encodings more closely than the validation NLL would stop it); ``--temperature T`` adds
rows for the bundle's flow with its base noise scaled by T (sampling at a reduced
temperature, Kingma & Dhariwal 2018, arXiv:1807.03039).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _config(text: str) -> tuple[int, tuple[int, ...], int]:
    couplings, units, *bins = text.split(":")
    return int(couplings), tuple(int(u) for u in units.split(",")), int(bins[0]) if bins else 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("dataset")
    parser.add_argument("--cache-dir", default=None, help="encodings cache (as refit-prior's)")
    parser.add_argument("--config", action="append", type=_config, default=[],
                        metavar="COUPLINGS:UNITS[:BINS]",
                        help="a flow to fit, e.g. 8:128,128 (affine) or 8:128,128:8 (splines)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--n", type=int, default=8000, help="validation encodings compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trajectory", type=int, default=0, metavar="N",
                        help="no early stopping: compare every N epochs of each fit")
    parser.add_argument("--temperature", type=float, action="append", default=[],
                        metavar="T", help="the bundle's flow with its base noise scaled by T")
    args = parser.parse_args(argv)

    from galsim_vae.bundle import load_bundle, resolve_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.models.prior_fit import fit_flow_prior
    from galsim_vae.training.encodings import cached_encodings
    from galsim_vae.training.flow_selection import (condition_bins, decoded_morphology,
                                                    morphology_distance)

    model, spec = load_bundle(resolve_bundle(args.bundle))
    data = Dataset(args.dataset)
    names = [c.name for c in spec.conditions]
    training = spec.training
    own = training.get("flow_prior") or {}
    seed = int(training.get("seed") or 0)
    settings = dict(orientations=int(own.get("orientations", 1)), refine_steps=0,
                    prior_weight=float(training["final"]["beta"]), cache_dir=args.cache_dir)
    train = cached_encodings(model, data, "train", names, spec.psf_free, 64, seed=seed,
                             **settings)
    held_out = cached_encodings(model, data, "validation", names, spec.psf_free, 64,
                                seed=seed + 1, **settings)
    train_z, train_c, val_z, val_c = (train.latents, train.conditions, held_out.latents,
                                      held_out.conditions)
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(len(val_z), min(args.n, len(val_z)), replace=False)
    cond = None if val_c is None else val_c[rows]
    eps = rng.standard_normal((len(rows), model.latent_size)).astype(np.float32)
    bins = condition_bins(cond, len(rows))
    reference = decoded_morphology(model, val_z[rows], cond, pixel_scale=spec.pixel_scale,
                                   desc="validation encodings")
    ref_g, ref_size, ref_ok = reference
    print(f"{args.bundle}: {len(train_z)} training and {len(val_z)} validation encodings; "
          f"{len(rows)} compared; decoded validation encodings: mean |g| "
          f"{ref_g[ref_ok].mean():.4f}, mean sigma {ref_size[ref_ok].mean():.4f} arcsec")
    print("flow | val NLL | epoch | fit s | mean |g| | KS |g| | mean size | KS size | "
          "worst bin size | std ratio", flush=True)

    def compare(label, flow, epoch, seconds, temperature=1.0) -> float:
        nll = float(-np.mean(flow(val_z, val_c).numpy()))
        z = flow.transform(eps * np.float32(temperature), cond).numpy()
        drawn = decoded_morphology(model, z, cond, pixel_scale=spec.pixel_scale, desc=label)
        d = morphology_distance(*drawn, *reference, bins)
        std_ratio = float(np.mean(z.std(axis=0) / val_z[rows].std(axis=0)))
        print(f"{label} | {nll:.3f} | {epoch} | {seconds:.0f} | "
              f"{d['mean_g']:+.4f} | {d['ks_g']:.4f} | {d['mean_size']:+.4f} | "
              f"{d['ks_size']:.4f} | {d['worst_bin_size']:.4f} | {std_ratio:.4f}", flush=True)
        return d["ks_g"]

    compare("bundle's", model.flow_prior, 0, float("nan"))
    for temperature in args.temperature:
        compare(f"bundle's, T={temperature:g}", model.flow_prior, 0, float("nan"), temperature)
    for couplings, units, bins in args.config:
        label = f"{couplings}:{','.join(map(str, units))}" + (f":{bins}" if bins else "")
        started = time.time()
        scored = [0]          # fit_flow_prior scores every N epochs and at the last

        def score(flow, label=label, started=started, scored=scored) -> float:
            scored[0] = min(scored[0] + args.trajectory, args.epochs)
            return compare(f"{label} (no early stop)", flow, scored[0], time.time() - started)

        trajectory = ({"patience": None, "score": score, "score_every": args.trajectory}
                      if args.trajectory else {"patience": args.patience})
        flow = fit_flow_prior(train_z, train_c, epochs=args.epochs, batch_size=256,
                              seed=seed, validation=(val_z, val_c), hidden_units=units,
                              n_couplings=couplings, spline_bins=bins, **trajectory)
        if not args.trajectory:
            compare(label, flow, flow.best_epoch, time.time() - started)


if __name__ == "__main__":
    main()
