"""Memory held by each drawn and kept galaxy object: VAEGalaxy beside GalSim's RealGalaxy.

A catalogue builder that keeps its galaxies (to redraw them under other shears or PSFs)
holds every object it made.  Each case runs in a fresh process: ``--n`` galaxies are made,
each drawn once (0.7" Kolmogorov PSF, 48x48 pixels at 0.2") and kept in a list; the
resident memory (RSS) grown from just before the first to after the last, divided by
``--n``, is the memory per kept object.

``VAEGalaxy``   from ``GalaxyModel.sample`` (batched), conditions at the middle of their
                ranges;
``RealGalaxy``  ``galsim.RealGalaxy(catalog, index=i, noise_pad_size=0)`` from the
                simulated COSMOS-format catalog ``--catalog`` (GalSim's own alternative).

Usage::

    python benchmarks/kept_objects.py --model flagship_cosmos_sim --catalog DIR [--n 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PRELUDE = """
import gc, json, psutil, galsim
proc = psutil.Process()
psf = galsim.Kolmogorov(fwhm=0.7)
def draw(gal):
    galsim.Convolve(gal, psf).drawImage(nx=48, ny=48, scale=0.2)
"""

VAE = PRELUDE + """
import galsim_vae
model = galsim_vae.load_model({model!r})
mid = {{c.name: 0.5 * (c.min + c.max) for c in model.conditions}}
for gal in model.sample(64, rng=1, **mid):      # warm: interpreter, the profile cache
    draw(gal)
gc.collect(); before = proc.memory_info().rss
kept = []
for start in range(0, {n}, 64):
    for gal in model.sample(min(64, {n} - start), rng=start + 2, **mid):
        draw(gal); kept.append(gal)
gc.collect()
print(json.dumps({{"kb": (proc.memory_info().rss - before) / {n} / 1024,
                  "stamp": model.stamp_size}}))
"""

REAL = PRELUDE + """
catalog = galsim.RealGalaxyCatalog("real_galaxy_catalog_25.2.fits", dir={catalog!r})
for i in range(64):                              # warm: file handles, caches
    draw(galsim.RealGalaxy(catalog, index=i % catalog.nobjects, noise_pad_size=0))
gc.collect(); before = proc.memory_info().rss
kept = []
for i in range({n}):
    gal = galsim.RealGalaxy(catalog, index=(i + 1) % catalog.nobjects, noise_pad_size=0)
    draw(gal); kept.append(gal)
gc.collect()
print(json.dumps({{"kb": (proc.memory_info().rss - before) / {n} / 1024}}))
"""


def run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter and return its JSON line."""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flagship_cosmos_sim")
    parser.add_argument("--catalog", required=True, help="simulated COSMOS catalog folder")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    vae = run(VAE.format(model=args.model, n=args.n))
    real = run(REAL.format(catalog=args.catalog, n=args.n))
    print(f"memory per drawn and kept object ({args.n} objects, RSS growth / n)")
    print(f"VAEGalaxy ({vae['stamp']}x{vae['stamp']} model {args.model}): {vae['kb']:8.0f} kB")
    print(f"RealGalaxy(noise_pad_size=0), same survey:     {real['kb']:8.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
