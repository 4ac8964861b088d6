"""The data's own noise: a data set records its stamps' noise correlation (COSMOS drizzled
noise), and model images "observed like the data" get that noise, not white noise."""

from __future__ import annotations

import warnings

import galsim
import numpy as np
import pytest

from galsim_vae.data.cosmos import prepare_cosmos
from galsim_vae.data.dataset import Dataset
from galsim_vae.data.noise import (NoiseModelTable, neighbour_correlation, noise_fields,
                                   per_galaxy_rootps)
from galsim_vae.errors import InputDataError
from galsim_vae.evaluation.render import observe_like_data

SIZE = 48


def _cosmos_rootps(size: int = SIZE) -> tuple[np.ndarray, float]:
    """Unit-variance root power spectrum of GalSim's COSMOS F814W noise on a size x size
    grid at 0.03"/pixel, and that noise's own nearest-neighbour correlation."""
    noise = galsim.getCOSMOSNoise(variance=1.0)
    cf = noise.drawImage(galsim.ImageD(size, size, scale=0.03)).array
    centre = size // 2
    return np.sqrt(np.abs(np.fft.rfft2(cf))), float(cf[centre, centre + 1] / cf[centre, centre])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from galsim_vae.simulation.survey import simulate_survey

    root = tmp_path_factory.mktemp("noise")
    survey = simulate_survey(root / "survey", 12, seed=4, sample="23.5", file_hdus=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Dataset(prepare_cosmos(root / "data", survey, sample="23.5",
                                      stamp_size=SIZE, psf_size=15))


def test_white_and_correlated_fields_have_the_variance_and_correlation_asked():
    rng = np.random.default_rng(0)
    sigma = np.array([0.5, 2.0] * 200)
    white = noise_fields(None, sigma, (SIZE, SIZE), rng)
    assert white.shape == (400, SIZE, SIZE)
    assert np.std(white[0::2]) == pytest.approx(0.5, rel=0.02)
    assert np.std(white[1::2]) == pytest.approx(2.0, rel=0.02)
    assert abs(neighbour_correlation(white)) < 0.01
    rootps, expected = _cosmos_rootps()
    assert expected > 0.3                                   # drizzled HST noise
    coloured = noise_fields(np.broadcast_to(rootps, (400,) + rootps.shape), sigma,
                            (SIZE, SIZE), rng)
    assert np.std(coloured[1::2]) == pytest.approx(2.0, rel=0.03)
    assert neighbour_correlation(coloured) == pytest.approx(expected, abs=0.02)


def test_prepared_cosmos_data_set_records_its_noise_correlation(prepared):
    table = prepared.noise_rootps_table
    assert table is not None and table.shape[1:] == (SIZE, SIZE // 2 + 1)
    models = np.asarray(prepared.catalog["noise_model"])
    assert models.min() >= 0 and models.max() < len(table)
    rows = np.arange(prepared.n_galaxies)
    rootps = prepared.noise_rootps(rows)
    assert rootps.shape == (rows.size, SIZE, SIZE // 2 + 1)
    # the simulated survey's noise is GalSim's COSMOS correlation function
    fields = noise_fields(rootps, 1.0, (SIZE, SIZE), np.random.default_rng(1))
    assert neighbour_correlation(fields) == pytest.approx(_cosmos_rootps()[1], abs=0.03)
    # and it is the noise of the stamps themselves: their outer pixels (padding and sky)
    sigma = np.sqrt(np.asarray(prepared.catalog["noise_variance"]))
    corners = np.asarray(prepared.images)[:, :8, :8] / sigma[:, None, None]
    assert neighbour_correlation(corners) == pytest.approx(neighbour_correlation(fields),
                                                           abs=0.08)


def test_observed_like_the_data_gets_the_data_noise(prepared):
    rows = np.arange(prepared.n_galaxies)
    n = rows.size
    profiles = np.zeros((n, SIZE, SIZE))
    psfs = np.asarray(prepared.psfs, dtype=np.float64)
    sigma = np.full(n, 3.0)
    white = observe_like_data(profiles, psfs, sigma, np.random.default_rng(2))
    like_data = observe_like_data(profiles, psfs, sigma, np.random.default_rng(2),
                                  prepared.noise_rootps(rows))
    assert abs(neighbour_correlation(white)) < 0.03
    assert neighbour_correlation(like_data) > 0.3
    assert np.std(like_data) == pytest.approx(3.0, rel=0.05)


def test_noise_model_table_and_per_galaxy_rows():
    table = NoiseModelTable()
    made = []

    def make(value):
        made.append(value)
        return np.full((4, 3), value)

    assert table.index(None, lambda: make(9)) == -1
    assert table.index("a", lambda: make(1.0)) == 0
    assert table.index("b", lambda: make(2.0)) == 1
    assert table.index("a", lambda: make(5.0)) == 0
    assert made == [1.0, 2.0]                          # each model made once
    spectra = table.array()
    rows = per_galaxy_rootps(spectra, np.array([1, -1, 0]))
    np.testing.assert_array_equal(rows[:, 0, 0], [2.0, 1.0, 1.0])   # -1: flat (white)
    assert per_galaxy_rootps(spectra, np.array([-1, -1])) is None
    assert per_galaxy_rootps(None, np.array([0])) is None
    with pytest.raises(InputDataError, match="noise_model values must be -1 to 1"):
        per_galaxy_rootps(spectra, np.array([2]))
    with pytest.raises(InputDataError, match="expected"):
        noise_fields(spectra[:1], 1.0, (5, 5), np.random.default_rng(0))


def test_a_data_set_without_noise_models_means_white_noise(tiny_dataset):
    data = Dataset(tiny_dataset)
    assert data.noise_rootps_table is None
    assert data.noise_rootps(np.arange(3)) is None
