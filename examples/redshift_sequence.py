"""One latent, redshifts from the lowest to the highest the model knows.

Draws one latent noise vector ``eps`` from a GalSim rng and decodes it, through the model's
(conditional) prior, at evenly spaced redshifts across the model's training range: the
same "galaxy" seen at each redshift.  Writes a strip PNG and a FITS cube (N, S, S) with
the redshifts in a second HDU.

    python redshift_sequence.py [--model NAME_OR_PATH] [--n 8] [--seed 1] [--out DIR]
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


def redshift_sequence(model: galsim_vae.GalaxyModel, n: int, seed: int):
    """(redshifts (n,), stamps (n, S, S)): one latent noise decoded at n redshifts."""
    if model.redshift_range is None:
        raise galsim_vae.errors.ConditionError(
            f"model {model.name!r} is not conditioned on redshift: no sequence to show")
    z_lo, z_hi = model.redshift_range
    redshifts = np.linspace(z_lo, z_hi, n)
    eps = model.latent_noise(1, galsim.BaseDeviate(seed))
    conditions = model.condition_values(n, redshifts)
    stamps = model.decode_batch(np.repeat(eps, n, axis=0), conditions, from_noise=True)
    return redshifts, stamps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="bundle name or path")
    parser.add_argument("--n", type=int, default=8, help="number of redshifts")
    parser.add_argument("--seed", type=int, default=1, help="GalSim rng seed")
    parser.add_argument("--out", default="output", help="output folder")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    model = galsim_vae.load_model(args.model)
    redshifts, stamps = redshift_sequence(model, args.n, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    header = fits.Header()
    header["MODEL"] = model.name
    header["PIXSCALE"] = (model.pixel_scale, "arcsec")
    header["BUNIT"] = model.flux_units[:68]
    header["SEED"] = args.seed
    hdus = fits.HDUList([fits.PrimaryHDU(stamps.astype(np.float32), header=header),
                         fits.BinTableHDU.from_columns(
                             [fits.Column(name="redshift", format="D", array=redshifts),
                              fits.Column(name="flux", format="D",
                                          array=stamps.sum(axis=(1, 2)))])])
    hdus.writeto(out / "redshift_sequence.fits", overwrite=True)

    vmax = np.percentile(stamps, 99.5)
    fig, axes = plt.subplots(1, args.n, figsize=(1.6 * args.n, 2.0), squeeze=False)
    for ax, z, stamp in zip(axes[0], redshifts, stamps):
        ax.imshow(np.arcsinh(stamp / (0.05 * vmax)), origin="lower", cmap="magma",
                  vmin=0, vmax=np.arcsinh(20))
        ax.set_title(f"z = {z:.2f}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{model.name}: one latent across the training redshift range", fontsize=10)
    fig.savefig(out / "redshift_sequence.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(out / "redshift_sequence.png")
    print(out / "redshift_sequence.fits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
