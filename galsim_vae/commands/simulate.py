"""``galsim-vae simulate``: write a simulated COSMOS survey in GalSim's catalog format."""

from __future__ import annotations

import argparse
import time


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``simulate`` sub-command."""
    parser = subparsers.add_parser(
        "simulate", help="simulate a COSMOS-format galaxy survey (bulge + disk + knots)",
        description="Simulate N HST/ACS F814W COSMOS galaxies (bulge + exponential disk with "
                    "star-forming knots, real HST PSFs, COSMOS correlated noise) and write them "
                    "as a folder that galsim.COSMOSCatalog reads like the real training "
                    "samples, with a truth table of the PSF-free parameters.")
    parser.add_argument("--n", type=int, required=True, help="number of galaxies (>= 1)")
    parser.add_argument("--out", required=True, help="output folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--sample", choices=("25.2", "23.5"), default="25.2",
                        help="F814W MAG_AUTO limit and file names (default 25.2)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes; the output does not depend on it (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--compare", nargs="*", metavar="PARAM_CATALOG_FITS", default=None,
                        help="compare mag_auto, flux_radius, zphot, Sersic n with real parameter "
                             "catalogs (_fits.fits or Sersic .asc); with no file, the packaged "
                             "real I<23.5 references")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Simulate, print where the folder is and, with ``--compare``, the comparison table."""
    from ..simulation.survey import simulate_survey
    from ..io_utils import require_file

    for name in args.compare or ():
        require_file(name, "--compare parameter catalog")  # fail before simulating
    started = time.time()
    path = simulate_survey(args.out, args.n, seed=args.seed, sample=args.sample,
                           overwrite=args.overwrite, processes=args.processes)
    print(f"wrote {args.n} simulated galaxies to {path} in {time.time() - started:.1f} s; "
          f"read with galsim.COSMOSCatalog(file_name='real_galaxy_catalog_{args.sample}.fits', "
          f"dir='{path}')")
    if args.compare is not None:
        from ..simulation.compare import compare_with_real, format_comparison

        print(format_comparison(compare_with_real(path, args.compare or None)))
    return 0
