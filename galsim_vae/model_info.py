"""ModelInfo: what a generated galaxy needs to know about the model that made it.

A small, frozen, picklable and TensorFlow-free description (name, pixel scale, stamp
size, flux units, PSF handling, conditions) that every
:class:`~galsim_vae.gsobject.VAEGalaxy` carries and that GalSim's worker processes get
from the ``vae_model`` input object; built by :class:`~galsim_vae.generator.GalaxyModel`
from the bundle spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .conditions import Condition, redshift_condition


@dataclass(frozen=True)
class ModelInfo:
    """Picklable, hashable description of a generative model.

    Parameters:
        name:        bundle name.
        pixel_scale: stamp pixel scale in arcsec.
        stamp_size:  stamp side in pixels.
        flux_units:  flux units of the stamp pixels (``model.json`` ``flux.units``).
        psf_free:    True if the samples are PSF-free profiles; False if they still carry
                     the HST PSF (then ``hst_psf`` holds it).
        hst_psf:     the HST PSF image (same pixel scale, unit sum) as a tuple of rows
                     (hashable; ``hst_psf_array`` gives the array), or None.
        conditions:  the model's conditions (:class:`~galsim_vae.conditions.Condition`),
                     in model order.
        zero_point:  AB magnitude of one flux unit (None: uncalibrated units).
        band:        the band of the training images (e.g. ``"F814W"``), or None.
        source:      the bundle by shipped name or absolute path (what ``load_model``
                     takes), or None for a model not loaded from a folder.
        checksum:    sha256 of the bundle's weights (``model.json`` ``files``), or None.
    """

    name: str
    pixel_scale: float
    stamp_size: int
    flux_units: str
    psf_free: bool
    hst_psf: tuple | None = None
    conditions: tuple[Condition, ...] = ()
    zero_point: float | None = None
    band: str | None = None
    source: str | None = None
    checksum: str | None = None

    @property
    def condition_names(self) -> tuple[str, ...]:
        """Names of the conditions, in model order."""
        return tuple(c.name for c in self.conditions)

    @property
    def redshift_name(self) -> str | None:
        """Name of the condition that ``redshift=`` sets (None if there is none)."""
        cond = redshift_condition(self.conditions)
        return None if cond is None else cond.name

    @property
    def hst_psf_array(self) -> np.ndarray | None:
        """The HST PSF as a float64 array (None for a PSF-free model)."""
        return None if self.hst_psf is None else np.array(self.hst_psf, dtype=float)

    def requested_flux(self, flux: float | None, magnitude: float | None) -> float | None:
        """The total flux (model flux units) a galaxy is asked for by ``flux`` or an AB
        ``magnitude`` (not both; ``10**(-0.4 (magnitude - zero_point))``), or None."""
        if magnitude is None:
            if flux is not None and not math.isfinite(float(flux)):
                raise ValueError(f"flux must be finite, got {flux}")
            return flux
        if flux is not None:
            raise ValueError(f"give flux ({flux}) or magnitude ({magnitude}), not both")
        magnitude = float(magnitude)
        if not math.isfinite(magnitude):
            raise ValueError(f"magnitude must be finite, got {magnitude}")
        if self.zero_point is None:
            raise ValueError(f"model {self.name!r} has no AB zero point for its flux units "
                             f"({self.flux_units!r}): give flux= instead of magnitude=")
        return 10.0 ** (-0.4 * (magnitude - self.zero_point))
