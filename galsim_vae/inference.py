"""The one inference path: noise or latent vectors and standardised conditions in,
profiles out, in batched network calls.

:class:`NetworkRunner` wraps a trained network (:mod:`galsim_vae.models`) for
:class:`~galsim_vae.generator.GalaxyModel`: every stamp users draw (``sample``,
``VAEGalaxy``, the YAML type) and every stamp the evaluation generates or reconstructs
goes through :meth:`NetworkRunner.decode`.  The network's ``generate`` applies the prior
(and a random orientation when the bundle samples them); ``decode_latent`` decodes latent
vectors as they are.
"""

from __future__ import annotations

import numpy as np

#: Largest number of galaxies decoded in one network call (memory bound: a 128x128 float32
#: stamp is 64 kB, so 512 of them and the decoder activations stay well under 1 GB).
MAX_BATCH = 512

#: Every network call has at least this many rows (a single galaxy is padded with a row
#: of zeros).  CPU kernels (oneDNN) take a different code path, with different float32
#: rounding, for a batch of one; for any batch of two or more each row's output depends
#: on that row only (checked for batches of 2-64 of the tiny test model and of a 128x128,
#: 6.7M-parameter cvae2).  So one galaxy alone, in a batch of 200, or in a YAML field with
#: any batching and any nproc is the same to the last bit (tests/test_config.py checks).
MIN_ROWS = 2



class NetworkRunner:
    """Batched, compiled calls of one network.

    Parameters:
        network:        the ``keras.Model`` of :mod:`galsim_vae.models` (prior attached).
        stamp_size:     side of the generated stamps, pixels.
        has_conditions: whether the network takes conditions.
    """

    def __init__(self, network, *, stamp_size: int, has_conditions: bool):
        self._network = network
        self._stamp_size = int(stamp_size)
        self._has_conditions = bool(has_conditions)
        self._decode_fn = None

    def _compiled(self):
        """The compiled network call: (noise or latents, standardised conditions) ->
        profiles."""
        if self._decode_fn is None:
            import tensorflow as tf

            net = self._network
            has_cond = self._has_conditions

            @tf.function(reduce_retracing=True)
            def decode(values, conditions, use_prior):
                conditions = conditions if has_cond else None
                latent = net.noise_to_latent(values, conditions) if use_prior else values
                return net.decode_latent(latent, conditions), latent

            self._decode_fn = decode
        return self._decode_fn

    @staticmethod
    def _batches(values: np.ndarray, conditions: np.ndarray | None):
        """(start, stop, values, conditions) of each network call: at most
        :data:`MAX_BATCH` rows, padded with zeros to at least :data:`MIN_ROWS`."""
        import tensorflow as tf

        values = np.asarray(values, dtype=np.float32)
        n = values.shape[0]
        cond = (np.zeros((n, 0), np.float32) if conditions is None
                else np.asarray(conditions, np.float32))
        for start in range(0, n, MAX_BATCH):
            stop = min(n, start + MAX_BATCH)
            padded = max(stop - start, MIN_ROWS)
            v = np.zeros((padded, values.shape[1]), np.float32)
            c = np.zeros((padded, cond.shape[1]), np.float32)
            v[:stop - start], c[:stop - start] = values[start:stop], cond[start:stop]
            yield start, stop, tf.constant(v), tf.constant(c)

    def _empty_latents(self) -> np.ndarray:
        return np.zeros((0, max(self._network.latent_input_sizes)))

    def noise_to_latent(self, noise: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
        """Latent vectors of ``noise`` (n, noise_size) for standardised ``conditions``."""
        out = [np.asarray(self._network.noise_to_latent(
                   v, c if self._has_conditions else None), dtype=float)[:stop - start]
               for start, stop, v, c in self._batches(noise, conditions)]
        return np.concatenate(out) if out else self._empty_latents()

    def decode(self, values: np.ndarray, conditions: np.ndarray | None, *,
               from_noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Profiles (n, S, S) float64 in network units and their latent vectors for
        ``values`` (noise when ``from_noise``, else latent vectors) and standardised
        ``conditions`` (n, k) or None, from the same network calls (``generate`` is
        ``decode_latent(noise_to_latent(...))``).  One call per :data:`MAX_BATCH`
        galaxies, padded to at least :data:`MIN_ROWS` rows."""
        decode = self._compiled()
        out = np.empty((len(values), self._stamp_size, self._stamp_size), dtype=float)
        latents = []
        for start, stop, v, c in self._batches(values, conditions):
            profile, latent = decode(v, c, bool(from_noise))
            out[start:stop] = np.asarray(profile, dtype=float)[:stop - start, ..., 0]
            latents.append(np.asarray(latent, dtype=float)[:stop - start])
        return out, (np.concatenate(latents) if latents else self._empty_latents())
