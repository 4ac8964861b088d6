"""The model-bundle format: save, check and load a trained model with its metadata.

A bundle is a folder (see ``docs/architecture.md``, "Model bundle")::

    model.json          format, version, architecture + hyper-parameters, stamp size,
                        pixel scale (arcsec), flux units and scale, PSF handling,
                        conditions with their training ranges, prior, training
                        provenance, sha256 of every other file
    weights.weights.h5  network weights (Keras 3 ``save_weights``: arrays only)
    prior.weights.h5    weights of the learned flow prior (optional)
    hst_psf.fits        the HST PSF the samples still carry (only when psf_free is false)
    README.md           model card generated from the metadata
    history.csv, loss_curve.png   training logs (optional)

Loading never executes code from the bundle: no pickle, no ``keras.models.load_model``,
no Lambda layers.  The network is rebuilt by package code from ``architecture`` and
plain-valued ``hyperparameters``; only arrays are read from the weight files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import BundleError
from .io_utils import atomic_directory

#: Identifies a galsim-vae model bundle.
BUNDLE_FORMAT = "galsim-vae-bundle"
#: Version of the bundle layout written by this package; bundles up to it are read.
BUNDLE_FORMAT_VERSION = 1
MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.weights.h5"
PRIOR_FILE = "prior.weights.h5"
HST_PSF_FILE = "hst_psf.fits"
MODEL_CARD = "README.md"
#: Keys every ``model.json`` has.
REQUIRED_KEYS = ("format", "format_version", "name", "architecture", "hyperparameters",
                 "latent_size", "stamp_size", "pixel_scale", "flux", "psf_free", "hst_psf",
                 "conditions", "prior", "training", "files")
#: Keys of each entry of ``conditions``.
CONDITION_KEYS = ("name", "mean", "std", "min", "max")

# Keys and values that mark serialised code or objects (Keras configs, jsonpickle, pickle):
# a bundle holds plain numbers and names only, so any of these is refused.
_CODE_KEYS = {"class_name", "module", "registered_name", "py/object", "py/reduce",
              "py/function", "py/type", "__class__", "__reduce__", "function", "lambda",
              "code", "pickle", "config"}
_CODE_VALUES = re.compile(r"^(lambda\b|Lambda$|gAS|gAN|gAJ|\x80)|pickle|__import__|"
                          r"\bexec\(|\beval\(", re.IGNORECASE)
_NAME_VALUE = re.compile(r"^[A-Za-z0-9_.\-+ ]{0,64}$")


# ----------------------------------------------------------------------------- helpers
def sha256_file(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON (numbers, strings, bools, None, lists, dicts)."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise BundleError(f"{where} is {value}: bundle metadata must be finite numbers")
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(list(value))]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise BundleError(f"{where} is a {type(value).__name__}; bundle metadata holds plain "
                      "JSON values only (numbers, strings, lists, dicts)")


def _reject_code(tree: Any, where: str, source: str) -> None:
    """Raise BundleError if ``tree`` (parsed model.json) holds anything that describes code
    or a serialised Python object: Keras layer configs (``class_name``), Lambda layers,
    jsonpickle/pickle payloads."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if str(key).lower() in _CODE_KEYS:
                raise BundleError(
                    f"{source}: {where}.{key} describes a serialised object or code; "
                    "galsim-vae bundles hold plain hyper-parameters only and are never "
                    "deserialised into code. Re-save the model with galsim_vae.bundle.save_bundle")
            _reject_code(value, f"{where}.{key}", source)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            _reject_code(value, f"{where}[{i}]", source)
    elif isinstance(tree, str) and _CODE_VALUES.search(tree):
        raise BundleError(
            f"{source}: {where} = {tree[:40]!r} names code or a pickled object; galsim-vae "
            "bundles hold plain hyper-parameters only (no Lambda layers, no pickle)")


def _check_hyperparameters(hp: Any, source: str) -> dict[str, Any]:
    """Hyper-parameters must be a flat dict of numbers, bools, None, short names, or lists
    of those: the keyword arguments of ``build_model``."""
    if not isinstance(hp, Mapping):
        raise BundleError(f"{source}: 'hyperparameters' must be an object of build_model "
                          f"keyword arguments, got {type(hp).__name__}")

    def check(value: Any, where: str) -> None:
        if value is None or isinstance(value, (bool, int, float)):
            return
        if isinstance(value, str):
            if not _NAME_VALUE.match(value):
                raise BundleError(f"{source}: hyperparameters.{where} = {value[:40]!r} is not "
                                  "a plain name (letters, digits, _.-+, at most 64 characters)")
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, (list, dict)):
                    raise BundleError(f"{source}: hyperparameters.{where}[{i}] is nested; "
                                      "hyper-parameters are numbers, names or flat lists")
                check(v, f"{where}[{i}]")
            return
        raise BundleError(f"{source}: hyperparameters.{where} is a {type(value).__name__}; "
                          "hyper-parameters are numbers, names or flat lists (an object here "
                          "would be a serialised layer, which bundles never hold)")

    for key, value in hp.items():
        check(value, str(key))
    return dict(hp)


def _describe_hardware() -> dict[str, Any]:
    """CPU model, core count and visible GPU names (for the model card)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus: list[str] = []
    try:
        import tensorflow as tf

        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            gpus.append(str(details.get("device_name", device.name)))
    except Exception:  # noqa: BLE001 - hardware description is best effort
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus}


# ------------------------------------------------------------------------------- save
def save_bundle(model, path: str | os.PathLike, *, name: str, flux_scale: float,
                flux_units: str, pixel_scale: float, conditions: Sequence[Mapping[str, Any]],
                psf_free: bool, prior=None, training_info: Mapping[str, Any] | None = None,
                model_card: str | None = None, hst_psf: np.ndarray | None = None,
                extra_files: Mapping[str, str | os.PathLike] | None = None,
                overwrite: bool = False) -> Path:
    """Write a model bundle folder, atomically.

    Parameters:
        model:        A ``galsim_vae.models`` model (built, with weights).
        path:         The bundle folder to create.
        name:         Bundle name (what ``load_model(name)`` finds when shipped).
        flux_scale:   Flux units per network unit: generated pixels = output * flux_scale.
        flux_units:   What one generated pixel value means (e.g. ``"counts/s ..."``).
        pixel_scale:  Pixel scale of the generated stamps, arcsec/pixel.
        conditions:   One dict per condition, in the network's order, with ``name``,
                      ``mean``, ``std`` (the standardisation), ``min``, ``max`` (the
                      training range) -- the data set's normalisation.
        psf_free:     True if the decoder outputs PSF-free profiles; False if samples still
                      carry the HST PSF (then pass ``hst_psf`` when it is known).
        prior:        The learned flow prior (``galsim_vae.models.prior.FlowPrior``), or None
                      for the N(0, I) prior (or the model's own conditional prior).
        training_info: Provenance: data set, cuts, splits, hyper-parameters, epochs, beta,
                      losses, time, hardware (plain JSON).
        model_card:   Text of ``README.md``; generated from the metadata when None.
        hst_psf:      (P, P) PSF image carried by the samples, written to ``hst_psf.fits``.
        extra_files:  Further files to copy in: bundle file name -> source path
                      (e.g. ``{"history.csv": ..., "loss_curve.png": ...}``).
        overwrite:    Replace an existing folder at ``path``.

    Returns:
        The bundle path.

    Raises:
        OutputExistsError: ``path`` exists and not ``overwrite``.
        BundleError: metadata that is not plain JSON, conditions missing keys.
    """
    from .models import ARCHITECTURES

    architecture = getattr(model, "architecture", None)
    if architecture not in ARCHITECTURES:
        raise BundleError(f"model architecture {architecture!r} is not one of {ARCHITECTURES}")
    hyperparameters = _plain(model.get_config_dict(), "hyperparameters")
    _check_hyperparameters(hyperparameters, "model")
    conditions = [_plain(dict(c), f"conditions[{i}]") for i, c in enumerate(conditions)]
    for i, cond in enumerate(conditions):
        missing = [k for k in CONDITION_KEYS if k not in cond]
        if missing:
            raise BundleError(f"conditions[{i}] lacks {missing}; each condition needs "
                              f"{list(CONDITION_KEYS)}")
    if len(conditions) != int(model.n_conditions):
        raise BundleError(f"the model takes {model.n_conditions} condition(s) but "
                          f"{len(conditions)} were described: {[c['name'] for c in conditions]}")
    if not (float(flux_scale) > 0 and float(pixel_scale) > 0):
        raise BundleError(f"flux_scale ({flux_scale}) and pixel_scale ({pixel_scale}) must be > 0")
    meta: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "name": str(name),
        "architecture": architecture,
        "hyperparameters": hyperparameters,
        "latent_size": int(model.latent_size),
        "stamp_size": int(model.stamp_size),
        "pixel_scale": float(pixel_scale),
        "pixel_scale_units": "arcsec/pixel",
        "flux": {"units": str(flux_units), "scale": float(flux_scale)},
        "psf_free": bool(psf_free),
        "hst_psf": None if (psf_free or hst_psf is None) else HST_PSF_FILE,
        "conditions": conditions,
        "prior": {"kind": "normal"},
        "training": _plain(dict(training_info or {}), "training"),
        "files": {},
    }
    with atomic_directory(path, overwrite=overwrite) as tmp:
        model.save_weights(str(tmp / WEIGHTS_FILE))
        if prior is not None:
            _build_prior_variables(prior)
            prior.save_weights(str(tmp / PRIOR_FILE))
            prior_hp = _plain(prior.get_config_dict(), "prior.hyperparameters")
            _check_hyperparameters(prior_hp, "prior")
            meta["prior"] = {"kind": "flow", "file": PRIOR_FILE, "hyperparameters": prior_hp}
        if not psf_free and hst_psf is not None:
            from astropy.io import fits

            psf = np.asarray(hst_psf, dtype=np.float64)
            if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
                raise BundleError("hst_psf must be a finite 2-d image with positive sum")
            header = fits.Header()
            header["PIXSCALE"] = (float(pixel_scale), "arcsec/pixel")
            fits.PrimaryHDU((psf / psf.sum()).astype(np.float32), header=header).writeto(
                tmp / HST_PSF_FILE)
        for file_name, source in (extra_files or {}).items():
            if Path(file_name).name != file_name or file_name in (MODEL_JSON, MODEL_CARD):
                raise BundleError(f"extra file name {file_name!r} must be a plain file name "
                                  f"other than {MODEL_JSON} and {MODEL_CARD}")
            shutil.copyfile(source, tmp / file_name)
        card = model_card if model_card is not None else make_model_card(meta)
        (tmp / MODEL_CARD).write_text(card)
        meta["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())
                         if p.is_file() and p.name != MODEL_JSON}
        _reject_code({k: v for k, v in meta.items() if k != "training"}, "model.json",
                     "new bundle")
        with open(tmp / MODEL_JSON, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    return Path(path)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def make_model_card(meta: Mapping[str, Any]) -> str:
    """The model card (``README.md``) of a bundle, generated from its metadata: what it
    generates, the data, cuts and splits, hyper-parameters, training time and hardware,
    final losses, and the limits of use."""
    training = dict(meta.get("training") or {})
    data = dict(training.get("data") or {})
    conditions = meta.get("conditions") or []
    lines = [f"# {meta['name']}: galsim-vae {meta['architecture']} model", ""]
    lines += [
        f"A `{meta['architecture']}` variational autoencoder generating "
        f"{meta['stamp_size']}x{meta['stamp_size']}-pixel galaxy stamps at "
        f"{meta['pixel_scale']} arcsec/pixel, pixel values in {meta['flux']['units']} "
        f"(network output x {_fmt(meta['flux']['scale'], 6)}).",
        "",
        ("Samples are PSF-free profiles (the likelihood convolved the decoder output with "
         "each galaxy's own HST PSF, Lanusse et al. 2021): convolve them with your survey PSF."
         if meta["psf_free"] else
         f"Samples still carry the HST PSF (`{meta.get('hst_psf')}`); `VAEGalaxy` deconvolves "
         "it, as GalSim's RealGalaxy does, so only PSFs broader than it are meaningful."
         if meta.get("hst_psf") else
         "Samples carry the PSF of the training images, which was not recorded (the data set "
         "had no PSF images): they cannot be deconvolved."),
        "",
        "Load with `galsim_vae.load_model(...)` or in GalSim YAML "
        "(`input: {vae_model: {file_name: ...}}`, `gal: {type: VAEGalaxy}`).",
        "", "## Conditions", ""]
    if conditions:
        lines.append("| name | training min | training max | mean | std |")
        lines.append("|---|---|---|---|---|")
        for c in conditions:
            lines.append(f"| {c['name']} | {_fmt(c['min'])} | {_fmt(c['max'])} | "
                         f"{_fmt(c['mean'])} | {_fmt(c['std'])} |")
    else:
        lines.append("None: an unconditional model.")
    lines += ["", "## Training data", ""]
    if data:
        for key in ("path", "source", "n_galaxies", "splits", "cuts", "stamp_size",
                    "psf_size", "pixel_scale", "flux_units"):
            if key in data:
                lines.append(f"- {key}: {json.dumps(data[key]) if not isinstance(data[key], str) else data[key]}")
    else:
        lines.append("Not recorded.")
    lines += ["", "## Hyper-parameters", "", "```json",
              json.dumps(meta.get("hyperparameters", {}), indent=2), "```"]
    prior = meta.get("prior") or {}
    lines += ["", f"Latent prior: {prior.get('kind', 'normal')}"
              + (" (RealNVP normalizing flow fitted to the posterior means of the training "
                 "split, Lanusse et al. 2021)" if prior.get("kind") == "flow" else " N(0, I)") + "."]
    settings = {k: v for k, v in training.items()
                if k not in ("data", "final", "hardware", "history")}
    if settings:
        lines += ["", "## Training", ""]
        for key, value in settings.items():
            lines.append(f"- {key}: {_fmt(value) if not isinstance(value, (dict, list)) else json.dumps(value)}")
    hardware = training.get("hardware")
    if hardware:
        gpus = ", ".join(hardware.get("gpus") or []) or "none"
        lines.append(f"- hardware: {hardware.get('cpu')} ({hardware.get('cpu_count')} cores), "
                     f"GPUs: {gpus}")
    final = training.get("final") or {}
    if final:
        lines += ["", "## Final losses (nats per galaxy)", "", "| quantity | value |", "|---|---|"]
        for key, value in final.items():
            lines.append(f"| {key} | {_fmt(value, 6)} |")
    lines += ["", "## Limits", "",
              "- Conditions outside the training ranges above are refused (or clipped on "
              "request): the model has not seen them.",
              f"- Stamps are {meta['stamp_size']} pixels wide: galaxies larger than "
              f"{meta['stamp_size'] * meta['pixel_scale']:.2f} arcsec are truncated.",
              "- The model reproduces the population it was trained on (selection, depth, "
              "band); it is not a physical model of galaxies outside it.",
              "- Generated images include no noise; add the survey's own.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- load
def set_model_card(path: str | os.PathLike, text: str, *,
                   extra_folders: Mapping[str, str | os.PathLike] | None = None) -> Path:
    """Replace a bundle's model card (``README.md``) and refresh its checksum.

    Used to add what is known only after training (the evaluation report, limits, the
    commands to retrain).  The bundle is validated first and rewritten as a whole
    (a copy is edited, then swapped in), so a crash leaves the old bundle intact.

    Parameters:
        path:          The bundle folder.
        text:          The new model card (Markdown).
        extra_folders: Sub-folders to copy into the bundle, e.g. ``{"report": DIR}``;
                       documentation only, not checksummed (the loader never reads them).

    Returns:
        The bundle path.
    """
    path = Path(path)
    meta = read_bundle_metadata(path)
    for folder in (extra_folders or {}):
        if Path(folder).name != folder or folder in meta["files"]:
            raise BundleError(f"extra folder name {folder!r} must be a plain name that is not "
                              "a bundle file")
    with atomic_directory(path, overwrite=True) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(path, tmp)
        (tmp / MODEL_CARD).write_text(text)
        for folder, source in (extra_folders or {}).items():
            shutil.rmtree(tmp / folder, ignore_errors=True)
            shutil.copytree(source, tmp / folder)
        meta["files"][MODEL_CARD] = sha256_file(tmp / MODEL_CARD)
        with open(tmp / MODEL_JSON, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    return path


def read_bundle_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a bundle's ``model.json`` and files without building the model.

    Checks: the folder and ``model.json`` exist and parse; ``format``; ``format_version``
    not newer than this package reads; every required key; conditions; nothing that
    describes code or serialised objects; every file of ``files`` present with the
    recorded sha256; the weight files present.

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
        meta = json.loads((path / MODEL_JSON).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{source!r} is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{source!r} is not a galsim-vae model bundle (format must be "
                          f"{BUNDLE_FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{source!r}: format_version {version!r} is not a positive integer")
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{source!r} has bundle format_version {version}; this galsim-vae "
                          f"reads up to {BUNDLE_FORMAT_VERSION}: upgrade galsim-vae "
                          "(pip install -U galsim-vae)")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{source!r} lacks the keys {missing}")
    # ``training`` is free-form provenance that is only ever displayed, never interpreted.
    _reject_code({k: v for k, v in meta.items() if k != "training"}, "model.json", source)
    _check_hyperparameters(meta["hyperparameters"], source)
    if not isinstance(meta["conditions"], list) or any(
            not isinstance(c, dict) or any(k not in c for k in CONDITION_KEYS)
            for c in meta["conditions"]):
        raise BundleError(f"{source!r}: 'conditions' must be a list of objects with keys "
                          f"{list(CONDITION_KEYS)}")
    flux = meta["flux"]
    if not isinstance(flux, dict) or "units" not in flux or "scale" not in flux:
        raise BundleError(f"{source!r}: 'flux' must be an object with 'units' and 'scale'")
    files = meta["files"]
    if not isinstance(files, dict):
        raise BundleError(f"{source!r}: 'files' must map file names to 'sha256:...' digests")
    required_files = [WEIGHTS_FILE]
    prior = meta["prior"]
    if not isinstance(prior, dict) or prior.get("kind") not in ("normal", "flow"):
        raise BundleError(f"{source!r}: 'prior' must be {{'kind': 'normal'}} or "
                          "{'kind': 'flow', 'file': ..., 'hyperparameters': ...}")
    if prior["kind"] == "flow":
        if Path(str(prior.get("file"))).name != prior.get("file"):
            raise BundleError(f"{source!r}: prior.file must be a file name in the bundle")
        _check_hyperparameters(prior.get("hyperparameters"), source + " (prior)")
        required_files.append(prior["file"])
    if meta["hst_psf"] is not None:
        if not isinstance(meta["hst_psf"], str) or Path(meta["hst_psf"]).name != meta["hst_psf"]:
            raise BundleError(f"{source!r}: hst_psf must be null or a file name in the bundle")
        required_files.append(meta["hst_psf"])
    for file_name in required_files:
        if file_name not in files:
            raise BundleError(f"{source!r}: 'files' has no checksum for {file_name!r}")
    for file_name, digest in files.items():
        if Path(file_name).name != file_name:
            raise BundleError(f"{source!r}: file name {file_name!r} must not contain a folder")
        file_path = path / file_name
        if not file_path.is_file():
            raise BundleError(f"bundle {str(path)!r} lacks the file {file_name!r} listed in "
                              "model.json; the bundle is incomplete: copy it again")
        actual = sha256_file(file_path)
        if actual != digest:
            raise BundleError(f"checksum mismatch for {str(file_path)!r}: model.json records "
                              f"{digest}, the file has {actual}; the file is corrupt or was "
                              "changed: copy the bundle again")
    return meta


def load_bundle(path: str | os.PathLike):
    """Load a model bundle: ``(model, meta)``.

    The metadata is validated (:func:`read_bundle_metadata`), the model is built by
    ``galsim_vae.models.build_model(architecture, **hyperparameters)``, its weights are
    read from ``weights.weights.h5`` (arrays only), and the flow prior, if the bundle has
    one, is rebuilt from its hyper-parameters and attached.

    Raises:
        BundleError: invalid metadata, missing or corrupt file, unknown architecture,
            hyper-parameters the architecture does not take, weights that do not fit.
    """
    path = Path(path)
    meta = read_bundle_metadata(path)
    from .models import ARCHITECTURES, build_model

    source = str(path / MODEL_JSON)
    architecture = meta["architecture"]
    if architecture not in ARCHITECTURES:
        raise BundleError(f"{source!r}: architecture {architecture!r} is not one of "
                          f"{list(ARCHITECTURES)}; it may need a newer galsim-vae")
    try:
        model = build_model(architecture, **meta["hyperparameters"])
    except (TypeError, ValueError) as err:
        raise BundleError(f"{source!r}: cannot build {architecture!r} from its "
                          f"hyperparameters: {err}") from None
    _build_model_variables(model)
    _check_weight_file(path / WEIGHTS_FILE)
    try:
        model.load_weights(str(path / WEIGHTS_FILE))
    except (ValueError, KeyError, OSError) as err:
        raise BundleError(f"{str(path / WEIGHTS_FILE)!r} does not fit the {architecture!r} "
                          f"model described in model.json: {err}") from None
    if meta["prior"]["kind"] == "flow":
        from .models.prior import FlowPrior

        try:
            prior = FlowPrior(**meta["prior"]["hyperparameters"])
        except (TypeError, ValueError) as err:
            raise BundleError(f"{source!r}: cannot build the flow prior from its "
                              f"hyperparameters: {err}") from None
        _build_prior_variables(prior)
        _check_weight_file(path / meta["prior"]["file"])
        try:
            prior.load_weights(str(path / meta["prior"]["file"]))
        except (ValueError, KeyError, OSError) as err:
            raise BundleError(f"{str(path / meta['prior']['file'])!r} does not fit the flow "
                              f"prior described in model.json: {err}") from None
        model.attach_prior(prior)
    return model, meta


def _check_weight_file(path: Path) -> None:
    """Refuse a weight file that is not a Keras ``.weights.h5`` file of plain arrays: a
    pickle, a zip (``.keras``) archive, or a whole serialised Keras model (``model_config``
    attribute: layer classes, maybe Lambda code).  Nothing in it is ever deserialised."""
    import h5py

    fix = ("galsim-vae reads only arrays from Keras .weights.h5 files and never unpickles "
           "or deserialises models: copy the bundle again, or re-save the model with "
           "galsim_vae.bundle.save_bundle")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as f:
            head = f.read(4)
        kind = ("a Python pickle" if head[:1] == b"\x80" else
                "a zip archive (a .keras model?)" if head[:2] == b"PK" else "not an HDF5 file")
        raise BundleError(f"weight file {str(path)!r} is {kind}; {fix}")
    with h5py.File(path, "r") as f:
        config = f.attrs.get("model_config", f.attrs.get("training_config"))
    if config is not None:
        text = config.decode() if isinstance(config, bytes) else str(config)
        code = " including a Lambda layer (Python code)" if '"Lambda"' in text else ""
        raise BundleError(f"weight file {str(path)!r} holds a whole serialised Keras model "
                          f"(a layer configuration{code}), not weights only; {fix}")


def _build_model_variables(model) -> None:
    """Create every variable of ``model`` (weights are loaded into built layers only)."""
    build = getattr(model, "build_all", None)
    if callable(build):
        build()
        return
    import tensorflow as tf

    k = int(model.n_conditions)
    cond = tf.zeros([1, k]) if k else None
    s = int(model.stamp_size)
    model.encode(tf.zeros([1, s, s, 1]), cond)
    model.decode(tf.zeros([1, int(model.latent_size)]), cond)


def _build_prior_variables(prior) -> None:
    """Mark the flow prior built (its layers are built in its constructor) by one call on
    zeros: Keras saves and loads the weights of built models only."""
    if getattr(prior, "built", False):
        return
    import tensorflow as tf

    k = int(prior.n_conditions)
    prior(tf.zeros([1, int(prior.latent_size)]), tf.zeros([1, k]) if k else None)


# ---------------------------------------------------------------------------- resolve
def _trained_folder() -> Path | None:
    """Folder of the bundles shipped with the package (``galsim_vae.trained``), or the
    ``trained/`` folder of a source checkout when that package is not installed."""
    import importlib.resources

    try:
        folder = importlib.resources.files("galsim_vae.trained")
        return Path(str(folder))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / "trained"
        return checkout if (checkout / "__init__.py").is_file() else None


def list_bundles() -> list[str]:
    """Names of the model bundles shipped with galsim-vae (sorted)."""
    folder = _trained_folder()
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / MODEL_JSON).is_file())


def resolve_bundle(name_or_path: str | os.PathLike) -> Path:
    """The folder of a bundle given by path or by the name of a shipped bundle.

    An existing folder path is returned as it is; otherwise ``name_or_path`` is looked up
    among the bundles of the installed ``galsim_vae.trained`` package.

    Raises:
        BundleError: neither; the message lists the shipped bundle names.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    folder = _trained_folder()
    if folder is not None and Path(name).name == name and (folder / name).is_dir():
        return folder / name
    available = list_bundles()
    raise BundleError(f"no model bundle {name!r}: it is neither a folder nor a bundle shipped "
                      f"with galsim-vae (available: {', '.join(available) or 'none'})")
