"""Drawn conditions: a model trained on flux-normalised stamps (``--flux-condition
mag_auto``) whose users give only a redshift; the bundle draws the magnitude from its
training distribution given the redshift, in Python, YAML and the CLI, reproducibly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galsim_vae.condition_draw import ConditionDraw
from galsim_vae.conditions import Condition, check_values, fill_drawn
from galsim_vae.errors import ConditionError


def test_draw_follows_the_conditional_distribution():
    """Quantile tables in redshift bins reproduce p(m | z): medians and spreads per bin."""
    rng = np.random.default_rng(0)
    z = rng.uniform(0.0, 3.0, 20000)
    m = 22.0 + z + rng.normal(0.0, 0.5, z.size)
    draw = ConditionDraw.fit(m, z, "zphot")
    assert draw.given == "zphot" and len(draw.quantiles) == 20
    for z0 in (0.3, 1.5, 2.7):
        got = draw.draw(rng.standard_normal(4000), np.full(4000, z0))
        assert abs(np.median(got) - (22.0 + z0)) < 0.1
        assert abs(np.std(got) - np.sqrt(0.5**2 + 0.15**2 / 12)) < 0.1
    alone = ConditionDraw.fit(m)
    got = alone.draw(rng.standard_normal(20000))
    assert abs(np.median(got) - np.median(m)) < 0.05
    assert ConditionDraw.from_dict(json.loads(json.dumps(draw.to_dict()))) == draw


@pytest.mark.parametrize("bad", [
    {"given": None, "edges": [], "quantiles": [[1.0, 0.0]]},          # not ascending
    {"given": "zphot", "edges": [0, 1], "quantiles": [[0, 1], [0, 1]]},  # rows != bins
    {"given": None, "edges": [], "quantiles": [[0.0, float("nan")]]},
    {"given": None, "edges": []}])
def test_invalid_draw_tables_are_refused(bad):
    with pytest.raises(ConditionError, match="draw"):
        ConditionDraw.from_dict(bad)


def test_left_out_drawn_condition_is_filled_and_given_one_kept():
    draw = ConditionDraw.fit(np.linspace(20.0, 25.0, 500))
    conditions = (Condition("zphot", 1.0, 0.5, 0.0, 3.0),
                  Condition("mag_auto", 23.0, 1.0, 20.0, 25.0, drawn=draw))
    values = check_values(conditions, {"zphot": [0.5, 1.0, 2.0]}, 3)
    assert np.isnan(values[:, 1]).all()
    filled = fill_drawn(conditions, values, np.array([[-1.0], [0.0], [1.0]]))
    assert np.all(np.diff(filled[:, 1]) > 0) and abs(filled[1, 1] - 22.5) < 0.01
    given = check_values(conditions, {"zphot": 1.0, "mag_auto": 21.0}, 2)
    np.testing.assert_array_equal(fill_drawn(conditions, given, np.zeros((2, 1)))[:, 1], 21.0)
    with pytest.raises(ConditionError, match=r"drawn if not given.*missing: \[.zphot.\]"):
        check_values(conditions, {"mag_auto": 21.0}, 1)


@pytest.fixture(scope="module")
def drawn_bundle(tiny_dataset, tmp_path_factory):
    from galsim_vae.training import train

    return train(tiny_dataset, tmp_path_factory.mktemp("drawn") / "bundle",
                 architecture="cvae2", conditions=("zphot",), flux_condition="mag_auto",
                 latent_size=4, channels=[4, 8], epochs=1, batch_size=16, seed=3,
                 flow_prior=False, model_options={"output_activation": "linear"})


def test_a_redshift_only_user_gets_magnitudes_like_the_training_set(drawn_bundle, tiny_dataset):
    from astropy.table import Table

    from galsim_vae import VAEGalaxy, load_model

    meta = json.loads((drawn_bundle / "model.json").read_text())
    names = [c["name"] for c in meta["conditions"]]
    assert names == ["zphot", "mag_auto"] and "drawn" in meta["conditions"][1]
    assert meta["hyperparameters"]["flux_condition"] == 1
    model = load_model(drawn_bundle)
    galaxies = model.sample(200, rng=11, zphot=1.0)
    mags = np.array([g.conditions["mag_auto"] for g in galaxies])
    catalog = Table.read(tiny_dataset / "catalog.fits")
    train = np.asarray(catalog["mag_auto"])[np.asarray(catalog["split"]) == 0]
    assert train.min() - 1e-9 <= mags.min() and mags.max() <= train.max() + 1e-9
    assert abs(np.median(mags) - np.median(train)) < 0.3
    # the drawn magnitude sets the flux: brighter galaxies have more flux
    fluxes = np.array([g.flux for g in galaxies])
    assert np.corrcoef(mags, -2.5 * np.log10(np.clip(fluxes, 1e-6, None)))[0, 1] > 0.9
    # reproducible, and replayable from the recorded latent and conditions
    again = model.sample(200, rng=11, zphot=1.0)
    assert [g.conditions for g in again] == [g.conditions for g in galaxies]
    one = galaxies[7]
    replay = VAEGalaxy(model, latent=one.latent, **one.conditions)
    np.testing.assert_array_equal(replay.drawImage(nx=16, ny=16, scale=0.03).array,
                                  one.drawImage(nx=16, ny=16, scale=0.03).array)
    # a magnitude the user gives is used as given
    bright = model.sample(3, rng=1, zphot=1.0, mag_auto=float(train.min()))
    assert all(g.conditions["mag_auto"] == float(train.min()) for g in bright)


def test_yaml_and_cli_take_only_the_redshift(drawn_bundle, tmp_path):
    import galsim
    from astropy.io import fits

    from galsim_vae.cli import main

    config = {
        "gal": {"type": "VAEGalaxy", "redshift": 0.8},
        "image": {"type": "Single", "size": 32, "pixel_scale": 0.03, "random_seed": 5},
        "input": {"vae_model": {"file_name": str(drawn_bundle)}}}
    image = galsim.config.BuildImage(galsim.config.CopyConfig(config))
    assert image.array.sum() > 0
    again = galsim.config.BuildImage(galsim.config.CopyConfig(config))
    np.testing.assert_array_equal(image.array, again.array)
    out = tmp_path / "cube.fits"
    assert main(["sample", str(drawn_bundle), "--n", "5", "--condition", "zphot=0.8",
                 "--seed", "3", "--out", str(out)]) == 0
    with fits.open(out) as hdus:
        table = hdus[1].data
        assert np.all(np.isfinite(table["mag_auto"])) and np.all(table["zphot"] == 0.8)


def test_an_unconditional_user_gets_the_training_magnitudes(tiny_dataset, tmp_path):
    """The successor of an unconditional ``vae`` on flux-normalised stamps: ``cvae2`` with
    no given condition and a drawn ``mag_auto`` (``--conditions --flux-condition
    mag_auto``).  A user who gives nothing gets magnitudes drawn from the training split's
    distribution, in Python and in YAML, and the flux follows them."""
    import galsim
    from astropy.table import Table

    from galsim_vae import load_model
    from galsim_vae.training import train

    bundle = train(tiny_dataset, tmp_path / "bundle", architecture="cvae2", conditions=(),
                   flux_condition="mag_auto", latent_size=4, channels=[4, 8], epochs=1,
                   batch_size=16, seed=5, flow_prior=False)  # softplus: positive fluxes
    model = load_model(bundle)
    assert [c.name for c in model.conditions] == ["mag_auto"]
    galaxies = model.sample(300, rng=4)
    mags = np.array([g.conditions["mag_auto"] for g in galaxies])
    catalog = Table.read(tiny_dataset / "catalog.fits")
    train_mags = np.asarray(catalog["mag_auto"])[np.asarray(catalog["split"]) == 0]
    assert abs(np.median(mags) - np.median(train_mags)) < 0.3
    assert abs(np.std(mags) - np.std(train_mags)) < 0.3 * np.std(train_mags)
    fluxes = np.array([g.flux for g in galaxies])
    assert np.corrcoef(mags, -2.5 * np.log10(np.clip(fluxes, 1e-6, None)))[0, 1] > 0.9
    config = {"gal": {"type": "VAEGalaxy"},
              "image": {"type": "Single", "size": 32, "pixel_scale": 0.03, "random_seed": 5},
              "input": {"vae_model": {"file_name": str(bundle)}}}
    image = galsim.config.BuildImage(galsim.config.CopyConfig(config))
    assert image.array.sum() > 0
