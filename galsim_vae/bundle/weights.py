"""Network weights of a bundle: refuse anything but arrays, build the networks from
the spec with package code only (through the architecture and prior registries), and
load the arrays into them."""

from __future__ import annotations

from pathlib import Path

from ..errors import BundleError


def check_weight_file(path: Path) -> None:
    """Refuse a weight file that is not a Keras ``.weights.h5`` file of plain arrays: a
    pickle, a zip (``.keras``) archive, or a whole serialised Keras model (``model_config``
    attribute: layer classes, maybe Lambda code).  Nothing in it is ever deserialised."""
    import h5py

    fix = ("galsim-vae reads only arrays from Keras .weights.h5 files and never unpickles "
           "or deserialises models: copy the bundle again, or re-save the model with "
           "galsim_vae.bundle.save_bundle")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as f:
            head = f.read(4)
        kind = ("a Python pickle" if head[:1] == b"\x80" else
                "a zip archive (a .keras model?)" if head[:2] == b"PK" else "not an HDF5 file")
        raise BundleError(f"weight file {str(path)!r} is {kind}; {fix}")
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config", f.attrs.get("training_config"))
    if config is not None:
        text = config.decode() if isinstance(config, bytes) else str(config)
        code = " including a Lambda layer (Python code)" if '"Lambda"' in text else ""
        raise BundleError(f"weight file {str(path)!r} holds a whole serialised Keras model "
                          f"(a layer configuration{code}), not weights only; {fix}")


def build_model_variables(model) -> None:
    """Create every variable of ``model`` (weights are loaded into built layers only)."""
    build = getattr(model, "build_all", None)
    if callable(build):
        build()
        return
    import tensorflow as tf

    k = int(model.n_conditions)
    cond = tf.zeros([1, k]) if k else None
    s = int(model.stamp_size)
    model.encode(tf.zeros([1, s, s, 1]), cond)
    model.decode(tf.zeros([1, int(model.latent_size)]), cond)


def build_prior_variables(prior) -> None:
    """Mark the flow prior built (its layers are built in its constructor) by one call on
    zeros: Keras saves and loads the weights of built models only."""
    if getattr(prior, "built", False):
        return
    import tensorflow as tf

    k = int(prior.n_conditions)
    prior(tf.zeros([1, int(prior.latent_size)]), tf.zeros([1, k]) if k else None)
