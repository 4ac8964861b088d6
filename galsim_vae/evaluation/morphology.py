"""Per-stamp morphology statistics of galaxy images (generated or observed).

:func:`measure_morphology` returns one table row per stamp with

==================  ========================================================================
column              meaning
==================  ========================================================================
``flux``            sum of all stamp pixels (flux units of the images). With zero-mean
                    noise this is an unbiased total flux of everything in the stamp; it
                    is not a Kron or aperture flux.
``sigma_pix``       HSM adaptive-moment size ``moments_sigma`` (pixels):
                    ``det(M)**(1/4)`` of the adaptive second moments, ``sigma`` for a
                    circular Gaussian (Hirata & Seljak 2003; Mandelbaum et al. 2005).
``sigma_arcsec``    ``sigma_pix * pixel_scale``.
``hlr_pix``         half-light radius (pixels): radius of the circle about the HSM
                    centroid that encloses half of ``flux`` (:func:`half_light_radius`).
                    Non-parametric, so it stays meaningful for non-Gaussian profiles where
                    ``sigma`` mostly measures the core; for a Gaussian it is
                    ``sqrt(2 ln 2) sigma = 1.1774 sigma``.
``hlr_arcsec``      ``hlr_pix * pixel_scale``.
``g``, ``g1``,      HSM observed shape (``observed_shape``), reduced-shear convention:
``g2``              ``|g| = (a - b) / (a + b)``; PSF not corrected.
``rho4``            HSM ``moments_rho4`` (radial fourth moment; 2 for a Gaussian).
``gini``            Gini coefficient (Lotz, Primack & Madau 2004), statmorph.
``m20``             M20, normalised second moment of the brightest 20% of the flux
                    (Lotz et al. 2004), statmorph.
``concentration``   C = 5 log10(r80 / r20), radii of circular apertures holding 20% and
                    80% of the flux within 1.5 Petrosian radii (Bershady, Jangren &
                    Conselice 2000; Conselice 2003), statmorph.
``asymmetry``       A, 180-degree rotational asymmetry about the centre that minimises
                    it, minus the background asymmetry (Conselice, Bershady & Jangren
                    2000), statmorph.  Biased low on noisy stamps (typically -0.1 to
                    -0.3 at COSMOS-like S/N): statmorph rotates the galaxy about a
                    sub-pixel centre with bilinear interpolation, which smooths its
                    noise, but subtracts the background asymmetry of an exactly flipped
                    sky box.  Compare A only between stamps of the same noise level
                    (:func:`galsim_vae.evaluation.observe_like_data`).
``sersic_n``,       single-Sersic fit by statmorph (PSF-convolved when ``psf`` is given).
``sersic_rhalf_arcsec``
``sn_per_pixel``    statmorph's mean signal-to-noise per pixel of the galaxy.
``hsm_status``      HSM ``moments_status`` (0 = success; -1 when HSM raised).
``statmorph_flag``  statmorph ``flag`` (0 good, 1 suspect, 2 bad, 4 catastrophic;
                    -1 when not run).
``flag``            bit mask of failed measurements: :data:`FLAG_HSM`,
                    :data:`FLAG_NO_SEGMENT`, :data:`FLAG_STATMORPH`, :data:`FLAG_HLR`.
==================  ========================================================================

Failed measurements are NaN and flagged, never raised; ``table.meta`` counts them and
records the measured time per stamp (``seconds_per_stamp``).

statmorph (Rodriguez-Gomez et al. 2019) is run on one segment per stamp: the image is
smoothed with a Gaussian of 1 pixel sigma, thresholded at ``segment_nsigma`` times the
smoothed noise with photutils (at least 5 connected pixels), the segment under the HSM
centroid (else the one nearest the stamp centre) is the galaxy, the other segments are
masked.  statmorph always runs its Sersic fit and the MID statistics too (it evaluates
every property in its constructor); the asymmetry-centre search dominates its run time.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from ..errors import InputDataError
from ..io_utils import progress

#: ``flag`` bit: HSM adaptive moments failed (size, shape, rho4 are NaN).
FLAG_HSM = 1
#: ``flag`` bit: no segment above the threshold near the centre (non-parametric NaN).
FLAG_NO_SEGMENT = 2
#: ``flag`` bit: statmorph raised, or its flag exceeded ``max_statmorph_flag``.
FLAG_STATMORPH = 4
#: ``flag`` bit: the half-light radius is undefined (stamp flux <= 0).
FLAG_HLR = 8
#: ``flag`` bit: a generated galaxy that no noise draw brought into the data's sample
#: (:func:`galsim_vae.evaluation.selection.add_selected_noise`); its statistics are NaN.
FLAG_NOT_SELECTED = 16

#: Columns of HSM / curve-of-growth measurements (always measured).
MOMENT_COLUMNS = ("flux", "sigma_pix", "sigma_arcsec", "hlr_pix", "hlr_arcsec",
                  "g", "g1", "g2", "rho4")
#: Columns of the non-parametric statistics (statmorph, ``nonparametric=True``).
NONPARAMETRIC_COLUMNS = ("gini", "m20", "concentration", "asymmetry", "sersic_n",
                         "sersic_rhalf_arcsec", "sn_per_pixel")

#: Gaussian smoothing (pixels) of the image before thresholding for the segmentation map.
SEGMENT_SMOOTHING_SIGMA = 1.0
#: Minimum number of connected pixels of a segment.
SEGMENT_MIN_PIXELS = 5
#: Sub-pixel sampling (per axis) of the curve of growth in :func:`half_light_radius`.
_HLR_SUBSAMPLE = 4


def exclude_rows(table, rows: np.ndarray) -> None:
    """Flag ``rows`` (bool mask or indices) of a :func:`measure_morphology` table with
    :data:`FLAG_NOT_SELECTED` and set their statistics to NaN, in place (the rows stay,
    so the table stays aligned with whatever else is indexed by galaxy)."""
    for name in table.colnames:
        if name != "flag" and np.issubdtype(table[name].dtype, np.floating):
            table[name][rows] = np.nan
    table["flag"][rows] |= FLAG_NOT_SELECTED


def gini_coefficient(values: np.ndarray) -> float:
    """Gini coefficient of pixel values (Lotz, Primack & Madau 2004, eq. 6).

    ``G = sum_i (2 i - n - 1) |X_i| / ((n - 1) sum_i |X_i|)`` over the values sorted by
    absolute value, ``i = 1..n``: 0 when all pixels are equal, 1 when one pixel holds all
    the flux.  This is the estimator statmorph applies to the pixels of its Gini segment.

    Parameters:
        values:     Pixel values (any shape; flattened).

    Returns:
        G in [0, 1], or NaN when there are fewer than 2 values or they are all zero.
    """
    x = np.sort(np.abs(np.asarray(values, dtype=np.float64).ravel()))
    n = x.size
    total = x.sum()
    if n < 2 or total <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / ((n - 1) * total))


def half_light_radius(image: np.ndarray, centre: tuple[float, float]) -> float:
    """Radius (pixels) of the circle about ``centre`` that encloses half the stamp flux.

    The curve of growth is computed with each pixel split into 4x4 sub-pixels binned in
    radius (bins of 1/4 pixel), and the first crossing of half of ``image.sum()`` is
    interpolated linearly within its bin.  On noisy stamps the first crossing is used.

    Parameters:
        image:      (S, S) or (ny, nx) array, flux per pixel.
        centre:     (x, y) of the centre in 0-indexed pixel coordinates (pixel centres at
                    integers).

    Returns:
        The radius in pixels, or NaN when the stamp flux is not positive.
    """
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    if not total > 0:
        return float("nan")
    k = _HLR_SUBSAMPLE
    ny, nx = image.shape
    offsets = (np.arange(k) + 0.5) / k - 0.5
    x = (np.arange(nx)[:, None] + offsets[None, :]).ravel() - centre[0]
    y = (np.arange(ny)[:, None] + offsets[None, :]).ravel() - centre[1]
    radius = np.hypot(x[None, :], y[:, None])            # (ny*k, nx*k)
    sub_flux = np.repeat(np.repeat(image, k, axis=0), k, axis=1) / (k * k)
    bin_width = 1.0 / k
    bins = (radius / bin_width).astype(np.int64).ravel()
    enclosed = np.cumsum(np.bincount(bins, weights=sub_flux.ravel()))
    first = int(np.argmax(enclosed >= 0.5 * total))
    below = enclosed[first - 1] if first > 0 else 0.0
    fraction = (0.5 * total - below) / (enclosed[first] - below)
    return float((first + fraction) * bin_width)


def _check_inputs(images: Any, pixel_scale: float, noise_sigma: Any,
                  nonparametric: bool) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] < 8:
        raise InputDataError(
            f"images must be an (N, S, S) array of square stamps with S >= 8, got shape "
            f"{images.shape}; stack single stamps with np.stack or image[None]")
    # In chunks: ``images`` may be a memory map of a whole data set.
    bad = np.concatenate([~np.isfinite(images[i:i + 256]).all(axis=(1, 2))
                          for i in range(0, images.shape[0], 256)] or [np.zeros(0, bool)])
    if bad.any():
        raise InputDataError(
            f"images: {int(bad.sum())} stamps contain NaN/inf pixels (first index "
            f"{int(np.argmax(bad))}); remove or repair them before measuring")
    if not (np.isfinite(pixel_scale) and pixel_scale > 0):
        raise InputDataError(f"pixel_scale must be a positive number of arcsec, got {pixel_scale!r}")
    sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (images.shape[0],))
    if sigma.shape != (images.shape[0],) or not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
        raise InputDataError(
            f"noise_sigma must be a finite number >= 0 or one per stamp ({images.shape[0]}), "
            f"got {np.asarray(noise_sigma)!r}")
    if nonparametric and np.any(sigma <= 0):
        raise InputDataError(
            f"noise_sigma must be > 0 for the non-parametric statistics (the segmentation "
            f"threshold and statmorph's weight map need it); got {int((sigma <= 0).sum())} "
            "stamps with noise_sigma <= 0: pass the noise level or nonparametric=False")
    return images, sigma


def _check_psfs(psf: Any, n: int) -> np.ndarray | None:
    if psf is None:
        return None
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim == 2:
        psf = np.broadcast_to(psf, (n,) + psf.shape)
    if psf.ndim != 3 or psf.shape[0] != n or not np.all(np.isfinite(psf)):
        raise InputDataError(
            f"psf must be one finite (P, P) image or one per stamp (N={n}, P, P), got "
            f"shape {psf.shape}")
    return psf


def _hsm_moments(image: np.ndarray, pixel_scale: float) -> dict[str, float]:
    """HSM adaptive moments of one stamp; NaN values and a non-zero status on failure."""
    import galsim

    result = {"sigma_pix": np.nan, "g": np.nan, "g1": np.nan, "g2": np.nan, "rho4": np.nan,
              "x": np.nan, "y": np.nan, "hsm_status": -1}
    try:
        moments = galsim.hsm.FindAdaptiveMom(
            galsim.Image(np.ascontiguousarray(image, dtype=np.float64), scale=pixel_scale),
            strict=False)
    except (galsim.GalSimError, RuntimeError, ValueError):
        return result
    result["hsm_status"] = int(moments.moments_status)
    if moments.moments_status != 0:
        return result
    shape = moments.observed_shape
    # moments_centroid is in GalSim's 1-indexed image coordinates.
    result.update(sigma_pix=float(moments.moments_sigma), g=float(shape.g),
                  g1=float(shape.g1), g2=float(shape.g2), rho4=float(moments.moments_rho4),
                  x=float(moments.moments_centroid.x) - 1.0,
                  y=float(moments.moments_centroid.y) - 1.0)
    return result


def _galaxy_segment(image: np.ndarray, noise_sigma: float, nsigma: float,
                    centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray] | None:
    """(segment mask of the galaxy, mask of other sources), or None when nothing is
    detected."""
    from photutils.segmentation import detect_sources
    from scipy import ndimage

    smoothed = ndimage.gaussian_filter(image, SEGMENT_SMOOTHING_SIGMA, mode="constant")
    delta = np.zeros((15, 15))
    delta[7, 7] = 1.0
    noise_factor = np.sqrt(np.sum(ndimage.gaussian_filter(delta, SEGMENT_SMOOTHING_SIGMA,
                                                          mode="constant") ** 2))
    threshold = nsigma * noise_sigma * noise_factor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No sources were found" is handled below
        segments = detect_sources(smoothed, threshold, npixels=SEGMENT_MIN_PIXELS,
                                  connectivity=8)
    if segments is None:
        return None
    labels = segments.data
    size = image.shape[0]
    ix, iy = int(round(centre[0])), int(round(centre[1]))
    label = labels[iy, ix] if (0 <= ix < size and 0 <= iy < size) else 0
    if label == 0:
        ys, xs = np.nonzero(labels)
        nearest = np.argmin((xs - (size // 2)) ** 2 + (ys - (size // 2)) ** 2)
        label = labels[ys[nearest], xs[nearest]]
    galaxy = labels == label
    return galaxy, (labels > 0) & ~galaxy


def _statmorph_row(image: np.ndarray, noise_sigma: float, centre: tuple[float, float],
                   psf: np.ndarray | None, pixel_scale: float, nsigma: float,
                   max_flag: int, errors: list[str]) -> tuple[dict[str, float], int]:
    """Non-parametric statistics of one stamp and the ``flag`` bits to set."""
    import statmorph

    values = {name: np.nan for name in NONPARAMETRIC_COLUMNS}
    values["statmorph_flag"] = -1
    found = _galaxy_segment(image, noise_sigma, nsigma, centre)
    if found is None:
        return values, FLAG_NO_SEGMENT
    galaxy, others = found
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statmorph warns and sets its flag
            result = statmorph.SourceMorphology(
                image, galaxy.astype(np.int32), 1, mask=others,
                weightmap=np.full(image.shape, noise_sigma), psf=psf)
    except Exception as exc:  # statmorph raises assorted errors on degenerate stamps
        if len(errors) < 10:
            errors.append(f"{type(exc).__name__}: {exc}")
        return values, FLAG_STATMORPH
    values["statmorph_flag"] = int(result.flag)
    if result.flag > max_flag:
        return values, FLAG_STATMORPH
    for name, attribute in (("gini", "gini"), ("m20", "m20"),
                            ("concentration", "concentration"), ("asymmetry", "asymmetry"),
                            ("sn_per_pixel", "sn_per_pixel")):
        value = float(getattr(result, attribute))
        values[name] = value if value != -99.0 else np.nan
    if result.flag_sersic == 0:
        values["sersic_n"] = float(result.sersic_n)
        values["sersic_rhalf_arcsec"] = float(result.sersic_rhalf) * pixel_scale
    return values, 0


def _import_measurement_modules(nonparametric: bool) -> None:
    import galsim  # noqa: F401

    if nonparametric:
        import photutils.segmentation  # noqa: F401
        import scipy.ndimage  # noqa: F401
        import statmorph  # noqa: F401


def measure_morphology(images: np.ndarray, *, pixel_scale: float,
                       noise_sigma: float | np.ndarray, psf: np.ndarray | None = None,
                       nonparametric: bool = True, segment_nsigma: float = 2.0,
                       max_statmorph_flag: int = 1, desc: str = "morphology"):
    """Measure the morphology statistics of each stamp (see the module docstring).

    Parameters:
        images:             (N, S, S) stamps in flux units, background-subtracted, galaxy
                            near the centre.
        pixel_scale:        Pixel scale, arcsec/pixel.
        noise_sigma:        Gaussian noise standard deviation per pixel (flux units),
                            one number or one per stamp; must be > 0 when
                            ``nonparametric``.
        psf:                Optional PSF image (P, P) or one per stamp (N, P, P); used only
                            by statmorph's Sersic fit (the other statistics describe the
                            observed light, PSF included).
        nonparametric:      Also run statmorph (Gini, M20, C, A, Sersic). False skips the
                            slow part; those columns are then absent.
        segment_nsigma:     Detection threshold of the segmentation map, in units of the
                            noise of the smoothed image.
        max_statmorph_flag: Largest statmorph flag whose values are kept (1 keeps
                            "suspect", drops "bad" and "catastrophic").
        desc:               Label of the progress bar.

    Returns:
        astropy Table, one row per stamp; ``meta`` holds ``pixel_scale``,
        ``n_hsm_failed``, ``n_nonparametric_failed``, ``n_flagged``,
        ``seconds_per_stamp`` (wall clock), ``cpu_seconds_per_stamp`` (this process),
        ``flux_definition`` and ``statmorph_errors`` (first few).
    """
    from astropy.table import Table

    images, sigma = _check_inputs(images, pixel_scale, noise_sigma, nonparametric)
    psfs = _check_psfs(psf, images.shape[0])
    columns = list(MOMENT_COLUMNS) + ["hsm_status"]
    if nonparametric:
        columns += list(NONPARAMETRIC_COLUMNS) + ["statmorph_flag"]
    rows: dict[str, list] = {name: [] for name in columns + ["flag"]}
    errors: list[str] = []
    _import_measurement_modules(nonparametric)  # keep import time out of seconds_per_stamp
    start, cpu_start = time.perf_counter(), time.process_time()
    for index in progress(range(images.shape[0]), total=images.shape[0], desc=desc):
        image = np.asarray(images[index], dtype=np.float64)
        flag = 0
        moments = _hsm_moments(image, pixel_scale)
        if moments["hsm_status"] != 0:
            flag |= FLAG_HSM
            centre = ((image.shape[1] - 1) / 2.0, (image.shape[0] - 1) / 2.0)
        else:
            centre = (moments["x"], moments["y"])
        hlr = half_light_radius(image, centre)
        if not np.isfinite(hlr):
            flag |= FLAG_HLR
        values = {"flux": float(image.sum()), "sigma_pix": moments["sigma_pix"],
                  "sigma_arcsec": moments["sigma_pix"] * pixel_scale, "hlr_pix": hlr,
                  "hlr_arcsec": hlr * pixel_scale, "g": moments["g"], "g1": moments["g1"],
                  "g2": moments["g2"], "rho4": moments["rho4"],
                  "hsm_status": moments["hsm_status"]}
        if nonparametric:
            stats, bits = _statmorph_row(image, float(sigma[index]), centre,
                                         None if psfs is None else psfs[index],
                                         pixel_scale, segment_nsigma, max_statmorph_flag,
                                         errors)
            values.update(stats)
            flag |= bits
        values["flag"] = flag
        for name in rows:
            rows[name].append(values[name])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    table = Table({name: np.asarray(rows[name]) for name in rows})
    for name in ("hsm_status", "flag") + (("statmorph_flag",) if nonparametric else ()):
        table[name] = table[name].astype(np.int32)
    flags = np.asarray(table["flag"])
    table.meta.update(
        pixel_scale=float(pixel_scale), nonparametric=bool(nonparametric),
        flux_definition="sum of all stamp pixels",
        n_hsm_failed=int(np.count_nonzero(flags & FLAG_HSM)),
        n_nonparametric_failed=int(np.count_nonzero(flags & (FLAG_NO_SEGMENT | FLAG_STATMORPH))),
        n_flagged=int(np.count_nonzero(flags)),
        seconds_per_stamp=elapsed / images.shape[0] if len(images) else float("nan"),
        cpu_seconds_per_stamp=cpu / images.shape[0] if len(images) else float("nan"),
        statmorph_errors=errors)
    return table
