"""Semi-amortized posteriors (``models/posterior.py``): the encoder's mean refined per
galaxy up its own objective, the encoder's width kept, as a bundle setting that the
reconstructions and the report's posterior predictive check use."""

from __future__ import annotations

import numpy as np
import pytest

import galsim_vae
from galsim_vae.bundle import read_bundle
from galsim_vae.data import Dataset, make_tf_dataset
from galsim_vae.errors import InputDataError
from galsim_vae.models import build_model
from galsim_vae.models.posterior import posterior

REFINED = {"posterior_refine_steps": 10, "posterior_refine_rate": 0.05,
           "posterior_prior_weight": 0.01}


def _model(refinement=None):
    return build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                       n_conditions=1, psf_free=True, **(refinement or {}))


def _objective(model, z, batch, prior_weight):
    """log p(x | z) - w |z|^2 / 2 per galaxy."""
    profile = model.decode(z, batch["conditions"])
    fit = model.likelihood(profile, batch["psf"], batch["noise_std"]).log_prob(batch["image"])
    return fit.numpy() - 0.5 * prior_weight * np.sum(np.square(z), axis=-1)


def test_refined_posterior_fits_each_galaxy_better_with_the_encoders_width(tiny_dataset):
    plain, refined = _model(), _model(REFINED)
    refined.set_weights(plain.get_weights())
    batch = next(iter(make_tf_dataset(tiny_dataset, "train", batch_size=16, shuffle=False,
                                      conditions=("zphot",))))
    inputs = (batch["image"], batch["conditions"])
    noise = {"psf": batch["psf"], "noise_std": batch["noise_std"]}
    encoder = plain.encode(*inputs)
    same = posterior(plain, *inputs, **noise)
    np.testing.assert_array_equal(same.mean().numpy(), encoder.mean().numpy())
    q = posterior(refined, *inputs, **noise)
    assert tuple(q.batch_shape) == (16,) and tuple(q.event_shape) == (4,)
    np.testing.assert_allclose(q.stddev().numpy(), encoder.stddev().numpy(), rtol=1e-6)
    assert not np.allclose(q.mean().numpy(), encoder.mean().numpy())
    before = _objective(plain, encoder.mean().numpy(), batch, REFINED["posterior_prior_weight"])
    after = _objective(refined, q.mean().numpy(), batch, REFINED["posterior_prior_weight"])
    assert after.sum() > before.sum() and np.mean(after > before) >= 0.75
    with pytest.raises(InputDataError, match="needs each galaxy's noise_std"):
        posterior(refined, *inputs, psf=batch["psf"])


@pytest.mark.parametrize("bad, message", [
    ({"posterior_refine_steps": -1}, "posterior_refine_steps must be a whole number >= 0"),
    ({"posterior_refine_steps": 2.5}, "posterior_refine_steps must be a whole number >= 0"),
    ({"posterior_refine_rate": 0.0}, "posterior_refine_rate must be > 0"),
    ({"posterior_prior_weight": -1.0}, "posterior_prior_weight must be >= 0")])
def test_refinement_settings_are_checked(bad, message):
    with pytest.raises(InputDataError, match=message):
        _model(bad)


def test_an_edited_bundle_reconstructs_with_refined_posteriors(tiny_dataset, tmp_path):
    """with_generation_settings(posterior_refinement=...) keeps the weights and records
    the setting; the reconstructions' chi-square per pixel then falls."""
    from galsim_vae.bundle import save_bundle
    from galsim_vae.bundle.edit import with_generation_settings
    from galsim_vae.evaluation.reconstruction import reconstruct

    data = Dataset(tiny_dataset)
    source = save_bundle(_model(), tmp_path / "plain", name="plain", flux_scale=data.flux_scale,
                         flux_units="counts/s", pixel_scale=data.pixel_scale,
                         conditions=[data.condition("zphot")], psf_free=True)
    edited = with_generation_settings(source, tmp_path / "refined",
                                      **{**REFINED, "posterior_prior_weight": 0.0})
    assert read_bundle(edited).hyperparameters["posterior_refine_steps"] == 10
    rows = data.indices("test")
    sigma = np.sqrt(np.asarray(data.catalog["noise_variance"])[rows]) / data.flux_scale
    chi2 = {}
    for name, path in (("plain", source), ("refined", edited)):
        model = galsim_vae.load_model(path)
        recon = reconstruct(model, lambda a, b: data.images[rows[a:b]] / data.flux_scale,
                            rows.size, noise_sigma=sigma, psfs=np.asarray(data.psfs[rows]),
                            conditions=np.asarray(data.catalog["zphot"])[rows, None],
                            batch_size=8, n_show=2)
        chi2[name] = recon.chi2
    np.testing.assert_array_less(chi2["refined"].mean(), chi2["plain"].mean())
    assert np.mean(chi2["refined"] <= chi2["plain"]) >= 0.75
