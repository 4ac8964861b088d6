"""``galsim-vae prepare deepfield``: a training set from a deep-field image (sep)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``deepfield`` source to ``galsim-vae prepare``."""
    parser = subparsers.add_parser(
        "deepfield", help="detect galaxies in a deep-field image and cut centred stamps",
        description="Detect sources in a deep-field image with sep, reject edge-truncated "
                    "and blended ones, and write centred, background-subtracted stamps as a "
                    "galsim-vae data set. IMAGE is a FITS file, or 'xdf' for scikit-image's "
                    "Hubble eXtreme Deep Field JPEG (uncalibrated; the XDF needs e.g. "
                    "--threshold 5 --stamp-size 32 to keep many isolated sources).")
    parser.add_argument("image", metavar="IMAGE", help="FITS image, or 'xdf'")
    parser.add_argument("--out", required=True, help="output data set folder")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--weight", metavar="W.fits", help="inverse-variance weight map")
    noise.add_argument("--rms", metavar="R.fits", help="noise sigma (RMS) map")
    parser.add_argument("--hdu", type=int, default=0, help="HDU of the image and map (default 0)")
    parser.add_argument("--pixel-scale", type=float, metavar="ARCSEC",
                        help="pixel scale when the FITS has no WCS (XDF default 0.138)")
    parser.add_argument("--stamp-size", type=int, default=64, metavar="N",
                        help="stamp side in pixels (default 64)")
    parser.add_argument("--psf-file", metavar="F.fits", help="PSF image given to every galaxy")
    parser.add_argument("--psf-pixel-scale", type=float, metavar="ARCSEC",
                        help="pixel scale of the PSF image when its WCS does not give it")
    parser.add_argument("--threshold", type=float, default=1.5, metavar="SIGMA",
                        help="detection threshold in noise sigma (default 1.5)")
    parser.add_argument("--min-area", type=int, default=5, metavar="PIXELS",
                        help="minimum connected pixels of a detection (default 5)")
    parser.add_argument("--deblend-nthresh", type=int, default=32,
                        help="deblending sub-thresholds (default 32)")
    parser.add_argument("--deblend-cont", type=float, default=0.005,
                        help="deblending minimum contrast; 1 disables deblending (default 0.005)")
    parser.add_argument("--background-box", type=int, default=64, metavar="PIXELS",
                        help="background mesh size (default 64)")
    parser.add_argument("--zeropoint", type=float, metavar="MAG",
                        help="AB zero point for mag_auto (default: from PHOTFLAM/PHOTPLAM)")
    parser.add_argument("--max-galaxies", type=int, metavar="N",
                        help="keep at most the N brightest kept galaxies")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prepare the data set and print a one-line summary."""
    from ..data.dataset import Dataset
    from ..data.deepfield import prepare_deepfield

    path = prepare_deepfield(
        args.image, args.out, weight=args.weight, rms=args.rms, hdu=args.hdu,
        pixel_scale=args.pixel_scale, stamp_size=args.stamp_size, psf_file=args.psf_file,
        psf_pixel_scale=args.psf_pixel_scale, threshold=args.threshold,
        min_area=args.min_area, deblend_nthresh=args.deblend_nthresh,
        deblend_cont=args.deblend_cont, background_box=args.background_box,
        zeropoint=args.zeropoint, max_galaxies=args.max_galaxies, split_seed=args.seed,
        overwrite=args.overwrite)
    dataset = Dataset(path)
    source = dataset.meta["source"]
    print(f"wrote {dataset!r}: detected {source['detected']}, kept {source['kept']}, "
          f"rejected {source['rejected']}")
    return 0
