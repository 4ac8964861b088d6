"""Shared test fixtures.

``tiny_dataset``: a small data set written with :class:`galsim_vae.data.DatasetWriter`
of GalSim exponential-disk galaxies whose half-light radius shrinks with redshift,
convolved with a Moffat PSF (the PSF image is stored per galaxy) and with Gaussian
noise of known variance: enough structure for models to learn in a few steps.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

#: Folder of the real Hubble data copied into the project (see tests/data/README.md).
TEST_DATA = Path(__file__).parent / "data"

TINY_STAMP = 32
TINY_PSF = 15
TINY_PIXEL_SCALE = 0.03  # arcsec
TINY_NOISE_SIGMA = 0.002  # flux units per pixel


def write_tiny_dataset(path: Path, *, n: int = 96, stamp_size: int = TINY_STAMP,
                       psf_size: int = TINY_PSF, seed: int = 1) -> Path:
    """Write ``n`` noisy PSF-convolved exponential disks to the data set folder ``path``."""
    import galsim

    from galsim_vae.data import DatasetWriter

    rng = np.random.default_rng(seed)
    psf = galsim.Moffat(beta=3.0, fwhm=0.1)
    psf_image = psf.drawImage(nx=psf_size, ny=psf_size, scale=TINY_PIXEL_SCALE).array
    with DatasetWriter(path, max_galaxies=n, stamp_size=stamp_size, psf_size=psf_size,
                       pixel_scale=TINY_PIXEL_SCALE, flux_units="counts/s",
                       source={"kind": "test", "generator": "tests/conftest.py"}) as writer:
        for i in range(n):
            z = rng.uniform(0.1, 2.0)
            hlr = 0.25 / (1.0 + z)  # arcsec: smaller at higher redshift
            flux = rng.uniform(0.5, 2.0)
            g1, g2 = rng.normal(0, 0.2, size=2).clip(-0.5, 0.5)
            gal = galsim.Exponential(half_light_radius=hlr, flux=flux).shear(g1=g1, g2=g2)
            image = galsim.Convolve(gal, psf).drawImage(
                nx=stamp_size, ny=stamp_size, scale=TINY_PIXEL_SCALE).array
            image = image + rng.normal(0, TINY_NOISE_SIGMA, size=image.shape)
            writer.add(image, ident=10000 + i, noise_variance=TINY_NOISE_SIGMA**2,
                       psf=psf_image, zphot=z, mag_auto=25.0 - 2.5 * np.log10(flux),
                       flux_radius=hlr / TINY_PIXEL_SCALE)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Path of a 96-galaxy 32x32 data set with PSFs and redshifts (built once per run)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "tiny_dataset")


@pytest.fixture
def upright_bundle(tiny_dataset, tmp_path) -> Path:
    """An untrained zphot-conditioned cvae2 bundle (32x32, latent 4) that samples no
    orientation: the starting point for the sampling-symmetry edits."""
    from galsim_vae.bundle import save_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.models import build_model

    data = Dataset(tiny_dataset)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                        n_conditions=1)
    return save_bundle(model, tmp_path / "plain", name="plain", flux_scale=1.0,
                       flux_units="counts/s", pixel_scale=0.03,
                       conditions=[data.condition("zphot")], psf_free=True)
