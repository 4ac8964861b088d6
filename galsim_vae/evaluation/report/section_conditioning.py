"""Report section: do generated galaxies follow their conditions?

For a bundle conditioned on a magnitude (role ``magnitude``, e.g. ``mag_auto``): each
generated galaxy was drawn at the conditions of its held-out partner; its magnitude is
``zero_point - 2.5 log10(sum of its PSF-free profile)``.  In equal-count bins of the
conditioning magnitude, the median generated magnitude is compared with the median
condition (target: within 0.2 mag in every bin, issue "Faithful galaxies").

For a size condition (role ``size``, e.g. ``flux_radius`` in pixels): the slope of the
generated galaxies' half-light radius (observed like the data) against the condition,
beside the same slope of the held-out data (target: within 10%).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .context import Context

#: Equal-count bins of the conditioning magnitude.
N_MAGNITUDE_BINS = 5
#: Largest |median generated magnitude - median condition| per bin (mag).
MAGNITUDE_TOLERANCE = 0.2
#: Largest relative difference of the size slopes (generated vs data).
SIZE_SLOPE_TOLERANCE = 0.10


def _role_index(ctx: Context, role: str) -> int | None:
    for k, cond in enumerate(ctx.model.conditions):
        if cond.role == role:
            return k
    return None


def conditioning_section(ctx: Context, metrics: dict[str, Any], pairs: np.ndarray,
                         profiles: np.ndarray) -> dict[str, Any] | None:
    """Fill ``metrics["conditioning"]`` (None when the bundle has no magnitude or size
    condition); ``profiles`` are the PSF-free generated profiles in data-set units."""
    from ..fidelity import paired_slope

    out: dict[str, Any] = {}
    heldout = ctx.heldout
    k_mag = _role_index(ctx, "magnitude")
    zero_point = ctx.model.zero_point
    if k_mag is not None and zero_point is not None:
        condition = ctx.results["generation_conditions"][:, k_mag]
        flux = profiles.sum(axis=(1, 2)) * ctx.compat.unit_factor
        with np.errstate(divide="ignore", invalid="ignore"):
            magnitude = np.where(flux > 0, zero_point - 2.5 * np.log10(flux), np.nan)
        edges = np.percentile(condition, np.linspace(0, 100, N_MAGNITUDE_BINS + 1))
        bins = np.clip(np.searchsorted(edges, condition, side="right") - 1, 0,
                       N_MAGNITUDE_BINS - 1)
        reference = ctx.results.get("reference_table")
        data_flux = (np.asarray(reference["flux"], float)[pairs] * ctx.compat.unit_factor
                     if reference is not None else np.full(len(pairs), np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            data_magnitude = np.where(data_flux > 0, zero_point - 2.5 * np.log10(data_flux),
                                      np.nan)
        rows = []
        for b in range(N_MAGNITUDE_BINS):
            sel = bins == b
            rows.append({"n": int(sel.sum()),
                         "median_condition": float(np.median(condition[sel])),
                         "median_generated": float(np.nanmedian(magnitude[sel])),
                         "median_data": float(np.nanmedian(data_magnitude[sel]))})
        worst = max(abs(r["median_generated"] - r["median_condition"]) for r in rows)
        out["magnitude"] = {"condition": ctx.model.conditions[k_mag].name, "bins": rows,
                            "worst_offset_mag": float(worst),
                            "met": bool(worst <= MAGNITUDE_TOLERANCE),
                            "definition": "zero_point - 2.5 log10(sum of the PSF-free "
                                          "generated profile) against the conditioning "
                                          "magnitude, medians in equal-count bins; "
                                          "median_data: the same of the held-out stamps "
                                          "(total flux in the stamp, noisy)"}
    k_size = _role_index(ctx, "size")
    generated, reference = ctx.results.get("generated_table"), ctx.results.get("reference_table")
    if k_size is not None and generated is not None:
        gen_slope = paired_slope(ctx.results["generation_conditions"][:, k_size],
                                 np.asarray(generated["hlr_pix"], float))
        data_slope = paired_slope(heldout.raw_conditions[:, k_size],
                                  np.asarray(reference["hlr_pix"], float))
        ratio = gen_slope / data_slope if data_slope else math.nan
        out["size"] = {"condition": ctx.model.conditions[k_size].name,
                       "slope_generated": gen_slope, "slope_data": data_slope,
                       "ratio": ratio,
                       "met": bool(abs(ratio - 1.0) <= SIZE_SLOPE_TOLERANCE),
                       "definition": "least-squares slope of the half-light radius "
                                     "(pixels, observed like the data) against the size "
                                     "condition"}
    if not out:
        return None
    metrics["conditioning"] = out
    return out
