"""Long GalSim run with VAEGalaxy: resident memory per image (does it grow?).

Renders ``--images`` images of ``--per-image`` VAE galaxies each (default 20 x 500 =
10,000 galaxies) from examples/field.yaml with ``galsim.config.BuildImage`` in one
process (``image.nproc: 1``: the model lives in this process), and measures the resident
set size (RSS, psutil) sampled every 20 ms by a thread.  Prints one row per image (time,
RSS at the end of the image, highest RSS while it was drawn) and the peak; asserts
nothing.  Growth is judged on the images after the first few, once TensorFlow's and
GalSim's caches are warm (the first image also pays for loading the model).

Model: ``--model`` (bundle name or path); default the shipped ``cvae2_cosmos_sim`` if it
is installed, else a random-initialised tiny ``cvae2`` bundle (32x32 stamps) made in a
temporary folder, which exercises the same code paths with a smaller network.

    python benchmarks/long_run.py                       # 20 x 500
    python benchmarks/long_run.py --images 3 --per-image 50 --model path/to/bundle
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GALSIM_VAE_PROGRESS", "0")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHIPPED = "cvae2_cosmos_sim"
MB = 1024.0 ** 2


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds; ``take_max()`` returns the
    highest value since the previous call."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self._process = psutil.Process()
        self._max = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            rss = self._process.memory_info().rss
            with self._lock:
                self._max = max(self._max, rss)
            time.sleep(self.interval)

    def take_max(self) -> int:
        rss = self._process.memory_info().rss
        with self._lock:
            highest, self._max = max(self._max, rss), rss
        return highest

    def stop(self) -> None:
        self._stop.set()


def tiny_bundle(folder: Path) -> Path:
    """A random-initialised tiny cvae2 bundle (32x32 stamps at 0.03"/pixel, zphot 0.1-2)."""
    from galsim_vae.bundle import save_bundle
    from galsim_vae.models import build_model

    import keras

    keras.utils.set_random_seed(0)
    model = build_model("cvae2", stamp_size=32, latent_size=8, channels=[16, 32],
                        n_conditions=1, psf_size=15)
    return save_bundle(model, folder / "tiny_cvae2", name="tiny_cvae2", flux_scale=0.01,
                       flux_units="counts/s", pixel_scale=0.03, psf_free=True,
                       conditions=[{"name": "zphot", "mean": 1.0, "std": 0.5,
                                    "min": 0.1, "max": 2.0}])


def resolve_model(name: str | None, folder: Path) -> str:
    from galsim_vae.bundle import list_bundles

    if name:
        return name
    if SHIPPED in list_bundles():
        return SHIPPED
    return str(tiny_bundle(folder))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--per-image", type=int, default=500)
    parser.add_argument("--size", type=int, default=1000, help="image side, pixels")
    parser.add_argument("--model", default=None, help="bundle name or path")
    args = parser.parse_args(argv)

    import galsim

    import galsim_vae  # noqa: F401 - registers the YAML types

    sampler = RssSampler()
    sampler.start()
    start_rss = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        model = resolve_model(args.model, Path(tmp))
        config = yaml.safe_load((EXAMPLES / "field.yaml").read_text())
        config["input"]["vae_model"]["file_name"] = model
        config["image"].update(size=args.size, nobjects=args.per_image, nproc=1)
        config.pop("output")
        galsim.config.ImportModules(config)
        print(f"model {model}; {args.images} images x {args.per_image} galaxies, "
              f"{args.size}x{args.size} pixels; RSS before {start_rss / MB:.0f} MB")
        print(f"{'image':>5} {'seconds':>8} {'RSS end MB':>11} {'RSS max MB':>11} {'sum ADU':>12}")
        rows = []
        base = copy.deepcopy(config)
        sampler.take_max()
        for k in range(args.images):
            tick = time.time()
            # one image per file, as `galsim` with output.nfiles does (this sets the
            # file's start_obj_num, which VAEGalaxy's batching reads)
            galsim.config.SetupConfigFileNum(base, k, k, k * args.per_image)
            image = galsim.config.BuildImage(base, image_num=k, obj_num=k * args.per_image,
                                             logger=None)
            seconds = time.time() - tick
            end = psutil.Process().memory_info().rss
            highest = sampler.take_max()
            rows.append((k, seconds, end, highest))
            print(f"{k:5d} {seconds:8.1f} {end / MB:11.1f} {highest / MB:11.1f} "
                  f"{float(image.array.sum()):12.4g}", flush=True)
            del image
        counts = base["_input_objs"]["vae_model"][0].getCounts()
    sampler.stop()
    ends = np.array([r[2] for r in rows]) / MB
    peak = max(r[3] for r in rows) / MB
    warm = ends[min(3, len(ends) - 1):]
    slope = np.polyfit(np.arange(warm.size), warm, 1)[0] if warm.size > 2 else float("nan")
    print(f"peak RSS {peak:.1f} MB; RSS after image 0 {ends[0]:.1f} MB, after the last "
          f"{ends[-1]:.1f} MB; from image {min(3, len(ends) - 1)} on: "
          f"{warm.min():.1f}-{warm.max():.1f} MB, trend {slope:+.2f} MB/image")
    print(f"network calls {counts['network_calls']}, stamps {counts['stamps']}, "
          f"cache hits {counts['cache_hits']}; total "
          f"{sum(r[1] for r in rows):.0f} s for {args.images * args.per_image} galaxies")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
