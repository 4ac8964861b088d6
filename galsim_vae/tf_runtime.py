"""TensorFlow imported quietly.

TensorFlow's C++ runtime writes start-up notices straight to file descriptor 2 when it is
first imported and when it first looks for devices (absl's "All log messages before
absl::InitializeLog()", oneDNN's "custom operations are on", CUDA driver probing), which
``TF_CPP_MIN_LOG_LEVEL`` does not silence.  :func:`import_tensorflow` imports TensorFlow,
TensorFlow Probability and Keras and lists the devices once with descriptor 2 pointed at
``/dev/null``, so that ``import galsim_vae``, ``load_model`` and every CLI command print
nothing of it.  ``GALSIM_VAE_VERBOSE=1`` (``galsim-vae --verbose``) keeps the notices.
Python exceptions raised by the import are not hidden: they propagate as usual.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

#: Environment variable that keeps TensorFlow's start-up notices ("1").
VERBOSE_ENV = "GALSIM_VAE_VERBOSE"


@contextlib.contextmanager
def _silenced_stderr():
    """Point file descriptor 2 at /dev/null for the duration (Python's sys.stderr too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


def quiet_native_output():
    """Context in which native libraries' notices to descriptor 2 are dropped (unless
    ``GALSIM_VAE_VERBOSE``): TensorFlow's start-up, LiteRT's "Created TensorFlow Lite
    XNNPACK delegate for CPU"."""
    return contextlib.nullcontext() if _verbose() else _silenced_stderr()


def import_tensorflow(verbose: bool | None = None):
    """Import and return ``tensorflow`` (with TFP and Keras, devices listed), quietly
    unless ``verbose`` (default: the ``GALSIM_VAE_VERBOSE`` environment variable)."""
    if "tensorflow" in sys.modules and "tensorflow_probability" in sys.modules:
        return sys.modules["tensorflow"]
    if verbose is None:
        verbose = _verbose()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    context = contextlib.nullcontext() if verbose else _silenced_stderr()
    with context, warnings.catch_warnings():
        # TFP 0.25 checks the TensorFlow version with distutils' deprecated LooseVersion
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module=r"tensorflow_probability\..*|.*distutils.*")
        import tensorflow as tf
        import tensorflow_probability  # noqa: F401
        import keras  # noqa: F401

        tf.config.list_physical_devices()
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads.isdigit() and int(threads) >= 1:
        _size_tensorflow_pools(tf, int(threads))
    return tf


def _size_tensorflow_pools(tf, threads: int) -> None:
    """TensorFlow's intra-op pool to ``threads``, inter-op to 1 (only possible before it
    runs its first operation: later, a warning)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:
            warnings.warn(f"TensorFlow already runs in this process: its thread pools keep "
                          f"their size (set {THREADS_ENV} or input.vae_model.threads before "
                          "the first model is loaded)", RuntimeWarning, stacklevel=3)


#: Environment variable with the number of threads each process may use.
THREADS_ENV = "GALSIM_VAE_THREADS"
#: Thread-pool variables of OpenMP and the BLAS libraries, set for the process.
POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(threads: int | None = None) -> int | None:
    """Limit this process's thread pools to ``threads`` (default: ``GALSIM_VAE_THREADS``;
    None and unset: leave them alone).

    Sets OpenMP/BLAS pool sizes (``OMP_NUM_THREADS`` ...) and TensorFlow's intra-op pool
    to ``threads`` and its inter-op pool to 1, so that ``nproc`` GalSim processes (or
    Slurm tasks) on ``nproc`` cores do not each start a pool per core.  TensorFlow's pools
    can only be sized before it runs its first operation: called later, the TensorFlow
    part is skipped with a warning.

    Returns:
        The number of threads set, or None.

    Raises:
        ValueError: ``threads`` (or the environment variable) is not a whole number >= 1.
    """
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return None
        try:
            threads = int(text)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={text!r} must be a whole number >= 1") from None
    if isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    threads = int(threads)
    for name in POOL_VARIABLES:
        os.environ[name] = str(threads)
    os.environ[THREADS_ENV] = str(threads)  # LiteRT interpreters (galsim_vae.lite_runtime)
    if "tensorflow" in sys.modules:
        _size_tensorflow_pools(sys.modules["tensorflow"], threads)
    return threads


#: Process id that ran TensorFlow for a model (loaded its network); None before.
_TF_PID: int | None = None


def check_not_forked_from_tensorflow(name_or_path) -> None:
    """TensorFlow's thread pools do not survive fork(): refuse to run it in a process
    forked from one that ran it (it would hang)."""
    if _TF_PID is not None and _TF_PID != os.getpid():
        from .errors import BundleError

        raise BundleError(
            f"cannot load the TensorFlow network of {str(name_or_path)!r} in a process forked "
            f"(pid {os.getpid()}) from one that already ran TensorFlow (pid {_TF_PID}); "
            "export the bundle (`galsim-vae export BUNDLE`: its LiteRT generator is "
            "fork-safe), or with GalSim image.nproc > 1 do not load models in the parent")


def mark_tensorflow_used() -> None:
    global _TF_PID
    _TF_PID = os.getpid()

