"""Writing a bundle: :func:`save_bundle` (networks + spec + card, atomically) and
:func:`set_model_card` (a new card after training, checksum refreshed)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..conditions import Condition, as_conditions
from ..errors import BundleError, ConditionError
from ..io_utils import atomic_directory
from .card import make_model_card
from .checksums import file_digests, sha256_file
# at import, not on first use: a training run that ends hours later exports with the
# code it started with, even if the package was changed on disk meanwhile
from .export import export_folder, unexportable
from .reader import read_bundle
from .safety import check_hyperparameters, plain
from .spec import (write_spec, HST_PSF_FILE, MODEL_CARD, MODEL_JSON, PRIOR_FILE, WEIGHTS_FILE, BundleSpec,
                   FluxSpec, PriorSpec, parse_flux_units)
from .weights import build_prior_variables


def save_bundle(model, path: str | os.PathLike, *, name: str, flux_scale: float,
                flux_units: str, pixel_scale: float,
                conditions: Sequence[Condition | Mapping[str, Any]], psf_free: bool,
                prior=None, training_info: Mapping[str, Any] | None = None,
                model_card: str | None = None, hst_psf: np.ndarray | None = None,
                extra_files: Mapping[str, str | os.PathLike] | None = None,
                overwrite: bool = False, band: str | None = None,
                zero_point: float | None = None, export: bool = True) -> Path:
    """Write a model bundle folder, atomically.

    Parameters:
        model:        A ``galsim_vae.models`` model (built, with weights).
        path:         The bundle folder to create.
        name:         Bundle name (what ``load_model(name)`` finds when shipped).
        flux_scale:   Flux units per network unit: generated pixels = output * flux_scale.
        flux_units:   What one generated pixel value means (e.g. ``"counts/s ..."``).
        pixel_scale:  Pixel scale of the generated stamps, arcsec/pixel.
        conditions:   The model's conditions in network order
                      (:class:`~galsim_vae.conditions.Condition` or their dict forms).
        psf_free:     True if the decoder outputs PSF-free profiles; False if samples still
                      carry the HST PSF (then pass ``hst_psf`` when it is known).
        prior:        The learned prior (an entry of the prior registry, e.g.
                      ``FlowPrior``), or None for N(0, I).
        training_info: Provenance: data set, cuts, splits, hyper-parameters, epochs, beta,
                      losses, time, hardware (plain JSON).
        model_card:   Text of ``README.md``; generated from the spec when None.
        hst_psf:      (P, P) PSF image carried by the samples, written to ``hst_psf.fits``.
        extra_files:  Further files to copy in: bundle file name -> source path.
        overwrite:    Replace an existing folder at ``path``.
        band, zero_point: the band and AB zero point of the flux units (default: parsed
                      from ``flux_units``, e.g. ``"... F814W, AB zero point 25.94"``).
        export:       also write the generator as LiteRT flat buffers (the sampling path
                      without TensorFlow, :mod:`galsim_vae.bundle.export`), built from the
                      saved bundle as ``load_model`` reads it.

    Raises:
        OutputExistsError: ``path`` exists and not ``overwrite``.
        BundleError: metadata that is not plain JSON, bad conditions, sizes or scales.
    """
    from ..models.registry import ARCHITECTURES, PRIORS

    architecture = getattr(model, "architecture", None)
    if architecture not in ARCHITECTURES:
        raise BundleError(f"model architecture {architecture!r} is not one of "
                          f"{list(ARCHITECTURES.names())}")
    hyperparameters = check_hyperparameters(plain(model.get_config_dict(), "hyperparameters"),
                                            "model")
    try:
        conditions = as_conditions(conditions)
    except ConditionError as err:
        raise BundleError(f"conditions: {err}") from None
    if len(conditions) != int(model.n_conditions):
        raise BundleError(f"the model takes {model.n_conditions} condition(s) but "
                          f"{len(conditions)} were described: {[c.name for c in conditions]}")
    if not (float(flux_scale) > 0 and float(pixel_scale) > 0):
        raise BundleError(f"flux_scale ({flux_scale}) and pixel_scale ({pixel_scale}) must be > 0")
    parsed_band, parsed_zero_point = parse_flux_units(flux_units)
    prior_spec = PriorSpec()
    if prior is not None:
        kind = next((k for k in PRIORS.names() if PRIORS.get(k) is type(prior)), None)
        if kind is None:
            raise BundleError(f"prior {type(prior).__name__} is not in the prior registry "
                              f"({list(PRIORS.names())})")
        has_weights = PRIORS.info(kind).get("has_weights", True)
        prior_spec = PriorSpec(kind=kind, file=PRIOR_FILE if has_weights else None,
                               hyperparameters=check_hyperparameters(
                                   plain(prior.get_config_dict(), "prior.hyperparameters"),
                                   "prior"))
    spec = BundleSpec(
        name=str(name), architecture=architecture, hyperparameters=hyperparameters,
        latent_size=int(model.latent_size), stamp_size=int(model.stamp_size),
        pixel_scale=float(pixel_scale),
        flux=FluxSpec(units=str(flux_units), scale=float(flux_scale),
                      band=band if band is not None else parsed_band,
                      zero_point=zero_point if zero_point is not None else parsed_zero_point),
        psf_free=bool(psf_free), hst_psf=None if (psf_free or hst_psf is None) else HST_PSF_FILE,
        conditions=conditions, prior=prior_spec,
        training=plain(dict(training_info or {}), "training"), files={})
    with atomic_directory(path, overwrite=overwrite) as tmp:
        model.save_weights(str(tmp / WEIGHTS_FILE))
        if prior_spec.file is not None:
            build_prior_variables(prior)
            prior.save_weights(str(tmp / prior_spec.file))
        if spec.hst_psf is not None:
            _write_psf(tmp / HST_PSF_FILE, hst_psf, pixel_scale)
        for file_name, source in (extra_files or {}).items():
            if Path(file_name).name != file_name or file_name in (MODEL_JSON, MODEL_CARD):
                raise BundleError(f"extra file name {file_name!r} must be a plain file name "
                                  f"other than {MODEL_JSON} and {MODEL_CARD}")
            shutil.copyfile(source, tmp / file_name)
        card = model_card if model_card is not None else make_model_card(spec.to_json())
        (tmp / MODEL_CARD).write_text(card)
        spec = spec.with_files(file_digests(tmp, exclude=(MODEL_JSON,)))
        write_spec(tmp / MODEL_JSON, spec)
        if export:
            _export(tmp)
    return Path(path)


def _export(folder: Path) -> None:
    """Export the generator of the bundle written in ``folder`` (an architecture that
    cannot be exported keeps sampling on TensorFlow, with a warning)."""
    import warnings

    if export_folder(folder, required=False) is None:
        from .reader import load_bundle

        warnings.warn(f"the bundle's generator is not exported: "
                      f"{unexportable(load_bundle(folder)[0])}; it samples with TensorFlow",
                      RuntimeWarning, stacklevel=3)


def _write_psf(path: Path, hst_psf: np.ndarray, pixel_scale: float) -> None:
    from astropy.io import fits

    psf = np.asarray(hst_psf, dtype=np.float64)
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
        raise BundleError("hst_psf must be a finite 2-d image with positive sum")
    header = fits.Header()
    header["PIXSCALE"] = (float(pixel_scale), "arcsec/pixel")
    fits.PrimaryHDU((psf / psf.sum()).astype(np.float32), header=header).writeto(path)


def set_model_card(path: str | os.PathLike, text: str, *,
                   extra_folders: Mapping[str, str | os.PathLike] | None = None,
                   name: str | None = None) -> Path:
    """Replace a bundle's model card (``README.md``) and refresh its checksum.

    Used to add what is known only after training (the evaluation report, limits, the
    commands to retrain).  The bundle is validated first and rewritten as a whole (a copy
    is edited, then swapped in), so a crash leaves the old bundle intact; its
    ``model.json`` is written in the current format version.

    Parameters:
        path:          The bundle folder.
        text:          The new model card (Markdown).
        extra_folders: Sub-folders to copy into the bundle, e.g. ``{"report": DIR}``;
                       documentation only, not checksummed (the loader never reads them).
        name:          A new name for the bundle (``model.json``'s ``name``), e.g. when a
                       training run's bundle is shipped under its public name; None keeps
                       the name.

    Returns:
        The bundle path.
    """
    path = Path(path)
    spec = read_bundle(path)
    if name is not None:
        if not name or Path(name).name != name:
            raise BundleError(f"bundle name {name!r} must be a plain, non-empty name")
        spec = replace(spec, name=name)
    for folder in (extra_folders or {}):
        if Path(folder).name != folder or folder in spec.files:
            raise BundleError(f"extra folder name {folder!r} must be a plain name that is not "
                              "a bundle file")
    with atomic_directory(path, overwrite=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(path, tmp)
        (tmp / MODEL_CARD).write_text(text)
        for folder, source in (extra_folders or {}).items():
            shutil.rmtree(tmp / folder, ignore_errors=True)
            shutil.copytree(source, tmp / folder)
        write_spec(tmp / MODEL_JSON,
                    spec.with_files({**spec.files, MODEL_CARD: sha256_file(tmp / MODEL_CARD)}))
    return path
