"""The conv decoder's up-sampling traced per phase at half resolution, for the export.

The last stage of :func:`galsim_vae.models.networks.build_decoder_cnn` (without its
normalisation, ``full_resolution_norm=False``) is

    x (B, H, W, C) --Conv2DTranspose(C', 4, stride 2, "same")--> (B, 2H, 2W, C')
      --LeakyReLU--> --Conv2D(1, 3, "same", activation)--> profile (B, 2H, 2W, 1).

Every pixel (2m + dy, 2n + dx) of a stride-2 map is one of four *phases* (dy, dx) of the
half-resolution pixel (m, n).  Written per phase, the same computation is

    x --Conv2D(4 C', 3, "same")--> --LeakyReLU--> --Conv2D(4, 3, "same", activation)-->
      --depth_to_space(2)--> profile,

with the kernels rearranged (and zeros where a phase does not reach a neighbour): the
transposed convolution's output pixel of phase d along an axis reads the input pixels
m - 1 (kernel tap 3) and m (tap 1) for d = 0, m (tap 2) and m + 1 (tap 0) for d = 1
(``tf.nn.conv2d_transpose`` with padding 1 before); the 3x3 output convolution reads the
full-resolution neighbours p - 1, p, p + 1 of p = 2m + d, i.e. phase (d + b - 1) mod 2 of
the half-resolution pixel m + floor((d + b - 1) / 2) for tap b.  The element-wise LeakyReLU
and output activation commute with the rearrangement.

It is the same function (float32 sums in another order, ~1e-7 relative), but only the
final one-channel profile exists at full resolution: in LiteRT's XNNPACK the stage took
0.19 instead of 0.33 ms per galaxy at 128x128 with 2 threads (``benchmarks/README.md``),
the same idea as the sub-pixel convolution of Shi et al. 2016 (arXiv:1609.05158) applied
to a trained network.  A transposed convolution elsewhere in the decoder with few
filters is likewise traced as its half-resolution convolution and a depth-to-space
(:data:`PHASE_MAX_FILTERS`).  The weights and the bundle are unchanged; only the traced
graph differs.
"""

from __future__ import annotations

import contextlib

import numpy as np

#: Kernel tap of the stride-2, kernel-4, "same" transposed convolution that output phase
#: d reads from the input pixel at offset (a - 1): {(d, a): tap}.
_TRANSPOSE_TAPS = {(0, 0): 3, (0, 1): 1, (1, 1): 2, (1, 2): 0}


def transpose_as_phases(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (3, 3, C, 4 C') and bias (4 C',) of the half-resolution convolution whose
    output channel ``(2 dy + dx) C' + c`` is phase (dy, dx), channel c, of a
    Conv2DTranspose(C', 4, strides=2, padding="same") with Keras kernel ``(4, 4, C', C)``."""
    _, _, out_channels, in_channels = kernel.shape
    phases = np.zeros((3, 3, in_channels, 4 * out_channels), kernel.dtype)
    for (dy, ay), ty in _TRANSPOSE_TAPS.items():
        for (dx, ax), tx in _TRANSPOSE_TAPS.items():
            phase = 2 * dy + dx
            phases[ay, ax, :, phase * out_channels:(phase + 1) * out_channels] = \
                kernel[ty, tx].T
    return phases, np.tile(bias, 4)


def conv3x3_on_phases(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kernel (3, 3, 4 C, 4 K) and bias (4 K,) of the half-resolution convolution that
    gives, as channel ``(2 dy + dx) K + k``, phase (dy, dx) of a 3x3 "same" convolution
    with Keras kernel ``(3, 3, C, K)`` applied to the full-resolution map whose phases are
    the input channels ``(2 dy + dx) C + c``."""
    _, _, in_channels, out_channels = kernel.shape
    phases = np.zeros((3, 3, 4 * in_channels, 4 * out_channels), kernel.dtype)

    def reach(d: int, tap: int) -> tuple[int, int]:  # (offset index a, source phase)
        shift = d + tap - 1
        return shift // 2 + 1, shift % 2

    for dy in (0, 1):
        for dx in (0, 1):
            out = (2 * dy + dx) * out_channels
            for by in range(3):
                ay, sy = reach(dy, by)
                for bx in range(3):
                    ax, sx = reach(dx, bx)
                    src = (2 * sy + sx) * in_channels
                    phases[ay, ax, src:src + in_channels, out:out + out_channels] += \
                        kernel[by, bx]
    return phases, np.tile(bias, 4)


#: Transposed convolutions with at most this many filters are traced as a half-resolution
#: convolution and a depth-to-space (XNNPACK's deconvolution is slow with few output
#: channels: at 32x32x32 -> 64x64x8, batch 16, 2 threads, 0.088 against 0.062 ms per
#: galaxy; at 32 and 64 filters it was the faster, 0.074 against 0.112 ms).
PHASE_MAX_FILTERS = 8


def _is_phase_transpose(layer) -> bool:
    """A stride-2, kernel-4, "same", channels-last Conv2DTranspose with bias and no
    activation of its own (the decoder's up-sampling stages)."""
    import keras

    return (isinstance(layer, keras.layers.Conv2DTranspose)
            and tuple(layer.strides) == (2, 2) and tuple(layer.kernel_size) == (4, 4)
            and layer.padding == "same" and layer.data_format == "channels_last"
            and layer.use_bias and tuple(layer.dilation_rate) == (1, 1)
            and layer.activation is keras.activations.linear)


def _last_stage(sequential):
    """(transposed, output) layers of a Keras Sequential ending in a phase transpose, a
    LeakyReLU and a 3x3 "same" output convolution (a conv decoder whose last stage is
    neither normalised nor cropped), or None."""
    import keras

    layers = list(sequential.layers)
    if len(layers) < 3:
        return None
    up, act, out = layers[-3:]
    ok = (_is_phase_transpose(up) and isinstance(act, keras.layers.LeakyReLU)
          and type(out) is keras.layers.Conv2D and tuple(out.kernel_size) == (3, 3)
          and tuple(out.strides) == (1, 1) and out.padding == "same" and out.use_bias
          and tuple(out.dilation_rate) == (1, 1) and out.data_format == "channels_last"
          and out.groups == 1)
    return (up, out) if ok else None


@contextlib.contextmanager
def phase_convolutions(network):
    """Trace the conv decoders of ``network`` with their up-sampling written per phase,
    as described in the module docstring: the last stage (transposed convolution,
    LeakyReLU, 3x3 output convolution) wholly at half resolution, and every other
    stride-2 transposed convolution of at most :data:`PHASE_MAX_FILTERS` filters as a
    half-resolution convolution and a depth-to-space.  Layers of any other shape (a
    sub-pixel decoder, a normalised or cropped last stage) trace as they are.

    Yields the number of layers traced otherwise."""
    import keras
    import tensorflow as tf

    calls, specs = {}, {}
    for sequential in [layer for layer in network._flatten_layers()
                       if isinstance(layer, keras.Sequential)]:
        stage = _last_stage(sequential)
        if stage is not None:
            up, out = stage
            k1, b1 = transpose_as_phases(*(np.asarray(w) for w in up.get_weights()))
            k2, b2 = conv3x3_on_phases(*(np.asarray(w) for w in out.get_weights()))
            calls[id(up)] = (up, lambda x, k=k1, b=b1: tf.nn.conv2d(x, k, 1, "SAME") + b)
            calls[id(out)] = (out, lambda x, k=k2, b=b2, out=out: tf.nn.depth_to_space(
                out.activation(tf.nn.conv2d(x, k, 1, "SAME") + b), 2))  # activation read
            specs[id(out)] = (out, out.input_spec)                      # when traced
        for layer in sequential.layers:
            if (id(layer) not in calls and _is_phase_transpose(layer)
                    and layer.filters <= PHASE_MAX_FILTERS):
                k, b = transpose_as_phases(*(np.asarray(w) for w in layer.get_weights()))
                calls[id(layer)] = (layer, lambda x, k=k, b=b: tf.nn.depth_to_space(
                    tf.nn.conv2d(x, k, 1, "SAME") + b, 2))
    for out, _ in specs.values():
        out.input_spec = None                # it takes the 4 C' phase channels
    for layer, call in calls.values():
        layer.call = call
    try:
        yield len(calls)
    finally:
        for layer, _ in calls.values():
            del layer.call                     # back to the classes' methods
        for out, spec in specs.values():
            out.input_spec = spec
