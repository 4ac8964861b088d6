"""Stand-in model bundles for the benchmarks: the shipped architecture with random weights.

The speed of the network and of the GalSim objects depends on the architecture, the stamp
size and the latent size, not on the weights, so a bundle with the architecture of the
shipped ``cvae2_cosmos_sim`` (cvae2, channels (16, 32, 64, 128), latent 32, one condition
``zphot``, RealNVP flow prior) and random weights times the same.  Used for the 128x128
sampling figures, and in place of the shipped model before it exists (``--model standin``).

The stamps of random weights are not galaxies (a softplus of noise: a smooth blob filling
the stamp), so the *drawing* figures of a stand-in are only indicative.

Usage::

    python benchmarks/standin.py OUT_DIR [--stamp-size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Architecture of the shipped ``trained/cvae2_cosmos_sim`` bundle.
SHIPPED_ARCHITECTURE = {"architecture": "cvae2", "channels": (16, 32, 64, 128),
                        "latent_size": 32, "n_conditions": 1}
#: Standardisation and training range of the redshift condition (COSMOS-like zphot).
ZPHOT = {"name": "zphot", "mean": 0.9, "std": 0.5, "min": 0.05, "max": 3.0}


def make_standin_bundle(path: str | os.PathLike, stamp_size: int = 64, *,
                        flow_prior: bool = True, seed: int = 0,
                        overwrite: bool = True) -> Path:
    """Write a bundle of the shipped architecture with random weights.

    Parameters:
        path:        bundle folder to write.
        stamp_size:  stamp side in pixels (64 as shipped; 128 for the large-stamp figures).
        flow_prior:  attach a (random, zero-initialised = identity) RealNVP flow prior, as
                     the shipped model has one. [default: True]
        seed:        seed of the random weights. [default: 0]
        overwrite:   replace an existing folder. [default: True]

    Returns:
        the bundle folder.
    """
    import tensorflow as tf

    from galsim_vae.bundle import save_bundle
    from galsim_vae.models import build_model
    from galsim_vae.models.prior import FlowPrior

    tf.keras.utils.set_random_seed(seed)
    arch = SHIPPED_ARCHITECTURE
    model = build_model(arch["architecture"], stamp_size=int(stamp_size),
                        latent_size=arch["latent_size"], channels=list(arch["channels"]),
                        n_conditions=arch["n_conditions"])
    prior = FlowPrior(arch["latent_size"], n_conditions=arch["n_conditions"], seed=seed) \
        if flow_prior else None
    return save_bundle(model, path, name=f"standin_cvae2_{stamp_size}", flux_scale=0.05,
                       flux_units="counts/s (HST ACS F814W, 1 s)", pixel_scale=0.03,
                       conditions=[ZPHOT], psf_free=True, prior=prior,
                       training_info={"note": "random weights: benchmark stand-in"},
                       overwrite=overwrite)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="bundle folder to write")
    parser.add_argument("--stamp-size", type=int, default=64)
    args = parser.parse_args(argv)
    print(make_standin_bundle(args.out, args.stamp_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
