"""Preparing a large COSMOS-format catalog: time and peak memory of ``galsim-vae prepare
cosmos`` whole, in shards (``--shard i/n``, one after the other here, one Slurm job each
on a cluster) and of ``prepare merge``, side by side with GalSim's own way of reading a
training sample (``galsim.RealGalaxyCatalog(preload=True)`` and ``getGalImage`` of every
galaxy) in the same run.

Each variant runs as its own process; its peak resident memory is sampled every 0.2 s:
the whole resident set (RSS, which counts the pages of the memory-mapped data set files
that the kernel may write back and drop at any time) and the anonymous part alone
(``RssAnon`` of ``/proc/PID/status``: what the process itself holds, the figure that
must stay bounded).  The catalog is a simulated COSMOS-format
survey (``galsim-vae simulate``), made in ``--workdir`` unless ``--survey`` names one.

Usage::

    python benchmarks/prepare_scale.py [--survey DIR | --n 20000] [--shards 2]
        [--stamp-size 128] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: GalSim's reading of the whole sample, for comparison (run in its own process).
GALSIM_READ = """
import sys, galsim
rgc = galsim.RealGalaxyCatalog(sys.argv[1], dir=sys.argv[2], preload=True)
total = 0.0
for i in range(rgc.nobjects):
    total += float(rgc.getGalImage(i).array.sum())
print(rgc.nobjects, total)
"""


def _memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, RssAnon) of a process, MB (Linux)."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                fields[key] = float(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0)


def _timed(command: list[str]) -> dict:
    start = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    peak_rss = peak_anon = 0.0
    while proc.poll() is None:
        try:
            rss, anon = _memory_mb(proc.pid)
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
        except OSError:
            pass
        time.sleep(0.2)
    seconds = time.time() - start
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err}")
    return {"seconds": seconds, "peak_mb": peak_rss, "peak_anon_mb": peak_anon}


def run(survey: Path, shards: int, stamp_size: int, workdir: Path) -> list[dict]:
    cli = [sys.executable, "-m", "galsim_vae", "--quiet", "prepare"]
    common = ["--dir", str(survey), "--sample", "25.2", "--stamp-size", str(stamp_size)]
    rows = [{"variant": "prepare cosmos (whole)",
             **_timed(cli + ["cosmos", *common, "--out", str(workdir / "whole")])}]
    parts = []
    for i in range(1, shards + 1):
        parts.append(str(workdir / f"shard{i}"))
        rows.append({"variant": f"prepare cosmos --shard {i}/{shards}",
                     **_timed(cli + ["cosmos", *common, "--shard", f"{i}/{shards}", "--out",
                                     parts[-1]])})
    rows.append({"variant": f"prepare merge ({shards} shards)",
                 **_timed(cli + ["merge", *parts, "--out", str(workdir / "merged")])})
    catalog = "real_galaxy_catalog_25.2.fits"
    rows.append({"variant": "GalSim RealGalaxyCatalog(preload=True), every getGalImage",
                 **_timed([sys.executable, "-c", GALSIM_READ, catalog, str(survey)])})
    from galsim_vae.data.dataset import Dataset

    n = Dataset(workdir / "whole").n_galaxies
    size_gb = sum(f.stat().st_size for f in (workdir / "whole").iterdir()) / 1e9
    for row in rows:
        row["galaxies"] = n
    print(f"catalog {survey} ({n} galaxies kept, data set {size_gb:.2f} GB at "
          f"{stamp_size}x{stamp_size})")
    print("| variant | time [s] | peak RSS [MB] | peak anonymous memory [MB] |\n"
          "|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['seconds']:.0f} | {row['peak_mb']:.0f} | "
              f"{row['peak_anon_mb']:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survey", type=Path, help="a simulated COSMOS-format survey folder")
    parser.add_argument("--n", type=int, default=20000, help="galaxies to simulate otherwise")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--stamp-size", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="galsim-vae-prepare-"))
    survey = args.survey
    if survey is None:
        survey = workdir / f"survey{args.n}"
        if not survey.is_dir():
            subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", "simulate", "--n",
                            str(args.n), "--out", str(survey), "--seed", "2026",
                            "--processes", "2"], check=True)
    outputs = workdir / "outputs"
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir(parents=True)
    try:
        run(survey, args.shards, args.stamp_size, outputs)
    finally:
        shutil.rmtree(outputs, ignore_errors=True)


if __name__ == "__main__":
    main()
