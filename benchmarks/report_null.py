"""Null test of the evaluation report: what a perfect generator scores.

For held-out galaxies of a data set prepared from a simulated survey (``galsim-vae
simulate``), each galaxy's noiseless image is drawn again from the survey's
``truth.fits`` exactly as the simulator drew it (bulge + disk + knots convolved with the
galaxy's library PSF, ``method="no_pixel"``, 0.03"/pixel) and observed as the report
observes generated galaxies (:func:`galsim_vae.evaluation.render.observe_like_data`:
Gaussian noise of the galaxy's variance with the data set's noise correlation).  Both that
and the data set's own stamps are measured with the report's
:func:`~galsim_vae.evaluation.morphology.measure_morphology` (HSM; Hirata & Seljak 2003).
A faithful pipeline gives the same mean size and |g| up to sampling noise, overall and
per S/N quartile, and paired size ratios of 1: then a model's deficit in the report is
the model's, not the observation's.

It prints two comparisons: ``fresh noise`` (one draw per galaxy, what the report did up
to 2026-12-06) and ``selected noise`` (noise drawn given that the galaxy passes the data
set's sample cuts, :func:`galsim_vae.evaluation.selection.add_selected_noise`, what the
report does now).  On 4,000 galaxies of simeval10k_128 (2026-12-06, two draws each):
mean size -0.41% / -0.33% and mean |g| -0.98% / -1.06% with fresh noise; +0.09% / +0.02%
and -0.29% / -0.18% with selected noise (paired standard errors 0.16% and 0.4%).

Binned by the data's S/N quartiles, as the report's posterior predictive check bins
reconstructions, the perfect generator is also the baseline of that check (over the
galaxies of a bin, a perfect model's posterior samples are distributed as their truths).
On 3,000 galaxies (2026-12-06, seed 3): with one fresh draw its worst quartile is 2.8%
off (the second quartile's mean flux; the faintest +0.05%), with noise drawn given the
cuts the faintest quartile's mean flux is +5.9% (+2.1% on another draw of the same
galaxies), beyond the check's 5%: the data's S/N bin selects their noise too, so the
report's check replicates with one fresh draw.

Usage::

    python benchmarks/report_null.py runs/simeval10k_128 runs/simeval10k/truth.fits --n 1500
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

import numpy as np  # noqa: E402


def noiseless_truth(truth_row, stamp_size: int, pixel_scale: float) -> np.ndarray:
    """The simulator's noiseless image of one truth row on a centred square stamp."""
    import galsim

    from galsim_vae.simulation.galaxy import build_profiles, psf_profile

    row = {name: truth_row[name] for name in truth_row.colnames}
    smooth, knots = build_profiles(row, int(row["knot_seed"]))
    profile = smooth if knots is None else smooth + knots
    image = galsim.Convolve(profile, psf_profile(int(row["psf_index"])))
    return image.drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale,
                           method="no_pixel").array


def summary(sample, data, select) -> str:
    """Mean |g|, size and flux of ``sample`` against ``data`` (relative), and KS."""
    from scipy.stats import ks_2samp

    ok = select & (np.asarray(sample["flag"]) == 0)
    ok_data = select & (np.asarray(data["flag"]) == 0)
    parts = []
    for column, label in (("g", "|g|"), ("sigma_arcsec", "size")):
        a = np.asarray(sample[column], float)
        b = np.asarray(data[column], float)
        paired = ok & ok_data
        parts.append(f"mean {label} {a[ok].mean() / b[ok_data].mean() - 1:+.4f} "
                     f"KS {ks_2samp(a[ok], b[ok_data]).statistic:.4f}")
        if column == "sigma_arcsec":
            parts.append(f"paired size median {np.median(a[paired] / b[paired]):.4f}")
    flux, data_flux = np.asarray(sample["flux"], float), np.asarray(data["flux"], float)
    parts.append(f"mean flux {flux[ok].mean() / data_flux[ok_data].mean() - 1:+.4f}")
    return f"n {ok.sum():5d}  " + "  ".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="data set prepared from a simulated survey")
    parser.add_argument("truth", help="that survey's truth.fits")
    parser.add_argument("--n", type=int, default=1500, help="held-out galaxies drawn")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from astropy.table import Table

    from galsim_vae.data.dataset import Dataset
    from galsim_vae.evaluation.morphology import measure_morphology
    from galsim_vae.evaluation.render import observe_like_data
    from galsim_vae.evaluation.selection import add_selected_noise, dataset_selection
    from galsim_vae.evaluation.report.inputs import read_images

    data = Dataset(args.dataset)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(len(data), min(args.n, len(data)), replace=False))
    truth = Table.read(args.truth)
    where = {int(ident): k for k, ident in enumerate(truth["IDENT"])}
    idents = np.asarray(data.catalog["ident"])[rows]
    noiseless = np.stack([noiseless_truth(truth[where[int(i)]], data.stamp_size,
                                          data.pixel_scale) for i in idents])
    sigma = np.sqrt(np.asarray(data.catalog["noise_variance"], float)[rows])
    psfs = np.asarray(data.psfs[rows], float)
    rootps = data.noise_rootps(rows)
    observed = observe_like_data(noiseless, np.ones((1, 1)), sigma, rng, rootps)
    selection = dataset_selection(data)
    selected, draws, _ = add_selected_noise(noiseless, sigma, rng, selection,
                                            pixel_scale=data.pixel_scale, noise_rootps=rootps)
    measure = dict(pixel_scale=data.pixel_scale, noise_sigma=sigma, psf=psfs,
                   nonparametric=False)
    held_out = measure_morphology(read_images(data, rows), desc="data", **measure)
    perfects = {"fresh noise": measure_morphology(observed, desc="perfect generator", **measure),
                "selected noise": measure_morphology(selected, desc="selected", **measure)}
    flux = np.asarray(held_out["flux"], float)
    radius = np.asarray(held_out["hlr_arcsec"], float) / data.pixel_scale
    snr = flux / (sigma * np.sqrt(np.pi * (2 * radius) ** 2))   # the report's S/N
    quartile = np.searchsorted(np.nanpercentile(snr, [25, 50, 75]), snr)
    print(f"{args.dataset}: {rows.size} galaxies; perfect generator against the data")
    print(f"selection: {selection.describe()}; draws per galaxy: mean {draws.mean():.3f}, "
          f"more than one {np.mean(draws > 1):.3f}, never passed {np.sum(draws == 0)}")
    for label, perfect in perfects.items():
        print(f"-- {label}")
        ok = draws > 0 if label == "selected noise" else np.ones(rows.size, bool)
        print("all          " + summary(perfect, held_out, ok))
        for q in range(4):
            print(f"S/N quart. {q + 1} " + summary(perfect, held_out, ok & (quartile == q)))


if __name__ == "__main__":
    main()
