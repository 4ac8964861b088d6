"""draw_latent_noise: the serial path (small draws) and GalSim's OpenMP ``generate`` give
the same deviates and leave the rng in the same state (benchmarks/README.md: the serial
path exists for speed only)."""

import galsim
import numpy as np
import pytest

from galsim_vae import noise as generator
from galsim_vae.noise import draw_latent_noise


@pytest.mark.parametrize("n, latent_size", [(1, 32), (3, 7), (64, 32), (1, 1)])
def test_serial_draw_equals_generate(monkeypatch, n, latent_size):
    seed = 1000 + n * latent_size
    rng_serial = galsim.BaseDeviate(seed)
    serial = draw_latent_noise(n, latent_size, rng_serial)
    monkeypatch.setattr(generator, "SERIAL_DRAW_LIMIT", 0)   # force GalSim's generate
    rng_vector = galsim.BaseDeviate(seed)
    vector = draw_latent_noise(n, latent_size, rng_vector)
    assert serial.shape == (n, latent_size)
    np.testing.assert_array_equal(serial, vector)
    assert rng_serial.raw() == rng_vector.raw()        # the stream continues identically


def test_draws_are_standard_normal():
    eps = draw_latent_noise(400, 32, galsim.BaseDeviate(5))
    assert abs(eps.mean()) < 0.02 and abs(eps.std() - 1) < 0.02


def test_one_by_one_equals_batched():
    rng = galsim.BaseDeviate(77)
    batched = draw_latent_noise(10, 8, galsim.BaseDeviate(77))
    rows = np.concatenate([draw_latent_noise(1, 8, rng) for _ in range(10)])
    np.testing.assert_array_equal(batched, rows)
