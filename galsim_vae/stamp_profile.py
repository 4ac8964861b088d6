"""The GalSim profile of a generated stamp: built fast, and not kept by every galaxy.

Two costs of an ``InterpolatedImage`` of a 128x128 stamp dominate drawing a
:class:`~galsim_vae.gsobject.VAEGalaxy` (``benchmarks/README.md``):

- **maxk.** ``calculate_maxk=True`` makes GalSim build the padded k-space table (a
  512x512 FFT for ``pad_factor=4``) only to read its extent, then throw it away and build
  it again when drawing.  :func:`content_maxk` reads the same extent off one FFT of the
  unpadded stamp (GalSim's rule: the largest k where ``|F(k)|`` exceeds
  ``gsparams.maxk_threshold`` times the flux; Rowe et al. 2015, A&C 10, 121, sec. 4) and
  passes it as the profile's maxk.
- **Memory.** A drawn InterpolatedImage holds its k-space table (~3 MB at 128x128), so
  a catalogue of kept galaxies runs out of memory.  :class:`ProfileCache` keeps the built
  profiles of the most recently used galaxies only (least recently used dropped): a kept
  galaxy holds its stamp (128 kB) and its latent; drawing it again after it was dropped
  rebuilds the profile (a few ms), identical to the first.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import weakref
from typing import Any, Callable

import numpy as np

#: Profiles kept by :data:`PROFILES` (each ~3 MB once drawn at 128x128 with pad_factor 4;
#: drawing one galaxy uses its profile many times, then it is rarely needed again).
CACHE_SIZE = 8


def content_maxk(stamp: np.ndarray, scale: float, maxk_threshold: float) -> float:
    """maxk (1/arcsec) of a pixel stamp: the largest |k| at which the stamp's Fourier
    amplitude exceeds ``maxk_threshold`` times its total |flux|, one k-step beyond, and at
    most the pixel Nyquist frequency pi/scale.

    Parameters:
        stamp:          (N, N) pixel values.
        scale:          pixel scale, arcsec.
        maxk_threshold: ``gsparams.maxk_threshold`` (GalSim's default 1e-3).
    """
    n = stamp.shape[0]
    amplitude = np.abs(np.fft.rfft2(stamp))
    total = abs(float(stamp.sum())) or float(np.abs(stamp).sum()) or 1.0
    kx = 2 * np.pi * np.fft.fftfreq(n)[:, None]
    ky = 2 * np.pi * np.fft.rfftfreq(stamp.shape[1])[None, :]
    above = amplitude > maxk_threshold * total
    k = float(np.hypot(kx, ky)[above].max()) if above.any() else 0.0
    return min(k + 2 * np.pi / n, math.pi) / scale


class ProfileCache:
    """The built profiles of the ``size`` most recently used owners (thread-safe).

    Keyed by the owner's ``id`` with a weak reference to check it (an id can be reused
    once its object is gone).
    """

    def __init__(self, size: int = CACHE_SIZE):
        self._size = int(size)
        self._entries: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: Any, build: Callable[[], Any]) -> Any:
        """The profile of ``owner``, built by ``build()`` if not cached."""
        key = id(owner)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is owner:
                self._entries.move_to_end(key)
                return entry[1]
        profile = build()
        with self._lock:
            self._entries[key] = (weakref.ref(owner), profile)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return profile

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every cached profile."""
        with self._lock:
            self._entries.clear()


#: The cache of every VAEGalaxy of this process.
PROFILES = ProfileCache()


def shot_flux_deficit(stamp: np.ndarray) -> float:
    """The factor by which GalSim's photon shooting of an InterpolatedImage of ``stamp``
    falls short of its flux: ``1 - 2 eta`` (eta the negative share of the stamp's
    absolute pixel sum) where GalSim has the defect :func:`interpolated_images_shoot_short`
    finds, else 1.  :meth:`VAEGalaxy._shoot` divides its photons' fluxes by it."""
    if not interpolated_images_shoot_short():
        return 1.0
    stamp = np.asarray(stamp, dtype=np.float64)
    absolute = float(np.abs(stamp).sum())
    return float(stamp.sum()) / absolute if absolute > 0 else 1.0


@functools.cache
def interpolated_images_shoot_short() -> bool:
    """Whether this GalSim's ``InterpolatedImage`` shoots photons that carry only
    ``1 - 2 eta`` of its flux when it has negative pixels (eta = negative / (positive +
    negative) flux).

    GalSim 2.8.5 does: ``drawImage(method='phot')`` of an InterpolatedImage of
    ``[[2, 0], [0, -1]]`` (flux 1) gives a third of the flux, every pixel scaled down,
    while a ``Sum`` of profiles with a negative one is right.  Measured on generated
    stamps with the Quintic interpolant (2e6 photons): the shot flux is ``1 - 2 eta`` of
    the flux to 0.3%, eta the negative share of the *pixels'* absolute sum (0.37-0.38 for
    eta 0.31-0.32), whatever the interpolant's own negative lobes.  Measured once per
    process by shooting such an image, so a GalSim that fixes it gets no correction.
    """
    import galsim

    pixels = np.zeros((2, 2))
    pixels[0, 0], pixels[1, 1] = 2.0, -1.0          # flux 1, eta = 1/3
    image = galsim.InterpolatedImage(galsim.Image(pixels, scale=1.0),
                                     x_interpolant="nearest", normalization="sb",
                                     calculate_stepk=False, calculate_maxk=False)
    photons = galsim.PhotonArray(20000)
    image._shoot(photons, galsim.BaseDeviate(20261203))
    shot = float(np.sum(photons.flux)) / image.flux      # 1 right, 1/3 short (+- 0.01)
    return shot < 2.0 / 3.0
