"""The one on-disk format of galsim-vae training sets, for every source.

A data set is a folder::

    dataset.json   format, version, stamp and PSF sizes, pixel scale (arcsec), flux units,
                   normalisation (pixel flux scale, condition statistics), split, provenance
    images.npy     float32 (N, S, S): centred galaxy stamps in the flux units stated
    psfs.npy       float32 (N, P, P): each galaxy's own PSF image at the same pixel scale,
                   centred, normalised to unit sum (absent when the source has no PSFs)
    catalog.fits   one row per galaxy: ``ident``, ``split`` (0 train, 1 validation,
                   2 test), ``noise_variance`` (flux units squared per pixel), ``zphot``,
                   ``mag_auto``, ``flux_radius`` (pixels) and source-specific columns
                   (``noise_model``: row of ``noise_rootps.npy``, -1 for white noise)
    noise_rootps.npy  float32 (K, S, S//2+1), optional: unit-variance root power spectra
                   of the stamps' correlated noise (:mod:`.noise`; absent: white noise)

The ``.npy`` files are memory-mapped on read, so an 80k-galaxy 158x158 set (~8 GB) is
never loaded whole.  :class:`DatasetWriter` fills the arrays galaxy by galaxy through
memory maps and renames the folder into place only when it is complete.

The train/validation/test split is a function of each galaxy's ``ident`` and the split
seed only (a hash), so it does not depend on the order of the catalog or on which other
galaxies were kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..conditions import Condition, standardise
from ..errors import InputDataError, MissingInputError

#: Identifies a galsim-vae data set folder.
DATASET_FORMAT = "galsim-vae-dataset"
#: Version of the on-disk layout written by this package.
DATASET_FORMAT_VERSION = 1
#: Codes of the ``split`` column.
SPLITS: dict[str, int] = {"train": 0, "validation": 1, "test": 2}
#: Default train/validation/test fractions.
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
#: Catalog columns every data set has (NaN where a source does not know the value).
#: ``flux_radius`` is SExtractor's half-light radius in pixels of the stamp.
STANDARD_COLUMNS = ("ident", "split", "noise_variance", "zphot", "mag_auto", "flux_radius")
#: Columns that may serve as model conditions.
CONDITION_COLUMNS = ("zphot", "mag_auto", "flux_radius")

_MANIFEST = "dataset.json"
_IMAGES = "images.npy"
_PSFS = "psfs.npy"
_CATALOG = "catalog.fits"


def assign_split(idents: Sequence[Any] | np.ndarray, *, seed: int = 0,
                 fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS) -> np.ndarray:
    """Deterministic split codes (0 train, 1 validation, 2 test) for galaxy identifiers.

    Each ident is hashed with the seed (SHA-1) to a number in [0, 1), compared with the
    cumulative ``fractions``.  The result depends on nothing but the ident and the seed.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not math.isclose(fractions.sum(), 1.0):
        raise InputDataError(
            f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    edges = np.cumsum(fractions)[:2]
    codes = np.empty(len(idents), dtype=np.int16)
    for i, ident in enumerate(idents):
        digest = hashlib.sha1(f"{seed}:{ident}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        codes[i] = int(np.searchsorted(edges, u, side="right"))
    return codes


class Dataset:
    """A galsim-vae data set folder, opened read-only with memory-mapped arrays.

    Parameters:
        path: The data set folder written by :class:`DatasetWriter`.

    Raises:
        MissingInputError: the folder or one of its files does not exist.
        InputDataError: the manifest is not a galsim-vae data set, is of a newer format
            version, or the arrays disagree with it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise MissingInputError(f"data set folder {str(self.path)!r} does not exist")
        manifest_path = self.path / _MANIFEST
        if not manifest_path.is_file():
            raise MissingInputError(
                f"{str(manifest_path)!r} does not exist: {str(self.path)!r} is not a complete "
                "galsim-vae data set (make one with 'galsim-vae prepare' or 'galsim-vae simulate')")
        try:
            self.meta: dict[str, Any] = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputDataError(f"{str(manifest_path)!r} is not valid JSON: {err}") from None
        if self.meta.get("format") != DATASET_FORMAT:
            raise InputDataError(f"{str(manifest_path)!r} is not a galsim-vae data set manifest")
        version = self.meta.get("format_version")
        if not isinstance(version, int) or version > DATASET_FORMAT_VERSION:
            raise InputDataError(
                f"{str(manifest_path)!r} has format_version {version!r}; this galsim-vae reads "
                f"up to {DATASET_FORMAT_VERSION}: upgrade galsim-vae")
        self.n_galaxies: int = int(self.meta["n_galaxies"])
        self.stamp_size: int = int(self.meta["stamp_size"])
        self.psf_size: int | None = self.meta.get("psf_size")
        self.pixel_scale: float = float(self.meta["pixel_scale"])
        self.flux_units: str = self.meta["flux_units"]
        self.flux_scale: float = float(self.meta["normalisation"]["flux_scale"])
        self.images = self._open(_IMAGES, (self.n_galaxies, self.stamp_size, self.stamp_size))
        self.psfs = None
        if self.psf_size is not None:
            self.psfs = self._open(_PSFS, (self.n_galaxies, self.psf_size, self.psf_size))
        self._catalog = None

    def _open(self, name: str, shape: tuple[int, ...]) -> np.memmap:
        path = self.path / name
        if not path.is_file():
            raise MissingInputError(f"data set file {str(path)!r} does not exist")
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as err:
            raise InputDataError(f"data set file {str(path)!r} is unreadable or truncated: {err}. "
                                 "Fix: make the data set again ('galsim-vae prepare' or "
                                 "'galsim-vae simulate')") from None
        if array.shape != shape or array.dtype != np.float32:
            raise InputDataError(f"data set file {str(path)!r} holds {array.dtype}{array.shape}, "
                                 f"the manifest says float32{shape}")
        return array

    @property
    def has_psf(self) -> bool:
        """True when every galaxy has its own PSF image."""
        return self.psfs is not None

    @property
    def catalog(self):
        """The per-galaxy table (astropy ``Table``), read on first use."""
        if self._catalog is None:
            from astropy.table import Table

            path = self.path / _CATALOG
            if not path.is_file():
                raise MissingInputError(f"data set file {str(path)!r} does not exist")
            try:
                table = Table.read(path, format="fits", mask_invalid=False)
            except (OSError, ValueError, TypeError, IndexError) as err:
                raise InputDataError(
                    f"data set file {str(path)!r} is not a readable FITS table (corrupt or "
                    f"truncated?): {err}. Fix: make the data set again ('galsim-vae "
                    "prepare' or 'galsim-vae simulate')") from None
            if len(table) != self.n_galaxies:
                raise InputDataError(f"{str(path)!r} has {len(table)} rows, the manifest says "
                                     f"{self.n_galaxies}")
            missing = [c for c in STANDARD_COLUMNS if c not in table.colnames]
            if missing:
                raise InputDataError(f"{str(path)!r} lacks the columns {missing}")
            self._catalog = table
        return self._catalog

    def indices(self, split: str | None = None, *,
                require_finite: Sequence[str] = ()) -> np.ndarray:
        """Row indices of a split (``"train"``, ``"validation"``, ``"test"``; None for all),
        keeping only rows whose columns ``require_finite`` are finite."""
        catalog = self.catalog
        keep = np.ones(len(catalog), dtype=bool)
        if split is not None:
            if split not in SPLITS:
                raise InputDataError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
            keep &= np.asarray(catalog["split"]) == SPLITS[split]
        for column in require_finite:
            if column not in catalog.colnames:
                raise InputDataError(f"data set {str(self.path)!r} has no column {column!r}")
            values = np.asarray(catalog[column], dtype=float)
            bad = keep & ~np.isfinite(values)
            if bad.any():
                warnings.warn(f"{int(bad.sum())} galaxies of {str(self.path)!r} have no finite "
                              f"{column!r} and are left out", stacklevel=2)
            keep &= np.isfinite(values)
        return np.flatnonzero(keep)

    def condition_stats(self, name: str) -> dict[str, float]:
        """Training-split statistics (min, max, mean, std) of a condition column."""
        stats = self.meta["normalisation"].get("conditions", {})
        if name not in stats:
            raise InputDataError(f"data set {str(self.path)!r} has no finite {name!r} values "
                                 f"to condition on; it has {sorted(stats)}. If the catalog "
                                 f"has it under another name, prepare the data set again "
                                 f"with --column {name}=COLUMN")
        return stats[name]

    def condition(self, name: str) -> Condition:
        """The :class:`~galsim_vae.conditions.Condition` of a column: its training-split
        standardisation and range (what a model trained on this data set records)."""
        return Condition.from_dict({"name": name, **self.condition_stats(name)})

    def normalise_conditions(self, values: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Map raw condition values (..., len(names)) to the network's ``(v - mean) / std``
        (:func:`galsim_vae.conditions.standardise`)."""
        values = np.asarray(values, dtype=np.float64)
        out = standardise([self.condition(n) for n in names], values.reshape(-1, len(names)))
        return out.reshape(values.shape)

    def normalised_as(self, flux_scale: float, conditions: Sequence[Condition]) -> "Dataset":
        """This data set in another's normalisation: pixels in units of ``flux_scale``
        (flux units per network unit) and each of ``conditions`` standardised with its
        mean and std, as a model trained on that other data set sees its inputs.  The
        arrays and the catalog are shared; only the normalisation differs, and it is
        recorded in :attr:`normalisation_override` (an encodings cache keys on it)."""
        view = copy.copy(self)
        view.meta = copy.deepcopy(self.meta)
        normalisation = view.meta["normalisation"]
        normalisation["flux_scale"] = view.flux_scale = float(flux_scale)
        stats = dict(normalisation.get("conditions") or {})
        for condition in conditions:
            stats[condition.name] = {key: float(getattr(condition, key))
                                     for key in ("mean", "std", "min", "max")}
        normalisation["conditions"] = stats
        view.normalisation_override = {
            "flux_scale": float(flux_scale),
            "conditions": {c.name: stats[c.name] for c in conditions}}
        return view

    #: The normalisation :meth:`normalised_as` replaced the data set's own with, or None.
    normalisation_override: dict[str, Any] | None = None

    @property
    def noise_rootps_table(self) -> np.ndarray | None:
        """The data set's noise models, (K, S, S//2 + 1) unit-variance root power spectra
        (:mod:`.noise`), or None when it records none (white noise)."""
        from .noise import NOISE_ROOTPS_FILE

        if not hasattr(self, "_noise_rootps"):
            path = self.path / NOISE_ROOTPS_FILE
            self._noise_rootps = np.load(path) if path.is_file() else None
        return self._noise_rootps

    def noise_rootps(self, rows: np.ndarray) -> np.ndarray | None:
        """Root power spectra of the noise of galaxies ``rows`` (N, S, S//2 + 1), or None
        when all of them have white noise."""
        from .noise import NOISE_MODEL_COLUMN, per_galaxy_rootps

        table = self.noise_rootps_table
        if table is None or NOISE_MODEL_COLUMN not in self.catalog.colnames:
            return None
        return per_galaxy_rootps(table, np.asarray(self.catalog[NOISE_MODEL_COLUMN])[rows])

    def __len__(self) -> int:
        return self.n_galaxies

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}: {self.n_galaxies} galaxies, "
                f"{self.stamp_size}x{self.stamp_size} at {self.pixel_scale}\"/pixel)")
