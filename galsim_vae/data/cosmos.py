"""GalSim-format COSMOS catalog -> galsim-vae data set.

Reads a catalog in GalSim's real-galaxy format (the F814W < 23.5 and < 25.2 training
samples that ``galsim_download_cosmos`` fetches, Mandelbaum et al. 2012, 2014; or any
catalog in that format) through GalSim's own :class:`galsim.COSMOSCatalog` (selection
and cuts) and :class:`galsim.RealGalaxyCatalog` (images, PSFs, noise), and writes a data
set with :class:`galsim_vae.data.DatasetWriter`.

Per galaxy the data set keeps the *original* HST stamp (not a deconvolved or redrawn
profile), centred and cropped or noise-padded to the stamp size, its own HST PSF image,
its pixel-noise variance, ``zphot``, ``mag_auto`` and ``flux_radius`` from the ``_fits``
parameter catalog, the catalog ``IDENT`` and extras (``stamp_flux``, ``weight``, ...).

Flux units: the COSMOS stamps are ACS F814W images normalised to a count rate, counts/s
(an effective 1 s exposure), whose AB zero point is 25.94 (GalSim documents both in
``galsim/galaxy_sample.py``: the ``COSMOSCatalog`` ``exptime`` note "the processed
COSMOS ACS/HST science images have units of counts/second" and ``makeGalaxy``: "drawing
into an image with the COSMOS bandpass, zeropoint of 25.94 ... should give the right
pixel values to mimic the actual COSMOS science images"; ``galsim.real.
real_galaxy_bandpasses['F814W']`` holds 25.94333).  So ``mag = 25.94 - 2.5 log10(sum)``;
on the test stamps this agrees with the catalog ``mag_auto`` to 0.1 mag.

``flux_radius`` of the ``_fits`` catalog is SExtractor's FLUX_RADIUS in 0.03" pixels
(Leauthaud et al. 2007): on the test stamps it agrees with the half-light radius measured
on the images to ~10%; it is copied unchanged, since the stamps keep the catalog's 0.03"
pixels.

Catalog defects are handled by :mod:`galsim_vae.data.cosmos_repair`.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputDataError
from ..io_utils import check_output_path, progress
from . import cosmos_repair as repair
from .cosmos_selection import CosmosSelection, select_galaxies
from .merge import check_shard
from .noise import NoiseModelTable
from .writer import DatasetWriter

#: Default stamp side (pixels) of each COSMOS sample: 128 for F814W < 23.5 and 158 for
#: F814W < 25.2, at 0.03 arcsec/pixel (3.84" and 4.74").
SEED_STAMP_SIZES = {"23.5": 128, "25.2": 158}
#: Stamp side when the sample is unknown.
DEFAULT_STAMP_SIZE = 128
#: Default PSF side (pixels).  The PSF images of the COSMOS training samples are 37-39
#: pixels on a side (GalSim's example catalog), which 41 holds whole; the ACS F814W PSF
#: FWHM is ~0.1" (~3.5 pixels), and 41 pixels (1.23") keep 97.6% of the light of the
#: 99x99 empirical F814W PSF in tests/data/cosmos_paltas_23.5 (the ``psf_flux_fraction``
#: column records what each galaxy keeps).
DEFAULT_PSF_SIZE = 41
#: AB zero point of the COSMOS F814W count-rate images (GalSim's COSMOSCatalog docs).
COSMOS_F814W_ZEROPOINT = 25.94
#: Flux units of the data set (see the module docstring).
FLUX_UNITS = "counts/s (HST ACS F814W, AB zero point 25.94)"
#: What to do with stamps larger than the output size.
OVERSIZE_POLICIES = ("crop", "reject", "error")

#: Extra catalog columns written beside the standard ones.
EXTRA_COLUMNS = {
    "catalog_index": "i8",     # row of the real-galaxy catalog
    "ra": "f8", "dec": "f8",   # degrees
    "mag": "f8",               # catalog MAG (F814W AB)
    "weight": "f8",            # catalog WEIGHT (selection weight, GalSim normalises by max)
    "stamp_flux": "f8",        # catalog stamp_flux: sum of the original stamp, counts/s
    "flux_in_stamp": "f8",     # sum of the original pixels kept in the output stamp
    "noise_mean": "f8",        # catalog NOISE_MEAN (not subtracted, as GalSim does)
    "orig_nx": "i4", "orig_ny": "i4",            # size of the original stamp
    "noise_model": "i4",       # row of noise_rootps.npy (the noise correlation), -1 white
    "centre_offset_x": "f4", "centre_offset_y": "f4",  # see place_centred
    "cropped": "bool", "padded": "bool",
    "gal_hdu": "i4",           # HDU the stamp was read from (after any repair)
    "hdu_repaired": "bool",
    "psf_flux_fraction": "f8",  # fraction of the PSF image's sum inside psf_size
    "sersic_n": "f8",          # _fits sersicfit[:, 2] (NaN if absent)
    "sersic_hlr": "f8",        # _fits hlr[:, 0], arcsec (NaN if absent)
}


def place_centred(array: np.ndarray, size: int, canvas: np.ndarray | None = None, *,
                  centre: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, tuple[float, float], tuple[slice, slice]]:
    """Crop or pad ``array`` to ``size`` x ``size`` keeping its centre, by whole pixels.

    Centring: a stamp of n pixels has its centre, as GalSim's ``true_center`` places a
    profile, at 0-based position (n-1)/2 (a pixel centre for odd n, the corner between
    pixels n/2-1 and n/2 for even n).  Pixel ``n//2`` of the input goes to pixel
    ``size//2`` of the output (input index = output index + n//2 - size//2), i.e. the
    stamp is shifted by whole pixels only, so its pixels and noise are untouched.  When n
    and ``size`` have the same parity the input centre lands exactly on the output's
    ``true_center`` (size-1)/2; otherwise it lands half a pixel off: at ``size//2``
    (+0.5) for odd n and even ``size``, at ``size//2 - 0.5`` (-0.5) for even n and odd
    ``size``.  The returned offsets (x, y) = input centre - output ``true_center`` are
    0 or +-0.5.  Resampling by half a pixel would alter the HST pixels and their noise
    correlations, so it is not done.

    Parameters:
        array:  2-D input (ny, nx).
        size:   Output side S.
        canvas: (S, S) array to fill outside the input (e.g. noise); zeros if None.
        centre: (row, column) of the input pixel to put at ``size//2`` instead of
                ``(ny//2, nx//2)`` (PSFs are centred on their brightest pixel).

    Returns:
        (output, (offset_x, offset_y), (input rows, input columns) kept in the output).
    """
    out = np.zeros((size, size)) if canvas is None else np.array(canvas, dtype=np.float64)
    slices_out, slices_in, offsets = [], [], []
    centre = tuple(n // 2 for n in array.shape) if centre is None else centre
    for n, c in zip(array.shape, centre):
        k = int(c) - size // 2
        lo, hi = max(0, -k), min(size, n - k)
        slices_out.append(slice(lo, hi))
        slices_in.append(slice(lo + k, hi + k))
        offsets.append((n - size) / 2.0 - k)
    out[slices_out[0], slices_out[1]] = array[slices_in[0], slices_in[1]]
    return out, (offsets[1], offsets[0]), (slices_in[0], slices_in[1])


def noise_seed_for(ident: Any, seed: int = 0) -> int:
    """Deterministic GalSim seed (1 .. 2**31-1) of the padding noise of galaxy ``ident``."""
    digest = hashlib.sha1(f"cosmos-pad:{seed}:{ident}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 2) + 1


def prepare_cosmos(out: str | os.PathLike, directory: str | os.PathLike, *,
                   file_name: str | None = None, sample: str | None = None,
                   stamp_size: int | None = None, psf_size: int = DEFAULT_PSF_SIZE,
                   exclusion_level: str = "marginal", min_hlr: float = 0.0,
                   max_hlr: float = 0.0, min_flux: float = 0.0, max_flux: float = 0.0,
                   max_galaxies: int | None = None,
                   psf_file: str | os.PathLike | None = None, oversize: str = "crop",
                   skip_invalid: bool = False, check_hdus: bool = True, noise_seed: int = 0,
                   split_seed: int = 0, overwrite: bool = False,
                   column_map: dict[str, str] | None = None,
                   shard: tuple[int, int] | None = None) -> Path:
    """Write a galsim-vae data set from a GalSim-format COSMOS catalog.

    Galaxies are those GalSim's :class:`galsim.COSMOSCatalog` keeps after its cuts, in
    catalog order (``max_galaxies`` keeps the first ones).  Each stamp is the original
    HST image of :meth:`galsim.RealGalaxyCatalog.getGalImage`, centred, cropped or padded
    to ``stamp_size`` by :func:`place_centred`; padding is noise drawn from the galaxy's
    own noise model (its correlation function scaled to its ``NOISE_VARIANCE``, as
    :meth:`galsim.RealGalaxyCatalog.getNoise`; see
    :class:`galsim_vae.data.cosmos_repair.PaddingNoise`) with the seed
    :func:`noise_seed_for` (ident, ``noise_seed``), so a galaxy's padding does not depend
    on the others.  PSFs are shifted by whole pixels to put their brightest pixel at
    ``psf_size//2`` (the centre for odd ``psf_size``; the PSF images of the COSMOS
    samples peak one pixel above and right of their ``n//2`` pixel, so centring them by
    size would offset them), zero-padded or cropped, and normalised to unit sum.
    Image files are read one at a time (GalSim's cache is closed between files), so
    memory stays flat (~150 MB) whatever the catalog size.

    Parameters:
        out:             Output data set folder.
        directory:       Folder of the catalog and of the files it names.
        file_name:       Catalog file name in ``directory`` [default: from ``sample``,
                         or the only ``real_galaxy_catalog*.fits`` there].
        sample:          '23.5' or '25.2': default file name and stamp size.
        stamp_size:      Output stamp side, pixels [default: 128 for 23.5, 158 for 25.2].
        psf_size:        PSF image side, pixels [default: 41].
        exclusion_level: GalSim's 'none', 'bad_stamp', 'bad_fits' or 'marginal'
                         [default: 'marginal', as COSMOSCatalog].
        min_hlr, max_hlr: GalSim's cuts on the Sersic-fit half-light radius, arcsec
                         (0: no cut).
        min_flux, max_flux: GalSim's cuts on the Sersic-fit flux, counts/s (0: no cut).
        max_galaxies:    Keep at most this many galaxies (the first after the cuts).
        psf_file:        FITS image of an HST PSF at the catalog's pixel scale given to
                         every galaxy when the catalog's PSF files are missing.
        oversize:        Stamps larger than ``stamp_size``: 'crop' (keep the centre),
                         'reject' (leave the galaxy out) or 'error'.
        skip_invalid:    Leave out galaxies whose stamp has NaN/inf pixels instead of
                         failing.
        check_hdus:      Check each stamp against the catalog's ``stamp_flux`` and repair
                         wrong ``GAL_HDU`` numbers [default: True].
        noise_seed:      Seed of the padding noise.
        split_seed:      Seed of the train/validation/test split.
        overwrite:       Replace an existing ``out``.
        column_map:      Data-set column -> catalog column for ``zphot``, ``mag_auto``,
                         ``flux_radius`` (e.g. ``{"mag_auto": "HSC_i"}``); without it each
                         is matched by name in any case, ``mag_auto`` falls back to the
                         catalog's ``MAG``, and a missing one is NaN, with a warning.
        shard:           ``(i, n)``, 1 <= i <= n: only the i-th of n contiguous blocks of
                         the selected galaxies (catalog order, so each shard reads its own
                         image files); :func:`galsim_vae.data.merge.merge_datasets` joins
                         the n shards into the data set one run would have written.

    Returns:
        The data set folder.

    Raises:
        MissingInputError: catalog, ``_fits`` catalog, image or (without ``psf_file``)
            PSF file missing.
        InputDataError: missing columns, misaligned catalogs, empty selection, stamps
            that cannot be read/repaired, NaN pixels, oversize stamps with 'error'.
        OutputExistsError: ``out`` exists and not ``overwrite``.
    """
    import galsim

    check_output_path(out, overwrite=overwrite)
    if oversize not in OVERSIZE_POLICIES:
        raise InputDataError(f"oversize must be one of {list(OVERSIZE_POLICIES)}, got {oversize!r}")
    if max_galaxies is not None and max_galaxies < 1:
        raise InputDataError(f"max_galaxies must be >= 1, got {max_galaxies}")
    cuts = {"min_hlr": min_hlr, "max_hlr": max_hlr, "min_flux": min_flux, "max_flux": max_flux}
    for name, value in cuts.items():
        if not (math.isfinite(value) and value >= 0):
            raise InputDataError(f"{name} must be a finite number >= 0 (0: no cut), got {value}")
    notes: list[str] = []
    sel = select_galaxies(directory, file_name=file_name, sample=sample,
                          exclusion_level=exclusion_level, cuts=cuts,
                          max_galaxies=max_galaxies, notes=notes, column_map=column_map)
    n_selected_all = len(sel.indices)
    if shard is not None:
        sel = replace(sel, indices=np.array_split(sel.indices, check_shard(shard)[1])[shard[0] - 1])
    if stamp_size is None:
        stamp_size = SEED_STAMP_SIZES.get(sel.sample, DEFAULT_STAMP_SIZE)
    if stamp_size < 8 or psf_size < 3:
        raise InputDataError(f"stamp_size must be >= 8 and psf_size >= 3 pixels, got "
                             f"{stamp_size} and {psf_size}")

    # files: check, repair in memory or fail, before anything is written
    rgc = sel.rgc
    repair.check_galaxy_files(rgc, sel.indices, sel.sample)
    psf_source = repair.repair_psf_files(rgc, sel.indices, psf_file, notes)
    noise_info = repair.repair_noise_files(rgc, sel.indices, notes)
    scales = np.asarray(rgc.pixel_scale, dtype=np.float64)[sel.indices]
    pixel_scale = float(np.round(scales[0], 6))
    if not np.all(np.abs(scales - pixel_scale) < 1e-6):
        raise InputDataError(
            f"catalog {str(sel.catalog)!r} mixes pixel scales "
            f"{sorted(set(np.round(scales, 6)))} arcsec; a data set has one. Fix: prepare "
            "each pixel scale separately")

    n_total = len(sel.idents)
    source: dict[str, Any] = {
        "kind": "cosmos", "catalog": str(sel.catalog.absolute()),
        "parameter_catalog": (str(sel.param_path.absolute()) if sel.param_path.is_file()
                              else None),
        "selection_catalog": (str(repair.companion_path(sel.catalog, "selection").absolute())
                              if sel.level in ("bad_stamp", "marginal") else None),
        "sample": sel.sample, "galsim_version": galsim.__version__,
        "cuts": {"exclusion_level_requested": exclusion_level, "exclusion_level": sel.level,
                 **cuts},
        "order": "catalog order after GalSim's cuts",
        "stamps": "original HST stamps (RealGalaxyCatalog.getGalImage), whole-pixel "
                  "centring (galsim_vae.data.cosmos.place_centred), padded with noise",
        "oversize": oversize, "psf_source": psf_source, "noise": noise_info,
        "noise_seed": noise_seed,
        "flux_reference": "GalSim COSMOSCatalog docs: counts/s, F814W AB zero point 25.94",
        "n_catalog": n_total, "n_after_cuts": sel.n_after_cuts, "n_selected": len(sel.indices),
    }
    if shard is not None:
        source["shard"] = {"index": int(shard[0]), "count": int(shard[1]),
                           "n_selected_all_shards": n_selected_all}
    rejected = {"cuts": n_total - sel.n_after_cuts,
                "max_galaxies": sel.n_after_cuts - n_selected_all,
                "oversize": 0, "invalid_pixels": 0, "invalid_psf": 0}
    with DatasetWriter(out, max_galaxies=len(sel.indices), stamp_size=stamp_size,
                       psf_size=psf_size, pixel_scale=pixel_scale, flux_units=FLUX_UNITS,
                       source=source, extra_columns=EXTRA_COLUMNS, split_seed=split_seed,
                       overwrite=overwrite) as writer:
        hdus = repair.HduChecker(rgc, notes, enabled=check_hdus)
        noise_models = NoiseModelTable()
        writer_counts = _write_galaxies(
            writer, sel, hdus, repair.PaddingNoise(rgc), rejected, oversize=oversize,
            skip_invalid=skip_invalid, noise_seed=noise_seed, noise_models=noise_models)
        writer.set_noise_models(noise_models.array())
        hdus.summary()
        if writer_counts["n_cropped"]:
            repair.warn(notes, f"{writer_counts['n_cropped']} stamps larger than "
                               f"{stamp_size}x{stamp_size} were cropped around their centre "
                               "(column 'cropped'; 'flux_in_stamp' vs 'stamp_flux' shows the "
                               "flux kept)")
        if writer.count == 0:
            raise InputDataError(f"every selected galaxy of {str(sel.catalog)!r} was rejected "
                                 f"({rejected}); nothing to write")
        source.update({"n_written": writer.count, **writer_counts, "rejected": rejected,
                       "hdu_repairs": hdus.repairs, "warnings": notes})
        writer.source = source
    return Path(out)


def _write_galaxies(writer: DatasetWriter, sel: CosmosSelection, hdus, padding,
                    rejected: dict[str, int], *, oversize: str, skip_invalid: bool,
                    noise_seed: int, noise_models: NoiseModelTable) -> dict[str, int]:
    """Add the selected galaxies to ``writer``; count rejections into ``rejected`` and
    each galaxy's noise model (its correlation file at its pixel scale) into
    ``noise_models``.  Returns the numbers of cropped and padded stamps."""
    rgc, size, columns = sel.rgc, writer.stamp_size, sel.columns
    noise_files = rgc.noise_file_name
    counts = {"n_cropped": 0, "n_padded": 0}
    current_file = None
    for index in progress(sel.indices, total=len(sel.indices), desc="COSMOS stamps"):
        index = int(index)
        gal_file = rgc.gal_file_name[index]
        if gal_file != current_file:  # keep one image file in memory at a time
            rgc.close()
            current_file = gal_file
        ident = sel.idents[index].item()
        given_hdu = int(rgc.gal_hdu[index])
        stamp = hdus.image(index).array
        where = f"HDU {given_hdu} of {gal_file!r}"
        problem = _invalid_image(stamp)
        if problem is not None:
            if not skip_invalid:
                raise InputDataError(
                    f"galaxy IDENT {ident}: stamp ({where}) {problem}. Fix: pass "
                    "skip_invalid=True (--skip-invalid) to leave such galaxies out")
            rejected["invalid_pixels"] += 1
            continue
        ny, nx = stamp.shape
        cropped, padded = max(nx, ny) > size, min(nx, ny) < size
        if cropped and oversize != "crop":
            if oversize == "error":
                raise InputDataError(
                    f"galaxy IDENT {ident}: stamp {ny}x{nx} ({where}) does not fit in "
                    f"{size}x{size}. Fix: a larger --stamp-size, or --oversize crop|reject")
            rejected["oversize"] += 1
            continue
        canvas = (padding.field(index, (size, size), noise_seed_for(ident, noise_seed))
                  if padded else None)
        image, (off_x, off_y), kept = place_centred(stamp, size, canvas)
        psf_raw = repair.read_catalog_image(rgc, index, "PSF").array
        problem = _invalid_image(psf_raw, need_positive_sum=True)
        if problem is not None:
            if not skip_invalid:
                raise InputDataError(
                    f"galaxy IDENT {ident}: PSF image (HDU {int(rgc.psf_hdu[index])} of "
                    f"{rgc.psf_file_name[index]!r}) {problem}. Fix: pass skip_invalid=True "
                    "(--skip-invalid) to leave such galaxies out")
            rejected["invalid_psf"] += 1
            continue
        psf_total = float(np.sum(psf_raw))
        peak = np.unravel_index(int(np.argmax(psf_raw)), psf_raw.shape)
        psf, _, _ = place_centred(psf_raw, writer.psf_size, centre=peak)
        counts["n_cropped"] += cropped
        counts["n_padded"] += padded
        key = (None if noise_files is None or noise_files[index] is None
               else (noise_files[index], float(rgc.pixel_scale[index])))
        noise_model = noise_models.index(
            key, lambda i=index: padding.unit_rootps(i, (size, size)))
        writer.add(
            image, ident=ident, noise_variance=float(rgc.variance[index]), psf=psf,
            zphot=columns["zphot"][index], mag_auto=columns["mag_auto"][index],
            flux_radius=columns["flux_radius"][index], catalog_index=index,
            ra=columns["ra"][index], dec=columns["dec"][index], mag=columns["mag"][index],
            weight=columns["weight"][index], stamp_flux=columns["stamp_flux"][index],
            flux_in_stamp=float(np.sum(stamp[kept])), noise_mean=columns["noise_mean"][index],
            orig_nx=nx, orig_ny=ny, centre_offset_x=off_x, centre_offset_y=off_y,
            cropped=cropped, padded=padded, gal_hdu=int(rgc.gal_hdu[index]),
            hdu_repaired=int(rgc.gal_hdu[index]) != given_hdu,
            psf_flux_fraction=float(np.sum(psf)) / psf_total,
            sersic_n=columns["sersic_n"][index], sersic_hlr=columns["sersic_hlr"][index],
            noise_model=noise_model)
    rgc.close()
    return counts


def _invalid_image(pixels: np.ndarray, need_positive_sum: bool = False) -> str | None:
    """What makes a stamp or PSF image unusable (NaN/inf pixels, all zeros, and for a
    PSF a sum that is not positive), or None."""
    bad = int(np.sum(~np.isfinite(pixels)))
    if bad:
        return f"has {bad} NaN/inf pixels"
    if not np.any(pixels):
        return "is all zeros (no signal)"
    if need_positive_sum and not float(np.sum(pixels)) > 0:
        return f"sums to {float(np.sum(pixels)):.4g}, not a positive flux"
    return None
