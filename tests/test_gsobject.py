"""VAEGalaxy: stamp round trip, flux, PSF convolution, shear, pickling, HST PSF path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import galsim

import galsim_vae
from galsim_vae import VAEGalaxy
from test_generator import tiny_bundle

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def model(tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles_gsobject")
    return galsim_vae.load_model(tiny_bundle("conditional", tiny_dataset, folder))


@pytest.fixture(scope="module")
def gal(model):
    return VAEGalaxy(model, redshift=0.6, rng=galsim.BaseDeviate(1234))


def test_drawn_at_model_scale_reproduces_stamp(model, gal):
    image = galsim.ImageD(model.stamp_size, model.stamp_size, scale=model.pixel_scale)
    gal.drawImage(image, method="no_pixel")
    np.testing.assert_allclose(image.array, gal.stamp, rtol=0, atol=1e-12 * gal.stamp.max())
    assert gal.flux == pytest.approx(gal.stamp.sum(), rel=1e-12)
    assert gal.stamp_flux == pytest.approx(gal.stamp.sum())
    # the same stamp the model generates for the same rng
    np.testing.assert_array_equal(gal.stamp, model.generate(redshift=0.6, rng=1234)[0])
    assert gal.redshift == pytest.approx(0.6)
    assert gal.pixel_scale == model.pixel_scale and gal.flux_units == "counts/s"


def test_flux_rescales(model, gal):
    bright = VAEGalaxy(model, redshift=0.6, rng=galsim.BaseDeviate(1234), flux=250.0)
    assert bright.flux == pytest.approx(250.0)
    image = bright.drawImage(nx=32, ny=32, scale=model.pixel_scale, method="no_pixel",
                             dtype=float)
    np.testing.assert_allclose(image.array, gal.stamp * 250.0 / gal.stamp.sum(),
                               rtol=1e-10, atol=1e-12 * 250)
    assert gal.withFlux(3.0).flux == pytest.approx(3.0)
    assert (gal * 2).flux == pytest.approx(2 * gal.flux)


def test_flux_conserved_through_psf_convolution(gal):
    psf = galsim.Moffat(beta=3.0, fwhm=0.1)
    image = galsim.Convolve(gal, psf).drawImage(nx=256, ny=256, scale=0.03)
    assert image.array.sum() == pytest.approx(gal.flux, rel=1e-3)
    # survey scale, survey PSF
    survey = galsim.Convolve(gal, galsim.Kolmogorov(fwhm=0.7)).drawImage(
        nx=256, ny=256, scale=0.2)  # Kolmogorov wings: 0.2% of the flux beyond 6"
    assert survey.array.sum() == pytest.approx(gal.flux, rel=1e-3)


def test_shear_changes_hsm_shape_by_the_applied_shear(gal):
    def shape(obj):
        image = obj.drawImage(nx=128, ny=128, scale=0.01, method="no_pixel")
        return galsim.hsm.FindAdaptiveMom(image).observed_shape

    psf = galsim.Gaussian(fwhm=0.06)
    applied = galsim.Shear(g1=0.08, g2=-0.05)
    intrinsic = shape(galsim.Convolve(gal, psf))
    sheared = shape(galsim.Convolve(gal.shear(applied), psf))
    expected = applied + intrinsic
    # adaptive moments are weighted; the PSF is small: agreement to about 0.01
    assert sheared.g1 == pytest.approx(expected.g1, abs=0.01)
    assert sheared.g2 == pytest.approx(expected.g2, abs=0.01)
    assert abs(sheared.g1 - intrinsic.g1) > 0.04


def test_behaves_like_a_gsobject(gal):
    psf = galsim.Moffat(beta=3.5, fwhm=0.7)
    for obj in (gal.shear(g1=0.1, g2=0.0), gal.rotate(30 * galsim.degrees), gal.dilate(1.5),
                gal.shift(0.1, -0.05), gal.lens(0.02, 0.01, 1.05),
                gal.withGSParams(folding_threshold=1e-3)):
        image = galsim.Convolve(obj, psf).drawImage(nx=64, ny=64, scale=0.2)
        assert np.isfinite(image.array).all()
        assert image.array.sum() == pytest.approx(obj.flux, rel=2e-3)
    assert gal.withGSParams(folding_threshold=1e-3).gsparams.folding_threshold == 1e-3
    assert gal.withGSParams(gal.gsparams) is gal
    assert gal.dilate(1.5).flux == pytest.approx(gal.flux)
    photons = gal.drawImage(nx=32, ny=32, scale=0.03, method="phot", n_photons=20000,
                            rng=galsim.BaseDeviate(3))
    assert photons.array.sum() == pytest.approx(gal.flux, rel=0.05)


def test_pickle_eq_hash_repr(model, gal):
    """As for GalSim's own profiles: pickle, copy, hash, and eval(repr(gal)) == gal (the
    galaxy is decoded again from the model, its checksum, latent and conditions)."""
    galsim.utilities.check_pickle(gal)
    galsim.utilities.check_pickle(gal.shear(g1=0.1, g2=0.2))
    galsim.utilities.check_pickle(gal.withFlux(3.5).withGSParams(folding_threshold=1e-3))
    assert eval(repr(gal)) == gal
    data = pickle.dumps(gal)
    assert b"tensorflow" not in data and b"keras" not in data
    same = VAEGalaxy(model, redshift=0.6, rng=galsim.BaseDeviate(1234))
    other = VAEGalaxy(model, redshift=0.6, rng=galsim.BaseDeviate(1235))
    assert same == gal and hash(same) == hash(gal)
    assert other != gal
    assert gal.withFlux(2.0) != gal
    text = repr(gal)
    assert f"load_model({str(model.path.resolve())!r}, checksum='sha256:" in text
    assert "zphot=0.6" in text and f"latent=[{', '.join(map(repr, gal.latent.tolist()))}]" in text
    assert [float(v) for v in gal.latent_text.split(",")] == gal.latent.tolist()
    bare = VAEGalaxy.from_stamp(gal.stamp, model.info)      # no latent: descriptive only
    assert repr(bare).startswith("galsim_vae.VAEGalaxy.from_stamp(<32x32 stamp sha ")
    assert "tiny_cvae2" in str(gal) and "redshift=0.6" in str(gal)


def test_from_stamp_round_trip(model, gal):
    rebuilt = VAEGalaxy.from_stamp(gal.stamp, model.info, conditions={"zphot": 0.6})
    assert rebuilt == gal
    with pytest.raises(ValueError, match="square 2-d"):
        VAEGalaxy.from_stamp(np.zeros((3, 4)), model.info)


def test_hst_psf_is_deconvolved_when_samples_carry_it(tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles_hst")
    model = galsim_vae.load_model(tiny_bundle("hst_psf", tiny_dataset, folder))
    assert model.psf_free is False
    gal = VAEGalaxy(model, redshift=0.6, rng=galsim.BaseDeviate(9))
    assert gal.original_psf is not None
    assert not gal.is_analytic_x  # a deconvolution is known in Fourier space only
    assert isinstance(gal._profile, galsim.Convolution)
    # the profile is original_gal / HST PSF in Fourier space (as RealGalaxy)
    for kx, ky in [(0.0, 0.0), (5.0, 0.0), (3.0, -7.0), (20.0, 11.0)]:
        k = galsim.PositionD(kx, ky)
        expected = gal.original_gal.kValue(k) / gal.original_psf.kValue(k)
        assert gal.kValue(k) == pytest.approx(expected, rel=1e-10, abs=1e-14)
    np.testing.assert_allclose(
        gal.original_gal.drawImage(nx=32, ny=32, scale=0.03, method="no_pixel",
                                   dtype=float).array, gal.stamp, atol=1e-12)
    assert gal.flux == pytest.approx(gal.stamp.sum(), rel=1e-6)
    galsim.utilities.check_pickle(gal)


def test_kept_galaxies_do_not_keep_their_drawn_profiles(model):
    """A catalogue of drawn and kept galaxies holds their stamps, not the k-space tables
    of their profiles (only the most recent ones stay cached); a galaxy drawn again after
    its profile was dropped gives the same image."""
    from galsim_vae.stamp_profile import CACHE_SIZE, PROFILES

    psf = galsim.Kolmogorov(fwhm=0.7)
    gals = model.sample(CACHE_SIZE + 8, redshift=0.6, rng=galsim.BaseDeviate(4))
    first = galsim.Convolve(gals[0], psf).drawImage(nx=24, ny=24, scale=0.2).array
    for gal in gals[1:]:
        galsim.Convolve(gal, psf).drawImage(nx=24, ny=24, scale=0.2)
    assert len(PROFILES) <= CACHE_SIZE
    big = [k for k, v in gals[0].__dict__.items() if isinstance(v, galsim.GSObject)]
    assert big == []
    again = galsim.Convolve(gals[0], psf).drawImage(nx=24, ny=24, scale=0.2).array
    np.testing.assert_array_equal(again, first)


def test_content_maxk_matches_galsims_own(model):
    """The maxk read off one FFT of the stamp is GalSim's (calculate_maxk=True) within
    a k-step, for a smooth galaxy and for a generated one."""
    from galsim_vae.stamp_profile import content_maxk

    scale, n = 0.03, 64
    smooth = galsim.Sersic(n=1.5, half_light_radius=0.12).drawImage(nx=n, ny=n, scale=scale,
                                                                     method="no_pixel").array
    generated = model.generate(1, redshift=0.6, rng=2)[0]
    for stamp in (smooth, generated):
        galsims = galsim.InterpolatedImage(galsim.Image(stamp, scale=scale), pad_factor=4).maxk
        ours = content_maxk(stamp, scale, galsim.GSParams().maxk_threshold)
        step = 2 * np.pi / (stamp.shape[0] * scale)
        assert abs(ours - min(galsims, np.pi / scale)) <= 2 * step, (ours, galsims)


@pytest.mark.parametrize("x_interpolant", ["quintic", "lanczos3"])
def test_photon_shooting_agrees_with_fft_within_shot_noise(model, x_interpolant):
    """A generated stamp with many negative pixels (as the linear-output models make:
    eta ~ 0.3 of the absolute pixel sum), PSF-convolved: the mean of photon-shot images
    matches the FFT image pixel by pixel within the shot noise, and the shot flux is the
    flux (GalSim 2.8.5's InterpolatedImage alone shoots 1 - 2 eta of it)."""
    rng = np.random.default_rng(4)
    s = model.stamp_size
    y, x = np.mgrid[:s, :s] - (s - 1) / 2
    galaxy = np.exp(-0.5 * ((x / 3.0) ** 2 + (y / 1.8) ** 2))
    stamp = galaxy / galaxy.sum() + rng.normal(0, 4e-3, (s, s))      # junk around it
    eta = -stamp[stamp < 0].sum() / np.abs(stamp).sum()
    assert 0.2 < eta < 0.45
    gal = VAEGalaxy.from_stamp(stamp, model.info, flux=2000.0, x_interpolant=x_interpolant,
                               conditions={c.name: c.mean for c in model.conditions})
    obj = galsim.Convolve(gal, galsim.Gaussian(fwhm=0.15))
    kwargs = dict(nx=24, ny=24, scale=0.03)
    fft = obj.drawImage(**kwargs).array.astype(float)
    shots = np.array([obj.drawImage(method="phot", rng=galsim.BaseDeviate(100 + r),
                                    **kwargs).array for r in range(40)], dtype=float)
    mean, error = shots.mean(axis=0), shots.std(axis=0, ddof=1) / np.sqrt(len(shots))
    assert shots.sum(axis=(1, 2)).mean() == pytest.approx(fft.sum(), rel=0.02)
    bright = fft > 0.1 * fft.max()
    chi2 = np.mean(((mean - fft)[bright] / error[bright]) ** 2)
    assert chi2 < 1.6, chi2
    assert np.all(np.abs(mean - fft)[bright] < 5 * error[bright])
