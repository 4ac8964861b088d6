"""What the learned flow prior changes in generated galaxies.

For a bundle with a flow prior and a data set: draw ``n`` latents from the flow and ``n``
from N(0, I) (the same standard-normal draws, the same held-out redshifts), decode them,
observe them like the data (each paired held-out galaxy's HST PSF and noise), encode the
result again, and measure

- the share of re-encoded latents that fall where training galaxies lie: the distance to
  the k-th nearest training latent (posterior means of the training split) is below the
  95th percentile of the same distance for held-out (test) galaxies;
- the mean HSM |g| and size of the observed stamps against the held-out galaxies.

Usage::

    python benchmarks/learned_prior.py trained/cvae2_cosmos_sim DATASET [--n 1000]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _encode_means(model, images, conditions, batch=256):
    out = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch, ..., None].astype(np.float32)
        c = None if conditions is None else conditions[start:start + batch].astype(np.float32)
        out.append(model.encode(x, c).mean().numpy())
    return np.concatenate(out)


def _decode(model, z, conditions, batch=256):
    out = []
    for start in range(0, len(z), batch):
        c = None if conditions is None else conditions[start:start + batch].astype(np.float32)
        out.append(model.decode(z[start:start + batch].astype(np.float32), c).numpy()[..., 0])
    return np.concatenate(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("dataset")
    parser.add_argument("--n", type=int, default=1000, help="generated galaxies per prior")
    parser.add_argument("--n-train", type=int, default=4000, help="training latents")
    parser.add_argument("--k", type=int, default=5, help="k of the nearest-neighbour distance")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from scipy.spatial import cKDTree

    from galsim_vae.bundle import load_bundle
    from galsim_vae.conditions import standardise
    from galsim_vae.data import Dataset
    from galsim_vae.evaluation import measure_morphology, observe_like_data

    model, spec = load_bundle(args.bundle)
    if model.flow_prior is None:
        raise SystemExit(f"{args.bundle} has no learned prior")
    data = Dataset(args.dataset)
    names = [c.name for c in spec.conditions]
    rng = np.random.default_rng(args.seed)
    scale = spec.flux.scale

    def conditions_of(rows):
        if not names:
            return None
        raw = np.stack([np.asarray(data.catalog[n], float)[rows] for n in names], axis=-1)
        return standardise(spec.conditions, raw)

    finite = tuple(names)
    train = rng.choice(data.indices("train", require_finite=finite), args.n_train, replace=False)
    test = data.indices("test", require_finite=finite)
    train = np.sort(train)
    train_z = _encode_means(model, np.asarray(data.images[train]) / scale, conditions_of(train))
    test_z = _encode_means(model, np.asarray(data.images[test]) / scale, conditions_of(test))
    tree = cKDTree(train_z)
    threshold = np.percentile(tree.query(test_z, k=args.k)[0][:, -1], 95)

    paired = np.sort(rng.choice(test, args.n, replace=True))
    cond = conditions_of(paired)
    eps = rng.standard_normal((args.n, model.latent_size)).astype(np.float32)
    psfs = np.asarray(data.psfs[paired])
    sigma = np.sqrt(np.asarray(data.catalog["noise_variance"], float)[paired])
    held = np.asarray(data.images[paired])
    rows = []
    for label, z in (("flow prior", model.prior_transform(eps, cond).numpy()),
                     ("N(0, I)", eps)):
        profiles = _decode(model, z, cond) * scale
        observed = observe_like_data(profiles, psfs, sigma, args.seed + 1)
        encoded = _encode_means(model, observed / scale, cond)
        distance = tree.query(encoded, k=args.k)[0][:, -1]
        stats = measure_morphology(observed, pixel_scale=data.pixel_scale, noise_sigma=sigma,
                                   nonparametric=False)
        ok = stats["flag"] == 0
        rows.append((label, float(np.mean(distance <= threshold)), float(np.mean(stats["g"][ok])),
                     float(np.mean(stats["sigma_arcsec"][ok])), float(np.mean(profiles.sum((1, 2))))))
    ref = measure_morphology(held, pixel_scale=data.pixel_scale, noise_sigma=sigma,
                             nonparametric=False)
    ok = ref["flag"] == 0
    rows.append(("held-out data", float("nan"), float(np.mean(ref["g"][ok])),
                 float(np.mean(ref["sigma_arcsec"][ok])), float(np.mean(held.sum((1, 2))))))
    print(f"{args.bundle} on {args.dataset}: {args.n} galaxies per prior, k={args.k}, "
          f"training-support threshold {threshold:.3g} (95th percentile of held-out)")
    header = ("sample", "in support", "mean |g|", "mean sigma [arcsec]", "mean flux")
    print(f"{header[0]:<16} {header[1]:>10} {header[2]:>9} {header[3]:>20} {header[4]:>10}")
    for label, share, g, size, flux in rows:
        print(f"{label:<16} {share:>10.3f} {g:>9.4f} {size:>20.4f} {flux:>10.3f}")


if __name__ == "__main__":
    main()
