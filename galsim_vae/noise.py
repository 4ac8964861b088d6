"""Latent noise drawn from GalSim random-number generators.

Every generated galaxy is a function of the GalSim rng it is given: its standard-normal
noise ``eps`` comes from ``galsim.GaussianDeviate(rng)``, so a YAML field is the same for
the same seed and any ``nproc``.  TensorFlow-free (GalSim's worker processes use it).
"""

from __future__ import annotations

import numpy as np

#: Largest number of latent deviates drawn one by one rather than by the OpenMP-parallel
#: ``GaussianDeviate.generate`` (see :func:`draw_latent_noise`); ~0.2 us per value.
SERIAL_DRAW_LIMIT = 65536


def _as_rng(rng):
    """A galsim.BaseDeviate from None, an int seed or a BaseDeviate."""
    import galsim

    if rng is None:
        return galsim.BaseDeviate()
    if isinstance(rng, galsim.BaseDeviate):
        return rng
    if isinstance(rng, (int, np.integer)):
        return galsim.BaseDeviate(int(rng))
    raise TypeError(f"rng must be a galsim.BaseDeviate, an int seed or None, not {type(rng)!r}")


def draw_latent_noise(n: int, latent_size: int, rng=None) -> np.ndarray:
    """Standard-normal latent noise ``eps`` (n, latent_size) float64 drawn from a GalSim rng.

    Row ``i`` uses the deviates ``i*latent_size ... (i+1)*latent_size - 1`` of the stream,
    so drawing n galaxies at once equals drawing them one by one from the same rng when
    ``latent_size`` is even (GalSim's Gaussian deviates come in pairs: a
    ``GaussianDeviate`` keeps the second of a pair for its next call, which a new
    deviate does not see).

    Speed: ``GaussianDeviate.generate`` runs an OpenMP parallel region; on a busy machine
    (or beside TensorFlow's thread pools) starting it costs 3-10 ms, 1000 times the cost
    of drawing 32 values.  Up to :data:`SERIAL_DRAW_LIMIT` values are therefore drawn one
    by one, which gives the same values and leaves the rng in the same state
    (``benchmarks/README.md``; ``tests/test_latent_noise.py`` checks both paths agree).
    """
    import galsim

    total = n * latent_size
    deviate = galsim.GaussianDeviate(_as_rng(rng))
    if total <= SERIAL_DRAW_LIMIT:
        eps = np.fromiter((deviate() for _ in range(total)), dtype=float, count=total)
    else:
        eps = np.empty(total, dtype=float)
        deviate.generate(eps)
    return eps.reshape(n, latent_size)
