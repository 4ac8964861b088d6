"""``galsim-vae demo``: render the example survey field with a shipped VAE model.

Runs ``field.yaml`` (shipped in ``galsim_vae/examples_data``, a copy of
``examples/field.yaml``) through GalSim's config machinery with the chosen model and
writes the FITS image, a PNG preview and the truth catalog into one folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The bundle the demo renders with when --model is not given.
DEFAULT_MODEL = "cvae2_cosmos_sim"
#: Folder the demo writes into when --out is not given.
DEFAULT_OUT = "galsim_vae_demo"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="render an example survey field of VAE galaxies",
        description="Render the example field.yaml (VAE galaxies at random positions and "
                    "redshifts, 0.7\" Kolmogorov PSF, 0.2\"/pixel TAN WCS, sky noise): "
                    "writes field.fits, field.png and field_truth.dat.")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"bundle name or path [default: {DEFAULT_MODEL}]")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output folder [default: {DEFAULT_OUT}]")
    parser.add_argument("--nobjects", type=int, default=200,
                        help="number of galaxies [default: 200]")
    parser.add_argument("--size", type=int, default=1000,
                        help="image side in pixels [default: 1000]")
    parser.add_argument("--seed", type=int, default=20251125, help="random seed")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def field_config(model: str, *, nobjects: int, size: int, seed: int, out_dir: str) -> dict:
    """The shipped field.yaml as a GalSim config dict with the given overrides."""
    import importlib.resources

    import yaml

    text = importlib.resources.files("galsim_vae").joinpath(
        "examples_data/field.yaml").read_text()
    config = yaml.safe_load(text)
    config["input"]["vae_model"]["file_name"] = str(model)
    config["image"].update(nobjects=int(nobjects), size=int(size), random_seed=int(seed))
    config["output"]["dir"] = str(out_dir)
    return config


def write_preview(fits_file: Path, png_file: Path) -> None:
    """An asinh-stretched grey-scale PNG of the field."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from astropy.io import fits

    image = fits.getdata(fits_file).astype(float)
    sky = np.median(image)
    noise = 1.4826 * np.median(np.abs(image - sky))
    stretched = np.arcsinh((image - sky) / (3 * max(noise, 1e-30)))
    fig, ax = plt.subplots(figsize=(8, 8), dpi=100)
    ax.imshow(stretched, origin="lower", cmap="gray_r",
              vmin=-1, vmax=np.percentile(stretched, 99.8))
    ax.set_axis_off()
    ax.set_title(f"galsim-vae demo field: {fits_file.name}")
    fig.savefig(png_file, bbox_inches="tight")
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Render the field into ``--out`` atomically; prints the files written."""
    import logging

    import galsim

    from ..bundle import resolve_bundle
    from ..errors import ConditionError
    from ..io_utils import atomic_directory

    if args.nobjects < 1 or args.size < 16:
        raise ConditionError(f"--nobjects {args.nobjects} must be >= 1 and --size "
                             f"{args.size} >= 16 pixels")
    bundle = resolve_bundle(args.model)  # fails early, listing the shipped bundles
    out = Path(args.out)
    with atomic_directory(out, overwrite=args.overwrite) as tmp:
        config = field_config(str(bundle), nobjects=args.nobjects, size=args.size,
                              seed=args.seed, out_dir=str(tmp))
        logger = logging.getLogger("galsim_vae.demo")
        galsim.config.Process(config, logger=logger)
        write_preview(tmp / "field.fits", tmp / "field.png")
    for name in ("field.fits", "field.png", "field_truth.dat"):
        print(out / name)
    return 0
