"""Compare a simulated COSMOS survey with real COSMOS parameter catalogs.

Quantities: ``mag_auto`` (F814W AB), ``flux_radius`` (0.03" pixels), ``zphot`` and the
single-Sersic index ``sersicfit[:, 2]`` of the ``_fits`` catalogs; ``.asc`` tables of
Sersic fits (``ident n_sersic half_light_radius |g|``, like GalSim's
``cosmos_sersics_sample_N300.asc``) give the Sersic index only.  For every quantity and
catalog: number of values, median, 16th and 84th percentiles, and the two-sample
Kolmogorov-Smirnov statistic and p-value of the real values against the simulated
values cut to the real catalog's magnitude limit (the real reference catalogs of the
package are I < 23.5 samples).  Because small real catalogs have their own magnitude
distribution (GalSim's 100-galaxy example stops at I = 22.5), real catalogs with
``mag_auto`` also get a *magnitude-matched* simulated sample: for each real galaxy the
MATCH_K simulated galaxies nearest in mag_auto; its rows compare like with like.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..io_utils import require_file

#: Quantities compared, in table order.
QUANTITIES = ("mag_auto", "flux_radius", "zphot", "sersic_n")

#: Simulated galaxies per real galaxy in the magnitude-matched samples.
MATCH_K = 5

#: Real I<23.5 reference catalogs shipped in galsim_vae/share (see its README.md).
REAL_REFERENCES = ("real_galaxy_catalog_23.5_example_fits.fits",
                   "paltas_real_galaxy_catalog_23.5_fits.fits",
                   "cosmos_sersics_sample_N300.asc")


def default_references() -> list[Path]:
    """Paths of the packaged real reference catalogs."""
    from .galaxy import share_path

    return [Path(str(share_path(name))) for name in REAL_REFERENCES]


def load_parameters(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the compared quantities from a ``_fits`` parameter catalog (FITS) or an
    ``.asc`` Sersic-fit table; missing quantities are absent from the dict.

    Raises:
        MissingInputError: the file does not exist.
        InputDataError: the file has none of the expected columns.
    """
    path = require_file(path, "parameter catalog")
    if path.suffix == ".asc":
        data = np.loadtxt(path, comments="#", ndmin=2)
        if data.shape[1] < 2:
            raise InputDataError(f"{str(path)!r}: expected columns 'ident n_sersic ...', "
                                 f"found {data.shape[1]} column(s)")
        return {"sersic_n": data[:, 1]}
    from astropy.table import Table

    try:
        table = Table.read(path, hdu=1)
    except Exception as err:  # astropy raises several types for non-FITS input
        raise InputDataError(f"{str(path)!r} is not a readable FITS table: {err}") from err
    out = {}
    for name in ("mag_auto", "flux_radius", "zphot"):
        if name in table.colnames:
            out[name] = np.asarray(table[name], dtype=float)
    if "sersicfit" in table.colnames:
        out["sersic_n"] = np.asarray(table["sersicfit"], dtype=float)[:, 2]
    if not out:
        raise InputDataError(f"{str(path)!r} has none of the columns mag_auto, flux_radius, "
                             "zphot, sersicfit: give a GalSim '_fits' parameter catalog")
    return out


def _valid(values: np.ndarray, quantity: str) -> np.ndarray:
    values = values[np.isfinite(values)]
    if quantity == "zphot":
        values = values[values >= 0]
    return values


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"n": 0, "median": np.nan, "q16": np.nan, "q84": np.nan}
    q16, med, q84 = np.percentile(values, [16, 50, 84])
    return {"n": len(values), "median": med, "q16": q16, "q84": q84}


def magnitude_matched(sim_mag: np.ndarray, real_mag: np.ndarray, k: int = MATCH_K) -> np.ndarray:
    """Indices of the ``k`` simulated galaxies nearest in magnitude to each real galaxy
    (with repetition across real galaxies): a simulated sample with the real magnitude
    distribution."""
    real_mag = real_mag[np.isfinite(real_mag)]
    order = np.argsort(sim_mag)
    sorted_mag = sim_mag[order]
    picks = []
    for m in real_mag:
        centre = int(np.searchsorted(sorted_mag, m))
        lo, hi = max(centre - k, 0), min(centre + k, len(sorted_mag))
        window = np.arange(lo, hi)
        nearest = window[np.argsort(np.abs(sorted_mag[window] - m), kind="stable")[:k]]
        picks.append(order[nearest])
    return np.concatenate(picks) if picks else np.array([], dtype=int)


def compare_with_real(simulated: str | os.PathLike,
                      references: list[str | os.PathLike] | None = None, *,
                      mag_cut: float = 23.5):
    """Compare a simulated ``_fits`` catalog with real parameter catalogs.

    Parameters:
        simulated:  the simulated survey's ``_fits`` catalog, or the survey folder.
        references: real ``_fits`` catalogs / ``.asc`` Sersic tables. [default: the
                    packaged I<23.5 references, :data:`REAL_REFERENCES`]
        mag_cut:    F814W limit of the real references: the KS tests use the simulated
                    galaxies with mag_auto < mag_cut. [default: 23.5]

    Returns:
        astropy Table with columns quantity, catalog, n, median, q16, q84, ks_d, ks_p
        (KS of each real catalog against the simulated mag_auto < mag_cut sample, and of
        each magnitude-matched row against the real catalog it matches; NaN elsewhere).
    """
    from astropy.table import Table
    from scipy.stats import ks_2samp

    simulated = Path(simulated)
    if simulated.is_dir():
        found = sorted(simulated.glob("real_galaxy_catalog_*_fits.fits"))
        if not found:
            raise InputDataError(f"folder {str(simulated)!r} has no "
                                 "real_galaxy_catalog_*_fits.fits")
        simulated = found[0]
    sim = load_parameters(simulated)
    if "mag_auto" not in sim:
        raise InputDataError(f"{str(simulated)!r} has no mag_auto column")
    bright = sim["mag_auto"] < mag_cut
    sim_cut = {k: v[bright] for k, v in sim.items()}
    refs = [Path(p) for p in (references if references else default_references())]
    real = [(p.name, load_parameters(p)) for p in refs]

    rows = []
    for quantity in QUANTITIES:
        if quantity not in sim:
            continue
        sim_all = _valid(sim[quantity], quantity)
        sim_bright = _valid(sim_cut[quantity], quantity)
        rows.append({"quantity": quantity, "catalog": f"simulated (all) {simulated.name}",
                     **_summary(sim_all), "ks_d": np.nan, "ks_p": np.nan})
        rows.append({"quantity": quantity, "catalog": f"simulated mag_auto<{mag_cut:g}",
                     **_summary(sim_bright), "ks_d": np.nan, "ks_p": np.nan})
        for name, values in real:
            if quantity not in values:
                continue
            v = _valid(values[quantity], quantity)
            ks = ks_2samp(v, sim_bright) if len(v) and len(sim_bright) else None
            rows.append({"quantity": quantity, "catalog": f"real {name}", **_summary(v),
                         "ks_d": ks.statistic if ks else np.nan,
                         "ks_p": ks.pvalue if ks else np.nan})
            if "mag_auto" in values and quantity != "mag_auto":
                picks = magnitude_matched(sim["mag_auto"], values["mag_auto"])
                matched = _valid(sim[quantity][picks], quantity)
                ks = ks_2samp(v, matched) if len(v) and len(matched) else None
                rows.append({"quantity": quantity, "catalog": f"  sim. mag-matched to {name}",
                             **_summary(matched), "ks_d": ks.statistic if ks else np.nan,
                             "ks_p": ks.pvalue if ks else np.nan})
    return Table(rows=rows, names=("quantity", "catalog", "n", "median", "q16", "q84",
                                   "ks_d", "ks_p"))


def format_comparison(table) -> str:
    """Plain-text rendering of :func:`compare_with_real`'s table."""
    lines = [f"{'quantity':<12} {'catalog':<62} {'n':>6} {'median':>8} {'q16':>8} "
             f"{'q84':>8} {'KS D':>6} {'KS p':>8}"]
    for row in table:
        lines.append(f"{row['quantity']:<12} {row['catalog'][:62]:<62} {row['n']:>6d} "
                     f"{row['median']:>8.3f} {row['q16']:>8.3f} {row['q84']:>8.3f} "
                     f"{row['ks_d']:>6.3f} {row['ks_p']:>8.2g}")
    return "\n".join(lines)
