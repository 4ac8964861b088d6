"""Report section: morphology of generated against held-out galaxies, overall and per
redshift bin."""

from __future__ import annotations

from typing import Any

import numpy as np

from .context import (BINNED_STATISTICS, MOMENT_STATISTICS, MORPHOLOGY_CHUNK,
                      N_REDSHIFT_BINS, NONPARAMETRIC_STATISTICS, Context, table_rows)


def measure_heldout(dataset, heldout, nonparametric: bool):
    """Morphology of the held-out stamps, in chunks of MORPHOLOGY_CHUNK."""
    from astropy.table import vstack

    from ..morphology import measure_morphology
    from .inputs import read_images

    tables, seconds = [], 0.0
    for start in range(0, len(heldout), MORPHOLOGY_CHUNK):
        stop = min(start + MORPHOLOGY_CHUNK, len(heldout))
        table = measure_morphology(
            read_images(dataset, heldout.rows[start:stop]), pixel_scale=dataset.pixel_scale,
            noise_sigma=heldout.noise_sigma[start:stop],
            psf=None if heldout.psfs is None else heldout.psfs[start:stop],
            nonparametric=nonparametric, desc="held-out morphology")
        seconds += table.meta["seconds_per_stamp"] * (stop - start)
        tables.append(table)
    table = vstack(tables, metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    table.meta["seconds_per_stamp"] = seconds / len(heldout)
    return table


def measure_like_heldout(ctx: Context, stamps: np.ndarray, positions: np.ndarray, desc: str,
                         nonparametric: bool = False):
    """Morphology of stamps observed like the held-out galaxies at ``positions`` (their
    noise level and PSF)."""
    from ..morphology import measure_morphology

    heldout = ctx.heldout
    return measure_morphology(stamps, pixel_scale=ctx.dataset.pixel_scale,
                              noise_sigma=heldout.noise_sigma[positions],
                              psf=None if heldout.psfs is None else heldout.psfs[positions],
                              nonparametric=nonparametric, desc=desc)


def morphology_section(ctx: Context, metrics: dict[str, Any], pairs: np.ndarray,
                        observed: np.ndarray, nonparametric: bool):
    """Morphology of generated against held-out galaxies, overall and per redshift bin.

    Returns:
        (per-statistic comparison rows, per-bin median ratios or None).
    """
    from ..compare import binned_medians, compare_distributions, plot_distributions
    from ..morphology import exclude_rows
    from ..plots import plot_binned_medians
    from .targets import ks_null_median

    heldout = ctx.heldout
    reference = measure_heldout(ctx.dataset, heldout, nonparametric)
    generated = measure_like_heldout(ctx, observed, pairs, "generated morphology",
                                     nonparametric)
    draws = ctx.results.get("selection_draws")
    if draws is not None and np.any(draws == 0):
        exclude_rows(generated, draws == 0)
    ctx.results["reference_table"], ctx.results["generated_table"] = reference, generated
    columns = list(MOMENT_STATISTICS) + (list(NONPARAMETRIC_STATISTICS) if nonparametric else [])
    comparison = compare_distributions(generated, reference, columns)
    plot_distributions(generated, reference, columns, ctx.figure("morphology"),
                       labels=("generated", f"held-out ({heldout.split})"), overwrite=True)
    statistics = table_rows(comparison)
    for row in statistics.values():
        row["ks_null_median"] = ks_null_median(int(row["n_generated"]), int(row["n_reference"]))
    metrics["morphology"] = {
        "columns": columns, "statistics": statistics, "nonparametric": nonparametric,
        "seconds_per_stamp": float(generated.meta["seconds_per_stamp"]),
        "n_flagged_generated": int(generated.meta["n_flagged"]),
        "n_flagged_heldout": int(reference.meta["n_flagged"]),
        "without_selection": _without_selection(ctx, reference, pairs)}
    if not ctx.conditional:
        return statistics, None
    if heldout.redshift is None or np.isfinite(heldout.redshift).sum() < N_REDSHIFT_BINS:
        ctx.notes.append(f"fewer than {N_REDSHIFT_BINS} held-out galaxies with a redshift: "
                         "no per-redshift-bin medians")
        return statistics, None
    reference["redshift"] = heldout.redshift
    generated["redshift"] = heldout.redshift[pairs]
    bins = binned_medians(generated, reference, by="redshift", bins=N_REDSHIFT_BINS,
                          columns=BINNED_STATISTICS)
    plot_binned_medians(bins, ("sigma_arcsec", "flux"), ctx.figure("redshift_bins"),
                        by_label=heldout.redshift_name)
    metrics["redshift_bins"] = {"by": heldout.redshift_name,
                                **{name: np.asarray(bins[name]) for name in bins.colnames}}
    return statistics, {f"ratio_{c}": list(np.asarray(bins[f"ratio_{c}"], dtype=float))
                        for c in ("sigma_arcsec", "flux")}


def _without_selection(ctx: Context, reference, pairs: np.ndarray):
    """The moment statistics of the generated galaxies observed with one fresh noise draw
    each, not conditioned on the data's selection (None when no selection applies)."""
    from ..compare import compare_distributions

    first = ctx.results.get("first_draw_observed")
    if first is None:
        return None
    table = measure_like_heldout(ctx, first, pairs, "generated, one fresh noise draw")
    ctx.results["first_draw_observed"] = None          # free the stamps
    return table_rows(compare_distributions(table, reference, MOMENT_STATISTICS))
