"""Training sets from a deep-field image: source extraction with ``sep``, centred stamps.

``prepare_deepfield`` turns one image (a FITS file, or scikit-image's copy of the Hubble
eXtreme Deep Field) into a galsim-vae data set:

1. **Read** the image (and an RMS or inverse-variance weight map).  Non-finite pixels
   (NaN, inf) are *masked*: set to zero, excluded from the background and the detection
   (sep's ``mask``), and any stamp that contains one is rejected.  Pixels where the
   weight is <= 0 or the RMS is <= 0 or non-finite are masked the same way.  An image
   with no finite pixel is an error.
2. **Background**: ``sep.Background`` (SExtractor's mesh of ``background_box`` pixels,
   median-filtered over ``background_filter`` meshes; Bertin & Arnouts 1996) is
   subtracted from the image; stamps are cut from the subtracted image.
3. **Detection**: ``sep.extract`` at ``threshold`` times the per-pixel noise: the RMS
   map, ``1/sqrt(weight)``, or else sep's background RMS map, with SExtractor's default
   3x3 matched filter, ``min_area`` connected pixels and multi-threshold deblending.
4. **Selection**, in this order, each source counted under the first reason that
   rejects it (``source["rejected"]`` in the manifest):

   - ``edge``: the stamp would cross the image edge, or sep flags the object as
     truncated by the edge (``OBJ_TRUNC``);
   - ``masked``: the stamp contains a masked pixel;
   - ``blended``: sep deblended the object out of a larger detection (``OBJ_MERGED``);
   - ``neighbour``: a pixel of another detected source's segment lies in the stamp
     (so every kept stamp holds one detected source and background only);
   - ``photometry``: the Kron radius could not be measured (sep returns 0 when the
     first moment of the light within 6 (a, b) is not positive, e.g. on an
     over-subtracted background), or the Kron flux or the half-light radius is not
     finite and positive;
   - ``max_galaxies``: beyond the ``max_galaxies`` brightest (by Kron flux) kept ones.

5. **Stamps** are ``stamp_size`` square cut-outs with integer-pixel cropping (no
   resampling, no interpolation): the stamp's first column is
   ``x0 = floor(x - (S - 1) / 2 + 0.5)`` (same for rows), where ``x`` is sep's
   barycentre in 0-based pixel coordinates.  The source centroid then lies within half a
   pixel (per axis) of the stamp's ``true_center`` ``((S - 1) / 2, (S - 1) / 2)``, the
   centre GalSim's ``drawImage(nx=S, ny=S)`` uses; the residual offsets are stored in
   the ``offset_x``/``offset_y`` columns.
6. **Measurements** (catalog columns): ``x``, ``y`` (0-based pixel coordinates of the
   barycentre in the image, as numpy and sep count; add 1 for FITS/DS9 convention),
   ``ra``, ``dec`` (deg, ICRS/FK5 of the FITS WCS; NaN without a celestial WCS),
   ``flux_auto`` and ``flux_auto_err`` (sep's Kron-aperture flux, SExtractor's
   FLUX_AUTO: ellipse of 2.5 Kron radii with a 3.5-pixel circular minimum, Kron 1980),
   ``flux_radius`` (half-light radius in pixels, ``sep.flux_radius`` of ``flux_auto``:
   SExtractor's FLUX_RADIUS), ``mag_auto`` (``zeropoint - 2.5 log10(flux_auto)``, NaN
   when the image is uncalibrated), ``a``, ``b``, ``theta`` (sep's second-moment
   ellipse, pixels and radians), ``kron_radius``, ``sep_flag``, ``ident`` (sep's source
   number: the label of its segment) and ``noise_variance``: the median over the stamp
   of the variance map (RMS squared or 1/weight), or of sep's background-RMS map
   squared when no map was given.
7. **PSF**: with ``psf_file`` every galaxy gets that PSF.  Its pixel scale comes from
   ``psf_pixel_scale``, else its own WCS, else it is assumed equal to the image's; when
   it differs from the image's by more than 1 % it is resampled onto the image's pixel
   grid with a GalSim ``InterpolatedImage`` drawn with ``method="no_pixel"`` (the PSF
   image already contains the pixel response).  Without ``psf_file`` the data set has
   no PSF (``psf_size`` None).

Pixel scale: from the FITS WCS (``astropy.wcs.utils.proj_plane_pixel_scales``) when
present, else the ``pixel_scale`` argument, else an error.  A ``pixel_scale`` argument
that disagrees with the WCS by more than 1 % is an error.

The scikit-image XDF (``image="xdf"``) is the 2012 press-release picture (STScI-2012-37,
NASA/ESA, G. Illingworth, D. Magee, P. Oesch, R. Bouwens and the HUDF09 team;
Illingworth et al. 2013, ApJS 209, 6): an 8-bit RGB JPEG of 1000 x 872 pixels.  It is
turned into one band by averaging R, G and B (float64, no colour weighting: the three
channels are different HST filters, not a human-eye luminance).  Its values are
display counts: uncalibrated and not even linear in flux (the release was stretched for
display), so the flux units are arbitrary and ``mag_auto`` is NaN.  It has no WCS; its
default pixel scale ``XDF_PIXEL_SCALE`` = 0.138 arcsec/pixel comes from the published
extent of the field, 2.3 x 2.0 arcmin (STScI-2012-37), over 1000 x 872 pixels
(138"/1000 = 0.138, 120"/872 = 0.1376).  The manifest records this.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..io_utils import check_output_path, progress
from .deepfield_io import XDF_NAME, DeepField, load_deepfield, load_psf

#: SExtractor's FLUX_AUTO: aperture of KRON_FACT = 2.5 Kron radii, at least
#: MIN_RADIUS = 3.5 (circular radius r_min = 3.5 / 2 = 1.75 pixels, sep documentation).
KRON_FACTOR = 2.5
KRON_MIN_RADIUS = 1.75
#: Kron radius integration limit in units of the ellipse a, b (sep/SExtractor: 6).
KRON_RMAX = 6.0
#: Order in which rejection reasons are tested (a source counts under the first).
REJECTION_REASONS = ("edge", "masked", "blended", "neighbour", "photometry", "max_galaxies")


def detect_sources(field: DeepField, *, threshold: float = 1.5, min_area: int = 5,
                   deblend_nthresh: int = 32, deblend_cont: float = 0.005,
                   background_box: int = 64, background_filter: int = 3):
    """Subtract the background and run ``sep.extract``.

    Returns:
        (objects, segmentation map, background-subtracted image, noise sigma map): sep's
        structured array (source number ``i + 1`` is the label of row ``i`` in the
        segmentation map) and the (ny, nx) per-pixel noise used for detection.
    """
    import sep

    if not threshold > 0:
        raise InputDataError(f"threshold must be > 0 (in units of the noise sigma), "
                             f"got {threshold}")
    if min_area < 1:
        raise InputDataError(f"min_area must be >= 1 pixel, got {min_area}")
    ny, nx = field.data.shape
    box = int(min(background_box, ny, nx))
    try:
        background = sep.Background(field.data, mask=field.mask, bw=box, bh=box,
                                    fw=background_filter, fh=background_filter)
    except Exception as err:  # noqa: BLE001 - sep raises plain Exception
        raise InputDataError(f"background estimation failed: {err}") from None
    subtracted = np.ascontiguousarray(field.data - background.back())
    subtracted[field.mask] = 0.0
    if field.error is not None:
        sigma = field.error
    else:
        sigma = np.ascontiguousarray(background.rms(), dtype=np.float64)
        if not np.any(sigma[~field.mask] > 0):
            raise InputDataError("the image has no noise (background RMS is 0): give an RMS "
                                 "or weight map")
        sigma = np.where(sigma > 0, sigma, max(background.globalrms, 1e-30))
    sep.set_extract_pixstack(max(300_000, field.data.size))
    try:
        objects, segmap = sep.extract(subtracted, threshold, err=sigma, mask=field.mask,
                                      minarea=int(min_area), deblend_nthresh=deblend_nthresh,
                                      deblend_cont=deblend_cont, segmentation_map=True)
    except Exception as err:  # noqa: BLE001 - sep raises plain Exception
        raise InputDataError(f"source extraction failed ({err}); "
                             "raise threshold or min_area") from None
    return objects, segmap, subtracted, sigma


def kron_photometry(image: np.ndarray, objects, *, error=None, mask=None):
    """SExtractor FLUX_AUTO with sep (sep documentation, "Flux: Kron"): ellipse of
    KRON_FACTOR Kron radii, circular radius KRON_MIN_RADIUS when that is smaller.

    Returns:
        dict of arrays: ``flux``, ``flux_err``, ``kron_radius``, ``flag``.
    """
    import sep

    x, y = objects["x"], objects["y"]
    a, b = objects["a"], objects["b"]
    theta = np.clip(objects["theta"], -np.pi / 2, np.pi / 2)
    kron, kron_flag = sep.kron_radius(image, x, y, a, b, theta, KRON_RMAX, mask=mask)
    flux, flux_err, flag = sep.sum_ellipse(image, x, y, a, b, theta, KRON_FACTOR * kron,
                                           err=error, mask=mask, subpix=1)
    flag = flag | kron_flag
    small = ~(kron * np.sqrt(a * b) >= KRON_MIN_RADIUS)  # also catches NaN
    if small.any():
        c_flux, c_err, c_flag = sep.sum_circle(image, x[small], y[small], KRON_MIN_RADIUS,
                                               err=error, mask=mask, subpix=1)
        flux[small], flux_err[small], flag[small] = c_flux, c_err, c_flag
    return {"flux": flux, "flux_err": flux_err, "kron_radius": kron, "flag": flag}


def stamp_origin(x: float, y: float, stamp_size: int) -> tuple[int, int]:
    """First column and row of the stamp centred on the 0-based position (x, y): the
    position lands within half a pixel of the stamp's ``true_center`` (S - 1) / 2."""
    half = (stamp_size - 1) / 2.0
    return int(math.floor(x - half + 0.5)), int(math.floor(y - half + 0.5))


# -- the data set -------------------------------------------------------------------------

_EXTRA_COLUMNS = {"x": "f8", "y": "f8", "ra": "f8", "dec": "f8", "offset_x": "f8",
                  "offset_y": "f8", "stamp_x0": "i4", "stamp_y0": "i4", "flux_auto": "f8",
                  "flux_auto_err": "f8", "kron_radius": "f8", "a": "f8", "b": "f8",
                  "theta": "f8", "npix": "i4", "sep_flag": "i2"}


def _select(objects, segmap, mask, stamp_size: int, photometry) -> tuple[list[int], dict]:
    """Indices of the sources kept (before ``max_galaxies``) and rejection counts."""
    import sep

    ny, nx = segmap.shape
    rejected = {reason: 0 for reason in REJECTION_REASONS}
    kept = []
    for i, obj in enumerate(progress(objects, total=len(objects), desc="selecting sources")):
        x0, y0 = stamp_origin(obj["x"], obj["y"], stamp_size)
        box = (slice(y0, y0 + stamp_size), slice(x0, x0 + stamp_size))
        if (x0 < 0 or y0 < 0 or x0 + stamp_size > nx or y0 + stamp_size > ny
                or obj["flag"] & sep.OBJ_TRUNC):
            reason = "edge"
        elif mask[box].any():
            reason = "masked"
        elif obj["flag"] & sep.OBJ_MERGED:
            reason = "blended"
        elif np.any((segmap[box] != 0) & (segmap[box] != i + 1)):
            reason = "neighbour"
        elif not (photometry["kron_radius"][i] > 0 and photometry["flux"][i] > 0
                  and photometry["radius"][i] > 0):  # False for NaN too
            reason = "photometry"
        else:
            kept.append(i)
            continue
        rejected[reason] += 1
    return kept, rejected


def prepare_deepfield(image: str | os.PathLike, out: str | os.PathLike, *,
                      weight: str | os.PathLike | None = None,
                      rms: str | os.PathLike | None = None, hdu: int | str = 0,
                      pixel_scale: float | None = None, stamp_size: int = 64,
                      psf_file: str | os.PathLike | None = None,
                      psf_pixel_scale: float | None = None, threshold: float = 1.5,
                      min_area: int = 5, deblend_nthresh: int = 32,
                      deblend_cont: float = 0.005, background_box: int = 64,
                      background_filter: int = 3, zeropoint: float | None = None,
                      max_galaxies: int | None = None, split_seed: int = 0,
                      overwrite: bool = False) -> Path:
    """Detect the galaxies of a deep-field image and write them as a galsim-vae data set.

    See the module documentation for every step and convention.

    Parameters:
        image:          FITS path, or ``"xdf"`` (any case) for scikit-image's Hubble XDF.
        out:            Output data set folder.
        weight:         Inverse-variance weight map (FITS, same shape), or None.
        rms:            Noise-sigma map (FITS, same shape), or None.
        hdu:            HDU of the image and maps.
        pixel_scale:    arcsec/pixel, for images without a celestial WCS (XDF default
                        ``XDF_PIXEL_SCALE``).
        stamp_size:     Side of the square stamps, pixels.
        psf_file:       PSF image (FITS) given to every galaxy; None: no PSF.
        psf_pixel_scale: arcsec/pixel of the PSF image when its WCS does not say.
        threshold:      Detection threshold in units of the per-pixel noise sigma.
        min_area:       Minimum connected pixels above threshold (SExtractor DETECT_MINAREA).
        deblend_nthresh: Deblending sub-thresholds (SExtractor DEBLEND_NTHRESH).
        deblend_cont:   Deblending minimum contrast (DEBLEND_MINCONT); 1.0 disables it.
        background_box: Background mesh size, pixels (BACK_SIZE).
        background_filter: Background median filter, meshes (BACK_FILTERSIZE).
        zeropoint:      AB magnitude of one flux unit for ``mag_auto``; None: from the
                        header's PHOTFLAM/PHOTPLAM if any, else ``mag_auto`` is NaN.
        max_galaxies:   Keep at most this many (the brightest by Kron flux).
        split_seed:     Seed of the train/validation/test split.
        overwrite:      Replace an existing ``out``.

    Returns:
        The path of the data set folder.

    Raises:
        OutputExistsError: ``out`` exists and not ``overwrite`` (checked first).
        MissingInputError: the image, a map or the PSF file does not exist.
        InputDataError: unreadable FITS, no finite pixel, shapes differ, no pixel scale,
            stamp larger than the image, no source detected or none kept.
    """
    from .writer import DatasetWriter

    check_output_path(out, overwrite=overwrite)
    if max_galaxies is not None and max_galaxies < 1:
        raise InputDataError(f"max_galaxies must be >= 1 or None, got {max_galaxies}")
    if stamp_size < 8:
        raise InputDataError(f"stamp_size must be >= 8 pixels, got {stamp_size}")
    field = load_deepfield(image, weight=weight, rms=rms, hdu=hdu, pixel_scale=pixel_scale,
                           zeropoint=zeropoint)
    name = XDF_NAME if str(image).lower() == XDF_NAME else str(image)
    ny, nx = field.data.shape
    if stamp_size > min(ny, nx):
        raise InputDataError(f"stamp_size {stamp_size} is larger than the image {name!r} "
                             f"({nx} x {ny} pixels); choose stamp_size <= {min(ny, nx)}")
    psf, psf_info = None, {}
    if psf_file is not None:
        psf, psf_info = load_psf(psf_file, field.pixel_scale, hdu=0,
                                 psf_pixel_scale=psf_pixel_scale)

    objects, segmap, subtracted, sigma = detect_sources(
        field, threshold=threshold, min_area=min_area, deblend_nthresh=deblend_nthresh,
        deblend_cont=deblend_cont, background_box=background_box,
        background_filter=background_filter)
    if len(objects) == 0:
        raise InputDataError(f"no source detected in {name!r} above {threshold} sigma with "
                             f"min_area={min_area}; lower threshold or min_area")
    photometry = kron_photometry(subtracted, objects, error=sigma, mask=field.mask)
    import sep

    radius, _ = sep.flux_radius(subtracted, objects["x"], objects["y"],
                                KRON_RMAX * objects["a"], 0.5, normflux=photometry["flux"],
                                mask=field.mask, subpix=5)
    photometry["radius"] = radius
    kept, rejected = _select(objects, segmap, field.mask, stamp_size, photometry)
    kept = sorted(kept, key=lambda i: -photometry["flux"][i])
    if max_galaxies is not None and len(kept) > max_galaxies:
        rejected["max_galaxies"] = len(kept) - max_galaxies
        kept = kept[:max_galaxies]
    if not kept:
        raise InputDataError(
            f"none of the {len(objects)} sources detected in {name!r} was kept (rejected: "
            f"{rejected}); use a smaller stamp_size or a higher threshold")
    kept.sort()  # write in sep's order

    source = {"kind": "deepfield", **field.provenance, **psf_info,
              "detection": {"tool": "sep", "threshold_sigma": threshold,
                            "noise": field.error_kind, "min_area": min_area,
                            "deblend_nthresh": deblend_nthresh, "deblend_cont": deblend_cont,
                            "background_box": background_box,
                            "background_filter": background_filter},
              "stamps": "integer-pixel crops of the background-subtracted image, centroid "
                        "within 0.5 pixel of true_center (offset_x/offset_y columns)",
              "blend_rule": "rejected: sep OBJ_MERGED, or another segment in the stamp",
              "detected": int(len(objects)), "kept": len(kept), "rejected": rejected}
    ra = dec = np.full(len(objects), np.nan)
    if field.wcs is not None:
        ra, dec = field.wcs.all_pix2world(objects["x"], objects["y"], 0)
    var_map = sigma**2
    half = (stamp_size - 1) / 2.0
    with DatasetWriter(out, max_galaxies=len(kept), stamp_size=stamp_size,
                       psf_size=None if psf is None else psf.shape[0],
                       pixel_scale=field.pixel_scale, flux_units=field.flux_units,
                       source=source, extra_columns=_EXTRA_COLUMNS, split_seed=split_seed,
                       overwrite=overwrite) as writer:
        for i in progress(kept, desc="writing stamps"):
            obj = objects[i]
            x0, y0 = stamp_origin(obj["x"], obj["y"], stamp_size)
            box = (slice(y0, y0 + stamp_size), slice(x0, x0 + stamp_size))
            flux = float(photometry["flux"][i])
            mag = (field.zeropoint - 2.5 * math.log10(flux)
                   if field.zeropoint is not None else math.nan)
            writer.add(subtracted[box], ident=i + 1,
                       noise_variance=float(np.median(var_map[box])), psf=psf,
                       mag_auto=mag, flux_radius=float(radius[i]),
                       x=float(obj["x"]), y=float(obj["y"]), ra=float(ra[i]), dec=float(dec[i]),
                       offset_x=float(obj["x"] - x0 - half), offset_y=float(obj["y"] - y0 - half),
                       stamp_x0=x0, stamp_y0=y0, flux_auto=flux,
                       flux_auto_err=float(photometry["flux_err"][i]),
                       kron_radius=float(photometry["kron_radius"][i]), a=float(obj["a"]),
                       b=float(obj["b"]), theta=float(obj["theta"]), npix=int(obj["npix"]),
                       sep_flag=int(obj["flag"]))
    return Path(out)
