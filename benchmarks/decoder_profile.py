"""Where a bundle's decoder spends its time, layer by layer, in LiteRT (the sampling path).

For each layer of the decoder network, the decoder cut after that layer is converted to
LiteRT as the export converts it (batch ``--batch``, builtin ops, the export's rewrites) and
timed with 1 and 2 interpreter threads; a layer's cost is the difference between two
successive cuts (best of ``--reps`` rounds, milliseconds per galaxy).  The exported
generator of the bundle (``decoder_b16.tflite``) is timed beside it for the total.

Usage::

    python benchmarks/decoder_profile.py BUNDLE [BUNDLE ...] [--batch 16] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def time_interpreter(path: str, threads: int, reps: int) -> float:
    """Best seconds per galaxy of one invoke of the LiteRT model at ``path``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    rng = np.random.default_rng(0)
    values = [rng.normal(size=d["shape"]).astype(np.float32) for d in inputs]

    def invoke():
        for detail, value in zip(inputs, values):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()

    invoke()
    batch = int(inputs[0]["shape"][0])
    best = np.inf
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(4):
            invoke()
        best = min(best, (time.perf_counter() - start) / (4 * batch))
    return best


def cut_models(bundle: str, batch: int, folder: Path) -> list[tuple[str, str, tuple]]:
    """(layer name, LiteRT file of the decoder cut after it, output shape) per layer,
    traced as the export traces them (:func:`galsim_vae.bundle.export.export_tracing`:
    a conv decoder's last two convolutions then work on the phase channels of the
    half-resolution map)."""
    import tensorflow as tf

    from galsim_vae import load_model
    from galsim_vae.bundle.export import convert_to_litert, export_tracing

    decoder = load_model(bundle).network.decoder_cnn
    signature = [tf.TensorSpec((batch, *decoder.input_shape[1:]), tf.float32)]
    cuts = []
    with export_tracing(decoder):
        for i, layer in enumerate(decoder.layers):
            def cut(x, end=i + 1):
                for previous in decoder.layers[:end]:
                    x = previous(x)
                return x

            path = folder / f"cut{i}.tflite"
            path.write_bytes(convert_to_litert(cut, signature))
            shape = tf.function(cut).get_concrete_function(*signature).output_shapes
            cuts.append((layer.name, str(path), tuple(shape[1:])))
    return cuts


def profile(bundle: str, batch: int, reps: int) -> None:
    from galsim_vae.bundle import read_bundle
    from galsim_vae.bundle.names import resolve_bundle

    folder = resolve_bundle(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        cuts = cut_models(bundle, batch, Path(tmp))
        print(f"## {bundle}: decoder layers, LiteRT, batch {batch}, ms per galaxy "
              "(layer = difference of successive cuts)")
        print("| layer | output | 1 thread | 2 threads |")
        print("|---|---|---|---|")
        previous = np.zeros(2)
        for name, path, shape in cuts:
            now = np.array([time_interpreter(path, t, reps) for t in (1, 2)])
            step = 1e3 * (now - previous)
            print(f"| {name} | {'x'.join(map(str, shape))} | {step[0]:+.3f} | {step[1]:+.3f} |")
            previous = now
        print(f"| **whole decoder** | | {1e3 * previous[0]:.3f} | {1e3 * previous[1]:.3f} |")
        spec = read_bundle(folder).generator
        if spec is not None:
            exported = next(f for b, f in zip(spec.batches, spec.decoders) if b > 1)
            path = str(folder / exported)
            total = [1e3 * time_interpreter(path, t, reps) for t in (1, 2)]
            print(f"| exported `{exported}` (flux scaling included) | | {total[0]:.3f} | "
                  f"{total[1]:.3f} |")
            print(f"\nexported decoder: {1e3 / total[1]:.0f} galaxies/s with 2 threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", help="bundle names or folders")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    for bundle in args.bundles:
        profile(bundle, args.batch, args.reps)


if __name__ == "__main__":
    main()
