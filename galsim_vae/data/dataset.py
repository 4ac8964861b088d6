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

The ``.npy`` files are memory-mapped on read, so an 80k-galaxy 158x158 set (~8 GB) is
never loaded whole.  :class:`DatasetWriter` fills the arrays galaxy by galaxy through
memory maps and renames the folder into place only when it is complete.

The train/validation/test split is a function of each galaxy's ``ident`` and the split
seed only (a hash), so it does not depend on the order of the catalog or on which other
galaxies were kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..conditions import Condition, standardise
from ..errors import InputDataError, MissingInputError
from ..io_utils import atomic_directory

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


class DatasetWriter:
    """Write a data set folder galaxy by galaxy, atomically.

    Use as a context manager; call :meth:`add` for each galaxy.  The folder appears at
    ``path`` only when the ``with`` block ends without an error.  Fewer galaxies than
    ``max_galaxies`` may be added (e.g. after rejections); the arrays are trimmed.

    Parameters:
        path:           Output folder (must not exist unless ``overwrite``).
        max_galaxies:   Upper bound on the number of galaxies that will be added.
        stamp_size:     Side S of the square galaxy stamps, pixels.
        pixel_scale:    Pixel scale of stamps and PSFs, arcsec/pixel.
        flux_units:     What one pixel value means, e.g. ``"counts/s (HST ACS F814W,
                        AB zero point 25.94)"``.
        psf_size:       Side P of the PSF images, or None when the source has no PSFs.
        source:         Provenance: where the galaxies came from, cuts applied, options.
        extra_columns:  Source-specific catalog columns: name -> numpy dtype.
        split_seed:     Seed of the deterministic split.
        split_fractions: Train, validation, test fractions.
        overwrite:      Replace an existing folder at ``path``.
    """

    def __init__(self, path: str | os.PathLike, *, max_galaxies: int, stamp_size: int,
                 pixel_scale: float, flux_units: str, psf_size: int | None = None,
                 source: Mapping[str, Any] | None = None,
                 extra_columns: Mapping[str, Any] | None = None, split_seed: int = 0,
                 split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                 overwrite: bool = False) -> None:
        if max_galaxies < 1:
            raise InputDataError(f"max_galaxies must be >= 1, got {max_galaxies}")
        if stamp_size < 8:
            raise InputDataError(f"stamp_size must be >= 8 pixels, got {stamp_size}")
        if psf_size is not None and psf_size < 3:
            raise InputDataError(f"psf_size must be >= 3 pixels, got {psf_size}")
        if not pixel_scale > 0:
            raise InputDataError(f"pixel_scale must be > 0 arcsec, got {pixel_scale}")
        assign_split([0], seed=split_seed, fractions=split_fractions)  # validates fractions
        self.path = Path(path)
        self.max_galaxies = int(max_galaxies)
        self.stamp_size = int(stamp_size)
        self.psf_size = None if psf_size is None else int(psf_size)
        self.pixel_scale = float(pixel_scale)
        self.flux_units = flux_units
        self.source = dict(source or {})
        self.extra_columns = {k: np.dtype(v) for k, v in (extra_columns or {}).items()}
        clash = set(self.extra_columns) & set(STANDARD_COLUMNS)
        if clash:
            raise InputDataError(f"extra columns {sorted(clash)} clash with standard columns")
        self.split_seed = int(split_seed)
        self.split_fractions = tuple(float(f) for f in split_fractions)
        self.overwrite = overwrite
        self.count = 0
        self._ctx = None
        self._tmp: Path | None = None
        self._rows: dict[str, list] = {}

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> "DatasetWriter":
        self._ctx = atomic_directory(self.path, overwrite=self.overwrite)
        self._tmp = self._ctx.__enter__()
        n, s = self.max_galaxies, self.stamp_size
        self._images = np.lib.format.open_memmap(self._tmp / _IMAGES, mode="w+",
                                                 dtype=np.float32, shape=(n, s, s))
        self._psfs = None
        if self.psf_size is not None:
            p = self.psf_size
            self._psfs = np.lib.format.open_memmap(self._tmp / _PSFS, mode="w+",
                                                   dtype=np.float32, shape=(n, p, p))
        self._rows = {c: [] for c in ("ident", "noise_variance", *CONDITION_COLUMNS,
                                       *self.extra_columns)}
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._ctx is not None
        try:
            if exc_type is None:
                self._finish()
        except BaseException as err:
            self._release()
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._release()
        return bool(self._ctx.__exit__(exc_type, exc, tb))

    def _release(self) -> None:
        self._images = None
        self._psfs = None

    # -- adding galaxies ----------------------------------------------------------------
    def add(self, image: np.ndarray, *, ident: Any, noise_variance: float,
            psf: np.ndarray | None = None, zphot: float = math.nan,
            mag_auto: float = math.nan, flux_radius: float = math.nan,
            **extra: Any) -> int:
        """Add one galaxy; returns its row index.

        Parameters:
            image:          (S, S) stamp in the data set's flux units, galaxy centred at
                            pixel (S//2, S//2) (GalSim's ``true_center`` convention for
                            even sizes: the centre is between pixels S/2-1 and S/2).
            ident:          Catalog identifier (int or str), used for the split.
            noise_variance: Pixel noise variance, flux units squared; > 0.
            psf:            (P, P) PSF image, required when the writer has ``psf_size``;
                            it is normalised to unit sum here.
            zphot, mag_auto, flux_radius: Catalog quantities (NaN if unknown);
                            ``flux_radius`` in pixels.
            extra:          Values of the ``extra_columns``.

        Raises:
            InputDataError: wrong shape, NaN/inf pixels, non-positive noise variance,
                            missing or unknown extra columns, too many galaxies.
        """
        if self._tmp is None:
            raise RuntimeError("DatasetWriter.add called outside its 'with' block")
        if self.count >= self.max_galaxies:
            raise InputDataError(f"more than max_galaxies={self.max_galaxies} galaxies added")
        image = np.asarray(image, dtype=np.float32)
        s = self.stamp_size
        if image.shape != (s, s):
            raise InputDataError(f"galaxy {ident}: stamp shape {image.shape}, expected ({s}, {s})")
        if not np.all(np.isfinite(image)):
            raise InputDataError(f"galaxy {ident}: stamp has NaN or inf pixels")
        if not (np.isfinite(noise_variance) and noise_variance > 0):
            raise InputDataError(f"galaxy {ident}: noise_variance must be finite and > 0, "
                                 f"got {noise_variance}")
        if self.psf_size is not None:
            if psf is None:
                raise InputDataError(f"galaxy {ident}: a PSF image is required")
            psf = np.asarray(psf, dtype=np.float64)
            p = self.psf_size
            if psf.shape != (p, p):
                raise InputDataError(f"galaxy {ident}: PSF shape {psf.shape}, expected ({p}, {p})")
            total = psf.sum()
            if not (np.all(np.isfinite(psf)) and total > 0):
                raise InputDataError(f"galaxy {ident}: PSF has NaN/inf pixels or non-positive sum")
            self._psfs[self.count] = (psf / total).astype(np.float32)
        missing = set(self.extra_columns) - set(extra)
        unknown = set(extra) - set(self.extra_columns)
        if missing or unknown:
            raise InputDataError(f"galaxy {ident}: extra columns missing {sorted(missing)}, "
                                 f"unknown {sorted(unknown)}")
        self._images[self.count] = image
        row = dict(ident=ident, noise_variance=float(noise_variance), zphot=float(zphot),
                   mag_auto=float(mag_auto), flux_radius=float(flux_radius), **extra)
        for key, values in self._rows.items():
            values.append(row[key])
        self.count += 1
        return self.count - 1

    # -- finishing ----------------------------------------------------------------------
    def _finish(self) -> None:
        from astropy.table import Table

        if self.count == 0:
            raise InputDataError(f"no galaxies were written to {str(self.path)!r}: "
                                 "the selection is empty")
        assert self._tmp is not None
        self._images.flush()
        if self._psfs is not None:
            self._psfs.flush()
        if self.count < self.max_galaxies:
            self._images = _trim_npy(self._tmp / _IMAGES, self._images, self.count)
            if self._psfs is not None:
                self._psfs = _trim_npy(self._tmp / _PSFS, self._psfs, self.count)
        idents = self._rows["ident"]
        if len(set(idents)) != len(idents):
            raise InputDataError("galaxy identifiers are not unique; the split needs unique idents")
        split = assign_split(idents, seed=self.split_seed, fractions=self.split_fractions)
        table = Table()
        table["ident"] = np.asarray(idents)
        table["split"] = split
        for key in ("noise_variance", *CONDITION_COLUMNS):
            table[key] = np.asarray(self._rows[key], dtype=np.float64)
        for key, dtype in self.extra_columns.items():
            table[key] = np.asarray(self._rows[key], dtype=dtype)
        table.write(self._tmp / _CATALOG, format="fits")
        manifest = {
            "format": DATASET_FORMAT,
            "format_version": DATASET_FORMAT_VERSION,
            "n_galaxies": self.count,
            "stamp_size": self.stamp_size,
            "psf_size": self.psf_size,
            "pixel_scale": self.pixel_scale,
            "pixel_scale_units": "arcsec/pixel",
            "flux_units": self.flux_units,
            "normalisation": _normalisation(self._images, table),
            "split": {"seed": self.split_seed, "fractions": list(self.split_fractions),
                      "counts": {name: int(np.sum(split == code)) for name, code in SPLITS.items()}},
            "source": self.source,
        }
        with open(self._tmp / _MANIFEST, "w") as f:
            json.dump(manifest, f, indent=2, default=_json_default)


def _trim_npy(path: Path, array: np.memmap, count: int) -> np.memmap:
    """Rewrite the .npy at ``path`` keeping its first ``count`` rows (chunked copy)."""
    trimmed_path = path.with_suffix(".trim.npy")
    out = np.lib.format.open_memmap(trimmed_path, mode="w+", dtype=array.dtype,
                                    shape=(count, *array.shape[1:]))
    chunk = 1024
    for start in range(0, count, chunk):
        out[start:start + chunk] = array[start:min(start + chunk, count)]
    out.flush()
    del array
    os.replace(trimmed_path, path)
    return out


def _normalisation(images: np.ndarray, table) -> dict[str, Any]:
    """Scales that bring pixels and conditions to order one, from the training split.

    ``flux_scale`` (flux units) is the median over training stamps of the brightest
    pixel: the network sees ``image / flux_scale``, a linear map, so fluxes stay physical.
    Condition statistics (min, max, mean, std of finite training values) define the
    network's input ``(value - mean) / std`` and the range a model accepts.
    """
    train = np.flatnonzero(np.asarray(table["split"]) == SPLITS["train"])
    if train.size == 0:  # tiny sets: fall back to everything
        train = np.arange(len(table))
    peaks = np.array([float(np.max(images[i])) for i in train])
    flux_scale = float(np.median(peaks))
    if not flux_scale > 0:
        positive = peaks[peaks > 0]
        if positive.size == 0:
            raise InputDataError("every training stamp has a non-positive maximum pixel")
        flux_scale = float(np.median(positive))
    noise_sigma = np.sqrt(np.asarray(table["noise_variance"])[train])
    conditions = {}
    for name in CONDITION_COLUMNS:
        values = np.asarray(table[name], dtype=float)[train]
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        std = float(np.std(values))
        conditions[name] = {"min": float(values.min()), "max": float(values.max()),
                            "mean": float(values.mean()), "std": std if std > 0 else 1.0,
                            "count": int(values.size)}
    return {"flux_scale": flux_scale,
            "median_noise_sigma": float(np.median(noise_sigma)),
            "conditions": conditions}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


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
                                 f"to condition on; it has {sorted(stats)}")
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

    def __len__(self) -> int:
        return self.n_galaxies

    def __repr__(self) -> str:
        return (f"Dataset({str(self.path)!r}: {self.n_galaxies} galaxies, "
                f"{self.stamp_size}x{self.stamp_size} at {self.pixel_scale}\"/pixel)")
