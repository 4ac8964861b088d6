"""Fitting a :class:`~galsim_vae.models.prior.FlowPrior` to encoded latents by maximum
likelihood: early stopping on held-out latents or a score, fresh posterior samples each
epoch, and per-row weights."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..errors import ConditionError, InputDataError
from ..io_utils import progress
from .prior import FlowPrior


def _as_float_array(values: Any, name: str, width: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or (width is not None and array.shape[1] != width):
        want = f"(N, {width})" if width is not None else "(N, d)"
        raise InputDataError(f"{name} must have shape {want}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array).all(axis=1)))
        raise InputDataError(f"{name} has {bad} row(s) with non-finite values; drop them first")
    return array


def _weights(values: Any, n: int, name: str) -> np.ndarray:
    """(n,) float32 weights with mean 1 (all 1 for None); refuses non-positive ones."""
    if values is None:
        return np.ones(n, np.float32)
    weights = np.asarray(values, dtype=np.float64).reshape(-1)
    if weights.size != n or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise InputDataError(f"{name} must be {n} finite positive numbers, got "
                             f"{weights.size} (minimum {np.min(weights, initial=np.inf):g})")
    return (weights / weights.mean()).astype(np.float32)


def weighted_nll(flow: FlowPrior, latents, conditions, weights) -> tf.Tensor:
    """The weighted mean negative log-likelihood (nats per latent) of rows ``latents``."""
    log_prob = flow.distribution(conditions).log_prob(latents)
    return -tf.reduce_sum(weights * log_prob) / tf.reduce_sum(weights)


def fit_flow_prior(latents: Any, conditions: Any = None, *, epochs: int = 50,
                   batch_size: int = 256, learning_rate: float = 1e-3, seed: int = 0,
                   n_couplings: int = 6, hidden_units: Sequence[int] = (64, 64),
                   validation: tuple[Any, Any] | None = None,
                   patience: int | None = 10,
                   score: Callable[["FlowPrior"], float] | None = None,
                   score_every: int = 5, spline_bins: int = 0,
                   condition_shift: bool = False, latent_scales: Any = None,
                   sample_weights: Any = None) -> FlowPrior:
    """Fit a :class:`FlowPrior` to encoded latents by maximum likelihood.

    With ``validation`` (the encodings of galaxies the flow does not fit), the held-out
    negative log-likelihood is measured after each epoch, the fit stops once it has not
    improved for ``patience`` epochs, and the weights of its best epoch are kept.  A flow
    fitted to ~1e4 latents for many epochs otherwise learns the training points
    themselves, and its samples decode to near copies of training galaxies (the report's
    memorization test).

    With ``latent_scales`` the flow is fitted to the aggregate posterior itself, as a
    density: ``latents`` are then the posterior centres and every epoch draws a fresh
    sample ``latents + latent_scales * eps`` (eps ~ N(0, 1)) of each, instead of fitting
    one fixed sample per galaxy over and over.  A fixed sample is a finite point set that
    the flow learns ever more closely (and its samples drift to where those points
    happen to lie); fresh samples keep the target the smooth mixture ``q(z) = E_x q(z|x)``
    of Lanusse et al. 2021 (MNRAS 504, 5543, sect. 3.3).  How much this changes depends
    on the posterior widths: on the flagship (beta 0.001) they are ~1% of the spread of
    the centres, fresh samples hardly differ from fixed ones and the flow still over-fits
    after ~30 epochs (trained/build_shipped.sh, session 33); the shipped flagship's flow
    was fitted this way and kept at its lowest validation NLL.

    Parameters:
        latents:       (N, d) latents of the training set (posterior samples or means;
                       with ``latent_scales`` the posterior centres).
        conditions:    (N, k) normalised conditions of the same galaxies, or None.
        epochs:        Most passes over the latents.
        batch_size:    Latents per gradient step.
        learning_rate: Initial Adam learning rate (cosine-decayed to 1% over ``epochs``).
        seed:          Seed of the flow's initial weights, permutations and shuffling.
        n_couplings:   Coupling layers of the flow.
        hidden_units:  Hidden widths of each coupling network.
        validation:    (latents (M, d), conditions (M, k) or None[, weights (M,)]) held
                       out, or None.
        patience:      Epochs without a lower held-out NLL (or ``score``) before stopping
                       (None: never).
        spline_bins:   0: affine couplings; K >= 2: rational-quadratic spline couplings.
        condition_shift: Shift the latents by a trainable linear function of the
                       conditions, started at their least-squares regression on them
                       (ignored without conditions).
        score:         ``score(flow) -> float``, lower is better, measured every
                       ``score_every`` epochs and at the last: the fit keeps the weights of
                       the best-scoring epoch instead of the lowest held-out NLL (e.g.
                       :func:`galsim_vae.training.flow_selection.morphology_score`).
        latent_scales: (N, d) posterior standard deviations of ``latents`` (positive), or
                       None: fit the latents as they are.
        sample_weights: (N,) positive weight of each row in the likelihood, or None (all 1):
                       weights that depend on the conditions only leave the conditional
                       density the fit converges to unchanged and move the flow's capacity
                       to the conditions they weigh up (:mod:`galsim_vae.training.
                       condition_balance`).  ``validation`` may then carry a third array,
                       the held-out rows' weights.

    Returns:
        The fitted flow; ``flow.training_losses`` (and ``flow.validation_losses`` with
        ``validation``) hold the mean negative log-likelihood (nats per latent vector) of
        each epoch, ``flow.best_epoch`` the epoch whose weights it has (1-based), and with
        ``score`` ``flow.scores`` the (epoch, score) pairs measured.
    """
    latents = _as_float_array(latents, "latents")
    n, d = latents.shape
    cond_array = None if conditions is None else _as_float_array(conditions, "conditions")
    if cond_array is not None and cond_array.shape[0] != n:
        raise ConditionError(f"conditions have {cond_array.shape[0]} rows but latents {n}")
    if n < 2:
        raise InputDataError(f"fit_flow_prior needs at least 2 latents, got {n}")
    k = 0 if cond_array is None else cond_array.shape[1]
    scales = None
    if latent_scales is not None:
        scales = _as_float_array(latent_scales, "latent scales", d)
        if scales.shape[0] != n or np.any(scales < 0):
            raise InputDataError(f"latent scales must be (N, d) = ({n}, {d}) and >= 0, got "
                                 f"shape {scales.shape}, minimum {float(scales.min()):g}")
    weights = _weights(sample_weights, n, "sample weights")
    held_out = None
    if validation is not None:
        val_latents = _as_float_array(validation[0], "validation latents", d)
        val_conditions = (None if validation[1] is None
                          else _as_float_array(validation[1], "validation conditions", k))
        if (val_conditions is None) != (cond_array is None):
            raise ConditionError("validation conditions must be given exactly when the "
                                 "training conditions are")
        held_out = (val_latents, val_conditions,
                    _weights(validation[2] if len(validation) > 2 else None,
                             len(val_latents), "validation weights"))
    flow = FlowPrior(d, n_conditions=k, n_couplings=n_couplings, hidden_units=hidden_units,
                     seed=seed, spline_bins=spline_bins,
                     condition_shift=bool(condition_shift) and k > 0)
    rng = np.random.default_rng(seed)
    residuals = latents if scales is None else (
        latents + scales * rng.standard_normal(latents.shape).astype(np.float32))
    if flow.condition_weights is not None:      # least squares: latents ~ shift + y W
        design = np.concatenate([cond_array, np.ones((n, 1), np.float32)], axis=1)
        coefficients = np.linalg.lstsq(design.astype(np.float64),
                                       residuals.astype(np.float64),
                                       rcond=None)[0].astype(np.float32)
        flow.condition_weights.assign(coefficients[:k])
        residuals = residuals - cond_array @ coefficients[:k]
    flow.shift.assign(residuals.mean(axis=0))
    flow.scale.assign(np.maximum(residuals.std(axis=0), 1e-6))

    batch_size = int(min(batch_size, n))
    steps_per_epoch = int(np.ceil(n / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, max(epochs * steps_per_epoch, 1), alpha=0.01)
    optimizer = keras.optimizers.Adam(schedule, global_clipnorm=10.0)
    widths = np.zeros_like(latents) if scales is None else scales
    tensors = (latents, widths, weights) + (() if cond_array is None else (cond_array,))
    data = (tf.data.Dataset.from_tensor_slices(tensors)
            .shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    noise = tf.random.Generator.from_seed(int(seed) % (2**31) + 1)
    fresh = scales is not None

    @tf.function
    def step(batch_latents, batch_widths, batch_weights, batch_conditions):
        if fresh:       # a new posterior sample of every row each epoch
            batch_latents = batch_latents + batch_widths * noise.normal(tf.shape(batch_latents))
        with tf.GradientTape() as tape:
            loss = weighted_nll(flow, batch_latents, batch_conditions, batch_weights)
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))
        return loss

    @tf.function
    def held_out_nll(batch_latents, batch_conditions, batch_weights):
        return weighted_nll(flow, batch_latents, batch_conditions, batch_weights)

    if held_out is not None:        # constant tensors: one trace, not eager per epoch
        held_out = tuple(None if a is None else tf.constant(a) for a in held_out)
    losses, val_losses, best, scores = [], [], (np.inf, 0, None), []
    for epoch in progress(range(1, int(epochs) + 1), desc="flow prior"):
        total, count = 0.0, 0
        for batch in data:
            loss = step(batch[0], batch[1], batch[2], batch[3] if k else None)
            m = int(batch[0].shape[0])
            total, count = total + float(loss) * m, count + m
        losses.append(total / count)
        if held_out is not None:
            val_losses.append(float(held_out_nll(*held_out)))
        if score is not None:
            if epoch % max(int(score_every), 1) and epoch != int(epochs):
                continue
            scores.append((epoch, float(score(flow))))
            criterion = scores[-1][1]
        elif held_out is not None:
            criterion = val_losses[-1]
        else:
            continue
        if criterion < best[0]:
            best = (criterion, epoch, [w.numpy() for w in flow.trainable_variables])
        elif patience is not None and epoch - best[1] >= patience:
            break
    flow.training_losses = losses
    flow.best_epoch = len(losses)
    if held_out is not None:
        flow.validation_losses = val_losses
    if score is not None:
        flow.scores = scores
    if held_out is not None or score is not None:
        if best[2] is None:
            raise InputDataError("the flow prior's held-out log-likelihood (or score) was never "
                                 "finite; the encodings may be degenerate")
        flow.best_epoch = best[1]
        for variable, value in zip(flow.trainable_variables, best[2]):
            variable.assign(value)
    return flow
