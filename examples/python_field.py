"""The survey field of field.yaml through the Python API alone.

VAE galaxies at random positions and at random redshifts inside the model's training
range (all generated in one batched network call with ``GalaxyModel.sample``), randomly
rotated, convolved with a 0.7" FWHM Kolmogorov PSF, drawn on an image at 0.2"/pixel with a
TAN WCS, plus sky and CCD noise.  Writes python_field.fits and python_field_truth.fits.

    python python_field.py [--model NAME_OR_PATH] [--nobjects 200] [--size 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import galsim  # noqa: E402
import numpy as np  # noqa: E402

import galsim_vae  # noqa: E402
from galsim_vae.commands.demo import DEFAULT_MODEL  # noqa: E402

PIXEL_SCALE = 0.2      # arcsec / pixel
PSF_FWHM = 0.7         # arcsec, Kolmogorov
FLUX_FACTOR = 300.0    # model flux units (HST counts/s) -> survey ADU
SKY_LEVEL = 2000.0     # ADU / arcsec^2
GAIN, READ_NOISE = 1.7, 5.0


def make_field(model, *, nobjects: int, size: int, seed: int):
    """Return (image, truth rows) of a field of ``nobjects`` VAE galaxies."""
    rng = galsim.BaseDeviate(seed)
    ud = galsim.UniformDeviate(rng)
    world_origin = galsim.CelestialCoord(150.1 * galsim.degrees, 2.2 * galsim.degrees)
    affine = galsim.AffineTransform(PIXEL_SCALE, 0.0, 0.0, PIXEL_SCALE,
                                    origin=galsim.PositionD((size + 1) / 2, (size + 1) / 2))
    wcs = galsim.TanWCS(affine, world_origin, units=galsim.arcsec)
    image = galsim.ImageF(size, size, wcs=wcs)
    psf = galsim.Kolmogorov(fwhm=PSF_FWHM)

    z_lo, z_hi = model.redshift_range or (None, None)
    redshifts = None if z_lo is None else np.array([z_lo + (z_hi - z_lo) * ud()
                                                   for _ in range(nobjects)])
    galaxies = model.sample(nobjects, redshift=redshifts, rng=rng)  # one network call
    truth = []
    for i, gal in enumerate(galaxies):
        x, y = 1 + (size - 1) * ud(), 1 + (size - 1) * ud()
        theta = 2 * np.pi * ud() * galsim.radians
        obj = galsim.Convolve(gal.rotate(theta) * FLUX_FACTOR, psf)
        pos = galsim.PositionD(x, y)
        stamp = obj.drawImage(wcs=wcs.local(pos), center=pos)
        bounds = stamp.bounds & image.bounds
        if bounds.isDefined():
            image[bounds] += stamp[bounds]
        sky = wcs.toWorld(pos)
        truth.append((i, x, y, sky.ra.deg, sky.dec.deg,
                      np.nan if gal.redshift is None else gal.redshift, obj.flux))
    sky_pixel = SKY_LEVEL * PIXEL_SCALE**2
    image.addNoise(galsim.CCDNoise(rng, sky_level=sky_pixel, gain=GAIN, read_noise=READ_NOISE))
    return image, truth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundle name or path")
    parser.add_argument("--nobjects", type=int, default=200)
    parser.add_argument("--size", type=int, default=1000, help="image side, pixels")
    parser.add_argument("--seed", type=int, default=20251125)
    parser.add_argument("--out", default="output", help="output folder")
    args = parser.parse_args(argv)

    from astropy.table import Table

    model = galsim_vae.load_model(args.model)
    image, truth = make_field(model, nobjects=args.nobjects, size=args.size, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    image.write(str(out / "python_field.fits"))
    table = Table(rows=truth, names=("id", "x", "y", "ra", "dec", "redshift", "flux"))
    table.write(out / "python_field_truth.fits", overwrite=True)
    print(out / "python_field.fits")
    print(out / "python_field_truth.fits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
