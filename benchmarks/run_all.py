"""Run every galsim-vae benchmark and print one table per item (``make benchmarks``).

Items (``--only`` picks some):

``field``       ms per galaxy to render one scattered field with VAEGalaxy, COSMOSGalaxy
                parametric, COSMOSGalaxy real (RealGalaxy) and an InterpolatedImage floor
                (``benchmarks/field_rendering.py``), image.nproc 1;
``sampling``    galaxies/s of ``GalaxyModel.sample`` at batch 1, 16, 64, 1024 and the
                network share, for the model and every shipped 128x128 bundle (a 128x128
                random-weight bundle when there is none) (``benchmarks/sampling.py``);
``training``    train-step images/s at 128x128 and 158x158 (``benchmarks/training.py``)
                and the tf.data input pipeline beside it (``benchmarks/data_pipeline.py``);
``memory``      peak RSS of ``galsim examples/field.yaml`` over several output files
                (``benchmarks/memory.py``);
``processes``   the field of ``field`` with image.nproc 1 and 2 (quick: without the slow
                ``real`` type);
``startup``     import, first galaxy, ``--help`` (``benchmarks/startup.py``);
``kept_objects`` memory per drawn and kept VAEGalaxy beside RealGalaxy
                (``benchmarks/kept_objects.py``);
``photon_shooting`` phot vs FFT drawing: time, shot flux, agreement within shot noise,
                beside GalSim's parametric galaxies (``benchmarks/photon_shooting.py``).
The ``sampling`` item also profiles the decoder layer by layer in LiteRT
(``benchmarks/decoder_profile.py``).

Each item runs in its own Python process (TensorFlow state, memory and fork-safety stay
apart).  ``--quick`` (default, ~5 minutes on 2 busy cores) and ``--full`` set the sizes; every
size can be overridden.  Inputs are cached in ``--workdir``: the simulated COSMOS catalog
(``simulate_survey``, ~0.1 s per galaxy, made once); random-weight stand-in bundles are
rewritten on every run (seconds), so they follow the shipped architecture.

Usage::

    python benchmarks/run_all.py [--quick | --full] [--model cvae2_cosmos_sim]
        [--only field sampling training memory processes] [--catalog DIR]
        [--markdown results.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ITEMS = ("field", "sampling", "training", "memory", "processes", "startup", "kept_objects",
         "photon_shooting")
#: Stamp size of the sampling target (>= 1,000 galaxies/s at 128x128 on 2 cores).
SAMPLING_TARGET_SIZE = 128

#: Sizes of a quick and a full run.
SIZES = {
    "quick": {"field_n": 1000, "field_reps": 2, "catalog_n": 300,
              "sampling_galaxies": 1024, "sampling_rounds": 1,
              "train_n": 64, "train_steps": 2, "train_rounds": 1,
              "train_architectures": ["cvae2", "vae"], "train_channels": ["shipped", "small"],
              "pipeline_n": 512, "pipeline_epochs": 2, "memory_nfiles": 3,
              "processes_reps": 1, "processes_variants": ["vae", "parametric", "floor"]},
    "full": {"field_n": 2000, "field_reps": 5, "catalog_n": 1000,
             "sampling_galaxies": 4096, "sampling_rounds": 3,
             "train_n": 160, "train_steps": 3, "train_rounds": 2,
             "train_architectures": ["vae", "cvae", "cvae2", "fancy_cvae"],
             "train_channels": ["shipped", "small", "seed"],
             "pipeline_n": 4000, "pipeline_epochs": 3, "memory_nfiles": 5,
             "processes_reps": 3,
             "processes_variants": ["vae", "parametric", "real", "floor"]},
}


def machine_description() -> list[str]:
    """Date, host, CPU model, cores, memory, load average, library versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        mem = "unknown"
    import galsim
    import numpy

    return [f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"machine: {platform.node()}, {os.cpu_count()} CPU(s) ({cpu}), memory {mem}, "
            f"{platform.system()} {platform.release()}",
            f"python {platform.python_version()}, numpy {numpy.__version__}, "
            f"galsim {galsim.__version__}",
            f"load average at start: {load_average()}"]


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run_script(script: str, args: list[str], log, omp_threads: str | None = None) -> str:
    """Run ``benchmarks/<script>`` with ``args``; returns its stdout (progress goes to
    stderr and is shown as it comes).  ``omp_threads`` sets ``OMP_NUM_THREADS``."""
    cmd = [sys.executable, str(HERE / script), *args]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GALSIM_VAE_PROGRESS="0")
    prefix = ""
    if omp_threads is not None:
        env["OMP_NUM_THREADS"] = omp_threads
        prefix = f"OMP_NUM_THREADS={omp_threads} "
    log(f"$ {prefix}python benchmarks/{script} {' '.join(args)}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/{script} failed with exit status {proc.returncode}")
    return proc.stdout.strip()


def ensure_catalog(workdir: Path, n: int, given: str | None) -> Path:
    """The simulated COSMOS catalog: ``given``, else one of ``n`` galaxies made once."""
    if given:
        return Path(given)
    path = workdir / f"cosmos_sim_{n}"
    if not (path / "real_galaxy_catalog_25.2.fits").exists():
        print(f"simulating a COSMOS-format catalog of {n} galaxies into {path} "
              f"(~{0.1 * n:.0f} s, once)", file=sys.stderr, flush=True)
        from galsim_vae.simulation.survey import simulate_survey

        simulate_survey(path, n, seed=2025, overwrite=True)
    return path


def ensure_standin(workdir: Path, stamp_size: int | None = None) -> Path:
    """A random-weight bundle of the shipped architecture at ``stamp_size`` (None: the
    shipped size), rewritten on every run so it follows the shipped model."""
    args = [] if stamp_size is None else ["--stamp-size", str(stamp_size)]
    path = workdir / f"standin_{stamp_size or 'shipped'}"
    subprocess.run([sys.executable, str(HERE / "standin.py"), str(path), *args], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return path


def resolve_model(name: str, workdir: Path) -> str:
    """``standin`` -> a random-weight bundle of the shipped architecture; else the
    name/path, checked."""
    if name == "standin":
        return str(ensure_standin(workdir))
    from galsim_vae.bundle import resolve_bundle

    return str(resolve_bundle(name))


def stamp_size_of(bundle: str) -> int:
    """Stamp side of a bundle, shipped name or folder (from its model.json)."""
    from galsim_vae.bundle import read_bundle
    from galsim_vae.bundle.names import resolve_bundle

    return read_bundle(resolve_bundle(bundle)).stamp_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small sizes, ~5 min on 2 busy cores (default)")
    size.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="2,000-galaxy fields, more rounds, all architectures (roughly 30 min)")
    parser.add_argument("--model", default="cvae2_cosmos_sim",
                        help="bundle name or path, or 'standin' (random weights, the shipped "
                             "architecture)")
    parser.add_argument("--only", nargs="+", choices=ITEMS, default=list(ITEMS))
    parser.add_argument("--catalog", help="simulated COSMOS catalog folder (default: made "
                        "in --workdir)")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir())
                                                 / "galsim_vae_benchmarks"))
    parser.add_argument("--field-n", type=int)
    parser.add_argument("--field-reps", type=int)
    parser.add_argument("--stamp-size", type=int, default=48, help="field stamp size, px")
    parser.add_argument("--batch-size", type=int, default=64, help="vae_model batch_size")
    parser.add_argument("--galsim-omp-threads", default="1",
                        help="OMP_NUM_THREADS for the field renderings ('default': leave "
                             "unset).  GalSim's COSMOS galaxies run OpenMP regions that are "
                             "5-12x slower on a busy machine; 1 gives them their best case "
                             "(see benchmarks/README.md). [default: 1]")
    parser.add_argument("--markdown", help="also write the tables to this file")
    args = parser.parse_args(argv)
    sizes = dict(SIZES[args.mode or "quick"])
    if args.field_n:
        sizes["field_n"] = args.field_n
    if args.field_reps:
        sizes["field_reps"] = args.field_reps

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out_lines: list[str] = []

    def log(text: str = "") -> None:
        print(text, flush=True)
        out_lines.append(text)

    started = time.perf_counter()
    for line in machine_description():
        log(line)
    log(f"mode: {args.mode or 'quick'}; sizes: {sizes}")
    model = resolve_model(args.model, workdir)
    log(f"model: {model}")
    field_args = None
    if {"field", "processes"} & set(args.only):
        catalog = ensure_catalog(workdir, sizes["catalog_n"], args.catalog)
        field_args = ["--model", model, "--catalog", str(catalog),
                      "--n", str(sizes["field_n"]), "--stamp-size", str(args.stamp_size),
                      "--batch-size", str(args.batch_size), "--workdir", str(workdir)]

    for item in ITEMS:
        if item not in args.only:
            continue
        log("")
        log(f"## {item} (load average before: {load_average()})")
        t0 = time.perf_counter()
        omp = None if args.galsim_omp_threads == "default" else args.galsim_omp_threads
        if item == "field":
            log(run_script("field_rendering.py", field_args + [
                "--reps", str(sizes["field_reps"]), "--nproc", "1"], log, omp))
        elif item == "processes":
            log(run_script("field_rendering.py", field_args + [
                "--reps", str(sizes["processes_reps"]), "--nproc", "1", "2",
                "--variants", *sizes["processes_variants"]], log, omp))
        elif item == "sampling":
            # the 128x128 target: the model and every shipped 128x128 bundle (a
            # random-weight stand-in when there is none)
            from galsim_vae.bundle.names import list_bundles, resolve_bundle

            shipped = [str(resolve_bundle(b)) for b in list_bundles()]
            bundles = [model] + [b for b in shipped if Path(b).resolve() != Path(model).resolve()
                                 and stamp_size_of(b) == SAMPLING_TARGET_SIZE]
            if all(stamp_size_of(b) != SAMPLING_TARGET_SIZE for b in bundles):
                bundles.append(str(ensure_standin(workdir, SAMPLING_TARGET_SIZE)))
            log(run_script("sampling.py", [
                *bundles, "--batch-sizes", "1", "16", "64", "1024",
                "--galaxies", str(sizes["sampling_galaxies"]),
                "--rounds", str(sizes["sampling_rounds"])], log))
            log(run_script("decoder_profile.py", bundles[:1], log))
        elif item == "training":
            log(run_script("training.py", [
                "--sizes", "128", "158", "--n", str(sizes["train_n"]), "--batch-size", "8",
                "--steps", str(sizes["train_steps"]), "--rounds", str(sizes["train_rounds"]),
                "--architectures", *sizes["train_architectures"],
                "--channels", *sizes["train_channels"], "--skip-epoch-times"], log))
            log(run_script("data_pipeline.py", [
                "--n", str(sizes["pipeline_n"]), "--sizes", "128", "158",
                "--epochs", str(sizes["pipeline_epochs"])], log))
        elif item == "startup":
            log(run_script("startup.py", ["--model", model, "--reps", "3"], log))
        elif item == "kept_objects":
            log(run_script("kept_objects.py", ["--model", model, "--catalog",
                                               str(ensure_catalog(workdir, sizes["catalog_n"],
                                                                  args.catalog))], log))
        elif item == "photon_shooting":
            log(run_script("photon_shooting.py", [
                "--model", model, "--catalog", str(ensure_catalog(
                    workdir, sizes["catalog_n"], args.catalog)), "--n", "20", "--shots", "8"],
                log))
        elif item == "memory":
            log(run_script("memory.py", [
                "--model", model, "--nfiles", str(sizes["memory_nfiles"]), "--nproc", "1"],
                log))
        log(f"({item}: {time.perf_counter() - t0:.0f} s; load average after: "
            f"{load_average()})")
    log("")
    log(f"total {time.perf_counter() - started:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text("```\n" + "\n".join(out_lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
