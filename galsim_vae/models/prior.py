"""Priors over the latent space: the standard normal and a learned normalizing flow.

A beta-VAE trained with a N(0, I) prior does not fill that prior evenly (the aggregate
posterior has holes and a different shape), so samples from N(0, I) decode to worse
galaxies than encoded ones.  As in Lanusse et al. (2021, MNRAS 504, 5543, section 3.3),
after training the VAE we fit a normalizing flow to the encoded training set, here
conditioned on the normalised redshift (and any other model conditions):

    z = flow(eps; y),  eps ~ N(0, I)

The flow is a stack of RealNVP couplings (Dinh, Sohl-Dickstein & Bengio 2017,
arXiv:1605.08803) built from :class:`tfp.bijectors.RealNVP` with our own Keras 3 networks
(``bijector_fn``; no ``tfb.AutoregressiveNetwork``/``tfp.layers``, which are Keras 2 only),
fixed random permutations between couplings, and a fixed affine standardisation
(mean and std of the fitted latents, stored as non-trainable weights).  With
``condition_shift`` the standardisation's shift depends on the conditions,
``shift + W y``, ``W`` a trainable (k, d) matrix started at the least-squares regression
of the latents on the conditions (and the scale at the residuals' std): the latents' mean
follows the conditions exactly to first order, and the couplings model what is left.  A
flow without it reproduces only ~95-97% of the encodings' linear dependence on
``mag_auto`` and ``flux_radius`` (flagship of 2026-12-04), and its galaxies' sizes
regress towards the mean (+2% at the smallest ``flux_radius`` decile, -4% at the
largest); with the shift they still do (benchmarks/README.md, 2026-12-05): that loss is
not the conditional mean's.  Each coupling
is affine (shift and scale) or, with ``spline_bins`` K > 0, a monotonic
rational-quadratic spline of K bins on [-SPLINE_BOUND, SPLINE_BOUND] standard deviations,
the identity outside (:class:`tfp.bijectors.RationalQuadraticSpline`; neural spline
flows, Durkan et al. 2019, NeurIPS, arXiv:1906.04032): a spline coupling can move mass
into narrow, many-peaked shapes that an affine one only smooths over.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ..errors import ConditionError, InputDataError
from ..io_utils import progress
from .hyperparameters import HyperparameterMixin, config_property
from .networks import build_mlp

tfd = tfp.distributions
tfb = tfp.bijectors

#: Soft bound of each coupling's log-scale: ``c * tanh(raw / c)`` (keeps early steps stable).
LOG_SCALE_BOUND = 3.0
#: Half-width of a spline coupling's interval, in standard deviations of the fitted latents
#: (the couplings act on standardised latents); the identity beyond it.
SPLINE_BOUND = 5.0
#: Smallest bin width/height and knot slope of a spline (Durkan et al. 2019 use 1e-3).
SPLINE_MIN = 1e-3
#: Softplus offset that makes a zero network output a slope of 1 (identity at start).
_UNIT_SLOPE = float(np.log(np.expm1(1.0 - SPLINE_MIN)))


def check_conditions(conditions: Any, n_conditions: int, what: str) -> tf.Tensor | None:
    """Validate a (B, k) condition array against the ``n_conditions`` a model expects.

    Parameters:
        conditions:   Array-like (B, n_conditions), or None.
        n_conditions: Number of conditions expected (0: none allowed).
        what:         Name of the model, used in messages.

    Returns:
        The conditions as a float32 tensor, or None when ``n_conditions`` is 0.
    """
    if n_conditions == 0:
        if conditions is not None:
            shape = tuple(np.shape(conditions))
            raise ConditionError(f"{what} takes no conditions, got an array of shape {shape}; "
                                 "pass conditions=None (or use a conditional architecture)")
        return None
    if conditions is None:
        raise ConditionError(f"{what} needs {n_conditions} condition(s) per galaxy, shape "
                             f"(B, {n_conditions}) (normalised redshift first); got None")
    conditions = tf.cast(tf.convert_to_tensor(conditions), tf.float32)
    if not shape_matches(conditions, (None, n_conditions)):
        raise ConditionError(f"{what} needs conditions of shape (B, {n_conditions}) "
                             f"(normalised redshift first); got shape {tuple(conditions.shape)}")
    return tf.ensure_shape(conditions, (None, n_conditions))


def shape_matches(tensor: tf.Tensor, expected: tuple) -> bool:
    """True unless the tensor's static shape contradicts ``expected`` (None: any size).

    Dimensions unknown at tracing time (``tf.function`` with relaxed shapes) are accepted
    here; callers then pin them with ``tf.ensure_shape``, which checks them at run time.
    """
    shape = tensor.shape
    if shape.rank is None:
        return True
    return shape.rank == len(expected) and all(
        want is None or got is None or got == want for got, want in zip(shape, expected))


def standard_normal_prior(latent_size: int,
                          conditions: tf.Tensor | None = None) -> tfd.Distribution:
    """N(0, I) over ``latent_size`` dimensions; batch shape (B,) if conditions (B, k) are given."""
    if conditions is None:
        loc = tf.zeros([latent_size], tf.float32)
    else:
        loc = tf.zeros(tf.stack([tf.shape(conditions)[0], latent_size]), tf.float32)
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.ones_like(loc))


class FlowPrior(HyperparameterMixin, keras.Model):
    """Conditional RealNVP normalizing flow over the latent space.

    Parameters:
        latent_size:  Dimension of z (>= 2).
        n_conditions: Conditions the flow depends on (0: unconditional).
        n_couplings:  Number of coupling layers.
        hidden_units: Hidden layer widths of each coupling's network.
        seed:         Seed of the permutations and of the initial weights.
        spline_bins:  0: affine couplings; K > 0: rational-quadratic spline couplings of
                      K bins (each network then gives 3K - 1 numbers per transformed
                      coordinate instead of 2).
        condition_shift: Shift the latents by a trainable linear function of the
                      conditions (``W y``, W of shape (k, d)); needs ``n_conditions`` >= 1.

    The constructor's keyword arguments are :meth:`get_config_dict`; the weights (the
    coupling networks and the standardisation) save with ``save_weights``.
    """

    def __init__(self, latent_size: int, n_conditions: int = 0, n_couplings: int = 6,
                 hidden_units: Sequence[int] = (64, 64), seed: int = 0, spline_bins: int = 0,
                 condition_shift: bool = False, **kwargs):
        super().__init__(**kwargs)
        bins = int(spline_bins)
        if int(latent_size) < 2:
            raise ConditionError(f"FlowPrior needs latent_size >= 2, got {latent_size}")
        if bins < 0 or bins == 1:
            raise ConditionError(f"FlowPrior needs spline_bins 0 (affine couplings) or >= 2, "
                                 f"got {spline_bins}")
        self._config = {"latent_size": int(latent_size), "n_conditions": int(n_conditions),
                        "n_couplings": int(n_couplings),
                        "hidden_units": [int(u) for u in hidden_units], "seed": int(seed)}
        if bins:                    # only when set: affine flows keep their stored config
            self._config["spline_bins"] = bins
        if condition_shift:         # only when set: earlier flows keep their stored config
            if int(n_conditions) < 1:
                raise ConditionError("FlowPrior's condition_shift needs n_conditions >= 1")
            self._config["condition_shift"] = True
        d, k = self._config["latent_size"], self._config["n_conditions"]
        self._per_coordinate = 3 * bins - 1 if bins else 2
        self._n_masked = d // 2
        rng = np.random.RandomState(self._config["seed"])
        self._permutations = [rng.permutation(d).astype(np.int32)
                              for _ in range(max(self._config["n_couplings"] - 1, 0))]
        self.coupling_networks = [
            build_mlp(self._n_masked + k, self._config["hidden_units"],
                      self._per_coordinate * (d - self._n_masked),
                      name=f"coupling{i}", zero_init_output=True,
                      seed=self._config["seed"] + 97 * i)
            for i in range(self._config["n_couplings"])]
        self.shift = self.add_weight(shape=(d,), initializer="zeros", trainable=False,
                                     name="standardisation_shift")
        self.scale = self.add_weight(shape=(d,), initializer="ones", trainable=False,
                                     name="standardisation_scale")
        self.condition_weights = (
            self.add_weight(shape=(k, d), initializer="zeros", name="condition_shift")
            if self.condition_shift else None)
        self.built = True          # every weight exists: save_weights/load_weights work now

    latent_size = config_property("latent_size", "Dimension of z.")
    n_conditions = config_property("n_conditions", "Conditions the flow depends on.")

    @property
    def spline_bins(self) -> int:
        """Bins of each spline coupling (0: affine couplings)."""
        return int(self._config.get("spline_bins", 0))

    @property
    def condition_shift(self) -> bool:
        """Whether the latents' shift is a linear function of the conditions."""
        return bool(self._config.get("condition_shift", False))

    def _coupling_fn(self, network: keras.Model, conditions: tf.Tensor | None):
        bins = self.spline_bins

        def bijector_fn(x0, output_units, **_):
            lead = tf.shape(x0)[:-1]
            inputs = x0
            if conditions is not None:
                cond = tf.broadcast_to(conditions, tf.concat([lead, [self.n_conditions]], 0))
                inputs = tf.concat([x0, cond], axis=-1)
            flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
            if bins:
                out = tf.reshape(network(flat),
                                 tf.concat([lead, [output_units, self._per_coordinate]], 0))
                return spline_coupling(out, bins)
            out = tf.reshape(network(flat), tf.concat([lead, [2 * output_units]], 0))
            shift, raw_log_scale = tf.split(out, 2, axis=-1)
            log_scale = LOG_SCALE_BOUND * tf.tanh(raw_log_scale / LOG_SCALE_BOUND)
            return tfb.Chain([tfb.Shift(shift), tfb.Scale(log_scale=log_scale)])
        return bijector_fn

    def bijector(self, conditions: Any = None) -> tfb.Bijector:
        """The flow eps -> z for the given conditions ((B, k), or None if unconditional)."""
        conditions = check_conditions(conditions, self.n_conditions, "FlowPrior")
        steps: list[tfb.Bijector] = []   # applied first to last; tfb.Chain wants the reverse
        for i, network in enumerate(self.coupling_networks):
            if i > 0:
                steps.append(tfb.Permute(self._permutations[i - 1]))
            steps.append(tfb.RealNVP(num_masked=self._n_masked,
                                     bijector_fn=self._coupling_fn(network, conditions)))
        shift = tf.convert_to_tensor(self.shift)
        if self.condition_weights is not None:      # (B, d): each galaxy's own mean
            shift = shift + tf.matmul(conditions, self.condition_weights)
        steps += [tfb.Scale(tf.convert_to_tensor(self.scale)), tfb.Shift(shift)]
        return tfb.Chain(steps[::-1], name="flow_prior")

    def distribution(self, conditions: Any = None) -> tfd.Distribution:
        """p(z | conditions): the flow applied to N(0, I); batch shape (B,) if conditioned."""
        checked = check_conditions(conditions, self.n_conditions, "FlowPrior")
        base = standard_normal_prior(self.latent_size, checked)
        return tfd.TransformedDistribution(base, self.bijector(checked))

    def call(self, latents, conditions=None):
        """Log-density of ``latents`` (B, d) under the flow (nats)."""
        return self.distribution(conditions).log_prob(tf.cast(latents, tf.float32))

    def transform(self, eps: Any, conditions: Any = None) -> tf.Tensor:
        """Map standard-normal ``eps`` (B, d) to prior samples z (B, d), deterministically."""
        eps = tf.cast(tf.convert_to_tensor(eps), tf.float32)
        if not shape_matches(eps, (None, self.latent_size)):
            raise ConditionError(f"eps must have shape (B, {self.latent_size}); got "
                                 f"{tuple(eps.shape)}")
        return self.bijector(conditions).forward(tf.ensure_shape(eps, (None, self.latent_size)))


def spline_coupling(raw: tf.Tensor, bins: int) -> tfb.Bijector:
    """The rational-quadratic spline of one coupling from its network's output ``raw``
    (..., units, 3 bins - 1): bin widths and heights (softmax, each at least
    :data:`SPLINE_MIN`, summing to the interval 2 :data:`SPLINE_BOUND`) and inner knot
    slopes (softplus, at least :data:`SPLINE_MIN`; 1 for a zero output, so that a
    zero-initialised network starts as the identity).  The identity outside the interval
    (linear tails, Durkan et al. 2019)."""
    raw_widths, raw_heights, raw_slopes = tf.split(raw, [bins, bins, bins - 1], axis=-1)
    span = 2.0 * SPLINE_BOUND - bins * SPLINE_MIN

    def sizes(logits):
        return SPLINE_MIN + span * tf.nn.softmax(logits, axis=-1)

    slopes = SPLINE_MIN + tf.nn.softplus(raw_slopes + _UNIT_SLOPE)
    return tfb.RationalQuadraticSpline(sizes(raw_widths), sizes(raw_heights), slopes,
                                       range_min=-SPLINE_BOUND)


def _as_float_array(values: Any, name: str, width: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or (width is not None and array.shape[1] != width):
        want = f"(N, {width})" if width is not None else "(N, d)"
        raise InputDataError(f"{name} must have shape {want}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array).all(axis=1)))
        raise InputDataError(f"{name} has {bad} row(s) with non-finite values; drop them first")
    return array


def fit_flow_prior(latents: Any, conditions: Any = None, *, epochs: int = 50,
                   batch_size: int = 256, learning_rate: float = 1e-3, seed: int = 0,
                   n_couplings: int = 6, hidden_units: Sequence[int] = (64, 64),
                   validation: tuple[Any, Any] | None = None,
                   patience: int | None = 10,
                   score: Callable[["FlowPrior"], float] | None = None,
                   score_every: int = 5, spline_bins: int = 0,
                   condition_shift: bool = False,
                   latent_scales: Any = None) -> FlowPrior:
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
    of Lanusse et al. 2021 (MNRAS 504, 5543, sect. 3.3).  On the flagship this kept the
    validation NLL falling for 40 epochs and cut the generated sizes' deficit from 2.2% to
    1.6% on the same 4,000 held-out galaxies (trained/build_shipped.sh, session 32).

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
        validation:    (latents (M, d), conditions (M, k) or None) held out, or None.
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
    held_out = None
    if validation is not None:
        val_latents = _as_float_array(validation[0], "validation latents", d)
        val_conditions = (None if validation[1] is None
                          else _as_float_array(validation[1], "validation conditions", k))
        if (val_conditions is None) != (cond_array is None):
            raise ConditionError("validation conditions must be given exactly when the "
                                 "training conditions are")
        held_out = (val_latents, val_conditions)
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
    tensors = (latents, widths) + (() if cond_array is None else (cond_array,))
    data = (tf.data.Dataset.from_tensor_slices(tensors)
            .shuffle(n, seed=seed, reshuffle_each_iteration=True).batch(batch_size))
    noise = tf.random.Generator.from_seed(int(seed) % (2**31) + 1)
    fresh = scales is not None

    @tf.function
    def step(batch_latents, batch_widths, batch_conditions):
        if fresh:       # a new posterior sample of every row each epoch
            batch_latents = batch_latents + batch_widths * noise.normal(tf.shape(batch_latents))
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.distribution(batch_conditions).log_prob(batch_latents))
        grads = tape.gradient(loss, flow.trainable_variables)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))
        return loss

    @tf.function
    def held_out_nll(batch_latents, batch_conditions):
        return -tf.reduce_mean(flow.distribution(batch_conditions).log_prob(batch_latents))

    if held_out is not None:        # constant tensors: one trace, not eager per epoch
        held_out = tuple(None if a is None else tf.constant(a) for a in held_out)
    losses, val_losses, best, scores = [], [], (np.inf, 0, None), []
    for epoch in progress(range(1, int(epochs) + 1), desc="flow prior"):
        total, count = 0.0, 0
        for batch in data:
            loss = step(batch[0], batch[1], batch[2] if k else None)
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
