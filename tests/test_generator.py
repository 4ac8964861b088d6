"""GalaxyModel: loading bundles, batched generation, conditions, rng reproducibility.

Also the home of the tiny test bundles (``tiny_bundle``) the other GalSim-side tests
(test_gsobject, test_config, test_examples) import: a 32x32 ``cvae2`` trained for a few
steps on the ``tiny_dataset`` exponential disks (so samples are compact galaxies), an
unconditional random-init ``vae``, and a ``cvae2`` whose samples carry an HST PSF.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import galsim

import galsim_vae
from galsim_vae.errors import BundleError, ConditionError

#: Memo of the bundles made in this test session: kind -> path.
_BUNDLES: dict[str, Path] = {}

TRAIN_STEPS = 150


def _train_few_steps(model, dataset_path, steps=TRAIN_STEPS):
    """A few Adam steps of the negative ELBO so samples look like the training disks."""
    import tensorflow as tf

    from galsim_vae.data.pipeline import make_tf_dataset

    conditions = ("zphot",) if model.n_conditions else ()
    batches = make_tf_dataset(dataset_path, split="train", batch_size=32, shuffle=True,
                              conditions=conditions, repeat=True)
    optimizer = tf.keras.optimizers.Adam(3e-3)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = model.compute_losses(batch, beta=1.0, training=True)["loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for batch in batches.take(steps):
        step(batch)


def tiny_bundle(kind: str, dataset_path: Path, folder: Path) -> Path:
    """Path of a tiny bundle of ``kind`` ("conditional", "unconditional", "hst_psf"),
    made once per test session inside ``folder``."""
    if kind in _BUNDLES:
        return _BUNDLES[kind]
    import tensorflow as tf

    from galsim_vae.bundle import save_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.models import build_model

    tf.keras.utils.set_random_seed(7)
    data = Dataset(dataset_path)
    stats = data.condition_stats("zphot")
    zphot = {"name": "zphot", "mean": stats["mean"], "std": stats["std"],
             "min": stats["min"], "max": stats["max"]}
    common = dict(flux_scale=data.flux_scale, flux_units="counts/s", pixel_scale=0.03)
    if kind == "conditional":
        model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[8, 16],
                            n_conditions=1, psf_size=15)
        _train_few_steps(model, dataset_path)
        path = save_bundle(model, folder / "tiny_cvae2", name="tiny_cvae2",
                           conditions=[zphot], psf_free=True, **common)
    elif kind == "three_conditions":
        # conditioned like Lanusse et al. 2021 / galsim_hub (untrained: API tests only)
        conds = [data.condition(name).to_dict() for name in ("zphot", "mag_auto", "flux_radius")]
        model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                            n_conditions=3, flux_condition=1, flux_condition_scale=0.5)
        path = save_bundle(model, folder / "tiny_three", name="tiny_three", conditions=conds,
                           psf_free=True, **common)
    elif kind == "unconditional":
        model = build_model("vae", stamp_size=32, latent_size=3, channels=[4, 8])
        path = save_bundle(model, folder / "tiny_vae", name="tiny_vae", conditions=[],
                           psf_free=True, **common)
    elif kind == "hst_psf":
        model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[8, 16],
                            n_conditions=1, psf_free=False)
        _train_few_steps(model, dataset_path, steps=60)
        psf = galsim.Moffat(beta=3.0, fwhm=0.1).drawImage(nx=15, ny=15, scale=0.03).array
        path = save_bundle(model, folder / "tiny_hst", name="tiny_hst", conditions=[zphot],
                           psf_free=False, hst_psf=psf, **common)
    else:
        raise ValueError(kind)
    _BUNDLES[kind] = Path(path)
    return _BUNDLES[kind]


@pytest.fixture(scope="session")
def bundle_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def conditional_bundle(tiny_dataset, bundle_folder) -> Path:
    return tiny_bundle("conditional", tiny_dataset, bundle_folder)


@pytest.fixture(scope="session")
def unconditional_bundle(tiny_dataset, bundle_folder) -> Path:
    return tiny_bundle("unconditional", tiny_dataset, bundle_folder)


@pytest.fixture(scope="session")
def model(conditional_bundle):
    return galsim_vae.load_model(conditional_bundle)


def test_import_does_not_import_tensorflow():
    code = ("import sys, galsim, galsim_vae; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
            "assert 'VAEGalaxy' in galsim.config.valid_gsobject_types; "
            "assert 'vae_model' in galsim.config.valid_input_types; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_model_properties(model, conditional_bundle):
    import json

    meta = json.loads((conditional_bundle / "model.json").read_text())
    assert model.name == "tiny_cvae2"
    assert model.pixel_scale == 0.03
    assert model.stamp_size == 32
    assert model.latent_size == 4
    assert model.flux_units == "counts/s"
    assert model.psf_free is True
    assert [c.name for c in model.conditions] == ["zphot"]
    cond = meta["conditions"][0]
    assert model.redshift_range == (cond["min"], cond["max"])
    assert model.flux_scale == meta["flux"]["scale"]
    assert "tiny_cvae2" in repr(model)


def test_unknown_model_name_lists_available():
    with pytest.raises(BundleError, match="no model bundle 'no_such_model'.*available"):
        galsim_vae.load_model("no_such_model")


def test_generate_is_network_output_times_flux_scale(model):
    import tensorflow as tf

    z_lo, z_hi = model.redshift_range
    redshift = np.array([z_lo, 0.5 * (z_lo + z_hi), z_hi])
    stamps = model.generate(redshift=redshift, rng=galsim.BaseDeviate(11))
    assert stamps.shape == (3, 32, 32)
    eps = np.empty(3 * model.latent_size)
    galsim.GaussianDeviate(galsim.BaseDeviate(11)).generate(eps)
    eps = eps.reshape(3, model.latent_size).astype(np.float32)
    cond = ((redshift - model.conditions[0].mean) / model.conditions[0].std)[:, None]
    cond = tf.constant(cond.astype(np.float32))
    net = model.network
    expected = net.decode(net.prior_transform(tf.constant(eps), cond), cond).numpy()[..., 0]
    np.testing.assert_allclose(stamps, expected * model.flux_scale, rtol=1e-5,
                               atol=1e-6 * np.abs(stamps).max())


def test_same_rng_same_stamps_and_batch_equals_one_by_one(model):
    a = model.generate(4, redshift=0.8, rng=galsim.BaseDeviate(5))
    b = model.generate(4, redshift=0.8, rng=5)
    np.testing.assert_array_equal(a, b)
    rng = galsim.BaseDeviate(5)
    one_by_one = np.stack([model.generate(1, redshift=0.8, rng=rng)[0] for _ in range(4)])
    np.testing.assert_array_equal(one_by_one, a)  # batch composition changes nothing
    c = model.generate(4, redshift=0.8, rng=6)
    assert not np.allclose(a, c)


def test_latent_is_used_as_is(model):
    import tensorflow as tf

    z = np.array([[0.3, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]])
    stamps = model.generate(latent=z, redshift=0.5)
    cond = tf.constant(np.full((2, 1), (0.5 - model.conditions[0].mean)
                               / model.conditions[0].std, np.float32))
    expected = model.network.decode(tf.constant(z.astype(np.float32)), cond).numpy()[..., 0]
    np.testing.assert_allclose(stamps, expected * model.flux_scale, rtol=1e-5,
                               atol=1e-6 * np.abs(stamps).max())
    with pytest.raises(ConditionError, match=r"latent must be .*shape \(2, 4\)"):
        model.generate(2, latent=np.zeros((2, 3)), redshift=0.5)


def test_redshift_out_of_range_and_clip(model):
    z_lo, z_hi = model.redshift_range
    with pytest.raises(ConditionError, match=rf"zphot=5 is outside the training range "
                                             rf"\[{z_lo:g}, {z_hi:g}\]"):
        model.generate(redshift=5.0, rng=1)
    clipped = model.generate(redshift=5.0, rng=1, clip=True)
    np.testing.assert_array_equal(clipped, model.generate(redshift=z_hi, rng=1))
    with pytest.raises(ConditionError, match="shape"):
        model.generate(3, redshift=[0.5, 0.6], rng=1)
    with pytest.raises(ConditionError, match="pass redshift"):
        model.generate(2, rng=1)


def test_model_without_conditions_refuses_redshift(unconditional_bundle):
    model = galsim_vae.load_model(unconditional_bundle)
    assert model.redshift_range is None and model.conditions == ()
    with pytest.raises(ConditionError, match="not conditioned on redshift"):
        model.generate(redshift=0.5, rng=1)
    stamps = model.generate(2, rng=3)
    assert stamps.shape == (2, 32, 32) and np.isfinite(stamps).all()


def test_sample_returns_vaegalaxies_from_one_batch(model):
    gals = model.sample(3, redshift=[0.3, 0.6, 0.9], rng=galsim.BaseDeviate(2), flux=10.0)
    stamps = model.generate(3, redshift=[0.3, 0.6, 0.9], rng=galsim.BaseDeviate(2))
    assert [type(g) for g in gals] == [galsim_vae.VAEGalaxy] * 3
    for gal, stamp, z in zip(gals, stamps, [0.3, 0.6, 0.9]):
        np.testing.assert_array_equal(gal.stamp, stamp)
        assert gal.redshift == pytest.approx(z)
        assert gal.flux == pytest.approx(10.0)


def test_nan_latent_named_as_such(conditional_bundle):
    model = galsim_vae.load_model(conditional_bundle)
    latent = np.zeros((1, model.latent_size))
    latent[0, 0] = np.nan
    with pytest.raises(ConditionError, match="1 NaN or inf"):
        model.generate(latent=latent, redshift=1.0)
