"""Report section: prior samples paired with held-out galaxies (their PSF, noise and
conditions), observed like the data, the sample grids and the redshift strip."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...io_utils import progress
from ..render import observe_like_data
from ..selection import MAX_DRAWS, NO_SELECTION, SampleSelection, add_selected_noise
from .context import (MAX_DEFAULT_GENERATED, N_SHOWN_GENERATED, N_STRIP, OBSERVE_CHUNK,
                      Context)


def observe(profiles: np.ndarray, psfs: np.ndarray | None, noise_sigma: np.ndarray,
            rng: np.random.Generator, noise_rootps: np.ndarray | None = None, *,
            selection: SampleSelection | None = None, pixel_scale: float = 1.0,
            keep_first_draw: bool = False):
    """Generated profiles observed like the data, in chunks (bounded FFT memory).

    PSF-free profiles get their paired galaxy's PSF and noise (its variance, and its
    correlation when the data set records it); profiles that carry the HST PSF already
    (``psfs`` None) get the noise only.  With an active ``selection`` the noise of each
    galaxy is drawn given that it passes the data's cuts
    (:func:`galsim_vae.evaluation.selection.add_selected_noise`).

    Returns:
        (observed (N, S, S) float32, draws (N,) int: the noise draw that passed, 0 for
        a galaxy never selected, first (N, S, S) float32 stamps of each galaxy's first
        draw, unconditioned noise, or None unless ``keep_first_draw``).
    """
    selection = selection or NO_SELECTION
    observed = np.empty(profiles.shape, dtype=np.float32)
    first = np.empty(profiles.shape, dtype=np.float32) if keep_first_draw else None
    draws = np.zeros(profiles.shape[0], dtype=np.int64)
    starts = range(0, profiles.shape[0], OBSERVE_CHUNK)
    for start in progress(starts, total=len(starts), desc="observe like the data"):
        stop = min(start + OBSERVE_CHUNK, profiles.shape[0])
        psf = np.ones((1, 1)) if psfs is None else psfs[start:stop]
        rootps = None if noise_rootps is None else noise_rootps[start:stop]
        clean = observe_like_data(profiles[start:stop], psf, 0.0, rng)
        observed[start:stop], draws[start:stop], chunk_first = add_selected_noise(
            clean, noise_sigma[start:stop], rng, selection, pixel_scale=pixel_scale,
            noise_rootps=rootps, keep_first_draw=keep_first_draw)
        if first is not None:
            first[start:stop] = chunk_first
    return observed, draws, first


def generation_section(ctx: Context, metrics: dict[str, Any], n_generated: int | None,
                        rngs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prior samples paired with held-out galaxies, their grids and the redshift strip.

    Returns:
        (pairs: held-out position of each generated galaxy's partner, PSF-free (or
        as-generated) profiles and the observed-like stamps, both in data-set flux units).
    """
    from ..morphology import measure_morphology
    from ..plots import plot_stamp_grid
    from .generate import generate_profiles, generation_conditions, redshift_strip

    pair_rng, eps_rng, noise_rng, strip_rng = rngs
    heldout, model, net = ctx.heldout, ctx.model, ctx.net
    n_heldout = len(heldout)
    n_gen = n_generated or min(n_heldout, MAX_DEFAULT_GENERATED)
    pairs = pair_rng.choice(n_heldout, size=n_gen, replace=n_gen > n_heldout)
    eps = eps_rng.standard_normal((n_gen, int(model.noise_size)))
    gen_conditions = (generation_conditions(model, heldout.raw_conditions[pairs], eps_rng)
                      if ctx.conditional else None)
    ctx.results["generation_conditions"] = gen_conditions
    profiles = (generate_profiles(model, eps, gen_conditions, batch_size=ctx.batch_size)
                / net).astype(np.float32)
    selection = ctx.results.get("selection") or NO_SELECTION
    observed, draws, first = observe(profiles, heldout.psfs[pairs] if model.psf_free else None,
                                     rng=noise_rng, selection=selection,
                                     pixel_scale=ctx.dataset.pixel_scale,
                                     keep_first_draw=selection.active,
                                     **heldout.noise_of(pairs))
    ctx.results.update(selection_draws=draws, first_draw_observed=first)
    metrics["generation"] = {
        "n_generated": n_gen, "seed": ctx.seed,
        "noise": heldout.noise_description,
        "pairing": "each generated galaxy takes the PSF, noise level"
                   + (" and conditions" if ctx.conditional else "")
                   + " of a randomly drawn held-out galaxy"
                   + (" (drawn with replacement)" if n_gen > n_heldout else ""),
        "path": "eps ~ N(0, I) (numpy Generator) -> GalaxyModel.decode_batch (prior "
                "transform and decoder, as sample/VAEGalaxy/YAML)",
        "selection": {"cuts": selection.describe(), "active": selection.active,
                      "max_draws": MAX_DRAWS, "mean_draws": float(np.mean(draws[draws > 0]))
                      if np.any(draws > 0) else None,
                      "fraction_redrawn": float(np.mean(draws > 1)),
                      "n_not_selected": int(np.sum(draws == 0))}}
    softening = float(np.median(heldout.noise_sigma))
    shown = min(N_SHOWN_GENERATED, n_gen)
    titles = ([f"{heldout.redshift_name}={heldout.redshift[p]:.2f}"
               for p in pairs[:shown]] if heldout.redshift is not None else None)
    kind = "PSF-free profiles" if model.psf_free else "galaxies"
    plot_stamp_grid(profiles[:shown], ctx.figure("generated"), softening=softening,
                    titles=titles, suptitle=f"generated {kind} (seed {ctx.seed}, first {shown})")
    plot_stamp_grid(observed[:shown], ctx.figure("generated_observed"), softening=softening,
                    titles=titles,
                    suptitle="the same, observed like the held-out data (their PSF and noise)")
    if ctx.conditional:
        redshifts, strip = redshift_strip(model, strip_rng, n_steps=N_STRIP)
        strip = strip / net
        varied = next((c for c in model.conditions if c.role == "redshift"),
                      model.conditions[0])        # what redshift_strip varies
        plot_stamp_grid(strip, ctx.figure("redshift_strip"), softening=softening,
                        titles=[f"{varied.name}={z:.2f}" for z in redshifts],
                        ncols=N_STRIP,
                        suptitle="one latent draw across the training redshift range")
        strip_stats = measure_morphology(strip, pixel_scale=ctx.dataset.pixel_scale,
                                         noise_sigma=0.0, nonparametric=False,
                                         desc="redshift strip")
        metrics["redshift_strip"] = {"redshift": redshifts,
                                     "flux": np.asarray(strip_stats["flux"]),
                                     "hlr_arcsec": np.asarray(strip_stats["hlr_arcsec"])}
    return pairs, profiles, observed
