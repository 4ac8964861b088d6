"""Writing a data set: :class:`DatasetWriter` (stamps, PSFs and catalog rows streamed to
memory-mapped files, the training-split normalisation and the manifest, atomically).
The format is described in :mod:`.dataset`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputDataError
from ..io_utils import atomic_directory
from .dataset import (_CATALOG, _IMAGES, _MANIFEST, _PSFS, CONDITION_COLUMNS, DATASET_FORMAT,
                      DATASET_FORMAT_VERSION, DEFAULT_SPLIT_FRACTIONS, SPLITS, STANDARD_COLUMNS,
                      assign_split)


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

    def set_noise_models(self, rootps: np.ndarray | None) -> None:
        """Store the data set's noise models: (K, S, S//2 + 1) unit-variance root power
        spectra that the catalog column ``noise_model`` indexes (:mod:`.noise`); None: none
        (every galaxy's noise is white)."""
        from .noise import NOISE_ROOTPS_FILE

        if self._tmp is None:
            raise RuntimeError("DatasetWriter.set_noise_models called outside its 'with' block")
        if rootps is None:
            return
        rootps = np.asarray(rootps, dtype=np.float32)
        s = self.stamp_size
        if rootps.ndim != 3 or rootps.shape[1:] != (s, s // 2 + 1) or len(rootps) == 0:
            raise InputDataError(f"noise root power spectra must be (K, {s}, {s // 2 + 1}), "
                                 f"got {rootps.shape}")
        if not np.all(np.isfinite(rootps)) or np.any(rootps < 0):
            raise InputDataError("noise root power spectra must be finite and non-negative")
        np.save(self._tmp / NOISE_ROOTPS_FILE, rootps)

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
