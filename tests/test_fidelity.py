"""The fidelity diagnostics on inputs whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from galsim_vae.evaluation import fidelity as fd


def test_signal_to_noise_and_quartiles():
    snr = fd.signal_to_noise(np.array([100.0, 100.0]), np.array([2.0, 0.1]), np.array([1.0, 2.0]))
    assert snr[0] == pytest.approx(100 / (math.sqrt(math.pi) * 4))
    assert snr[1] == pytest.approx(100 / (2 * math.sqrt(math.pi) * 1))   # radius floor 1
    bins, edges = fd.quartile_bins(np.array([1.0, 2, 3, 4, 5, 6, 7, 8, np.nan]))
    assert list(bins) == [0, 0, 1, 1, 2, 2, 3, 3, -1] and len(edges) == 3


def test_paired_slope_recovers_shrinkage():
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 0.6, 500)
    assert fd.paired_slope(data, 0.5 * data + 0.1) == pytest.approx(0.5)
    assert math.isnan(fd.paired_slope(data[:2], data[:2]))


def test_outer_flux_fraction_of_a_flat_stamp_and_a_point():
    flat = np.ones((1, 100, 100))
    y, x = np.indices((100, 100)) - 49.5
    want = np.mean(np.hypot(x, y) > 35)
    assert fd.outer_flux_fraction(flat)[0] == pytest.approx(want)
    point = np.zeros((1, 100, 100))
    point[0, 50, 50] = 1.0
    assert fd.outer_flux_fraction(point)[0] == 0.0


def test_stacked_outer_share_sees_a_halo_under_the_noise():
    """A faint galaxy with a halo of 10% of its flux spread beyond 0.2 stamp sides: no
    single noisy stamp shows it, the share of the summed stamps does (noise averages
    out), and a bin without the halo reads the galaxy's own share."""
    rng = np.random.default_rng(5)
    size = 64
    y, x = np.indices((size, size)) - (size - 1) / 2.0
    r = np.hypot(x, y)
    core = np.exp(-0.5 * (r / 3.0) ** 2)
    core /= core.sum()
    halo = np.where(r > 0.2 * size, 1.0, 0.0)
    halo *= 0.1 / halo.sum()
    clean = np.stack([core] * 400 + [core + halo] * 400)
    noisy = clean + rng.normal(0, 0.01, clean.shape)           # per-stamp S/N ~ 1.6
    bins = np.repeat([0, 1], 400)
    shares = fd.stacked_outer_share(noisy, bins, 3)
    assert shares[0] == pytest.approx(0.0, abs=0.02)
    assert shares[1] == pytest.approx(0.1 / 1.1, abs=0.02)
    assert math.isnan(shares[2])                                 # empty bin


def test_isotropy_detects_a_preferred_direction():
    rng = np.random.default_rng(1)
    g = rng.uniform(0, 0.5, 20000)
    angle = rng.uniform(-np.pi / 2, np.pi / 2, g.size)
    iso = fd.isotropy(g * np.cos(2 * angle), g * np.sin(2 * angle))
    assert abs(iso["mean_g1"]) < 4 * iso["sem_g1"] and iso["angle_ks_p"] > 1e-3
    tilted = angle[angle > -1.2]                       # a missing range of angles
    biased = fd.isotropy(0.3 * np.cos(2 * tilted), 0.3 * np.sin(2 * tilted))
    assert biased["angle_ks_p"] < 1e-6


def _isotropy_target_met(g1: np.ndarray, g2: np.ndarray) -> bool:
    """The report's isotropy targets (mean g and position angles) on one draw."""
    from galsim_vae.evaluation.report.targets import fidelity_targets

    metrics = {"fidelity": {"isotropy": {"generated": fd.isotropy(g1, g2)}}}
    return all(t["met"] for t in fidelity_targets(metrics))


def test_report_isotropy_target_passes_an_isotropic_population_and_fails_a_biased_one():
    """At the report's default sample size the isotropy target is a test with power: an
    exactly isotropic population of COSMOS-like |g| (mean ~0.23) passes on at least 95%
    of draws (at the issue's minimum, 10,000, the 0.003 bound is only 1.4 standard errors),
    and one with a preferred shear of 0.005 fails on nearly every draw."""
    from galsim_vae.evaluation.report.context import N_ISOTROPY

    assert N_ISOTROPY >= 10_000                     # the "over 10,000 galaxies"
    rng = np.random.default_rng(11)
    passed_isotropic = passed_biased = 0
    draws = 100
    for _ in range(draws):
        g = np.clip(rng.rayleigh(0.185, N_ISOTROPY), 0, 0.95)
        angle = rng.uniform(-np.pi / 2, np.pi / 2, N_ISOTROPY)
        g1, g2 = g * np.cos(2 * angle), g * np.sin(2 * angle)
        passed_isotropic += _isotropy_target_met(g1, g2)
        passed_biased += _isotropy_target_met(g1 + 0.005, g2)
    assert passed_isotropic >= 0.95 * draws
    assert passed_biased <= 0.1 * draws


def test_memorization_flags_copies():
    rng = np.random.default_rng(2)
    training = rng.normal(size=(2000, 8))
    heldout = rng.normal(size=(2000, 8))
    copies = training[rng.choice(2000, 300)] + 1e-3 * rng.normal(size=(300, 8))
    fresh = rng.normal(size=(300, 8))
    copied = fd.memorization_test(training, copies, heldout)
    # the smallest p-value a permutation test of 999 relabellings can give
    assert copied["p_value_generated_closer"] == pytest.approx(1 / 1000)
    assert copied["median_ratio"] < 0.1
    assert copied["p_value_closer_than_heldout"] < 1e-6 and copied["heldout_ratio"] < 0.1
    new = fd.memorization_test(training, fresh, heldout)
    assert new["p_value_generated_closer"] > 1e-3 and 0.8 < new["median_ratio"] < 1.25
    assert new["p_value_closer_than_heldout"] > 1e-3 and 0.8 < new["heldout_ratio"] < 1.25


def test_paired_memorization_test_keeps_its_level_on_exchangeable_galaxies():
    """Training, held-out and generated galaxies drawn from one distribution: the paired
    test rejects at p < 0.05 about 5% of the time however many galaxies are generated.
    (A signed-rank test of fixed reference sets rejected ~17% at 10 generated per
    reference galaxy: it ignored which galaxies happened to fall in either set.)"""
    rng = np.random.default_rng(11)
    p_values = []
    for trial in range(120):
        points = rng.normal(size=(3000 + 400, 6))
        result = fd.memorization_test(points[:200], points[400:], points[200:400],
                                      rng=np.random.default_rng(trial), n_permutations=99)
        p_values.append(result["p_value_generated_closer"])
    p_values = np.asarray(p_values)
    assert np.mean(p_values < 0.05) <= 0.1
    assert 0.35 < np.mean(p_values < 0.5) < 0.65        # uniform under the null


def test_column_means_ratios():
    data = {"g": np.array([0.2, 0.4]), "sigma_arcsec": np.array([0.1, 0.3]),
            "flux": np.array([1.0, 3.0])}
    model = {"g": np.array([0.1, 0.2]), "sigma_arcsec": np.array([0.1, 0.3]),
             "flux": np.array([2.0, 6.0])}
    out = fd.column_means({"data": data, "recon_mean": model}, np.array([0, 1]), 2)
    assert out["all"]["recon_mean"]["ratio"]["mean_abs_g"] == pytest.approx(0.5)
    assert out["all"]["recon_mean"]["ratio"]["median_flux"] == pytest.approx(2.0)
    assert out["bins"][1]["data"]["mean_abs_g"] == pytest.approx(0.4)


def test_column_means_ks_sees_a_narrower_shape_distribution_with_the_same_mean():
    """A sample with the data's mean |g| but none of its round or very elongated galaxies
    (what the shipped models do) has a large KS |g|; a sample of the same distribution a
    small one; the per-bin KS uses only that bin's galaxies."""
    rng = np.random.default_rng(3)
    n = 4000
    g_data = rng.uniform(0.0, 0.6, n)
    size = rng.lognormal(-1.5, 0.3, n)
    data = {"g": g_data, "sigma_arcsec": size, "flux": np.ones(n)}
    narrow = {"g": 0.3 + 0.3 * (g_data - 0.3), "sigma_arcsec": size, "flux": np.ones(n)}
    same = {"g": rng.uniform(0.0, 0.6, n), "sigma_arcsec": size, "flux": np.ones(n)}
    bins = (np.arange(n) % 2).astype(int)
    out = fd.column_means({"data": data, "narrow": narrow, "same": same}, bins, 2)
    assert out["all"]["narrow"]["ratio"]["mean_abs_g"] == pytest.approx(1.0, abs=0.02)
    assert out["all"]["narrow"]["ks"]["g"] > 0.3
    assert out["all"]["same"]["ks"]["g"] < 0.05
    assert out["all"]["narrow"]["ks"]["sigma_arcsec"] == pytest.approx(0.0)
    # bin 1 holds every other galaxy: compare with scipy on those rows alone
    from scipy.stats import ks_2samp
    assert out["bins"][1]["narrow"]["ks"]["g"] == pytest.approx(
        ks_2samp(g_data[1::2], narrow["g"][1::2]).statistic)
    assert "ks" not in out["all"]["data"]
