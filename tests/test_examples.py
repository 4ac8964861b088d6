"""The examples and the ``sample`` / ``demo`` commands, run small with a tiny bundle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import galsim
from astropy.io import fits
from astropy.table import Table

from galsim_vae.cli import main
from test_generator import tiny_bundle

pytest.importorskip("tensorflow")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory):
    return tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("bundles_examples"))


def run_yaml(name, bundle, out_dir, **image):
    config = yaml.safe_load((EXAMPLES / name).read_text())
    config["input"]["vae_model"]["file_name"] = str(bundle)
    config["image"].update(image)
    config["output"]["dir"] = str(out_dir)
    if "catalog" in config["input"]:
        config["input"]["catalog"]["dir"] = str(EXAMPLES)
    galsim.config.Process(config)
    return config


def test_field_yaml(bundle, tmp_path):
    from galsim_vae.commands.demo import field_config

    # the copy shipped inside the package for `galsim-vae demo` is the same file
    shipped = field_config("x", nobjects=200, size=1000, seed=20251125, out_dir="output")
    shipped["input"]["vae_model"]["file_name"] = "cvae2_cosmos_sim"
    assert shipped == yaml.safe_load((EXAMPLES / "field.yaml").read_text())
    import importlib.resources

    space = importlib.resources.files("galsim_vae").joinpath("examples_data/space_field.yaml")
    assert yaml.safe_load(space.read_text()) == yaml.safe_load(
        (EXAMPLES / "space_field.yaml").read_text())

    run_yaml("field.yaml", bundle, tmp_path, nobjects=6, size=128)
    image = galsim.fits.read(str(tmp_path / "field.fits"))
    assert image.array.shape == (128, 128)
    assert isinstance(image.wcs, galsim.GSFitsWCS)  # TAN written and read back
    scale = np.sqrt(image.wcs.pixelArea(image.true_center))
    assert scale == pytest.approx(0.2, rel=1e-6)
    truth = np.genfromtxt(tmp_path / "field_truth.dat", names=True)
    assert truth.dtype.names == ("x", "y", "ra", "dec", "redshift", "flux")
    assert len(truth) == 6
    with fits.open(tmp_path / "field.fits") as hdus:
        assert hdus[0].header["CTYPE1"].endswith("TAN")
    meta = yaml.safe_load((bundle / "model.json").read_text())
    z_lo, z_hi = meta["conditions"][0]["min"], meta["conditions"][0]["max"]
    assert ((truth["redshift"] >= z_lo) & (truth["redshift"] <= z_hi)).all()
    assert (truth["flux"] > 0).all()
    assert ((truth["x"] >= 1) & (truth["x"] <= 128)).all()


def test_wl_mock_yaml(bundle, tmp_path):
    run_yaml("wl_mock.yaml", bundle, tmp_path, nobjects=10)  # catalog x, y span 1000 pixels
    truth = Table.read(tmp_path / "wl_mock_truth.fits")
    cat = Table.read(EXAMPLES / "wl_mock_input.fits")
    assert len(truth) == 10
    np.testing.assert_allclose(truth["x"], cat["x"][:10])
    np.testing.assert_allclose(truth["redshift"], cat["redshift"][:10])
    # total shear = constant (0.02, -0.01) composed with the power-spectrum field: varies
    # from galaxy to galaxy around the constant, by a few per cent
    constant = galsim.Shear(g1=0.02, g2=-0.01)
    field = [-constant + galsim.Shear(g1=a, g2=b) for a, b in zip(truth["g1"], truth["g2"])]
    field_g1 = np.array([f.g1 for f in field])
    assert field_g1.std() > 1e-3
    assert np.abs(field_g1).max() < 0.1
    assert np.mean(truth["g1"]) == pytest.approx(0.02, abs=0.02)
    assert os.path.getsize(tmp_path / "wl_mock.fits") > 0


def test_python_scripts(bundle, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for script, args in (("redshift_sequence.py", ["--n", "4"]),
                         ("python_field.py", ["--nobjects", "5", "--size", "96"])):
        run = subprocess.run([sys.executable, str(EXAMPLES / script), "--model", str(bundle),
                              "--out", str(tmp_path), *args],
                             capture_output=True, text=True, timeout=300, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
    with fits.open(tmp_path / "redshift_sequence.fits") as hdus:
        assert hdus[0].data.shape == (4, 32, 32)
        z = hdus[1].data["redshift"]
    meta = yaml.safe_load((bundle / "model.json").read_text())
    assert z[0] == pytest.approx(meta["conditions"][0]["min"])
    assert z[-1] == pytest.approx(meta["conditions"][0]["max"])
    assert (tmp_path / "redshift_sequence.png").stat().st_size > 1000
    truth = Table.read(tmp_path / "python_field_truth.fits")
    assert len(truth) == 5 and (truth["flux"] > 0).all()
    assert galsim.fits.read(str(tmp_path / "python_field.fits")).array.shape == (96, 96)


def test_sample_command(bundle, tmp_path, capsys):
    out = tmp_path / "stamps.fits"
    assert main(["sample", str(bundle), "--n", "3", "--redshift", "0.5", "--seed", "4",
                 "--out", str(out)]) == 0
    with fits.open(out) as hdus:
        cube, header = hdus[0].data, hdus[0].header
    assert cube.shape == (3, 32, 32)
    assert header["PIXSCALE"] == 0.03 and header["BUNIT"] == "counts/s"
    import galsim_vae

    expected = galsim_vae.load_model(bundle).generate(3, redshift=0.5, rng=4)
    np.testing.assert_allclose(cube, expected, rtol=1e-6)
    assert main(["sample", str(bundle), "--n", "3", "--redshift", "0.5",
                 "--out", str(out)]) == 2  # exists
    assert main(["sample", str(bundle), "--n", "3", "--redshift", "9.0",
                 "--out", str(tmp_path / "bad.fits")]) == 2
    assert "outside the training range" in capsys.readouterr().err
    assert not (tmp_path / "bad.fits").exists()


def test_sample_cube_records_seed_conditions_and_latents(bundle, tmp_path, capsys):
    """The cube reads back with GalSim at the model's pixel scale; a random seed is chosen
    and recorded; the table extension replays every plane; conditions by name and from
    a catalog file; no astropy warnings."""
    import warnings

    import galsim_vae

    model = galsim_vae.load_model(bundle)
    z = 0.5 * sum(model.redshift_range)
    out = tmp_path / "named.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["sample", str(bundle), "--n", "2", "--condition", f"zphot={z}",
                     "--out", str(out)]) == 0
        planes = galsim.fits.readCube(str(out))
        table = Table.read(out, hdu="GALAXIES")
        seed = fits.getheader(out)["SEED"]
    assert [p.scale for p in planes] == [0.03, 0.03] and seed > 0
    assert f"(seed {seed})" in capsys.readouterr().out
    np.testing.assert_allclose([p.array for p in planes],
                               model.generate(2, zphot=z, rng=seed), rtol=1e-6)
    assert list(table["zphot"]) == [z, z] and table["latent"].shape == (2, 4)
    replay = galsim_vae.VAEGalaxy(model, latent=table["latent"][1], zphot=table["zphot"][1])
    np.testing.assert_allclose(replay.stamp, planes[1].array, rtol=1e-5,
                               atol=1e-6 * planes[1].array.max())
    catalog = tmp_path / "cat.ecsv"
    Table({"ZPHOT": [model.redshift_range[0], z, z], "ra": [1.0, 2.0, 3.0]}).write(catalog)
    out = tmp_path / "catalog.fits"
    assert main(["sample", str(bundle), "--catalog", str(catalog), "--seed", "3",
                 "--out", str(out)]) == 0
    table = Table.read(out, hdu="GALAXIES")
    assert len(table) == 3 and table["zphot"][0] == model.redshift_range[0]
    assert main(["sample", str(bundle), "--condition", "mag_auto=23", "--out",
                 str(tmp_path / "bad.fits")]) == 2
    assert "unknown: ['mag_auto']" in capsys.readouterr().err
    assert main(["sample", str(bundle), "--catalog", str(tmp_path / "none.ecsv"), "--out",
                 str(tmp_path / "bad.fits")]) == 2
    assert not (tmp_path / "bad.fits").exists()


def test_demo_command(bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(bundle), "--out", str(out), "--nobjects", "4",
                 "--size", "96"]) == 0
    printed = capsys.readouterr().out
    for name in ("field.fits", "field.png", "field_truth.dat", "space_field.fits",
                 "space_field.png", "space_field_truth.dat", "gallery.png"):
        assert (out / name).is_file() and str(out / name) in printed
    assert len(np.genfromtxt(out / "field_truth.dat", names=True)) == 4
    space = np.genfromtxt(out / "space_field_truth.dat", names=True)
    assert space.size == 1 and 20.0 <= float(space["mag_auto"]) <= 24.5
    assert galsim.fits.read(str(out / "space_field.fits")).scale == 0.1
    assert (out / "gallery.png").stat().st_size > 20000
    assert main(["demo", "--model", "no_such_model", "--out", str(tmp_path / "x")]) == 2
    assert "no model bundle 'no_such_model'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_replay_yaml_rerenders_the_space_field(tiny_dataset, tmp_path_factory):
    """space_field.yaml records each galaxy's position, conditions and latent (FITS truth);
    replay.yaml re-renders exactly those galaxies: without its shear the same image bit
    for bit, with it a different one."""
    three = tiny_bundle("three_conditions", tiny_dataset, tmp_path_factory.mktemp("replay_b"))
    out = tmp_path_factory.mktemp("replay")
    config = yaml.safe_load((EXAMPLES / "space_field.yaml").read_text())
    config["input"]["vae_model"]["file_name"] = str(three)
    meta = yaml.safe_load((three / "model.json").read_text())
    for cond in meta["conditions"]:             # the tiny bundle's training ranges
        config["gal"][cond["name"]] = {"type": "Random", "min": cond["min"], "max": cond["max"]}
    config["image"].update(nobjects=5, size=96)
    config["image"].pop("noise")
    config["output"].update(dir=str(out))
    config["output"]["truth"]["file_name"] = "space_field_truth.fits"
    config["output"]["truth"]["columns"].pop("magnitude")    # the tiny bundle has no zero point
    galsim.config.Process(config)
    truth = Table.read(out / "space_field_truth.fits")
    assert len(truth) == 5 and len(set(truth["latent"])) == 5

    replay = yaml.safe_load((EXAMPLES / "replay.yaml").read_text())
    replay["input"]["vae_model"]["file_name"] = str(three)
    replay["input"]["catalog"]["dir"] = str(out)
    replay["image"]["size"] = 96
    replay["output"]["dir"] = str(out)
    sheared = galsim.config.CopyConfig(replay)
    replay["gal"].pop("shear")
    galsim.config.Process(replay)
    original = galsim.fits.read(str(out / "space_field.fits")).array
    np.testing.assert_array_equal(galsim.fits.read(str(out / "replay.fits")).array, original)
    sheared["output"]["file_name"] = "sheared.fits"
    galsim.config.Process(sheared)
    assert not np.array_equal(galsim.fits.read(str(out / "sheared.fits")).array, original)
