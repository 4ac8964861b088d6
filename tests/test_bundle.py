"""Model bundles: save/load round trip, format checks, refusal of tampered bundles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from galsim_vae.bundle import (BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, REQUIRED_KEYS, list_bundles,
                               load_bundle, read_bundle, resolve_bundle, save_bundle,
                               sha256_file)
from galsim_vae.errors import BundleError, OutputExistsError

CONDITIONS = [{"name": "zphot", "mean": 1.0, "std": 0.5, "min": 0.1, "max": 2.0}]


def _tiny_model(architecture="cvae2", **extra):
    from galsim_vae.models import build_model

    return build_model(architecture, stamp_size=24, latent_size=3, channels=[4, 8],
                       n_conditions=0 if architecture == "vae" else 1, psf_free=True,
                       psf_size=7, **extra)


def _perturb(model, seed=0):
    """Give the model non-default weights (so a failed load would show)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype)
                       for w in model.get_weights()])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A cvae2 bundle with a flow prior, and the model it was saved from."""
    from galsim_vae.models.prior_fit import fit_flow_prior

    model = _tiny_model()
    _perturb(model)
    rng = np.random.default_rng(3)
    latents = rng.normal(size=(64, 3)) * [1.0, 2.0, 0.5] + [0.3, 0.0, -1.0]
    prior = fit_flow_prior(latents, rng.normal(size=(64, 1)), epochs=2, batch_size=32,
                           n_couplings=2, hidden_units=(8,), seed=1)
    model.attach_prior(prior)
    path = save_bundle(model, tmp_path_factory.mktemp("bundles") / "tiny", name="tiny",
                       flux_scale=0.25, flux_units="counts/s", pixel_scale=0.03,
                       conditions=CONDITIONS, psf_free=True, prior=prior,
                       training_info={"epochs": 3, "final": {"val_loss": 12.5}})
    return model, path


def _copy(path, tmp_path):
    return shutil.copytree(path, tmp_path / "copy")


def _edit_json(bundle, change):
    meta = json.loads((bundle / "model.json").read_text())
    change(meta)
    (bundle / "model.json").write_text(json.dumps(meta))


def test_round_trip_same_outputs(saved):
    import tensorflow as tf

    model, path = saved
    loaded, spec = load_bundle(path)
    z = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
    cond = tf.constant([[-1.0], [0.0], [0.5], [1.0], [2.0]], tf.float32)
    np.testing.assert_allclose(loaded.decode(z, cond).numpy(), model.decode(z, cond).numpy(),
                               rtol=0, atol=0)
    # the flow prior came back too: same eps -> same z
    np.testing.assert_allclose(loaded.prior_transform(z, cond).numpy(),
                               model.prior_transform(z, cond).numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(loaded.prior_transform(z, cond).numpy(), z.numpy())
    assert (spec.flux.units, spec.flux.scale) == ("counts/s", 0.25)
    assert [c.to_dict() for c in spec.conditions] == [
        {**c, "role": "redshift", "units": ""} for c in CONDITIONS]


def test_model_json_has_every_key(saved):
    _, path = saved
    meta = json.loads((path / "model.json").read_text())
    assert set(REQUIRED_KEYS) <= set(meta)
    assert meta["format"] == BUNDLE_FORMAT and meta["format_version"] == BUNDLE_FORMAT_VERSION
    assert meta["architecture"] == "cvae2"
    assert meta["hyperparameters"]["stamp_size"] == 24 == meta["stamp_size"]
    assert meta["latent_size"] == 3 and meta["pixel_scale"] == 0.03
    assert meta["psf_free"] is True and meta["hst_psf"] is None
    assert meta["prior"]["kind"] == "flow" and meta["prior"]["file"] == "prior.weights.h5"
    assert meta["prior"]["hyperparameters"]["n_couplings"] == 2
    assert set(meta["files"]) == {"weights.weights.h5", "prior.weights.h5", "README.md",
                                  "decoder_b1.tflite", "decoder_b16.tflite",
                                  "prior_b1.tflite", "prior_b16.tflite"}
    assert meta["generator"]["batches"] == [1, 16]
    assert meta["generator"]["priors"] == ["prior_b1.tflite", "prior_b16.tflite"]
    assert 0 <= meta["generator"]["max_relative_difference"] < 1e-4
    for name, digest in meta["files"].items():
        assert digest == sha256_file(path / name)
    card = (path / "README.md").read_text()
    assert "zphot" in card and "24x24" in card and "val_loss" in card and "Limits" in card


def test_hst_psf_written_when_not_psf_free(tmp_path):
    from astropy.io import fits

    model = _tiny_model("vae")
    psf = np.outer([1, 2, 1], [1, 2, 1]).astype(float)
    path = save_bundle(model, tmp_path / "b", name="b", flux_scale=1.0, flux_units="e-",
                       pixel_scale=0.05, conditions=[], psf_free=False, hst_psf=psf)
    spec = read_bundle(path)
    assert spec.hst_psf == "hst_psf.fits" and "hst_psf.fits" in spec.files
    stored = fits.getdata(path / "hst_psf.fits")
    np.testing.assert_allclose(stored, psf / psf.sum(), rtol=1e-6)
    assert spec.prior.kind == "normal" and spec.prior.file is None


def test_existing_output_refused_unless_overwrite(saved, tmp_path):
    model, path = saved
    kwargs = dict(name="x", flux_scale=1.0, flux_units="e-", pixel_scale=0.03,
                  conditions=CONDITIONS, psf_free=True)
    with pytest.raises(OutputExistsError):
        save_bundle(model, path, **kwargs)
    target = tmp_path / "again"
    save_bundle(model, target, **kwargs)
    save_bundle(model, target, **kwargs, overwrite=True)
    assert read_bundle(target).name == "x"
    with pytest.raises(BundleError, match="lacks"):
        save_bundle(model, tmp_path / "bad", **{**kwargs, "conditions": [{"name": "zphot"}]})
    assert not (tmp_path / "bad").exists()


def test_checksum_mismatch_names_the_file(saved, tmp_path):
    bundle = _copy(saved[1], tmp_path)
    data = bytearray((bundle / "weights.weights.h5").read_bytes())
    data[-100] ^= 0xFF
    (bundle / "weights.weights.h5").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"checksum mismatch .*weights\.weights\.h5"):
        load_bundle(bundle)


def test_newer_format_version_asks_to_upgrade(saved, tmp_path):
    bundle = _copy(saved[1], tmp_path)
    _edit_json(bundle, lambda m: m.update(format_version=BUNDLE_FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="upgrade galsim-vae"):
        load_bundle(bundle)


def test_missing_weights_file(saved, tmp_path):
    bundle = _copy(saved[1], tmp_path)
    (bundle / "weights.weights.h5").unlink()
    with pytest.raises(BundleError, match="lacks the file 'weights.weights.h5'"):
        load_bundle(bundle)


def test_missing_key_and_not_a_bundle(saved, tmp_path):
    bundle = _copy(saved[1], tmp_path)
    _edit_json(bundle, lambda m: m.pop("flux"))
    with pytest.raises(BundleError, match=r"lacks the keys \['flux'\]"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="not a folder"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a galsim-vae model bundle"):
        load_bundle(tmp_path / "empty")
    _edit_json(bundle, lambda m: m.update(format="keras"))
    with pytest.raises(BundleError, match="format must be"):
        load_bundle(bundle)


def test_unknown_architecture(saved, tmp_path):
    bundle = _copy(saved[1], tmp_path)
    _edit_json(bundle, lambda m: m.update(architecture="transformer"))
    with pytest.raises(BundleError, match="architecture 'transformer' is not one of"):
        load_bundle(bundle)


def test_unknown_hyperparameter(saved, tmp_path):
    bundle = _copy(saved[1], tmp_path)
    _edit_json(bundle, lambda m: m["hyperparameters"].update(dropout_rate=0.5))
    with pytest.raises(BundleError, match="cannot build 'cvae2'"):
        load_bundle(bundle)


@pytest.mark.parametrize("change, message", [
    # a Keras layer config naming a Lambda layer (would carry marshalled Python code)
    (lambda m: m["hyperparameters"].update(
        decoder_layers=[{"class_name": "Lambda", "config": {"function": "4wEAAAAA"}}]),
     "nested|serialised"),
    (lambda m: m.update(decoder={"class_name": "Lambda", "config": {"function": "x"}}),
     "class_name describes a serialised object"),
    (lambda m: m["hyperparameters"].update(output_activation="Lambda"), "names code"),
    # a base64 pickle of os.system
    (lambda m: m["hyperparameters"].update(
        output_activation="gASVIQAAAAAAAACMBXBvc2l4lIwGc3lzdGVtlJOUjAJsc5SFlFKULg=="),
     "pickled object|not a plain name"),
    (lambda m: m["prior"].update(hyperparameters={"py/object": "os.system"}),
     "py/object describes a serialised object"),
    (lambda m: m.update(hyperparameters="gASVIQAAAAAAAACM"), "names code|must be an object"),
])
def test_code_or_pickled_objects_refused(saved, tmp_path, change, message):
    bundle = _copy(saved[1], tmp_path)
    _edit_json(bundle, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_resolve_bundle(saved, tmp_path):
    _, path = saved
    assert resolve_bundle(path) == path
    assert resolve_bundle(str(path)) == path
    names = list_bundles()
    assert isinstance(names, list)
    with pytest.raises(BundleError, match=r"no model bundle 'no-such-model'.*available"):
        resolve_bundle("no-such-model")
    for name in names:
        assert (resolve_bundle(name) / "model.json").is_file()


def test_set_model_card_refreshes_checksum_and_adds_report(saved, tmp_path):
    from galsim_vae.bundle import set_model_card

    _, path = saved
    bundle = _copy(path, tmp_path)
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# report")
    set_model_card(bundle, "# tiny\n\nEvaluated.\n", extra_folders={"report": report})
    assert (bundle / "README.md").read_text() == "# tiny\n\nEvaluated.\n"
    assert (bundle / "report" / "report.md").read_text() == "# report"
    spec = read_bundle(bundle)          # checksums verified
    assert spec.files["README.md"] == sha256_file(bundle / "README.md")
    load_bundle(bundle)
    with pytest.raises(BundleError, match="plain name"):
        set_model_card(bundle, "x", extra_folders={"README.md": report})


def test_set_model_card_renames_a_run_bundle_for_shipping(saved, tmp_path):
    """A training run's bundle shipped under its public name: model.json's name changes,
    the weights and their checksums do not, and a path-like name is refused."""
    from galsim_vae.bundle import set_model_card

    _, path = saved
    bundle = _copy(path, tmp_path)
    before = read_bundle(bundle)
    set_model_card(bundle, "# public\n", name="public_name")
    after = read_bundle(bundle)
    assert after.name == "public_name" and before.name != "public_name"
    assert after.files["weights.weights.h5"] == before.files["weights.weights.h5"]
    network, _ = load_bundle(bundle)
    assert network is not None
    for bad in ("", "a/b"):
        with pytest.raises(BundleError, match="plain, non-empty name"):
            set_model_card(bundle, "x", name=bad)
    assert read_bundle(bundle).name == "public_name"
