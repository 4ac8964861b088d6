"""``galsim-vae sample MODEL --n N --redshift Z --out FILE.fits``: generated stamps as a FITS cube."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sample`` sub-command."""
    parser = subparsers.add_parser(
        "sample", help="write generated galaxy stamps to a FITS cube",
        description="Generate N galaxy stamps from a model bundle (one batched network "
                    "call) and write them as a FITS cube (N, S, S) whose header gives the "
                    "pixel scale (arcsec) and the flux units.")
    parser.add_argument("model", help="bundle name (shipped with galsim-vae) or bundle path")
    parser.add_argument("--n", type=int, default=16, help="number of galaxies [default: 16]")
    parser.add_argument("--redshift", type=float,
                        help="redshift of every galaxy (conditional models; must be in the "
                             "model's training range unless --clip)")
    parser.add_argument("--clip", action="store_true",
                        help="clip a redshift outside the training range into it")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the GalSim rng the latent noise is drawn from; 0 seeds "
                             "from the clock [default: 0]")
    parser.add_argument("--out", required=True, help="output FITS file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate the stamps and write the cube atomically; prints where."""
    import galsim
    import numpy as np
    from astropy.io import fits

    from ..errors import ConditionError
    from ..generator import load_model
    from ..io_utils import atomic_file, check_output_path

    if args.n < 1:
        raise ConditionError(f"--n {args.n}: the number of galaxies must be at least 1")
    check_output_path(args.out, overwrite=args.overwrite)
    model = load_model(args.model)
    stamps = model.generate(args.n, redshift=args.redshift, clip=args.clip,
                            rng=galsim.BaseDeviate(args.seed))
    header = fits.Header()
    header["MODEL"] = (model.name, "galsim-vae model bundle")
    header["PIXSCALE"] = (model.pixel_scale, "pixel scale [arcsec]")
    header["CDELT1"] = (model.pixel_scale / 3600.0, "[deg]")
    header["CDELT2"] = (model.pixel_scale / 3600.0, "[deg]")
    header["BUNIT"] = (model.flux_units[:68], "flux units of the pixels")
    header["FLUXSCL"] = (model.flux_scale, "pixel = network output * FLUXSCL")
    header["PSFFREE"] = (model.psf_free, "samples are PSF-free profiles")
    header["SEED"] = (args.seed, "GalSim rng seed of the latent noise (0: clock)")
    if args.redshift is not None:
        used = model.condition_values(1, args.redshift, clip=args.clip)[0, 0]
        header["REDSHIFT"] = (float(used), "conditioning redshift")
    header["NGAL"] = (args.n, "number of stamps")
    with atomic_file(args.out, overwrite=args.overwrite) as tmp:
        fits.PrimaryHDU(stamps.astype(np.float32), header=header).writeto(tmp, overwrite=True)
    print(f"wrote {args.n} stamps of {model.stamp_size}x{model.stamp_size} pixels at "
          f"{model.pixel_scale}\"/pixel ({model.flux_units}) to {args.out}")
    return 0
