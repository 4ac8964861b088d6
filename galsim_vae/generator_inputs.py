"""The checks of :meth:`GalaxyModel.generate` / ``sample`` arguments: conditions (by name,
``redshift=`` alias, catalog columns, drawn conditions), the number of galaxies, latent
rows, and the latent noise drawn from the user's GalSim rng.

One galaxy's random numbers are one row of the stream: its eps (the latent noise, with
the orientation number of a bundle that samples orientations), then one number per
drawn condition (:mod:`galsim_vae.condition_draw`), used or not.  So n galaxies drawn at
once are the n galaxies drawn one by one from the same stream (as
:func:`galsim_vae.noise.draw_latent_noise` guarantees), and the YAML type, which draws
each object's row from its own rng, gives the same galaxies.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import conditions as cnd
from .errors import ConditionError
from .noise import draw_latent_noise


def given_conditions(redshift, conditions: Mapping[str, Any]) -> dict[str, Any]:
    """The user's conditions by name, with ``redshift`` (a value, or an older-form dict
    of name -> values) merged in; a name given twice is refused."""
    given = dict(conditions)
    if isinstance(redshift, Mapping):
        overlap = sorted(set(redshift) & set(given))
        if overlap:
            raise ConditionError(f"conditions {overlap} given twice")
        given.update(redshift)
    elif redshift is not None:
        if "redshift" in given:
            raise ConditionError("redshift given twice")
        given["redshift"] = redshift
    return given


def prepare_inputs(model, n=None, *, redshift=None, latent=None, rng=None, clip=False,
                   catalog=None, **conditions):
    """Check the arguments of ``model.generate`` and return ``(eps (n, noise_size) or
    latent rows, physical conditions (n, k) or None, from_noise)``; left-out drawn
    conditions are drawn here."""
    model_conditions = model.conditions
    given = given_conditions(redshift, conditions)
    if catalog is not None:
        columns, rows = cnd.catalog_columns(catalog, model.condition_names, optional=[
            c.name for c in model_conditions if c.drawn is not None])
        overlap = sorted(set(columns) & set(given))
        if overlap:
            raise ConditionError(f"conditions {overlap} given both as arguments and as "
                                 "catalog columns")
        given.update(columns)
        if n is not None and int(n) != rows:
            raise ConditionError(f"n={n} but the catalog has {rows} rows")
        n = rows
    n = infer_n(n, given, latent)
    physical = cnd.check_values(model_conditions, given, n, model_name=model.name, clip=clip)
    values, physical = noise_and_conditions(model_conditions, physical, n, model.noise_size,
                                            checked_latents(model, n, latent), lambda: rng)
    return values, physical, latent is None


def noise_and_conditions(conditions, physical: np.ndarray | None, n: int, noise_size: int,
                         latent: np.ndarray | None, get_rng) -> tuple:
    """``(values, physical)``: the eps rows (n, noise_size) drawn from ``get_rng()`` when
    ``latent`` is None (else ``latent``), and ``physical`` with its left-out drawn
    conditions (NaN) drawn.  A drawn condition takes one more normal number per galaxy,
    after its eps, used or not: the stream does not depend on which conditions the user
    gave.  ``get_rng`` is called only when random numbers are needed."""
    draws = cnd.n_drawn(conditions)
    normals = np.zeros((n, draws))
    values = latent
    if latent is None:
        noise = draw_latent_noise(n, noise_size + draws, get_rng())
        values, normals = noise[:, :noise_size], noise[:, noise_size:]
    elif draws and np.isnan(physical).any():
        normals = draw_latent_noise(n, draws, get_rng())
    if draws:
        physical = cnd.fill_drawn(conditions, physical, normals)
    return values, physical


def checked_latents(model, n: int, latent) -> np.ndarray | None:
    """The checked ``latent=`` rows (n, latent width), or None when not given."""
    if latent is None:
        return None
    z = np.asarray(latent, dtype=float)
    if z.ndim == 1:
        z = z[None, :]
    widths = model.latent_input_sizes
    if z.ndim != 2 or z.shape[0] != n or z.shape[1] not in widths:
        raise ConditionError(
            f"latent must be an array of shape ({n}, {' or '.join(map(str, widths))})"
            f" for model {model.name!r}, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ConditionError(f"latent must be finite for model {model.name!r}: it has "
                             f"{int((~np.isfinite(z)).sum())} NaN or inf values")
    return z


def infer_n(n, given: Mapping[str, Any], latent) -> int:
    """The number of galaxies: ``n``, else the rows of ``latent``, else the common length
    of the per-galaxy condition arrays, else 1."""
    if n is None:
        lengths = {len(v) for v in given.values() if np.ndim(v) == 1}
        if latent is not None:
            n = np.atleast_2d(np.asarray(latent)).shape[0]
        elif len(lengths) == 1:
            n = lengths.pop()
        else:
            n = 1
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ConditionError(f"number of galaxies n={n!r} must be a positive integer")
    return int(n)
