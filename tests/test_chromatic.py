"""Chromatic VAE galaxies: one redshift conditions the model and redshifts the SED, in
YAML (GalSim's ``gal.sed.redshift``) and in Python (``VAEGalaxy * sed`` through a
bandpass)."""

from __future__ import annotations

import numpy as np
import pytest

import galsim
import galsim_vae

SED = {"file_name": "CWW_Sbc_ext.sed", "wave_type": "Ang", "flux_type": "flambda",
       "norm_flux_density": 1.0, "norm_wavelength": 600}
BANDPASS = {"file_name": "ACS_wfc_F814W.dat", "wave_type": "nm", "thin": 1e-3}


def _config(gal):
    return {"modules": ["galsim_vae"],
            "input": {"vae_model": {"file_name": "cvae2_cosmos_sim"}},
            "gal": gal, "psf": {"type": "Gaussian", "fwhm": 0.1},
            "image": {"type": "Single", "size": 64, "pixel_scale": 0.03, "random_seed": 8,
                      "bandpass": BANDPASS}}


def test_yaml_sed_redshift_conditions_the_model():
    config = _config({"type": "VAEGalaxy", "sed": dict(SED, redshift=0.8)})
    image = galsim.config.BuildImage(galsim.config.CopyConfig(config))
    assert image.array.sum() > 0
    built = galsim.config.CopyConfig(config)
    galsim.config.ProcessInput(built)
    gal, _ = galsim.config.BuildGSObject(built, "gal")
    assert isinstance(gal, galsim.ChromaticObject) and gal.sed.redshift == 0.8
    conditions = dict(gal.original.conditions)
    assert conditions.pop("zphot") == 0.8            # the SED's redshift
    model = galsim_vae.load_model("cvae2_cosmos_sim")
    drawn = {c.name: c for c in model.conditions if c.drawn is not None}
    assert set(conditions) == set(drawn)             # the rest drawn, in the training range
    for name, value in conditions.items():
        assert drawn[name].min <= value <= drawn[name].max
    outside = _config({"type": "VAEGalaxy", "sed": dict(SED, redshift=9.0)})
    with pytest.raises(galsim_vae.errors.ConditionError, match="zphot=9 is outside"):
        galsim.config.BuildImage(outside)


def test_python_vaegalaxy_times_sed_through_a_bandpass():
    model = galsim_vae.load_model("cvae2_cosmos_sim")
    bandpass = galsim.Bandpass("ACS_wfc_F814W.dat", wave_type="nm").thin(1e-3) \
        .withZeropoint("AB")
    z, mag = 0.8, 22.0
    sed = galsim.SED("CWW_Sbc_ext.sed", wave_type="Ang", flux_type="flambda") \
        .atRedshift(z).withMagnitude(mag, bandpass)
    gal = galsim_vae.VAEGalaxy(model, zphot=z, rng=3, flux=1.0) * sed
    psf = galsim.Gaussian(fwhm=0.1)
    image = galsim.Convolve(gal, psf).drawImage(bandpass, nx=256, ny=256, scale=0.03)
    # the SED sets the counts: magnitude 22 in the bandpass's AB zero point
    assert image.array.sum() == pytest.approx(10 ** (-0.4 * (mag - bandpass.zeropoint)),
                                              rel=0.02)
