"""The sampling path without TensorFlow: a bundle's exported generator run by LiteRT.

``galsim-vae train`` (and ``galsim-vae export`` for older bundles) writes the decoder and
the learned prior as LiteRT flat buffers (:mod:`galsim_vae.bundle.export`);
:class:`LiteRunner` runs them with the ``ai-edge-litert`` interpreter, so that
``load_model``, ``GalaxyModel.sample``, ``VAEGalaxy`` and the YAML type import no
TensorFlow: a process starts in a fraction of a second and holds ~100 MB instead of
~800 MB.  The evaluation generates and reconstructs through the same runner: what is
evaluated is what users draw.

Reproducibility: the networks are exported at fixed row counts (1 and 16), a call has
exactly one of them (a short remainder is padded with zeros or run row by row), each
row's output depends on that row only (no reduction across rows in a decoder), and the
export checks that the sizes give the same bits for the same row: a galaxy is the same
to the last bit alone, in any batch, at any position, in any process.

Processes: the interpreters are built on first use in each process (a forked child that
finds interpreters of its parent builds its own), and a runner pickles as its bundle
folder and generator spec.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .bundle.spec import GeneratorSpec
from .isotropy import ORIENTED, orientation_values, split_orientation
from .tf_runtime import THREADS_ENV


def default_threads() -> int:
    """Threads per interpreter: ``GALSIM_VAE_THREADS`` if set, else the CPUs this process
    may run on."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LiteGenerator:
    """The exported networks of one bundle, in LiteRT interpreters of this process.

    Parameters:
        folder:  the bundle folder.
        spec:    its :class:`~galsim_vae.bundle.spec.GeneratorSpec`.
        threads: threads per interpreter (default :func:`default_threads`).
    """

    def __init__(self, folder: str | os.PathLike, spec: GeneratorSpec,
                 threads: int | None = None):
        self._folder = Path(folder)
        self._spec = spec
        self._threads = threads
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._interpreters: dict = {}

    def __getstate__(self) -> dict:
        return {"folder": str(self._folder), "spec": self._spec, "threads": self._threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["spec"], state["threads"])

    @property
    def batches(self) -> tuple:
        """The exported row counts (ascending)."""
        return tuple(self._spec.batches)

    def _interpreter(self, file_name: str):
        """The interpreter of ``file_name`` for this process (rebuilt after a fork)."""
        pid = os.getpid()
        if self._pid != pid:  # new process (or forked child): the parent's are not ours
            self._interpreters, self._pid, self._lock = {}, pid, threading.Lock()
        interpreter = self._interpreters.get(file_name)
        if interpreter is None:
            from .tf_runtime import quiet_native_output
            from ai_edge_litert.interpreter import Interpreter

            with quiet_native_output():  # "Created TensorFlow Lite XNNPACK delegate"
                interpreter = Interpreter(model_path=str(self._folder / file_name),
                                          num_threads=self._threads or default_threads())
                interpreter.allocate_tensors()
            inputs = interpreter.get_input_details()
            first = next(d["index"] for d in inputs if d["name"].endswith("latent"))
            cond = next((d["index"] for d in inputs if d["name"].endswith("conditions")),
                        None)  # unconditional models have none
            self._interpreters[file_name] = (interpreter, first, cond,
                                             interpreter.get_output_details()[0]["index"])
        return self._interpreters[file_name]

    def _calls(self, n: int) -> list[tuple[int, int]]:
        """(start, batch size) of the calls for n rows: full calls of the largest size;
        the rest one by one at size 1 when that costs no more than padding a large call
        (up to half of it), else padded."""
        big = max(self._spec.batches)
        calls = [(start, big) for start in range(0, n - n % big, big)]
        rest = n % big
        if rest and 1 in self._spec.batches and rest <= big // 2:
            calls += [(n - rest + i, 1) for i in range(rest)]
        elif rest:
            calls.append((n - rest, big))
        return calls

    def _run(self, files: tuple, first: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Run one exported network (``files``: its file per batch size) on n rows."""
        first = np.asarray(first, dtype=np.float32)
        n = len(first)
        conditions = np.asarray(conditions, dtype=np.float32).reshape(n, -1)
        by_size = dict(zip(self._spec.batches, files))
        out = None
        with self._lock:
            for start, size in self._calls(n):
                interpreter, first_in, cond_in, out_index = self._interpreter(by_size[size])
                stop = min(n, start + size)
                rows = np.zeros((size, first.shape[1]), np.float32)
                rows[:stop - start] = first[start:stop]
                interpreter.set_tensor(first_in, rows)
                if cond_in is not None:
                    cond_rows = np.zeros((size, conditions.shape[1]), np.float32)
                    cond_rows[:stop - start] = conditions[start:stop]
                    interpreter.set_tensor(cond_in, cond_rows)
                interpreter.invoke()
                result = interpreter.get_tensor(out_index)
                if out is None:
                    out = np.empty((n,) + result.shape[1:], dtype=np.float32)
                out[start:stop] = result[:stop - start]
        return out

    def prior(self, eps: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Latents z (n, latent_size) float32 of standard-normal ``eps`` (n, latent_size)
        for standardised ``conditions`` (n, k): the flow, or z = eps for N(0, I)."""
        if self._spec.priors is None:
            return np.asarray(eps, dtype=np.float32)
        return self._run(self._spec.priors, eps, conditions)

    def decode(self, latents: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Profiles (n, S, S) float32 in network units of latents z (n, latent_size)."""
        profiles = self._run(self._spec.decoders, latents, conditions)
        # exported as (n, S, S, 1) (bundles exported before 2026-12-03: (n, S, S))
        return profiles[..., 0] if profiles.ndim == 4 else profiles


class LiteRunner:
    """The inference path of :class:`~galsim_vae.generator.GalaxyModel` on the exported
    generator (same interface as :class:`~galsim_vae.inference.NetworkRunner`).

    Parameters:
        folder:          the bundle folder.
        spec:            its generator spec.
        latent_size:     z dimension.
        symmetry:        the bundle's ``sample_symmetry``: with "dihedral" or "isotropic"
                         one more noise number per galaxy gives its orientation
                         (:mod:`galsim_vae.isotropy`).
        threads:         threads per interpreter (default :func:`default_threads`).
    """

    def __init__(self, folder: str | os.PathLike, spec: GeneratorSpec, *, latent_size: int,
                 symmetry: str = "none", threads: int | None = None):
        self._generator = LiteGenerator(folder, spec, threads)
        self._latent_size = int(latent_size)
        self._symmetry = str(symmetry)
        self._oriented = self._symmetry in ORIENTED

    def _conditions(self, conditions: np.ndarray | None, n: int) -> np.ndarray:
        return np.zeros((n, 0), np.float32) if conditions is None else np.asarray(
            conditions, np.float32)

    def noise_to_latent(self, noise: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
        """Latent vectors (n, latent_size [+ 1]) float64 of ``noise`` for standardised
        ``conditions``: z, and the orientation entry for a bundle that samples
        orientations."""
        noise = np.asarray(noise, dtype=np.float32)
        cond = self._conditions(conditions, len(noise))
        z = self._generator.prior(noise[:, :self._latent_size], cond).astype(float)
        if not self._oriented:
            return z
        entry = orientation_values(noise[:, self._latent_size], self._symmetry)
        return np.concatenate([z, entry[:, None].astype(float)], axis=1)

    def decode(self, values: np.ndarray, conditions: np.ndarray | None, *,
               from_noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Profiles (n, S, S) float32 (the network's precision) in network units and
        their latent vectors, for ``values`` (noise when ``from_noise``, else latent
        vectors, z or z with an orientation entry) and standardised ``conditions`` (n, k)
        or None; turned by their group element (the residual rotation of isotropic
        sampling is :meth:`~galsim_vae.generator.GalaxyModel.decode_batch`'s)."""
        from .data.pipeline import apply_dihedral

        values = np.asarray(values, dtype=float)
        latents = self.noise_to_latent(values, conditions) if from_noise else values
        cond = self._conditions(conditions, len(values))
        profiles = self._generator.decode(latents[:, :self._latent_size], cond)
        if latents.shape[1] == self._latent_size + 1 and self._oriented:
            codes, _ = split_orientation(latents[:, -1], self._symmetry)
            profiles = apply_dihedral(profiles, codes)
        return profiles, latents
