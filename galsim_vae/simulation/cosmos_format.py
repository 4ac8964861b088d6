"""Writers for GalSim's COSMOS catalog format (``galsim.COSMOSCatalog`` /
``galsim.RealGalaxyCatalog``), as used by the real I<23.5 and I<25.2 training samples
(Mandelbaum et al. 2012, 2014):

- ``real_galaxy_catalog_<sample>.fits``: IDENT, RA, DEC, MAG, BAND, WEIGHT, GAL_FILENAME,
  PSF_FILENAME, GAL_HDU, PSF_HDU, PIXEL_SCALE, NOISE_MEAN, NOISE_VARIANCE, NOISE_FILENAME,
  stamp_flux;
- ``real_galaxy_catalog_<sample>_fits.fits``: the parametric fits (IDENT, mag_auto,
  flux_radius, zphot, sersicfit[8], bulgefit[16], fit_status[5], fit_mad_s, fit_mad_b,
  fit_dvc_btt, use_bulgefit, viable_sersic, hlr[3], flux[4]);
- ``real_galaxy_catalog_<sample>_selection.fits``: IDENT, dmag, sn_ellip_gauss,
  min_mask_dist_pixels, average_mask_adjacent_pixel_count, peak_image_pixel_count;
- image files ``real_galaxy_images_<sample>_n<k>.fits`` and PSF files
  ``real_galaxy_PSF_images_<sample>_n<k>.fits``, one image per HDU (HDU 0 is the first),
  at most FILE_HDUS images per file;
- the noise correlation function ``acs_I_unrot_sci_20_cf.fits`` (RealGalaxyCatalog looks
  for NOISE_FILENAME in the catalog folder).

Parameter conventions (galsim/galaxy_sample.py ``_buildParametric``): ``sersicfit`` =
[I_e (counts/s/pixel at the half-light radius), r_e along the major axis (0.03" pixels),
n, q, boxiness (0), x0, y0 (pixels), phi (radians)]; ``bulgefit`` = the same 8 numbers for
the exponential disk, then for the bulge; ``hlr`` = [Sersic, bulge, disk] circularised
half-light radii (arcsec) = 0.03 r_e sqrt(q); ``flux`` = [Sersic, bulge, disk, bulge+disk]
in counts/s; bulge/disk entries of ``hlr``/``flux`` are 0 when ``use_bulgefit`` is 0.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

#: Largest number of HDUs per galaxy/PSF image file (the real samples use 1000).
FILE_HDUS = 1000

#: Name of the COSMOS F814W noise correlation function file shipped with GalSim.
NOISE_FILE = "acs_I_unrot_sci_20_cf.fits"

#: Samples and their F814W (MAG_AUTO) limits.
SAMPLES = {"25.2": 25.2, "23.5": 23.5}


def catalog_name(sample: str) -> str:
    """File name of the main catalog of ``sample`` ('25.2' or '23.5')."""
    return f"real_galaxy_catalog_{sample}.fits"


def image_file_name(sample: str, number: int) -> str:
    """Name of galaxy image file ``number`` (1-based)."""
    return f"real_galaxy_images_{sample}_n{number}.fits"


def psf_file_name(sample: str, number: int) -> str:
    """Name of PSF image file ``number`` (1-based)."""
    return f"real_galaxy_PSF_images_{sample}_n{number}.fits"


def write_image_file(path: str | os.PathLike, images: list[np.ndarray], dtype) -> None:
    """Write ``images`` to one FITS file, image i in HDU i (HDU 0 is the primary)."""
    from astropy.io import fits

    hdus = [fits.PrimaryHDU(np.asarray(images[0], dtype=dtype))]
    hdus += [fits.ImageHDU(np.asarray(im, dtype=dtype)) for im in images[1:]]
    fits.HDUList(hdus).writeto(path)


def copy_noise_file(out_dir: str | os.PathLike) -> Path:
    """Copy GalSim's COSMOS noise correlation function file into ``out_dir``."""
    import galsim

    target = Path(out_dir) / NOISE_FILE
    shutil.copyfile(os.path.join(galsim.meta_data.share_dir, NOISE_FILE), target)
    return target


def sersic_intensity(flux: float, n: float, hlr_major_pixels: float, q: float) -> float:
    """Surface brightness at the half-light radius (flux units per pixel) of an
    elliptical Sersic profile of total ``flux``, index ``n``, major-axis half-light radius
    ``hlr_major_pixels`` and axis ratio ``q``:
    flux = 2 pi n e^b b^(-2n) Gamma(2n) I_e r_e^2 q."""
    from scipy.special import gamma, gammaincinv

    b = gammaincinv(2.0 * n, 0.5)
    norm = 2.0 * math.pi * n * math.exp(b) * b ** (-2.0 * n) * gamma(2.0 * n)
    return flux / (norm * hlr_major_pixels**2 * q)


def _component(flux: float, n: float, hlr_arcsec: float, q: float, x0: float, y0: float,
               phi: float, pixel_scale: float) -> list[float]:
    r_major = hlr_arcsec / math.sqrt(q) / pixel_scale
    return [sersic_intensity(flux, n, r_major, q), r_major, n, q, 0.0, x0, y0, phi]


def parametric_row(rec: dict, pixel_scale: float) -> dict:
    """One row of the ``_fits`` catalog from a simulated galaxy record.

    ``bulgefit`` / ``use_bulgefit``: the truth bulge and disk (knot flux counted in the
    disk); ``use_bulgefit`` is 1 when the bulge is de Vaucouleurs (GalSim's bulge model)
    with B/T >= 0.05.  ``sersicfit``: the single-Sersic approximation of the truth
    (:func:`galsim_vae.simulation.galaxy.fit_single_sersic`) with the flux-weighted
    axis ratio.  ``fit_mad_s`` and ``fit_mad_b`` are both the robust RMS (1.4826 MAD) of
    the stamp minus the PSF-convolved smooth bulge+disk truth (noise + knots).
    ``fit_status`` is 1 (success) for both fits."""
    t = rec["truth"]
    x0, y0 = rec["centroid"]
    bt = t["bulge_fraction"]
    q_sersic = bt * t["bulge_q"] + (1.0 - bt) * t["disk_q"]
    disk_flux = t["disk_flux"] + t["knot_flux"]
    use_bulgefit = int(t["bulge_n"] == 4.0 and 0.05 <= bt)
    sersicfit = _component(t["flux"], rec["sersic_n"], rec["sersic_hlr"], q_sersic, x0, y0,
                           t["beta"], pixel_scale)
    # GalSim's bulge + disk model has an exponential disk (n = 1 in ``bulgefit``)
    disk_pars = _component(max(disk_flux, 1e-30), 1.0, t["disk_hlr"], t["disk_q"], x0, y0,
                           t["beta"], pixel_scale)
    bulge_pars = _component(max(t["bulge_flux"], 1e-30), t["bulge_n"], t["bulge_hlr"],
                            t["bulge_q"], x0, y0, t["beta"], pixel_scale)
    if use_bulgefit:
        hlr = [rec["sersic_hlr"], t["bulge_hlr"], t["disk_hlr"]]
        flux = [t["flux"], t["bulge_flux"], disk_flux, t["bulge_flux"] + disk_flux]
    else:
        hlr = [rec["sersic_hlr"], 0.0, 0.0]
        flux = [t["flux"], 0.0, 0.0, 0.0]
    return {
        "IDENT": rec["ident"], "mag_auto": rec["mag_auto"], "flux_radius": rec["flux_radius"],
        "zphot": t["zphot"], "sersicfit": sersicfit, "bulgefit": disk_pars + bulge_pars,
        "fit_status": [1, 1, 1, 1, 1], "fit_mad_s": rec["fit_mad"], "fit_mad_b": rec["fit_mad"],
        "fit_dvc_btt": bt, "use_bulgefit": use_bulgefit, "viable_sersic": 1,
        "hlr": hlr, "flux": flux,
    }


def main_row(rec: dict, sample: str, pixel_scale: float) -> dict:
    """One row of the main catalog from a simulated galaxy record."""
    return {
        "IDENT": rec["ident"], "RA": rec["ra"], "DEC": rec["dec"], "MAG": rec["mag_auto"],
        "BAND": "F814W", "WEIGHT": 1.0,
        "GAL_FILENAME": image_file_name(sample, rec["file_number"]),
        "PSF_FILENAME": psf_file_name(sample, rec["file_number"]),
        "GAL_HDU": rec["hdu"], "PSF_HDU": rec["hdu"], "PIXEL_SCALE": pixel_scale,
        "NOISE_MEAN": rec["noise_mean"], "NOISE_VARIANCE": rec["noise_variance"],
        "NOISE_FILENAME": NOISE_FILE, "stamp_flux": rec["stamp_flux"],
    }


def selection_row(rec: dict) -> dict:
    """One row of the ``_selection`` file.  The simulated stamps hold one galaxy and no
    masked neighbours: ``min_mask_dist_pixels`` is the distance from the centroid to the
    nearest stamp edge and ``average_mask_adjacent_pixel_count`` is 0.  ``dmag`` is the
    magnitude of the smooth PSF-convolved bulge+disk model in the stamp minus that of
    ``stamp_flux``."""
    x0, y0 = rec["centroid"]
    nx, ny = rec["shape"]
    if rec["stamp_flux"] > 0 and rec["model_stamp_flux"] > 0:
        dmag = -2.5 * math.log10(rec["model_stamp_flux"] / rec["stamp_flux"])
    else:
        dmag = 99.0
    return {
        "IDENT": rec["ident"], "dmag": dmag, "sn_ellip_gauss": rec["sn_ellip_gauss"],
        "min_mask_dist_pixels": float(min(x0 - 0.5, nx + 0.5 - x0, y0 - 0.5, ny + 0.5 - y0)),
        "average_mask_adjacent_pixel_count": 0.0,
        "peak_image_pixel_count": rec["peak"],
    }


#: Truth-table columns (name, unit, description).
TRUTH_COLUMNS = (
    ("IDENT", "", "catalog identifier"),
    ("zphot", "", "true redshift"),
    ("mag", "mag", "true total F814W AB magnitude (zero point 25.94 for counts/s)"),
    ("flux", "count/s", "true total flux"),
    ("galaxy_type", "", "early (quiescent) or late (star-forming)"),
    ("log_mstar", "", "log10 stellar mass in solar masses (Chabrier IMF)"),
    ("r_eff_kpc", "kpc", "semi-major-axis effective radius (van der Wel et al. 2014)"),
    ("hlr", "arcsec", "circularised half-light radius of bulge + disk"),
    ("bulge_fraction", "", "bulge-to-total flux ratio"),
    ("bulge_flux", "count/s", "bulge flux"),
    ("disk_flux", "count/s", "smooth Sersic disk flux (without knots)"),
    ("knot_flux", "count/s", "flux in star-forming knots (RandomKnots)"),
    ("n_knots", "", "number of knots"),
    ("bulge_n", "", "bulge Sersic index (4 = de Vaucouleurs)"),
    ("disk_n", "", "disk Sersic index (1 = exponential)"),
    ("bulge_hlr", "arcsec", "bulge circularised half-light radius"),
    ("disk_hlr", "arcsec", "disk circularised half-light radius"),
    ("bulge_q", "", "bulge axis ratio"),
    ("disk_q", "", "disk axis ratio"),
    ("beta", "rad", "position angle of the major axes from the x axis"),
    ("bulge_g1", "", "bulge reduced shear g1 (GalSim shear(q, beta))"),
    ("bulge_g2", "", "bulge reduced shear g2"),
    ("disk_g1", "", "disk reduced shear g1"),
    ("disk_g2", "", "disk reduced shear g2"),
    ("psf_index", "", "HDU of the real PSF in galsim_vae/share/real_galaxy_PSF_images.fits"),
    ("noiseless_stamp_flux", "count/s", "flux of the noiseless PSF-convolved stamp"),
    ("knot_seed", "", "seed of galsim.BaseDeviate for RandomKnots"),
    ("noise_seed", "", "seed of galsim.BaseDeviate for the correlated noise"),
)


def _reduced_shear(q: float, beta: float) -> tuple[float, float]:
    g = (1.0 - q) / (1.0 + q)
    return g * math.cos(2.0 * beta), g * math.sin(2.0 * beta)


def truth_row(rec: dict) -> dict:
    """One row of ``truth.fits``: the PSF-free parameters of a simulated galaxy."""
    t = rec["truth"]
    bg1, bg2 = _reduced_shear(t["bulge_q"], t["beta"])
    dg1, dg2 = _reduced_shear(t["disk_q"], t["beta"])
    row = {k: t[k] for k in ("zphot", "mag", "flux", "log_mstar", "r_eff_kpc", "hlr",
                             "bulge_fraction", "bulge_flux", "disk_flux", "knot_flux", "n_knots",
                             "bulge_n", "disk_n", "bulge_hlr", "disk_hlr", "bulge_q", "disk_q",
                             "beta")}
    row.update(IDENT=rec["ident"], galaxy_type=t["kind"], bulge_g1=bg1, bulge_g2=bg2,
               disk_g1=dg1, disk_g2=dg2, psf_index=rec["psf_index"],
               noiseless_stamp_flux=rec["noiseless_stamp_flux"], knot_seed=rec["knot_seed"],
               noise_seed=rec["noise_seed"])
    return {name: row[name] for name, _, _ in TRUTH_COLUMNS}


def write_table(path: str | os.PathLike, rows: list[dict], *, meta: dict | None = None,
                units: dict | None = None) -> None:
    """Write ``rows`` (dicts with the same keys, in order) as a FITS binary table."""
    from astropy.table import Table

    names = list(rows[0])
    table = Table({name: np.array([row[name] for row in rows]) for name in names})
    for name, unit in (units or {}).items():
        if unit:
            table[name].unit = unit
    if meta:
        table.meta.update(meta)
    table.write(path, format="fits")


def write_catalogs(out_dir: str | os.PathLike, sample: str, records: list[dict], *,
                   pixel_scale: float, meta: dict) -> None:
    """Write the main, ``_fits``, ``_selection`` catalogs and ``truth.fits``."""
    out_dir = Path(out_dir)
    base = catalog_name(sample)
    write_table(out_dir / base, [main_row(r, sample, pixel_scale) for r in records], meta=meta)
    write_table(out_dir / base.replace(".fits", "_fits.fits"),
                [parametric_row(r, pixel_scale) for r in records], meta=meta)
    write_table(out_dir / base.replace(".fits", "_selection.fits"),
                [selection_row(r) for r in records], meta=meta)
    units = {name: unit for name, unit, _ in TRUTH_COLUMNS}
    write_table(out_dir / "truth.fits", [truth_row(r) for r in records], meta=meta, units=units)
