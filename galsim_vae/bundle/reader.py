"""Reading a bundle: :func:`read_bundle` (the validated, migrated spec, checksums checked)
and :func:`load_bundle` (the networks too).

Loading never executes code from the bundle: no pickle, no ``keras.models.load_model``,
no Lambda layers.  The networks are rebuilt by package code from the registered
architecture and prior named in the spec and their plain-valued hyper-parameters; only
arrays are read from the weight files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import BundleError
from .checksums import verify_files
from .spec import MODEL_JSON, BundleSpec
from .weights import build_model_variables, build_prior_variables, check_weight_file


def read_bundle(path: str | os.PathLike) -> BundleSpec:
    """Read and validate a bundle's ``model.json`` and files without building the model.

    Checks: the folder and ``model.json`` exist and parse; the spec
    (:meth:`BundleSpec.from_json`: format, version, keys, values, no code); every file
    of ``files`` present with the recorded sha256; the weight files listed.

    Raises:
        BundleError: naming the bundle, the key or the file, and the fix.
    """
    path = Path(path)
    source = str(path / MODEL_JSON)
    if not path.is_dir():
        raise BundleError(f"model bundle {str(path)!r} is not a folder")
    if not (path / MODEL_JSON).is_file():
        raise BundleError(f"{source!r} does not exist: {str(path)!r} is not a galsim-vae "
                          "model bundle")
    try:
        tree = json.loads((path / MODEL_JSON).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{source!r} is not valid JSON: {err}") from None
    spec = BundleSpec.from_json(tree, source)
    for file_name in spec.required_files():
        if file_name not in spec.files:
            raise BundleError(f"{source!r}: 'files' has no checksum for {file_name!r}")
    verify_files(path, spec.files, source)
    return spec


def load_bundle(path: str | os.PathLike):
    """Load a model bundle: ``(network, spec)``.

    The spec is read and validated (:func:`read_bundle`), the network is built by
    ``galsim_vae.models.build_model(spec.architecture, **spec.hyperparameters)``, its
    weights read from ``weights.weights.h5`` (arrays only), and the prior named by the
    spec is rebuilt from the prior registry and attached.

    Raises:
        BundleError: invalid spec, missing or corrupt file, unknown architecture or
            prior, hyper-parameters the architecture does not take, weights that do not
            fit.
    """
    from ..tf_runtime import import_tensorflow

    path = Path(path)
    spec = read_bundle(path)
    import_tensorflow()
    from ..models import build_model
    from ..models.registry import ARCHITECTURES, build_prior

    source = str(path / MODEL_JSON)
    if spec.architecture not in ARCHITECTURES:
        raise BundleError(f"{source!r}: architecture {spec.architecture!r} is not one of "
                          f"{list(ARCHITECTURES.names())}; it may need a newer galsim-vae")
    try:
        network = build_model(spec.architecture, **spec.hyperparameters)
    except (TypeError, ValueError) as err:
        raise BundleError(f"{source!r}: cannot build {spec.architecture!r} from its "
                          f"hyperparameters: {err}") from None
    _load_weights(network, path / spec.required_files()[0], f"the {spec.architecture!r} model",
                  build_model_variables)
    try:
        prior = build_prior(spec.prior.kind, spec.prior.hyperparameters)
    except (TypeError, ValueError) as err:
        raise BundleError(f"{source!r}: cannot build the {spec.prior.kind} prior from "
                          f"its hyperparameters: {err}") from None
    if prior is not None:
        if spec.prior.file is not None:
            _load_weights(prior, path / spec.prior.file, f"the {spec.prior.kind} prior",
                          build_prior_variables)
        network.attach_prior(prior)
    return network, spec


def _load_weights(network, file: Path, what: str, build) -> None:
    build(network)
    check_weight_file(file)
    try:
        network.load_weights(str(file))
    except (ValueError, KeyError, OSError) as err:
        raise BundleError(f"{str(file)!r} does not fit {what} described in model.json: "
                          f"{err}") from None


def read_hst_psf(path: Path | None, spec: BundleSpec):
    """The bundle's HST PSF image (unit sum; samples that still carry it are deconvolved).

    Raises:
        BundleError: the file is absent, or not a finite 2-d image with positive sum.
    """
    import numpy as np
    from astropy.io import fits

    file_name = spec.hst_psf or "hst_psf.fits"
    if path is None or not (Path(path) / file_name).is_file():
        raise BundleError(
            f"bundle {spec.name!r} says its samples carry the HST PSF (psf_free: false) "
            f"but has no PSF file {file_name!r} in {str(path)!r}; re-save the bundle "
            "with its HST PSF")
    psf = np.asarray(fits.getdata(Path(path) / file_name), dtype=float)
    if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
        raise BundleError(f"HST PSF {str(Path(path) / file_name)!r} is not a finite 2-d "
                          "image with positive sum")
    return psf / psf.sum()
