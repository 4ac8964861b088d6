"""Observing model images as the data were selected: noise given the sample's cuts."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from galsim_vae.errors import InputDataError
from galsim_vae.evaluation.render import observe_like_data
from galsim_vae.evaluation.selection import (GALSIM_SN_LIMIT, SampleSelection,
                                             add_selected_noise, dataset_selection)
from galsim_vae.simulation.galaxy import measure_auto

ZERO_POINT = 25.94
SIZE = 32


def gaussian_stamps(fluxes: np.ndarray, sigma_pix: float = 2.0) -> np.ndarray:
    """Noiseless circular Gaussians of total ``fluxes`` centred on SIZE x SIZE stamps."""
    y, x = np.indices((SIZE, SIZE)) - (SIZE - 1) / 2.0
    unit = np.exp(-(x ** 2 + y ** 2) / (2 * sigma_pix ** 2))
    return fluxes[:, None, None] * (unit / unit.sum())[None]


def measured_mags(stamps: np.ndarray, sigma: float) -> np.ndarray:
    flux = np.array([measure_auto(s, sigma)["flux_auto"] for s in stamps])
    return ZERO_POINT - 2.5 * np.log10(np.clip(flux, 1e-12, None))


def test_selected_noise_reproduces_a_flux_limited_sample():
    """A perfect generator of the selected galaxies (their noiseless images) observed with
    noise given selection measures like the data; with one fresh draw it is fainter."""
    rng = np.random.default_rng(11)
    sigma, limit = 0.1, 24.0
    truth_mag = rng.uniform(23.3, 24.3, 3000)
    clean = gaussian_stamps(10 ** (-0.4 * (truth_mag - ZERO_POINT)))
    selection = SampleSelection(limit, ZERO_POINT)
    data = clean + sigma * rng.standard_normal(clean.shape)
    kept = selection.passes(data, sigma, 0.03)
    assert 0.2 < kept.mean() < 0.9                 # the limit cuts through the population
    data_mag = measured_mags(data[kept], sigma)
    assert np.all(data_mag < limit)

    selected, draws, first = add_selected_noise(clean[kept], sigma, rng, selection,
                                                pixel_scale=0.03, keep_first_draw=True)
    ok = draws > 0
    assert ok.mean() > 0.97 and np.any(draws > 1)
    sel_mag = measured_mags(selected[ok], sigma)
    fresh_mag = measured_mags(first, sigma)
    assert np.all(sel_mag < limit)
    # paired by galaxy: the same noiseless image under the data's and the new noise
    shift = sel_mag - data_mag[ok]
    assert abs(shift.mean()) < 3 * shift.std() / math.sqrt(shift.size)
    fresh_shift = fresh_mag - data_mag
    assert fresh_shift.mean() > 4 * fresh_shift.std() / math.sqrt(fresh_shift.size)
    assert np.mean(fresh_mag >= limit) > 0.05                   # and some fall out


def test_inactive_selection_is_one_fresh_draw_like_observe_like_data():
    profiles = gaussian_stamps(np.array([1.0, 2.0, 3.0]))
    inactive = SampleSelection(None, None, None)
    assert not inactive.active and inactive.describe() == "none"
    observed, draws, first = add_selected_noise(profiles, 0.1, np.random.default_rng(4),
                                                inactive, pixel_scale=0.03)
    expected = observe_like_data(profiles, np.ones((1, 1)), 0.1, np.random.default_rng(4))
    np.testing.assert_allclose(observed, expected)
    assert np.all(draws == 1) and first is None


def test_a_galaxy_that_never_passes_is_marked_not_selected():
    clean = gaussian_stamps(np.array([1e-4, 50.0]))     # one far too faint, one bright
    observed, draws, _ = add_selected_noise(clean, 0.01, np.random.default_rng(1),
                                            SampleSelection(24.0, ZERO_POINT),
                                            pixel_scale=0.03, max_draws=5)
    assert draws[0] == 0 and draws[1] == 1
    assert observed.shape == clean.shape and np.isfinite(observed).all()
    with pytest.raises(InputDataError, match="max_draws"):
        add_selected_noise(clean, 0.01, np.random.default_rng(1),
                           SampleSelection(24.0, ZERO_POINT), pixel_scale=0.03, max_draws=0)


def test_sn_cut_drops_low_signal_to_noise_stamps():
    clean = gaussian_stamps(np.array([0.05, 20.0]))
    noisy = clean + 0.01 * np.random.default_rng(2).standard_normal(clean.shape)
    passed = SampleSelection(None, None, GALSIM_SN_LIMIT).passes(noisy, 0.01, 0.03)
    assert passed.tolist() == [False, True]


def test_dataset_selection_reads_the_sample_and_exclusion_level():
    def dataset(kind, sample, level, units="counts/s (HST ACS F814W, AB zero point 25.94)"):
        return SimpleNamespace(flux_units=units, meta={"source": {
            "kind": kind, "sample": sample, "cuts": {"exclusion_level": level}}})

    sel = dataset_selection(dataset("cosmos", "25.2", "marginal"))
    assert (sel.mag_limit, sel.zero_point, sel.sn_limit) == (25.2, 25.94, GALSIM_SN_LIMIT)
    assert "MAG_AUTO < 25.2" in sel.describe() and "sn_ellip_gauss >= 10" in sel.describe()
    sel = dataset_selection(dataset("cosmos", "23.5", "none"))
    assert (sel.mag_limit, sel.sn_limit) == (23.5, None)
    assert not dataset_selection(dataset("deepfield", None, None)).active
    # no zero point in the flux units: no magnitude cut can be measured
    assert dataset_selection(dataset("cosmos", "25.2", "none", units="ADU")).mag_limit is None
    with pytest.raises(InputDataError, match="zero point"):
        SampleSelection(25.2, None)


def test_exclude_rows_flags_and_blanks_the_statistics():
    from galsim_vae.evaluation.morphology import (FLAG_NOT_SELECTED, exclude_rows,
                                                  measure_morphology)

    table = measure_morphology(gaussian_stamps(np.array([1.0, 2.0, 3.0])), pixel_scale=0.03,
                               noise_sigma=0.0, nonparametric=False)
    exclude_rows(table, np.array([False, True, False]))
    assert np.isnan(table["sigma_arcsec"][1]) and np.isnan(table["g"][1])
    assert table["flag"][1] & FLAG_NOT_SELECTED and not table["flag"][0] & FLAG_NOT_SELECTED
    assert np.isfinite(table["sigma_arcsec"][0]) and np.isfinite(table["flux"][2])
