"""Fidelity diagnostic: the encoder's amortization gap on faint galaxies.

For held-out galaxies in a ``mag_auto`` range, the encoder's posterior mean is decoded,
and so is the latent found by ``--steps`` Adam steps up ``log p(x | z) - beta |z|^2 / 2``
from it (per galaxy, the semi-amortized refinement of ``galsim-vae train
--flow-refine-steps``).  Both are observed like the data (their PSF, fresh noise) and
measured with HSM as the report does; printed: mean |g| and size against the data's,
the paired |g| slopes and the likelihood gain.  A refined latent that matches the data
where the posterior mean does not shows that the decoder can draw the galaxy and the
encoder misses it.

With ``--truth`` (the survey's truth.fits, for a data set prepared from a simulated
survey) the refinement is also run on each galaxy's *noiseless* image (the simulator's,
:func:`report_null.noiseless_truth`), under the same likelihood (the galaxy's noise
level): the decoder's best fit of the galaxy itself, without the noise of one
realisation; the noiseless image is printed too (a perfect model).  Every image is
observed with noise drawn given the data set's sample cuts, as the report does
(:func:`galsim_vae.evaluation.selection.add_selected_noise`).

Usage::

    python benchmarks/amortization_gap.py BUNDLE DATASET --mag 24.7 25.3 [--n 300]
        [--steps 8] [--lr 0.3] [--beta 0.01] [--truth TRUTH.fits]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

import numpy as np  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("dataset")
    parser.add_argument("--mag", nargs=2, type=float, default=(24.7, 25.3))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--truth", default=None, help="the simulated survey's truth.fits")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from galsim_vae import load_model
    from galsim_vae.data.dataset import Dataset
    from galsim_vae.evaluation.morphology import measure_morphology
    from galsim_vae.evaluation.render import convolve_psf
    from galsim_vae.evaluation.selection import add_selected_noise, dataset_selection
    from galsim_vae.models.posterior import latent_refiner

    model = load_model(args.bundle)
    net = model.network
    data = Dataset(args.dataset)
    names = list(model.condition_names)
    rows = data.indices(None, require_finite=names)
    mag = np.asarray(data.catalog["mag_auto"], float)[rows]
    rows = np.sort(rows[(mag >= args.mag[0]) & (mag < args.mag[1])][:args.n])
    images = np.asarray(data.images[rows], np.float64)
    psfs = np.asarray(data.psfs[rows], np.float64)
    sigma = np.sqrt(np.asarray(data.catalog["noise_variance"], float)[rows])
    raw = np.stack([np.asarray(data.catalog[c], float)[rows] for c in names], -1)
    scale = model.flux_scale
    x = tf.constant((images / scale)[..., None], tf.float32)
    psf = tf.constant(psfs[..., None], tf.float32)
    noise = tf.constant(sigma / scale, tf.float32)
    cond = tf.constant(model.standardise(raw), tf.float32)
    mean = net.encode(x, cond).mean()
    refine = latent_refiner(net, args.steps, args.beta, args.lr)
    refined = refine(mean, x, psf, noise, cond)
    latents = {"posterior mean": mean, "refined": refined}
    clean_truth = None
    if args.truth:
        from astropy.table import Table

        from report_null import noiseless_truth

        truth = Table.read(args.truth)
        where = {int(i): k for k, i in enumerate(truth["IDENT"])}
        clean_truth = np.stack([noiseless_truth(truth[where[int(i)]], data.stamp_size,
                                                data.pixel_scale)
                                for i in np.asarray(data.catalog["ident"])[rows]])
        x_truth = tf.constant((clean_truth / scale)[..., None], tf.float32)
        latents["refined on truth"] = refine(net.encode(x_truth, cond).mean(), x_truth, psf,
                                             noise, cond)

    def fit(z):
        return net.likelihood(net.decode(z, cond), psf, noise).log_prob(x).numpy()

    rng = np.random.default_rng(0)
    selection = dataset_selection(data)

    def observe(clean):
        return add_selected_noise(clean, sigma, rng, selection, pixel_scale=data.pixel_scale,
                                  noise_rootps=data.noise_rootps(rows))[0]

    def shapes(stamps):
        table = measure_morphology(stamps, pixel_scale=data.pixel_scale, noise_sigma=sigma,
                                   psf=psfs, nonparametric=False, desc="HSM")
        return np.asarray(table["g"], float), np.asarray(table["sigma_arcsec"], float)

    g_data, s_data = shapes(images)
    results = {}
    for label, z in latents.items():
        profiles = net.decode(z, cond).numpy()[..., 0] * scale
        results[label] = shapes(observe(convolve_psf(profiles, psfs)))
    if clean_truth is not None:
        results["noiseless truth"] = shapes(observe(clean_truth))
    ok = np.isfinite(g_data) & np.all([np.isfinite(g) for g, _ in results.values()], axis=0)
    print(f"{ok.sum()} galaxies with mag_auto in [{args.mag[0]}, {args.mag[1]}): "
          f"data mean |g| {g_data[ok].mean():.4f}, size {s_data[ok].mean():.4f}\"")
    for label, (g, s) in results.items():
        print(f"  {label:15s} mean |g| {g[ok].mean():.4f} ({g[ok].mean() / g_data[ok].mean() - 1:+.1%}),"
              f" size {s[ok].mean():.4f}\" ({s[ok].mean() / s_data[ok].mean() - 1:+.1%}), "
              f"paired |g| slope {np.polyfit(g_data[ok], g[ok], 1)[0]:.3f}")
    print(f"  median log p(x|z) gain of the refined latents: "
          f"{np.median(fit(refined) - fit(mean)):.1f} nats ({args.steps} steps)")


if __name__ == "__main__":
    main()
