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


def import_tensorflow(verbose: bool | None = None):
    """Import and return ``tensorflow`` (with TFP and Keras, devices listed), quietly
    unless ``verbose`` (default: the ``GALSIM_VAE_VERBOSE`` environment variable)."""
    if "tensorflow" in sys.modules and "tensorflow_probability" in sys.modules:
        return sys.modules["tensorflow"]
    if verbose is None:
        verbose = os.environ.get(VERBOSE_ENV, "0") not in ("", "0")
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
    return tf
