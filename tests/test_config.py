"""GalSim YAML: input ``vae_model`` and object type ``VAEGalaxy``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import galsim

import galsim_vae
from galsim_vae.errors import BundleError, ConditionError
from test_generator import tiny_bundle

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory):
    return tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("bundles_config"))


@pytest.fixture(scope="module")
def model(bundle):
    return galsim_vae.load_model(bundle)


def field_config(bundle, *, nobjects=12, batch_size=64, nproc=1, size=96):
    """A small field: VAE galaxies at random positions and redshifts, Moffat PSF, noise."""
    return {
        "modules": ["galsim_vae"],
        "input": {"vae_model": {"file_name": str(bundle), "batch_size": batch_size}},
        "psf": {"type": "Moffat", "beta": 3.0, "fwhm": 0.7},
        "gal": {"type": "VAEGalaxy",
                "redshift": {"type": "Random",
                             "min": "$(@input.vae_model).getRedshiftRange()[0]",
                             "max": "$(@input.vae_model).getRedshiftRange()[1]"},
                "scale_flux": 1000.0},
        "image": {"type": "Scattered", "size": size, "nobjects": nobjects,
                  "pixel_scale": 0.2, "random_seed": 31415, "nproc": nproc,
                  "noise": {"type": "Gaussian", "sigma": 0.5}},
    }


def build_field(config):
    config = copy.deepcopy(config)
    galsim.config.ImportModules(config)
    image = galsim.config.BuildImage(config)
    return image.array.copy(), config["_input_objs"]["vae_model"][0].getCounts()


def one_galaxy(config_gal, bundle, seed):
    """Build config_gal as GalSim would for one object with rng seeded by ``seed``."""
    base = {"input": {"vae_model": {"file_name": str(bundle)}}, "gal": config_gal,
            "rng": galsim.BaseDeviate(seed), "obj_num": 0}
    galsim.config.ProcessInput(base)
    return galsim.config.BuildGSObject(base, "gal")[0]


def test_yaml_and_python_give_the_same_galaxy(model, bundle):
    gal = one_galaxy({"type": "VAEGalaxy", "redshift": 0.7, "flux": 50.0}, bundle, 123)
    expected = galsim_vae.VAEGalaxy(model, redshift=0.7, rng=galsim.BaseDeviate(123),
                                    flux=50.0)
    assert isinstance(gal, galsim_vae.VAEGalaxy)
    np.testing.assert_array_equal(gal.stamp, expected.stamp)
    assert gal == expected
    assert gal.flux == pytest.approx(50.0)


def test_yaml_latent_list_is_used_as_is(model, bundle):
    z = [0.5, -0.2, 1.0, 0.0]
    gal = one_galaxy({"type": "VAEGalaxy", "redshift": 0.4, "latent": z,
                      "x_interpolant": "lanczos5", "pad_factor": 2}, bundle, 1)
    np.testing.assert_array_equal(gal.stamp, model.generate(latent=[z], redshift=0.4)[0])
    assert gal._pad_factor == 2 and gal._x_interpolant == "lanczos5"


def test_batched_and_unbatched_fields_are_identical(bundle):
    batched, counts_b = build_field(field_config(bundle, batch_size=64))
    single, counts_1 = build_field(field_config(bundle, batch_size=1))
    np.testing.assert_array_equal(batched, single)
    assert counts_1 == {"network_calls": 12, "stamps": 12, "cache_hits": 0}
    assert counts_b["network_calls"] == 1 and counts_b["stamps"] == 12
    assert counts_b["cache_hits"] == 12
    assert batched.std() > 0.6  # galaxies on top of the 0.5 noise
    again, _ = build_field(field_config(bundle, batch_size=5))
    np.testing.assert_array_equal(again, batched)


def test_nproc_1_and_2_give_identical_images(bundle, tmp_path):
    # In a fresh process: TensorFlow does not survive fork(), so the nproc=2 run (model in
    # GalSim's input-manager process) comes before anything loads TF in the parent.
    config = field_config(bundle, nobjects=8)
    script = textwrap.dedent(f"""
        import copy, json, numpy as np, galsim
        config = json.loads({json.dumps(json.dumps(config))})
        out = {{}}
        for nproc in (2, 1):
            cfg = copy.deepcopy(config)
            cfg["image"]["nproc"] = nproc
            galsim.config.ImportModules(cfg)
            out[str(nproc)] = galsim.config.BuildImage(cfg).array
        np.savez({str(tmp_path / "out.npz")!r}, **out)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["1"], out["2"])
    assert out["1"].std() > 0.6


def test_missing_and_misspelt_fields(bundle):
    with pytest.raises(galsim.GalSimConfigError, match="redshift"):
        one_galaxy({"type": "VAEGalaxy"}, bundle, 1)
    with pytest.raises(galsim.GalSimConfigError, match="redshfit"):
        one_galaxy({"type": "VAEGalaxy", "redshift": 0.5, "redshfit": 0.5}, bundle, 1)
    with pytest.raises(galsim.GalSimConfigError, match="file_name"):
        base = {"input": {"vae_model": {"file_nam": str(bundle)}}}
        galsim.config.ProcessInput(base)
    with pytest.raises(galsim.GalSimConfigError, match="latent"):
        one_galaxy({"type": "VAEGalaxy", "redshift": 0.5, "latent": [0.0, 1.0]}, bundle, 1)


def test_unknown_model_and_out_of_range_redshift(model, bundle):
    with pytest.raises(BundleError, match="no model bundle 'not_a_model'"):
        base = {"input": {"vae_model": {"file_name": "not_a_model"}}}
        galsim.config.ProcessInput(base)
    z_lo, z_hi = model.redshift_range
    with pytest.raises(ConditionError, match=rf"VAEGalaxy \(object 0\): zphot=7 is outside "
                                             rf"the training range \[{z_lo:g}, {z_hi:g}\]"):
        one_galaxy({"type": "VAEGalaxy", "redshift": 7.0}, bundle, 1)
    clipped = one_galaxy({"type": "VAEGalaxy", "redshift": 7.0, "clip": True}, bundle, 1)
    assert clipped.redshift == pytest.approx(z_hi)
    assert clipped.assigned_redshift == 7.0


def test_model_without_conditions_in_yaml(tiny_dataset, tmp_path_factory):
    path = tiny_bundle("unconditional", tiny_dataset, tmp_path_factory.mktemp("b_uncond"))
    gal = one_galaxy({"type": "VAEGalaxy"}, path, 4)
    assert gal.redshift is None and gal.flux != 0
    with pytest.raises(ConditionError, match="not conditioned on redshift"):
        one_galaxy({"type": "VAEGalaxy", "redshift": 0.5}, path, 4)


def test_tensorflow_after_fork_from_a_tensorflow_process_is_refused(bundle, monkeypatch):
    """Sampling (LiteRT) works in a process forked from one that ran TensorFlow; running
    TensorFlow there (it would hang) is refused with the way out."""
    from galsim_vae import tf_runtime

    monkeypatch.setattr(tf_runtime, "_TF_PID", os.getpid() + 1)
    model = galsim_vae.load_model(bundle)
    assert model.generate(2, rng=1, redshift=0.5).shape[0] == 2
    with pytest.raises(BundleError, match="forked .* already ran TensorFlow.*galsim-vae export"):
        model.network


def test_truth_catalog_replays_the_same_galaxies(bundle, tmp_path):
    """A field records each galaxy's conditions and latent in GalSim's truth catalog (the
    README's ``output.truth.columns``); a second field reads them back and re-renders the
    very same galaxies under another shear."""
    from astropy.table import Table

    config = field_config(bundle, nobjects=5)
    config["image"].pop("noise")
    config["output"] = {"dir": str(tmp_path), "file_name": "field.fits",
                        "truth": {"file_name": "truth.fits",
                                  "columns": {"x": "$image_pos.x", "y": "$image_pos.y",
                                              "zphot": "gal.redshift",
                                              "latent": {"type": "VAELatent"}}}}
    galsim.config.Process(copy.deepcopy(config))
    truth = Table.read(tmp_path / "truth.fits")
    assert len(truth) == 5 and len(set(truth["latent"])) == 5   # every galaxy its own draw
    replay = copy.deepcopy(config)
    replay["input"]["catalog"] = {"file_name": str(tmp_path / "truth.fits")}
    replay["gal"] = {"type": "VAEGalaxy", "scale_flux": 1000.0,
                     "zphot": {"type": "Catalog", "col": "zphot"},
                     "latent": {"type": "Catalog", "col": "latent"}}
    replay["image"]["image_pos"] = {"type": "XY", "x": {"type": "Catalog", "col": "x"},
                                    "y": {"type": "Catalog", "col": "y"}}
    replay["output"] = {"dir": str(tmp_path), "file_name": "replay.fits"}
    galsim.config.Process(copy.deepcopy(replay))
    np.testing.assert_array_equal(galsim.fits.read(str(tmp_path / "replay.fits")).array,
                                  galsim.fits.read(str(tmp_path / "field.fits")).array)
    replay["gal"]["shear"] = {"type": "G1G2", "g1": 0.05, "g2": 0.0}
    replay["output"]["file_name"] = "sheared.fits"
    galsim.config.Process(replay)
    sheared = galsim.fits.read(str(tmp_path / "sheared.fits")).array
    assert not np.array_equal(sheared, galsim.fits.read(str(tmp_path / "field.fits")).array)
    model = galsim_vae.load_model(bundle)
    row = truth[0]
    gal = galsim_vae.VAEGalaxy(model, zphot=row["zphot"],
                               latent=[float(v) for v in row["latent"].split(",")])
    assert gal.latent_text == row["latent"]


def test_load_model_refuses_other_weights_than_the_checksum(bundle, model):
    assert galsim_vae.load_model(bundle, checksum=model.info.checksum).info == model.info
    with pytest.raises(BundleError, match="not the sha256:0000 asked for"):
        galsim_vae.load_model(bundle, checksum="sha256:0000")
