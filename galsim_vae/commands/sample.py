"""``galsim-vae sample MODEL --n N [--condition NAME=VALUE ...] [--catalog FILE] --out FILE.fits``:
generated stamps as a FITS cube.

The primary HDU is a cube (N, S, S) written by GalSim (``galsim.fits.readCube`` returns
the stamps at the model's pixel scale) with the model, flux units, zero point and the
seed actually used in its header; the ``GALAXIES`` table extension gives each plane's
conditions and latent vector, so any plane can be redrawn with
``VAEGalaxy(model, latent=..., **conditions)``.
"""

from __future__ import annotations

import argparse

#: Name of the table extension with the conditions and latents of every plane.
TABLE_EXTENSION = "GALAXIES"


def _condition(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name.strip():
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--condition {text!r}: give NAME=VALUE, e.g. mag_auto=23.5") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sample`` sub-command."""
    parser = subparsers.add_parser(
        "sample", help="write generated galaxy stamps to a FITS cube",
        description="Generate N galaxy stamps from a model bundle (one batched network "
                    "call) and write them as a FITS cube (N, S, S) at the model's pixel "
                    "scale, with the conditions and latents of every plane in a table "
                    "extension and the seed used in the header.")
    parser.add_argument("model", help="bundle name (shipped with galsim-vae) or bundle path")
    parser.add_argument("--n", type=int, default=None,
                        help="number of galaxies [default: 16, or one per --catalog row]")
    parser.add_argument("--condition", type=_condition, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="a condition of the model by its name, the same for every galaxy "
                             "(repeat for each condition, e.g. --condition mag_auto=23.5 "
                             "--condition zphot=0.8)")
    parser.add_argument("--redshift", type=float,
                        help="the model's redshift condition (same as --condition zphot=...)")
    parser.add_argument("--catalog", default=None, metavar="FILE",
                        help="a table (FITS, ECSV, CSV...) with one galaxy per row and a "
                             "column for each condition (other columns are ignored)")
    parser.add_argument("--clip", action="store_true",
                        help="clip conditions outside the training range into it")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the GalSim rng the latent noise is drawn from "
                             "[default: a random seed, written in the header]")
    parser.add_argument("--out", required=True, help="output FITS file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def _read_catalog(path: str):
    from astropy.table import Table

    from ..errors import InputDataError
    from ..io_utils import require_file

    require_file(path, "--catalog")
    try:
        return Table.read(path)
    except Exception as err:  # noqa: BLE001 - astropy raises many types for bad tables
        raise InputDataError(f"--catalog {path!r} is not a table astropy can read: "
                             f"{err}") from None


def run(args: argparse.Namespace) -> int:
    """Generate the stamps and write the cube atomically; prints where."""
    import secrets

    import galsim

    from ..errors import ConditionError
    from ..generator import load_model
    from ..io_utils import atomic_file, check_output_path

    if args.n is not None and args.n < 1:
        raise ConditionError(f"--n {args.n}: the number of galaxies must be at least 1")
    if args.seed is not None and not 0 < args.seed < 2**31:
        raise ConditionError(f"--seed {args.seed}: give a whole number in [1, 2^31)")
    check_output_path(args.out, overwrite=args.overwrite)
    conditions = dict(args.condition)
    if len(conditions) != len(args.condition):
        raise ConditionError("a --condition name is given twice")
    catalog = _read_catalog(args.catalog) if args.catalog else None
    n = args.n if args.n is not None or catalog is not None else 16
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31 - 2) + 1
    model = load_model(args.model)
    values, physical, _ = model.prepare_inputs(
        n, redshift=args.redshift, rng=galsim.BaseDeviate(seed), clip=args.clip,
        catalog=catalog, **conditions)
    with atomic_file(args.out, overwrite=args.overwrite) as tmp:
        _write(tmp, model, values, physical, seed)
    print(f"wrote {len(values)} stamps of {model.stamp_size}x{model.stamp_size} pixels at "
          f"{model.pixel_scale}\"/pixel ({model.flux_units}) to {args.out} (seed {seed})")
    return 0


#: Galaxies decoded and written per chunk (memory stays at a chunk whatever --n).
CHUNK = 1024


def _header(model, n: int, seed: int):
    """The cube's primary header: GalSim's own (``writeCube``: size, scale, WCS) for n
    planes, and the model, units, zero point, band, seed and count."""
    import galsim
    import numpy as np
    from astropy.io import fits

    size = model.stamp_size
    probe = fits.HDUList()
    galsim.fits.writeCube([galsim.Image(np.zeros((size, size), np.float32),
                                        scale=model.pixel_scale)], hdu_list=probe)
    header = probe[0].header.copy()
    header["NAXIS3"] = n
    header["MODEL"] = (model.name, "galsim-vae model bundle")
    header["PIXSCALE"] = (model.pixel_scale, "pixel scale [arcsec]")
    header["BUNIT"] = model.flux_units[:68]
    if model.zero_point is not None:
        header["MAGZP"] = (model.zero_point, "AB mag of one flux unit")
    if model.band is not None:
        header["FILTER"] = (model.band, "band of the training images")
    header["PSFFREE"] = (model.psf_free, "samples are PSF-free profiles")
    header["SEED"] = (seed, "GalSim rng seed of the latent noise")
    header["NGAL"] = (n, "number of stamps")
    return header


def _write(path, model, values, physical, seed: int) -> None:
    """The cube, streamed in chunks of :data:`CHUNK` decoded galaxies (a FITS primary
    array with GalSim's header, read by ``galsim.fits.readCube``), then the table
    extension of each plane's conditions, latent and flux."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from ..io_utils import progress

    n = len(values)
    stream = fits.StreamingHDU(str(path), _header(model, n, seed))
    latents, fluxes = [], []
    try:
        for start in progress(range(0, n, CHUNK), total=-(-n // CHUNK), desc="sample"):
            rows = slice(start, min(n, start + CHUNK))
            stamps, chunk_latents = model.decode_batch(
                values[rows], None if physical is None else physical[rows],
                from_noise=True, return_latents=True)
            stream.write(stamps.astype(np.float32))
            latents.append(chunk_latents)
            fluxes.append(stamps.sum(axis=(1, 2)))
    finally:
        stream.close()
    table = Table()
    table["plane"] = np.arange(n, dtype=np.int32)
    for k, name in enumerate(model.condition_names):
        table[name] = physical[:, k]
    table["latent"] = np.concatenate(latents).astype(np.float64)
    table["flux"] = np.concatenate(fluxes)
    fits.append(str(path), table.as_array(), fits.Header([("EXTNAME", TABLE_EXTENSION)]))
