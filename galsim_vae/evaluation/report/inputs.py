"""Inputs of the evaluation report: check that a model bundle and a data set agree, and
pick the held-out galaxies.

A bundle generates stamps of a fixed size, at a fixed pixel scale, in physical flux units
(network output x ``flux.scale``).  The data set it is evaluated on must have the same
stamp size and pixel scale, flux units convertible to the bundle's, each galaxy's PSF when
the model is PSF-free (the likelihood convolves it), and every condition column the model
needs.  The two flux scales may differ: pixels are converted to the bundle's network units
as ``image * unit_factor / bundle_flux_scale``, where ``unit_factor`` converts the data
set's flux units to the bundle's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...conditions import redshift_condition, standardise
from ...errors import InputDataError

#: Relative tolerance on the pixel scales of bundle and data set.
PIXEL_SCALE_RTOL = 1e-6


@dataclass
class Compatibility:
    """How data-set pixels map to the bundle's network.

    Attributes:
        unit_factor:    Bundle flux units per data-set flux unit (1 when they are equal).
        net_per_data:   Network units per data-set flux unit,
                        ``unit_factor / bundle_flux_scale``.
        condition_names: Catalog columns the model takes, in its order.
        notes:          Remarks for the report (unit conversion, ...).
    """

    unit_factor: float
    net_per_data: float
    condition_names: tuple[str, ...]
    notes: list[str] = field(default_factory=list)


def _split_units(text: str) -> tuple[str, str]:
    """(unit part, qualifier in parentheses) of a flux-units string, normalised."""
    text = " ".join(str(text).split())
    match = re.match(r"^([^(]*)(\((.*)\))?\s*$", text)
    if match is None:
        return text.lower(), ""
    return match.group(1).strip(), (match.group(3) or "").strip().lower()


def _parse_unit(text: str):
    """An astropy unit for ``text`` (``counts`` read as ``count``), or None."""
    import astropy.units as u

    text = re.sub(r"\bcounts\b", "count", text)
    try:
        return u.Unit(text, parse_strict="raise")
    except (ValueError, TypeError):
        return None


def flux_unit_factor(dataset_units: str, bundle_units: str, *, where: str = "") -> float:
    """Factor converting data-set flux units to the bundle's (pixel * factor).

    Equal strings (up to spacing and case) give 1.  Otherwise the unit parts before any
    parenthesised qualifier (band, zero point) are parsed with astropy; they must be
    convertible and the qualifiers equal.

    Parameters:
        dataset_units:  ``flux_units`` of the data set manifest.
        bundle_units:   ``flux.units`` of the bundle's ``model.json``.
        where:          Text naming the two files, for the error message.

    Raises:
        InputDataError: the units cannot be converted.
    """
    if " ".join(dataset_units.split()).lower() == " ".join(bundle_units.split()).lower():
        return 1.0
    data_unit, data_qual = _split_units(dataset_units)
    bundle_unit, bundle_qual = _split_units(bundle_units)
    parsed_data, parsed_bundle = _parse_unit(data_unit), _parse_unit(bundle_unit)
    if parsed_data is not None and parsed_bundle is not None and data_qual == bundle_qual:
        try:
            return float(parsed_data.to(parsed_bundle))
        except Exception:  # noqa: BLE001 - astropy UnitConversionError and friends
            pass
    raise InputDataError(
        f"flux units differ{where}: the data set's are {dataset_units!r}, the bundle's "
        f"{bundle_units!r}, and they cannot be converted into each other (same band and "
        "zero point needed); evaluate the bundle on a data set prepared like its training set")


def check_compatibility(spec, dataset, *, bundle_path: str = "") -> Compatibility:
    """Check that a bundle (its :class:`~galsim_vae.bundle.BundleSpec`) can be evaluated
    on ``dataset``.

    Parameters:
        spec:        The bundle spec (``GalaxyModel.spec``).
        dataset:     An open :class:`galsim_vae.data.Dataset`.
        bundle_path: The bundle folder, for the messages.

    Returns:
        A :class:`Compatibility`.

    Raises:
        InputDataError: different stamp size or pixel scale, unconvertible flux units,
            missing PSFs for a PSF-free model, PSF size the model does not take, missing
            condition column.
    """
    where = f" (bundle {bundle_path!r}, data set {str(dataset.path)!r})"
    if spec.stamp_size != dataset.stamp_size:
        raise InputDataError(
            f"stamp sizes differ{where}: the bundle generates {spec.stamp_size}x"
            f"{spec.stamp_size} stamps, the data set holds {dataset.stamp_size}x"
            f"{dataset.stamp_size}; evaluate on a data set prepared with --stamp-size "
            f"{spec.stamp_size}")
    if not math.isclose(spec.pixel_scale, dataset.pixel_scale, rel_tol=PIXEL_SCALE_RTOL):
        raise InputDataError(
            f"pixel scales differ{where}: bundle {spec.pixel_scale} arcsec/pixel, data set "
            f"{dataset.pixel_scale} arcsec/pixel; evaluate on a data set at the bundle's scale")
    factor = flux_unit_factor(dataset.flux_units, spec.flux.units, where=where)
    notes = []
    if factor != 1.0:
        notes.append(f"data-set pixels ({dataset.flux_units}) were multiplied by {factor:.6g} "
                     f"to the bundle's units ({spec.flux.units})")
    bundle_scale = spec.flux.scale
    if not math.isclose(bundle_scale, dataset.flux_scale, rel_tol=1e-6):
        notes.append(f"the bundle's flux scale ({bundle_scale:.6g}) differs from the data "
                     f"set's ({dataset.flux_scale:.6g}); pixels were put in the bundle's "
                     "network units (image / bundle flux scale)")
    hp = spec.hyperparameters
    if spec.psf_free:
        if not dataset.has_psf:
            raise InputDataError(
                f"the bundle's model is PSF-free{where}: its likelihood convolves each "
                "galaxy's own PSF, but the data set has no psfs.npy; use a data set with PSFs")
        want = hp.get("psf_size")
        if want is not None and int(want) != dataset.psf_size:
            raise InputDataError(
                f"PSF sizes differ{where}: the model takes {want}x{want} PSFs, the data set "
                f"has {dataset.psf_size}x{dataset.psf_size}; prepare the data set with "
                f"--psf-size {want}")
    names = tuple(c.name for c in spec.conditions)
    catalog = dataset.catalog
    for name in names:
        if name not in catalog.colnames:
            raise InputDataError(
                f"the model is conditioned on {name!r}{where}, but the data set catalog has no "
                f"such column (columns: {', '.join(catalog.colnames)}); use a data set with it "
                f"(for a COSMOS-format catalog: prepare it again with --column {name}=COLUMN)")
        if not np.isfinite(np.asarray(catalog[name], dtype=float)).any():
            raise InputDataError(f"the model is conditioned on {name!r}{where}, but no galaxy "
                                 f"of the data set has a finite {name!r}; if the catalog has "
                                 f"it under another name, prepare the data set again with "
                                 f"--column {name}=COLUMN")
    return Compatibility(unit_factor=factor, net_per_data=factor / bundle_scale,
                         condition_names=names, notes=notes)


def condition_range_notes(spec, raw: np.ndarray) -> list[str]:
    """Notes on held-out condition values (N, k) outside the bundle's training ranges."""
    notes = []
    for i, condition in enumerate(spec.conditions):
        low, high = condition.min, condition.max
        outside = int(np.sum((raw[:, i] < low) | (raw[:, i] > high)))
        if outside:
            notes.append(f"{outside} held-out galaxies have {condition.name} outside the "
                         f"training range [{low:.4g}, {high:.4g}]: the model extrapolates there")
    return notes


def training_data_notes(spec, dataset, split: str) -> list[str]:
    """Say whether the evaluated galaxies come from the bundle's training data set.

    The bundle records the folder it was trained on (``training.data.path``).  Evaluating
    the training or ``all`` split of that same data set includes training galaxies; any
    other data set is independent of the training (e.g. real galaxies for a model trained
    on a simulated survey).
    """
    trained_on = (spec.training.get("data") or {}).get("path")
    if not trained_on:
        return ["the bundle does not record its training data set"]
    same = Path(str(trained_on)).resolve() == Path(dataset.path).resolve()
    if not same:
        return [f"the model was trained on {trained_on!r}, not on this data set: every "
                "galaxy evaluated here is unseen in training"]
    if split in ("train", "all"):
        return [f"the {split} split of the training data set includes galaxies the model "
                "was trained on: reconstructions and comparisons are optimistic"]
    return []


#: ``split`` values of :func:`select_heldout`.
HELDOUT_SPLITS = ("auto", "test", "validation", "train", "all")


def select_heldout(dataset, condition_names: Sequence[str], *, max_heldout: int | None = None,
                   seed: int = 0, split: str = "auto") -> tuple[np.ndarray, str, list[str]]:
    """Rows of the galaxies to evaluate on.

    Parameters:
        dataset:         The :class:`~galsim_vae.data.Dataset`.
        condition_names: Columns that must be finite (rows without them are left out).
        max_heldout:     Keep a random subset (seeded numpy Generator) of this size, sorted.
        seed:            Seed of that subset.
        split:           ``"auto"`` (the test split, else the validation split), one
                         split by name, or ``"all"`` (every row: for a data set the model
                         never saw, e.g. real galaxies for a model trained on a simulation).

    Returns:
        (sorted row indices, split name, notes for the report).

    Raises:
        InputDataError: unknown ``split``; no rows; ``max_heldout`` < 1.
    """
    import warnings

    if split not in HELDOUT_SPLITS:
        raise InputDataError(f"split must be one of {list(HELDOUT_SPLITS)}, got {split!r}")
    if max_heldout is not None and (isinstance(max_heldout, bool) or int(max_heldout) < 1):
        raise InputDataError(f"max_heldout must be >= 1 (or None for all), got {max_heldout!r}")
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = "test" if split == "auto" else split
        rows = dataset.indices(None if name == "all" else name, require_finite=condition_names)
        if rows.size == 0 and split == "auto":
            rows = dataset.indices("validation", require_finite=condition_names)
            name = "validation"
            notes.append("the test split is empty: the validation split is used as the "
                         "held-out set (the model was monitored on it during training, so "
                         "it is not fully independent)")
    notes += [str(w.message) for w in caught]
    if rows.size == 0:
        which = ("test or validation galaxies" if split == "auto" else
                 "galaxies" if split == "all" else f"galaxies in its {split} split")
        raise InputDataError(
            f"data set {str(dataset.path)!r} has no {which}"
            + (f" with finite {', '.join(condition_names)}" if condition_names else "")
            + ": there is nothing to evaluate on"
            + ("; prepare it with non-zero test and validation fractions, or evaluate on "
               "every row with split 'all'" if split == "auto" else ""))
    if max_heldout is not None and rows.size > int(max_heldout):
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, size=int(max_heldout), replace=False))
        notes.append(f"a random subset of {int(max_heldout)} held-out galaxies (seed {seed}) "
                     "was used (--max-heldout)")
    return np.asarray(rows, dtype=np.int64), name, notes


@dataclass
class HeldOut:
    """The held-out galaxies, in data-set flux units.

    Attributes:
        rows:        Data-set row indices (N,).
        split:       ``"test"`` or ``"validation"``.
        noise_sigma: (N,) pixel noise std, data-set flux units.
        noise_rootps: (N, S, S//2 + 1) root power spectra of the data's correlated noise,
                     or None when the data set records none (white noise).
        psfs:        (N, P, P) unit-sum PSFs, or None when the data set has none.
        raw_conditions: (N, k) raw condition values (the model's columns).
        conditions:  (N, k) standardised with the bundle's statistics (or None if k = 0).
        redshift:    (N,) redshift to colour and bin by (the condition whose role is the
                     redshift, else the data set's ``zphot``), or None.
        redshift_name: Column of ``redshift``.
        idents:      (N,) catalog identifiers.
    """

    rows: np.ndarray
    split: str
    noise_sigma: np.ndarray
    psfs: np.ndarray | None
    raw_conditions: np.ndarray
    conditions: np.ndarray | None
    redshift: np.ndarray | None
    redshift_name: str | None
    idents: np.ndarray
    noise_rootps: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.size)

    def noise_of(self, positions: np.ndarray) -> dict[str, Any]:
        """``noise_sigma`` and ``noise_rootps`` of held-out positions ``positions``, as
        :func:`galsim_vae.evaluation.render.observe_like_data` takes them."""
        return {"noise_sigma": self.noise_sigma[positions],
                "noise_rootps": (None if self.noise_rootps is None
                                 else self.noise_rootps[positions])}

    @property
    def noise_description(self) -> str:
        """How model images are given the data's noise, for the report."""
        if self.noise_rootps is None:
            return ("white Gaussian noise of each galaxy's variance (the data set records no "
                    "noise correlation)")
        return ("Gaussian noise of each galaxy's variance with the data set's own noise "
                "correlation (its noise power spectra)")


def load_heldout(dataset, spec, rows: np.ndarray, split: str,
                 condition_names: Sequence[str]) -> HeldOut:
    """Catalog values and PSFs of the held-out rows (the images stay memory-mapped)."""
    catalog = dataset.catalog
    noise = np.sqrt(np.asarray(catalog["noise_variance"], dtype=np.float64)[rows])
    psfs = None if dataset.psfs is None else np.asarray(dataset.psfs[rows], dtype=np.float64)
    raw = np.stack([np.asarray(catalog[n], dtype=np.float64)[rows] for n in condition_names],
                   axis=-1) if condition_names else np.zeros((rows.size, 0))
    conditions = (standardise(spec.conditions, raw) if condition_names
                  else None)
    redshift, redshift_name = None, None
    target = redshift_condition(spec.conditions)   # the redshift role, else the only one
    if condition_names and target is not None and target.name in condition_names:
        k = list(condition_names).index(target.name)
        redshift, redshift_name = raw[:, k], target.name
    elif "zphot" in catalog.colnames:
        values = np.asarray(catalog["zphot"], dtype=np.float64)[rows]
        if np.isfinite(values).any():
            redshift, redshift_name = values, "zphot"
    return HeldOut(rows=rows, split=split, noise_sigma=noise, psfs=psfs, raw_conditions=raw,
                   conditions=conditions, redshift=redshift, redshift_name=redshift_name,
                   idents=np.asarray(catalog["ident"])[rows],
                   noise_rootps=dataset.noise_rootps(rows))


def read_images(dataset, rows: np.ndarray) -> np.ndarray:
    """Stamps of ``rows`` (sorted reads from the memory map), float64 data-set units."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows)
    out = np.empty((rows.size, dataset.stamp_size, dataset.stamp_size), dtype=np.float64)
    out[order] = np.asarray(dataset.images[rows[order]], dtype=np.float64)
    return out
