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

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ..errors import ConditionError
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


class PriorSlot:
    """Holds an attached flow prior outside Keras's weight tracking, so that the VAE's
    ``save_weights``/``trainable_variables`` never include the flow (saved apart)."""

    __slots__ = ("flow",)

    def __init__(self):
        self.flow: "FlowPrior | None" = None


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
