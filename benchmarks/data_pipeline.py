"""Throughput of the ``tf.data`` input pipeline streaming a data set from disk.

Writes, for each stamp size, a data set of ``--n`` galaxy stamps with
:class:`galsim_vae.data.DatasetWriter` into a temporary folder, then times full passes of
:func:`galsim_vae.data.make_tf_dataset` (batch 64, shuffled, with PSFs, one condition),
without any model: images per second the pipeline can feed a training loop.

Stamps are "random but realistic": ``--unique`` GalSim bulge + disk galaxies (de
Vaucouleurs + exponential, COSMOS-like sizes and fluxes, sheared) convolved with a
Moffat PSF at 0.03"/pixel, each stamp one of them with a random 90-degree rotation/flip,
a random flux factor and fresh Gaussian noise (drawing 4,000 distinct GalSim profiles
per size would time GalSim, not the pipeline).

The pipeline is built and one batch pulled before timing, so the epochs measure
streaming, not TensorFlow's start-up.  Page cache: dropping the OS page cache needs
root.  After writing, each array file is fsync'ed and
``posix_fadvise(POSIX_FADV_DONTNEED)`` asks the kernel to evict its pages (allowed for
one's own files); so epoch 1 reads from disk as far as the kernel honours the advice,
later epochs from the page cache.  All epochs are reported.

Usage::

    python benchmarks/data_pipeline.py [--n 4000] [--sizes 128 158] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

import numpy as np  # noqa: E402

PIXEL_SCALE = 0.03  # arcsec, COSMOS ACS
PSF_SIZE = 41
NOISE_SIGMA = 0.003  # counts/s per pixel, roughly COSMOS F814W


def galaxy_templates(n: int, stamp_size: int, rng: np.random.Generator):
    """``n`` noiseless PSF-convolved bulge + disk stamps and the PSF image."""
    import galsim

    psf = galsim.Moffat(beta=3.0, fwhm=0.1)
    psf_image = psf.drawImage(nx=PSF_SIZE, ny=PSF_SIZE, scale=PIXEL_SCALE).array
    templates = np.empty((n, stamp_size, stamp_size), dtype=np.float32)
    radii = np.empty(n)
    for i in range(n):
        hlr = float(np.exp(rng.normal(np.log(0.3), 0.5)))  # arcsec
        bulge_fraction = float(rng.uniform(0.0, 0.6))
        disk = galsim.Exponential(half_light_radius=hlr).shear(
            e=float(rng.uniform(0, 0.6)), beta=float(rng.uniform(0, np.pi)) * galsim.radians)
        bulge = galsim.DeVaucouleurs(half_light_radius=0.5 * hlr)
        galaxy = (bulge_fraction * bulge + (1 - bulge_fraction) * disk).withFlux(1.0)
        templates[i] = galsim.Convolve(galaxy, psf).drawImage(
            nx=stamp_size, ny=stamp_size, scale=PIXEL_SCALE).array
        radii[i] = hlr / PIXEL_SCALE
    return templates, psf_image, radii


def write_dataset(path: Path, n: int, stamp_size: int, unique: int, seed: int) -> float:
    """Write the benchmark data set; returns the seconds it took."""
    from galsim_vae.data import DatasetWriter

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    templates, psf, radii = galaxy_templates(unique, stamp_size, rng)
    with DatasetWriter(path, max_galaxies=n, stamp_size=stamp_size, psf_size=PSF_SIZE,
                       pixel_scale=PIXEL_SCALE, flux_units="counts/s (benchmark)",
                       source={"kind": "benchmark", "script": "benchmarks/data_pipeline.py"}
                       ) as writer:
        for i in range(n):
            k = int(rng.integers(unique))
            flux = float(np.exp(rng.normal(np.log(3.0), 0.8)))
            stamp = np.rot90(templates[k], k=int(rng.integers(4)))
            if rng.integers(2):
                stamp = stamp[:, ::-1]
            stamp = flux * stamp + rng.normal(0.0, NOISE_SIGMA, stamp.shape)
            writer.add(stamp, ident=i, noise_variance=NOISE_SIGMA**2, psf=psf,
                       zphot=float(rng.uniform(0.1, 2.0)),
                       mag_auto=25.94 - 2.5 * np.log10(flux), flux_radius=radii[k])
    return time.perf_counter() - start


def evict_from_page_cache(folder: Path) -> None:
    """fsync and ``posix_fadvise(DONTNEED)`` every file of ``folder`` (no root needed)."""
    for file in folder.iterdir():
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def time_epoch(pipeline) -> tuple[int, float]:
    """(images, seconds) of one full pass."""
    count = 0
    start = time.perf_counter()
    for batch in pipeline:
        count += int(batch["image"].shape[0])
    return count, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="galaxies per data set")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 158])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--unique", type=int, default=200, help="distinct GalSim profiles")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workdir", help="folder for the data sets (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import tensorflow as tf

    from galsim_vae.data import Dataset, make_tf_dataset

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="galsim_vae_bench_"))
    rows = []
    try:
        for size in args.sizes:
            path = workdir / f"bench_{size}"
            if path.exists():
                shutil.rmtree(path)
            write_seconds = write_dataset(path, args.n, size, args.unique, args.seed)
            megabytes = sum(f.stat().st_size for f in path.iterdir()) / 1e6
            dataset = Dataset(path)
            pipeline = make_tf_dataset(dataset, None, batch_size=args.batch_size,
                                       seed=args.seed, conditions=("zphot",))
            next(iter(pipeline.take(1)))  # start-up (tracing) outside the timed epochs
            evict_from_page_cache(path)
            rates = []
            for _ in range(args.epochs):
                count, seconds = time_epoch(pipeline)
                assert count == args.n
                rates.append(count / seconds)
            rows.append((size, args.n, megabytes, write_seconds, rates))
            print(f"  {size}x{size}: written in {write_seconds:.1f} s, epochs "
                  + ", ".join(f"{r:.0f}" for r in rates) + " images/s", file=sys.stderr)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\ntf.data pipeline throughput, batch {args.batch_size}, shuffled, with PSF "
          f"({PSF_SIZE}x{PSF_SIZE}) and 1 condition; TensorFlow {tf.__version__}, "
          f"{os.cpu_count()} CPU(s)")
    header = (f"{'stamp':>9} {'galaxies':>9} {'MB on disk':>11} {'write s':>8} "
              + " ".join(f"{'epoch ' + str(e + 1) + ' img/s':>15}" for e in range(args.epochs))
              + f" {'warm MB/s':>10}")
    print(header)
    print("-" * len(header))
    for size, n, megabytes, write_seconds, rates in rows:
        stamp_mb = size * size * 4 / 1e6
        warm = float(np.median(rates[1:])) if len(rates) > 1 else rates[0]
        print(f"{size:>4}x{size:<4} {n:>9} {megabytes:>11.0f} {write_seconds:>8.1f} "
              + " ".join(f"{r:>15.0f}" for r in rates) + f" {warm * stamp_mb:>10.0f}")
    print("epoch 1 follows fsync + posix_fadvise(DONTNEED) of the files (cold cache as far "
          "as the kernel allows); later epochs read from the page cache; warm MB/s: median of "
          "the later epochs, stamps only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
