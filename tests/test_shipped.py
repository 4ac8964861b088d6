"""The bundles shipped in trained/ load, are what their cards say, and generate."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

import galsim_vae
from galsim_vae.bundle import list_bundles, read_bundle, resolve_bundle

SHIPPED = ("cvae2_cosmos_sim", "vae_cosmos_sim")


def test_shipped_bundles_are_installed():
    assert set(SHIPPED) <= set(list_bundles())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_loads_and_generates(name):
    spec = read_bundle(resolve_bundle(name))      # checksums verified
    assert spec.pixel_scale == pytest.approx(0.03)
    assert spec.psf_free is True
    assert spec.flux.band == "F814W" and spec.flux.zero_point == 25.94
    assert spec.prior.kind == "flow"
    model = galsim_vae.load_model(name)
    # conditions the user must give (a drawn one, e.g. mag_auto, may be left out)
    required = [c.name for c in model.conditions if c.drawn is None]
    assert required == (["zphot"] if name == "cvae2_cosmos_sim" else [])
    redshift = 0.8 if model.redshift_condition else None
    stamps = model.generate(8, redshift=redshift, rng=galsim.BaseDeviate(5))
    assert stamps.shape == (8, model.stamp_size, model.stamp_size)
    assert np.all(np.isfinite(stamps))
    fluxes = stamps.sum(axis=(1, 2))
    # I<25.2 galaxies: 25.94 - 2.5 log10(flux) within a few magnitudes of the sample
    mags = 25.94 - 2.5 * np.log10(fluxes)
    assert np.all((mags > 15) & (mags < 29)), mags
    again = model.generate(8, redshift=redshift, rng=galsim.BaseDeviate(5))
    np.testing.assert_array_equal(stamps, again)
    gal = model.sample(1, redshift=redshift, rng=galsim.BaseDeviate(5))[0]
    drawn = gal.drawImage(nx=model.stamp_size, ny=model.stamp_size, scale=model.pixel_scale,
                          method="no_pixel")
    np.testing.assert_allclose(drawn.array, stamps[0], rtol=1e-4, atol=1e-6 * stamps[0].max())


def test_shipped_cvae2_refuses_redshift_outside_training_range():
    model = galsim_vae.load_model("cvae2_cosmos_sim")
    low, high = model.redshift_range
    with pytest.raises(galsim_vae.errors.ConditionError, match="outside the training range"):
        model.generate(1, redshift=high + 1.0, rng=galsim.BaseDeviate(1))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_gives_the_pinned_stamps(name):
    """The public contract across refactorings: same bundle, same rng, same stamps."""
    from conftest import TEST_DATA

    reference = np.load(TEST_DATA / "shipped_reference_stamps.npz")[name]
    model = galsim_vae.load_model(name)
    redshift = 0.8 if model.redshift_condition else None
    stamps = model.generate(4, redshift=redshift, rng=galsim.BaseDeviate(1234))[:2]
    np.testing.assert_allclose(stamps, reference, rtol=1e-5, atol=1e-6 * reference.max())


def test_format_1_bundle_is_migrated(tmp_path):
    """A format-1 model.json (conditions without role/units, flux units as text) reads as
    the current spec: roles and units from the names, band and zero point from the text;
    rewriting the card writes the current format and loads the same network."""
    import json
    import shutil

    from galsim_vae.bundle import BUNDLE_FORMAT_VERSION, set_model_card

    source = tmp_path / "format1"
    shutil.copytree(resolve_bundle("cvae2_cosmos_sim"), source,
                    ignore=shutil.ignore_patterns("report*"))
    tree = json.loads((source / "model.json").read_text())
    tree["format_version"] = 1                         # as the first bundles were written
    for condition in tree["conditions"]:
        condition.pop("role"), condition.pop("units")
    tree["flux"] = {"units": tree["flux"]["units"], "scale": tree["flux"]["scale"]}
    (source / "model.json").write_text(json.dumps(tree))
    spec = read_bundle(source)
    assert spec.format_version == 1
    assert spec.conditions[0].role == "redshift" and spec.conditions[0].name == "zphot"
    assert (spec.flux.band, spec.flux.zero_point) == ("F814W", 25.94)
    copy = tmp_path / "copy"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("report*"))
    set_model_card(copy, "# migrated\n")
    migrated = json.loads((copy / "model.json").read_text())
    assert migrated["format_version"] == BUNDLE_FORMAT_VERSION == 2
    assert migrated["conditions"][0]["role"] == "redshift"
    assert migrated["flux"]["zero_point"] == 25.94
    again = read_bundle(copy)
    assert again.conditions == spec.conditions and again.flux == spec.flux
    a = galsim_vae.load_model(source).generate(2, redshift=1.0, rng=3)
    b = galsim_vae.load_model(copy).generate(2, redshift=1.0, rng=3)
    np.testing.assert_array_equal(a, b)


def test_flagship_bundle_generates_at_its_three_conditions():
    """The flagship: conditioned on zphot, mag_auto and flux_radius with their roles and
    the F814W zero point; each galaxy in a random orientation, any angle (its latent
    row carries the orientation entry and replays it); magnitudes follow mag_auto."""
    spec = read_bundle(resolve_bundle("flagship_cosmos_sim"))      # checksums verified
    assert [c.role for c in spec.conditions] == ["redshift", "magnitude", "size"]
    assert spec.hyperparameters["sample_symmetry"] == "isotropic"
    model = galsim_vae.load_model("flagship_cosmos_sim")
    assert model.zero_point == 25.94 and model.noise_size == model.latent_size + 1
    gals = model.sample(64, zphot=0.8, mag_auto=22.0, flux_radius=12.0,
                        rng=galsim.BaseDeviate(11))
    entries = np.array([g.latent[-1] for g in gals])
    assert len({int(e) for e in entries}) == 8                # every group element drawn
    assert np.all((entries >= 0) & (entries < 8)) and len(np.unique(entries)) == 64
    mags = np.array([g.magnitude for g in gals])
    assert abs(np.median(mags) - 22.0) < 0.2, np.median(mags)
    # issue 17: within 0.2 mag of mag_auto down to the catalog's faint end (typical sizes)
    for mag_auto, flux_radius in ((23.5, 9.0), (25.0, 6.0)):
        faint = model.sample(128, zphot=0.8, mag_auto=mag_auto, flux_radius=flux_radius,
                             rng=galsim.BaseDeviate(12))
        median = np.median([g.magnitude for g in faint])
        assert abs(median - mag_auto) < 0.2, (mag_auto, median)
    replay = galsim_vae.VAEGalaxy(model, latent=gals[3].latent, **gals[3].conditions)
    np.testing.assert_allclose(replay.stamp, gals[3].stamp, rtol=1e-4,
                               atol=1e-5 * gals[3].stamp.max())
