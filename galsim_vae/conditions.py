"""Conditions: the catalog quantities a model is conditioned on, as one typed description.

A :class:`Condition` holds what every layer needs to know about one conditioning
variable: its name (the catalog column, e.g. ``zphot``), its role (``redshift``,
``magnitude``, ``size`` or ``other``), its units, the standardisation the networks use
(``mean``, ``std`` of the training split) and the training range (``min``, ``max``).
The data sets, the trainer, the bundle spec, :class:`~galsim_vae.GalaxyModel`, the YAML
builder and the evaluation all use this type and the two rules of this module:

- :func:`standardise` maps physical values to the networks' inputs ``(v - mean) / std``;
- :func:`check_values` turns user input (scalars, per-galaxy arrays, a name -> values
  mapping with ``redshift=`` as an alias) into a checked (n, k) array, refusing (or, on
  request, clipping) values outside the training range with one message everywhere.

A condition may be *drawn* (:class:`ConditionDraw`): a user who leaves it out gets it
drawn from its training distribution given the redshift (:func:`fill_drawn`), so a model
that works on flux-normalised stamps (its magnitude condition sets the flux) serves users
who give only a redshift, or nothing.

The role of a column is decided here and only here (:func:`default_role`), by its name
as the GalSim COSMOS catalogs and galsim_hub spell them.  This module imports neither
TensorFlow nor GalSim.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .condition_draw import ConditionDraw
from .errors import ConditionError

#: Roles a condition can play.
ROLES = ("redshift", "magnitude", "size", "other")
#: Column names (lower case) whose role is the redshift (photometric or spectroscopic).
REDSHIFT_NAMES = ("zphot", "redshift", "z", "zspec", "photo_z", "z_phot")
#: Column names (lower case) whose role is a size.
SIZE_NAMES = ("flux_radius", "hlr", "half_light_radius", "r_eff", "r50")
#: Units of the COSMOS catalog columns (``flux_radius`` is in pixels of the stamp: the
#: data sets store it so, see docs/architecture.md).
DEFAULT_UNITS = {"zphot": "", "mag_auto": "mag (AB)", "flux_radius": "pixel"}


def default_role(name: str) -> str:
    """The role of a catalog column, from its name: ``redshift`` for the redshift
    columns of :data:`REDSHIFT_NAMES`, ``magnitude`` for ``mag_*`` / ``*mag`` columns
    (COSMOS ``mag_auto``, HSC ``HSC_i_mag``...), ``size`` for :data:`SIZE_NAMES`, else
    ``other``."""
    lower = str(name).lower()
    if lower in REDSHIFT_NAMES:
        return "redshift"
    if lower.startswith("mag") or lower.endswith("mag") or lower.startswith("magnitude"):
        return "magnitude"
    if lower in SIZE_NAMES:
        return "size"
    return "other"


@dataclass(frozen=True)
class Condition:
    """One conditioning variable of a model.

    Parameters:
        name:  catalog column (and keyword argument) name, e.g. ``"zphot"``.
        mean:  training-split mean (the networks see ``(v - mean) / std``).
        std:   training-split standard deviation (> 0; 0 is read as 1).
        min:   smallest training value (the lower end of the allowed range).
        max:   largest training value.
        role:  ``"redshift"``, ``"magnitude"``, ``"size"`` or ``"other"`` (default: from
               the name, :func:`default_role`).
        units: units of the values (default: those of the COSMOS column, else "").
        drawn: how the condition is drawn when the user leaves it out
               (:class:`ConditionDraw`), or None: the user must give it.
    """

    name: str
    mean: float
    std: float
    min: float
    max: float
    role: str = ""
    units: str = ""
    drawn: ConditionDraw | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConditionError(f"a condition needs a non-empty name, got {self.name!r}")
        for key in ("mean", "std", "min", "max"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not math.isfinite(float(value)):
                raise ConditionError(f"condition {self.name!r}: {key} must be a finite "
                                     f"number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if self.std < 0 or self.min > self.max:
            raise ConditionError(f"condition {self.name!r}: std must be >= 0 and min <= max, "
                                 f"got std {self.std}, range [{self.min}, {self.max}]")
        role = self.role or default_role(self.name)
        if role not in ROLES:
            raise ConditionError(f"condition {self.name!r}: role {role!r} is not one of "
                                 f"{list(ROLES)}")
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "units", str(self.units or DEFAULT_UNITS.get(self.name, "")))

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> "Condition":
        """From a mapping with ``name, mean, std, min, max`` (and optionally ``role``,
        ``units``); other keys (e.g. a data set's ``count``) are ignored."""
        missing = [k for k in ("name", "mean", "std", "min", "max") if k not in entry]
        if missing:
            raise ConditionError(f"condition {dict(entry)!r} lacks {missing}")
        drawn = entry.get("drawn")
        if drawn is not None and not isinstance(drawn, ConditionDraw):
            drawn = ConditionDraw.from_dict(drawn)
        return cls(name=entry["name"], mean=entry["mean"], std=entry["std"], min=entry["min"],
                   max=entry["max"], role=entry.get("role", ""), units=entry.get("units", ""),
                   drawn=drawn)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (the entries of ``model.json`` ``conditions``; ``drawn`` only
        for a drawn condition)."""
        out = asdict(self)
        out.pop("drawn")
        if self.drawn is not None:
            out["drawn"] = self.drawn.to_dict()
        return out

    @property
    def scale(self) -> float:
        """The standardisation divisor: ``std``, or 1 for a constant column."""
        return self.std or 1.0

    def describe(self) -> str:
        """``"zphot in [0.1, 3]"`` (``"... (drawn if not given)"`` for a drawn one)."""
        drawn = "" if self.drawn is None else " (drawn if not given)"
        return f"{self.name} in [{self.min:g}, {self.max:g}]{drawn}"


def as_conditions(entries: Iterable[Condition | Mapping[str, Any]]) -> tuple[Condition, ...]:
    """A tuple of :class:`Condition` from conditions or their dict forms."""
    return tuple(c if isinstance(c, Condition) else Condition.from_dict(c) for c in entries)


def standardise(conditions: Sequence[Condition | Mapping[str, Any]],
                values: np.ndarray) -> np.ndarray:
    """Physical values (N, k) -> the networks' inputs ``(v - mean) / std`` (float32),
    column j standardised with ``conditions[j]``."""
    conditions = as_conditions(conditions)
    values = np.asarray(values, dtype=np.float64).reshape(-1, len(conditions))
    mean = np.array([c.mean for c in conditions])
    scale = np.array([c.scale for c in conditions])
    return ((values - mean) / scale).astype(np.float32)


def describe(conditions: Sequence[Condition]) -> str:
    """``"zphot in [0.1, 3], mag_auto in [18, 25.2]"``."""
    return ", ".join(c.describe() for c in conditions)


def redshift_condition(conditions: Sequence[Condition]) -> Condition | None:
    """The condition whose role is the redshift, else the only condition if its role is
    ``other`` (a redshift column of an unknown name), else None: a model conditioned on a
    magnitude or a size alone has no redshift (``redshift=`` is refused for it, and the
    report bins its galaxies by the catalog's ``zphot``)."""
    for cond in conditions:
        if cond.role == "redshift":
            return cond
    only = conditions[0] if len(conditions) == 1 else None
    return only if only is not None and only.role == "other" else None


def resolve_alias(conditions: Sequence[Condition], given: Mapping[str, Any] | None,
                  model_name: str = "model") -> dict[str, Any]:
    """``given`` with the ``redshift`` alias replaced by the name of the redshift
    condition.

    Raises:
        ConditionError: ``redshift`` for a model without a redshift condition, or given
            together with the condition it stands for.
    """
    given = dict(given or {})
    names = [c.name for c in conditions]
    if "redshift" in given and "redshift" not in names:
        target = redshift_condition(conditions)
        if target is None:
            have = (f"its conditions are {names}" if names else "it has no conditions")
            raise ConditionError(
                f"model {model_name!r} is not conditioned on redshift ({have}); do not "
                f"pass redshift={given['redshift']!r}")
        if target.name in given:
            raise ConditionError(f"redshift= and {target.name}= name the same condition of "
                                 f"model {model_name!r}: give one of them")
        given[target.name] = given.pop("redshift")
    return given


def _given_values(conditions: Sequence[Condition], given: Mapping[str, Any] | None,
                  model_name: str) -> dict[str, Any]:
    """The user's values by condition name (:func:`resolve_alias`); unknown and missing
    names are refused, listing the expected ones."""
    given = resolve_alias(conditions, given, model_name)
    names = [c.name for c in conditions]
    unknown = sorted(set(given) - set(names))
    missing = [c.name for c in conditions if c.name not in given and c.drawn is None]
    if unknown or missing:
        expected = describe(conditions) if conditions else "none"
        target = redshift_condition(conditions)
        hint = "; pass each by its name" + (
            f" (or pass redshift= for {target.name})" if target is not None else "")
        raise ConditionError(
            f"model {model_name!r} takes the conditions {expected}; "
            + (f"unknown: {unknown}" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"missing: {missing}" if missing else "") + hint)
    return given


def check_values(conditions: Sequence[Condition], given: Mapping[str, Any] | None, n: int, *,
                 model_name: str = "model", clip: bool = False) -> np.ndarray | None:
    """User condition values -> a checked (n, k) float64 array in model order.

    Parameters:
        conditions: the model's conditions.
        given:      condition name -> a scalar (the same for all n galaxies) or an array
                    of n values; ``redshift`` is an alias of the redshift condition.
        n:          number of galaxies.
        model_name: for messages.
        clip:       clip values into the training range instead of refusing them.

    Returns:
        None for a model without conditions (then ``given`` must be empty).

    Raises:
        ConditionError: unknown or missing names (the expected ones are listed), arrays of
            the wrong length, NaN/inf, values outside the training range (naming the
            condition, the value and the range, and how to clip).

    A drawn condition (``Condition.drawn``) the user leaves out is a column of NaN here,
    for :func:`fill_drawn` to fill.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConditionError(f"number of galaxies n={n!r} must be a positive integer")
    given = _given_values(conditions, given, model_name)
    if not conditions:
        return None
    values = np.full((n, len(conditions)), np.nan)
    for k, cond in enumerate(conditions):
        if cond.name not in given:                   # drawn: filled by fill_drawn
            continue
        try:
            v = np.asarray(given[cond.name], dtype=float)
        except (TypeError, ValueError):
            raise ConditionError(f"condition {cond.name!r} of model {model_name!r} must be a "
                                 f"number or an array of numbers, got {given[cond.name]!r}") from None
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,):
            raise ConditionError(
                f"condition {cond.name!r} of model {model_name!r} must be a scalar or an "
                f"array of shape ({n},), got shape {v.shape}")
        if not np.isfinite(v).all():
            bad = v[~np.isfinite(v)][0]
            raise ConditionError(f"condition {cond.name!r} has non-finite values ({bad}); "
                                 f"model {model_name!r} needs finite numbers")
        if clip:
            v = np.clip(v, cond.min, cond.max)
        else:
            outside = (v < cond.min) | (v > cond.max)
            if outside.any():
                raise ConditionError(
                    f"{cond.name}={v[outside][0]:g} is outside the training range "
                    f"[{cond.min:g}, {cond.max:g}] of model {model_name!r}; choose a value "
                    "inside it or clip it to the range (clip=True in Python and YAML, "
                    "--clip on the command line)")
        values[:, k] = v
    return values


def n_drawn(conditions: Sequence[Condition]) -> int:
    """Standard-normal numbers each galaxy draws for the drawn conditions (one per drawn
    condition, used or not, so that the random stream does not depend on which ones
    the user gave)."""
    return sum(c.drawn is not None for c in conditions)


def fill_drawn(conditions: Sequence[Condition], values: np.ndarray | None,
               normals: np.ndarray) -> np.ndarray | None:
    """``values`` (n, k) from :func:`check_values` with the left-out drawn conditions
    (NaN columns) drawn (:meth:`ConditionDraw.draw`) from ``normals`` (n, n_drawn):
    column j of ``normals`` serves the j-th drawn condition."""
    if values is None:
        return None
    values = np.array(values, dtype=float)
    names = [c.name for c in conditions]
    drawn = [k for k, c in enumerate(conditions) if c.drawn is not None]
    normals = np.asarray(normals, dtype=float).reshape(len(values), len(drawn))
    for j, k in enumerate(drawn):
        rows = np.isnan(values[:, k])
        if not rows.any():
            continue
        draw = conditions[k].drawn
        given = None if draw.given is None else values[rows, names.index(draw.given)]
        values[rows, k] = np.clip(draw.draw(normals[rows, j], given),
                                  conditions[k].min, conditions[k].max)
    return values


def check_draws(conditions: Sequence[Condition], source: str = "model") -> None:
    """A drawn condition must depend on a condition of the model that is not drawn.

    Raises:
        ConditionError: naming the condition and what it depends on.
    """
    required = {c.name for c in conditions if c.drawn is None}
    for cond in conditions:
        if cond.drawn is not None and cond.drawn.given is not None \
                and cond.drawn.given not in required:
            raise ConditionError(f"{source}: condition {cond.name!r} is drawn given "
                                 f"{cond.drawn.given!r}, which is not a required condition "
                                 f"of the model ({sorted(required)})")


def catalog_columns(catalog, names: Sequence[str], *,
                    optional: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], int]:
    """The condition columns of a catalog: an astropy ``Table`` (or anything with
    ``colnames``), a numpy structured array, or a mapping of name -> array.  Columns are
    matched by name, case-insensitively; other columns are ignored.

    Returns:
        ({condition name: values}, number of rows).

    Raises:
        ConditionError: a condition column not in ``optional`` (drawn conditions) is
            missing (listing the catalog's columns), or the columns differ in length.
    """
    if hasattr(catalog, "colnames"):
        columns = {str(c): catalog[c] for c in catalog.colnames}
    elif getattr(getattr(catalog, "dtype", None), "names", None):
        columns = {str(c): catalog[c] for c in catalog.dtype.names}
    elif isinstance(catalog, Mapping):
        columns = {str(k): v for k, v in catalog.items()}
    else:
        raise ConditionError(f"catalog must be an astropy Table, a structured array or a dict "
                             f"of columns, not {type(catalog).__name__}")
    lower = {k.lower(): k for k in columns}
    found, missing = {}, []
    for name in names:
        key = name if name in columns else lower.get(name.lower())
        if key is None:
            if name not in optional:
                missing.append(name)
        else:
            found[name] = np.atleast_1d(np.asarray(columns[key], dtype=float))
    if missing:
        raise ConditionError(f"catalog lacks the condition column(s) {missing}; it has "
                             f"{sorted(columns)}")
    lengths = {len(v) for v in found.values()}
    if not lengths:
        first = next(iter(columns.values()), [])
        lengths = {len(np.atleast_1d(first))}
    if len(lengths) != 1:
        raise ConditionError(f"catalog columns {sorted(found)} differ in length: {lengths}")
    return found, lengths.pop()
