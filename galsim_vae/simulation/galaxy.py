"""One simulated COSMOS galaxy: PSF-free truth, HST-PSF-convolved noisy stamp, and the
catalog quantities measured on it.

A galaxy is a bulge (de Vaucouleurs or Sersic) plus a Sersic (n ~ 0.4-2) disk whose
star-forming knots (``galsim.RandomKnots``) carry part of the disk flux.  It is drawn at
0.03"/pixel in counts/s (F814W, zero point 25.94), convolved with one of the 100 real
COSMOS HST PSF images (which include the pixel response, hence ``method='no_pixel'``),
and COSMOS correlated noise (the F814W noise correlation function shipped with GalSim)
is added.  ``mag_auto`` and ``flux_radius`` are measured on the noisy stamp with ``sep``
as SExtractor measures them (Kron factor 2.5, minimum radius 3.5 pixels; radius holding
half of the AUTO flux), so they mean what the COSMOS catalog columns mean (Leauthaud
et al. 2007).
"""

from __future__ import annotations

import functools
import math
from importlib import resources

import numpy as np

from . import scaling_relations as sr

#: Real COSMOS NOISE_VARIANCE values ((counts/s)^2 per pixel) are resampled from this
#: package table (GalSim's example COSMOS catalog + paltas 23.5 catalog, 110 galaxies).
NOISE_TABLES = ("real_galaxy_catalog_23.5_example.fits", "paltas_real_galaxy_catalog_23.5.fits")

#: Stamp side = STAMP_PER_RADIUS x (PSF-broadened major-axis half-light radius in pixels),
#: scattered by 0.1 dex, clipped to [MIN_STAMP, MAX_STAMP]: the real 23.5 stamps have
#: side/flux_radius between 4.6 and 9.5 (median 7.3) and sides of ~45 to ~250 pixels;
#: 5.2 gives the simulated stamps that median ratio to their measured flux_radius.
STAMP_PER_RADIUS = 5.2
MIN_STAMP = 45
MAX_STAMP = 250

#: Half-light radius (pixels) of the COSMOS ACS PSF, used only to size stamps.
PSF_HLR_PIXELS = 2.0

#: SExtractor MAG_AUTO parameters of the COSMOS ACS catalog (Leauthaud et al. 2007):
#: Kron factor and minimum radius (pixels); detection threshold (sigma) and minimum area.
KRON_FACTOR = 2.5
KRON_MIN_RADIUS = 3.5
DETECT_THRESH = 1.5
DETECT_MINAREA = 5


def share_path(name: str):
    """Path of a file in the package data folder ``galsim_vae/share``."""
    return resources.files("galsim_vae") / "share" / name


@functools.lru_cache(maxsize=1)
def psf_library() -> tuple[np.ndarray, ...]:
    """The 100 real COSMOS HST F814W PSF images (0.03"/pixel, pixel response included),
    each normalised to unit sum."""
    from astropy.io import fits

    with fits.open(share_path("real_galaxy_PSF_images.fits")) as hdus:
        return tuple(np.asarray(h.data, dtype=np.float64) / float(np.sum(h.data)) for h in hdus)


@functools.lru_cache(maxsize=128)
def psf_profile(index: int):
    """The simulator's PSF ``index`` of :func:`psf_library` as a unit-flux GalSim profile
    (the image, pixel response included, interpolated at 0.03"/pixel); draw it with
    ``method="no_pixel"``."""
    import galsim

    return galsim.InterpolatedImage(galsim.Image(psf_library()[index], scale=sr.PIXEL_SCALE),
                                    flux=1.0)


@functools.lru_cache(maxsize=1)
def real_noise_variances() -> np.ndarray:
    """NOISE_VARIANCE of the real COSMOS galaxies in the package tables."""
    from astropy.table import Table

    return np.concatenate([np.asarray(Table.read(share_path(name))["NOISE_VARIANCE"], float)
                           for name in NOISE_TABLES])


@functools.lru_cache(maxsize=1)
def _cosmos_noise():
    import galsim

    return galsim.getCOSMOSNoise()


def _enclosed_sersic(r: np.ndarray, n: float, hlr: float) -> np.ndarray:
    """Fraction of a circular Sersic profile's flux inside radius r."""
    from scipy.special import gammainc, gammaincinv

    b = gammaincinv(2.0 * n, 0.5)
    return gammainc(2.0 * n, b * (np.asarray(r) / hlr) ** (1.0 / n))


def composite_hlr(bulge_fraction: float, bulge_n: float, bulge_hlr: float,
                  disk_hlr: float, disk_n: float = 1.0) -> float:
    """Half-light radius of a (circular) bulge + Sersic-``disk_n`` disk sum."""
    from scipy.optimize import brentq

    def excess(r):
        return (bulge_fraction * _enclosed_sersic(r, bulge_n, bulge_hlr)
                + (1.0 - bulge_fraction) * _enclosed_sersic(r, disk_n, disk_hlr) - 0.5)

    hi = max(bulge_hlr, disk_hlr)
    return float(brentq(excess, 1e-4 * hi, 10.0 * hi, xtol=1e-6 * hi))


def fit_single_sersic(bulge_fraction: float, bulge_n: float, bulge_hlr: float,
                      disk_hlr: float, disk_n: float = 1.0) -> tuple[float, float]:
    """Single-Sersic approximation (n, hlr) of a circular bulge + disk: least squares on
    the enclosed-flux curve between 0.1 and 4 composite half-light radii.  n is limited
    to GalSim's 0.3 <= n <= 6, as are the COSMOS ``sersicfit`` values."""
    from scipy.optimize import least_squares

    h = composite_hlr(bulge_fraction, bulge_n, bulge_hlr, disk_hlr, disk_n)
    r = h * np.geomspace(0.1, 4.0, 40)
    target = (bulge_fraction * _enclosed_sersic(r, bulge_n, bulge_hlr)
              + (1.0 - bulge_fraction) * _enclosed_sersic(r, disk_n, disk_hlr))

    def resid(p):
        return _enclosed_sersic(r, p[0], h * math.exp(p[1])) - target

    n0 = (disk_n + 3.0 * bulge_fraction if bulge_n >= 3.5
          else disk_n + bulge_fraction * (bulge_n - disk_n))
    sol = least_squares(resid, x0=[min(max(n0, 0.35), 5.9), 0.0],
                        bounds=([0.3, -1.5], [6.0, 1.5]))
    return float(sol.x[0]), float(h * math.exp(sol.x[1]))


def draw_truth(rng: np.random.Generator, mag: float) -> dict:
    """PSF-free truth parameters of one galaxy of total F814W magnitude ``mag``.

    Returns a dict of scalars: redshift, type, stellar mass, effective radius, bulge and
    disk (smooth + knots) fluxes in counts/s, circularised half-light radii in arcsec (as
    ``galsim.Sersic(half_light_radius=...)`` before ``shear(q=...)``), Sersic indices,
    axis ratios, position angle, knots.
    """
    z = float(sr.sample_redshifts(rng, np.array([mag]))[0])
    log_mass_early = float(sr.stellar_mass(mag, z, "early"))
    kind = "early" if rng.uniform() < float(sr.early_fraction(log_mass_early, z)) else "late"
    log_mass = float(sr.stellar_mass(mag, z, kind))
    r_eff_kpc = float(sr.effective_radius_kpc(log_mass, z, kind, rng))
    r_eff_major = float(sr.kpc_to_arcsec(r_eff_kpc, z))

    bt = sr.sample_bulge_fraction(rng, kind)
    bulge_n = sr.sample_bulge_sersic_index(rng, kind)
    disk_n = sr.sample_disk_sersic_index(rng)
    bulge_q = sr.sample_spheroid_axis_ratio(rng)
    disk_q = bulge_q if kind == "early" and rng.uniform() < 0.5 else sr.sample_disk_axis_ratio(rng)
    if kind == "early":
        disk_q = max(disk_q, 0.35)
    beta = float(rng.uniform(0.0, math.pi))
    q_eff = bt * bulge_q + (1.0 - bt) * disk_q
    hlr_target = r_eff_major * math.sqrt(q_eff)
    size_ratio = sr.sample_bulge_to_disk_size(rng)
    if bt <= 0.0:
        disk_hlr, bulge_hlr = hlr_target, size_ratio * hlr_target
    else:
        unit = composite_hlr(bt, bulge_n, size_ratio, 1.0, disk_n)
        disk_hlr = hlr_target / unit
        bulge_hlr = size_ratio * disk_hlr
    n_knots, knot_fraction = sr.sample_knots(rng, kind, z)
    if bt >= 1.0:
        n_knots, knot_fraction = 0, 0.0
    flux = 10.0 ** (-0.4 * (mag - sr.ZERO_POINT))
    disk_total = (1.0 - bt) * flux
    return {
        "zphot": z, "kind": kind, "log_mstar": log_mass, "r_eff_kpc": r_eff_kpc,
        "r_eff_major": r_eff_major, "mag": float(mag), "flux": flux,
        "bulge_fraction": bt, "bulge_flux": bt * flux,
        "disk_flux": disk_total * (1.0 - knot_fraction), "knot_flux": disk_total * knot_fraction,
        "n_knots": n_knots, "bulge_n": bulge_n, "disk_n": disk_n, "bulge_hlr": bulge_hlr, "disk_hlr": disk_hlr,
        "hlr": hlr_target, "bulge_q": bulge_q, "disk_q": disk_q, "beta": beta,
    }


def build_profiles(truth: dict, knot_seed: int):
    """GalSim profiles (smooth bulge + disk, knots or None) of a truth dict."""
    import galsim

    beta = truth["beta"] * galsim.radians
    parts = []
    if truth["bulge_flux"] > 0:
        if truth["bulge_n"] == 4.0:
            bulge = galsim.DeVaucouleurs(half_light_radius=truth["bulge_hlr"],
                                         flux=truth["bulge_flux"])
        else:
            bulge = galsim.Sersic(truth["bulge_n"], half_light_radius=truth["bulge_hlr"],
                                  flux=truth["bulge_flux"])
        parts.append(bulge.shear(q=truth["bulge_q"], beta=beta))
    if truth["disk_flux"] > 0:
        disk = galsim.Sersic(truth.get("disk_n", 1.0), half_light_radius=truth["disk_hlr"],
                             flux=truth["disk_flux"])
        parts.append(disk.shear(q=truth["disk_q"], beta=beta))
    smooth = parts[0] if len(parts) == 1 else galsim.Add(parts)
    knots = None
    if truth["n_knots"] > 0 and truth["knot_flux"] > 0:
        profile = galsim.Exponential(half_light_radius=truth["disk_hlr"], flux=truth["knot_flux"])
        knots = galsim.RandomKnots(truth["n_knots"], profile=profile,
                                   rng=galsim.BaseDeviate(knot_seed))
        knots = knots.shear(q=truth["disk_q"], beta=beta)
    return smooth, knots


def stamp_shape(rng: np.random.Generator, truth: dict) -> tuple[int, int]:
    """(nx, ny) of the postage stamp: side from the PSF-broadened major-axis half-light
    radius (see STAMP_PER_RADIUS); like the real stamps, ny differs from nx by up to 1."""
    bt = truth["bulge_fraction"]
    q = max(bt * truth["bulge_q"] + (1 - bt) * truth["disk_q"], 0.05)
    r_pix = math.hypot(truth["hlr"] / math.sqrt(q) / sr.PIXEL_SCALE, PSF_HLR_PIXELS)
    # de Vaucouleurs wings: up to twice the side for pure bulges, so the stamp keeps >~80%
    # of the light (a real-catalog-like truncation; stamp_flux records what is kept)
    wings = 1.0 + (truth["bulge_fraction"] if truth["bulge_n"] >= 4.0 else 0.0)
    side = STAMP_PER_RADIUS * wings * r_pix * 10.0 ** rng.normal(0.0, 0.1)
    nx = int(np.clip(round(side), MIN_STAMP, MAX_STAMP))
    ny = int(np.clip(nx + rng.integers(-1, 2), MIN_STAMP, MAX_STAMP))
    return nx, ny


def measure_auto(image: np.ndarray, sigma: float) -> dict:
    """SExtractor-like MAG_AUTO flux and FLUX_RADIUS of the central object with ``sep``.

    Returns dict with ``flux_auto`` (counts/s), ``flux_radius`` (pixels, radius holding
    half of ``flux_auto``), ``x``, ``y`` (0-based pixel centre), ``detected`` (bool).
    If nothing is detected, a circular aperture of KRON_MIN_RADIUS x 2 at the stamp
    centre is used and ``detected`` is False.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float64)
    ny, nx = data.shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    try:
        objects = sep.extract(data, DETECT_THRESH, err=sigma, minarea=DETECT_MINAREA,
                              deblend_cont=1.0, clean=False)
    except Exception:  # sep raises on pathological stamps (e.g. too many pixels active)
        objects = []
    if len(objects) == 0:
        r = 2 * KRON_MIN_RADIUS
        flux, _, _ = sep.sum_circle(data, [cx], [cy], [r])
        fr, _ = sep.flux_radius(data, [cx], [cy], [3 * r], 0.5, normflux=flux)
        return {"flux_auto": float(flux[0]), "flux_radius": float(fr[0]), "x": cx, "y": cy,
                "detected": False}
    k = int(np.argmin((objects["x"] - cx) ** 2 + (objects["y"] - cy) ** 2))
    o = objects[k:k + 1]
    x, y, a, b, theta = o["x"], o["y"], o["a"], o["b"], np.clip(o["theta"], -np.pi / 2, np.pi / 2)
    kron, _ = sep.kron_radius(data, x, y, a, b, theta, 6.0)
    if kron[0] * math.sqrt(a[0] * b[0]) < KRON_MIN_RADIUS or not np.isfinite(kron[0]):
        flux, _, _ = sep.sum_circle(data, x, y, [KRON_MIN_RADIUS])
    else:
        flux, _, _ = sep.sum_ellipse(data, x, y, a, b, theta, KRON_FACTOR * kron, subpix=1)
    rmax = max(6.0 * a[0], 3 * KRON_MIN_RADIUS)
    fr, _ = sep.flux_radius(data, x, y, [rmax], 0.5, normflux=flux, subpix=5)
    return {"flux_auto": float(flux[0]), "flux_radius": float(fr[0]), "x": float(x[0]),
            "y": float(y[0]), "detected": True}


def gaussian_snr(image, variance: float) -> float:
    """S/N of the galaxy with its adaptive-moments elliptical Gaussian weight
    (the GREAT3 ``sn_ellip_gauss`` of the COSMOS selection file; -10 when HSM fails)."""
    import galsim

    res = galsim.hsm.FindAdaptiveMom(image, strict=False)
    if res.moments_status != 0 or res.moments_sigma <= 0:
        return -10.0
    weight = galsim.Gaussian(sigma=res.moments_sigma * image.scale, flux=1.0)
    weight = weight.shear(res.observed_shape)
    w = weight.drawImage(nx=image.array.shape[1], ny=image.array.shape[0], scale=image.scale,
                         method="no_pixel",
                         offset=res.moments_centroid - image.true_center).array
    return float(np.sum(w * image.array) / math.sqrt(variance * np.sum(w * w)))


#: Truth magnitudes are drawn up to the sample limit + MAG_MARGIN; the sample keeps the
#: galaxies whose *measured* mag_auto is brighter than the limit, as for the real samples.
MAG_MARGIN = 0.5

#: COSMOS ACS field (deg): RA and Dec ranges of the simulated positions (Scoville et al. 2007).
COSMOS_RA = (149.41, 150.83)
COSMOS_DEC = (1.49, 2.91)


def simulate_galaxy(index: int, seed: int, mag_limit: float) -> dict | None:
    """Simulate candidate galaxy ``index`` of a survey limited at F814W ``mag_limit``.

    Every random number comes from ``numpy.random.SeedSequence([seed, index])``, so the
    result depends only on (seed, index), never on the process that computes it.

    Returns:
        None if the measured ``mag_auto`` is not brighter than ``mag_limit`` (the galaxy
        is not in the flux-limited sample) or nothing was detected; otherwise a dict with
        ``truth`` (dict), ``image`` (float32 array), ``psf`` (float64 unit-sum array),
        and the measured/catalog scalars.
    """
    import galsim

    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    mag = float(sr.sample_magnitudes(rng, 1, mag_limit + MAG_MARGIN)[0])
    truth = draw_truth(rng, mag)
    knot_seed, noise_seed = (int(s) for s in rng.integers(1, 2**31 - 1, size=2))
    psf_index = int(rng.integers(len(psf_library())))
    variance = float(rng.choice(real_noise_variances()))
    nx, ny = stamp_shape(rng, truth)
    ra, dec = float(rng.uniform(*COSMOS_RA)), float(rng.uniform(*COSMOS_DEC))

    smooth, knots = build_profiles(truth, knot_seed)
    psf = psf_profile(psf_index)
    model = galsim.Convolve(smooth, psf).drawImage(nx=nx, ny=ny, scale=sr.PIXEL_SCALE,
                                                   method="no_pixel")
    noiseless = model.copy()
    if knots is not None:
        noiseless += galsim.Convolve(knots, psf).drawImage(nx=nx, ny=ny, scale=sr.PIXEL_SCALE,
                                                           method="no_pixel")
    image = noiseless.copy()
    noise = _cosmos_noise().withVariance(variance).copy(rng=galsim.BaseDeviate(noise_seed))
    image.addNoise(noise)

    sigma = math.sqrt(variance)
    meas = measure_auto(image.array, sigma)
    if not meas["detected"] or meas["flux_auto"] <= 0:
        return None
    mag_auto = sr.ZERO_POINT - 2.5 * math.log10(meas["flux_auto"])
    if mag_auto >= mag_limit:
        return None

    sersic_n, sersic_hlr = fit_single_sersic(truth["bulge_fraction"], truth["bulge_n"],
                                             truth["bulge_hlr"], truth["disk_hlr"],
                                             truth["disk_n"])
    stamp_flux = float(np.sum(image.array, dtype=np.float64))
    residual = image.array - model.array
    mad = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    noise_field = image.array - noiseless.array
    return {
        "truth": truth, "image": image.array.astype(np.float32), "psf": psf_library()[psf_index],
        "psf_index": psf_index, "noise_variance": variance,
        "noise_mean": float(np.mean(noise_field)), "stamp_flux": stamp_flux,
        "noiseless_stamp_flux": float(np.sum(noiseless.array, dtype=np.float64)),
        "mag_auto": mag_auto, "flux_radius": meas["flux_radius"],
        "centroid": (meas["x"] + 1.0, meas["y"] + 1.0),
        "sersic_n": sersic_n, "sersic_hlr": sersic_hlr, "fit_mad": mad,
        "sn_ellip_gauss": gaussian_snr(image, variance),
        "model_stamp_flux": float(np.sum(model.array, dtype=np.float64)),
        "peak": float(np.max(image.array)), "shape": (nx, ny),
        "knot_seed": knot_seed, "noise_seed": noise_seed, "ra": ra, "dec": dec,
        "candidate": index,
    }
