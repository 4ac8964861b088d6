"""The conditional VAEs: ``cvae``, ``cvae2`` and ``fancy_cvae`` (the seed project's),
built on :class:`~galsim_vae.models.vae.BetaVAE`.

- ``cvae``: the encoder sees the image plus one constant plane per condition; the
  decoder sees z joined with the conditions.
- ``cvae2``: the encoder CNN sees the image only; its flattened features joined with the
  conditions feed the latent heads; the decoder sees z joined with the conditions.
- ``fancy_cvae``: ``cvae`` plus a head predicting the normalised redshift (condition 0)
  from z, trained with its Gaussian negative log-likelihood.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from ..errors import InputDataError
from .networks import build_mlp
from .vae import BetaVAE

tfd = tfp.distributions


class ConditionalVAE(BetaVAE):
    """``cvae``: condition planes at the encoder input, z joined with y at the decoder.

    Parameters: those of :class:`BetaVAE`, with ``n_conditions`` >= 1 (default 1).
    """

    architecture = "cvae"
    condition_planes = True
    min_conditions = 1

    def __init__(self, stamp_size: int, n_conditions: int = 1, **kwargs):
        super().__init__(stamp_size, n_conditions=n_conditions, **kwargs)


class ConditionalVAE2(ConditionalVAE):
    """``cvae2``: image-only CNN; features joined with y feed the latent heads; z joined
    with y at the decoder (the seed project's fastest)."""

    architecture = "cvae2"
    condition_planes = False
    condition_features = True


class FancyConditionalVAE(ConditionalVAE):
    """``fancy_cvae``: ``cvae`` plus a head predicting the normalised redshift from z.

    The loss adds ``redshift_weight`` times the Gaussian negative log-likelihood of the
    true normalised redshift (condition 0) under :meth:`predict_conditions` -- a proper
    likelihood with a learned uncertainty, instead of the seed's 1000 x squared error.
    The encoder also sees the redshift planes (as in ``cvae``), so z may carry the given
    redshift as well as what the image says about it; the head makes z redshift-aware,
    and ``predict_conditions`` of a prior sample gives the redshift it is consistent with.

    Parameters: those of :class:`ConditionalVAE`, and
        redshift_weight:       Weight of the redshift negative log-likelihood in the loss.
        redshift_hidden_units: Hidden widths of the redshift head.
    """

    architecture = "fancy_cvae"

    def __init__(self, stamp_size: int, n_conditions: int = 1, redshift_weight: float = 1.0,
                 redshift_hidden_units: Sequence[int] = (64,), **kwargs):
        super().__init__(stamp_size, n_conditions=n_conditions, **kwargs)
        if not np.isfinite(redshift_weight) or redshift_weight < 0:
            raise InputDataError(f"fancy_cvae: redshift_weight must be finite and >= 0, "
                                 f"got {redshift_weight}")
        self._config["redshift_weight"] = float(redshift_weight)
        self._config["redshift_hidden_units"] = [int(u) for u in redshift_hidden_units]
        self.redshift_head = build_mlp(self.latent_size, self._config["redshift_hidden_units"],
                                       2, name="redshift_head")

    def predict_conditions(self, z: Any, training: bool = False) -> tfd.Distribution:
        """p(normalised redshift | z): a Normal with batch shape (B,)."""
        out = tf.cast(self.redshift_head(tf.cast(self._latents(z), tf.float32),
                                         training=training), tf.float32)
        return tfd.Normal(loc=out[:, 0], scale=tf.nn.softplus(out[:, 1]) + 1e-3)

    def _extra_losses(self, losses: dict, z: tf.Tensor, conditions: tf.Tensor | None) -> None:
        target = tf.cast(conditions, tf.float32)[:, 0]
        galaxy_redshift_nll = -self.predict_conditions(z).log_prob(target)
        redshift_nll = tf.reduce_mean(galaxy_redshift_nll)
        redshift_loss = self._config["redshift_weight"] * redshift_nll
        losses["galaxy_loss"] = (losses["galaxy_loss"]
                                 + self._config["redshift_weight"] * galaxy_redshift_nll)
        losses["redshift_nll"] = redshift_nll
        losses["redshift_loss"] = redshift_loss
        losses["loss"] = losses["loss"] + redshift_loss
