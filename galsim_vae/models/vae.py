"""The beta-VAE and the conditional VAEs (Keras 3 models with TFP distributions).

Every model is a :class:`keras.Model` holding the encoder and decoder networks, and
exposes the probabilistic pieces as TFP distributions:

- ``encode`` -> q(z | x[, y]): :class:`tfd.MultivariateNormalDiag` (refined per galaxy
  by :func:`.posterior.posterior` when ``posterior_refine_steps`` > 0);
- ``decode`` -> the mean profile (B, S, S, 1) in network units (image / flux_scale),
  PSF-free when ``psf_free``;
- ``likelihood`` -> p(x | profile): ``Independent(Normal(psf * profile, noise_std), 3)``,
  through the data's noise correlation when the batch carries it (:mod:`.likelihood`);
- ``prior`` -> p(z[ | y]): N(0, I), or a fitted normalizing flow (:meth:`attach_prior`).

The loss is the negative beta-ELBO (Higgins et al. 2017, "beta-VAE", ICLR):
``-log p(x | z) + beta * KL(q(z | x) || p(z))`` with z ~ q (reparameterised), averaged
over the batch, so values are per galaxy (nats).

Architectures: ``vae`` (this module), the conditional ``cvae``, ``cvae2``, ``fancy_cvae``
(:mod:`.conditional`), all in the registry (:mod:`.registry`) with their parts.

Output activation: ``softplus`` by default (the noise-free surface brightness is
non-negative; the noise lives in the likelihood) or ``linear`` (no positive floor, so no
pedestal around faint galaxies).  Mixed precision: the networks may compute in float16;
encoder parameters, profiles, likelihood and KL are cast to float32.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ..errors import ConditionError, InputDataError
from .hyperparameters import HyperparameterMixin, config_property
from .likelihood import convolve_psf
from .networks import OUTPUT_ACTIVATIONS, UPSAMPLINGS, build_encoder_cnn, stage_channels, stage_sizes
from .orientation import ORIENTED, SAMPLE_SYMMETRIES, group_element, orient, orientation_entry
from .posterior import check_refinement
from .registry import DECODERS, LIKELIHOODS
from .prior import FlowPrior, PriorSlot, check_conditions, shape_matches, standard_normal_prior

tfd = tfp.distributions

#: Smallest posterior standard deviation (keeps log q finite).
MIN_POSTERIOR_SCALE = 1e-5
#: Smallest stamp side (one stride-2 stage down to <= 8 pixels).
MIN_STAMP_SIZE = 9


class BetaVAE(HyperparameterMixin, keras.Model):
    """Beta-VAE on galaxy stamps (architecture ``vae``); base of the conditional models.

    Parameters:
        stamp_size:        Stamp side S in pixels (>= 9; any size, odd included).
        latent_size:       Dimension of z.
        channels:          Width of each stride-2 stage; truncated/extended to the number
                           of stages (None: the seed's (64, 128, 256, 512)).
        n_conditions:      Conditions per galaxy (normalised redshift first); 0 for ``vae``.
        psf_free:          The decoder gives PSF-free profiles and the likelihood convolves
                           them with each galaxy's PSF (needs PSFs in the data).
        psf_size:          If set, PSF images must be ``psf_size`` pixels square.
        head_channels:     Channels of the last encoder convolution (its pixels are the
                           features of the latent heads; the seed used 1).
        output_activation: ``"softplus"`` (default, non-negative profiles) or ``"linear"``.
        upsampling:   decoder up-sampling, ``"transpose"`` (default, the seed's transposed
                      convolutions) or ``"resize"`` (resize + convolution: no checkerboard).
        full_resolution_norm: GroupNormalization in the decoder's last (full-resolution)
                      stage (default True, the seed's layout); False makes decoding about
                      twice as fast at 128x128 (see :func:`~.networks.build_decoder_cnn`).
        decoder:      registered decoder (``"conv"``: :func:`~.networks.build_decoder_cnn`;
                      ``"subpixel"``: :func:`~.networks.build_subpixel_decoder_cnn`).
        posterior_refine_steps, posterior_refine_rate, posterior_prior_weight: the
                      semi-amortized posterior (:mod:`.posterior`; 0 steps: the encoder's).
    """

    architecture = "vae"
    #: The encoder input gets one constant plane per condition (cvae, fancy_cvae).
    condition_planes = False
    #: The latent heads get the conditions joined with the CNN features (cvae2).
    condition_features = False
    #: Smallest allowed n_conditions.
    min_conditions = 0

    def __init__(self, stamp_size: int, latent_size: int = 32,
                 channels: Sequence[int] | None = None, n_conditions: int = 0,
                 psf_free: bool = True, psf_size: int | None = None, head_channels: int = 1,
                 output_activation: str = "softplus", upsampling: str = "transpose",
                 full_resolution_norm: bool = True, model_error: float = 0.0,
                 flux_condition: int | None = None, flux_condition_scale: float = 0.0,
                 decoder: str = "conv", likelihood: str = "gaussian",
                 sample_symmetry: str = "none", posterior_refine_steps: int = 0,
                 posterior_refine_rate: float = 0.03, posterior_prior_weight: float = 0.0,
                 **kwargs):
        super().__init__(name=kwargs.pop("name", self.architecture), **kwargs)
        self._validate(stamp_size, latent_size, n_conditions, head_channels, output_activation)
        widths = stage_channels(len(stage_sizes(int(stamp_size))) - 1, channels)
        if min(widths) < 1:
            raise InputDataError(f"{self.architecture}: channel widths must be >= 1, got "
                                 f"{list(channels)}")
        self._config: dict[str, Any] = {
            "stamp_size": int(stamp_size), "latent_size": int(latent_size),
            "channels": list(widths), "n_conditions": int(n_conditions),
            "psf_free": bool(psf_free), "psf_size": None if psf_size is None else int(psf_size),
            "head_channels": int(head_channels), "output_activation": str(output_activation),
            "upsampling": str(upsampling), "full_resolution_norm": bool(full_resolution_norm),
            "model_error": float(model_error),
            "flux_condition": None if flux_condition is None else int(flux_condition),
            "flux_condition_scale": float(flux_condition_scale),
            "decoder": str(decoder), "likelihood": str(likelihood),
            "sample_symmetry": str(sample_symmetry),
            **check_refinement(posterior_refine_steps, posterior_refine_rate,
                               posterior_prior_weight, self.architecture)}
        self._validate_flux_options()
        s, k, d = self.stamp_size, self.n_conditions, self.latent_size
        in_channels = 1 + (k if self.condition_planes else 0)
        self.encoder_cnn = build_encoder_cnn(s, in_channels, widths, int(head_channels))
        n_features = int(self.encoder_cnn.output_shape[-1]) + (k if self.condition_features else 0)
        self.loc_head = keras.layers.Dense(d, name="posterior_loc")
        self.scale_head = keras.layers.Dense(d, name="posterior_scale")
        self.loc_head.build((None, n_features))
        self.scale_head.build((None, n_features))
        if upsampling not in UPSAMPLINGS:
            raise InputDataError(f"{self.architecture}: upsampling must be one of {UPSAMPLINGS}, "
                                 f"got {upsampling!r}")
        self.decoder_cnn = DECODERS.get(str(decoder))(
            s, d + k, widths, str(output_activation), upsampling=str(upsampling),
            full_resolution_norm=bool(full_resolution_norm))
        self._likelihood_fn = LIKELIHOODS.get(str(likelihood))
        self._prior_slot = PriorSlot()
        self.built = True

    def _validate(self, stamp_size, latent_size, n_conditions, head_channels, output_activation):
        name = self.architecture
        if int(stamp_size) < MIN_STAMP_SIZE:
            raise InputDataError(f"{name}: stamp_size must be >= {MIN_STAMP_SIZE} pixels, "
                                 f"got {stamp_size}")
        if int(latent_size) < 1 or int(head_channels) < 1:
            raise InputDataError(f"{name}: latent_size and head_channels must be >= 1, got "
                                 f"{latent_size} and {head_channels}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise InputDataError(f"{name}: output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                                 f"got {output_activation!r}")
        if self.min_conditions == 0 and int(n_conditions) != 0:
            raise ConditionError(f"architecture 'vae' takes no conditions, got n_conditions="
                                 f"{n_conditions}; use 'cvae', 'cvae2' or 'fancy_cvae'")
        if int(n_conditions) < self.min_conditions:
            raise ConditionError(f"architecture {name!r} needs n_conditions >= "
                                 f"{self.min_conditions}, got {n_conditions}")

    def _validate_flux_options(self) -> None:
        name, cfg = self.architecture, self._config
        if not np.isfinite(cfg["model_error"]) or not 0.0 <= cfg["model_error"] < 1.0:
            raise InputDataError(f"{name}: model_error must be in [0, 1), got "
                                 f"{cfg['model_error']}")
        index = cfg["flux_condition"]
        if index is not None and not 0 <= index < cfg["n_conditions"]:
            raise ConditionError(f"{name}: flux_condition must index one of the "
                                 f"{cfg['n_conditions']} condition(s), got {index}")
        if cfg["sample_symmetry"] not in SAMPLE_SYMMETRIES:
            raise InputDataError(f"{name}: sample_symmetry must be one of {SAMPLE_SYMMETRIES}, "
                                 f"got {cfg['sample_symmetry']!r}")
        if not np.isfinite(cfg["flux_condition_scale"]):
            raise InputDataError(f"{name}: flux_condition_scale must be finite, got "
                                 f"{cfg['flux_condition_scale']}")

    def _flux_factor(self, conditions: tf.Tensor | None) -> tf.Tensor | None:
        """(B, 1, 1, 1) flux of each galaxy relative to the mean magnitude, from its
        standardised magnitude condition c: ``10**(-0.4 (m - mean)) = exp(-a c)`` with
        ``a = 0.4 ln(10) std(m)`` (``flux_condition_scale``); None without one.

        The encoder sees stamps divided by it and the decoder's output is multiplied by
        it, so the networks work on flux-normalised stamps (one dynamic range for every
        brightness) while the likelihood compares physical pixels."""
        index = self._config["flux_condition"]
        if index is None or conditions is None:
            return None
        c = tf.cast(conditions, tf.float32)[:, index]
        return tf.exp(-self._config["flux_condition_scale"] * c)[:, None, None, None]

    # -- hyper-parameters (get_config_dict from HyperparameterMixin) ---------------------
    latent_size = config_property("latent_size", "Dimension of z.")
    stamp_size = config_property("stamp_size", "Stamp side S in pixels.")
    n_conditions = config_property("n_conditions", "Conditions per galaxy (0 for 'vae').")
    psf_free = config_property("psf_free", "Decoder outputs PSF-free profiles.")

    # -- checks -----------------------------------------------------------------------
    def _conditions(self, conditions: Any) -> tf.Tensor | None:
        return check_conditions(conditions, self.n_conditions, f"model {self.architecture!r}")

    def _images(self, images: Any) -> tf.Tensor:
        images = tf.convert_to_tensor(images)
        s = self.stamp_size
        if not shape_matches(images, (None, s, s, 1)):
            raise InputDataError(f"model {self.architecture!r} needs images of shape "
                                 f"(B, {s}, {s}, 1); got {tuple(images.shape)}")
        return tf.ensure_shape(images, (None, s, s, 1))

    def _latents(self, z: Any) -> tf.Tensor:
        z = tf.convert_to_tensor(z)
        if not shape_matches(z, (None, self.latent_size)):
            raise ConditionError(f"latents must have shape (B, {self.latent_size}); got "
                                 f"{tuple(z.shape)}")
        return tf.ensure_shape(z, (None, self.latent_size))

    # -- the model ----------------------------------------------------------------------
    def encode(self, images: Any, conditions: Any = None,
               training: bool = False) -> tfd.Distribution:
        """q(z | x[, y]): a MultivariateNormalDiag with batch (B,), event (latent_size,).

        Parameters:
            images:     (B, S, S, 1) stamps in network units.
            conditions: (B, n_conditions) normalised conditions (None for ``vae``).
            training:   Passed to the layers.
        """
        images = self._images(images)
        conditions = self._conditions(conditions)
        factor = self._flux_factor(conditions)
        if factor is not None:
            images = images / tf.cast(factor, images.dtype)
        inputs = images
        if self.condition_planes:
            planes = tf.broadcast_to(tf.cast(conditions, images.dtype)[:, None, None, :],
                                     tf.concat([tf.shape(images)[:3], [self.n_conditions]], 0))
            inputs = tf.concat([images, planes], axis=-1)
        features = self.encoder_cnn(inputs, training=training)
        if self.condition_features:
            features = tf.concat([features, tf.cast(conditions, features.dtype)], axis=-1)
        loc = tf.cast(self.loc_head(features, training=training), tf.float32)
        raw_scale = tf.cast(self.scale_head(features, training=training), tf.float32)
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.nn.softplus(raw_scale)
                                          + MIN_POSTERIOR_SCALE)

    def decode(self, z: Any, conditions: Any = None, training: bool = False) -> tf.Tensor:
        """Mean profile (B, S, S, 1) float32 in network units for latents z (B, latent_size)."""
        z = self._latents(z)
        conditions = self._conditions(conditions)
        inputs = tf.cast(z, tf.float32)
        if conditions is not None:
            inputs = tf.concat([inputs, conditions], axis=-1)
        profile = tf.cast(self.decoder_cnn(inputs, training=training), tf.float32)
        factor = self._flux_factor(conditions)
        return profile if factor is None else profile * factor

    def likelihood(self, profile: Any, psf: Any = None, noise_std: Any = None,
                   noise_rootps: Any = None) -> tfd.Distribution:
        """p(x | profile) = Independent(Normal(psf * profile, sigma), 3), where
        ``sigma**2 = noise_std**2 + (model_error * |psf * profile|)**2`` (the model-error
        term caps the weight of very bright pixels at ``1 / model_error**2``; 0 gives the
        noise-only likelihood of Lanusse et al. 2021); see :func:`.pixel_likelihood`.

        Parameters:
            profile:   (B, S, S, 1) output of :meth:`decode`.
            psf:       (B, P, P, 1) unit-sum PSF of each galaxy, or one (P, P) PSF for all
                       (needed when ``psf_free``; ignored otherwise).
            noise_std: (B,) pixel noise std of each galaxy in network units.
            noise_rootps: (B, S, S//2 + 1) root power spectra of each galaxy's correlated
                       noise (``batch["noise_rootps"]``), or None for white noise.
        """
        if noise_std is None:
            raise InputDataError("likelihood needs noise_std (B,), each galaxy's pixel noise "
                                 "in network units (the pipeline's batch['noise_std'])")
        mean = tf.cast(profile, tf.float32)
        if self.psf_free:
            if psf is None:
                raise InputDataError(f"model {self.architecture!r} was built with psf_free=True "
                                     "and needs each galaxy's PSF (batch['psf']); build the "
                                     "pipeline with with_psf=True or the model with psf_free=False")
            psf = tf.convert_to_tensor(psf)
            if psf.shape.rank in (2, 3):             # one PSF (P, P) or (P, P, 1) for all
                psf = tf.reshape(psf, [1, psf.shape[0], psf.shape[1], 1])
            want = self._config["psf_size"]
            if want is not None and tuple(psf.shape[1:3]) != (want, want):
                raise InputDataError(f"model {self.architecture!r} expects PSFs of "
                                     f"{want}x{want} pixels; got shape {tuple(psf.shape)}")
            mean = convolve_psf(mean, psf)
        return self._likelihood_fn(mean, noise_std, model_error=self._config["model_error"],
                                   noise_rootps=noise_rootps)

    # -- prior ------------------------------------------------------------------------
    def attach_prior(self, flow_prior: FlowPrior | None) -> None:
        """Use a fitted :class:`FlowPrior` as p(z | y) (None: back to N(0, I)).

        The flow is kept outside the model's weights (saved apart, never trained with the
        VAE).  Its ``n_conditions`` must equal the model's, or the model must be
        unconditional (a ``vae`` with a redshift-conditional flow).
        """
        if flow_prior is not None:
            if flow_prior.latent_size != self.latent_size:
                raise ConditionError(f"flow prior has latent_size {flow_prior.latent_size}, the "
                                     f"model {self.latent_size}")
            if flow_prior.n_conditions != self.n_conditions and self.n_conditions != 0:
                raise ConditionError(f"flow prior has {flow_prior.n_conditions} condition(s), "
                                     f"the model {self.n_conditions}")
        self._prior_slot.flow = flow_prior

    @property
    def flow_prior(self) -> FlowPrior | None:
        """The attached flow prior, or None for N(0, I)."""
        return self._prior_slot.flow

    @property
    def prior_conditions(self) -> int:
        """Number of conditions :meth:`prior` and :meth:`prior_transform` take."""
        flow = self._prior_slot.flow
        return flow.n_conditions if flow is not None else self.n_conditions

    def prior(self, conditions: Any = None) -> tfd.Distribution:
        """p(z[ | y]): N(0, I) (batch (B,) if conditions are given), or the attached flow."""
        flow = self._prior_slot.flow
        if flow is not None:
            return flow.distribution(conditions)
        checked = check_conditions(conditions, self.n_conditions, f"prior of {self.architecture!r}")
        return standard_normal_prior(self.latent_size, checked)

    def noise_shape(self, n: int) -> tuple[int, ...]:
        """Shape of the noise that generates ``n`` galaxies: ``(n, latent_size)``, plus
        one orientation number per galaxy when ``sample_symmetry`` is "dihedral" or
        "isotropic" (an architecture whose decoder draws noise declares a larger one)."""
        extra = 1 if self._config["sample_symmetry"] in ORIENTED else 0
        return (int(n), self.latent_size + extra)

    @property
    def latent_input_sizes(self) -> tuple[int, ...]:
        """Lengths of the latent vectors :meth:`decode_latent` takes: ``latent_size``, and
        ``latent_size + 1`` (z and the orientation entry) when sampling orientations."""
        if self._config["sample_symmetry"] in ORIENTED:
            return (self.latent_size, self.latent_size + 1)
        return (self.latent_size,)

    def generate(self, noise: Any, conditions: Any = None) -> tf.Tensor:
        """Profiles (B, S, S, 1) from standard-normal ``noise`` (:meth:`noise_shape`): the
        prior transform, the decoder and, for dihedral or isotropic sampling, a random
        element of the dihedral group (the residual rotation of isotropic sampling is the
        runners': :meth:`galsim_vae.generator.GalaxyModel.decode_batch`)."""
        return self.decode_latent(self.noise_to_latent(noise, conditions), conditions)

    def noise_to_latent(self, noise: Any, conditions: Any = None) -> tf.Tensor:
        """The latent vectors (:meth:`latent_input_sizes`) that ``noise`` generates:
        ``decode_latent(noise_to_latent(noise))`` equals ``generate(noise)``."""
        noise = tf.cast(tf.convert_to_tensor(noise), tf.float32)
        z = self.prior_transform(noise[:, :self.latent_size],
                                 self._prior_conditions(conditions))
        if self._config["sample_symmetry"] not in ORIENTED:
            return z
        entry = orientation_entry(noise[:, self.latent_size], self._config["sample_symmetry"])
        return tf.concat([z, entry[:, None]], axis=-1)

    def decode_latent(self, latent: Any, conditions: Any = None) -> tf.Tensor:
        """:meth:`decode` of z (B, latent_size), or of z with an orientation entry (B,
        latent_size + 1), the profile then turned by its group element."""
        latent = tf.cast(tf.convert_to_tensor(latent), tf.float32)
        profile = self.decode(latent[:, :self.latent_size], conditions)
        if latent.shape[-1] == self.latent_size + 1 and len(self.latent_input_sizes) > 1:
            profile = orient(profile, group_element(latent[:, self.latent_size],
                                                    self._config["sample_symmetry"]))
        return profile

    def _prior_conditions(self, conditions: Any):
        k = self.prior_conditions
        if conditions is None or k == 0:
            return None
        return tf.convert_to_tensor(conditions)[:, :k]

    @property
    def noise_size(self) -> int:
        """Standard-normal numbers drawn per galaxy (the generator draws them flat, in
        the order of :meth:`noise_shape`)."""
        return int(np.prod(self.noise_shape(1)[1:]))

    def prior_transform(self, eps: Any, conditions: Any = None) -> tf.Tensor:
        """Map standard-normal ``eps`` (B, latent_size) to prior samples z (B, latent_size).

        The identity for N(0, I); the flow's forward bijector when one is attached.  All
        randomness enters through ``eps`` (deterministic map).
        """
        eps = tf.cast(self._latents(eps), tf.float32)
        flow = self._prior_slot.flow
        if flow is not None:
            return flow.transform(eps, conditions)
        check_conditions(conditions, self.n_conditions, f"prior of {self.architecture!r}")
        return eps

    # -- loss -------------------------------------------------------------------------
    def _batch_conditions(self, batch: Mapping[str, Any], n: int) -> tf.Tensor | None:
        if n == 0:
            return None
        if "conditions" not in batch:
            raise ConditionError(f"model {self.architecture!r} needs batch['conditions'] of "
                                 f"shape (B, {n}); build the pipeline with conditions=(...)")
        return batch["conditions"]

    def _kl(self, posterior: tfd.Distribution, z: tf.Tensor, prior_conditions) -> tf.Tensor:
        prior = self.prior(prior_conditions)
        if self._prior_slot.flow is None:
            return tfd.kl_divergence(posterior, prior)          # analytic
        return posterior.log_prob(z) - prior.log_prob(z)        # one-sample Monte Carlo

    def compute_losses(self, batch: Mapping[str, Any], beta: Any = 1.0, training: bool = False,
                       seed: Any = None, per_galaxy: bool = False) -> dict[str, tf.Tensor]:
        """Negative beta-ELBO of a pipeline batch, averaged over galaxies.

        Parameters:
            batch:    Dict from :func:`galsim_vae.data.pipeline.make_tf_dataset`: ``image``,
                      ``noise_std``, ``psf`` (if ``psf_free``), ``conditions`` (if the model
                      is conditional; ignored by ``vae``), ``noise_rootps`` (optional: the
                      correlated-noise likelihood).
            beta:     Weight of the KL term (float or scalar tensor).
            training: Passed to the layers.
            seed:     Optional stateless seed of the posterior sample.
            per_galaxy: Also return the (B,) vectors ``galaxy_loss`` and ``galaxy_kl``.

        Returns:
            Scalar float32 tensors: ``loss`` = ``nll`` + beta * ``kl`` (nats per galaxy),
            ``nll`` = -log p(x | z), ``kl`` = KL(q(z | x) || p(z)) (analytic for N(0, I));
            with ``per_galaxy``, also (B,) vectors ``galaxy_loss`` (each galaxy's
            ``nll + beta * kl``) and ``galaxy_kl``, for the outlier-robust median monitor
            of the training loop.
        """
        conditions = self._batch_conditions(batch, self.n_conditions)
        posterior = self.encode(batch["image"], conditions, training=training)
        z = posterior.sample(seed=seed)
        profile = self.decode(z, conditions, training=training)
        likelihood = self.likelihood(profile, batch.get("psf"), batch["noise_std"],
                                     batch.get("noise_rootps"))
        image = tf.cast(batch["image"], tf.float32)
        galaxy_nll = -likelihood.log_prob(image)
        nll = tf.reduce_mean(galaxy_nll)
        prior_conditions = self._batch_conditions(batch, self.prior_conditions)
        galaxy_kl = self._kl(posterior, z, prior_conditions)
        kl = tf.reduce_mean(galaxy_kl)
        beta = tf.cast(beta, tf.float32)
        losses = {"loss": nll + beta * kl, "nll": nll, "kl": kl,
                  "galaxy_loss": galaxy_nll + beta * galaxy_kl, "galaxy_kl": galaxy_kl}
        self._extra_losses(losses, z, conditions)
        if not per_galaxy:
            del losses["galaxy_loss"], losses["galaxy_kl"]
        return losses

    def _extra_losses(self, losses: dict, z: tf.Tensor, conditions: tf.Tensor | None) -> None:
        """Hook for architecture-specific terms (fancy_cvae's redshift head)."""
        return None

    def call(self, images, conditions=None, training=False):
        """Reconstruction: the decoded posterior mean (B, S, S, 1), before the PSF."""
        return self.decode(self.encode(images, conditions, training).mean(), conditions, training)
