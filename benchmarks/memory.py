"""Peak resident memory of ``galsim examples/field.yaml`` and whether it (or the open file
descriptors and threads of the galsim process tree) grows across images.

Runs the ``galsim`` executable on ``examples/field.yaml`` with command-line overrides
(the model, ``output.nfiles``, per-file output names, a temporary output folder, and
``image.nproc``) and polls, with psutil every ``--interval`` s, the resident set size (RSS)
of the ``galsim`` process plus all its children (GalSim's input-manager and worker
processes when nproc > 1).  Each time an output file appears, the RSS at that moment and
the peak since the previous file are recorded: a run that leaks shows the per-file figures
climbing; a flat one repeats them after the first file (which includes loading the model
and TensorFlow).

The command is printed, so it can be re-run by hand, e.g. with ``/usr/bin/time -v``.

Usage::

    python benchmarks/memory.py [--model cvae2_cosmos_sim] [--nfiles 5] [--nproc 1]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIELD_YAML = REPO / "examples" / "field.yaml"


def galsim_command(model: str, out_dir: Path, nfiles: int, nproc: int,
                   nobjects: int | None = None) -> list[str]:
    """The ``galsim`` command line rendering ``examples/field.yaml`` ``nfiles`` times."""
    galsim_exe = Path(sys.executable).with_name("galsim")
    cmd = [str(galsim_exe) if galsim_exe.exists() else "galsim", str(FIELD_YAML),
           f"input.vae_model.file_name={model}",
           f"output.dir={out_dir}", f"output.nfiles={nfiles}",
           "output.file_name=$'field_%d.fits' % file_num",
           "output.truth.file_name=$'field_truth_%d.dat' % file_num",
           f"image.nproc={nproc}"]
    if nobjects is not None:
        cmd.append(f"image.nobjects={nobjects}")
    return cmd


def tree_handles(proc) -> tuple[int, int]:
    """(open file descriptors, threads) of ``proc`` and all its live children."""
    import psutil

    fds = threads = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    for p in procs:
        try:
            fds += p.num_fds()
            threads += p.num_threads()
        except psutil.NoSuchProcess:
            pass
    return fds, threads


def tree_rss(proc) -> int:
    """RSS in bytes of ``proc`` and all its live children."""
    import psutil

    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def measure(model: str, nfiles: int = 5, nproc: int = 1, interval: float = 0.05,
            nobjects: int | None = None) -> dict:
    """Run the field and poll memory; returns peak, per-file figures, seconds, command."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="galsim_vae_mem_") as tmp:
        out_dir = Path(tmp)
        cmd = galsim_command(model, out_dir, nfiles, nproc, nobjects)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GALSIM_VAE_PROGRESS="0")
        start = time.perf_counter()
        popen = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        proc = psutil.Process(popen.pid)
        peak = peak_since = 0
        per_file: list[dict] = []
        seen: set = set()
        while popen.poll() is None:
            rss = tree_rss(proc)
            peak, peak_since = max(peak, rss), max(peak_since, rss)
            done = {p.name for p in out_dir.glob("field_*.fits")} - seen
            for name in sorted(done):
                fds, threads = tree_handles(proc)
                per_file.append({"file": name, "t": time.perf_counter() - start,
                                 "rss": rss, "peak_since_previous": peak_since,
                                 "fds": fds, "threads": threads})
                peak_since = rss
            seen |= done
            time.sleep(interval)
        stderr = popen.stderr.read()
        if popen.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({popen.returncode}):\n{stderr}")
        for name in sorted({p.name for p in out_dir.glob("field_*.fits")} - seen):
            per_file.append({"file": name, "t": time.perf_counter() - start, "rss": None,
                             "peak_since_previous": peak_since, "fds": None,
                             "threads": None})
        seconds = time.perf_counter() - start
    return {"command": cmd, "peak": peak, "per_file": per_file, "seconds": seconds,
            "nproc": nproc, "nfiles": nfiles}


def format_table(results: list[dict]) -> str:
    lines = []
    for res in results:
        shown = [f'"{a}"' if (" " in a or "'" in a) else a for a in res["command"]]
        shown[0] = "galsim"
        lines.append(f"$ {' '.join(shown)}")
        lines.append(f"peak RSS (galsim + child processes) {res['peak'] / 2**20:.0f} MiB, "
                     f"wall {res['seconds']:.1f} s, image.nproc {res['nproc']}")
        header = (f"{'output file':<16} {'written at s':>12} {'RSS MiB':>8} {'peak MiB':>9}"
                  f" {'open fds':>9} {'threads':>8}")
        lines += [header, "-" * len(header)]
        for row in res["per_file"]:
            rss = "-" if row["rss"] is None else f"{row['rss'] / 2**20:.0f}"
            fds = "-" if row["fds"] is None else str(row["fds"])
            threads = "-" if row["threads"] is None else str(row["threads"])
            lines.append(f"{row['file']:<16} {row['t']:>12.1f} {rss:>8} "
                         f"{row['peak_since_previous'] / 2**20:>9.0f} {fds:>9} {threads:>8}")
        lines.append(growth_summary([r["peak_since_previous"] for r in res["per_file"]]))
    return "\n".join(lines)


def growth_summary(peaks: list[int]) -> str:
    """How the per-file peak RSS changes after the first file (which loads the model)."""
    later = peaks[1:]
    if len(later) < 2:
        return "(too few files to see growth)\n"
    return (f"growth of the per-file peak from file 2 to file {len(peaks)}: "
            f"{(later[-1] - later[0]) / 2**20:+.0f} MiB\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cvae2_cosmos_sim")
    parser.add_argument("--nfiles", type=int, default=5)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1])
    parser.add_argument("--nobjects", type=int, help="override image.nobjects (default 200)")
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args(argv)
    results = [measure(args.model, args.nfiles, n, args.interval, args.nobjects)
               for n in args.nproc]
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
