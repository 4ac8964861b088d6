"""Deep-field images in: a FITS image (with its weight or RMS map, WCS pixel scale and zero
point) or scikit-image's Hubble XDF, and a PSF image, as a :class:`DeepField`."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputDataError
from ..io_utils import require_file

#: Name that selects scikit-image's Hubble eXtreme Deep Field instead of a FITS file.
XDF_NAME = "xdf"
#: Pixel scale assumed for the scikit-image XDF, arcsec/pixel: the field's published
#: 2.3 x 2.0 arcmin extent (STScI-2012-37) over its 1000 x 872 pixels.
XDF_PIXEL_SCALE = 0.138
#: Relative tolerance when comparing pixel scales (image WCS, argument, PSF).
PIXEL_SCALE_RTOL = 0.01
@dataclass
class DeepField:
    """A deep-field image ready for source extraction.

    Attributes:
        data:        (ny, nx) float64 pixels, masked pixels set to 0.
        mask:        (ny, nx) bool, True where a pixel is unusable (non-finite pixel,
                     weight <= 0, non-finite or non-positive RMS).
        error:       (ny, nx) float64 per-pixel noise sigma from the RMS/weight map
                     (1.0 at masked pixels), or None.
        error_kind:  ``"rms"``, ``"weight"`` or ``"background"`` (no map).
        pixel_scale: arcsec/pixel.
        wcs:         Celestial astropy WCS, or None.
        flux_units:  What a pixel value means.
        zeropoint:   AB magnitude of one flux unit, or None when uncalibrated.
        provenance:  JSON-able description for the manifest's ``source``.
    """

    data: np.ndarray
    mask: np.ndarray
    error: np.ndarray | None
    error_kind: str
    pixel_scale: float
    wcs: Any
    flux_units: str
    zeropoint: float | None
    provenance: dict[str, Any] = field(default_factory=dict)


# -- reading ------------------------------------------------------------------------------

def _read_fits_image(path: str | os.PathLike, hdu: int | str, what: str):
    """Read a 2-D image HDU; returns (float64 array, header).  Errors name the file."""
    from astropy.io import fits

    path = require_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*truncated")  # an error, not a warning
            hdus = fits.open(path, memmap=False)
        with hdus:
            try:
                selected = hdus[hdu]
            except (IndexError, KeyError):
                raise InputDataError(
                    f"{what} {str(path)!r} has no HDU {hdu!r}; it has {len(hdus)} HDU(s): "
                    "choose one with hdu=/--hdu") from None
            data = selected.data
            header = selected.header.copy()
            if data is None:
                raise InputDataError(f"{what} {str(path)!r} HDU {hdu!r} holds no image data; "
                                     "choose the image HDU with hdu=/--hdu")
            data = np.array(data, dtype=np.float64)  # forces reading every byte
    except InputDataError:
        raise
    except (OSError, ValueError, TypeError, EOFError, Warning) as err:
        raise InputDataError(f"{what} {str(path)!r} is not a readable FITS file (corrupt or "
                             f"truncated?): {err}") from None
    data = np.squeeze(data) if data.ndim > 2 else data
    if data.ndim != 2:
        raise InputDataError(f"{what} {str(path)!r} HDU {hdu!r} is {data.ndim}-dimensional "
                             f"{data.shape}; a 2-D image is needed")
    return data, header


def _wcs_pixel_scale(header, path, what: str):
    """(celestial WCS or None, pixel scale arcsec or None) from a FITS header."""
    from astropy.wcs import FITSFixedWarning, WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2)
        except Exception:  # noqa: BLE001 - astropy raises many kinds for broken WCS
            return None, None
    if not wcs.has_celestial:
        return None, None
    wcs = wcs.celestial
    scales = proj_plane_pixel_scales(wcs) * 3600.0
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        return None, None
    if abs(scales[0] - scales[1]) > PIXEL_SCALE_RTOL * scales.mean():
        raise InputDataError(f"{what} {str(path)!r}: pixels are not square ({scales[0]:.5g} x "
                             f"{scales[1]:.5g} arcsec); resample it to square pixels first")
    return wcs, float(scales.mean())


def _header_zeropoint(header) -> float | None:
    """AB zero point of an HST image in counts/s from PHOTFLAM and PHOTPLAM:
    ZP = -2.5 log10(PHOTFLAM) - 21.10 - 5 log10(PHOTPLAM) + 18.692 (STScI, ACS/WFC3
    zero points), or None when the header does not calibrate a per-second image."""
    photflam, photplam = header.get("PHOTFLAM"), header.get("PHOTPLAM")
    bunit = str(header.get("BUNIT", "")).strip().upper()
    if not (photflam and photplam and bunit.endswith("/S")):
        return None
    return float(-2.5 * math.log10(photflam) - 21.10 - 5 * math.log10(photplam) + 18.692)


def _read_xdf() -> np.ndarray:
    """scikit-image's XDF as one float64 band: the mean of R, G and B (8-bit counts)."""
    from skimage import data as skdata

    rgb = skdata.hubble_deep_field()
    return np.asarray(rgb, dtype=np.float64).mean(axis=2)


def _error_map(data_shape, weight, rms, hdu_maps, image_name: str):
    """(error sigma map or None, bad-pixel mask or None, kind, provenance) from a map."""
    if weight is not None and rms is not None:
        raise InputDataError("give either a weight map or an RMS map, not both")
    if weight is None and rms is None:
        return None, None, "background", {}
    kind, path = ("weight", weight) if weight is not None else ("rms", rms)
    values, _ = _read_fits_image(path, hdu_maps, f"{kind} map")
    if values.shape != data_shape:
        raise InputDataError(f"{kind} map {str(path)!r} has shape {values.shape} but the image "
                             f"{image_name!r} has shape {data_shape}; they must match pixel "
                             "for pixel")
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = 1.0 / np.sqrt(values) if kind == "weight" else values.copy()
    bad = ~(np.isfinite(sigma) & (sigma > 0))
    sigma[bad] = 1.0
    return sigma, bad, kind, {"noise_map": kind, "noise_map_file": str(path)}


def load_deepfield(image: str | os.PathLike, *, weight: str | os.PathLike | None = None,
                   rms: str | os.PathLike | None = None, hdu: int | str = 0,
                   pixel_scale: float | None = None,
                   zeropoint: float | None = None) -> DeepField:
    """Read a deep-field image and its noise map for :func:`prepare_deepfield`.

    Parameters:
        image:       FITS path, or ``"xdf"`` for scikit-image's Hubble XDF.
        weight:      FITS inverse-variance map (flux units^-2), same shape; or None.
        rms:         FITS noise-sigma map (flux units), same shape; or None.
        hdu:         HDU of the image (and of the maps) in their FITS files.
        pixel_scale: arcsec/pixel; needed when the FITS has no celestial WCS.
        zeropoint:   AB magnitude of one flux unit; None: from PHOTFLAM/PHOTPLAM when
                     the header has them (per-second images), else uncalibrated.

    Raises:
        MissingInputError: a file does not exist.
        InputDataError: unreadable/corrupt FITS, not 2-D, no finite pixel, maps of another
            shape, pixel scale missing, non-positive or disagreeing with the WCS.
    """
    if pixel_scale is not None and not (np.isfinite(pixel_scale) and pixel_scale > 0):
        raise InputDataError(f"pixel_scale must be a positive number of arcsec, got {pixel_scale}")
    if str(image).lower() == XDF_NAME:
        data = _read_xdf()
        name = XDF_NAME
        wcs = None
        scale = float(pixel_scale) if pixel_scale is not None else XDF_PIXEL_SCALE
        flux_units = ("arbitrary (8-bit JPEG counts, mean of the R, G, B channels; "
                      "uncalibrated and not linear in flux)")
        provenance = {
            "image": "scikit-image data.hubble_deep_field() (Hubble eXtreme Deep Field, "
                     "STScI-2012-37 release JPEG, NASA/ESA public domain)",
            "band": "mean of the R, G, B channels of the 8-bit JPEG",
            "calibration": "none: display counts, not linear in flux",
            "pixel_scale_origin": ("pixel_scale argument" if pixel_scale is not None else
                                   f"assumed {XDF_PIXEL_SCALE} arcsec/pixel: the XDF's published "
                                   "2.3 x 2.0 arcmin over 1000 x 872 pixels"),
        }
        zp = zeropoint
    else:
        name = str(image)
        data, header = _read_fits_image(image, hdu, "image")
        wcs, wcs_scale = _wcs_pixel_scale(header, image, "image")
        if wcs_scale is not None:
            if pixel_scale is not None and not math.isclose(pixel_scale, wcs_scale,
                                                            rel_tol=PIXEL_SCALE_RTOL):
                raise InputDataError(
                    f"pixel_scale={pixel_scale} arcsec disagrees with the WCS of {name!r} "
                    f"({wcs_scale:.6g} arcsec/pixel); drop the pixel_scale argument")
            scale, scale_origin = wcs_scale, "FITS WCS (proj_plane_pixel_scales)"
        elif pixel_scale is not None:
            scale, scale_origin = float(pixel_scale), "pixel_scale argument"
        else:
            raise InputDataError(f"image {name!r} has no celestial WCS to give its pixel scale; "
                                 "pass pixel_scale= (--pixel-scale) in arcsec/pixel")
        zp = zeropoint if zeropoint is not None else _header_zeropoint(header)
        bunit = str(header.get("BUNIT", "")).strip()
        flux_units = (f"{bunit} ({name})" if bunit else
                      f"image units of {name!r} (BUNIT not set)")
        provenance = {"image": name, "hdu": hdu, "pixel_scale_origin": scale_origin,
                      "telescope": header.get("TELESCOP"), "instrument": header.get("INSTRUME"),
                      "filter": header.get("FILTER") or header.get("FILTER1")}
        if zp is not None:
            provenance["zeropoint_origin"] = ("zeropoint argument" if zeropoint is not None
                                              else "PHOTFLAM/PHOTPLAM (AB)")
    mask = ~np.isfinite(data)
    if mask.all():
        raise InputDataError(f"image {name!r} has no finite pixel (all NaN/inf)")
    error, bad, error_kind, map_info = _error_map(data.shape, weight, rms, hdu, name)
    if bad is not None:
        mask |= bad
        if mask.all():
            raise InputDataError(f"every pixel of {name!r} is masked by its {error_kind} map "
                                 "(non-positive or non-finite values)")
    data = np.where(mask, 0.0, data)
    provenance.update(map_info)
    provenance["masked_pixels"] = int(mask.sum())
    provenance["zeropoint"] = zp
    return DeepField(data=np.ascontiguousarray(data), mask=mask, error=error,
                     error_kind=error_kind, pixel_scale=scale, wcs=wcs, flux_units=flux_units,
                     zeropoint=zp, provenance=provenance)


def load_psf(psf_file: str | os.PathLike, pixel_scale: float, *, hdu: int | str = 0,
             psf_pixel_scale: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a PSF image and bring it to ``pixel_scale`` (arcsec/pixel), unit sum.

    The PSF's own scale is ``psf_pixel_scale``, else its WCS, else assumed equal to
    ``pixel_scale``.  Beyond a 1 % difference it is resampled with GalSim
    (``InterpolatedImage``, drawn with ``method="no_pixel"``: the image already includes
    the pixel response) to a square of ``round(P * psf_scale / pixel_scale)`` pixels.

    Returns:
        (psf array (P, P) float64 of unit sum, provenance dict)
    """
    data, header = _read_fits_image(psf_file, hdu, "PSF file")
    if data.shape[0] != data.shape[1]:
        raise InputDataError(f"PSF file {str(psf_file)!r} is {data.shape}; "
                             "a square image is needed")
    total = data.sum()
    if not (np.all(np.isfinite(data)) and total > 0):
        raise InputDataError(f"PSF file {str(psf_file)!r} has NaN/inf pixels or a non-positive sum")
    if psf_pixel_scale is not None:
        scale, origin = float(psf_pixel_scale), "psf_pixel_scale argument"
    else:
        _, scale = _wcs_pixel_scale(header, psf_file, "PSF file")
        origin = "PSF WCS"
        if scale is None:
            scale, origin = pixel_scale, "assumed equal to the image's (PSF has no WCS)"
    info = {"psf_file": str(psf_file), "psf_pixel_scale": scale,
            "psf_pixel_scale_origin": origin, "psf_resampled": False}
    if not math.isclose(scale, pixel_scale, rel_tol=PIXEL_SCALE_RTOL):
        import galsim

        size = max(3, int(round(data.shape[0] * scale / pixel_scale)))
        interpolated = galsim.InterpolatedImage(galsim.Image(data / total, scale=scale))
        data = interpolated.drawImage(nx=size, ny=size, scale=pixel_scale,
                                      method="no_pixel").array.astype(np.float64)
        total = data.sum()
        info["psf_resampled"] = True
    return data / total, info


# -- detection and measurement ----------------------------------------------------------
