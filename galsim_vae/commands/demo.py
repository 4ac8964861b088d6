"""``galsim-vae demo``: render the example fields and a gallery with shipped VAE models.

Runs ``field.yaml`` (a ground-based field, 0.2"/pixel, 0.7" seeing, where galaxies are
barely resolved) and ``space_field.yaml`` (0.1"/pixel, a Euclid-VIS-like PSF, the flagship
model across redshift and magnitude: morphologies are resolved), both shipped in
``galsim_vae/examples_data`` (copies of ``examples/``), through GalSim's config machinery,
and draws a gallery of PSF-free stamps of the space model across its conditions.  Writes
the FITS images, PNG previews, truth catalogs and ``gallery.png`` into one folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The bundle the ground field is rendered with when --model is not given.
DEFAULT_MODEL = "cvae2_cosmos_sim"
#: The bundle of the space field and the gallery when --space-model is not given.
DEFAULT_SPACE_MODEL = "flagship_cosmos_sim"
#: Folder the demo writes into when --out is not given.
DEFAULT_OUT = "galsim_vae_demo"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="render an example survey field of VAE galaxies",
        description="Render the example field.yaml (VAE galaxies at random positions and "
                    "redshifts, 0.7\" Kolmogorov PSF, 0.2\"/pixel TAN WCS, sky noise) and "
                    "space_field.yaml (0.1\"/pixel, Euclid-VIS-like PSF), and a gallery of "
                    "stamps across redshift and magnitude: writes field.fits/png, "
                    "space_field.fits/png, their truth catalogs and gallery.png.")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"bundle name or path [default: {DEFAULT_MODEL}]")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output folder [default: {DEFAULT_OUT}]")
    parser.add_argument("--nobjects", type=int, default=200,
                        help="number of galaxies [default: 200]")
    parser.add_argument("--size", type=int, default=1000,
                        help="image side in pixels [default: 1000]")
    parser.add_argument("--seed", type=int, default=20251125, help="random seed")
    parser.add_argument("--space-model", default=DEFAULT_SPACE_MODEL,
                        help="bundle of the space field and the gallery, conditioned on "
                             f"zphot, mag_auto and flux_radius [default: {DEFAULT_SPACE_MODEL}]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)
    return parser


def field_config(model: str, *, nobjects: int, size: int, seed: int, out_dir: str,
                 name: str = "field.yaml") -> dict:
    """A shipped example config (``field.yaml`` or ``space_field.yaml``) as a GalSim config
    dict with the given overrides."""
    import importlib.resources

    import yaml

    text = importlib.resources.files("galsim_vae").joinpath(f"examples_data/{name}").read_text()
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


def write_gallery(model_name: str, png_file: Path, seed: int) -> None:
    """PSF-free stamps of a model conditioned on zphot, mag_auto and flux_radius: rows of
    increasing redshift, columns of increasing magnitude (size from a COSMOS-like
    size-magnitude relation), asinh stretch per stamp."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..generator import load_model

    model = load_model(model_name)
    redshifts, mags = (0.3, 0.8, 1.5, 2.5), (20.5, 21.5, 22.5, 23.5, 24.5)
    fig, axes = plt.subplots(len(redshifts), len(mags), figsize=(2 * len(mags),
                                                                 2 * len(redshifts)), dpi=80)
    for i, z in enumerate(redshifts):
        m = np.array(mags)
        stamps = model.generate(len(mags), rng=seed + i, zphot=z, mag_auto=m,
                                flux_radius=10 ** (-0.12 * (m - 23.5)) * 9.0, clip=True)
        for j, stamp in enumerate(stamps):
            ax = axes[i, j]
            ax.imshow(np.arcsinh(stamp / (0.02 * stamp.max())), origin="lower", cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"z={z}, mag={mags[j]}", fontsize=8)
    fig.suptitle(f"{model.name}: PSF-free stamps, {model.stamp_size * model.pixel_scale:.2f}\" "
                 "wide", fontsize=10)
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
    space_bundle = resolve_bundle(args.space_model)
    out = Path(args.out)
    logger = logging.getLogger("galsim_vae.demo")
    with atomic_directory(out, overwrite=args.overwrite) as tmp:
        config = field_config(str(bundle), nobjects=args.nobjects, size=args.size,
                              seed=args.seed, out_dir=str(tmp))
        galsim.config.Process(config, logger=logger)
        write_preview(tmp / "field.fits", tmp / "field.png")
        space = field_config(str(space_bundle), nobjects=max(1, args.nobjects * 3 // 10),
                             size=max(64, args.size * 2 // 5), seed=args.seed,
                             out_dir=str(tmp), name="space_field.yaml")
        galsim.config.Process(space, logger=logger)
        write_preview(tmp / "space_field.fits", tmp / "space_field.png")
        write_gallery(str(space_bundle), tmp / "gallery.png", args.seed)
    for name in OUTPUTS:
        print(out / name)
    return 0


#: Files the demo writes.
OUTPUTS = ("field.fits", "field.png", "field_truth.dat", "space_field.fits",
           "space_field.png", "space_field_truth.dat", "gallery.png")
