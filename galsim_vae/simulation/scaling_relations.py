"""Published scaling relations that set the simulated COSMOS galaxy population.

Every number that shapes the simulated survey lives here, next to the paper it comes
from.  The chain for one galaxy is

    F814W magnitude  (COSMOS ACS number counts, Leauthaud et al. 2007)
      -> redshift    (magnitude-dependent n(z) of i-limited COSMOS samples; LSST Science
                      Book 2009, eq. 3.8, from the COSMOS photo-z of Ilbert et al. 2009)
      -> stellar mass (distance modulus, K-correction from the CWW templates shipped with
                      GalSim, mass-to-light ratios of Bell et al. 2003)
      -> type       (quiescent/early vs star-forming/late: quenched fraction rising with
                      mass and falling with redshift, Peng et al. 2010; Muzzin et al. 2013)
      -> size       (size-mass-redshift relation of van der Wel et al. 2014)
      -> bulge fraction, bulge Sersic index, axis ratios, star-forming knots.

Units: magnitudes are AB in ACS F814W; radii in arcsec (angular) or kpc (physical);
masses in solar masses (Chabrier IMF); cosmology flat LambdaCDM with H0=70 km/s/Mpc,
Omega_m=0.3 (the cosmology of van der Wel et al. 2014).

The relations are approximations of the cited fits, not the papers' full posteriors;
:func:`galsim_vae.simulation.compare.compare_with_real` checks the result against the real
COSMOS parameter catalogs.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

#: AB zero point of COSMOS ACS F814W images in counts/s: mag = ZERO_POINT - 2.5 log10(flux).
#: GalSim documents 25.94 for its COSMOS training samples (galsim.COSMOSCatalog.getBandpass;
#: Koekemoer et al. 2007); the real catalogs agree: MAG ~ 25.94 - 2.5 log10(stamp_flux).
ZERO_POINT = 25.94

#: Pixel scale of the COSMOS ACS mosaics and of the GalSim training samples (arcsec).
PIXEL_SCALE = 0.03

#: Slope d log10 N / dm of the F814W galaxy counts for 20 < I < 25.5 (COSMOS ACS counts,
#: Leauthaud et al. 2007, ApJS 172, 219; consistent with the I-band counts compiled by
#: Metcalfe et al. 2001).  dN/dm is proportional to 10**(COUNT_SLOPE * m).
COUNT_SLOPE = 0.31

#: Brightest simulated magnitude (the real I<23.5 sample starts near F814W = 17).
BRIGHT_LIMIT = 17.0

#: Hubble constant (km/s/Mpc) and matter density of the adopted flat LambdaCDM cosmology.
H0 = 70.0
OMEGA_M = 0.3

#: Absolute AB magnitude of the Sun in ACS F814W (Willmer 2018, ApJS 236, 47: 4.52).
M_SUN_F814W = 4.52

#: log10 stellar mass-to-light ratio (solar units) in rest-frame I of red (early) and
#: blue (late) galaxies: Bell et al. 2003 (ApJS 149, 289) i-band colour relation
#: log(M/L)_i = -0.222 + 0.864 (g-r) at g-r = 0.75 and 0.45, converted from their
#: "diet Salpeter" to a Chabrier IMF (-0.093 dex).
LOG_ML = {"early": 0.33, "late": 0.07}

#: Evolution of log10(M/L) per unit redshift: stellar populations are younger at higher z.
#: Early types fade as d log(M/L_B)/dz ~ -0.55 (fundamental plane, van Dokkum & van der
#: Marel 2007, ApJ 655, 30); we adopt a slower -0.4 for rest-frame I and use it for both
#: types.
DLOG_ML_DZ = -0.4

#: van der Wel et al. 2014 (ApJ 788, 28), size-mass relation
#: R_eff/kpc = A (M*/5e10 Msun)^alpha (semi-major-axis effective radius, rest-frame
#: optical): log10 A at z = 0.25 (their Table 1), slope alpha, redshift evolution
#: R_eff ~ (1+z)^beta at fixed mass (abstract: -1.48 early, -0.75 late), intrinsic
#: scatter sigma (dex) of log R_eff.
VDW14 = {
    "early": {"log_a": 0.60, "alpha": 0.75, "beta": -1.48, "sigma": 0.11},
    "late": {"log_a": 0.86, "alpha": 0.22, "beta": -0.75, "sigma": 0.16},
}
#: Pivot mass of the van der Wel et al. 2014 relation (log10 Msun).
VDW14_PIVOT = math.log10(5e10)
#: Below 2e10 Msun the early-type relation flattens (van der Wel et al. 2014, Sect. 4:
#: alpha = 0.75 holds for M* > 2e10 Msun); there we use the late-type slope.
VDW14_EARLY_BREAK = math.log10(2e10)

#: Largest stellar mass (log10 Msun): the exponential cut-off of the COSMOS stellar mass
#: function (Ilbert et al. 2013, A&A 556, A55) makes more massive galaxies negligible.
MAX_LOG_MASS = 11.8

#: Intrinsic (edge-on) axis ratio of disks, q0 ~ 0.2 (e.g. Padilla & Strauss 2008,
#: MNRAS 388, 1321; Unterborn & Ryden 2008).
DISK_THICKNESS = 0.2


def sample_magnitudes(rng: np.random.Generator, n: int, faint_limit: float, *,
                      bright_limit: float = BRIGHT_LIMIT, slope: float = COUNT_SLOPE) -> np.ndarray:
    """Draw F814W magnitudes from power-law counts dN/dm ~ 10**(slope m).

    Parameters:
        rng:            numpy Generator.
        n:              number of magnitudes.
        faint_limit:    faintest magnitude (AB).
        bright_limit:   brightest magnitude (AB). [default: BRIGHT_LIMIT]
        slope:          d log10 N / dm. [default: COUNT_SLOPE (Leauthaud et al. 2007)]

    Returns:
        float array of AB magnitudes.
    """
    k = slope * math.log(10.0)
    u = rng.uniform(size=n)
    lo, hi = math.exp(k * bright_limit), math.exp(k * faint_limit)
    return np.log(lo + u * (hi - lo)) / k


def redshift_scale(mag: np.ndarray | float, *, slope: float = COUNT_SLOPE) -> np.ndarray:
    """Scale z0 of p(z|m) ~ z^2 exp(-z/z0) at F814W magnitude ``mag``.

    The LSST Science Book (2009, eq. 3.8; calibrated on COSMOS photo-z, Ilbert et al. 2009)
    gives z0 = 0.0417 i - 0.744 for a sample limited at magnitude i (median z = 2.67 z0).
    For counts ~10**(slope m) the galaxies of a sample limited at i have mean magnitude
    i - 1/(slope ln 10), so the galaxies *at* magnitude m have
    z0(m) = 0.0417 (m + 1/(slope ln 10)) - 0.744.  Floored at 0.02 (median z ~ 0.05, the
    lowest redshifts of the real I<23.5 sample).
    """
    shift = 1.0 / (slope * math.log(10.0))
    return np.maximum(0.0417 * (np.asarray(mag, dtype=float) + shift) - 0.744, 0.02)


def sample_redshifts(rng: np.random.Generator, mag: np.ndarray) -> np.ndarray:
    """Draw redshifts from p(z|m) ~ z^2 exp(-z/z0(m)) (see :func:`redshift_scale`),
    limited to 0.02 <= z <= 4."""
    z0 = redshift_scale(mag)
    z = rng.gamma(3.0, z0)
    return np.clip(z, 0.02, 4.0)


@functools.lru_cache(maxsize=1)
def _distance_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Redshift grid, distance modulus (mag) and angular-diameter distance (kpc)."""
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=H0, Om0=OMEGA_M)
    z = np.linspace(0.005, 6.0, 1200)
    dm = cosmo.distmod(z).value
    da = cosmo.angular_diameter_distance(z).to("kpc").value
    return z, dm, da


def distance_modulus(z: np.ndarray | float) -> np.ndarray:
    """Distance modulus (mag) in the adopted cosmology."""
    grid, dm, _ = _distance_tables()
    return np.interp(z, grid, dm)


def kpc_to_arcsec(r_kpc: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    """Angle (arcsec) subtended by a physical length ``r_kpc`` (kpc) at redshift ``z``."""
    grid, _, da = _distance_tables()
    return np.asarray(r_kpc) / np.interp(z, grid, da) * (180.0 / math.pi * 3600.0)


def _read_table(path: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(path, comments="#")
    return data[:, 0], data[:, 1]


@functools.lru_cache(maxsize=1)
def _kcorrection_tables() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """K-corrections of the CWW E and Scd templates (Coleman, Wu & Weedman 1980, extended
    by Bolzonella et al. 2000; shipped with GalSim) in ACS F814W, on a redshift grid."""
    import galsim

    share = galsim.meta_data.share_dir
    wave_t, thr = _read_table(os.path.join(share, "bandpasses", "ACS_wfc_F814W.dat"))  # nm
    grid = np.linspace(0.0, 4.0, 201)
    tables = {}
    for kind, name in (("early", "CWW_E_ext_more.sed"), ("late", "CWW_Scd_ext_more.sed")):
        wave_s, flam = _read_table(os.path.join(share, "SEDs", name))  # Angstrom, f_lambda
        wave_s = wave_s / 10.0  # nm

        def band_integral(shift: float) -> float:
            # Hogg et al. 2002 eq. 13 with L_nu ~ f_lambda lambda^2, d(nu)/nu = d(lambda)/lambda
            lam_rest = wave_t / shift
            lnu = np.interp(lam_rest, wave_s, flam) * lam_rest**2
            return shift * np.trapezoid(lnu * thr / wave_t, wave_t)

        ref = band_integral(1.0)
        k = np.array([-2.5 * math.log10(band_integral(1.0 + z) / ref) for z in grid])
        tables[kind] = (grid, k)
    return tables


def kcorrection(z: np.ndarray | float, kind: str) -> np.ndarray:
    """F814W-to-F814W K-correction (mag) at redshift ``z`` for ``kind`` 'early' or 'late'
    (CWW E / Scd templates): m_obs = M_rest + DM(z) + K(z)."""
    grid, k = _kcorrection_tables()[kind]
    return np.interp(z, grid, k)


def stellar_mass(mag: np.ndarray, z: np.ndarray, kind: str) -> np.ndarray:
    """log10 stellar mass (Msun, Chabrier) of galaxies of F814W magnitude ``mag`` at ``z``.

    Rest-frame absolute magnitude M = m - DM(z) - K(z), then
    log M* = log(M/L) + DLOG_ML_DZ z - 0.4 (M - M_sun) with LOG_ML (Bell et al. 2003),
    DLOG_ML_DZ and M_SUN_F814W.
    """
    absolute = np.asarray(mag) - distance_modulus(z) - kcorrection(z, kind)
    return LOG_ML[kind] + DLOG_ML_DZ * np.asarray(z) - 0.4 * (absolute - M_SUN_F814W)


def early_fraction(log_mass: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Fraction of quiescent (early-type, bulge-dominated) galaxies at stellar mass and z.

    Mass quenching gives a red fraction 1 - exp(-M/M_q) with M_q ~ 10^10.6 Msun, the
    Schechter mass of star-forming galaxies (Peng et al. 2010, ApJ 721, 193); the quiescent
    fraction at fixed mass falls with redshift, by about a third from z ~ 0.35 to z ~ 1.25
    (Muzzin et al. 2013, ApJ 777, 18), which we model as ((1+z)/1.35)^-0.8.  No galaxy
    above MAX_LOG_MASS is early type (the stellar mass function cuts off there).
    """
    log_mass = np.asarray(log_mass, dtype=float)
    frac = (1.0 - np.exp(-10.0 ** (log_mass - 10.6))) * ((1.0 + np.asarray(z)) / 1.35) ** -0.8
    return np.where(log_mass > MAX_LOG_MASS, 0.0, np.clip(frac, 0.0, 1.0))


def effective_radius_kpc(log_mass: np.ndarray, z: np.ndarray, kind: str,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """Semi-major-axis effective radius (kpc) from van der Wel et al. 2014.

    log R = log A(0.25) + alpha (log M - log 5e10) + beta log10((1+z)/1.25) [+ N(0, sigma)]

    Parameters:
        log_mass:   log10 stellar mass (Msun).
        z:          redshift.
        kind:       'early' or 'late'.
        rng:        if given, add the intrinsic log-normal scatter.
    """
    p = VDW14[kind]
    log_mass = np.minimum(np.asarray(log_mass, dtype=float), MAX_LOG_MASS)
    if kind == "early":
        # broken power law: late-type slope below the 2e10 Msun break
        dm = np.where(log_mass > VDW14_EARLY_BREAK,
                      log_mass - VDW14_PIVOT,
                      (VDW14_EARLY_BREAK - VDW14_PIVOT)
                      + VDW14["late"]["alpha"] / p["alpha"] * (log_mass - VDW14_EARLY_BREAK))
    else:
        dm = log_mass - VDW14_PIVOT
    log_r = p["log_a"] + p["alpha"] * dm + p["beta"] * np.log10((1.0 + np.asarray(z)) / 1.25)
    if rng is not None:
        log_r = log_r + rng.normal(0.0, p["sigma"], size=np.shape(log_r))
    return 10.0**log_r


def sample_bulge_fraction(rng: np.random.Generator, kind: str) -> float:
    """Bulge-to-total flux ratio B/T in F814W.

    Early types are bulge-dominated (B/T = 0.5 + 0.5 Beta(2, 1.5)); late types have small
    bulges (B/T = 0.45 Beta(0.9, 4)) and 25% are pure disks, as in bulge+disk
    decompositions of HST galaxies to z ~ 1 (Simard et al. 2002, ApJS 142, 1;
    Lackner & Gunn 2012, MNRAS 421, 2277).
    """
    if kind == "early":
        return float(0.5 + 0.5 * rng.beta(2.0, 1.5))
    if rng.uniform() < 0.25:
        return 0.0
    return float(0.45 * rng.beta(0.9, 4.0))


def sample_bulge_sersic_index(rng: np.random.Generator, kind: str) -> float:
    """Bulge Sersic index: de Vaucouleurs (n=4) for early types and half the late types
    (classical bulges); the other late-type bulges are pseudo-bulges with 1 <= n <= 2.5
    (Fisher & Drory 2008, AJ 136, 773: pseudo-bulges have n < 2), on a 0.5 grid so that
    GalSim can reuse its Sersic tables."""
    if kind == "early" or rng.uniform() < 0.5:
        return 4.0
    return float(rng.choice([1.0, 1.5, 2.0, 2.5]))


#: Disk Sersic index: log-normal, median DISK_N_MEDIAN, DISK_N_SCATTER dex, clipped to
#: [DISK_N_MIN, DISK_N_MAX] and rounded to DISK_N_STEP (so GalSim reuses its Sersic tables).
DISK_N_MEDIAN = 0.85
DISK_N_SCATTER = 0.15
DISK_N_MIN = 0.4
DISK_N_MAX = 2.0
DISK_N_STEP = 0.05


def sample_disk_sersic_index(rng: np.random.Generator) -> float:
    """Sersic index of the disk component.

    Disks are not all exponential: single-Sersic fits of disk-dominated galaxies scatter
    around n ~ 1 with many below it (Lange et al. 2016, MNRAS 462, 1470: disk n ~ 0.5-2),
    and the COSMOS F814W single-Sersic fits (GalSim's ``cosmos_sersics_sample_N300``
    table, shipped in ``share/``) have 5% of galaxies below n = 0.42 and a quarter below
    n = 0.82.  An exponential-only disk gives fitted n >= 1 for every galaxy.
    """
    n = 10.0 ** rng.normal(math.log10(DISK_N_MEDIAN), DISK_N_SCATTER)
    n = float(np.clip(n, DISK_N_MIN, DISK_N_MAX))
    return round(round(n / DISK_N_STEP) * DISK_N_STEP, 2)


def sample_disk_axis_ratio(rng: np.random.Generator) -> float:
    """Projected axis ratio of a thick disk at random inclination:
    q = sqrt(cos^2 i + q0^2 sin^2 i), cos i uniform, q0 = DISK_THICKNESS."""
    cos_i = rng.uniform()
    return float(math.sqrt(cos_i**2 + DISK_THICKNESS**2 * (1.0 - cos_i**2)))


def sample_spheroid_axis_ratio(rng: np.random.Generator) -> float:
    """Projected axis ratio of bulges and ellipticals: N(0.75, 0.15) clipped to
    [0.35, 1] (the distribution of SDSS ellipticals, Padilla & Strauss 2008)."""
    return float(np.clip(rng.normal(0.75, 0.15), 0.35, 1.0))


def sample_knots(rng: np.random.Generator, kind: str, z: float) -> tuple[int, float]:
    """Number of star-forming knots and the fraction of the disk flux they hold.

    Late types only.  Clumpy star formation becomes more common with redshift (Guo et al.
    2015, ApJ 800, 39: clumpy fractions rising from ~15-20% near z~0.5 to ~60% at z~2 for
    star-forming galaxies), so the knot flux fraction is uniform in
    [0, min(0.4, 0.1 + 0.15 z)].
    """
    if kind == "early":
        return 0, 0.0
    n_knots = int(rng.integers(10, 61))
    return n_knots, float(rng.uniform(0.0, min(0.4, 0.1 + 0.15 * z)))


def sample_bulge_to_disk_size(rng: np.random.Generator) -> float:
    """Ratio of bulge to disk half-light radius, log-normal around 0.4 (0.15 dex scatter):
    bulge r_e / disk scale length ~ 0.2-1 (Gadotti 2009, MNRAS 393, 1531), i.e.
    r_e,bulge / r_e,disk ~ 0.1-0.6."""
    return float(10.0 ** rng.normal(math.log10(0.4), 0.15))
