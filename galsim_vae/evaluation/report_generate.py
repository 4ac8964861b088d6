"""Generated galaxies for the evaluation report, without GalSim in the loop.

``eps ~ N(0, I)`` from a seeded numpy Generator -> ``model.prior_transform(eps, y)`` ->
``model.decode(z, y)``: the same path :class:`galsim_vae.GalaxyModel` takes, with numpy
instead of a GalSim rng supplying ``eps``, so the report's samples depend on the seed it
prints and on nothing else.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..conditions import standardise
from ..errors import BundleError
from ..io_utils import progress


def _prior_conditions(model, conditions: np.ndarray | None, n: int):
    """The conditions ``prior_transform`` takes (the flow's, else the model's)."""
    k = int(model.prior_conditions)
    if k == 0:
        return None
    if conditions is None or conditions.shape[1] < k:
        have = 0 if conditions is None else conditions.shape[1]
        raise BundleError(f"the model's prior takes {k} condition(s) but the bundle describes "
                          f"{have}; the bundle's model.json 'conditions' is incomplete")
    return conditions[:n, :k]


def generate_profiles(model, eps: np.ndarray, conditions: np.ndarray | None, *,
                      batch_size: int = 64, desc: str = "generate") -> np.ndarray:
    """Decode prior samples in batches.

    Parameters:
        model:      A ``galsim_vae.models`` model (with its prior attached, if any).
        eps:        (N, latent_size) standard-normal draws.
        conditions: (N, k) standardised conditions of the model (None if unconditional).
        batch_size: Galaxies per network call.
        desc:       Progress-bar label.

    Returns:
        (N, S, S) float64 generated profiles in network units (PSF-free when the model is).
    """
    import tensorflow as tf

    n = eps.shape[0]
    out = []
    starts = range(0, n, batch_size)
    for start in progress(starts, total=len(starts), desc=desc):
        stop = min(start + batch_size, n)
        cond = None if conditions is None else conditions[start:stop]
        prior_cond = _prior_conditions(model, cond, stop - start)
        z = model.prior_transform(tf.constant(eps[start:stop], tf.float32),
                                  None if prior_cond is None else tf.constant(prior_cond))
        decode_cond = None if model.n_conditions == 0 else tf.constant(cond[:, :model.n_conditions])
        out.append(model.decode(z, decode_cond, training=False).numpy()[..., 0])
    size = int(model.stamp_size)
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, size, size))


def redshift_strip(model, meta: Mapping[str, Any], rng: np.random.Generator, *,
                   n_steps: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One latent draw decoded across the training redshift range.

    The first condition (the redshift) runs from the bundle's training minimum to its
    maximum in ``n_steps`` equal steps; further conditions stay at their training mean
    (0 after standardisation).  The same ``eps`` is used at every step, so with a
    conditional flow prior ``z`` follows the flow's map of that ``eps`` at each redshift.

    Returns:
        (redshifts (n_steps,), profiles (n_steps, S, S) in network units).
    """
    conditions = meta.get("conditions") or []
    first = conditions[0]
    redshifts = np.linspace(float(first["min"]), float(first["max"]), int(n_steps))
    raw = np.tile([float(c["mean"]) for c in conditions], (int(n_steps), 1))
    raw[:, 0] = redshifts
    normalised = standardise(conditions, raw)
    eps = np.repeat(rng.standard_normal((1, int(model.latent_size))), n_steps, axis=0)
    profiles = generate_profiles(model, eps, normalised, desc="redshift strip")
    return redshifts, profiles
