"""Reconstructions of held-out galaxies and their chi-square per pixel.

The reconstruction of a stamp x is the decoded posterior mean,
``profile = decode(E[z | x, y], y)``.  For a PSF-free model the likelihood compares the
data with ``psf (*) profile`` (each galaxy's own PSF); for a model whose samples carry the
PSF, with ``profile`` itself.  The chi-square per pixel of galaxy i is

    chi2_i = sum_pixels (x - model)^2 / sigma_i^2 / S^2,

which is 1 on average when the model is the noise-free image and the noise is white with
the catalog's ``noise_variance`` (Lanusse et al. 2021 train with this Gaussian likelihood).
Values above 1 mean structure the model misses; below 1, that it fits noise (or that the
noise is correlated, as in COSMOS, where the per-pixel variance of the catalog still holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError
from ..io_utils import progress


def chi2_per_pixel(data: np.ndarray, model: np.ndarray, noise_sigma) -> np.ndarray:
    """Per-galaxy ``sum((data - model)^2 / sigma^2) / S^2``.

    Parameters:
        data:        (N, S, S) observed stamps.
        model:       (N, S, S) model images in the same units (PSF applied if the data
                     have it).
        noise_sigma: Pixel noise std, same units: one number or one per stamp (N,).

    Returns:
        (N,) float64 chi-square per pixel.

    Raises:
        InputDataError: shapes differ, or a noise std is not positive and finite.
    """
    data = np.asarray(data, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    if data.shape != model.shape or data.ndim != 3:
        raise InputDataError(f"data and model must both be (N, S, S); got {data.shape} and "
                             f"{model.shape}")
    sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (data.shape[0],))
    if not (np.isfinite(sigma).all() and (sigma > 0).all()):
        raise InputDataError("noise_sigma must be finite and > 0 for every stamp")
    pixels = data.shape[1] * data.shape[2]
    return np.sum((data - model) ** 2, axis=(1, 2)) / sigma**2 / pixels


@dataclass
class Reconstructions:
    """Output of :func:`reconstruct` (arrays in network units unless stated).

    Attributes:
        latents:       (N, latent_size) posterior means.
        chi2:          (N,) chi-square per pixel of each galaxy.
        shown_rows:    Positions (into the held-out arrays) of the galaxies kept for figures.
        shown_data, shown_model, shown_profile: (n_show, S, S) data, what the likelihood
                       compares with the data (PSF applied for PSF-free models), and the
                       decoded profile (PSF-free for PSF-free models).
        shown_sigma:   (n_show,) noise std of the shown galaxies.
    """

    latents: np.ndarray
    chi2: np.ndarray
    shown_rows: np.ndarray
    shown_data: np.ndarray
    shown_model: np.ndarray
    shown_profile: np.ndarray
    shown_sigma: np.ndarray


def reconstruct(galaxy_model, images_fn, n: int, *, noise_sigma: np.ndarray,
                psfs: np.ndarray | None, conditions: np.ndarray | None, batch_size: int = 64,
                n_show: int = 6, desc: str = "reconstruct") -> Reconstructions:
    """Encode, decode and score ``n`` galaxies in batches.

    The posterior means (:func:`galsim_vae.models.posterior.posterior`: the encoder's, or
    refined per galaxy when the bundle asks) are decoded by
    :meth:`GalaxyModel.decode_batch`, the path that generates galaxies for users (only the
    encoder runs outside it).

    Parameters:
        galaxy_model: A :class:`~galsim_vae.generator.GalaxyModel`.
        images_fn:   ``images_fn(start, stop)`` -> (stop - start, S, S) stamps in network
                     units (so the whole held-out set need never be in memory).
        n:           Number of galaxies.
        noise_sigma: (n,) pixel noise std in network units.
        psfs:        (n, P, P) unit-sum PSFs (needed for PSF-free models).
        conditions:  (n, k) physical condition values, or None.
        batch_size:  Galaxies per network call.
        n_show:      Galaxies kept for the figures (the first ``n_show``).
        desc:        Progress-bar label.

    Returns:
        :class:`Reconstructions`.
    """
    import tensorflow as tf

    from ..models.likelihood import convolve_psf
    from ..models.posterior import posterior

    model = galaxy_model.network
    if model.psf_free and psfs is None:
        raise InputDataError("a PSF-free model needs each galaxy's PSF to be scored")
    latents, chi2 = [], []
    shown = {"data": [], "model": [], "profile": []}
    starts = range(0, n, batch_size)
    for start in progress(starts, total=len(starts), desc=desc):
        stop = min(start + batch_size, n)
        images = np.asarray(images_fn(start, stop), dtype=np.float32)
        raw = None if conditions is None else conditions[start:stop]
        cond = None if raw is None else tf.constant(galaxy_model.standardise(raw), tf.float32)
        psf = None if psfs is None else tf.constant(psfs[start:stop, ..., None], tf.float32)
        z = posterior(model, tf.constant(images[..., None]), cond, psf=psf,
                      noise_std=tf.constant(noise_sigma[start:stop], tf.float32)).mean()
        profile = tf.constant((galaxy_model.decode_batch(z.numpy(), raw, from_noise=False)
                               / galaxy_model.flux_scale)[..., None], tf.float32)
        predicted = profile
        if model.psf_free:
            predicted = convolve_psf(profile, psf)
        predicted = predicted.numpy()[..., 0]
        latents.append(z.numpy())
        chi2.append(chi2_per_pixel(images, predicted, noise_sigma[start:stop]))
        keep = max(0, min(n_show - start, stop - start))
        if keep:
            shown["data"].append(images[:keep])
            shown["model"].append(predicted[:keep])
            shown["profile"].append(profile.numpy()[:keep, ..., 0])
    n_kept = min(n_show, n)
    return Reconstructions(
        latents=np.concatenate(latents), chi2=np.concatenate(chi2),
        shown_rows=np.arange(n_kept),
        shown_data=np.concatenate(shown["data"]), shown_model=np.concatenate(shown["model"]),
        shown_profile=np.concatenate(shown["profile"]),
        shown_sigma=np.asarray(noise_sigma[:n_kept], dtype=np.float64))
