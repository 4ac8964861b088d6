"""Tests of galsim_vae.models: shapes, likelihood/KL values, PSF convolution physics,
saving, the flow prior, the conditional models and their errors (tiny models, seconds)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
tfp = pytest.importorskip("tensorflow_probability")
tfd = tfp.distributions

from galsim_vae.errors import ConditionError, InputDataError  # noqa: E402
from galsim_vae.models import ARCHITECTURES, build_model  # noqa: E402
from galsim_vae.models.likelihood import convolve_psf, pixel_likelihood  # noqa: E402
from galsim_vae.models.networks import stage_channels, stage_sizes  # noqa: E402
from galsim_vae.models.prior import FlowPrior  # noqa: E402
from galsim_vae.models.prior_fit import fit_flow_prior  # noqa: E402

TINY = {"channels": (8, 16), "latent_size": 4, "head_channels": 2}


def tiny_model(architecture: str, stamp_size: int = 32, **kwargs):
    """A few-thousand-parameter model of the given architecture."""
    params = dict(TINY, stamp_size=stamp_size, **kwargs)
    if architecture != "vae":
        params.setdefault("n_conditions", 1)
    return build_model(architecture, **params)


def conditions_for(model, batch_size: int, value: float = 0.0):
    return None if model.n_conditions == 0 else np.full((batch_size, model.n_conditions),
                                                        value, np.float32)


def tiny_batches(path, architecture: str, batch_size: int = 32):
    from galsim_vae.data import make_tf_dataset

    conditions = () if architecture == "vae" else ("zphot",)
    return make_tf_dataset(path, None, batch_size=batch_size, shuffle=True, seed=0,
                           conditions=conditions, repeat=True, drop_remainder=True)


def train(model, batches, steps: int, learning_rate: float = 3e-3, beta: float = 0.1):
    """Plain Adam + GradientTape; returns the per-step losses."""
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            losses = model.compute_losses(batch, beta, training=True)
        grads = tape.gradient(losses["loss"], model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return losses

    history = []
    for batch in batches.take(steps):
        history.append({k: float(v) for k, v in step(batch).items()})
    return history


# -- network layout ---------------------------------------------------------------------
def test_stage_sizes_follow_the_stamp_size():
    assert stage_sizes(32) == [32, 16, 8]
    assert stage_sizes(35) == [35, 18, 9, 5]
    assert stage_sizes(128) == [128, 64, 32, 16, 8]
    assert stage_sizes(158) == [158, 79, 40, 20, 10, 5]      # the seed project's 158 stack
    assert stage_channels(2) == (64, 128)
    assert stage_channels(5) == (64, 128, 256, 512, 512)
    assert stage_channels(3, (16, 32)) == (16, 32, 32)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("size", [32, 35])
def test_shapes_and_dtypes(architecture, size):
    model = tiny_model(architecture, size)
    b = 3
    images = np.random.default_rng(0).normal(size=(b, size, size, 1)).astype(np.float32)
    cond = conditions_for(model, b, 0.5)
    posterior = model.encode(images, cond)
    assert isinstance(posterior, tfd.MultivariateNormalDiag)
    assert posterior.batch_shape == (b,) and posterior.event_shape == (4,)
    assert posterior.mean().dtype == tf.float32
    profile = model.decode(posterior.sample(seed=(1, 2)), cond)
    assert profile.shape == (b, size, size, 1) and profile.dtype == tf.float32
    assert np.all(profile.numpy() >= 0)                       # softplus output
    psf = np.zeros((b, 7, 7, 1), np.float32)
    psf[:, 3, 3] = 1
    likelihood = model.likelihood(profile, psf, np.full(b, 0.1, np.float32))
    assert likelihood.batch_shape == (b,) and likelihood.event_shape == (size, size, 1)
    assert likelihood.log_prob(images).shape == (b,)
    if cond is None:
        prior_samples = model.prior().sample(b, seed=(3, 4))
    else:
        prior_samples = model.prior(cond).sample(seed=(3, 4))
    assert prior_samples.shape == (b, 4) and prior_samples.dtype == tf.float32
    assert model.prior_transform(np.zeros((b, 4), np.float32), cond).shape == (b, 4)
    assert model(images, cond).shape == (b, size, size, 1)


@pytest.mark.parametrize("size, n_stages", [(128, 4), (158, 5)])
def test_large_stamps_build_and_decode(size, n_stages):
    model = build_model("cvae2", stamp_size=size, channels=(4, 8), latent_size=8)
    assert model.get_config_dict()["channels"] == [4] + [8] * (n_stages - 1)
    profile = model.decode(np.zeros((2, 8), np.float32), np.zeros((2, 1), np.float32))
    assert profile.shape == (2, size, size, 1) and profile.dtype == tf.float32


# -- likelihood and KL by hand ------------------------------------------------------------
def test_likelihood_uses_each_galaxys_noise_and_matches_numpy():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(2, 5, 5, 1)).astype(np.float32)
    obs = mean + rng.normal(size=mean.shape).astype(np.float32) * 0.3
    sigma = np.array([0.1, 0.7], np.float32)
    logp = pixel_likelihood(mean, sigma).log_prob(obs).numpy()
    by_hand = [np.sum(-0.5 * ((obs[i] - mean[i]) / sigma[i]) ** 2
                      - np.log(sigma[i]) - 0.5 * np.log(2 * np.pi)) for i in range(2)]
    np.testing.assert_allclose(logp, by_hand, rtol=1e-5)

    # psf_free=False: the likelihood mean is the profile itself; psf_free=True convolves.
    flat = tiny_model("vae", 32, psf_free=False)
    profile = rng.uniform(size=(2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_allclose(flat.likelihood(profile, None, sigma).mean().numpy(), profile,
                               rtol=1e-6)
    blurred = tiny_model("vae", 32, psf_free=True)
    psf = np.full((2, 3, 3, 1), 1 / 9, np.float32)
    mean_blurred = blurred.likelihood(profile, psf, sigma).mean().numpy()
    assert not np.allclose(mean_blurred, profile)
    np.testing.assert_allclose(mean_blurred[:, 10, 10, 0],
                               profile[:, 9:12, 9:12, 0].mean(axis=(1, 2)), rtol=1e-5)
    one_psf = blurred.likelihood(profile, psf[0, ..., 0], sigma).mean().numpy()
    np.testing.assert_allclose(one_psf, mean_blurred, rtol=1e-6, atol=1e-7)


def test_kl_and_losses_match_numpy():
    model = tiny_model("cvae2", 32, psf_free=False)
    rng = np.random.default_rng(2)
    batch = {"image": rng.uniform(size=(4, 32, 32, 1)).astype(np.float32),
             "noise_std": np.array([0.05, 0.1, 0.2, 0.4], np.float32),
             "conditions": rng.normal(size=(4, 1)).astype(np.float32)}
    posterior = model.encode(batch["image"], batch["conditions"])
    mu, sigma = posterior.mean().numpy(), posterior.stddev().numpy()
    kl_by_hand = 0.5 * np.sum(mu**2 + sigma**2 - 1 - 2 * np.log(sigma), axis=1)
    losses = model.compute_losses(batch, beta=0.25, seed=(5, 6))
    np.testing.assert_allclose(float(losses["kl"]), kl_by_hand.mean(), rtol=1e-5)
    z = posterior.sample(seed=(5, 6)).numpy()          # the same stateless draw
    profile = model.decode(z, batch["conditions"]).numpy()
    r = (batch["image"] - profile) / batch["noise_std"][:, None, None, None]
    nll_by_hand = np.mean(np.sum(0.5 * r**2 + np.log(batch["noise_std"])[:, None, None, None]
                                 + 0.5 * np.log(2 * np.pi), axis=(1, 2, 3)))
    np.testing.assert_allclose(float(losses["nll"]), nll_by_hand, rtol=1e-5)
    np.testing.assert_allclose(float(losses["loss"]), nll_by_hand + 0.25 * kl_by_hand.mean(),
                               rtol=1e-5)


# -- PSF convolution physics --------------------------------------------------------------
def _galsim_reference(size: int, psf_size: int):
    """A smooth, well-sampled profile and PSF, and GalSim's convolution of the two
    (both as InterpolatedImages, drawn without the pixel response)."""
    galsim = pytest.importorskip("galsim")
    scale = 0.03
    gsparams = galsim.GSParams(folding_threshold=1e-5, maxk_threshold=1e-6,
                               kvalue_accuracy=1e-8)
    gal = galsim.Gaussian(sigma=0.1).shear(g1=0.2, g2=-0.1)
    profile = gal.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    psf = galsim.Gaussian(fwhm=0.12).drawImage(nx=psf_size, ny=psf_size, scale=scale,
                                                method="no_pixel").array
    psf = psf / psf.sum()
    conv = galsim.Convolve(
        galsim.InterpolatedImage(galsim.Image(profile, scale=scale), gsparams=gsparams),
        galsim.InterpolatedImage(galsim.Image(psf, scale=scale), gsparams=gsparams),
        gsparams=gsparams)
    expected = conv.drawImage(nx=size, ny=size, scale=scale, method="no_pixel").array
    return profile.astype(np.float32), psf.astype(np.float32), expected


@pytest.mark.parametrize("size", [32, 35])
def test_convolution_agrees_with_galsim_for_a_smooth_profile(size):
    """scipy's direct convolution (the reference of the next test) and ours agree with
    GalSim to 1e-4 of the peak (GalSim's interpolants set that floor); a shift by one
    pixel would differ by ~25%."""
    from scipy.signal import fftconvolve

    profile, psf, galsim_conv = _galsim_reference(size, 15)
    direct = fftconvolve(profile.astype(np.float64), psf.astype(np.float64), mode="same")
    assert np.max(np.abs(direct - galsim_conv)) < 1e-4 * galsim_conv.max()
    ours = convolve_psf(profile[None, ..., None], psf[None, ..., None]).numpy()[0, ..., 0]
    assert np.max(np.abs(ours - galsim_conv)) < 1e-4 * galsim_conv.max()


@pytest.mark.parametrize("size, psf_size", [(32, 15), (35, 15), (32, 41), (20, 9)])
def test_fft_convolution_matches_direct_convolution(size, psf_size):
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(3)
    profile = rng.uniform(size=(2, size, size)).astype(np.float32)
    profile[1] = _galsim_reference(size, psf_size)[0]            # smooth galaxy
    psf = rng.uniform(size=(2, psf_size, psf_size)).astype(np.float32)
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    ours = convolve_psf(profile[..., None], psf[..., None]).numpy()[..., 0]
    for i in range(2):
        direct = fftconvolve(profile[i].astype(np.float64), psf[i].astype(np.float64),
                             mode="same")
        assert np.max(np.abs(ours[i] - direct)) < 1e-5 * np.max(np.abs(direct))


@pytest.mark.parametrize("size, psf_size", [(32, 15), (32, 16), (35, 15), (35, 16), (16, 41)])
def test_delta_at_centre_returns_the_centred_psf(size, psf_size):
    rng = np.random.default_rng(4)
    psf = rng.uniform(size=(psf_size, psf_size)).astype(np.float32)
    psf /= psf.sum()
    delta = np.zeros((1, size, size, 1), np.float32)
    delta[0, size // 2, size // 2, 0] = 1.0
    out = convolve_psf(delta, psf[None, ..., None]).numpy()[0, ..., 0]
    expected = np.zeros((size, size))
    # place the PSF with its centre pixel P//2 on the stamp's centre pixel S//2, cropped
    for j in range(psf_size):
        for i in range(psf_size):
            y, x = size // 2 + j - psf_size // 2, size // 2 + i - psf_size // 2
            if 0 <= y < size and 0 <= x < size:
                expected[y, x] = psf[j, i]
    np.testing.assert_allclose(out, expected, atol=2e-7)
    if psf_size <= size:
        assert np.isclose(out.sum(), 1.0, atol=1e-5)         # flux conserved


# -- training ------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_trains(architecture, tiny_dataset):
    keras.utils.set_random_seed(0)
    model = tiny_model(architecture, 32)
    batches = tiny_batches(tiny_dataset, architecture)
    fixed = next(iter(batches))
    before = {k: float(v) for k, v in model.compute_losses(fixed, 0.1, seed=(0, 1)).items()}
    history = train(model, batches, steps=25)
    after = {k: float(v) for k, v in model.compute_losses(fixed, 0.1, seed=(0, 1)).items()}
    assert all(np.isfinite(h["loss"]) for h in history)
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["nll"] < 0.5 * before["nll"]
    assert np.mean([h["loss"] for h in history[-5:]]) < np.mean([h["loss"] for h in history[:5]])
    if architecture == "fancy_cvae":
        assert {"redshift_nll", "redshift_loss"} <= set(after)
        np.testing.assert_allclose(after["loss"], after["nll"] + 0.1 * after["kl"]
                                   + after["redshift_loss"], rtol=1e-5)


def test_fancy_cvae_redshift_head_learns(tiny_dataset):
    """Redshift sets the disk size in tiny_dataset; the head must recover it from z."""
    keras.utils.set_random_seed(1)
    model = tiny_model("fancy_cvae", 32, redshift_weight=20.0)
    batches = tiny_batches(tiny_dataset, "fancy_cvae")
    history = train(model, batches, steps=150, learning_rate=3e-3)
    assert history[-1]["redshift_nll"] < history[0]["redshift_nll"]
    from galsim_vae.data import make_tf_dataset

    full = next(iter(make_tf_dataset(tiny_dataset, None, batch_size=96, shuffle=False,
                                     conditions=("zphot",))))
    z = model.encode(full["image"], full["conditions"]).mean()
    predicted = model.predict_conditions(z)
    assert isinstance(predicted, tfd.Normal) and predicted.batch_shape == (96,)
    truth = full["conditions"].numpy()[:, 0]
    r = np.corrcoef(predicted.mean().numpy(), truth)[0, 1]
    rms = np.sqrt(np.mean((predicted.mean().numpy() - truth) ** 2))
    assert r > 0.8 and rms < 0.6, (r, rms)                   # prior std of truth is 1


# -- saving --------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_save_rebuild_load_gives_the_same_decoder(architecture, tmp_path):
    model = tiny_model(architecture, 35, output_activation="linear")
    config = json.loads(json.dumps(model.get_config_dict()))
    path = tmp_path / "weights.weights.h5"
    model.save_weights(path)
    rebuilt = build_model(architecture, **config)
    assert rebuilt.get_config_dict() == model.get_config_dict()
    z = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    cond = conditions_for(model, 3, 0.3)
    assert not np.allclose(rebuilt.decode(z, cond).numpy(), model.decode(z, cond).numpy())
    rebuilt.load_weights(path)
    np.testing.assert_array_equal(rebuilt.decode(z, cond).numpy(), model.decode(z, cond).numpy())
    images = np.random.default_rng(6).uniform(size=(3, 35, 35, 1)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.encode(images, cond).mean().numpy(),
                                  model.encode(images, cond).mean().numpy())


# -- flow prior ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def correlated_gaussian():
    """4-d correlated, shifted Gaussian whose first coordinate moves with the condition."""
    rng = np.random.default_rng(7)
    mix = np.array([[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0],
                    [0.0, 0.5, 0.5, 0.0], [0.3, 0.0, 0.0, 1.5]])
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    cond = rng.normal(size=(4000, 1))
    latents = rng.normal(size=(4000, 4)) @ mix.T + mean
    latents[:, 0] += 1.5 * cond[:, 0]
    flow = fit_flow_prior(latents, cond, epochs=25, batch_size=256, learning_rate=3e-3,
                          seed=0, n_couplings=4, hidden_units=(32, 32))
    return {"flow": flow, "mean": mean, "cov": mix @ mix.T, "slope": 1.5}


def test_flow_prior_recovers_mean_and_covariance(correlated_gaussian):
    flow, cov = correlated_gaussian["flow"], correlated_gaussian["cov"]
    assert flow.training_losses[-1] < flow.training_losses[0]
    eps = np.random.default_rng(8).normal(size=(20000, 4)).astype(np.float32)
    for c in (-1.0, 1.0):
        z = flow.transform(eps, np.full((20000, 1), c, np.float32)).numpy()
        expected_mean = correlated_gaussian["mean"] + [correlated_gaussian["slope"] * c, 0, 0, 0]
        np.testing.assert_allclose(z.mean(axis=0), expected_mean, atol=0.15)
        np.testing.assert_allclose(np.cov(z.T), cov, atol=0.25)
        # the log-density matches the true Gaussian's on its own samples (nats)
        truth = tfd.MultivariateNormalTriL(expected_mean.astype(np.float32),
                                           np.linalg.cholesky(cov).astype(np.float32))
        sample = truth.sample(2000, seed=(1, 1))
        learned = flow.distribution(np.full((2000, 1), c, np.float32)).log_prob(sample).numpy()
        assert abs(np.mean(learned - truth.log_prob(sample).numpy())) < 0.1


def test_flow_prior_stops_on_held_out_latents_and_keeps_the_best_epoch():
    """A wide flow on 48 points learns the points: the held-out NLL turns up, the fit stops
    and keeps the weights of the held-out minimum, where the held-out NLL is lower than
    after the full fit."""
    rng = np.random.default_rng(11)
    train_latents, held_out = rng.normal(size=(48, 4)), rng.normal(size=(2000, 4))
    common = dict(epochs=150, batch_size=16, learning_rate=1e-2, seed=0, n_couplings=4,
                  hidden_units=(128, 128))
    stopped = fit_flow_prior(train_latents, None, validation=(held_out, None), patience=5,
                             **common)
    full = fit_flow_prior(train_latents, None, **common)
    losses = stopped.validation_losses
    assert len(losses) == len(stopped.training_losses) < 150
    assert stopped.best_epoch == int(np.argmin(losses)) + 1
    assert len(losses) - stopped.best_epoch == 5
    nll = -np.mean(stopped(held_out).numpy())
    assert nll == pytest.approx(min(losses), rel=1e-5)
    assert nll < -np.mean(full(held_out).numpy()) - 0.5
    assert full.best_epoch == 150 and not hasattr(full, "validation_losses")


def test_flow_fitted_to_fresh_posterior_samples_learns_the_aggregate_posterior():
    """48 galaxies' posteriors N(centre, width): a wide flow fitted to one fixed sample of
    each learns those 48 points, and its held-out NLL on new draws of the aggregate
    posterior is poor; fitted to a fresh sample each epoch (``latent_scales``) it learns
    the mixture itself, within half a nat of the mixture's own NLL.  Negative widths are
    refused with the shape and minimum."""
    from scipy.special import logsumexp

    rng = np.random.default_rng(12)
    centres = rng.normal(size=(48, 4))
    widths = rng.uniform(0.4, 0.8, size=(48, 4))
    pick = rng.integers(0, 48, 2000)
    held_out = centres[pick] + widths[pick] * rng.standard_normal((2000, 4))
    common = dict(epochs=150, batch_size=16, learning_rate=1e-2, seed=0, n_couplings=4,
                  hidden_units=(128, 128))
    fixed = fit_flow_prior(centres + widths * rng.standard_normal((48, 4)), None, **common)
    fresh = fit_flow_prior(centres, None, latent_scales=widths, **common)
    log_components = (-0.5 * ((held_out[:, None] - centres) / widths) ** 2
                      - np.log(widths * np.sqrt(2 * np.pi))).sum(-1)
    truth = -np.mean(logsumexp(log_components, axis=1) - np.log(48))
    fresh_nll = -np.mean(fresh(held_out).numpy())
    assert fresh_nll < -np.mean(fixed(held_out).numpy()) - 1.0
    assert fresh_nll < truth + 0.5
    with pytest.raises(InputDataError, match=r"latent scales must be \(N, d\) = \(48, 4\)"):
        fit_flow_prior(centres, None, latent_scales=-widths, epochs=1)


def test_flow_log_prob_is_normalised():
    rng = np.random.default_rng(9)
    latents = np.stack([rng.normal(size=3000), rng.exponential(size=3000)], axis=1)
    flow = fit_flow_prior(latents, None, epochs=5, batch_size=256, learning_rate=3e-3,
                          seed=1, n_couplings=2, hidden_units=(16,))
    grid = np.linspace(-8, 12, 401)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    density = np.exp(flow.distribution().log_prob(points).numpy())
    integral = density.sum() * (grid[1] - grid[0]) ** 2
    assert abs(integral - 1.0) < 0.01


def test_prior_transform_with_and_without_flow(correlated_gaussian, tmp_path):
    flow = correlated_gaussian["flow"]
    model = build_model("cvae2", stamp_size=16, channels=(4,), latent_size=4)
    eps = np.random.default_rng(10).normal(size=(5000, 4)).astype(np.float32)
    cond = np.zeros((5000, 1), np.float32)
    np.testing.assert_array_equal(model.prior_transform(eps, cond).numpy(), eps)   # N(0, I)
    n_weights = len(model.weights)
    model.attach_prior(flow)
    assert len(model.weights) == n_weights                   # the flow is saved apart
    z = model.prior_transform(eps, cond).numpy()
    np.testing.assert_array_equal(z, model.prior_transform(eps, cond).numpy())   # deterministic
    np.testing.assert_allclose(z.mean(axis=0), correlated_gaussian["mean"], atol=0.15)
    np.testing.assert_allclose(np.cov(z.T), correlated_gaussian["cov"], atol=0.25)
    prior = model.prior(cond[:10])
    assert prior.bijector.name == "flow_prior" and prior.batch_shape == (10,)
    np.testing.assert_allclose(prior.log_prob(z[:10]).numpy(),
                               flow.distribution(cond[:10]).log_prob(z[:10]).numpy(), rtol=1e-6)
    z_high = model.prior_transform(eps, cond + 1.0).numpy()   # conditioning moves z[0]
    assert abs((z_high - z)[:, 0].mean() - correlated_gaussian["slope"]) < 0.2
    # with a flow the KL term is the one-sample Monte-Carlo log q(z|x) - log p(z|y)
    images = np.random.default_rng(13).uniform(size=(3, 16, 16, 1)).astype(np.float32)
    batch = {"image": images, "noise_std": np.full(3, 0.1, np.float32),
             "psf": np.ones((3, 3, 3, 1), np.float32) / 9, "conditions": cond[:3] + 0.5}
    losses = model.compute_losses(batch, 1.0, seed=(7, 8))
    posterior = model.encode(images, batch["conditions"])
    z_q = posterior.sample(seed=(7, 8))
    mc_kl = posterior.log_prob(z_q) - flow.distribution(batch["conditions"]).log_prob(z_q)
    np.testing.assert_allclose(float(losses["kl"]), float(tf.reduce_mean(mc_kl)), rtol=1e-5)
    # save / rebuild from JSON / load
    path = tmp_path / "prior.weights.h5"
    flow.save_weights(path)
    rebuilt = FlowPrior(**json.loads(json.dumps(flow.get_config_dict())))
    rebuilt.load_weights(path)
    np.testing.assert_array_equal(rebuilt.transform(eps[:10], cond[:10]).numpy(),
                                  flow.transform(eps[:10], cond[:10]).numpy())
    model.attach_prior(None)
    np.testing.assert_array_equal(model.prior_transform(eps, cond).numpy(), eps)


def test_spline_flow_fits_narrow_peaks_an_affine_flow_smooths_over(tmp_path):
    """Four narrow peaks whose positions move with the condition (a latent space's many
    small clusters): spline couplings reach a held-out NLL well below the affine ones' of
    the same size, keep their samples in the peaks, stay normalised, and rebuild from
    their JSON config and saved weights."""
    rng = np.random.default_rng(21)
    centres = np.array([[-2.0, -2.0], [2.0, 2.0], [-2.0, 2.0], [2.0, -2.0]])

    def draw(n):
        cond = rng.uniform(-1, 1, (n, 1))
        return centres[rng.integers(0, 4, n)] + 0.1 * rng.normal(size=(n, 2)) + cond, cond

    latents, cond = draw(4000)
    held_out = draw(1000)
    common = dict(epochs=15, batch_size=128, learning_rate=3e-3, seed=0, n_couplings=4,
                  hidden_units=(32, 32), validation=held_out, patience=None)
    affine = fit_flow_prior(latents, cond, **common)
    spline = fit_flow_prior(latents, cond, spline_bins=8, **common)
    assert spline.spline_bins == 8 and affine.spline_bins == 0
    assert min(spline.validation_losses) < min(affine.validation_losses) - 0.5
    # samples at a condition sit within 0.5 of a peak (shifted by the condition)
    eps = rng.normal(size=(4000, 2)).astype(np.float32)
    z = spline.transform(eps, np.full((4000, 1), 0.5, np.float32)).numpy()
    nearest = np.min(np.linalg.norm(z[:, None, :] - (centres + 0.5)[None], axis=-1), axis=1)
    assert np.mean(nearest < 0.5) > 0.9
    # normalised at a condition (the peaks are narrow: a fine grid)
    grid = np.linspace(-6, 6, 601)
    xx, yy = np.meshgrid(grid, grid)
    points = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
    density = np.exp(spline.distribution(np.zeros((len(points), 1), np.float32))
                     .log_prob(points).numpy())
    assert abs(density.sum() * (grid[1] - grid[0]) ** 2 - 1.0) < 0.02
    path = tmp_path / "prior.weights.h5"
    spline.save_weights(path)
    config = json.loads(json.dumps(spline.get_config_dict()))
    assert config["spline_bins"] == 8 and "spline_bins" not in affine.get_config_dict()
    rebuilt = FlowPrior(**config)
    rebuilt.load_weights(path)
    np.testing.assert_array_equal(rebuilt.transform(eps[:10], held_out[1][:10]).numpy(),
                                  spline.transform(eps[:10], held_out[1][:10]).numpy())
    with pytest.raises(ConditionError, match="spline_bins 0 .* or >= 2, got 1"):
        FlowPrior(2, spline_bins=1)


def test_condition_shifted_flow_follows_a_strong_linear_dependence(tmp_path):
    """Latents whose mean moves by several widths with the conditions (sizes with
    flux_radius): after a short fit the condition-shifted flow's samples have the
    latents' regression on the conditions within 3% and a held-out NLL far below the
    plain flow's of the same size, which under-follows the dependence; it stays
    normalised, rebuilds from its JSON config and saved weights, and is refused
    without conditions."""
    rng = np.random.default_rng(5)
    slopes = np.array([[3.0, 0.0, 1.0, 0.0], [0.0, -2.0, 0.0, 0.5]])

    def draw(n):
        cond = rng.standard_normal((n, 2))
        return cond @ slopes + 0.3 * rng.standard_normal((n, 4)), cond

    latents, cond = draw(4000)
    held_out = draw(1000)
    common = dict(epochs=3, batch_size=128, seed=0, n_couplings=2, hidden_units=(32, 32),
                  validation=held_out, patience=None)
    plain = fit_flow_prior(latents, cond, **common)
    shifted = fit_flow_prior(latents, cond, condition_shift=True, **common)
    assert shifted.condition_shift and not plain.condition_shift
    assert min(shifted.validation_losses) < min(plain.validation_losses) - 2.0
    eps = rng.standard_normal((8000, 4)).astype(np.float32)
    test_cond = rng.standard_normal((8000, 2)).astype(np.float32)
    design = np.c_[test_cond, np.ones(8000)]
    fitted = np.linalg.lstsq(design, shifted.transform(eps, test_cond).numpy(), rcond=None)[0]
    np.testing.assert_allclose(fitted[:2], slopes, atol=0.03 * np.abs(slopes).max())
    plain_fit = np.linalg.lstsq(design, plain.transform(eps, test_cond).numpy(), rcond=None)[0]
    assert np.abs(plain_fit[:2] - slopes).max() > 0.2      # the plain flow lags behind
    # normalised at a condition: a Monte Carlo estimate of E_q[p / q] over a wide Gaussian
    point = np.full((1, 2), 0.7, np.float32)
    centre = point @ slopes
    wide = centre + 1.5 * rng.standard_normal((200000, 4))
    log_q = (-0.5 * ((wide - centre) / 1.5) ** 2 - np.log(1.5 * np.sqrt(2 * np.pi))).sum(1)
    log_p = shifted.distribution(np.repeat(point, len(wide), 0)).log_prob(
        wide.astype(np.float32)).numpy()
    assert abs(np.mean(np.exp(log_p - log_q)) - 1.0) < 0.05
    path = tmp_path / "prior.weights.h5"
    shifted.save_weights(path)
    config = json.loads(json.dumps(shifted.get_config_dict()))
    assert config["condition_shift"] is True and "condition_shift" not in plain.get_config_dict()
    rebuilt = FlowPrior(**config)
    rebuilt.load_weights(path)
    np.testing.assert_array_equal(rebuilt.transform(eps[:10], test_cond[:10]).numpy(),
                                  shifted.transform(eps[:10], test_cond[:10]).numpy())
    with pytest.raises(ConditionError, match="condition_shift needs n_conditions >= 1"):
        FlowPrior(4, condition_shift=True)


# -- errors ---------------------------------------------------------------------------------
def test_wrong_condition_counts_are_refused():
    images = np.zeros((2, 32, 32, 1), np.float32)
    vae = tiny_model("vae")
    with pytest.raises(ConditionError, match=r"no conditions.*\(2, 1\)"):
        vae.encode(images, np.zeros((2, 1), np.float32))
    cvae = tiny_model("cvae", n_conditions=2)
    with pytest.raises(ConditionError, match=r"\(B, 2\).*None"):
        cvae.encode(images)
    with pytest.raises(ConditionError, match=r"\(B, 2\).*\(2, 1\)"):
        cvae.decode(np.zeros((2, 4), np.float32), np.zeros((2, 1), np.float32))
    with pytest.raises(ConditionError, match=r"\(B, 4\).*\(2, 3\)"):
        cvae.prior_transform(np.zeros((2, 3), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ConditionError, match="n_conditions >= 1"):
        build_model("cvae2", stamp_size=32, n_conditions=0)
    with pytest.raises(ConditionError, match="'vae' takes no conditions"):
        build_model("vae", stamp_size=32, n_conditions=1)
    with pytest.raises(ConditionError, match="batch\\['conditions'\\]"):
        cvae.compute_losses({"image": images, "noise_std": np.ones(2, np.float32),
                             "psf": np.ones((2, 3, 3, 1), np.float32) / 9})
    with pytest.raises(InputDataError, match=r"\(B, 32, 32, 1\).*\(2, 31, 31, 1\)"):
        vae.encode(np.zeros((2, 31, 31, 1), np.float32))
    with pytest.raises(InputDataError, match="psf_free=True"):
        vae.likelihood(images, None, np.ones(2, np.float32))
    with pytest.raises(InputDataError, match="unknown architecture"):
        build_model("gan", stamp_size=32)


# -- environment ----------------------------------------------------------------------------
def test_mixed_precision_losses_stay_float32():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model("cvae", 32)
        assert model.encoder_cnn.layers[0].compute_dtype == "float16"
        rng = np.random.default_rng(11)
        batch = {"image": rng.uniform(size=(2, 32, 32, 1)).astype(np.float32),
                 "noise_std": np.full(2, 0.05, np.float32),
                 "psf": np.ones((2, 3, 3, 1), np.float32) / 9,
                 "conditions": np.zeros((2, 1), np.float32)}
        losses = model.compute_losses(batch, 0.1, training=True)
        assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in losses.values())
        profile = model.decode(np.zeros((1, 4), np.float32), np.zeros((1, 1), np.float32))
        assert profile.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_importing_models_does_not_import_tensorflow():
    code = ("import sys, galsim_vae.models as m; assert m.ARCHITECTURES[0] == 'vae'; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_decoding_in_a_tf_function_with_unknown_shapes():
    """The generator traces decode(prior_transform(eps)) with relaxed shapes."""
    model = tiny_model("cvae2", 32)
    spec = [tf.TensorSpec([None, None]), tf.TensorSpec([None, None])]
    run = tf.function(lambda e, c: model.decode(model.prior_transform(e, c), c),
                      input_signature=spec)
    eps = np.random.default_rng(12).normal(size=(2, 4)).astype(np.float32)
    cond = np.ones((2, 1), np.float32)
    np.testing.assert_allclose(run(eps, cond).numpy(), model.decode(eps, cond).numpy(),
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[2,5\].*\[\?,4\]"):
        run(np.zeros((2, 5), np.float32), cond)


@pytest.mark.parametrize("size", [32, 35])
def test_resize_decoder_has_no_transposed_convolutions(size):
    """upsampling='resize' swaps the seed's transposed convolutions for resize + conv
    (no checkerboard), keeps the output shape and round-trips through the config."""
    import keras

    model = build_model("cvae2", stamp_size=size, latent_size=4, channels=[4, 8], n_conditions=1,
                        psf_size=7, upsampling="resize", output_activation="linear")
    kinds = {type(layer) for layer in model.decoder_cnn.layers}
    assert keras.layers.Conv2DTranspose not in kinds and keras.layers.UpSampling2D in kinds
    out = model.decode(np.zeros((2, 4), np.float32), np.zeros((2, 1), np.float32))
    assert out.shape == (2, size, size, 1)
    config = model.get_config_dict()
    assert config["upsampling"] == "resize" and config["output_activation"] == "linear"
    assert build_model("cvae2", **config).count_params() == model.count_params()
    default = build_model("cvae2", stamp_size=size, latent_size=4, channels=[4, 8],
                          n_conditions=1, psf_size=7)
    assert keras.layers.Conv2DTranspose in {type(layer) for layer in default.decoder_cnn.layers}
    with pytest.raises(InputDataError, match="upsampling"):
        build_model("vae", stamp_size=size, latent_size=4, channels=[4, 8], upsampling="bicubic")


def test_light_full_resolution_stage_drops_only_the_last_norm():
    """full_resolution_norm=False removes the GroupNormalization of the decoder's
    full-resolution stage only (every deeper stage keeps its own), and the setting
    survives get_config_dict and a bundle round trip with identical decodings."""
    import keras

    def norms(model):
        return [layer.name for layer in model.decoder_cnn.layers
                if isinstance(layer, keras.layers.GroupNormalization)]

    kwargs = dict(stamp_size=32, latent_size=4, channels=[4, 8], n_conditions=1, psf_size=7)
    default = build_model("cvae2", **kwargs)
    light = build_model("cvae2", full_resolution_norm=False, **kwargs)
    assert norms(default) == ["from_latent_norm", "up1_norm", "up0_norm"]
    assert norms(light) == ["from_latent_norm", "up1_norm"]
    assert default.count_params() - light.count_params() == 2 * 4    # gamma and beta of up0
    z, c = np.ones((2, 4), np.float32), np.zeros((2, 1), np.float32)
    assert light.decode(z, c).shape == (2, 32, 32, 1)
    config = light.get_config_dict()
    assert config["full_resolution_norm"] is False
    assert default.get_config_dict()["full_resolution_norm"] is True
    rebuilt = build_model("cvae2", **config)
    rebuilt.set_weights(light.get_weights())
    np.testing.assert_array_equal(rebuilt.decode(z, c).numpy(), light.decode(z, c).numpy())


@pytest.mark.parametrize("stamp_size", [32, 35])
def test_subpixel_decoder_shapes_and_nearest_neighbour_start(stamp_size):
    """The sub-pixel decoder (Shi et al. 2016) gives full-size stamps, odd sizes
    included, and starts (ICNR) as a nearest-neighbour up-sampling of its half-resolution
    map: every 2x2 block of the output is constant."""
    import keras

    from galsim_vae.models.networks import build_subpixel_decoder_cnn

    keras.utils.set_random_seed(2)
    decoder = build_subpixel_decoder_cnn(stamp_size, 6, [4, 8, 16], "linear",
                                         full_resolution_norm=False)
    out = np.asarray(decoder(np.random.default_rng(0).normal(size=(3, 6)).astype("float32")))
    assert out.shape == (3, stamp_size, stamp_size, 1) and np.all(np.isfinite(out))
    even = out[:, :stamp_size // 2 * 2, :stamp_size // 2 * 2, 0]
    blocks = even.reshape(3, stamp_size // 2, 2, stamp_size // 2, 2)
    np.testing.assert_allclose(blocks, blocks[:, :, :1, :, :1] * np.ones_like(blocks),
                               rtol=1e-6, atol=1e-7)
    assert np.std(even) > 0
    # no full-resolution stage; no GroupNormalization in the last (half-resolution) one
    names = [layer.name for layer in decoder.layers]
    assert "up1" in names and "up1_norm" not in names and "up0" not in names
    model = build_model("cvae2", stamp_size=stamp_size, latent_size=4, channels=[4, 8, 16],
                        n_conditions=1, decoder="subpixel", output_activation="linear")
    profile = model.decode(np.zeros((2, 4), "float32"), np.zeros((2, 1), "float32"))
    assert tuple(profile.shape)[:3] == (2, stamp_size, stamp_size)


def test_subpixel_layout_puts_channel_dy_dx_at_pixel_dy_dx():
    """The sub-pixel rearrangement: channel ``2 dy + dx`` of half-resolution pixel (i, j)
    is full-resolution pixel (2i + dy, 2j + dx) (Shi et al. 2016)."""
    from galsim_vae.models.networks import DepthToSpace

    half = np.arange(2 * 3 * 3 * 4, dtype="float32").reshape(2, 3, 3, 4)
    full = np.asarray(DepthToSpace(2)(half))
    assert full.shape == (2, 6, 6, 1)
    for dy in range(2):
        for dx in range(2):
            np.testing.assert_array_equal(full[:, dy::2, dx::2, 0], half[..., 2 * dy + dx])


def test_exported_group_norm_is_keras_group_norm():
    """The 4-D GroupNormalization traced at export (operators LiteRT's XNNPACK runs) is
    Keras's layer: same values on maps with offsets, scales and trained gamma/beta."""
    import keras

    from galsim_vae.bundle.export import _group_norm_4d

    rng = np.random.default_rng(3)
    layer = keras.layers.GroupNormalization(groups=4, name="norm")
    x = (rng.normal(size=(3, 8, 8, 16)) * rng.uniform(0.1, 30, 16) + rng.normal(0, 5, 16))
    x = x.astype("float32")
    layer(x)
    layer.gamma.assign(rng.normal(1, 0.3, 16).astype("float32"))
    layer.beta.assign(rng.normal(0, 0.3, 16).astype("float32"))
    np.testing.assert_allclose(np.asarray(_group_norm_4d(layer, x)), np.asarray(layer(x)),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stamp_size, channels, full_resolution_norm, activation, rewritten", [
    (32, [8, 16], False, "linear", 3),      # last stage folded, up1 (8 filters) per phase
    (32, [8, 16], False, "softplus", 3),
    (32, [4, 8], True, "softplus", 2),      # normalised last stage: each transpose alone
    (35, [4, 8, 16], False, "linear", 3),   # cropped stages (odd size)
    (32, [16, 32], False, "linear", 2),     # up1 has 16 filters: traced as it is
])
def test_exported_phase_convolutions_are_the_decoder(stamp_size, channels,
                                                     full_resolution_norm, activation,
                                                     rewritten):
    """The conv decoder traced per phase at half resolution (the export's rewrite) is the
    same function as the Keras decoder, layer weights unchanged, for every stage shape;
    leaving the context restores the layers."""
    import tensorflow as tf

    from galsim_vae.bundle.phase_stage import phase_convolutions
    from galsim_vae.models.networks import build_decoder_cnn

    decoder = build_decoder_cnn(stamp_size, 5, channels, activation,
                                full_resolution_norm=full_resolution_norm)
    rng = np.random.default_rng(4)
    for weight in decoder.weights:
        weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    z = rng.normal(size=(3, 5)).astype("float32")
    ref = np.asarray(decoder(z))
    with phase_convolutions(decoder) as n:
        got = tf.function(lambda x: decoder(x))(z).numpy()
    assert n == rewritten
    assert got.shape == ref.shape == (3, stamp_size, stamp_size, 1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.abs(ref).max())
    np.testing.assert_array_equal(np.asarray(decoder(z)), ref)
    assert not any("call" in vars(layer) for layer in decoder.layers)
