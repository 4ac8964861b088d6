"""Start-up and footprint of one process: from nothing to the first drawn galaxy.

Each line runs in a fresh Python process (best of ``--reps``), side by side:

``galsim-vae --help``   the command line's start-up;
``import galsim``       GalSim alone (the floor of any GalSim process);
``parametric``          import GalSim, draw one ``galsim.Exponential`` convolved with a 0.7"
                        Kolmogorov PSF at 0.2"/pixel (GalSim's own galaxies);
``VAEGalaxy``           import galsim_vae, ``load_model``, one ``VAEGalaxy`` at the middle
                        of each condition's range, drawn the same way (the LiteRT path:
                        the process must not import TensorFlow, which is checked);
``VAEGalaxy, TF``       the same through TensorFlow (the bundle without its exported
                        generator: what every process paid before 2026-12-03).

Reported: wall seconds to the end of the first draw, peak RSS (``ru_maxrss``) in MB.

Usage::

    python benchmarks/startup.py [--model flagship_cosmos_sim] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRAW = ("psf = galsim.Kolmogorov(fwhm=0.7)\n"
        "image = galsim.Convolve(gal, psf).drawImage(nx=48, ny=48, scale=0.2)\n")
REPORT = ("import resource, json\n"
          "print(json.dumps({'seconds': time.perf_counter() - t0, 'tensorflow': "
          "'tensorflow' in sys.modules, 'rss_mb': resource.getrusage("
          "resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")


def _vae_code(model: str) -> str:
    return ("import galsim, galsim_vae\n"
            f"model = galsim_vae.load_model({model!r})\n"
            "mid = {c.name: 0.5 * (c.min + c.max) for c in model.conditions}\n"
            "gal = galsim_vae.VAEGalaxy(model, rng=1, **mid)\n" + DRAW)


def cases(model: str, tf_copy: str) -> dict[str, str]:
    """Name -> Python code run after ``t0`` is set."""
    return {
        "import galsim": "import galsim\n",
        "parametric": "import galsim\ngal = galsim.Exponential(half_light_radius=0.3)\n" + DRAW,
        "VAEGalaxy": _vae_code(model),
        "VAEGalaxy, TF": _vae_code(tf_copy),
    }


def run_case(code: str) -> dict:
    """Run ``code`` in a fresh interpreter and return its report."""
    full = "import time, sys\nt0 = time.perf_counter()\n" + code + REPORT
    out = subprocess.run([sys.executable, "-c", full], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_help() -> float:
    """Wall seconds of ``galsim-vae --help``."""
    exe = Path(sys.executable).with_name("galsim-vae")
    start = time.perf_counter()
    subprocess.run([str(exe), "--help"], check=True, capture_output=True)
    return time.perf_counter() - start


def tensorflow_copy(model: str, folder: Path) -> str:
    """A copy of the bundle without its exported generator (samples through TensorFlow)."""
    from galsim_vae.bundle import read_bundle, resolve_bundle
    from galsim_vae.bundle.spec import write_spec

    copy = folder / "tf_copy"
    shutil.copytree(resolve_bundle(model), copy, ignore=shutil.ignore_patterns("report*"))
    spec = read_bundle(copy)
    if spec.generator is not None:
        files = {k: v for k, v in spec.files.items() if k not in spec.generator.files()}
        write_spec(copy / "model.json", spec.with_generator(None).with_files(files))
    return str(copy)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flagship_cosmos_sim")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        code = cases(args.model, tensorflow_copy(args.model, Path(tmp)))
        help_s = min(time_help() for _ in range(args.reps))
        print(f"start-up of one process, best of {args.reps} (model {args.model})")
        print(f"{'case':<16}{'s to first draw':>18}{'peak RSS MB':>14}  TensorFlow imported")
        print(f"{'galsim-vae --help':<16}{help_s:>18.2f}")
        for name, snippet in code.items():
            runs = [run_case(snippet) for _ in range(args.reps)]
            best = min(runs, key=lambda r: r["seconds"])
            print(f"{name:<16}{best['seconds']:>18.2f}{max(r['rss_mb'] for r in runs):>14.0f}"
                  f"  {best['tensorflow']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
