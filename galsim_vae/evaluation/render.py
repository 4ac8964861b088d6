"""Render PSF-free generated profiles the way the training data were observed.

A model with ``psf_free=True`` generates the galaxy before the HST PSF; the held-out data
carry each galaxy's own PSF and noise.  To compare like with like, the generated profiles
are convolved with the PSFs of the reference galaxies and given their noise level before
:func:`galsim_vae.evaluation.measure_morphology` measures both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.noise import colour
from ..errors import InputDataError


def convolve_psf(profiles: np.ndarray, psfs: np.ndarray) -> np.ndarray:
    """Convolve each (S, S) profile with its (P, P) PSF, keeping the stamp size.

    Linear (zero-padded, not circular) FFT convolution.  The PSF's origin is its pixel
    ``(P // 2, P // 2)`` (0-indexed row, column), GalSim's ``image.center``: a PSF that is
    1 at that pixel and 0 elsewhere returns the profile unchanged.  For odd P this is also
    GalSim's ``true_center`` (where ``drawImage`` puts a profile's centre); an even-sized
    PSF drawn by GalSim has its centre half a pixel below-left of ``P // 2`` and shifts the
    result by that half pixel.

    Parameters:
        profiles:   (N, S, S) images.
        psfs:       (N, P, P) kernels (or one (P, P) kernel for all).

    Returns:
        (N, S, S) float64 array.
    """
    from scipy.signal import fftconvolve

    profiles = np.asarray(profiles, dtype=np.float64)
    psfs = np.asarray(psfs, dtype=np.float64)
    if psfs.ndim == 2:
        psfs = np.broadcast_to(psfs, (profiles.shape[0],) + psfs.shape)
    size, psf_size = profiles.shape[-1], psfs.shape[-1]
    full = fftconvolve(profiles, psfs, mode="full", axes=(1, 2))   # (N, S+P-1, S+P-1)
    origin = psf_size // 2
    return full[:, origin:origin + size, origin:origin + size]


def _gaussian_noise(shape: tuple[int, ...], rng: Any) -> np.ndarray:
    """Standard-normal array drawn from a numpy Generator, an int seed or a GalSim rng."""
    import galsim

    if isinstance(rng, galsim.BaseDeviate):
        noise = np.empty(int(np.prod(shape)), dtype=np.float64)
        galsim.GaussianDeviate(rng, mean=0.0, sigma=1.0).generate(noise)
        return noise.reshape(shape)
    if isinstance(rng, np.random.Generator):
        return rng.standard_normal(shape)
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng)).standard_normal(shape)
    raise InputDataError(
        f"rng must be a numpy Generator, an int seed or a galsim.BaseDeviate, got "
        f"{type(rng).__name__}")


def observe_like_data(profiles: np.ndarray, psfs: np.ndarray,
                      noise_sigma: float | np.ndarray, rng: Any,
                      noise_rootps: np.ndarray | None = None) -> np.ndarray:
    """Convolve PSF-free profiles with the data's PSFs and add the data's Gaussian noise.

    Parameters:
        profiles:       (N, S, S) PSF-free profiles in flux units (per pixel).
        psfs:           (N, P, P) PSF images with unit sum (e.g. ``Dataset.psfs`` of the
                        reference galaxies), same pixel scale; or one (P, P) for all.
        noise_sigma:    Noise standard deviation per pixel, flux units: one number or (N,)
                        (e.g. ``sqrt(catalog["noise_variance"])``); 0 adds no noise.
        rng:            numpy Generator, int seed or ``galsim.BaseDeviate`` for the noise.
        noise_rootps:   (N, S, S//2 + 1) unit-variance root power spectra of the data's
                        correlated noise (``Dataset.noise_rootps``), or None for white
                        noise.

    Returns:
        (N, S, S) float64 observed-like stamps: ``psf (*) profile + sigma * n`` with
        ``n`` unit-variance Gaussian noise, white or correlated as ``noise_rootps`` says;
        the convolution conserves flux up to what the PSF wings spread out of the stamp.

    Raises:
        InputDataError: wrong shapes, non-finite values, PSFs not of unit sum, negative
        noise.
    """
    profiles = np.asarray(profiles, dtype=np.float64)
    psfs = np.asarray(psfs, dtype=np.float64)
    if profiles.ndim != 3 or profiles.shape[1] != profiles.shape[2]:
        raise InputDataError(f"profiles must be (N, S, S), got shape {profiles.shape}")
    n = profiles.shape[0]
    if psfs.ndim == 2:
        psfs = np.broadcast_to(psfs, (n,) + psfs.shape)
    if psfs.ndim != 3 or psfs.shape[0] != n or psfs.shape[1] != psfs.shape[2]:
        raise InputDataError(
            f"psfs must be (N={n}, P, P) or one (P, P), got shape {psfs.shape}")
    if not (np.isfinite(profiles).all() and np.isfinite(psfs).all()):
        raise InputDataError("profiles and psfs must be finite (NaN/inf found)")
    sums = psfs.sum(axis=(1, 2))
    if not np.allclose(sums, 1.0, rtol=1e-3, atol=0.0):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise InputDataError(
            f"psfs must have unit sum; PSF {worst} sums to {sums[worst]:.6g}: divide each "
            "PSF by its sum (data sets store unit-sum PSFs)")
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    try:
        sigma = np.broadcast_to(sigma, (n,))
    except ValueError:
        raise InputDataError(
            f"noise_sigma must be one number or one per profile (N={n}), got shape "
            f"{sigma.shape}") from None
    if not (np.isfinite(sigma).all() and (sigma >= 0).all()):
        raise InputDataError(f"noise_sigma must be finite and >= 0, got {noise_sigma!r}")
    observed = convolve_psf(profiles, psfs)
    if np.any(sigma > 0):
        noise = colour(_gaussian_noise(observed.shape, rng), noise_rootps)
        observed = observed + sigma[:, None, None] * noise
    return observed
