"""Morphology statistics, distribution comparison and rendering (galsim_vae.evaluation),
checked against independent computations on profiles of known shape."""

from __future__ import annotations

import math

import galsim
import numpy as np
import pytest
from astropy.table import Table
from scipy.stats import norm

from galsim_vae.errors import InputDataError, OutputExistsError
from galsim_vae.evaluation import (FLAG_HLR, FLAG_HSM, FLAG_NO_SEGMENT, FLAG_STATMORPH,
                                   binned_medians, compare_distributions, gini_coefficient,
                                   half_light_radius, measure_morphology,
                                   observe_like_data, plot_distributions)
from galsim_vae.evaluation.render import convolve_psf

SCALE = 0.03  # arcsec / pixel


def _draw(profile: galsim.GSObject, size: int, **kwargs) -> np.ndarray:
    return profile.drawImage(nx=size, ny=size, scale=SCALE, **kwargs).array.astype(np.float64)


def _with_noise(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return image + np.random.default_rng(seed).normal(0.0, sigma, image.shape)


# ---------------------------------------------------------------- HSM / flux / radius


def test_hsm_size_of_gaussian_and_half_light_radius():
    sigma_arcsec = 0.12  # 4 pixels
    image = _draw(galsim.Gaussian(sigma=sigma_arcsec, flux=2.0), 64)
    table = measure_morphology(image[None], pixel_scale=SCALE, noise_sigma=0.0,
                               nonparametric=False)
    assert len(table) == 1 and table["flag"][0] == 0
    assert table["sigma_pix"][0] == pytest.approx(sigma_arcsec / SCALE, rel=0.01)
    assert table["sigma_arcsec"][0] == pytest.approx(sigma_arcsec, rel=0.01)
    # Half-light radius of a Gaussian: sqrt(2 ln 2) sigma.
    expected_hlr = math.sqrt(2 * math.log(2)) * sigma_arcsec
    assert table["hlr_arcsec"][0] == pytest.approx(expected_hlr, rel=0.01)
    assert table["rho4"][0] == pytest.approx(2.0, abs=0.02)  # Gaussian: rho4 = 2
    assert "gini" not in table.colnames


def test_half_light_radius_of_exponential_matches_galsim():
    profile = galsim.Exponential(half_light_radius=0.3, flux=1.0)  # 10 pixels
    image = _draw(profile, 128, method="no_pixel")
    radius = half_light_radius(image, ((128 - 1) / 2, (128 - 1) / 2))
    assert radius * SCALE == pytest.approx(profile.half_light_radius, rel=0.01)
    assert math.isnan(half_light_radius(-image, (63.5, 63.5)))


def test_ellipticity_of_sheared_gaussian():
    g1, g2 = 0.3, -0.2
    image = _draw(galsim.Gaussian(sigma=0.12).shear(g1=g1, g2=g2), 64, method="no_pixel")
    row = measure_morphology(image[None], pixel_scale=SCALE, noise_sigma=0.0,
                             nonparametric=False)[0]
    assert row["g"] == pytest.approx(math.hypot(g1, g2), abs=1e-3)
    assert row["g1"] == pytest.approx(g1, abs=1e-3)
    assert row["g2"] == pytest.approx(g2, abs=1e-3)


def test_flux_is_the_drawn_flux_and_noise_sigma_per_stamp():
    fluxes = np.array([3.7, 0.25])
    images = np.stack([_draw(galsim.Exponential(half_light_radius=0.15, flux=f), 64)
                       for f in fluxes])
    table = measure_morphology(images, pixel_scale=SCALE, noise_sigma=[0.0, 0.0],
                               nonparametric=False)
    np.testing.assert_allclose(table["flux"], fluxes, rtol=2e-3)
    assert table.meta["flux_definition"] == "sum of all stamp pixels"
    assert table.meta["seconds_per_stamp"] > 0


def test_all_zero_image_is_flagged_not_raised():
    images = np.zeros((2, 32, 32))
    images[1] = _draw(galsim.Gaussian(sigma=0.06, flux=1.0), 32)
    table = measure_morphology(images, pixel_scale=SCALE, noise_sigma=1e-3)
    zero = table[0]
    assert zero["flag"] & FLAG_HSM and zero["flag"] & FLAG_NO_SEGMENT and zero["flag"] & FLAG_HLR
    assert zero["hsm_status"] != 0 and zero["statmorph_flag"] == -1
    for column in ("sigma_pix", "g", "rho4", "hlr_pix", "gini", "m20", "concentration",
                   "asymmetry"):
        assert np.isnan(zero[column]), column
    assert table[1]["flag"] & (FLAG_HSM | FLAG_NO_SEGMENT) == 0
    assert table.meta["n_hsm_failed"] == 1
    assert table.meta["n_nonparametric_failed"] == 1


def test_bad_inputs_raise():
    good = np.ones((1, 32, 32))
    with pytest.raises(InputDataError, match="NaN"):
        bad = good.copy()
        bad[0, 3, 3] = np.nan
        measure_morphology(bad, pixel_scale=SCALE, noise_sigma=1.0)
    with pytest.raises(InputDataError, match="noise_sigma must be > 0"):
        measure_morphology(good, pixel_scale=SCALE, noise_sigma=0.0)
    with pytest.raises(InputDataError, match=r"\(N, S, S\)"):
        measure_morphology(np.ones((32, 32)), pixel_scale=SCALE, noise_sigma=1.0)
    with pytest.raises(InputDataError, match="pixel_scale"):
        measure_morphology(good, pixel_scale=-1.0, noise_sigma=1.0)


# ---------------------------------------------------------------- non-parametric


def test_gini_limits():
    assert gini_coefficient(np.full((16, 16), 3.0)) == pytest.approx(0.0, abs=1e-12)
    single = np.zeros((16, 16))
    single[5, 9] = 10.0
    assert gini_coefficient(single) == pytest.approx(1.0, abs=1e-12)
    # Two equal values out of four: Lotz et al. (2004) eq. 6 gives 2/3.
    assert gini_coefficient([0.0, 0.0, 1.0, 1.0]) == pytest.approx(2.0 / 3.0)
    assert math.isnan(gini_coefficient(np.zeros(5)))


def test_gini_through_statmorph_path():
    """measure_morphology's Gini (statmorph) on a uniform disk is near 0; statmorph uses
    the estimator of gini_coefficient on its Gini segment; a lone bright pixel (no
    Petrosian radius) is flagged, not raised."""
    import statmorph

    size, sigma = 64, 1e-4
    yy, xx = np.mgrid[:size, :size]
    disk = (np.hypot(xx - 31.5, yy - 31.5) < 10).astype(float) * 0.01
    point = np.zeros((size, size))
    point[32, 32] = 1.0
    images = np.stack([_with_noise(disk, sigma, 4), _with_noise(point, sigma, 5)])
    table = measure_morphology(images, pixel_scale=SCALE, noise_sigma=sigma)
    assert table["statmorph_flag"][0] == 0 and table["gini"][0] < 0.1
    assert table["flag"][1] & FLAG_STATMORPH and np.isnan(table["gini"][1])

    # statmorph's Gini equals gini_coefficient over statmorph's own (private) Gini segment.
    image = _with_noise(_draw(galsim.Exponential(half_light_radius=0.2, flux=1.0), 64), sigma, 6)
    segmap = (np.hypot(xx - 31.5, yy - 31.5) < 25).astype(np.int32)
    morph = statmorph.SourceMorphology(image, segmap, 1, weightmap=np.full(image.shape, sigma))
    pixels = morph._cutout_stamp_maskzeroed[morph._segmap_gini]
    assert morph.gini == pytest.approx(gini_coefficient(pixels), rel=1e-12)


@pytest.fixture(scope="module")
def exp_dev_table():
    """statmorph on a round exponential and a de Vaucouleurs profile of equal half-light
    radius (8 pixels), at very high signal-to-noise (not noise-free: with almost no noise
    the segment fills the stamp, statmorph finds no sky box and flags the stamp bad)."""
    sigma = 1e-5
    images = [_with_noise(_draw(galsim.Exponential(half_light_radius=0.24, flux=1.0), 128),
                          sigma, 1),
              _with_noise(_draw(galsim.DeVaucouleurs(half_light_radius=0.24, flux=1.0), 128),
                          sigma, 2)]
    return measure_morphology(np.stack(images), pixel_scale=SCALE, noise_sigma=sigma)


def test_concentration_m20_gini_order_exponential_vs_de_vaucouleurs(exp_dev_table):
    exp, dev = exp_dev_table
    assert exp["statmorph_flag"] <= 1 and dev["statmorph_flag"] <= 1
    # Conselice (2003, 2014): C ~ 2.7 for an exponential, ~5.2 for an infinite r^1/4 law.
    # statmorph's total aperture (1.5 Petrosian radii) truncates the de Vaucouleurs wings
    # and the pixels blur its r20 (~1 pixel), so C(dev) comes out near 4.2-4.5 here.
    assert exp["concentration"] == pytest.approx(2.7, abs=0.25)
    assert 3.8 < dev["concentration"] < 5.6
    assert dev["concentration"] > exp["concentration"] + 1.0
    # Brighter core: M20 more negative, Gini higher (Lotz et al. 2004).
    assert dev["m20"] < exp["m20"] - 0.3
    assert dev["gini"] > exp["gini"]
    # Symmetric, centred profiles.
    assert abs(exp["asymmetry"]) < 0.02 and abs(dev["asymmetry"]) < 0.02
    # statmorph's own Sersic fits recover the indices.
    assert exp["sersic_n"] == pytest.approx(1.0, abs=0.15)
    assert dev["sersic_n"] > 3.0


def test_asymmetry_of_two_blobs_is_large():
    sigma = 1e-5
    blobs = (galsim.Gaussian(sigma=0.09, flux=1.0)
             + galsim.Gaussian(sigma=0.09, flux=0.5).shift(0.3, 0.0))  # 10 pixels apart
    image = _with_noise(_draw(blobs.shift(-0.1, 0.0), 96), sigma, 3)
    row = measure_morphology(image[None], pixel_scale=SCALE, noise_sigma=sigma)[0]
    assert row["statmorph_flag"] <= 1
    assert row["asymmetry"] > 0.2


# ---------------------------------------------------------------- comparison


def _normal_table(shift: float, n: int = 4000) -> Table:
    quantiles = (np.arange(n) + 0.5) / n
    return Table({"x": norm.ppf(quantiles) + shift, "flag": np.zeros(n, dtype=int)})


def test_compare_identical_tables():
    table = _normal_table(1.0)
    result = compare_distributions(table, table, columns=("x",))
    row = result[0]
    assert row["statistic"] == "x" and row["n_generated"] == row["n_reference"] == 4000
    assert row["ks_statistic"] == 0.0 and row["ks_pvalue"] == pytest.approx(1.0)
    assert row["mean_ratio"] == pytest.approx(1.0)
    assert row["median_generated"] == pytest.approx(row["median_reference"])


def test_compare_shifted_normals_gives_known_ks_and_drops_nan_and_flagged():
    shift = 0.5
    generated, reference = _normal_table(shift), _normal_table(0.0)
    # KS distance between N(0,1) and N(d,1): 2 Phi(d/2) - 1.
    expected = 2 * norm.cdf(shift / 2) - 1
    row = compare_distributions(generated, reference, columns=("x",))[0]
    assert row["ks_statistic"] == pytest.approx(expected, abs=1e-3)
    assert row["ks_pvalue"] < 1e-20
    assert row["mean_generated"] == pytest.approx(shift, abs=1e-3)
    assert row["mean_reference"] == pytest.approx(0.0, abs=1e-3)

    generated["x"][:10] = np.nan
    generated["flag"][10:30] = 4
    row = compare_distributions(generated, reference, columns=("x",))[0]
    assert row["n_generated"] == 3990
    row = compare_distributions(generated, reference, columns=("x",), flag_column="flag")[0]
    assert row["n_generated"] == 3970
    with pytest.raises(InputDataError, match="no column 'y'"):
        compare_distributions(generated, reference, columns=("y",))


def test_mean_ratio_standard_error_matches_the_scatter_of_repeated_evaluations():
    """The s.e. the report prints beside the ratio of means is the spread of that ratio
    over repeated independent samples (|g|-like values: positive, skewed)."""
    rng = np.random.default_rng(8)
    ratios, sems = [], []
    for _ in range(300):
        generated = Table({"x": rng.gamma(2.0, 0.11, 3000)})
        reference = Table({"x": rng.gamma(2.0, 0.11, 2000)})
        row = compare_distributions(generated, reference, columns=("x",))[0]
        ratios.append(row["mean_ratio"])
        sems.append(row["mean_ratio_sem"])
    assert np.median(sems) == pytest.approx(np.std(ratios), rel=0.15)
    assert np.median(sems) == pytest.approx(np.sqrt(0.5 / 3000 + 0.5 / 2000), rel=0.05)


def test_binned_medians_equal_count_bins_and_ratios():
    rng = np.random.default_rng(5)
    z_ref, z_gen = rng.uniform(0, 2, 1000), rng.uniform(0, 2, 700)
    reference = Table({"redshift": z_ref, "hlr_arcsec": 0.5 / (1 + z_ref), "flux": 1 + z_ref})
    generated = Table({"redshift": z_gen, "hlr_arcsec": 0.6 / (1 + z_gen), "flux": 1 + z_gen})
    result = binned_medians(generated, reference, by="redshift", bins=4)
    assert len(result) == 4
    assert list(result["n_reference"]) == [250, 250, 250, 250]
    in_range = (z_gen >= z_ref.min()) & (z_gen <= z_ref.max())  # outside: in no bin
    assert result["n_generated"].sum() == in_range.sum() < 700
    assert result["bin_low"][0] == z_ref.min() and result["bin_high"][-1] == z_ref.max()
    np.testing.assert_allclose(result["ratio_hlr_arcsec"], 1.2, rtol=0.05)
    np.testing.assert_allclose(result["ratio_flux"], 1.0, rtol=0.05)
    for b in range(4):
        inside = (z_ref >= result["bin_low"][b]) & (z_ref <= result["bin_high"][b])
        assert result["median_flux_reference"][b] == pytest.approx(np.median(1 + z_ref[inside]))
    with pytest.raises(InputDataError, match="bins"):
        binned_medians(generated, reference, bins=0)


def test_plot_distributions_writes_png_atomically(tmp_path):
    path = tmp_path / "dist.png"
    generated, reference = _normal_table(0.3, 500), _normal_table(0.0, 500)
    plot_distributions(generated, reference, ["x"], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dist.png"]
    with pytest.raises(OutputExistsError):
        plot_distributions(generated, reference, ["x"], path)
    plot_distributions(generated, reference, ["x"], path, overwrite=True)


# ---------------------------------------------------------------- rendering


@pytest.mark.parametrize("psf_size", [15, 16])
def test_delta_psf_zero_noise_is_identity(psf_size):
    rng = np.random.default_rng(0)
    profiles = rng.normal(size=(3, 24, 24))
    psfs = np.zeros((3, psf_size, psf_size))
    psfs[:, psf_size // 2, psf_size // 2] = 1.0
    out = observe_like_data(profiles, psfs, np.zeros(3), rng)
    np.testing.assert_allclose(out, profiles, atol=1e-12)
    # A delta one pixel right of the origin moves the image one pixel right.
    psfs = np.zeros((3, psf_size, psf_size))
    psfs[:, psf_size // 2, psf_size // 2 + 1] = 1.0
    out = observe_like_data(profiles, psfs, 0.0, rng)
    np.testing.assert_allclose(out[:, :, 1:], profiles[:, :, :-1], atol=1e-12)


def test_convolution_matches_galsim_and_conserves_flux():
    galaxy = galsim.Exponential(half_light_radius=0.15, flux=2.5).shear(g1=0.2, g2=0.1)
    psf = galsim.Gaussian(fwhm=0.12)
    size, psf_size = 64, 25
    # Pixel-integrated galaxy (its cusp is not well sampled) times a well-sampled PSF:
    # the discrete sum is the pixel-integrated continuous convolution.
    profile = _draw(galaxy, size)
    psf_image = _draw(psf, psf_size, method="no_pixel")
    psf_image /= psf_image.sum()
    out = observe_like_data(profile[None], psf_image[None], [0.0], 1)[0]
    expected = _draw(galsim.Convolve(galaxy, psf), size)
    assert np.max(np.abs(out - expected)) < 5e-4 * expected.max()
    assert out.sum() == pytest.approx(profile.sum(), rel=1e-3)
    # Moffat wings: flux conserved up to what leaves the stamp.
    moffat = _draw(galsim.Moffat(beta=3.0, fwhm=0.1), 41)
    out = observe_like_data(profile[None], moffat / moffat.sum(), 0.0, 1)[0]
    assert out.sum() == pytest.approx(profile.sum(), rel=2e-3)


def test_noise_level_and_rng_reproducibility():
    profiles = np.zeros((4, 64, 64))
    psf = np.zeros((5, 5))
    psf[2, 2] = 1.0
    sigma = np.array([0.1, 0.2, 0.3, 0.0])
    first = observe_like_data(profiles, psf, sigma, np.random.default_rng(7))
    second = observe_like_data(profiles, psf, sigma, np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first.std(axis=(1, 2)), sigma, rtol=0.03)
    from_galsim = observe_like_data(profiles, psf, sigma, galsim.BaseDeviate(3))
    np.testing.assert_array_equal(
        from_galsim, observe_like_data(profiles, psf, sigma, galsim.BaseDeviate(3)))
    np.testing.assert_allclose(from_galsim.std(axis=(1, 2)), sigma, rtol=0.03)


def test_render_bad_inputs():
    profiles = np.zeros((2, 16, 16))
    with pytest.raises(InputDataError, match="unit sum"):
        observe_like_data(profiles, np.ones((2, 5, 5)), 0.0, 1)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    with pytest.raises(InputDataError, match="noise_sigma"):
        observe_like_data(profiles, delta, -1.0, 1)
    with pytest.raises(InputDataError, match="noise_sigma"):
        observe_like_data(profiles, delta, [1.0, 1.0, 1.0], 1)
    with pytest.raises(InputDataError, match="rng"):
        observe_like_data(profiles, delta, 1.0, "seed")
    assert convolve_psf(profiles, delta).shape == (2, 16, 16)
