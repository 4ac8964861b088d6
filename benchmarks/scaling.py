"""Survey-scale rendering: galaxies/s and memory per process of ``examples/survey.yaml``
with 1 and 2 GalSim processes, side by side with the same survey of parametric galaxies,
and the core-hours, memory and model files a 10^8-galaxy survey would need.

Each variant runs ``galsim CONFIG`` in its own process tree (the ``galsim`` command, as a
Slurm array task runs it); the peak resident memory of every process of the tree is
sampled with psutil every 0.2 s.  The VAE variant renders the shipped
``cvae2_cosmos_sim`` with ``input.vae_model.threads: 1``; the parametric variant replaces
each VAE galaxy by a Sersic of the same shear, rotation and flux scale.

Usage::

    python benchmarks/scaling.py [--nfiles 4] [--nobjects 100] [--size 512]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SURVEY = HERE.parent / "examples" / "survey.yaml"
#: Galaxies of the survey whose cost is estimated.
SURVEY_GALAXIES = 1e8


def _peak_tree_rss(proc: subprocess.Popen) -> tuple[float, float, int]:
    """Wait for ``proc``; returns (seconds, peak RSS of the largest process in MB, peak
    number of processes)."""
    import psutil

    start = time.time()
    parent = psutil.Process(proc.pid)
    peak_one, peak_n = 0.0, 1
    while proc.poll() is None:
        try:
            tree = [parent] + parent.children(recursive=True)
            sizes = [p.memory_info().rss for p in tree]
            peak_one = max(peak_one, max(sizes) / 2**20)
            peak_n = max(peak_n, len(tree))
        except psutil.Error:
            pass
        time.sleep(0.2)
    return time.time() - start, peak_one, peak_n


def _variant(config: dict, kind: str, nproc: int) -> dict:
    config = copy.deepcopy(config)
    config["image"]["nproc"] = nproc
    if kind == "parametric":
        config["modules"] = []
        config.pop("input", None)
        gal = config["gal"]
        config["gal"] = {"type": "Sersic", "n": 1.5, "half_light_radius": 0.3,
                         "flux": 20.0, "rotate": gal["rotate"], "shear": gal["shear"]}
        for column in ("zphot", "magnitude"):
            config["output"]["truth"]["columns"].pop(column, None)
    return config


def run(nfiles: int, nobjects: int, size: int) -> list[dict]:
    base = yaml.safe_load(SURVEY.read_text())
    base["output"]["nfiles"] = nfiles
    base["image"]["nobjects"] = nobjects
    base["image"]["size"] = size
    rows = []
    galsim = str(Path(sys.executable).parent / "galsim")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("vae", "parametric"):
            for nproc in (1, 2):
                config = _variant(base, kind, nproc)
                config["output"]["dir"] = f"{tmp}/{kind}_{nproc}"
                path = Path(tmp) / f"{kind}_{nproc}.yaml"
                path.write_text(yaml.safe_dump(config))
                proc = subprocess.Popen([galsim, str(path)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
                seconds, peak, n_proc = _peak_tree_rss(proc)
                if proc.returncode != 0:
                    raise SystemExit(f"{kind} nproc {nproc} failed: {proc.stderr.read()[-500:]}")
                galaxies = nfiles * nobjects
                rows.append({"kind": kind, "nproc": nproc, "seconds": seconds,
                             "galaxies_per_s": galaxies / seconds,
                             "peak_rss_mb": peak, "processes": n_proc})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfiles", type=int, default=4)
    parser.add_argument("--nobjects", type=int, default=150)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)
    # two sizes: the difference gives the marginal rate, free of the start-up
    small = run(args.nfiles, args.nobjects, args.size)
    large = run(args.nfiles, 2 * args.nobjects, args.size)
    extra = args.nfiles * args.nobjects
    print(f"survey.yaml: {args.nfiles} files x {args.nobjects} and x {2 * args.nobjects} "
          f"galaxies, {args.size}^2 pixels at 0.2\"; marginal rate = the extra galaxies / "
          "the extra time (start-up excluded); start-up = time of the small run minus its "
          "galaxies at the marginal rate")
    print(f"{'galaxies':12s} {'nproc':>5s} {'gal/s':>8s} {'start-up s':>11s} "
          f"{'peak RSS/process MB':>20s} {'processes':>9s}")
    rates = {}
    for a, b in zip(small, large):
        rate = extra / max(b["seconds"] - a["seconds"], 1e-9)
        startup = a["seconds"] - args.nfiles * args.nobjects / rate
        rates[(a["kind"], a["nproc"])] = rate
        print(f"{a['kind']:12s} {a['nproc']:5d} {rate:8.1f} {startup:11.1f} "
              f"{max(a['peak_rss_mb'], b['peak_rss_mb']):20.0f} {b['processes']:9d}")
    one, two = rates[("vae", 1)], rates[("vae", 2)]
    print(f"VAE speed-up from 1 to 2 processes on this 2-core machine: {two / one:.2f}x")
    core_hours = SURVEY_GALAXIES / one / 3600.0
    print(f"10^8 VAE galaxies at the single-process marginal rate: {core_hours:,.0f} "
          "core-hours, plus the start-up of each job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
