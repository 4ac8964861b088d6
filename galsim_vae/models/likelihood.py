"""Pixel likelihood of an observed stamp given a model profile: PSF convolution + noise.

Following Lanusse et al. (2021, MNRAS 504, 5543, "Deep generative models for galaxy image
simulations"), the decoder may output a PSF-free profile; the likelihood convolves it
with the galaxy's own HST PSF and compares it with the observed stamp under that
galaxy's own Gaussian pixel noise:

    p(x | profile) = prod_pixels Normal(x; (psf * profile), noise_std)

(the seed project instead used a summed squared error, i.e. a fixed sigma of
sqrt(beta/2) ~ 0.22 for beta = 0.1, far above the real noise, which blurred its samples).

Centring convention (GalSim's): a stamp of side N has its centre at pixel N // 2 (0-based;
the true centre for odd N, the pixel up-right of it for even N), for the profile stamp and
the PSF image alike.  :func:`convolve_psf` returns the linear (not circular) convolution
cropped so that a delta function at pixel S // 2 of the profile gives the PSF with its
centre pixel P // 2 at S // 2.  For odd P this is exactly
``scipy.signal.fftconvolve(profile, psf, mode="same")``; for even P scipy's window is
shifted by one pixel from GalSim's convention, ours is not.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from ..errors import InputDataError

tfd = tfp.distributions
tfb = tfp.bijectors


def convolve_psf(profile: tf.Tensor, psf: tf.Tensor) -> tf.Tensor:
    """Convolve profiles with their own PSFs via zero-padded FFTs (no wrap-around).

    Both are zero-padded to ``S + P - 1`` pixels (rounded up to even), the full linear
    convolution is computed with ``tf.signal.rfft2d`` and the S x S window starting at
    pixel ``P // 2`` is kept (see the module docstring for the centring convention).

    Parameters:
        profile: (B, S, S, 1) profiles (any float dtype; computed in float32).
        psf:     (B, P, P, 1) or (P, P, 1) or (P, P) PSF images at the same pixel scale,
                 of unit sum (flux is then conserved up to what falls off the stamp).

    Returns:
        (B, S, S, 1) float32 convolved profiles.
    """
    profile = tf.convert_to_tensor(profile)
    psf = tf.cast(tf.convert_to_tensor(psf), tf.float32)
    if psf.shape.rank == 2:
        psf = psf[None, :, :, None]
    elif psf.shape.rank == 3:
        psf = psf[None]
    if profile.shape.rank != 4 or profile.shape[-1] != 1 or psf.shape[-1] != 1:
        raise InputDataError(f"convolve_psf needs profiles (B, S, S, 1) and PSFs (B, P, P, 1); "
                             f"got {profile.shape} and {psf.shape}")
    size, psf_size = int(profile.shape[1]), int(psf.shape[1])
    if profile.shape[2] != size or psf.shape[2] != psf_size:
        raise InputDataError(f"convolve_psf needs square stamps; got profile {profile.shape}, "
                             f"PSF {psf.shape}")
    n_fft = size + psf_size - 1
    n_fft += n_fft % 2
    fft_length = tf.constant([n_fft, n_fft], dtype=tf.int32)
    profile_ft = tf.signal.rfft2d(tf.cast(profile[..., 0], tf.float32), fft_length=fft_length)
    psf_ft = tf.signal.rfft2d(psf[..., 0], fft_length=fft_length)
    full = tf.signal.irfft2d(profile_ft * psf_ft, fft_length=fft_length)
    start = psf_size // 2
    return full[:, start:start + size, start:start + size, None]


#: Smallest root power spectrum value used to whiten (unit-variance noise has a mean of 1):
#: a noise model with (almost) no power at some frequency would otherwise give those
#: modes unbounded weight.  The COSMOS F814W noise spans 0.13 to 2.5.
MIN_ROOT_POWER = 0.02


class ColourNoise(tfb.Bijector):
    """White noise -> correlated noise: ``x = irfft2(rfft2(w) * rootps)`` per image.

    ``rootps`` (B, S, S//2 + 1) is the square root of each image's noise power spectrum
    for unit pixel variance (``galsim_vae.data.noise``); the map is a circular
    convolution, so its log-determinant is the sum of ``log rootps`` over the whole
    Fourier plane, a constant.  Events are (S, S, 1) images.
    """

    def __init__(self, rootps: tf.Tensor, name: str = "colour_noise"):
        parameters = dict(locals())
        self._rootps = tf.maximum(tf.cast(rootps, tf.float32), MIN_ROOT_POWER)
        super().__init__(forward_min_event_ndims=3, is_constant_jacobian=True,
                         parameters=parameters, name=name)

    def _apply(self, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
        size = tf.shape(images)[1:3]
        spectrum = tf.signal.rfft2d(images[..., 0]) * tf.cast(factor, tf.complex64)
        return tf.signal.irfft2d(spectrum, fft_length=size)[..., None]

    def _forward(self, x):
        return self._apply(x, self._rootps)

    def _inverse(self, y):
        return self._apply(y, 1.0 / self._rootps)

    def _forward_log_det_jacobian(self, x):
        # the half plane holds columns 1 .. ceil(S/2)-1 twice in the full plane
        size = self._rootps.shape[-2]
        columns = self._rootps.shape[-1]
        twice = [1.0] + [2.0] * (columns - 1)
        if size % 2 == 0:
            twice[-1] = 1.0
        weights = tf.constant(twice, dtype=tf.float32)
        return tf.reduce_sum(tf.math.log(self._rootps) * weights, axis=[-2, -1])


def pixel_likelihood(mean: tf.Tensor, noise_std: tf.Tensor,
                     model_error: float = 0.0,
                     noise_rootps: tf.Tensor | None = None) -> tfd.Distribution:
    """Gaussian pixel noise: ``Independent(Normal(mean, sigma), 3)`` with
    ``sigma**2 = noise_std**2 + (model_error * |mean|)**2``, the noise white or, given
    ``noise_rootps``, correlated as in the data.

    Correlated noise (HST's drizzled images) is handled as Lanusse et al. (2021) do in
    galaxy2galaxy (their "Fourier" likelihood): the residual is whitened by each galaxy's
    noise power spectrum.  Here the distribution is the white-noise one pushed through
    :class:`ColourNoise` (a ``TransformedDistribution``), so ``log_prob`` includes the
    whitening's constant log-determinant; the model-error term stays a per-pixel
    variance of the whitened residual (an approximation: it only re-weights bright
    pixels).

    Parameters:
        mean:        (B, S, S, 1) expected noise-free image (network units).
        noise_std:   (B,) each galaxy's pixel noise standard deviation (same units), > 0.
        model_error: Fractional model error (0: noise only).  It enters sigma with
                     ``tf.stop_gradient`` on the mean: it re-weights the pixels (a pixel
                     of S/N above ``1 / model_error`` counts as if it had that S/N)
                     without rewarding the model for making ``|mean|`` large.
        noise_rootps: (B, S, S//2 + 1) unit-variance root power spectra of each galaxy's
                     noise (``batch["noise_rootps"]``), or None for white noise.

    Returns:
        A distribution with batch shape (B,) and event shape (S, S, 1).
    """
    mean = tf.cast(mean, tf.float32)
    noise_std = tf.cast(tf.convert_to_tensor(noise_std), tf.float32)
    if noise_std.shape.rank != 1:
        raise InputDataError(f"noise_std must have shape (B,), got {noise_std.shape}")
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(noise_std > 0)):
            lowest = float(tf.reduce_min(noise_std))
            raise InputDataError("noise_std must be positive (the pixel noise of each galaxy, "
                                 f"in network units); got minimum {lowest}")
    scale = noise_std[:, None, None, None]
    if model_error:
        model_sigma = float(model_error) * tf.abs(tf.stop_gradient(mean))
        scale = tf.sqrt(tf.square(scale) + tf.square(model_sigma))
    if noise_rootps is None:
        return tfd.Independent(tfd.Normal(loc=mean, scale=scale), reinterpreted_batch_ndims=3)
    colour = ColourNoise(noise_rootps)
    white = tfd.Independent(tfd.Normal(loc=colour.inverse(mean), scale=scale),
                            reinterpreted_batch_ndims=3)
    return tfd.TransformedDistribution(white, bijector=colour)
