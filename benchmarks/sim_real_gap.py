"""The gap between a simulated training survey and real COSMOS galaxies.

Not a speed benchmark: the evidence of how far real HST galaxies are from what a model
trained on ``galsim-vae simulate`` learned.  For the simulated held-out (test) galaxies
brighter than ``--max-mag`` (``mag_auto``; 23.5 matches the real I<23.5 catalogs in
``shared/data``) and for every galaxy of each real data set, it prints

- the data themselves, measured the same way (HST PSF and noise are in both): mean and
  median HSM size, |g| and flux;
- the reconstruction chi-square per pixel (``galsim_vae.evaluation.reconstruct``);
- the share of encodings inside the prior's typical set
  (``galsim_vae.evaluation.latent.prior_typicality``).

A model that generalises from the simulation to real galaxies gives the real sets the
same chi-square and typical share as the magnitude-matched simulated ones.

Usage::

    python benchmarks/sim_real_gap.py BUNDLE SIM_DATASET REAL_DATASET [REAL_DATASET ...]
        [--max-mag 23.5]

(the real data sets: ``galsim-vae prepare cosmos --dir shared/data/cosmos_paltas_23.5
--sample 23.5 --stamp-size S --psf-file .../psf_101.fits --exclusion-level none``).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _measure(model, dataset, split: str, max_mag: float | None, seed: int) -> dict:
    from galsim_vae.evaluation import measure_morphology
    from galsim_vae.evaluation.latent import prior_typicality
    from galsim_vae.evaluation.reconstruction import reconstruct
    from galsim_vae.evaluation.report.inputs import (check_compatibility, load_heldout,
                                                     read_images, select_heldout)

    compat = check_compatibility(model.spec, dataset, bundle_path=str(model.path))
    rows, split, _ = select_heldout(dataset, compat.condition_names, split=split)
    if max_mag is not None:
        mags = np.asarray(dataset.catalog["mag_auto"], dtype=float)[rows]
        rows = rows[mags < max_mag]
    heldout = load_heldout(dataset, model.spec, rows, split, compat.condition_names)
    net = compat.net_per_data
    images = read_images(dataset, heldout.rows)
    recon = reconstruct(model, lambda a, b: images[a:b] * net, len(heldout),
                        noise_sigma=heldout.noise_sigma * net,
                        psfs=heldout.psfs if model.psf_free else None,
                        conditions=heldout.raw_conditions if compat.condition_names else None,
                        desc=str(dataset.path.name))
    typical = prior_typicality(model.network, recon.latents, heldout.conditions, seed=seed)
    morph = measure_morphology(images, pixel_scale=dataset.pixel_scale,
                               noise_sigma=heldout.noise_sigma, psf=heldout.psfs,
                               nonparametric=False, desc="morphology")
    out = {"name": dataset.path.name, "split": split, "n": len(heldout),
           "chi2_mean": float(np.mean(recon.chi2)), "chi2_median": float(np.median(recon.chi2)),
           "typical": typical["fraction_typical"],
           "log_density": typical["median_log_density"]}
    for column in ("sigma_arcsec", "g", "flux"):
        values = np.asarray(morph[column], dtype=float)
        out[column] = (float(np.nanmean(values)), float(np.nanmedian(values)))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("sim_dataset", help="the simulated data set the bundle was trained on")
    parser.add_argument("real_datasets", nargs="+", help="data sets of real galaxies")
    parser.add_argument("--max-mag", type=float, default=23.5,
                        help="mag_auto limit of the simulated held-out galaxies (default 23.5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from galsim_vae import load_model
    from galsim_vae.data import Dataset

    model = load_model(args.bundle)
    spec, bundle_path = model.spec, model.path
    rows = [_measure(model, Dataset(args.sim_dataset), "test", None, args.seed),
            _measure(model, Dataset(args.sim_dataset), "test", args.max_mag, args.seed)]
    rows[1]["name"] += f" (mag_auto < {args.max_mag:g})"
    rows += [_measure(model, Dataset(path), "all", None, args.seed)
             for path in args.real_datasets]
    print(f"model {bundle_path.name}: {spec.architecture}, {spec.stamp_size}x"
          f"{spec.stamp_size}; typical = share of encodings above the prior samples' "
          "1st-percentile log-density; means (medians) of the data")
    header = (f"{'data set':34s} {'split':5s} {'n':>5s} {'chi2 mean':>9s} {'median':>7s} "
              f"{'typical':>7s} {'size [arcsec]':>15s} {'|g|':>13s} {'flux':>15s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:34s} {r['split'][:5]:5s} {r['n']:5d} {r['chi2_mean']:9.3f} "
              f"{r['chi2_median']:7.3f} {100 * r['typical']:6.0f}% "
              f"{r['sigma_arcsec'][0]:6.3f} ({r['sigma_arcsec'][1]:5.3f}) "
              f"{r['g'][0]:5.3f} ({r['g'][1]:5.3f}) {r['flux'][0]:6.1f} ({r['flux'][1]:5.1f})")


if __name__ == "__main__":
    main()
