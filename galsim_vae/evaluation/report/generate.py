"""Generated galaxies for the evaluation report, through the users' inference path.

``eps ~ N(0, I)`` from a seeded numpy Generator -> :meth:`GalaxyModel.decode_batch`
(prior transform and decoder, the one path that turns noise or latents and conditions
into profiles, which ``sample``, ``VAEGalaxy`` and the YAML type use too), with numpy
instead of a GalSim rng supplying ``eps``, so the report's samples depend on the seed it
prints and on nothing else.
"""

from __future__ import annotations

import numpy as np

from ...io_utils import progress


def generate_profiles(galaxy_model, eps: np.ndarray, conditions: np.ndarray | None, *,
                      batch_size: int = 64, desc: str = "generate") -> np.ndarray:
    """Decode prior samples in batches with :meth:`GalaxyModel.decode_batch`.

    Parameters:
        galaxy_model: A :class:`~galsim_vae.generator.GalaxyModel`.
        eps:          (N, latent_size) standard-normal draws.
        conditions:   (N, k) *physical* condition values (None if unconditional).
        batch_size:   Galaxies per network call.
        desc:         Progress-bar label.

    Returns:
        (N, S, S) float64 generated profiles in network units (bundle flux units / the
        bundle's flux scale; PSF-free when the model is).
    """
    n = eps.shape[0]
    size = int(galaxy_model.stamp_size)
    out = np.zeros((n, size, size))
    starts = range(0, n, batch_size)
    for start in progress(starts, total=len(starts), desc=desc):
        stop = min(start + batch_size, n)
        cond = None if conditions is None else conditions[start:stop]
        out[start:stop] = galaxy_model.decode_batch(eps[start:stop], cond, from_noise=True)
    return out / galaxy_model.flux_scale


def generation_conditions(galaxy_model, raw: np.ndarray | None,
                          rng: np.random.Generator) -> np.ndarray | None:
    """The physical conditions (N, k) generated galaxies are drawn at: the held-out
    galaxies' ``raw`` ones, with each *drawn* condition of the bundle
    (:class:`~galsim_vae.condition_draw.ConditionDraw`) drawn from its training
    distribution instead, as users who leave it out get it."""
    from ...conditions import fill_drawn, n_drawn

    draws = 0 if raw is None else n_drawn(galaxy_model.conditions)
    if not draws:
        return raw
    values = np.array(raw, dtype=float)
    for k, cond in enumerate(galaxy_model.conditions):
        if cond.drawn is not None:
            values[:, k] = np.nan
    return fill_drawn(galaxy_model.conditions, values, rng.standard_normal((len(values), draws)))


def redshift_strip(galaxy_model, rng: np.random.Generator, *,
                   n_steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One latent draw decoded across the training redshift range.

    The redshift condition runs from its training minimum to its maximum in ``n_steps``
    equal steps; further conditions stay at their training mean.  The same ``eps`` is
    used at every step, so with a conditional flow prior ``z`` follows the flow's map of
    that ``eps`` at each redshift.

    Returns:
        (redshifts (n_steps,), profiles (n_steps, S, S) in network units).
    """
    conditions = galaxy_model.conditions
    k = next((i for i, c in enumerate(conditions) if c.role == "redshift"), 0)
    redshifts = np.linspace(conditions[k].min, conditions[k].max, int(n_steps))
    raw = np.tile([c.mean for c in conditions], (int(n_steps), 1))
    raw[:, k] = redshifts
    eps = np.repeat(rng.standard_normal((1, int(galaxy_model.noise_size))), n_steps, axis=0)
    profiles = generate_profiles(galaxy_model, eps, raw, desc="redshift strip")
    return redshifts, profiles
