"""Convolutional encoder and decoder stacks (Keras 3), derived from the stamp size.

The layout follows the DCGAN-style networks of the seed project (Radford, Metz & Chintala
2016, arXiv:1511.06434): stride-2 convolutions with kernel 4 that halve the map, each
followed by a normalisation and a LeakyReLU of slope 0.2; a small convolution down to
``head_channels`` channels whose flattened pixels feed the latent heads; a decoder that
mirrors the encoder with stride-2 transposed convolutions.

The number of stages comes from the stamp size: the map is halved (rounding up, so odd
sizes work) until it is at most :data:`MAX_BOTTOM_SIZE` pixels, e.g.
32-16-8, 35-18-9-5, 128-64-32-16-8, 158-79-40-20-10-5 (the seed's 158 stack).  The
decoder doubles the map and crops one row and column where the encoder rounded up.

Normalisation: :class:`keras.layers.GroupNormalization` (Wu & He 2018, arXiv:1803.08494),
which normalises each galaxy over groups of channels and has no batch statistics.  It
therefore behaves identically in training and inference, for any batch size (generation
often draws one galaxy), and under ``tf.distribute`` -- the seed's BatchNorm, never
switched to inference mode, made validation losses and samples depend on the batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras

#: The encoder stops halving once the map is at most this many pixels on a side.
MAX_BOTTOM_SIZE = 8
#: The seed project's channel widths (its 128x128 encoder); used when none are given.
DEFAULT_CHANNELS = (64, 128, 256, 512)
#: Slope of the LeakyReLU for negative inputs (DCGAN; the seed project).
LEAKY_SLOPE = 0.2
#: Kernel of the stride-2 (transposed) convolutions (DCGAN; the seed project).
STAGE_KERNEL = 4
#: Output activations the decoder supports.
OUTPUT_ACTIVATIONS = ("softplus", "linear")
#: Decoder up-sampling: the seed's stride-2 transposed convolutions, or nearest-neighbour
#: resizing followed by a convolution, which avoids the checkerboard artefacts of
#: transposed convolutions (Odena, Dumoulin & Olah 2016, Distill, "Deconvolution and
#: Checkerboard Artifacts").
UPSAMPLINGS = ("transpose", "resize")


def stage_sizes(stamp_size: int, max_bottom_size: int = MAX_BOTTOM_SIZE) -> list[int]:
    """Map sizes of the encoder, from the stamp to the bottom of the stack.

    Parameters:
        stamp_size:      Stamp side in pixels (>= 4).
        max_bottom_size: Halve (rounding up) until the map is at most this size.

    Returns:
        ``[stamp_size, ceil(stamp_size / 2), ..., bottom]``; one stage per step.
    """
    sizes = [int(stamp_size)]
    while sizes[-1] > max_bottom_size:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def stage_channels(n_stages: int, channels: Sequence[int] | None = None) -> tuple[int, ...]:
    """Channel widths of ``n_stages`` stages.

    Parameters:
        n_stages: Number of stride-2 stages.
        channels: Widths to use; truncated to ``n_stages`` or extended by repeating the
                  last width.  None: :data:`DEFAULT_CHANNELS`.
    """
    widths = tuple(int(c) for c in (channels if channels is not None else DEFAULT_CHANNELS))
    if not widths:
        widths = DEFAULT_CHANNELS
    if len(widths) >= n_stages:
        return widths[:n_stages]
    return widths + (widths[-1],) * (n_stages - len(widths))


def _groups(channels: int, max_groups: int = 8) -> int:
    """Largest number of groups <= ``max_groups`` that divides ``channels``."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def _norm_act(channels: int, name: str, normalise: bool = True) -> list[keras.layers.Layer]:
    """GroupNormalization (unless ``normalise`` is False) then LeakyReLU."""
    norm = ([keras.layers.GroupNormalization(groups=_groups(channels), name=f"{name}_norm")]
            if normalise else [])
    return norm + [keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_act")]


def build_encoder_cnn(stamp_size: int, in_channels: int, channels: Sequence[int],
                      head_channels: int, name: str = "encoder_cnn") -> keras.Sequential:
    """The encoder convolutions: (B, S, S, in_channels) -> (B, bottom**2 * head_channels).

    Parameters:
        stamp_size:    Stamp side S in pixels.
        in_channels:   Input channels (1 image + one constant plane per condition for
                       ``cvae``/``fancy_cvae``).
        channels:      Width of each stride-2 stage (see :func:`stage_channels`).
        head_channels: Channels of the last (3x3) convolution, flattened into the features.
        name:          Keras name of the stack.
    """
    sizes = stage_sizes(stamp_size)
    widths = stage_channels(len(sizes) - 1, channels)
    layers: list[keras.layers.Layer] = [keras.Input((stamp_size, stamp_size, in_channels))]
    for i, width in enumerate(widths):
        layers.append(keras.layers.Conv2D(width, STAGE_KERNEL, strides=2, padding="same",
                                          name=f"down{i}"))
        layers += _norm_act(width, f"down{i}")
    layers.append(keras.layers.Conv2D(head_channels, 3, padding="same", name="to_heads"))
    layers.append(keras.layers.Flatten(name="flatten"))
    return keras.Sequential(layers, name=name)


def build_decoder_cnn(stamp_size: int, in_features: int, channels: Sequence[int],
                      output_activation: str, name: str = "decoder_cnn",
                      upsampling: str = "transpose",
                      full_resolution_norm: bool = True) -> keras.Sequential:
    """The decoder: (B, in_features) -> (B, S, S, 1), mirroring :func:`build_encoder_cnn`.

    A dense layer maps the input (latent, joined with the conditions) to the bottom map
    with the deepest width; each stage doubles the map with a stride-2 transposed
    convolution (``upsampling="transpose"``, the seed's) or a nearest-neighbour resize and
    a 3x3 convolution (``"resize"``), cropping the last row/column where the encoder
    rounded an odd size up; a 3x3 convolution gives the single output channel.

    Parameters:
        stamp_size:        Stamp side S in pixels.
        in_features:       Length of the input vector.
        channels:          Encoder widths (see :func:`stage_channels`); used in reverse.
        output_activation: ``"softplus"`` (non-negative surface brightness) or ``"linear"``.
        name:              Keras name of the stack.
        upsampling:        ``"transpose"`` or ``"resize"`` (see :data:`UPSAMPLINGS`).
        full_resolution_norm: Normalise the last stage (the one at the stamp's resolution).
                           False leaves only its LeakyReLU: that stage holds most of the
                           decoder's memory traffic (its GroupNormalization was half of the
                           decoding time at 128x128 on a CPU, ``benchmarks/README.md``), and
                           a normalisation right before the output convolution is not needed
                           for stable training (the deeper stages keep theirs).
    """
    layers = _decoder_trunk(stamp_size, in_features, channels, upsampling,
                            full_resolution_norm, stop_at=0)
    _check_output_activation(output_activation)
    layers.append(keras.layers.Conv2D(1, 3, padding="same", activation=output_activation,
                                      name="to_image"))
    return keras.Sequential(layers, name=name)


def build_subpixel_decoder_cnn(stamp_size: int, in_features: int, channels: Sequence[int],
                               output_activation: str, name: str = "decoder_cnn",
                               upsampling: str = "transpose",
                               full_resolution_norm: bool = True) -> keras.Sequential:
    """:func:`build_decoder_cnn` whose last stage works at half resolution: a 3x3
    convolution gives four output channels per pixel of the half-resolution map, which a
    depth-to-space rearrangement turns into the 2x2 pixels of the full-resolution stamp
    (the sub-pixel convolution of Shi et al. 2016, arXiv:1609.05158).

    No tensor of the decoder then has the stamp's full resolution and more than one
    channel: at 128x128 the full-resolution stage (a transposed convolution to 8 channels,
    its activation and the 3x3 output convolution) was over half of the decoding time on
    a CPU (``benchmarks/README.md``).  The four sub-pixel filters start equal (ICNR,
    Aitken et al. 2017, arXiv:1707.02937), i.e. as a nearest-neighbour up-sampling, so
    that training does not start from a checkerboard.  ``full_resolution_norm``
    normalises the last stage (here the half-resolution one): False leaves its
    GroupNormalization out, which was a third of the decoding time at 128x128 (a
    per-channel normalisation of 64x64 maps, many small operations).
    """
    sizes = stage_sizes(stamp_size)
    layers = _decoder_trunk(stamp_size, in_features, channels, upsampling,
                            full_resolution_norm, stop_at=1)
    _check_output_activation(output_activation)
    half = sizes[1]
    layers += [
        keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=_icnr_initializer,
                            name="to_subpixels"),
        DepthToSpace(2, name="to_full_resolution"),
    ]
    excess = 2 * half - sizes[0]
    if excess:
        layers.append(keras.layers.Cropping2D(((0, excess), (0, excess)), name="crop0"))
    layers.append(keras.layers.Activation(output_activation, name="to_image"))
    return keras.Sequential(layers, name=name)


class DepthToSpace(keras.layers.Layer):
    """Channels to pixels: channel ``dy * block + dx`` of map pixel (i, j) becomes pixel
    (block i + dy, block j + dx) of a one-channel map ``block`` times larger
    (``tf.nn.depth_to_space``, NHWC).  One operator that LiteRT's XNNPACK runs, where
    a reshape-transpose-reshape of the same permutation cost a tenth of the decoder."""

    def __init__(self, block: int, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, inputs):
        import tensorflow as tf

        return tf.nn.depth_to_space(inputs, self.block)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        k = self.block
        return (b, None if h is None else h * k, None if w is None else w * k, c // (k * k))

    def get_config(self):
        return {**super().get_config(), "block": self.block}


def _icnr_initializer(shape, dtype=None):
    """ICNR: one Glorot-uniform filter repeated for the four sub-pixel channels."""
    one = keras.initializers.GlorotUniform()((*shape[:-1], 1), dtype=dtype)
    return keras.ops.tile(one, (1, 1, 1, shape[-1]))


def _check_output_activation(output_activation: str) -> None:
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation {output_activation!r} is not one of "
                         f"{OUTPUT_ACTIVATIONS}")


def _decoder_trunk(stamp_size: int, in_features: int, channels: Sequence[int],
                   upsampling: str, last_stage_norm: bool,
                   stop_at: int) -> list[keras.layers.Layer]:
    """The decoder's layers from the input to the map of stage ``stop_at`` (0: the
    stamp's resolution, 1: half of it), as in :func:`build_decoder_cnn`; the last of
    these stages is normalised only if ``last_stage_norm``."""
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling {upsampling!r} is not one of {UPSAMPLINGS}")
    sizes = stage_sizes(stamp_size)
    widths = stage_channels(len(sizes) - 1, channels)
    bottom = sizes[-1]
    layers: list[keras.layers.Layer] = [
        keras.Input((in_features,)),
        keras.layers.Dense(bottom * bottom * widths[-1], name="from_latent"),
        keras.layers.Reshape((bottom, bottom, widths[-1]), name="to_map"),
    ]
    layers += _norm_act(widths[-1], "from_latent")
    for i in reversed(range(stop_at, len(widths))):
        width = widths[i - 1] if i > 0 else widths[0]
        if upsampling == "transpose":
            layers.append(keras.layers.Conv2DTranspose(width, STAGE_KERNEL, strides=2,
                                                       padding="same", name=f"up{i}"))
        else:
            layers.append(keras.layers.UpSampling2D(2, interpolation="nearest",
                                                    name=f"resize{i}"))
            layers.append(keras.layers.Conv2D(width, 3, padding="same", name=f"up{i}"))
        excess = 2 * sizes[i + 1] - sizes[i]
        if excess:
            layers.append(keras.layers.Cropping2D(((0, excess), (0, excess)), name=f"crop{i}"))
        layers += _norm_act(width, f"up{i}", normalise=i > stop_at or last_stage_norm)
    return layers


def build_mlp(in_features: int, hidden_units: Sequence[int], out_features: int, *,
              name: str, zero_init_output: bool = False,
              seed: int | None = None) -> keras.Sequential:
    """A small fully connected network with LeakyReLU hidden layers and a linear output.

    Parameters:
        in_features:      Input length.
        hidden_units:     Width of each hidden layer.
        out_features:     Output length.
        name:             Keras name.
        zero_init_output: Start the output layer at zero (flows start at the identity).
        seed:             Seed of the initial weights (None: Keras's global generator).
    """
    layers: list[keras.layers.Layer] = [keras.Input((in_features,))]
    for i, units in enumerate(hidden_units):
        init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)
        layers.append(keras.layers.Dense(int(units), kernel_initializer=init, name=f"hidden{i}"))
        layers.append(keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"act{i}"))
    init = ("zeros" if zero_init_output else
            keras.initializers.GlorotUniform(seed=None if seed is None else seed + 1000))
    layers.append(keras.layers.Dense(out_features, kernel_initializer=init, name="out"))
    return keras.Sequential(layers, name=name)
