"""Milliseconds per galaxy to render the same scattered survey field with VAEGalaxy and with
GalSim's own galaxies.

One field (``--n`` galaxies scattered at random over a square image at 0.2"/pixel with the
galaxy density of ``examples/field.yaml``, Kolmogorov 0.7" PSF, fixed ``--stamp-size``
stamps, ``draw_method: auto``, CCD noise as in ``examples/field.yaml``, random rotations,
``scale_flux: 300``) is built by ``galsim.config.BuildImage`` with four galaxy types:

``vae``         ``type: VAEGalaxy`` (input ``vae_model``, batched decoding as configured,
                redshift uniform in the model's training range);
``parametric``  ``type: COSMOSGalaxy, gal_type: parametric`` (input ``cosmos_catalog``);
``real``        ``type: COSMOSGalaxy, gal_type: real`` (a ``RealGalaxy``: the HST image
                deconvolved by its PSF; ``cosmos_catalog`` without preload, as by default);
``floor``       an ``InterpolatedImage`` (same interpolants and padding as VAEGalaxy) of
                VAE stamps generated in advance: the drawing cost of a VAEGalaxy without
                the network and its bookkeeping.

Both COSMOS types read a simulated COSMOS-format catalog
(``galsim_vae.simulation.survey.simulate_survey``).  The inputs are loaded before timing and an
untimed warm-up field (the first 200 objects) of every type runs first (TensorFlow tracing,
FITS handles, GalSim's caches).  Then
``--reps`` rounds each build every type once, in an order rotated between rounds (so a burst
of load from other processes hits every type alike); the median over rounds is reported.

Each ``image.nproc`` runs in its own worker process (``field_rendering.py worker``), which
never loads TensorFlow itself when nproc > 1: the model lives in GalSim's input-manager
process, as with the ``galsim`` executable.

Usage::

    python benchmarks/field_rendering.py --model cvae2_cosmos_sim --catalog DIR \
        [--n 1000] [--reps 3] [--nproc 1 2] [--batch-size 64] [--stamp-size 48]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

import numpy as np  # noqa: E402

VARIANTS = ("vae", "parametric", "real", "floor")
PIXEL_SCALE = 0.2        # arcsec, as examples/field.yaml
DENSITY = 200 / 1000**2  # galaxies per pixel, as examples/field.yaml
SEED = 20251125
#: Objects of the untimed warm-up field (TensorFlow tracing, FITS handles, GalSim caches).
WARM_UP = 200

_FLOOR_STAMPS: dict = {}


def _build_floor(config, base, ignore, gsparams, logger):
    """Object type ``BenchPregeneratedStamp``: an InterpolatedImage of a stamp made in
    advance (object ``obj_num`` takes stamp ``obj_num`` modulo the number of stamps)."""
    import galsim

    stamps = _FLOOR_STAMPS["stamps"]
    stamp = stamps[int(base.get("obj_num", 0)) % len(stamps)]
    image = galsim.Image(np.array(stamp), scale=_FLOOR_STAMPS["pixel_scale"])
    kw = {"gsparams": galsim.GSParams(**gsparams)} if gsparams else {}
    return galsim.InterpolatedImage(image, pad_factor=4, **kw), False


def field_config(variant: str, *, n: int, stamp_size: int, nproc: int, model: str,
                 catalog: Path, batch_size: int, condition_ranges=None) -> dict:
    """The GalSim config dict of the benchmark field for one galaxy type."""
    size = int(math.ceil(math.sqrt(n / DENSITY)))
    config = {
        "psf": {"type": "Kolmogorov", "fwhm": 0.7},
        "image": {"type": "Scattered", "size": size, "nobjects": n, "random_seed": SEED,
                  "nproc": nproc, "pixel_scale": PIXEL_SCALE,
                  "noise": {"type": "CCD", "sky_level": 2000, "gain": 1.7, "read_noise": 5}},
        "stamp": {"size": stamp_size, "draw_method": "auto"},
    }
    common = {"rotate": {"type": "Random"}, "scale_flux": 300.0}
    if variant == "vae":
        config["modules"] = ["galsim_vae"]
        config["input"] = {"vae_model": {"file_name": model, "batch_size": batch_size}}
        config["gal"] = {"type": "VAEGalaxy", **common, **{
            name: {"type": "Random", "min": lo, "max": hi}
            for name, (lo, hi) in (condition_ranges or {}).items()}}
    elif variant in ("parametric", "real"):
        config["input"] = {"cosmos_catalog": {"dir": str(catalog),
                                              "file_name": "real_galaxy_catalog_25.2.fits"}}
        config["gal"] = {"type": "COSMOSGalaxy", "gal_type": variant, **common}
        if variant == "real":   # RealGalaxy(noise_pad_size=0): no noise padding to draw
            config["gal"]["noise_pad_size"] = 0
    elif variant == "floor":
        config["gal"] = {"type": "BenchPregeneratedStamp", **common}
    else:
        raise ValueError(variant)
    return config


def make_floor_stamps(model_name: str, n: int, out: Path) -> tuple[float, dict]:
    """Generate ``n`` stamps with the model (each condition uniform in its training range)
    into ``out`` (.npy); returns (pixel scale, {condition: (min, max)})."""
    import galsim

    from galsim_vae import load_model

    model = load_model(model_name)
    ranges = {c.name: (c.min, c.max) for c in model.conditions}
    values = {}
    for i, (name, (lo, hi)) in enumerate(ranges.items()):
        u = np.empty(n)
        galsim.UniformDeviate(SEED + 10 * i).generate(u)
        values[name] = lo + (hi - lo) * u
    stamps = model.generate(n, rng=SEED + 1, **values)
    np.save(out, stamps)
    return model.pixel_scale, ranges


def worker(args) -> int:
    """Time the field types in this process; print a JSON dict to stdout."""
    import galsim

    _FLOOR_STAMPS["stamps"] = np.load(args.floor_stamps)
    _FLOOR_STAMPS["pixel_scale"] = args.floor_pixel_scale
    galsim.config.RegisterObjectType("BenchPregeneratedStamp", _build_floor)
    import galsim_vae  # noqa: F401  (registers vae_model / VAEGalaxy)

    variants = args.variants
    configs = {}
    for variant in variants:
        cfg = field_config(variant, n=args.n, stamp_size=args.stamp_size, nproc=args.nproc,
                           model=args.model, catalog=Path(args.catalog),
                           batch_size=args.batch_size,
                           condition_ranges=json.loads(args.condition_ranges))
        galsim.config.ImportModules(cfg)
        galsim.config.ProcessInput(cfg)
        configs[variant] = cfg
    times: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(args.reps + 1):              # round 0: warm-up, not recorded
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for variant in order:
            cfg = galsim.config.CopyConfig(configs[variant])
            if rep == 0:   # the first WARM_UP objects of the same field
                cfg["image"] = dict(cfg["image"], nobjects=min(args.n, WARM_UP))
            start = time.perf_counter()
            galsim.config.BuildImage(cfg, image_num=0, obj_num=0)
            seconds = time.perf_counter() - start
            if rep:
                times[variant].append(seconds)
            print(f"    nproc {args.nproc} round {rep} {variant:<10} {seconds:7.2f} s",
                  file=sys.stderr, flush=True)
    counts = None
    if "vae" in configs:
        counts = configs["vae"]["_input_objs"]["vae_model"][0].getCounts()
    json.dump({"nproc": args.nproc, "n": args.n, "times": times, "vae_counts": counts},
              sys.stdout)
    return 0


def run(model: str, catalog: Path, *, n: int = 1000, reps: int = 3, nprocs=(1,),
        batch_size: int = 64, stamp_size: int = 48, variants=VARIANTS,
        workdir: Path | None = None) -> list[dict]:
    """Run one worker per nproc; returns their JSON results."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="galsim_vae_field_"))
    floor = workdir / f"floor_stamps_{n}.npy"
    # The parent loads TensorFlow only in a child, so it stays fork-safe for nproc > 1.
    code = ("import sys, json; sys.path.insert(0, %r); import field_rendering as f; "
            "print(json.dumps(f.make_floor_stamps(%r, %d, __import__('pathlib').Path(%r))))"
            % (str(Path(__file__).parent), model, n, str(floor)))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    pixel_scale, ranges = json.loads(out.strip().splitlines()[-1])
    results = []
    for nproc in nprocs:
        cmd = [sys.executable, __file__, "worker", "--model", model, "--catalog", str(catalog),
               "--n", str(n), "--reps", str(reps), "--nproc", str(nproc),
               "--batch-size", str(batch_size), "--stamp-size", str(stamp_size),
               "--floor-stamps", str(floor), "--floor-pixel-scale", str(pixel_scale),
               "--condition-ranges", json.dumps(ranges), "--variants", *variants]
        proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def format_table(results: list[dict], stamp_size: int, batch_size: int) -> str:
    """The ms-per-galaxy table (medians) with ratios to the floor and to RealGalaxy."""
    lines = []
    for res in results:
        n = res["n"]
        med = {v: float(np.median(t)) * 1000 / n for v, t in res["times"].items()}
        spread = {v: (min(t) * 1000 / n, max(t) * 1000 / n) for v, t in res["times"].items()}
        lines.append(f"field of {n} galaxies, stamps {stamp_size}x{stamp_size} at "
                     f"{PIXEL_SCALE}\"/px, Kolmogorov 0.7\" PSF, CCD noise, image.nproc "
                     f"{res['nproc']}, VAE batch_size {batch_size}; median of "
                     f"{len(next(iter(res['times'].values())))} interleaved rounds")
        header = (f"{'galaxy type':<26} {'ms/galaxy':>10} {'(min-max)':>15} "
                  f"{'/ floor':>8} {'/ real':>8}")
        lines += [header, "-" * len(header)]
        labels = {"vae": "VAEGalaxy", "parametric": "COSMOSGalaxy parametric",
                  "real": "COSMOSGalaxy real", "floor": "InterpolatedImage floor"}
        for v, ms in med.items():
            lo, hi = spread[v]
            r_floor = f"{ms / med['floor']:8.2f}" if "floor" in med else f"{'':>8}"
            r_real = f"{ms / med['real']:8.2f}" if "real" in med else f"{'':>8}"
            lines.append(f"{labels[v]:<26} {ms:>10.2f} {f'({lo:.2f}-{hi:.2f})':>15} "
                         f"{r_floor} {r_real}")
        if res.get("vae_counts"):
            c = res["vae_counts"]
            lines.append(f"VAE network calls {c['network_calls']}, stamps {c['stamps']}, "
                         f"cache hits {c['cache_hits']} (all rounds)")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "worker"])
    parser.add_argument("--model", default="cvae2_cosmos_sim")
    parser.add_argument("--catalog", required=True, help="simulated COSMOS catalog folder")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stamp-size", type=int, default=48)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--workdir")
    parser.add_argument("--floor-stamps", help=argparse.SUPPRESS)
    parser.add_argument("--floor-pixel-scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--condition-ranges", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "worker":
        args.nproc = args.nproc[0]
        return worker(args)
    results = run(args.model, Path(args.catalog), n=args.n, reps=args.reps,
                  nprocs=args.nproc, batch_size=args.batch_size, stamp_size=args.stamp_size,
                  variants=args.variants, workdir=args.workdir)
    print(format_table(results, args.stamp_size, args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
