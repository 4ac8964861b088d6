"""Which galaxies of a GalSim-format COSMOS catalog are used: the catalog tables read as
GalSim reads them, and GalSim's selection (``galsim.COSMOSCatalog`` exclusion levels and
magnitude cuts) with the repairs of :mod:`.cosmos_repair`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputDataError, MissingInputError
from . import cosmos_repair as repair


def _read_table(path: Path):
    """The first table HDU of ``path``: (FITS_rec, column names)."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdus:
            return hdus[1].data, list(hdus[1].columns.names)
    except (OSError, IndexError, ValueError, TypeError) as err:
        raise InputDataError(f"catalog {str(path)!r} is not a readable FITS table (corrupt or "
                             f"truncated?): {err}. Fix: download it again with "
                             "'galsim_download_cosmos'") from None


def _column(data, names, name: str, index: int | None = None) -> np.ndarray:
    """Float column ``name`` (any case) of a FITS_rec; NaN if absent.  ``index`` picks one
    entry of a vector column."""
    actual = repair.column_lookup(names, name)
    if actual is None:
        return np.full(len(data), np.nan)
    values = np.asarray(data[actual])
    if index is not None:
        values = values[:, index]
    return values.astype(np.float64)


def _idents(data, names) -> np.ndarray:
    """The IDENT column: int64 when integer, else stripped strings."""
    values = np.asarray(data[repair.column_lookup(names, "IDENT")])
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    return np.char.strip(values.astype(str))


@dataclass
class CosmosSelection:
    """The galaxies of a GalSim-format COSMOS catalog that GalSim's cuts keep.

    Attributes:
        catalog:     Path of the real-galaxy catalog.
        param_path:  Path of its ``_fits`` parameter catalog (which may not exist).
        sample:      '23.5', '25.2' or None.
        level:       Exclusion level applied (after any fallback).
        rgc:         GalSim's :class:`galsim.RealGalaxyCatalog` (repaired in memory).
        indices:     Catalog rows kept, in catalog order.
        idents:      IDENT of every catalog row.
        columns:     Per-row catalog quantities (zphot, mag_auto, flux_radius, ...).
        n_after_cuts: Rows GalSim's cuts keep (before ``max_galaxies``).
    """

    catalog: Path
    param_path: Path
    sample: str | None
    level: str
    rgc: Any
    indices: np.ndarray
    idents: np.ndarray
    columns: dict[str, np.ndarray]
    n_after_cuts: int


def _check_aligned(catalog, cat_data, cat_names, param_path, par_data, par_names) -> None:
    """The real-galaxy and ``_fits`` catalogs hold the same galaxies in the same order."""
    idents, par_idents = _idents(cat_data, cat_names), _idents(par_data, par_names)
    if len(idents) != len(par_idents) or np.any(idents != par_idents):
        n = min(len(idents), len(par_idents))
        bad = next((k for k in range(n) if idents[k] != par_idents[k]), n)
        raise InputDataError(
            f"catalogs {str(catalog)!r} ({len(idents)} rows) and {str(param_path)!r} "
            f"({len(par_idents)} rows) are not row-aligned (first difference at row {bad}); "
            "GalSim's COSMOSCatalog requires the same galaxies in the same order. Fix: use "
            "the files of one download")


def parameter_columns(par_data, par_names, cat_data, cat_names, *, param_path, catalog,
                      column_map: dict[str, str] | None, notes: list[str]) -> dict:
    """The data set's zphot, mag_auto and flux_radius of every catalog row.

    Each comes from the column of that name in the ``_fits`` catalog (any case), or from
    the column ``column_map`` names for it (looked up in the ``_fits`` catalog, then in
    the real-galaxy catalog); ``mag_auto`` falls back to the real-galaxy catalog's
    ``MAG`` (F814W, what GalSim's COSMOSCatalog uses).  A column found nowhere is NaN in
    the data set, with a note naming it and what it would have been used for.

    Raises:
        InputDataError: ``column_map`` names a data-set column that does not exist, or a
            catalog column that neither catalog has.
    """
    column_map = dict(column_map or {})
    unknown = sorted(set(column_map) - set(repair.PARAM_COLUMNS))
    if unknown:
        raise InputDataError(f"column map names {unknown}; the data-set columns that can be "
                             f"mapped are {list(repair.PARAM_COLUMNS)}")
    out = {}
    for name, purpose in repair.PARAM_COLUMNS.items():
        source = column_map.get(name)
        if source is not None:
            for data, names in ((par_data, par_names), (cat_data, cat_names)):
                if repair.column_lookup(names, source) is not None:
                    out[name] = _column(data, names, source)
                    break
            else:
                raise InputDataError(
                    f"--column {name}={source}: neither {str(param_path)!r} nor "
                    f"{str(catalog)!r} has a column {source!r}; they have "
                    f"{list(par_names)} and {list(cat_names)}")
            repair.warn(notes, f"{name} taken from catalog column {source!r}")
        elif repair.column_lookup(par_names, name) is not None:
            out[name] = _column(par_data, par_names, name)
        elif name == "mag_auto" and repair.column_lookup(cat_names, "MAG") is not None:
            out[name] = _column(cat_data, cat_names, "MAG")
            repair.warn(notes, f"{str(param_path)!r} has no mag_auto column: mag_auto taken "
                        f"from the MAG column of {str(catalog)!r} (map another with "
                        "--column mag_auto=COLUMN)")
        else:
            out[name] = np.full(len(par_data), np.nan)
            repair.warn(notes, f"{str(param_path)!r} has no {name} column ({purpose}): the "
                        f"data set's {name} is NaN; map a column of the catalog with "
                        f"--column {name}=COLUMN")
    return out


def select_galaxies(directory: str | os.PathLike, *, file_name: str | None = None,
                    sample: str | None = None, exclusion_level: str = "marginal",
                    cuts: dict[str, float] | None = None, max_galaxies: int | None = None,
                    notes: list[str] | None = None,
                    column_map: dict[str, str] | None = None) -> CosmosSelection:
    """Read a GalSim-format COSMOS catalog and apply GalSim's cuts.

    Checks the catalog and its ``_fits`` companion (columns, row alignment), falls back
    from an exclusion level whose selection file is missing (with a warning), and runs
    :class:`galsim.COSMOSCatalog` with ``exclusion_level`` and ``cuts`` (its ``min_hlr``,
    ``max_hlr``, ``min_flux``, ``max_flux`` keywords).  Without a ``_fits`` companion (an
    extension catalog with only the images, PSFs and noise), every galaxy that
    :class:`galsim.RealGalaxyCatalog` reads is kept (exclusion level 'none', with a
    warning) and the parameters come from the catalog's own columns.  ``notes`` collects the warnings.
    The parameter columns come from :func:`parameter_columns` (``column_map``).

    Raises:
        MissingInputError: the folder or catalog is missing.
        InputDataError: missing columns, misaligned catalogs, no galaxy passes the cuts,
            cuts asked of a catalog without its ``_fits`` companion.
    """
    import galsim

    notes = [] if notes is None else notes
    cuts = dict(cuts or {})
    catalog, sample = repair.resolve_catalog(directory, file_name, sample)
    cat_data, cat_names = _read_table(catalog)
    repair.require_columns(cat_names, repair.REQUIRED_CATALOG_COLUMNS, catalog,
                           "GalSim's RealGalaxyCatalog needs it")
    param_path = repair.companion_path(catalog, "fits")
    if param_path.is_file():
        par_data, par_names = _read_table(param_path)
        repair.require_columns(par_names, repair.REQUIRED_PARAM_COLUMNS, param_path,
                               "copied into the data set")
        _check_aligned(catalog, cat_data, cat_names, param_path, par_data, par_names)
        level = repair.effective_exclusion_level(catalog, exclusion_level, notes)
    else:
        # What galsim.RealGalaxyCatalog reads (images, PSFs, noise) is all that is needed:
        # the parameters come from the catalog itself or stay NaN (parameter_columns).
        par_data, par_names = cat_data, []
        level = "none"
        repair.warn(notes, f"parameter catalog {str(param_path)!r} does not exist: the "
                    "galaxies are read with GalSim's RealGalaxyCatalog, without the cuts "
                    f"that need fits (exclusion_level {exclusion_level!r} -> 'none'), and "
                    "zphot, mag_auto, flux_radius come from the catalog's own columns "
                    "(--column NAME=COLUMN) or are left out")
        if any(cuts.values()):
            raise InputDataError(
                f"the hlr/flux cuts {cuts} need the parameter catalog {str(param_path)!r}, "
                "which does not exist; run without them (they are GalSim COSMOSCatalog cuts "
                "on the Sersic fits)")
    if level in ("bad_fits", "marginal") or any(cuts.values()):
        repair.require_columns(par_names, repair.FIT_CUT_COLUMNS, param_path,
                               f"GalSim's exclusion_level={level!r} and hlr/flux cuts use it; "
                               "exclusion_level='none' without cuts does not")
    if level in ("bad_stamp", "marginal"):
        repair.require_columns(cat_names, ("stamp_flux",), catalog,
                               f"GalSim's exclusion_level={level!r} cuts on it")
    try:
        if par_names:
            cosmos = galsim.COSMOSCatalog(file_name=catalog.name, dir=str(catalog.parent),
                                          exclusion_level=level, **cuts)
            real_cat, kept = cosmos.real_cat, np.asarray(cosmos.orig_index, dtype=np.int64)
        else:
            real_cat = galsim.RealGalaxyCatalog(catalog.name, dir=str(catalog.parent))
            kept = np.arange(real_cat.nobjects, dtype=np.int64)
    except (OSError, KeyError, ValueError, galsim.GalSimError) as err:
        raise InputDataError(f"GalSim cannot read COSMOS catalog {str(catalog)!r}: "
                             f"{type(err).__name__}: {err}") from None
    if kept.size == 0:
        raise InputDataError(
            f"no galaxy of {str(catalog)!r} ({len(cat_data)} rows) passes GalSim's cuts "
            f"(exclusion_level={level!r}, {cuts}). Fix: loosen the cuts (e.g. "
            "--exclusion-level none, a smaller --min-hlr)")
    idents = _idents(cat_data, cat_names)
    indices = kept[:max_galaxies]
    columns = parameter_columns(par_data, par_names, cat_data, cat_names,
                                param_path=param_path, catalog=catalog,
                                column_map=column_map, notes=notes)
    columns.update({name: _column(cat_data, cat_names, column) for name, column in (
        ("ra", "RA"), ("dec", "DEC"), ("mag", "MAG"), ("weight", "WEIGHT"),
        ("stamp_flux", "stamp_flux"), ("noise_mean", "NOISE_MEAN"))})
    columns["sersic_n"] = _column(par_data, par_names, "sersicfit", index=2)
    columns["sersic_hlr"] = _column(par_data, par_names, "hlr", index=0)
    return CosmosSelection(catalog=catalog, param_path=param_path, sample=sample, level=level,
                           rgc=real_cat, indices=indices, idents=idents,
                           columns=columns, n_after_cuts=int(kept.size))
