"""Exporting a bundle's generator to LiteRT flat buffers (``decoder.tflite``,
``prior.tflite``), the sampling path that runs without TensorFlow
(:mod:`galsim_vae.lite_runtime`).

The decoder (z and standardised conditions -> profile (B, S, S, 1) in network units,
the flux condition's factor included) and, for a learned prior, the flow's forward transform
(eps -> z) are traced at fixed batches of 1 and :data:`EXPORT_BATCH` rows (static
shapes run ~3x faster than dynamic ones in LiteRT; a batch of 1 costs one galaxy, not a
padded batch), a conv decoder's full-resolution stage rewritten at half resolution
(:mod:`.phase_stage`, the same function), their variables frozen into constants and converted
with ``tf.lite.TFLiteConverter`` restricted to builtin operators (no TensorFlow kernels,
no custom operators: nothing from TensorFlow is needed at run time).  The random
orientation of a "dihedral" or "isotropic" bundle is applied in numpy by the runtime,
as the network does it (pixel permutations, exact).

At export the LiteRT generator is run against TensorFlow on a batch of random latents
and the largest relative difference of the profiles is recorded in ``model.json``
(``generator.max_relative_difference``; float32 arithmetic in another order: ~1e-6).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import BundleError
from ..io_utils import atomic_directory
from ..lite_runtime import LiteGenerator
from .checksums import sha256_file
from .phase_stage import phase_convolutions
from .spec import DECODER_TFLITE, MODEL_JSON, PRIOR_TFLITE, GeneratorSpec, write_spec

#: Rows of the exported batched calls (a batch of 1 is exported beside it).
EXPORT_BATCH = 16
#: Largest relative difference between the LiteRT and TensorFlow profiles accepted at
#: export (float32 in another order of operations gives ~1e-6).
EXPORT_TOLERANCE = 1e-4


def convert_to_litert(function, signature) -> bytes:
    """LiteRT flat buffer of ``function`` traced at ``signature``, variables frozen."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    frozen = convert_variables_to_constants_v2(
        tf.function(function, input_signature=signature).get_concrete_function())
    absl = logging.getLogger("absl")  # "consider providing the trackable_obj": the
    level = absl.level                # variables are frozen already, on purpose
    absl.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    finally:
        absl.setLevel(level)


@contextlib.contextmanager
def _stable_softplus(network):
    """Trace the network's softplus activations as ``relu(x) + log1p(exp(-|x|))``.

    The same function, but LiteRT's builtin softplus computes ``log(1 + exp(x))``, which
    overflows to inf above x ~ 88 (bright galaxies' central pixels in network units).
    """
    import keras
    import tensorflow as tf

    def stable(x):
        return tf.nn.relu(x) + tf.math.log1p(tf.exp(-tf.abs(x)))

    swapped = [layer for layer in network._flatten_layers()
               if getattr(layer, "activation", None) is keras.activations.softplus]
    for layer in swapped:
        layer.activation = stable
    try:
        yield
    finally:
        for layer in swapped:
            layer.activation = keras.activations.softplus


def _group_norm_4d(layer, x):
    """``keras.layers.GroupNormalization`` of a (B, H, W, C) map (channels last), in
    operators of 4-D maps only: per-channel spatial means averaged over each group (equal
    counts: the group mean), the same of the squared differences from it (the variance,
    in two passes as ``tf.nn.moments`` computes it), and the normalisation and the affine
    terms folded into one multiply-add per pixel, as Keras does.

    Keras reshapes to (B, H, W, G, C/G) and reduces over three axes of that 5-D tensor,
    which LiteRT's XNNPACK delegate does not take: each normalisation then ran in the
    reference kernels (at 128x128 a sixth of the decoder).  Same function, float32
    rounding in another order (relative differences ~1e-7); five operators over the map
    instead of six."""
    import tensorflow as tf

    channels = int(x.shape[-1])
    groups = int(layer.groups)
    width = channels // groups

    def group_average(per_channel):             # (B, C) -> (B, 1, 1, C)
        grouped = tf.reduce_mean(tf.reshape(per_channel, [-1, groups, width]), axis=-1,
                                 keepdims=True)
        shape = tf.stack([tf.shape(per_channel)[0], groups, width])
        return tf.reshape(tf.broadcast_to(grouped, shape), [-1, 1, 1, channels])

    mean = group_average(tf.reduce_mean(x, axis=[1, 2]))
    variance = group_average(tf.reduce_mean(tf.math.squared_difference(x, mean),
                                            axis=[1, 2]))
    scale = tf.math.rsqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * tf.reshape(layer.gamma, [1, 1, 1, channels])
    shift = -mean * scale
    if layer.center:
        shift = shift + tf.reshape(layer.beta, [1, 1, 1, channels])
    return x * scale + shift


@contextlib.contextmanager
def _delegable_group_norm(network):
    """Trace the network's channels-last GroupNormalization layers of 4-D maps as
    :func:`_group_norm_4d` (the same function in operators XNNPACK runs)."""
    import keras

    swapped = [layer for layer in network._flatten_layers()
               if isinstance(layer, keras.layers.GroupNormalization)
               and layer.axis in (-1, 3)
               and getattr(layer.input_spec, "ndim", None) == 4]
    for layer in swapped:
        layer.call = _group_norm_4d.__get__(layer)
    try:
        yield
    finally:
        for layer in swapped:
            del layer.call                     # back to the class's method


@contextlib.contextmanager
def _builtin_searchsorted():
    """Trace the spline couplings' bin search (``tf.searchsorted``, the ``UpperBound``
    operator, which LiteRT has only as a TensorFlow kernel) as a count of the knots below
    each value: the same integer for a sorted sequence, in builtin operators.  Only the
    spline module's own reference to TensorFlow is swapped (for a view of it with this
    one function replaced); TensorFlow itself is left as it is."""
    import tensorflow as tf
    from tensorflow_probability.python.bijectors import rational_quadratic_spline as spline

    def counted(sorted_sequence, values, side="left", out_type=tf.int32, name=None):
        below = tf.less_equal if side == "right" else tf.less
        hits = below(sorted_sequence[..., tf.newaxis, :], values[..., :, tf.newaxis])
        return tf.cast(tf.reduce_sum(tf.cast(hits, tf.int32), axis=-1), out_type)

    class _WithCountedSearch:
        def __init__(self, module):
            self._module = module

        def __getattr__(self, name):
            return counted if name == "searchsorted" else getattr(self._module, name)

    original = spline.tf
    spline.tf = _WithCountedSearch(original)
    try:
        yield
    finally:
        spline.tf = original


@contextlib.contextmanager
def export_tracing(network):
    """Trace ``network`` (or one of its Keras stacks) as the export does: overflow-free
    softplus, GroupNormalization in 4-D operators, a conv decoder's last stage at half
    resolution.  The same functions; operators that LiteRT's XNNPACK delegate runs."""
    with _stable_softplus(network), _delegable_group_norm(network), \
            phase_convolutions(network):
        yield


def write_generator(network, folder: str | os.PathLike, *,
                    batch: int = EXPORT_BATCH) -> GeneratorSpec:
    """Write the decoder (and, for a learned prior, the prior transform) of ``network``
    (a ``galsim_vae.models`` model with its prior attached) into ``folder`` at the batch
    sizes 1 and ``batch`` (``decoder_b1.tflite``, ``decoder_b{batch}.tflite``, ...) and
    check them against TensorFlow.

    Raises:
        BundleError: the conversion failed, the LiteRT profiles differ from TensorFlow's
            by more than :data:`EXPORT_TOLERANCE` (relative), or the two batch sizes do
            not give the same bits for the same rows.
    """
    folder = Path(folder)
    batches = tuple(sorted({1, int(batch)}))
    decode, prior = _functions(network)
    has_flow = network.flow_prior is not None
    try:
        for b in batches:
            signature = _signature(network, b)
            with export_tracing(network):
                (folder / DECODER_TFLITE.format(batch=b)).write_bytes(
                    convert_to_litert(decode, signature))
            if has_flow:
                with _builtin_searchsorted():
                    (folder / PRIOR_TFLITE.format(batch=b)).write_bytes(
                        convert_to_litert(prior, signature))
    except Exception as err:  # noqa: BLE001 - the converter raises many kinds
        # a tracing error's first line is "in user code:", its last line the cause
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        cause = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
        raise BundleError(f"cannot export the generator of {network.architecture!r} to "
                          f"LiteRT: {type(err).__name__}: {cause}") from None
    spec = GeneratorSpec(
        batches=batches, decoders=tuple(DECODER_TFLITE.format(batch=b) for b in batches),
        priors=tuple(PRIOR_TFLITE.format(batch=b) for b in batches) if has_flow else None)
    difference = _check_against_tensorflow(network, folder, spec, decode, prior)
    return GeneratorSpec(batches=spec.batches, decoders=spec.decoders, priors=spec.priors,
                         max_relative_difference=difference)


def _signature(network, batch: int) -> list:
    """Input signature of the exported functions at ``batch`` rows (no conditions input
    for an unconditional model: a zero-width one does not convert)."""
    import tensorflow as tf

    latent = tf.TensorSpec([batch, int(network.latent_size)], tf.float32, name="latent")
    k = int(network.n_conditions)
    return [latent, tf.TensorSpec([batch, k], tf.float32, name="conditions")] if k else [latent]


def _functions(network):
    """(decode, prior): the exported computations, as plain functions of tensors."""
    # the profile keeps its channel axis: a slice or reshape after the last layer is an
    # operator that XNNPACK does not take over, and at 128x128 it cost as much as the
    # whole network (benchmarks/decoder_profile.py: 0.50 against 0.32 ms per galaxy);
    # the runtime drops the axis as a numpy view
    if network.n_conditions:
        def decode(latent, conditions):
            return {"profile": network.decode(latent, conditions)}

        def prior(eps, conditions):
            return {"latent": network.prior_transform(
                eps, network._prior_conditions(conditions))}
    else:
        def decode(latent, conditions=None):
            return {"profile": network.decode(latent, None)}

        def prior(eps, conditions=None):
            return {"latent": network.prior_transform(eps, None)}
    return decode, prior


def _check_against_tensorflow(network, folder: Path, spec: GeneratorSpec, decode,
                              prior) -> float:
    """Largest relative difference of LiteRT and TensorFlow profiles (random eps through
    the prior, latents to 4 sigma, conditions to +-3 standard deviations: the bright,
    extreme galaxies are where float32 formulas overflow); also checks that every
    exported batch size gives the same bits (the runner mixes them)."""
    n = max(spec.batches) + 1
    rng = np.random.default_rng(2026)
    eps = (rng.standard_normal((n, network.latent_size))
           * np.linspace(0.5, 4.0, n)[:, None]).astype(np.float32)
    cond = rng.uniform(-3.0, 3.0, (n, network.n_conditions)).astype(np.float32)
    lite = LiteGenerator(folder, spec, threads=1)
    z_tf = prior(eps, cond)["latent"].numpy()
    ref = decode(z_tf, cond)["profile"].numpy()[..., 0]
    got = lite.decode(lite.prior(eps, cond), cond)      # a full batch, then one alone
    scale = float(np.abs(ref).max()) or 1.0
    difference = float(np.abs(got - ref).max() / scale)
    if not (np.isfinite(got).all() and difference <= EXPORT_TOLERANCE):
        raise BundleError(f"the exported LiteRT generator differs from TensorFlow by "
                          f"{difference:.3g} (relative; at most {EXPORT_TOLERANCE} accepted)")
    alone = lite.decode(lite.prior(eps[:1], cond[:1]), cond[:1])
    if not np.array_equal(alone, got[:1]):
        raise BundleError("the exported batch sizes give different bits for the same "
                          f"galaxy ({spec.batches}); export with another --batch")
    return difference


def unexportable(network) -> str | None:
    """Why ``network``'s generator cannot be exported, or None.  The exported generator
    covers architectures whose noise is the latent (and the orientation entry of a
    bundle that samples orientations); one whose decoder draws noise of its own stays on
    TensorFlow."""
    from ..isotropy import ORIENTED

    oriented = network.get_config_dict().get("sample_symmetry") in ORIENTED
    expected = int(network.latent_size) + int(oriented)
    if int(network.noise_size) != expected:
        return (f"architecture {network.architecture!r} draws {network.noise_size} noise "
                f"numbers per galaxy, not the latent size {network.latent_size}"
                f"{' + 1' if oriented else ''}: its decoder draws noise of its own")
    return None


@contextlib.contextmanager
def _float32_policy():
    """Build networks in float32 whatever the global Keras policy (a mixed-precision
    training run): the exported generator computes in float32, like loaded bundles."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def export_folder(folder: str | os.PathLike, *, batch: int = EXPORT_BATCH,
                  required: bool = True) -> GeneratorSpec | None:
    """Export the generator of the bundle being written in ``folder`` (its networks and
    ``model.json`` already there) and rewrite its ``model.json`` with the generator and
    the refreshed checksums.  The networks are loaded from the folder as ``load_model``
    would (float32), so the export is of exactly what the bundle holds.

    Returns the generator spec, or None when the architecture cannot be exported and not
    ``required`` (see :func:`unexportable`).

    Raises:
        BundleError: conversion or agreement failures; an unexportable architecture when
            ``required``.
    """
    from .reader import load_bundle

    folder = Path(folder)
    with _float32_policy():
        network, spec = load_bundle(folder)
    reason = unexportable(network)
    if reason is not None:
        if required:
            raise BundleError(f"cannot export bundle {str(folder)!r}: {reason}")
        return None
    old = spec.generator.files() if spec.generator else []
    for name in old:
        (folder / name).unlink(missing_ok=True)
    generator = write_generator(network, folder, batch=batch)
    files = {k: v for k, v in spec.files.items() if k not in old}
    files.update({name: sha256_file(folder / name) for name in generator.files()})
    write_spec(folder / MODEL_JSON, spec.with_generator(generator).with_files(files))
    return generator


def export_bundle(path: str | os.PathLike, *, batch: int = EXPORT_BATCH) -> Path:
    """Add (or replace) the exported generator of an existing bundle, in place.

    The bundle is validated, its generator written into a copy with the checksums
    refreshed, and the copy swapped in: a failure leaves the bundle as it was.

    Returns:
        The bundle path.
    """
    from .reader import read_bundle

    path = Path(path)
    read_bundle(path)                      # validate before copying
    with atomic_directory(path, overwrite=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(path, tmp)
        export_folder(tmp, batch=batch)
    return path
