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


def test_colour_noise_bijector_is_the_circulant_map_and_its_determinant():
    """ColourNoise is a circular convolution: forward/inverse invert each other and its
    log-determinant is that of the dense matrix of the map (a 6x6 grid)."""
    import tensorflow as tf

    from galsim_vae.models.likelihood import ColourNoise

    rng = np.random.default_rng(5)
    size = 6
    cf = np.zeros((size, size))
    cf[0, 0], cf[0, 1], cf[0, -1], cf[1, 0], cf[-1, 0] = 1.0, 0.3, 0.3, 0.2, 0.2
    rootps = np.sqrt(np.abs(np.fft.rfft2(cf)))[None].astype(np.float32)
    colour = ColourNoise(tf.constant(rootps))
    x = tf.constant(rng.normal(size=(1, size, size, 1)).astype(np.float32))
    np.testing.assert_allclose(colour.inverse(colour.forward(x)).numpy(), x.numpy(), atol=1e-5)
    matrix = np.stack([colour.forward(tf.constant(np.eye(size * size, dtype=np.float32)[k]
                                                  .reshape(1, size, size, 1))).numpy().ravel()
                       for k in range(size * size)], axis=1)
    _, logdet = np.linalg.slogdet(matrix.astype(np.float64))
    assert float(colour.forward_log_det_jacobian(x, event_ndims=3)[0]) == pytest.approx(
        logdet, abs=1e-3)


def test_correlated_likelihood_whitens_the_data_noise():
    """With a flat spectrum the likelihood is the white one; with the COSMOS spectrum,
    correlated noise of that spectrum is whitened (its mean log-likelihood is the white
    one of unit-variance residuals plus the constant log-determinant), and the true mean
    is preferred over a wrong one."""
    import tensorflow as tf

    from galsim_vae.models.likelihood import ColourNoise, pixel_likelihood

    rng = np.random.default_rng(6)
    n, sigma = 64, 0.5
    mean = tf.constant(rng.normal(size=(n, SIZE, SIZE, 1)).astype(np.float32))
    noise_std = tf.fill([n], sigma)
    x = mean + tf.constant(rng.normal(scale=sigma, size=(n, SIZE, SIZE, 1)).astype(np.float32))
    flat = tf.ones([n, SIZE, SIZE // 2 + 1])
    np.testing.assert_allclose(pixel_likelihood(mean, noise_std, noise_rootps=flat).log_prob(x),
                               pixel_likelihood(mean, noise_std).log_prob(x), rtol=1e-5)
    rootps, _ = _cosmos_rootps()
    spectra = np.broadcast_to(rootps, (n,) + rootps.shape).astype(np.float32)
    noise = noise_fields(spectra, sigma, (SIZE, SIZE), rng)[..., None].astype(np.float32)
    correlated = pixel_likelihood(mean, noise_std, noise_rootps=spectra)
    logp = correlated.log_prob(mean + noise).numpy()
    white_expectation = -SIZE * SIZE * (0.5 * np.log(2 * np.pi * sigma**2) + 0.5)
    logdet = ColourNoise(spectra).forward_log_det_jacobian(mean, event_ndims=3).numpy()
    np.testing.assert_allclose(np.mean(logp + logdet), white_expectation, rtol=2e-3)
    wrong = pixel_likelihood(mean + 0.3 * sigma * tf.constant(
        rng.normal(size=(n, SIZE, SIZE, 1)).astype(np.float32)), noise_std,
        noise_rootps=spectra).log_prob(mean + noise).numpy()
    assert np.mean(logp) > np.mean(wrong) + 100
    # the white likelihood would judge the same noise as much less likely per pixel
    assert np.mean(pixel_likelihood(mean, noise_std).log_prob(mean + noise)) < np.mean(logp)


def _xy_correlations(fields):
    fields = fields - fields.mean(axis=(-2, -1), keepdims=True)
    power = np.mean(fields * fields)
    return (float(np.mean(fields[..., 1:] * fields[..., :-1]) / power),
            float(np.mean(fields[..., 1:, :] * fields[..., :-1, :]) / power))


@pytest.fixture(scope="module")
def anisotropic(tmp_path_factory):
    """Three blank galaxies, two with an anisotropic noise model (neighbour correlation
    0.4 along x, 0.1 along y), one with white noise."""
    from galsim_vae.data.writer import DatasetWriter

    path = tmp_path_factory.mktemp("aniso") / "aniso"
    cf = np.zeros((SIZE, SIZE))
    cf[0, 0], cf[0, 1], cf[0, -1], cf[1, 0], cf[-1, 0] = 1.0, 0.4, 0.4, 0.1, 0.1
    rootps = np.sqrt(np.abs(np.fft.rfft2(cf)))
    with DatasetWriter(path, max_galaxies=3, stamp_size=SIZE, pixel_scale=0.03,
                       flux_units="counts/s", extra_columns={"noise_model": "i4"}) as writer:
        for k in range(3):
            stamp = np.zeros((SIZE, SIZE))
            stamp[SIZE // 2, SIZE // 2] = 1.0
            writer.add(stamp, ident=k, noise_variance=1.0,
                       noise_model=k % 2 - 1 if k else 0)   # rows 0, 0, -1 (white)
        writer.set_noise_models(rootps[None])
    return Dataset(path)


def test_pipeline_turns_the_noise_spectrum_with_the_stamp(anisotropic, prepared):
    """With augmentation each galaxy's noise spectrum is turned with its stamp: noise
    drawn from the turned spectrum has the correlations of turned noise."""
    from galsim_vae.data.pipeline import _oriented_spectra, apply_dihedral, make_tf_dataset

    spectra, models = _oriented_spectra(anisotropic)
    assert spectra.shape == (2, 8, SIZE, SIZE // 2 + 1) and list(models) == [0, 0, 1]
    np.testing.assert_allclose(spectra[-1], 1.0, atol=1e-5)          # white: flat
    rng = np.random.default_rng(8)
    upright = noise_fields(np.repeat(spectra[0, :1], 300, axis=0), 1.0, (SIZE, SIZE), rng)
    assert _xy_correlations(upright) == pytest.approx((0.4, 0.1), abs=0.02)
    for code in (1, 4, 6):
        drawn = noise_fields(np.repeat(spectra[0, code:code + 1], 300, axis=0), 1.0,
                             (SIZE, SIZE), rng)
        turned = apply_dihedral(upright, np.full(300, code))
        assert _xy_correlations(drawn) == pytest.approx(_xy_correlations(turned), abs=0.02)
    batch = next(iter(make_tf_dataset(prepared, None, batch_size=4, shuffle=False,
                                      noise_correlation=True, augment=True)))
    assert batch["noise_rootps"].shape == (4, SIZE, SIZE // 2 + 1)
    assert np.all(batch["noise_rootps"].numpy() > 0)


def test_flow_encodings_turn_the_spectrum_as_the_pipeline_does(anisotropic):
    """The refinement of the flow's encodings turns each spectrum in TensorFlow as the
    pipeline turns it in numpy, for all eight orientations."""
    import tensorflow as tf

    from galsim_vae.data.pipeline import _oriented_spectra
    from galsim_vae.training.encodings import turned_spectra

    spectra, _ = _oriented_spectra(anisotropic)
    upright = tf.constant(np.repeat(spectra[0, :1], 8, axis=0))
    turned = turned_spectra(upright, tf.range(8)).numpy()
    np.testing.assert_allclose(turned, spectra[0], rtol=1e-4, atol=1e-3)   # float32 sqrt at 0


def test_training_with_the_correlated_noise_likelihood(prepared, tmp_path, tiny_dataset):
    """A run with the correlated-noise likelihood trains, refines its flow's encodings
    with it, and is refused on a data set without noise models."""
    from galsim_vae.bundle import load_bundle
    from galsim_vae.training import TrainingConfigError, train

    kwargs = dict(architecture="cvae2", conditions=("zphot",), latent_size=4,
                  channels=[4, 8], epochs=1, batch_size=4, seed=3, flow_prior_epochs=1)
    out = train(prepared.path, tmp_path / "coloured", noise_correlation=True, augment=True,
                flow_refine_steps=1, flow_orientations=2, **kwargs)
    _, spec = load_bundle(out)
    assert np.isfinite(spec.training["final"]["train_loss"])
    assert spec.training["flow_prior"]["refine_steps"] == 1
    with pytest.raises(TrainingConfigError, match="records none"):
        train(tiny_dataset, tmp_path / "white", noise_correlation=True, **kwargs)
