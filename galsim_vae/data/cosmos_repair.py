"""Checks and on-the-fly repairs of GalSim-format COSMOS catalogs.

Real catalogs in GalSim's format (``real_galaxy_catalog_*.fits`` with its ``_fits`` and
``_selection`` companions, the image, PSF and noise-correlation files it names) come with
defects: a missing selection or noise file, a PSF file that was never shipped, galaxy
HDU numbers that point at the wrong stamp, a missing image file.  This module finds them
before anything is written and either repairs them *in memory* (on the
:class:`galsim.RealGalaxyCatalog` object, never in the user's files) with a warning that
says what was assumed, or raises an error naming the file and the fix.

GalSim's :class:`galsim.RealGalaxyCatalog` reads its per-galaxy file names and HDU numbers
through ``lazy_property`` attributes (``gal_hdu``, ``psf_file_name``, ``psf_hdu``,
``noise_file_name``) that an instance attribute supersedes; the repairs assign those
attributes on the in-memory object, so every image is still read by GalSim's own
``getGalImage`` / ``getPSFImage`` / ``getNoise``.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .noise import colour
from ..errors import InputDataError, MissingInputError

#: Columns of the real-galaxy catalog that preparation cannot do without.
REQUIRED_CATALOG_COLUMNS = ("IDENT", "GAL_FILENAME", "PSF_FILENAME", "GAL_HDU", "PSF_HDU",
                            "PIXEL_SCALE", "NOISE_VARIANCE")
#: Columns of the ``_fits`` parameter catalog preparation cannot do without.
REQUIRED_PARAM_COLUMNS = ("IDENT",)
#: Parameter columns copied into the data set when present (matched case-insensitively,
#: or mapped from another column with ``column_map``), and what they are used for.
PARAM_COLUMNS = {"zphot": "the redshift condition of conditional models",
                 "mag_auto": "the magnitude condition and the reports' magnitude bins",
                 "flux_radius": "the size condition"}
#: Parameter-catalog columns GalSim's fit-quality cuts (exclusion_level 'bad_fits' and
#: 'marginal') and its size/flux cuts (min_hlr, max_hlr, min_flux, max_flux) read.
FIT_CUT_COLUMNS = ("fit_status", "sersicfit", "hlr", "flux")
#: Name of the F814W noise-correlation file GalSim ships in ``galsim.meta_data.share_dir``
#: (the COSMOS ACS F814W unrotated science-image noise correlation function).
F814W_NOISE_FILE = "acs_I_unrot_sci_20_cf.fits"
#: Exclusion levels GalSim's COSMOSCatalog knows (Mandelbaum et al. 2012, MNRAS 420, 1518).
EXCLUSION_LEVELS = ("none", "bad_stamp", "bad_fits", "marginal")
#: What each level falls back to when the ``_selection.fits`` file is missing: the
#: fit-quality cuts of 'bad_fits' need only the ``_fits`` catalog, the stamp-quality cuts
#: of 'bad_stamp' need the selection file.
SELECTION_FALLBACK = {"marginal": "bad_fits", "bad_stamp": "none"}
#: Relative tolerance of the stamp-sum check, in units of the sum of |pixels|: the catalog
#: ``stamp_flux`` is the float64 sum of the float32 stamp, so a right HDU agrees to ~1e-7.
STAMP_FLUX_RTOL = 1e-5
#: A stamp whose sum is off ``stamp_flux`` by less than this fraction is still taken from
#: the HDU the catalog gives (with a warning) when no HDU of the file matches exactly:
#: extension catalogs are not all made the COSMOS way.  GalSim's AEGIS test catalogs
#: (F606W/F814W) give stamp_flux 0.0-6% above their stamps' sums, presumably measured
#: before neighbours were replaced by noise; a wrong HDU is typically off by far more.
LOOSE_STAMP_FLUX_RTOL = 0.1
#: Individual HDU-repair warnings issued before they are only counted.
MAX_REPAIR_WARNINGS = 20
#: What astropy and GalSim raise reading a corrupt or truncated FITS file.
UNREADABLE_FITS = (OSError, ValueError, TypeError, IndexError, KeyError)


def column_lookup(names: Sequence[str], wanted: str) -> str | None:
    """The actual spelling of column ``wanted`` in ``names`` (FITS names are
    case-insensitive), or None."""
    lower = {n.lower(): n for n in names}
    return lower.get(wanted.lower())


def require_columns(names: Sequence[str], wanted: Sequence[str], path: str | os.PathLike,
                    why: str) -> None:
    """Raise InputDataError naming ``path`` and the columns of ``wanted`` it lacks."""
    missing = [c for c in wanted if column_lookup(names, c) is None]
    if missing:
        raise InputDataError(
            f"catalog {str(path)!r} lacks the column(s) {missing} ({why}); it has "
            f"{list(names)}. Fix: use a complete GalSim-format catalog (galsim_download_cosmos "
            "fetches the current ones)")


def resolve_catalog(directory: str | os.PathLike, file_name: str | None,
                    sample: str | None) -> tuple[Path, str | None]:
    """The real-galaxy catalog path and its sample ('23.5', '25.2' or None).

    ``file_name`` wins when given; otherwise ``real_galaxy_catalog_<sample>.fits``; with
    neither, the single ``real_galaxy_catalog*.fits`` in ``directory`` (not a ``_fits`` or
    ``_selection`` companion).  The sample is inferred from the name as GalSim does.

    Raises:
        MissingInputError: the folder or catalog does not exist.
        InputDataError: ``file_name`` names a companion file, or the choice is ambiguous.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(
            f"COSMOS catalog folder {str(directory)!r} does not exist. Fix: pass the folder "
            "'galsim_download_cosmos' wrote (by default <galsim share dir>/COSMOS_25.2_"
            "training_sample) with --dir")
    if sample is not None and sample not in ("23.5", "25.2"):
        raise InputDataError(f"sample must be '23.5' or '25.2', got {sample!r}")
    if file_name is None and sample is not None:
        file_name = f"real_galaxy_catalog_{sample}.fits"
    if file_name is None:
        candidates = sorted(p.name for p in directory.glob("real_galaxy_catalog*.fits")
                            if not p.name.endswith(("_fits.fits", "_selection.fits")))
        if len(candidates) != 1:
            raise InputDataError(
                f"cannot tell which catalog of {str(directory)!r} to use: found "
                f"{candidates or 'no real_galaxy_catalog*.fits'}. Fix: pass --file-name "
                "or --sample 23.5|25.2")
        file_name = candidates[0]
    if file_name.endswith(("_fits.fits", "_selection.fits")):
        base = file_name.replace("_fits.fits", ".fits").replace("_selection.fits", ".fits")
        raise InputDataError(
            f"{file_name!r} is a companion of a real-galaxy catalog, not the catalog itself. "
            f"Fix: pass --file-name {base}")
    path = directory / file_name
    if not path.is_file():
        raise MissingInputError(
            f"COSMOS catalog {str(path)!r} does not exist. Fix: run 'galsim_download_cosmos "
            f"-s {sample or '25.2'}' (it writes COSMOS_{sample or '25.2'}_training_sample in "
            "GalSim's share folder, or under -d DIR) and pass that folder as --dir, or pass "
            "the right --file-name")
    if sample is None:
        sample = "25.2" if "25.2" in file_name else "23.5" if "23.5" in file_name else None
    return path, sample


def companion_path(catalog: Path, kind: str) -> Path:
    """``<catalog>_fits.fits`` or ``<catalog>_selection.fits`` beside the catalog (named
    as GalSim's GalaxySample names them: '.fits' replaced by '_<kind>.fits')."""
    return catalog.with_name(catalog.name.replace(".fits", f"_{kind}.fits"))


def effective_exclusion_level(catalog: Path, level: str, notes: list[str]) -> str:
    """The exclusion level GalSim can apply: ``level``, or its fallback (with a warning)
    when the ``_selection.fits`` file it needs is missing."""
    if level not in EXCLUSION_LEVELS:
        raise InputDataError(f"exclusion_level must be one of {list(EXCLUSION_LEVELS)}, "
                             f"got {level!r}")
    selection = companion_path(catalog, "selection")
    if level in SELECTION_FALLBACK and not selection.is_file():
        fallback = SELECTION_FALLBACK[level]
        warn(notes,
             f"selection file {str(selection)!r} is missing, so GalSim's exclusion_level="
             f"{level!r} cannot apply its postage-stamp cuts (S/N, masking, stamp_flux > 0"
             f"{', |dmag| < 0.8' if level == 'marginal' else ''}); assuming "
             f"exclusion_level={fallback!r} instead. Get the file with "
             "'galsim_download_cosmos' to apply the full cuts")
        return fallback
    return level


def warn(notes: list[str], message: str) -> None:
    """Issue ``message`` as a UserWarning and keep it for the data set's provenance."""
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def read_catalog_image(rgc, index: int, kind: str = "galaxy"):
    """``rgc.getGalImage(index)`` (kind "galaxy") or ``rgc.getPSFImage(index)`` ("PSF");
    a corrupt or truncated file raises InputDataError naming the file, HDU and galaxy."""
    if kind == "galaxy":
        read, file_name, hdu = rgc.getGalImage, rgc.gal_file_name[index], rgc.gal_hdu[index]
    else:
        read, file_name, hdu = rgc.getPSFImage, rgc.psf_file_name[index], rgc.psf_hdu[index]
    try:
        return read(index)
    except UNREADABLE_FITS as err:
        raise InputDataError(
            f"{kind} image file {file_name!r} (HDU {int(hdu)}, galaxy IDENT "
            f"{rgc.ident[index]}) is corrupt or truncated: {type(err).__name__}: {err}. Fix: "
            "copy or download the file again (for COSMOS samples: 'galsim_download_cosmos')"
        ) from None


def check_galaxy_files(rgc, indices: np.ndarray, sample: str | None) -> None:
    """Raise MissingInputError naming the first galaxy image file that is absent."""
    names = rgc.gal_file_name
    for name in sorted({names[i] for i in indices}):
        if not os.path.isfile(name):
            raise MissingInputError(
                f"galaxy image file {name!r} named by catalog {rgc.file_name!r} does not "
                f"exist. Fix: download the full sample with its images with "
                f"'galsim_download_cosmos -s {sample or '25.2'}' and pass the folder it "
                "writes (COSMOS_<sample>_training_sample) as the catalog directory")


def repair_psf_files(rgc, indices: np.ndarray, psf_file: str | os.PathLike | None,
                     notes: list[str]) -> str:
    """Check the PSF files of ``indices``; substitute ``psf_file`` for every galaxy when
    any is missing.  Returns ``"catalog"`` or the fallback path used.

    Raises:
        MissingInputError: a PSF file is missing and no ``psf_file`` was given, or
            ``psf_file`` itself does not exist.
        InputDataError: ``psf_file`` holds no 2-D image.
    """
    names = rgc.psf_file_name
    missing = sorted({names[i] for i in indices if not os.path.isfile(names[i])})
    if psf_file is not None:
        psf_file = str(psf_file)
        if not os.path.isfile(psf_file):
            raise MissingInputError(f"fallback PSF file {psf_file!r} does not exist")
    if not missing:
        if psf_file is not None:
            warn(notes, f"every PSF file the catalog names exists, so the fallback PSF file "
                        f"{psf_file!r} is not used")
        return "catalog"
    if psf_file is None:
        raise MissingInputError(
            f"PSF image file {missing[0]!r} named by catalog {rgc.file_name!r} does not exist"
            f"{f' ({len(missing)} PSF files missing)' if len(missing) > 1 else ''}. Fix: "
            "download the full sample with 'galsim_download_cosmos', or pass an HST PSF image "
            "with psf_file= (--psf-file) to give every galaxy that one PSF")
    hdu = first_image_hdu(psf_file)
    warn(notes, f"PSF file(s) {missing} named by catalog {rgc.file_name!r} are missing; every "
                f"galaxy gets the PSF of {psf_file!r} (HDU {hdu}) instead of its own")
    rgc.psf_file_name = [psf_file] * rgc.nobjects
    rgc.psf_hdu = np.full(rgc.nobjects, hdu, dtype=np.int64)
    return psf_file


def first_image_hdu(path: str) -> int:
    """Index of the first HDU of the FITS file ``path`` holding a 2-D image."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdus:
            for k, hdu in enumerate(hdus):
                if hdu.is_image and hdu.data is not None and hdu.data.ndim == 2:
                    return k
    except UNREADABLE_FITS as err:
        raise InputDataError(f"PSF file {path!r} is not a readable FITS file (corrupt or "
                             f"truncated?): {err}. Fix: give an intact FITS PSF image") from None
    raise InputDataError(f"PSF file {path!r} holds no 2-D image HDU")


def repair_noise_files(rgc, indices: np.ndarray, notes: list[str]) -> dict[str, Any]:
    """Check the noise-correlation files of ``indices``; replace missing ones in memory.

    A missing F814W file is replaced by the copy GalSim ships
    (``galsim.meta_data.share_dir``/``acs_I_unrot_sci_20_cf.fits``); a missing file of
    another band (no copy shipped) by uncorrelated noise of the catalog variance.  The
    noise model is only used to pad stamps smaller than the output size.
    Returns what was done, for the provenance.
    """
    import galsim

    names = rgc.noise_file_name
    if names is None:
        warn(notes, f"catalog {rgc.file_name!r} has no NOISE_FILENAME column: padding uses "
                    "uncorrelated Gaussian noise of each galaxy's NOISE_VARIANCE")
        return {"noise_model": "uncorrelated"}
    missing = sorted({names[i] for i in indices if not os.path.isfile(names[i])})
    if not missing:
        return {"noise_model": "catalog correlation files"}
    shipped = os.path.join(galsim.meta_data.share_dir, F814W_NOISE_FILE)
    bands = [str(b).strip().upper() for b in rgc.band] if _has_band(rgc) else []
    replaced: dict[str, str | None] = {}
    new_names = list(names)
    for i, name in enumerate(names):
        if name in missing:
            f814w = os.path.basename(name.strip()) == F814W_NOISE_FILE or (
                bands and bands[i] == "F814W")
            replaced[name] = shipped if f814w and os.path.isfile(shipped) else None
            new_names[i] = replaced[name]
    for name, new in replaced.items():
        if new is not None:
            warn(notes, f"noise-correlation file {name!r} is missing; assuming the COSMOS "
                        f"F814W one GalSim ships, {new!r}, scaled to each galaxy's "
                        "NOISE_VARIANCE")
        else:
            warn(notes, f"noise-correlation file {name!r} is missing and GalSim ships none "
                        "for this band; assuming uncorrelated Gaussian noise of each "
                        "galaxy's NOISE_VARIANCE for padding")
    rgc.noise_file_name = new_names
    return {"noise_model": "repaired", "replaced": replaced}


def _has_band(rgc) -> bool:
    try:
        rgc.band
    except KeyError:
        return False
    return True


class PaddingNoise:
    """Noise fields with each galaxy's own noise model, to pad stamps.

    The model is the one :meth:`galsim.RealGalaxyCatalog.getNoise` builds: the correlation
    function of the galaxy's noise file (GalSim's ``BaseCorrelatedNoise``) scaled to its
    ``NOISE_VARIANCE``, or uncorrelated noise of that variance without a noise file.  The
    field is generated as GalSim's ``BaseCorrelatedNoise.applyTo`` does it (white Gaussian
    noise multiplied in Fourier space by the square root of the power spectrum of the
    correlation function drawn on the field's grid), but with numpy's generator:
    GalSim's Gaussian deviates cost ~1.5 us each here, which made padding 90% of the run
    time.  The unit-variance root power spectrum is cached per (noise file, pixel scale,
    shape).
    """

    def __init__(self, rgc) -> None:
        self.rgc = rgc
        self._rootps: dict[tuple, np.ndarray | None] = {}

    def field(self, index: int, shape: tuple[int, int], seed: int) -> np.ndarray:
        """A (ny, nx) noise field of galaxy ``index`` drawn with ``numpy`` seed ``seed``."""
        variance = float(self.rgc.variance[index])
        white = np.random.default_rng(seed).standard_normal(shape)
        rootps = self.unit_rootps(index, shape)
        if rootps is None:
            return white * math.sqrt(variance)
        return colour(white[None], rootps[None])[0] * math.sqrt(variance)

    def unit_rootps(self, index: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Unit-variance root power spectrum of galaxy ``index``'s noise on a grid of
        ``shape`` (ny, nx//2 + 1), or None for white noise (no noise file)."""
        import galsim

        names = self.rgc.noise_file_name
        name = None if names is None else names[index]
        if name is None:
            return None
        scale = float(self.rgc.pixel_scale[index])
        key = (name, scale, shape)
        if key not in self._rootps:
            try:
                noise = self.rgc.getNoise(index).withVariance(1.0)
            except UNREADABLE_FITS as err:
                raise InputDataError(
                    f"noise-correlation file {name!r} (galaxy IDENT {self.rgc.ident[index]}) "
                    f"is corrupt or truncated: {err}. Fix: download it again "
                    "('galsim_download_cosmos'), or delete it: padding then uses a substitute "
                    "noise model, with a warning") from None
            cf = noise.drawImage(galsim.ImageD(shape[1], shape[0], scale=scale))
            self._rootps[key] = np.sqrt(np.abs(np.fft.rfft2(cf.array)))
        return self._rootps[key]


class HduChecker:
    """Check each galaxy stamp against the catalog's ``stamp_flux`` (the sum of the
    stamp) and repair a wrong ``GAL_HDU`` by searching the image file's HDUs.

    Parameters:
        rgc:     The :class:`galsim.RealGalaxyCatalog`; its ``gal_hdu`` is replaced by an
                 in-memory copy that repairs update.
        notes:   List collecting the warning messages for the provenance.
        enabled: False to trust the catalog's HDU numbers (nothing is checked).
    """

    def __init__(self, rgc, notes: list[str], enabled: bool = True) -> None:
        self.rgc = rgc
        self.notes = notes
        self.enabled = enabled
        self.repairs: list[dict[str, Any]] = []
        self.approximate = 0           # stamps used although only near their stamp_flux
        self._sums: dict[str, list[tuple[int, float, float]]] = {}
        if enabled:
            try:
                self.stamp_flux = np.asarray(rgc.stamp_flux, dtype=np.float64)
            except (KeyError, OSError):
                self.enabled = False
                warn(notes, f"catalog {rgc.file_name!r} has no stamp_flux column, so the "
                            "galaxy HDU numbers cannot be checked; they are used as given")
        rgc.gal_hdu = np.array(rgc.gal_hdu, dtype=np.int64)

    @staticmethod
    def matches(array: np.ndarray, stamp_flux: float) -> bool:
        """Whether the stamp ``array`` sums to ``stamp_flux`` (see STAMP_FLUX_RTOL)."""
        total = float(np.sum(array, dtype=np.float64))
        scale = float(np.sum(np.abs(array), dtype=np.float64))
        return abs(total - stamp_flux) <= STAMP_FLUX_RTOL * scale + 1e-12

    def image(self, index: int):
        """Galaxy ``index``'s stamp as a GalSim Image, read from the right HDU."""
        image = read_catalog_image(self.rgc, index)
        if (not self.enabled or not np.all(np.isfinite(image.array))
                or not np.any(image.array)):
            return image  # NaN and all-zero stamps are reported by the caller
        target = float(self.stamp_flux[index])
        if self.matches(image.array, target):
            return image
        file_name = self.rgc.gal_file_name[index]
        given = int(self.rgc.gal_hdu[index])
        found = [k for k, total, scale in self._file_sums(file_name)
                 if abs(total - target) <= STAMP_FLUX_RTOL * scale + 1e-12]
        ident = self.rgc.ident[index]
        total = float(np.sum(image.array, dtype=np.float64))
        if not found and abs(total - target) <= LOOSE_STAMP_FLUX_RTOL * abs(target):
            self.approximate += 1
            if self.approximate <= MAX_REPAIR_WARNINGS:
                warn(self.notes, f"galaxy IDENT {ident}: HDU {given} of {file_name!r} sums to "
                                 f"{total:.6g}, {100 * (total / target - 1):+.2g}% off the "
                                 f"catalog's stamp_flux {target:.6g}, and no HDU matches it "
                                 "exactly: the stamp is used as the catalog gives it")
            return image
        if len(found) != 1:
            what = "no HDU" if not found else f"several HDUs {found}"
            raise InputDataError(
                f"galaxy IDENT {ident}: HDU {given} of {file_name!r} sums to "
                f"{total:.6g}, not the catalog's stamp_flux {target:.6g}, "
                f"and {what} of that file matches it. The catalog {self.rgc.file_name!r} and "
                "its image file do not belong together. Fix: re-download the sample with "
                "'galsim_download_cosmos', or pass check_hdus=False (--no-hdu-check) to use "
                "the HDUs as given")
        repaired = found[0]
        self.rgc.gal_hdu[index] = repaired
        self.repairs.append({"ident": ident, "given_hdu": given, "repaired_hdu": repaired,
                             "file": file_name})
        if len(self.repairs) <= MAX_REPAIR_WARNINGS:
            warn(self.notes, f"galaxy IDENT {ident}: catalog gives HDU {given} of "
                             f"{file_name!r}, whose stamp does not sum to stamp_flux "
                             f"{target:.6g}; using HDU {repaired}, whose stamp does")
        return read_catalog_image(self.rgc, index)

    def summary(self) -> None:
        """Warn once about repairs beyond the individually reported ones."""
        if self.approximate > MAX_REPAIR_WARNINGS:
            warn(self.notes, f"{self.approximate} stamps in all were used although their sums "
                             "are only near (within 10%) their stamp_flux")
        if len(self.repairs) > MAX_REPAIR_WARNINGS:
            warn(self.notes, f"{len(self.repairs)} galaxy HDU numbers were repaired in all "
                             f"(the first {MAX_REPAIR_WARNINGS} were reported individually)")

    def _file_sums(self, file_name: str) -> list[tuple[int, float, float]]:
        """(HDU, sum, sum of |pixels|) of every image HDU of ``file_name``, cached."""
        if file_name not in self._sums:
            from astropy.io import fits

            sums = []
            try:
                with fits.open(file_name, memmap=True) as hdus:
                    for k, hdu in enumerate(hdus):
                        if hdu.is_image and hdu.data is not None and hdu.data.ndim == 2:
                            data = np.asarray(hdu.data, dtype=np.float64)
                            sums.append((k, float(data.sum()), float(np.abs(data).sum())))
            except UNREADABLE_FITS as err:
                raise InputDataError(
                    f"galaxy image file {file_name!r} is corrupt or truncated: {err}. Fix: "
                    "download it again ('galsim_download_cosmos')") from None
            self._sums[file_name] = sums
        return self._sums[file_name]
