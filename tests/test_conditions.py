"""Conditions: one typed description and one rule, used by Python, YAML and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

import galsim
import galsim_vae
from galsim_vae.conditions import (Condition, check_values, default_role, redshift_condition,
                                   standardise)
from galsim_vae.errors import ConditionError

from test_generator import tiny_bundle

ZPHOT = Condition("zphot", mean=0.8, std=0.4, min=0.1, max=3.0)
MAG = Condition("mag_auto", mean=23.0, std=1.2, min=18.0, max=25.2)
SIZE = Condition("flux_radius", mean=10.0, std=5.0, min=2.0, max=60.0)


@pytest.mark.parametrize("name, role", [("zphot", "redshift"), ("ZPHOT", "redshift"),
                                        ("photo_z", "redshift"), ("mag_auto", "magnitude"),
                                        ("HSC_i_mag", "magnitude"), ("flux_radius", "size"),
                                        ("sersic_n", "other")])
def test_roles_come_from_catalog_names(name, role):
    assert default_role(name) == role
    assert Condition(name, 0.0, 1.0, -1.0, 1.0).role == role


def test_condition_round_trips_and_validates():
    assert ZPHOT.units == "" and MAG.units == "mag (AB)" and SIZE.units == "pixel"
    assert Condition.from_dict(ZPHOT.to_dict()) == ZPHOT
    assert Condition.from_dict({**ZPHOT.to_dict(), "count": 12}) == ZPHOT
    with pytest.raises(ConditionError, match="lacks"):
        Condition.from_dict({"name": "zphot", "mean": 0.5})
    with pytest.raises(ConditionError, match="finite"):
        Condition("zphot", float("nan"), 1.0, 0.0, 1.0)
    with pytest.raises(ConditionError, match="role"):
        Condition("zphot", 0.0, 1.0, 0.0, 1.0, role="colour")
    with pytest.raises(ConditionError, match="min <= max"):
        Condition("zphot", 0.0, 1.0, 2.0, 1.0)


def test_standardise_is_mean_and_std():
    out = standardise([ZPHOT, MAG], np.array([[1.2, 21.8], [0.8, 23.0]]))
    np.testing.assert_allclose(out, [[1.0, -1.0], [0.0, 0.0]], atol=1e-6)
    assert out.dtype == np.float32
    constant = Condition("zphot", 0.5, 0.0, 0.5, 0.5)
    np.testing.assert_allclose(standardise([constant], np.array([[0.5]])), [[0.0]])


def test_check_values_by_name_alias_arrays_and_ranges():
    conds = (ZPHOT, MAG, SIZE)
    values = check_values(conds, {"redshift": [0.5, 1.0], "mag_auto": 23.5, "flux_radius": 8},
                          2, model_name="m")
    np.testing.assert_array_equal(values, [[0.5, 23.5, 8.0], [1.0, 23.5, 8.0]])
    assert redshift_condition(conds) is ZPHOT
    assert redshift_condition((MAG,)) is None and redshift_condition((SIZE,)) is None
    other = Condition("z_best", 1.0, 0.5, 0.0, 3.0)      # a redshift by another name
    assert redshift_condition((other,)) is other
    with pytest.raises(ConditionError,
                       match=r"not conditioned on redshift \(its conditions are \[.mag_auto.\]\)"):
        check_values((MAG,), {"redshift": 0.8}, 1, model_name="m")
    with pytest.raises(ConditionError, match=r"missing: \['flux_radius'\]"):
        check_values(conds, {"zphot": 1.0, "mag_auto": 23.0}, 1)
    with pytest.raises(ConditionError, match=r"zphot in \[0.1, 3\].*unknown: \['mag'\]"):
        check_values(conds, {"zphot": 1.0, "mag": 23.0, "mag_auto": 23, "flux_radius": 5}, 1)
    with pytest.raises(ConditionError, match=r"shape \(3,\)"):
        check_values(conds, {"zphot": [1.0, 2.0], "mag_auto": 23, "flux_radius": 5}, 3)
    with pytest.raises(ConditionError, match="non-finite"):
        check_values(conds, {"zphot": 1.0, "mag_auto": np.inf, "flux_radius": 5}, 1)
    with pytest.raises(ConditionError, match=r"mag_auto=26 is outside the training range "
                                             r"\[18, 25.2\].*clip"):
        check_values(conds, {"zphot": 1.0, "mag_auto": 26.0, "flux_radius": 5}, 1)
    clipped = check_values(conds, {"zphot": 1.0, "mag_auto": 26.0, "flux_radius": 5}, 1,
                           clip=True)
    assert clipped[0, 1] == 25.2
    with pytest.raises(ConditionError, match="same condition"):
        check_values(conds, {"zphot": 1.0, "redshift": 1.0, "mag_auto": 23,
                             "flux_radius": 5}, 1)
    with pytest.raises(ConditionError, match="not conditioned on redshift"):
        check_values((), {"redshift": 1.0}, 1)


@pytest.fixture(scope="module")
def three(tiny_dataset, tmp_path_factory):
    path = tiny_bundle("three_conditions", tiny_dataset, tmp_path_factory.mktemp("three"))
    return galsim_vae.load_model(path)


def _inside(model):
    return {c.name: 0.5 * (c.min + c.max) for c in model.conditions}


def test_sample_takes_every_condition_by_name(three):
    assert three.condition_names == ("zphot", "mag_auto", "flux_radius")
    assert [c.role for c in three.conditions] == ["redshift", "magnitude", "size"]
    values = _inside(three)
    gals = three.sample(3, rng=4, **values)
    assert len(gals) == 3 and all(g.conditions == values for g in gals)
    # redshift= is an alias of zphot
    alias = three.sample(3, rng=4, redshift=values["zphot"],
                         **{k: v for k, v in values.items() if k != "zphot"})
    assert [g.stamp.tobytes() for g in alias] == [g.stamp.tobytes() for g in gals]
    # per-galaxy arrays set n
    z = np.linspace(three.conditions[0].min, three.conditions[0].max, 5)
    assert len(three.sample(rng=1, zphot=z, mag_auto=values["mag_auto"],
                            flux_radius=values["flux_radius"])) == 5
    single = galsim_vae.VAEGalaxy(three, rng=4, **values)
    # same latent and conditions; the network call has another batch size (CPU kernels
    # may round differently per batch shape: issue "Lean, fast ... reproducible")
    np.testing.assert_allclose(single.stamp, gals[0].stamp, rtol=1e-5, atol=0)
    assert single.redshift == values["zphot"]


def test_sample_from_a_catalog_table(three):
    lo = {c.name: c.min for c in three.conditions}
    hi = {c.name: c.max for c in three.conditions}
    table = Table({"ZPHOT": [lo["zphot"], hi["zphot"]],           # case-insensitive
                   "mag_auto": [lo["mag_auto"], hi["mag_auto"]],
                   "flux_radius": [lo["flux_radius"], hi["flux_radius"]],
                   "ra": [150.0, 150.1]})                           # ignored
    from_table = three.generate(catalog=table, rng=9)
    from_columns = three.generate(rng=9, zphot=table["ZPHOT"], mag_auto=table["mag_auto"],
                                  flux_radius=table["flux_radius"])
    np.testing.assert_array_equal(from_table, from_columns)
    gals = three.sample(catalog={k: [v] for k, v in lo.items()} | {"x": [1]}, rng=2)
    assert len(gals) == 1 and gals[0].conditions == lo
    with pytest.raises(ConditionError, match=r"lacks the condition column\(s\) \['flux_radius'\]"):
        three.sample(catalog=Table({"zphot": [1.0], "mag_auto": [23.0]}))
    with pytest.raises(ConditionError, match="rows"):
        three.generate(4, catalog=table)
    with pytest.raises(ConditionError, match="both"):
        three.generate(catalog=table, zphot=1.0)


def test_yaml_takes_every_condition_by_name(three, tmp_path):
    values = _inside(three)
    config = {
        "modules": ["galsim_vae"],
        "input": {"vae_model": {"file_name": str(three.path)}},
        "gal": {"type": "VAEGalaxy", "zphot": values["zphot"],
                "mag_auto": {"type": "Random", "min": values["mag_auto"] - 0.1,
                             "max": values["mag_auto"]},
                "flux_radius": values["flux_radius"]},
        "image": {"type": "Single", "size": 32, "pixel_scale": 0.03, "random_seed": 5},
    }
    image = galsim.config.BuildImage(galsim.config.CopyConfig(config))
    assert image.array.sum() != 0
    missing = galsim.config.CopyConfig(config)
    del missing["gal"]["mag_auto"]
    with pytest.raises(galsim.GalSimConfigError,
                       match="Attribute mag_auto is required for type = VAEGalaxy"):
        galsim.config.BuildImage(missing)
    alias = galsim.config.CopyConfig(config)
    alias["gal"]["redshift"] = alias["gal"].pop("zphot")
    np.testing.assert_array_equal(galsim.config.BuildImage(alias).array, image.array)
    outside = galsim.config.CopyConfig(config)
    outside["gal"]["mag_auto"] = 40.0
    with pytest.raises(ConditionError, match="mag_auto=40 is outside the training range"):
        galsim.config.BuildImage(outside)


def test_magnitude_and_zero_point_of_a_shipped_model():
    """Flux units with an AB zero point: magnitude= sets the flux, .magnitude reads it,
    in Python and YAML; flux and magnitude together, or a model without a zero point,
    are refused."""
    model = galsim_vae.load_model("cvae2_cosmos_sim")
    assert model.zero_point == 25.94 and model.band == "F814W"
    gals = model.sample(3, redshift=0.7, rng=2, magnitude=[21.0, 23.5, 25.0])
    np.testing.assert_allclose([g.magnitude for g in gals], [21.0, 23.5, 25.0], atol=1e-9)
    np.testing.assert_allclose(gals[1].flux, 10 ** (-0.4 * (23.5 - 25.94)), rtol=1e-12)
    natural = galsim_vae.VAEGalaxy(model, zphot=0.7, rng=2)
    assert natural.magnitude == pytest.approx(25.94 - 2.5 * np.log10(natural.stamp.sum()))
    with pytest.raises(ValueError, match="flux .* or magnitude .*, not both"):
        galsim_vae.VAEGalaxy(model, zphot=0.7, rng=2, flux=1.0, magnitude=22.0)
    config = {"modules": ["galsim_vae"],
              "input": {"vae_model": {"file_name": "cvae2_cosmos_sim"}},
              "gal": {"type": "VAEGalaxy", "zphot": 0.7, "magnitude": 22.5},
              "psf": {"type": "Gaussian", "fwhm": 0.1},
              "image": {"type": "Single", "size": 256, "pixel_scale": 0.03, "random_seed": 8}}
    image = galsim.config.BuildImage(config)
    assert 25.94 - 2.5 * np.log10(image.array.sum()) == pytest.approx(22.5, abs=0.05)


def test_magnitude_needs_a_zero_point(three):
    assert three.zero_point is None
    with pytest.raises(ValueError, match="no AB zero point"):
        three.sample(1, rng=1, magnitude=22.0, **_inside(three))
    with pytest.raises(ValueError, match="no AB zero point"):
        three.sample(1, rng=1, **_inside(three))[0].magnitude


def test_latent_is_readable_and_replays(three):
    values = _inside(three)
    gals = three.sample(3, rng=6, **values)
    again = galsim_vae.VAEGalaxy(three, latent=gals[2].latent, **gals[2].conditions)
    np.testing.assert_allclose(again.stamp, gals[2].stamp, rtol=1e-5,
                               atol=1e-6 * np.abs(gals[2].stamp).max())
    assert gals[2].latent.shape == (4,) and not gals[2].latent.flags.writeable
    single = galsim_vae.VAEGalaxy(three, rng=6, **values)
    np.testing.assert_allclose(single.latent, gals[0].latent, rtol=1e-6)
    import pickle

    assert np.array_equal(pickle.loads(pickle.dumps(gals[1])).latent, gals[1].latent)
