"""The exported LiteRT generator: the sampling path without TensorFlow.

What users rely on: a bundle samples without importing TensorFlow; the exported
generator gives TensorFlow's galaxies within the tolerance recorded at export (flow prior,
decoder, flux condition, random orientation); a galaxy does not depend on the batch it
was made in; a tampered generator file is refused; older bundles get one with
``galsim-vae export``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import galsim_vae
from galsim_vae.cli import main
from galsim_vae.errors import BundleError

from test_generator import tiny_bundle

#: Stated agreement of the exported generator with TensorFlow (relative to the largest
#: pixel): float32 arithmetic in another order of operations.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def flow_dihedral_bundle(tiny_dataset, tmp_path_factory):
    """A three-condition cvae2 with a flow prior (conditioned), a flux condition and
    random orientations: every part of the exported generator."""
    import tensorflow as tf

    from galsim_vae.bundle import save_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.models import build_model
    from galsim_vae.models.prior import FlowPrior

    tf.keras.utils.set_random_seed(3)
    data = Dataset(tiny_dataset)
    conds = [data.condition(name).to_dict() for name in ("zphot", "mag_auto", "flux_radius")]
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8], n_conditions=3,
                        flux_condition=1, flux_condition_scale=0.5, sample_symmetry="dihedral")
    flow = FlowPrior(latent_size=4, n_conditions=3, n_couplings=2, hidden_units=[8], seed=1)
    model.attach_prior(flow)
    return save_bundle(model, tmp_path_factory.mktemp("lite") / "flowdi", name="flowdi",
                       conditions=conds, psf_free=True, prior=flow, flux_scale=data.flux_scale,
                       flux_units="counts/s (HST ACS F814W, AB zero point 25.94)",
                       pixel_scale=0.03)


def conditions_across(model, n: int = 70) -> dict:
    """n values of each condition across its training range."""
    return {c.name: np.linspace(c.min, c.max, n) for c in model.conditions}


def test_exported_generator_equals_tensorflow(flow_dihedral_bundle):
    import tensorflow as tf

    model = galsim_vae.load_model(flow_dihedral_bundle)
    assert model.runtime == "litert"
    recorded = model.spec.generator.max_relative_difference
    assert 0 <= recorded < TOLERANCE
    eps = model.latent_noise(70, rng=4)
    physical = model.condition_values(70, **conditions_across(model))
    stamps, latents = model.decode_batch(eps, physical, return_latents=True)
    net = model.network                              # TensorFlow, loaded on demand
    cond = tf.constant(model.standardise(physical).astype(np.float32))
    tf_latents = net.noise_to_latent(tf.constant(eps.astype(np.float32)), cond).numpy()
    np.testing.assert_allclose(latents[:, :4], tf_latents[:, :4], atol=1e-5)
    np.testing.assert_array_equal(latents[:, 4], tf_latents[:, 4])   # same orientations
    assert len(set(latents[:, 4])) > 3
    expected = net.decode_latent(tf_latents, cond).numpy()[..., 0] * model.flux_scale
    scale = np.abs(expected).max()
    assert np.abs(stamps - expected).max() <= TOLERANCE * scale


def test_exported_spline_flow_equals_tensorflow(tiny_dataset, tmp_path):
    """A flow of spline couplings (whose bin search LiteRT has no builtin for) and a
    condition-dependent shift exports, with random coupling and shift weights (non-trivial
    splines) and latents across and beyond the splines' interval: the exported prior gives
    TensorFlow's latents."""
    import tensorflow as tf

    from galsim_vae.bundle import save_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.models import build_model
    from galsim_vae.models.prior import FlowPrior

    tf.keras.utils.set_random_seed(5)
    data = Dataset(tiny_dataset)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8], n_conditions=1)
    flow = FlowPrior(latent_size=4, n_conditions=1, n_couplings=3, hidden_units=[8], seed=2,
                     spline_bins=6, condition_shift=True)
    rng = np.random.default_rng(6)
    for network in flow.coupling_networks:
        network.set_weights([rng.normal(0, 0.5, w.shape) for w in network.get_weights()])
    flow.scale.assign([0.5, 1.0, 2.0, 1.5])
    flow.condition_weights.assign(rng.normal(0, 2.0, (1, 4)))
    model.attach_prior(flow)
    bundle = save_bundle(model, tmp_path / "spline", name="spline",
                         conditions=[data.condition("zphot").to_dict()], psf_free=True,
                         prior=flow, flux_scale=data.flux_scale, pixel_scale=0.03,
                         flux_units="counts/s (HST ACS F814W, AB zero point 25.94)")
    loaded = galsim_vae.load_model(bundle)
    assert loaded.runtime == "litert" and loaded.spec.prior.hyperparameters["spline_bins"] == 6
    eps = (rng.standard_normal((40, 4)) * np.linspace(0.2, 7.0, 40)[:, None]).astype(np.float32)
    physical = loaded.condition_values(40, **conditions_across(loaded, 40))
    _, latents = loaded.decode_batch(eps, physical, return_latents=True)
    cond = tf.constant(loaded.standardise(physical).astype(np.float32))
    expected = flow.transform(eps, cond).numpy()
    assert np.abs(expected - eps).max() > 0.5                  # the splines do move points
    np.testing.assert_allclose(latents, expected, atol=1e-4, rtol=1e-5)


def test_same_galaxy_whatever_the_batch(flow_dihedral_bundle):
    """70 galaxies: four full calls of 16 and six single ones; each galaxy alone (a call
    of 1), in the batch of 70 at any row, shuffled, or re-decoded from its latent is the
    same to the last bit."""
    import galsim

    model = galsim_vae.load_model(flow_dihedral_bundle)
    across = conditions_across(model)
    together = model.generate(rng=galsim.BaseDeviate(9), **across)
    eps = model.latent_noise(70, rng=galsim.BaseDeviate(9))
    physical = model.condition_values(70, **across)
    for i in (0, 1, 63, 64, 69):
        alone = model.decode_batch(eps[i:i + 1], physical[i:i + 1])[0]
        np.testing.assert_array_equal(alone, together[i])
    shuffled = np.random.default_rng(0).permutation(70)
    np.testing.assert_array_equal(model.decode_batch(eps[shuffled], physical[shuffled]),
                                  together[shuffled])
    gals = model.sample(rng=galsim.BaseDeviate(9), **across)
    again = galsim_vae.VAEGalaxy(model, latent=gals[66].latent, **gals[66].conditions)
    np.testing.assert_array_equal(again.stamp, together[66])


def test_sampling_imports_no_tensorflow(flow_dihedral_bundle):
    code = textwrap.dedent(f"""
        import sys, galsim, galsim_vae
        model = galsim_vae.load_model({str(flow_dihedral_bundle)!r})
        mid = {{c.name: 0.5 * (c.min + c.max) for c in model.conditions}}
        gals = model.sample(3, rng=1, **mid)
        gal = galsim_vae.VAEGalaxy(model, rng=2, **mid)
        image = galsim.Convolve(gal, galsim.Gaussian(fwhm=0.1)).drawImage(scale=0.03, nx=96, ny=96)
        assert abs(image.array.sum() - gal.flux) < 0.01 * abs(gal.stamp).sum(), (image.array.sum(), gal.flux)
        print("tensorflow" in sys.modules, model.runtime)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "litert"]
    assert out.stderr == ""                        # no native start-up notices either


def test_tampered_generator_is_refused(flow_dihedral_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(flow_dihedral_bundle, copy)
    with open(copy / "decoder_b16.tflite", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="checksum mismatch .*decoder_b16.tflite"):
        galsim_vae.load_model(copy)
    (copy / "prior_b1.tflite").unlink()
    shutil.copy(flow_dihedral_bundle / "decoder_b16.tflite", copy / "decoder_b16.tflite")
    with pytest.raises(BundleError, match="lacks the file 'prior_b1.tflite'"):
        galsim_vae.load_model(copy)


def test_export_command_upgrades_an_older_bundle(tiny_dataset, tmp_path_factory, capsys):
    """A bundle without a generator samples in TensorFlow; ``galsim-vae export`` adds one
    in place, and the galaxies stay the same within the tolerance."""
    source = tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("old"))
    old = tmp_path_factory.mktemp("older") / "old"
    shutil.copytree(source, old)
    meta = json.loads((old / "model.json").read_text())
    generator = meta.pop("generator")
    for name in generator["decoders"] + (generator["priors"] or []):
        meta["files"].pop(name)
        (old / name).unlink()
    (old / "model.json").write_text(json.dumps(meta))
    before = galsim_vae.load_model(old)
    assert before.runtime == "tensorflow"
    stamps = before.generate(5, rng=3, zphot=0.7)
    assert main(["export", str(old)]) == 0
    assert "decoder_b1.tflite, decoder_b16.tflite" in capsys.readouterr().out
    after = galsim_vae.load_model(old)
    assert after.runtime == "litert"
    np.testing.assert_allclose(after.generate(5, rng=3, zphot=0.7), stamps, rtol=0,
                               atol=TOLERANCE * np.abs(stamps).max())
    assert main(["export", str(old), "--batch", "0"]) == 2
    assert "--batch 0 must be >= 1" in capsys.readouterr().err
