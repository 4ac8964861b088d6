"""CPU training throughput of the four architectures, and time per epoch of cvae2 vs cvae.

1. Throughput (images/s) of the compiled train step (forward, PSF-convolved likelihood,
   backward, Adam update) of ``vae``, ``cvae``, ``cvae2`` and ``fancy_cvae`` at each stamp
   size, with the seed project's channel widths (64, 128, 256, 512), small ones
   (16, 32, 64, 128) and the shipped model's layout (``shipped``: read from
   ``cvae2_cosmos_sim``, light decoder), on batches streamed by ``make_tf_dataset``.  One warm-up step
   (tracing) is left out; all configurations are timed in interleaved rounds and the
   fastest step of each is reported (the least disturbed by other processes on a shared
   machine).
2. Wall time per epoch of ``cvae2`` and ``cvae`` trained by
   :func:`galsim_vae.training.train` on the same data in the same run, alternated over
   ``--rounds`` (the shortest epoch after the first, which includes tracing).
3. ``--compare-likelihoods``: validation NLL after the same epochs with the PSF-aware
   likelihood (``psf_free=True``: PSF-free profiles convolved with each galaxy's PSF) and
   with the noise-only one (``psf_free=False``).  Both are -log p(observed image) per
   galaxy, so they compare directly.

The data sets are written with :class:`galsim_vae.data.DatasetWriter` by the writer of
``benchmarks/data_pipeline.py`` (GalSim bulge + disk galaxies, Moffat PSF, 0.03"/pixel).

Usage::

    python benchmarks/training.py [--sizes 128 158] [--batch-size 8] [--steps 2] [--rounds 2]
                                  [--compare-likelihoods] [--skip-epoch-times]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_pipeline import write_dataset  # noqa: E402

ARCHITECTURES = ("vae", "cvae", "cvae2", "fancy_cvae")
CHANNELS = {"seed": (64, 128, 256, 512), "small": (16, 32, 64, 128), "shipped": None}


@functools.lru_cache(maxsize=None)
def decoder_layout(name: str) -> tuple[tuple[int, ...], dict]:
    """Channel widths and decoder options of a preset; ``shipped`` reads them from the
    shipped ``cvae2_cosmos_sim`` bundle (its light decoder: no full-resolution norm)."""
    if CHANNELS[name] is not None:
        return CHANNELS[name], {}
    from galsim_vae.bundle import read_bundle, resolve_bundle

    hp = read_bundle(resolve_bundle("cvae2_cosmos_sim")).hyperparameters
    return tuple(hp["channels"]), {"full_resolution_norm": hp.get("full_resolution_norm", True)}


class StepTimer:
    """A model, its optimizer and compiled train step on a stream of batches."""

    def __init__(self, dataset, architecture: str, layout: str, batch_size: int,
                 latent_size: int = 32):
        import keras
        import tensorflow as tf

        from galsim_vae.data import make_tf_dataset
        from galsim_vae.models import build_model
        from galsim_vae.training.steps import TrainSteps

        conditions = () if architecture == "vae" else ("zphot",)
        channels, options = decoder_layout(layout)
        self.model = build_model(architecture, stamp_size=dataset.stamp_size,
                                 latent_size=latent_size, channels=list(channels),
                                 n_conditions=len(conditions), psf_free=True,
                                 psf_size=dataset.psf_size, **options)
        optimizer = keras.optimizers.Adam(1e-4)
        optimizer.build(self.model.trainable_variables)
        self.runner = TrainSteps(self.model, optimizer, tf.distribute.get_strategy(), xla=False,
                             mixed_precision=False)
        self.batches = iter(make_tf_dataset(dataset, "train", batch_size=batch_size,
                                            conditions=conditions, repeat=True,
                                            drop_remainder=True))
        self.batch_size = batch_size
        self.beta = tf.constant(0.1)
        self.count = 0
        self.best = float("inf")
        self.time_steps(1, record=False)  # trace + warm up

    def time_steps(self, steps: int, record: bool = True) -> None:
        """Run ``steps`` steps, keeping the fastest step time."""
        import tensorflow as tf

        for _ in range(steps):
            batch = next(self.batches)
            self.count += 1
            start = time.perf_counter()
            out = self.runner.train_step(batch, self.beta, tf.constant([0, self.count]))
            float(out["loss"])
            if record:
                self.best = min(self.best, time.perf_counter() - start)

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.best


def epoch_time(dataset_path: Path, workdir: Path, architecture: str, batch_size: int,
               epochs: int = 3, **kwargs) -> dict:
    """Train for ``epochs`` with :func:`train`; returns the last history row, with
    ``time`` replaced by the shortest epoch after the first (which includes tracing)."""
    from galsim_vae.training import train
    from galsim_vae.history import read_history_csv

    out = workdir / f"bundle_{architecture}_{kwargs.get('psf_free', 'default')}"
    train(dataset_path, out, architecture=architecture, channels=list(CHANNELS["small"]),
          epochs=epochs, batch_size=batch_size, flow_prior=False, seed=1, overwrite=True,
          **kwargs)
    history = read_history_csv(out / "history.csv")
    return {**history[-1], "time": min(row["time"] for row in history[1:] or history)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 158])
    parser.add_argument("--n", type=int, default=160, help="galaxies per data set")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds over all configurations (best kept)")
    parser.add_argument("--channels", nargs="+", default=list(CHANNELS), choices=list(CHANNELS))
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES),
                        choices=ARCHITECTURES)
    parser.add_argument("--epoch-batch-size", type=int, default=32)
    parser.add_argument("--skip-epoch-times", action="store_true",
                        help="only the train-step throughput (part 1; used by run_all.py)")
    parser.add_argument("--compare-likelihoods", action="store_true")
    parser.add_argument("--likelihood-epochs", type=int, default=3)
    parser.add_argument("--workdir", help="folder for the data sets (default: a temporary one)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from galsim_vae.data import Dataset

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores visible, GPUs: "
          f"{len(tf.config.list_physical_devices('GPU'))}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="galsim_vae_train_bench_"))
    try:
        paths = {}
        for size in args.sizes:
            paths[size] = workdir / f"data_{size}"
            if not paths[size].exists():
                write_dataset(paths[size], args.n, size, unique=40, seed=size)
        print(f"\n1. train-step throughput, batch {args.batch_size}, latent 32, "
              f"PSF-aware likelihood (images/s)")
        print(f"{'model':<11} {'size':>5} " + " ".join(f"{c:>16}" for c in args.channels))
        for size in args.sizes:
            dataset = Dataset(paths[size])
            timers = {(a, c): StepTimer(dataset, a, c, args.batch_size)
                      for a in args.architectures for c in args.channels}
            # interleaved rounds: a burst of load from other processes hits every model
            for _ in range(args.rounds):
                for timer in timers.values():
                    timer.time_steps(args.steps)
            for architecture in args.architectures:
                cells = [f"{timers[(architecture, c)].images_per_second:16.1f}"
                         for c in args.channels]
                print(f"{architecture:<11} {size:>5} " + " ".join(cells), flush=True)
            del timers
        size = args.sizes[0]
        if args.skip_epoch_times:
            return 0
        print(f"\n2. seconds per epoch (best of epochs 2-3) at {size}x{size}, small channels, batch "
              f"{args.epoch_batch_size}, {len(Dataset(paths[size]).indices('train'))} "
              "training galaxies")
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for architecture in ("cvae2", "cvae"):
                row = epoch_time(paths[size], workdir, architecture, args.epoch_batch_size)
                best[architecture] = min(best.get(architecture, math.inf), row["time"])
        for architecture, seconds in best.items():
            print(f"{architecture:<6} {seconds:8.2f} s", flush=True)
        if args.compare_likelihoods:
            print(f"\n3. validation NLL after {args.likelihood_epochs} epochs, cvae2, "
                  f"{size}x{size} (nats/galaxy)")
            for psf_free in (True, False):
                row = epoch_time(paths[size], workdir, "cvae2", args.epoch_batch_size,
                                 epochs=args.likelihood_epochs, psf_free=psf_free)
                label = "psf (PSF-free profiles)" if psf_free else "noise only"
                print(f"{label:<24} val_nll {row['val_nll']:.2f}  val_kl {row['val_kl']:.2f}",
                      flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
