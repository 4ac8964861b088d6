"""A new decoder and a new prior are one module each: registered, named by the bundle's
spec, and picked up by training-free saving, loading, generation and GalSim objects
without any other edit."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import galsim
import galsim_vae
from galsim_vae.bundle import load_bundle, read_bundle, save_bundle
from galsim_vae.models import build_model
from galsim_vae.models.registry import ARCHITECTURES, DECODERS, PRIORS, Registry


# ---- a toy decoder: one dense layer, a softplus image --------------------------------
def build_toy_decoder(stamp_size, in_features, channels, output_activation, **options):
    return keras.Sequential([keras.Input((in_features,)),
                             keras.layers.Dense(stamp_size * stamp_size, name="toy_dense"),
                             keras.layers.Activation("softplus"),
                             keras.layers.Reshape((stamp_size, stamp_size, 1))],
                            name="toy_decoder")


# ---- a toy prior: z = eps * scale + shift, learned shift ------------------------------
class ShiftPrior(keras.Model):
    def __init__(self, latent_size, n_conditions=0, scale=0.5, **kwargs):
        super().__init__(name="shift_prior", **kwargs)
        self.latent_size, self.n_conditions, self.scale = latent_size, n_conditions, scale
        self.shift = self.add_weight(shape=(latent_size,), initializer="zeros", name="shift")

    def get_config_dict(self):
        return {"latent_size": self.latent_size, "n_conditions": self.n_conditions,
                "scale": self.scale}

    def transform(self, eps, conditions=None):
        return tf.cast(eps, tf.float32) * self.scale + self.shift

    def distribution(self, conditions=None):
        import tensorflow_probability as tfp

        return tfp.distributions.MultivariateNormalDiag(
            loc=self.shift, scale_diag=tf.fill([self.latent_size], float(self.scale)))

    def call(self, eps, conditions=None):
        return self.transform(eps, conditions)


@pytest.fixture
def toy_entries():
    DECODERS.register("toy_dense", build_toy_decoder)
    PRIORS.register("toy_shift", ShiftPrior, has_weights=True)
    yield
    DECODERS.unregister("toy_dense")
    PRIORS.unregister("toy_shift")


def test_toy_decoder_and_prior_through_the_registries(toy_entries, tiny_dataset, tmp_path):
    from galsim_vae.data import Dataset

    data = Dataset(tiny_dataset)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                        n_conditions=1, decoder="toy_dense")
    assert model.decoder_cnn.name == "toy_decoder"
    prior = ShiftPrior(4, n_conditions=1)
    prior.shift.assign([1.0, -1.0, 0.5, 0.0])
    model.attach_prior(prior)
    path = save_bundle(model, tmp_path / "toy", name="toy", flux_scale=data.flux_scale,
                       flux_units="counts/s", pixel_scale=0.03,
                       conditions=[data.condition("zphot")], psf_free=True, prior=prior)
    spec = read_bundle(path)
    assert spec.hyperparameters["decoder"] == "toy_dense"
    assert spec.prior.kind == "toy_shift" and spec.prior.hyperparameters["scale"] == 0.5
    network, _ = load_bundle(path)
    np.testing.assert_array_equal(network.flow_prior.shift.numpy(), [1.0, -1.0, 0.5, 0.0])
    galaxy_model = galsim_vae.load_model(path)
    z = galaxy_model.conditions[0].mean
    eps = galaxy_model.latent_noise(3, galsim.BaseDeviate(2))
    stamps = galaxy_model.generate(3, redshift=z, rng=galsim.BaseDeviate(2))
    want = model.decode(eps * 0.5 + np.array([1.0, -1.0, 0.5, 0.0]),
                        np.zeros((3, 1), np.float32)).numpy()[..., 0] * data.flux_scale
    np.testing.assert_allclose(stamps, want, rtol=1e-5)
    gal = galaxy_model.sample(1, redshift=z, rng=1)[0]
    assert gal.drawImage(nx=32, ny=32, scale=0.03, method="no_pixel").array.sum() > 0


def test_unknown_registry_names_are_refused(tiny_dataset, tmp_path):
    from galsim_vae.errors import BundleError, GalsimVAEError

    with pytest.raises(GalsimVAEError, match="unknown decoder 'diffusion'"):
        build_model("vae", stamp_size=16, latent_size=2, channels=[4], decoder="diffusion")
    assert "diffusion" not in DECODERS and "vae" in ARCHITECTURES
    registry = Registry("thing")
    registry.register("a", "json:dumps")
    assert registry.get("a").__name__ == "dumps"
    with pytest.raises(ValueError, match="registered already"):
        registry.register("a", None)
    with pytest.raises(BundleError, match="unknown thing 'b'"):
        registry.get("b")


def test_model_declares_its_noise_shape(tiny_dataset, tmp_path):
    """The generator draws what the architecture declares (here: latent and 4 extra
    numbers per galaxy, for a decoder that draws noise of its own)."""
    from galsim_vae.data import Dataset
    from galsim_vae.models.vae import BetaVAE

    class NoisyDecoderVAE(BetaVAE):
        architecture = "noisy_vae"

        def noise_shape(self, n):
            return (int(n), self.latent_size + 4)

        def prior_transform(self, eps, conditions=None):
            return super().prior_transform(eps[:, :self.latent_size], conditions)

    ARCHITECTURES.register("noisy_vae", NoisyDecoderVAE)
    try:
        data = Dataset(tiny_dataset)
        model = build_model("noisy_vae", stamp_size=32, latent_size=2, channels=[4, 8])
        path = save_bundle(model, tmp_path / "noisy", name="noisy", flux_scale=1.0,
                           flux_units="counts/s", pixel_scale=0.03, conditions=[],
                           psf_free=True)
        galaxy_model = galsim_vae.load_model(path)
        assert galaxy_model.noise_size == 6 and galaxy_model.latent_size == 2
        assert galaxy_model.latent_noise(4, 1).shape == (4, 6)
        # draws continue in the rng stream: galaxy i uses deviates 6i .. 6i+5
        rng = galsim.BaseDeviate(3)
        one = [galaxy_model.generate(rng=rng)[0] for _ in range(2)]
        two = galaxy_model.generate(2, rng=galsim.BaseDeviate(3))
        np.testing.assert_allclose(np.stack(one), two, rtol=1e-6)
        assert data.n_galaxies > 0
    finally:
        ARCHITECTURES.unregister("noisy_vae")


def test_dihedral_sampling_orients_each_galaxy_and_replays(upright_bundle, tmp_path):
    """A bundle that samples orientations draws one more number per galaxy, turns the
    decoded profile by the group element it picks (as the training augmentation turns
    stamps), and replays from the latent row (z and the code)."""
    from galsim_vae.bundle.edit import with_generation_settings
    from galsim_vae.data.pipeline import apply_dihedral
    from galsim_vae.errors import BundleError

    plain = upright_bundle
    turned = with_generation_settings(plain, tmp_path / "turned", sample_symmetry="dihedral")
    with pytest.raises(BundleError, match="without retraining"):
        with_generation_settings(plain, tmp_path / "x", latent_size=3)
    a, b = galsim_vae.load_model(plain), galsim_vae.load_model(turned)
    assert (a.noise_size, b.noise_size) == (4, 5) and b.latent_input_sizes == (4, 5)
    z = a.conditions[0].mean
    noise = b.latent_noise(64, 3)
    latents = b.noise_to_latent(noise, np.full((64, 1), z))
    codes = latents[:, 4].astype(int)
    assert set(codes) == set(range(8))
    stamps = b.decode_batch(noise, np.full((64, 1), z))
    upright = a.decode_batch(latents[:, :4], np.full((64, 1), z), from_noise=False)
    np.testing.assert_allclose(stamps, apply_dihedral(upright, codes), rtol=1e-5, atol=1e-7)
    replay = galsim_vae.VAEGalaxy(b, latent=latents[5], zphot=z)
    np.testing.assert_allclose(replay.stamp, stamps[5], rtol=1e-5, atol=1e-7)
