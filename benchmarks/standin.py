"""Stand-in model bundles for the benchmarks: the shipped architecture with random weights.

The speed of the network and of the GalSim objects depends on the architecture, the stamp
size and the latent size, not on the weights, so a bundle with the architecture of the
shipped ``cvae2_cosmos_sim`` (its ``model.json`` hyper-parameters, with its conditions and
a RealNVP flow prior) and random weights times the same.  Used for sampling figures at a
stamp size other than the shipped one, and with ``--model standin``.

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

#: The shipped bundle whose architecture the stand-ins copy.
TEMPLATE = "cvae2_cosmos_sim"


def make_standin_bundle(path: str | os.PathLike, stamp_size: int = 64, *,
                        flow_prior: bool = True, seed: int = 0,
                        overwrite: bool = True) -> Path:
    """Write a bundle of the shipped architecture with random weights.

    Parameters:
        path:        bundle folder to write.
        stamp_size:  stamp side in pixels.
        flow_prior:  attach a (random, zero-initialised = identity) RealNVP flow prior, as
                     the shipped model has one. [default: True]
        seed:        seed of the random weights. [default: 0]
        overwrite:   replace an existing folder. [default: True]

    Returns:
        the bundle folder.
    """
    import tensorflow as tf

    from galsim_vae.bundle import read_bundle, resolve_bundle, save_bundle
    from galsim_vae.models import build_model
    from galsim_vae.models.prior import FlowPrior

    template = read_bundle(resolve_bundle(TEMPLATE))
    hyperparameters = dict(template.hyperparameters, stamp_size=int(stamp_size))
    tf.keras.utils.set_random_seed(seed)
    model = build_model(template.architecture, **hyperparameters)
    prior = FlowPrior(model.latent_size, n_conditions=model.n_conditions, seed=seed) \
        if flow_prior else None
    return save_bundle(model, path, name=f"standin_{template.architecture}_{stamp_size}",
                       flux_scale=template.flux.scale, flux_units=template.flux.units,
                       pixel_scale=template.pixel_scale,
                       conditions=template.conditions, psf_free=model.psf_free,
                       prior=prior,
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
