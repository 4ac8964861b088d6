"""``galsim-vae prepare cosmos``: a data set from a GalSim-format COSMOS catalog."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cosmos`` under ``prepare``."""
    from ..data.cosmos import DEFAULT_PSF_SIZE, OVERSIZE_POLICIES, SEED_STAMP_SIZES
    from ..data.cosmos_repair import EXCLUSION_LEVELS

    parser = subparsers.add_parser(
        "cosmos", help="from a GalSim-format COSMOS catalog (galsim_download_cosmos)",
        description="Cut centred stamps, PSFs, noise variances, zphot, mag_auto and "
                    "flux_radius from a GalSim-format COSMOS catalog into a galsim-vae data "
                    "set, selecting galaxies with GalSim's COSMOSCatalog cuts.")
    parser.add_argument("--dir", required=True,
                        help="folder of the catalog and the image/PSF/noise files it names")
    parser.add_argument("--file-name", help="catalog file in --dir [default: from --sample, "
                                            "or the only real_galaxy_catalog*.fits there]")
    parser.add_argument("--sample", choices=sorted(SEED_STAMP_SIZES),
                        help="COSMOS sample: default file name and stamp size")
    parser.add_argument("--out", required=True, help="output data set folder")
    parser.add_argument("--stamp-size", type=int,
                        help="stamp side in pixels [default: 128 for 23.5, 158 for 25.2]")
    parser.add_argument("--psf-size", type=int, default=DEFAULT_PSF_SIZE,
                        help=f"PSF image side in pixels [default: {DEFAULT_PSF_SIZE}]")
    parser.add_argument("--exclusion-level", choices=EXCLUSION_LEVELS, default="marginal",
                        help="GalSim's COSMOSCatalog exclusion level [default: marginal]")
    for name, unit in (("min-hlr", "arcsec"), ("max-hlr", "arcsec"),
                       ("min-flux", "counts/s"), ("max-flux", "counts/s")):
        parser.add_argument(f"--{name}", type=float, default=0.0,
                            help=f"GalSim's cut on the Sersic-fit {name[4:]} ({unit}; 0: none)")
    parser.add_argument("--max-galaxies", type=int,
                        help="keep at most this many galaxies (the first after the cuts)")
    parser.add_argument("--psf-file", help="FITS HST PSF image given to every galaxy when the "
                                           "catalog's PSF files are missing")
    parser.add_argument("--oversize", choices=OVERSIZE_POLICIES, default="crop",
                        help="stamps larger than --stamp-size: crop (default), reject, error")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="leave out (and count) galaxies whose stamp has NaN/inf pixels "
                             "or is all zeros, or whose PSF is so or has a sum <= 0, instead "
                             "of failing")
    parser.add_argument("--no-hdu-check", dest="check_hdus", action="store_false",
                        help="trust GAL_HDU (skip the stamp_flux check and HDU repair)")
    parser.add_argument("--noise-seed", type=int, default=0, help="seed of the padding noise")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="seed of the train/validation/test split")
    parser.add_argument("--column", action="append", default=[], metavar="NAME=COLUMN",
                        type=_mapping,
                        help="take the data set's zphot, mag_auto or flux_radius from another "
                             "catalog column (e.g. --column mag_auto=HSC_i); repeatable")
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="prepare only the I-th of N blocks of the selected galaxies "
                             "(1 <= I <= N), for N jobs; join them with 'prepare merge'")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def _mapping(text: str) -> tuple[str, str]:
    name, sep, column = text.partition("=")
    if not sep or not name.strip() or not column.strip():
        raise argparse.ArgumentTypeError(f"--column {text!r}: give NAME=COLUMN, e.g. "
                                         "mag_auto=HSC_i")
    return name.strip(), column.strip()


def run(args: argparse.Namespace) -> int:
    """Prepare the data set; library errors propagate to the CLI's handler."""
    from ..data.cosmos import prepare_cosmos
    from ..data.dataset import Dataset
    from ..data.merge import parse_shard

    path = prepare_cosmos(
        args.out, args.dir, file_name=args.file_name, sample=args.sample,
        stamp_size=args.stamp_size, psf_size=args.psf_size,
        exclusion_level=args.exclusion_level, min_hlr=args.min_hlr, max_hlr=args.max_hlr,
        min_flux=args.min_flux, max_flux=args.max_flux, max_galaxies=args.max_galaxies,
        psf_file=args.psf_file, oversize=args.oversize, skip_invalid=args.skip_invalid,
        check_hdus=args.check_hdus, noise_seed=args.noise_seed, split_seed=args.split_seed,
        overwrite=args.overwrite, column_map=dict(args.column),
        shard=None if args.shard is None else parse_shard(args.shard))
    dataset = Dataset(path)
    source = dataset.meta["source"]
    print(f"wrote {dataset.n_galaxies} galaxies ({dataset.stamp_size}x{dataset.stamp_size}, "
          f"PSF {dataset.psf_size}x{dataset.psf_size}, {dataset.pixel_scale}\"/pixel) to "
          f"{str(path)!r}; rejected {source['rejected']}, "
          f"{len(source['hdu_repairs'])} HDU repairs", file=sys.stdout)
    return 0
