"""The typed spec of a model bundle: ``model.json`` as dataclasses, with one reader and
one writer.

:meth:`BundleSpec.from_json` is the only code that reads ``model.json`` keys: it checks
the format, migrates older ``format_version``s, validates every value (finite numbers,
sizes, plain names, no serialised code) and returns typed objects;
:meth:`BundleSpec.to_json` is the only code that writes them.  Everything else (the
generator, the GalSim objects, the evaluation, the trainer) uses the attributes.

Format versions:

- 1: the first layout (conditions ``name, mean, std, min, max``; flux ``units, scale``);
- 2: conditions gain ``role`` and ``units``; flux gains ``band`` and ``zero_point`` (the
  AB magnitude of one flux unit, so ``m = zero_point - 2.5 log10(flux)``).  Version 1 is
  migrated on reading: roles and units from the condition names, band and zero point
  parsed from the flux-units text (``"counts/s (HST ACS F814W, AB zero point 25.94)"``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ..conditions import Condition, check_draws
from ..errors import BundleError, ConditionError
from .safety import check_hyperparameters, plain, reject_code

#: Identifies a galsim-vae model bundle.
BUNDLE_FORMAT = "galsim-vae-bundle"
#: Version of the layout written by this package; every version up to it is read.
BUNDLE_FORMAT_VERSION = 2
#: File names inside a bundle.
MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.weights.h5"
PRIOR_FILE = "prior.weights.h5"
HST_PSF_FILE = "hst_psf.fits"
MODEL_CARD = "README.md"
DECODER_TFLITE = "decoder_b{batch}.tflite"
PRIOR_TFLITE = "prior_b{batch}.tflite"
#: Keys every ``model.json`` has (any version).
REQUIRED_KEYS = ("format", "format_version", "name", "architecture", "hyperparameters",
                 "latent_size", "stamp_size", "pixel_scale", "flux", "psf_free", "hst_psf",
                 "conditions", "prior", "training", "files")
#: Keys of each entry of ``conditions`` (version 1; version 2 adds ``role``, ``units``).
CONDITION_KEYS = ("name", "mean", "std", "min", "max")

_ZERO_POINT = re.compile(r"zero[ _-]?point\s*[=:]?\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
_BAND = re.compile(r"\b(F[0-9]{3,4}[A-Z]{1,2}|[ugrizyUBVRIJHK]-band|VIS)\b")


def parse_flux_units(units: str) -> tuple[str | None, float | None]:
    """(band, AB zero point) named in a flux-units text such as
    ``"counts/s (HST ACS F814W, AB zero point 25.94)"``; None where absent."""
    band = _BAND.search(units or "")
    zero_point = _ZERO_POINT.search(units or "")
    return (band.group(1) if band else None,
            float(zero_point.group(1)) if zero_point else None)


@dataclass(frozen=True)
class FluxSpec:
    """Flux of the generated pixels.

    Parameters:
        units:      what one generated pixel value means, e.g. ``"counts/s (...)"``.
        scale:      flux units per network unit (generated pixels = output x scale).
        band:       the band of the training images (e.g. ``"F814W"``), or None.
        zero_point: AB magnitude of one flux unit (``m = zero_point - 2.5 log10(flux)``),
                    or None when the units are not calibrated.
    """

    units: str
    scale: float
    band: str | None = None
    zero_point: float | None = None


@dataclass(frozen=True)
class PriorSpec:
    """The latent prior: ``kind`` names an entry of the prior registry (``normal``,
    ``flow``...); ``file`` holds its weights (None for parameter-free priors) and
    ``hyperparameters`` rebuild it."""

    kind: str = "normal"
    file: str | None = None
    hyperparameters: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorSpec:
    """The exported generator (``model.json`` ``generator``): the networks that make
    galaxies, as LiteRT flat buffers run without TensorFlow
    (:mod:`galsim_vae.lite_runtime`), each traced at a few fixed batch sizes.

    Parameters:
        batches:      the fixed row counts of the exported calls, ascending (e.g. (1, 16):
                      one galaxy alone, and chunks of 16; other counts are split or
                      padded).  The same row gives the same bits at every size.
        decoders:     decoder file per batch size: (z (b, latent_size), standardised
                      conditions (b, k)) -> profile (b, S, S) in network units.
        priors:       prior-transform file per batch size: (eps, conditions) -> z; None
                      for the N(0, I) prior (z = eps).
        max_relative_difference: largest |LiteRT - TensorFlow| / max|TensorFlow| of the
                      profiles measured at export on random latents.
    """

    batches: tuple
    decoders: tuple
    priors: tuple | None = None
    max_relative_difference: float | None = None

    def files(self) -> list[str]:
        """The bundle files of the exported generator."""
        return list(self.decoders) + list(self.priors or ())

@dataclass(frozen=True)
class BundleSpec:
    """A bundle's ``model.json``, typed (see the module docstring for the versions)."""

    name: str
    architecture: str
    hyperparameters: dict
    latent_size: int
    stamp_size: int
    pixel_scale: float
    flux: FluxSpec
    psf_free: bool
    hst_psf: str | None
    conditions: tuple[Condition, ...]
    prior: PriorSpec
    training: dict
    files: dict
    format_version: int = BUNDLE_FORMAT_VERSION
    generator: GeneratorSpec | None = None

    # ---------------------------------------------------------------- files
    def required_files(self) -> list[str]:
        """The files the networks are read from (they must all have checksums)."""
        out = [WEIGHTS_FILE]
        if self.prior.file is not None:
            out.append(self.prior.file)
        if self.hst_psf is not None:
            out.append(self.hst_psf)
        if self.generator is not None:
            out.extend(self.generator.files())
        return out

    def with_files(self, files: Mapping[str, str]) -> "BundleSpec":
        """The same spec with another ``files`` table."""
        return replace(self, files=dict(files))

    def with_generator(self, generator: GeneratorSpec | None) -> "BundleSpec":
        """The same spec with another exported generator (None: none)."""
        return replace(self, generator=generator)

    # ---------------------------------------------------------------- writer
    def to_json(self) -> dict[str, Any]:
        """The ``model.json`` tree (current format version), plain JSON values only."""
        tree = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "name": self.name,
            "architecture": self.architecture,
            "hyperparameters": plain(self.hyperparameters, "hyperparameters"),
            "latent_size": int(self.latent_size),
            "stamp_size": int(self.stamp_size),
            "pixel_scale": float(self.pixel_scale),
            "pixel_scale_units": "arcsec/pixel",
            "flux": {"units": self.flux.units, "scale": float(self.flux.scale),
                     "band": self.flux.band, "zero_point": self.flux.zero_point},
            "psf_free": bool(self.psf_free),
            "hst_psf": self.hst_psf,
            "conditions": [c.to_dict() for c in self.conditions],
            "prior": _prior_json(self.prior),
            "training": plain(self.training, "training"),
            "files": dict(self.files),
        }
        if self.generator is not None:
            tree["generator"] = {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in asdict(self.generator).items()}
        reject_code({k: v for k, v in tree.items() if k != "training"}, "model.json",
                    "new bundle")
        return tree

    # ---------------------------------------------------------------- reader
    @classmethod
    def from_json(cls, tree: Any, source: str) -> "BundleSpec":
        """Validate (and migrate) a parsed ``model.json``.

        Raises:
            BundleError: naming ``source``, the key and the fix.
        """
        if not isinstance(tree, dict) or tree.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{source!r} is not a galsim-vae model bundle (format must be "
                              f"{BUNDLE_FORMAT!r})")
        version = tree.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BundleError(f"{source!r}: format_version {version!r} is not a positive "
                              "integer")
        if version > BUNDLE_FORMAT_VERSION:
            raise BundleError(f"{source!r} has bundle format_version {version}; this "
                              f"galsim-vae reads up to {BUNDLE_FORMAT_VERSION}: upgrade "
                              "galsim-vae (pip install -U galsim-vae)")
        missing = [k for k in REQUIRED_KEYS if k not in tree]
        if missing:
            raise BundleError(f"{source!r} lacks the keys {missing}")
        # ``training`` is free-form provenance that is only displayed, never interpreted.
        reject_code({k: v for k, v in tree.items() if k != "training"}, "model.json", source)
        hyperparameters = check_hyperparameters(tree["hyperparameters"], source)
        return cls(
            name=_name(tree["name"], source),
            architecture=_name(tree["architecture"], source, "architecture"),
            hyperparameters=hyperparameters,
            latent_size=_positive_int(tree["latent_size"], "latent_size", source),
            stamp_size=_positive_int(tree["stamp_size"], "stamp_size", source),
            pixel_scale=_positive_float(tree["pixel_scale"], "pixel_scale", source),
            flux=_flux(tree["flux"], source),
            psf_free=_bool(tree["psf_free"], "psf_free", source),
            hst_psf=_file_name(tree["hst_psf"], "hst_psf", source, optional=True),
            conditions=_conditions(tree["conditions"], source),
            prior=_prior(tree["prior"], source),
            training=dict(tree["training"]) if isinstance(tree["training"], dict) else {},
            files=_files(tree["files"], source),
            format_version=version,
            generator=_generator(tree.get("generator"), source))


def _prior_json(prior: PriorSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": prior.kind}
    if prior.file is not None:
        out["file"] = prior.file
    if prior.file is not None or prior.hyperparameters:
        out["hyperparameters"] = plain(prior.hyperparameters, "prior.hyperparameters")
    return out


# ------------------------------------------------------------------- field checks
def _name(value: Any, source: str, key: str = "name") -> str:
    if not isinstance(value, str) or not value:
        raise BundleError(f"{source!r}: {key} must be a non-empty string, got {value!r}")
    return value


def _bool(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise BundleError(f"{source!r}: {key} must be true or false, got {value!r}")
    return value


def _positive_int(value: Any, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BundleError(f"{source!r}: {key} must be a whole number >= 1, got {value!r}")
    return value


def _positive_float(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise BundleError(f"{source!r}: {key} must be a finite number > 0, got {value!r}")
    return float(value)


def _file_name(value: Any, key: str, source: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or Path(value).name != value or not value:
        raise BundleError(f"{source!r}: {key} must be {'null or ' if optional else ''}a file "
                          f"name in the bundle, got {value!r}")
    return value


def _flux(value: Any, source: str) -> FluxSpec:
    if not isinstance(value, dict) or "units" not in value or "scale" not in value:
        raise BundleError(f"{source!r}: 'flux' must be an object with 'units' and 'scale'")
    units = str(value["units"])
    band, zero_point = parse_flux_units(units)          # version 1: from the text
    band = value.get("band", band)
    zero_point = value.get("zero_point", zero_point)
    if zero_point is not None and (isinstance(zero_point, bool)
                                   or not isinstance(zero_point, (int, float))
                                   or not math.isfinite(zero_point)):
        raise BundleError(f"{source!r}: flux.zero_point must be a finite number or null, "
                          f"got {zero_point!r}")
    return FluxSpec(units=units, scale=_positive_float(value["scale"], "flux.scale", source),
                    band=None if band is None else str(band),
                    zero_point=None if zero_point is None else float(zero_point))


def _conditions(value: Any, source: str) -> tuple[Condition, ...]:
    if not isinstance(value, list) or any(
            not isinstance(c, dict) or any(k not in c for k in CONDITION_KEYS) for c in value):
        raise BundleError(f"{source!r}: 'conditions' must be a list of objects with keys "
                          f"{list(CONDITION_KEYS)}")
    try:
        conditions = tuple(Condition.from_dict(c) for c in value)
        check_draws(conditions, "conditions")
        return conditions
    except ConditionError as err:
        raise BundleError(f"{source!r}: conditions: {err}") from None


def _prior(value: Any, source: str) -> PriorSpec:
    from ..models.registry import PRIORS

    if not isinstance(value, dict) or value.get("kind") not in PRIORS.names():
        raise BundleError(f"{source!r}: 'prior' must be {{'kind': one of "
                          f"{list(PRIORS.names())}, 'file': ..., 'hyperparameters': ...}}, "
                          f"got {value!r}")
    if not PRIORS.info(value["kind"]).get("has_weights", True):
        hyperparameters = check_hyperparameters(value.get("hyperparameters") or {},
                                                source + " (prior)")
        return PriorSpec(kind=value["kind"], hyperparameters=hyperparameters)
    if "file" not in value:
        raise BundleError(f"{source!r}: prior.file must name the {value['kind']} prior's "
                          "weight file in the bundle")
    hyperparameters = check_hyperparameters(value.get("hyperparameters"), source + " (prior)")
    return PriorSpec(kind=value["kind"], file=_file_name(value["file"], "prior.file", source),
                     hyperparameters=hyperparameters)


def _files(value: Any, source: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BundleError(f"{source!r}: 'files' must map file names to 'sha256:...' digests")
    return dict(value)


def _generator(value: Any, source: str) -> GeneratorSpec | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("batches"), list) \
            or not isinstance(value.get("decoders"), list) \
            or len(value["batches"]) != len(value["decoders"]) or not value["batches"]:
        raise BundleError(f"{source!r}: 'generator' must be an object with 'batches' and "
                          f"'decoders' (lists of the same length) and 'priors', got {value!r}")
    batches = tuple(_positive_int(b, "generator.batches", source) for b in value["batches"])
    if list(batches) != sorted(set(batches)):
        raise BundleError(f"{source!r}: generator.batches must ascend, got {list(batches)}")
    priors = value.get("priors")
    if priors is not None and (not isinstance(priors, list) or len(priors) != len(batches)):
        raise BundleError(f"{source!r}: generator.priors must be null or one file per batch")
    difference = value.get("max_relative_difference")
    if difference is not None and (isinstance(difference, bool)
                                   or not isinstance(difference, (int, float))
                                   or not math.isfinite(difference)):
        raise BundleError(f"{source!r}: generator.max_relative_difference must be a finite "
                          f"number, got {difference!r}")
    return GeneratorSpec(
        batches=batches,
        decoders=tuple(_file_name(f, "generator.decoders", source) for f in value["decoders"]),
        priors=None if priors is None else tuple(
            _file_name(f, "generator.priors", source) for f in priors),
        max_relative_difference=None if difference is None else float(difference))


def write_spec(path: Path, spec: BundleSpec) -> None:
    """Write ``spec`` as ``model.json`` at ``path`` (inside a bundle being written)."""
    with open(path, "w") as f:
        json.dump(spec.to_json(), f, indent=2)
        f.write("\n")
