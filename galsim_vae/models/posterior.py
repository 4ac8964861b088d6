"""Semi-amortized posteriors: the encoder's q(z | x) with its mean moved up the likelihood.

An encoder is one network for all galaxies, and it under-fits the faint ones: their
likelihood terms are small beside the bright galaxies' in the training loss, so their
posterior means decode to rounder galaxies than the data (the amortization gap; Cremer,
Li & Duvenaud 2018, ICML, arXiv:1801.03558).  Semi-amortized inference (Kim et al. 2018,
ICML, arXiv:1802.02550) starts from the encoder's mean and takes a few gradient steps on
that galaxy's own objective ``log p(x | z) - w |z|^2 / 2``.

A network built with ``posterior_refine_steps`` N >= 1, ``posterior_refine_rate`` r and
``posterior_prior_weight`` w gives :func:`posterior` refined means and the encoder's
widths; with N = 0 (the default) :func:`posterior` is the encoder's own q(z | x).  The
steps are Adam steps (Kingma & Ba 2015) of at most r latent units per coordinate, so
that their size does not depend on the loss scale; w is the KL weight the networks were
trained with (their objective for one latent).  On the shipped vae (sim20k_128's
validation split, 1,909 galaxies), 8 steps of 0.03 bring the posterior samples' mean |g|
in the two faintest S/N quartiles from -4.1% / -5.7% to -0.5% / -1.8% of the data;
steps of 0.1 over-fit the faintest galaxies' noise (+5.1% flux):
trained/build_shipped.sh, session 35.
"""

from __future__ import annotations

import weakref
from typing import Any, Mapping

#: Compiled refiners of each network, by (steps, prior weight, learning rate): a new
#: ``tf.function`` per batch would trace the decoder's gradient again every time.
_REFINERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

#: The network config's keys of the refinement: steps, Adam rate, prior weight.
REFINEMENT_KEYS = ("posterior_refine_steps", "posterior_refine_rate", "posterior_prior_weight")


def is_refine_rate(rate) -> bool:
    """True for a refinement step (latent units per coordinate): a finite number > 0."""
    import math

    try:
        return math.isfinite(float(rate)) and float(rate) > 0
    except (TypeError, ValueError):
        return False


def check_refinement(steps: int, rate: float, prior_weight: float, name: str) -> dict:
    """The refinement settings as config entries (:data:`REFINEMENT_KEYS`): steps a whole
    number >= 0, rate > 0, prior weight >= 0; raises InputDataError naming the bad one."""
    import math

    from ..errors import InputDataError

    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise InputDataError(f"{name}: posterior_refine_steps must be a whole number >= 0, "
                             f"got {steps!r}")
    if not is_refine_rate(rate):
        raise InputDataError(f"{name}: posterior_refine_rate must be > 0, got {rate!r}")
    if not (math.isfinite(float(prior_weight)) and float(prior_weight) >= 0):
        raise InputDataError(f"{name}: posterior_prior_weight must be >= 0, got "
                             f"{prior_weight!r}")
    return dict(zip(REFINEMENT_KEYS, (int(steps), float(rate), float(prior_weight))))


def describe_posterior(config: Mapping[str, Any]) -> str:
    """How the posterior of a network of config ``config`` is computed, in words."""
    steps, rate, weight = (config.get(key, 0) for key in REFINEMENT_KEYS)
    if not steps:
        return "the encoder's q(z | x)"
    return (f"the encoder's q(z | x) with its mean refined by {steps} Adam steps of {rate:g} "
            f"up log p(x | z) - {weight:g} |z|^2 / 2 (semi-amortized)")


def latent_refiner(model, steps: int, prior_weight: float, learning_rate: float = 0.3):
    """A compiled ``refine(z, images, psf, noise_std, conditions[, noise_rootps])``:
    ``steps`` Adam steps (per coordinate, so the step does not depend on the loss scale)
    up ``log p(x | z) - prior_weight |z|^2 / 2`` from z; None for ``steps`` 0."""
    import tensorflow as tf

    if steps <= 0:
        return None

    @tf.function(reduce_retracing=True)
    def refine(z, images, psf, noise_std, conditions, noise_rootps=None):
        first, second = tf.zeros_like(z), tf.zeros_like(z)
        extra = {} if noise_rootps is None else {"noise_rootps": noise_rootps}
        for step in tf.range(1, steps + 1):
            with tf.GradientTape() as tape:
                tape.watch(z)
                profile = model.decode(z, conditions, training=False)
                fit = model.likelihood(profile, psf, noise_std, **extra).log_prob(images)
                loss = -tf.reduce_sum(fit) + 0.5 * prior_weight * tf.reduce_sum(z * z)
            grad = tape.gradient(loss, z)
            first = 0.9 * first + 0.1 * grad
            second = 0.999 * second + 0.001 * grad * grad
            t = tf.cast(step, tf.float32)
            z = z - learning_rate * (first / (1.0 - 0.9**t)) / (
                tf.sqrt(second / (1.0 - 0.999**t)) + 1e-8)
        return z

    return refine


def posterior(model, images, conditions=None, *, psf=None, noise_std=None,
              noise_rootps=None):
    """q(z | x[, y]) of stamps ``images`` (B, S, S, 1), network units: the encoder's, with
    its mean refined when the network has ``posterior_refine_steps`` > 0.

    Parameters:
        model:       A network of :mod:`galsim_vae.models`.
        conditions:  (B, k) standardised conditions, or None.
        psf:         (B, P, P, 1) unit-sum PSFs (PSF-free models, refined only).
        noise_std:   (B,) pixel noise std in network units (refined only).
        noise_rootps: (B, S, S//2 + 1) correlated-noise root power spectra, or None.

    Returns:
        A ``tfd.MultivariateNormalDiag`` with batch (B,) and event (latent_size,), as
        :meth:`~galsim_vae.models.vae.VAE.encode` returns.
    """
    import tensorflow_probability as tfp

    from ..errors import InputDataError

    q = model.encode(images, conditions, training=False)
    config = model.get_config_dict()
    key = (int(config.get("posterior_refine_steps", 0)),
           float(config.get("posterior_prior_weight", 0.0)),
           float(config.get("posterior_refine_rate", 1.0)))
    if key[0] <= 0:
        return q
    compiled = _REFINERS.setdefault(model, {})
    if key not in compiled:
        compiled[key] = latent_refiner(model, key[0], key[1], learning_rate=key[2])
    refine = compiled[key]
    if noise_std is None:
        raise InputDataError("a refined posterior needs each galaxy's noise_std (and its PSF "
                             "for a PSF-free model)")
    extra = {} if noise_rootps is None else {"noise_rootps": noise_rootps}
    loc = refine(q.mean(), images, psf, noise_std, conditions, **extra)
    return tfp.distributions.MultivariateNormalDiag(loc=loc, scale_diag=q.stddev())
