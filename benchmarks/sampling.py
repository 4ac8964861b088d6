"""Galaxies per second from ``GalaxyModel.sample`` at several batch sizes, and where the time
goes: the network (``decode_batch``: flow prior + decoder), the latent noise and checks
(``prepare_inputs``), and the GalSim objects (``VAEGalaxy.from_stamp``, then what each
one does on first use, as drawing would: the residual rotation of an isotropic bundle's
stamp and the ``InterpolatedImage``, stepk/maxk).

For each model and batch size ``b``, ``sample(b)`` is called until ``--galaxies`` galaxies
(at least one call) have been made, after an untimed warm-up call of the same size (the
``tf.function`` trace).  Models are timed in interleaved rounds, the best round is kept
(the least disturbed by other processes on a shared machine).

Usage::

    python benchmarks/sampling.py MODEL [MODEL ...] [--batch-sizes 1 64 1024] \
        [--galaxies 2048] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

import numpy as np  # noqa: E402


def conditions_across(model, n: int) -> dict:
    """n values of each of the model's conditions spread over its training range."""
    return {c.name: np.linspace(c.min, c.max, n) for c in model.conditions}


def time_sample(model, batch_size: int, galaxies: int, seed: int = 1) -> dict:
    """Seconds spent per galaxy in each part of ``model.sample(batch_size)`` calls."""
    import galsim

    from galsim_vae.gsobject import VAEGalaxy

    rng = galsim.BaseDeviate(seed)
    calls = max(1, int(np.ceil(galaxies / batch_size)))
    parts = {"inputs": 0.0, "network": 0.0, "objects": 0.0, "rotation": 0.0,
             "interpolated_image": 0.0, "sample": 0.0}
    names = model.info.condition_names
    for _ in range(calls):
        conditions = conditions_across(model, batch_size)
        # the whole public call, as a user makes it
        t0 = time.perf_counter()
        gals = model.sample(batch_size, rng=rng, **conditions)
        t1 = time.perf_counter()
        parts["sample"] += t1 - t0
        # the same work split into its parts
        values, cond, from_noise = model.prepare_inputs(batch_size, rng=rng, **conditions)
        t2 = time.perf_counter()
        stamps, latents = model.decode_batch(values, cond, from_noise=from_noise,
                                             return_latents=True, turn=False)
        rotations = model.residual_rotations(latents)
        t3 = time.perf_counter()
        objs = [VAEGalaxy.from_stamp(s, model.info, conditions=None if cond is None else
                                     dict(zip(names, cond[i].tolist())),
                                     rotation=float(rotations[i]))
                for i, s in enumerate(stamps)]
        t4 = time.perf_counter()
        for g in objs:
            g.stamp  # noqa: B018  (the residual rotation of isotropic sampling)
        t5 = time.perf_counter()
        for g in objs:
            g.maxk  # noqa: B018  (builds the InterpolatedImage: stepk, maxk)
        t6 = time.perf_counter()
        parts["inputs"] += t2 - t1
        parts["network"] += t3 - t2
        parts["objects"] += t4 - t3
        parts["rotation"] += t5 - t4
        parts["interpolated_image"] += t6 - t5
        del gals, objs
    n = calls * batch_size
    return {k: v / n for k, v in parts.items()}


def run(models: list[str], batch_sizes=(1, 64, 1024), galaxies: int = 2048,
        rounds: int = 2) -> list[dict]:
    """Rows (model, stamp, batch, galaxies/s, seconds per galaxy by part)."""
    from galsim_vae import load_model

    loaded = [load_model(m) for m in models]
    for model in loaded:                          # warm-up: trace every batch shape
        for b in batch_sizes:
            model.sample(b, rng=0, **conditions_across(model, b))
    best: dict = {}
    for _ in range(rounds):
        for name, model in zip(models, loaded):
            for b in batch_sizes:
                res = time_sample(model, b, galaxies if b > 1 else min(galaxies, 200))
                key = (name, b)
                if key not in best or res["sample"] < best[key]["sample"]:
                    best[key] = res
    rows = []
    for name, model in zip(models, loaded):
        for b in batch_sizes:
            res = best[(name, b)]
            rows.append({"model": model.name, "stamp": model.stamp_size, "batch": b,
                         "per_second": 1.0 / res["sample"], **res})
    return rows


def format_table(rows: list[dict]) -> str:
    import tensorflow as tf

    header = (f"{'model':<24} {'stamp':>7} {'batch':>6} {'gal/s':>8} {'network':>8} "
              f"{'inputs':>7} {'objects':>8} {'+ rotation':>11} {'+ InterpolatedImage':>20}")
    lines = [f"GalaxyModel.sample throughput (best of interleaved rounds); TensorFlow "
             f"{tf.__version__}, {os.cpu_count()} CPU(s), intra-op threads "
             f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}",
             "network/inputs/objects: share of the sample() time; last columns: ms per "
             "galaxy, on first use (not part of sample()), to turn an isotropic bundle's "
             "stamp by its residual angle and to build the InterpolatedImage",
             header, "-" * len(header)]
    for r in rows:
        total = r["inputs"] + r["network"] + r["objects"]
        lines.append(
            f"{r['model']:<24} {r['stamp']:>3}x{r['stamp']:<3} {r['batch']:>6} "
            f"{r['per_second']:>8.0f} {100 * r['network'] / total:>7.0f}% "
            f"{100 * r['inputs'] / total:>6.0f}% {100 * r['objects'] / total:>7.0f}% "
            f"{1000 * r['rotation']:>8.2f} ms {1000 * r['interpolated_image']:>17.2f} ms")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="bundle names or paths")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--galaxies", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    rows = run(args.models, args.batch_sizes, args.galaxies, args.rounds)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
