"""Compare distributions of morphology statistics between generated and reference galaxies.

The tables are those of :func:`galsim_vae.evaluation.measure_morphology` (plus any
columns the caller adds, e.g. ``redshift``).  A value is used when it is finite and, if a
``flag_column`` is named, its row is unflagged; failed measurements are NaN in those
tables, so finiteness alone drops them.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import InputDataError
from ..io_utils import atomic_file

#: Statistics compared by default (columns of ``measure_morphology``).
DEFAULT_COLUMNS = ("flux", "sigma_arcsec", "hlr_arcsec", "g", "rho4", "gini", "m20",
                   "concentration", "asymmetry")


def _usable(table, column: str, which: str, flag_column: str | None) -> np.ndarray:
    """Finite (and unflagged) float values of ``table[column]``."""
    values = np.asarray(_column(table, column, which), dtype=np.float64)
    keep = np.isfinite(values)
    if flag_column is not None:
        if flag_column not in table.colnames:
            raise InputDataError(f"{which} table has no flag column {flag_column!r}; "
                                 "pass flag_column=None to use finiteness only")
        keep &= np.asarray(table[flag_column]) == 0
    return values[keep]


def _ratio_sem(generated: np.ndarray, reference: np.ndarray) -> float:
    """First-order standard error of ``mean(generated) / mean(reference)`` for two
    independent samples (NaN with fewer than 2 values on a side or a zero mean)."""
    if generated.size < 2 or reference.size < 2 or generated.mean() == 0 or reference.mean() == 0:
        return np.nan
    cv2 = [np.var(x, ddof=1) / x.mean() ** 2 / x.size for x in (generated, reference)]
    return float(abs(generated.mean() / reference.mean()) * np.sqrt(sum(cv2)))


def compare_distributions(generated, reference, columns: Sequence[str] = DEFAULT_COLUMNS,
                          *, flag_column: str | None = None):
    """Two-sample comparison of each statistic.

    Parameters:
        generated:      astropy Table of the generated galaxies' statistics.
        reference:      astropy Table of the reference (held-out data) statistics.
        columns:        Statistics to compare; each must be a column of both tables.
        flag_column:    Optional column whose non-zero rows are excluded (None: use only
                        finiteness).

    Returns:
        astropy Table, one row per statistic: ``statistic``, ``n_generated``,
        ``n_reference`` (values used), ``mean_generated``, ``mean_reference``,
        ``median_generated``, ``median_reference``, ``mean_ratio``
        (generated / reference), ``mean_ratio_sem`` (its standard error for two
        independent samples, to first order: ``ratio * sqrt(cv_gen^2 / n_gen +
        cv_ref^2 / n_ref)``, cv = standard deviation / mean), ``ks_statistic`` and
        ``ks_pvalue`` (``scipy.stats.ks_2samp``, two-sided).  NaN where a side has no
        usable value.
    """
    from astropy.table import Table
    from scipy.stats import ks_2samp

    rows = []
    for column in columns:
        gen = _usable(generated, column, "generated", flag_column)
        ref = _usable(reference, column, "reference", flag_column)
        row = {"statistic": column, "n_generated": gen.size, "n_reference": ref.size}
        if gen.size and ref.size:
            ks = ks_2samp(gen, ref)
            mean_gen, mean_ref = float(gen.mean()), float(ref.mean())
            row.update(mean_generated=mean_gen, mean_reference=mean_ref,
                       median_generated=float(np.median(gen)),
                       median_reference=float(np.median(ref)),
                       mean_ratio=mean_gen / mean_ref if mean_ref != 0 else np.nan,
                       mean_ratio_sem=_ratio_sem(gen, ref),
                       ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue))
        rows.append(row)
    names = ["statistic", "n_generated", "n_reference", "mean_generated", "mean_reference",
             "median_generated", "median_reference", "mean_ratio", "mean_ratio_sem",
             "ks_statistic",
             "ks_pvalue"]
    data = {name: [row.get(name, np.nan) for row in rows] for name in names}
    table = Table(data, names=names)
    table["n_generated"] = table["n_generated"].astype(np.int64)
    table["n_reference"] = table["n_reference"].astype(np.int64)
    return table


def binned_medians(generated, reference, by: str = "redshift", bins: int = 5,
                   columns: Sequence[str] = ("hlr_arcsec", "flux")):
    """Median statistics of generated and reference galaxies in bins of ``by``.

    The bins hold equal numbers of reference galaxies (quantiles of the finite
    ``reference[by]``); the last bin includes its upper edge.

    Parameters:
        generated:  astropy Table with columns ``by`` and ``columns``.
        reference:  astropy Table with the same columns; defines the bins.
        by:         Binning column (e.g. ``"redshift"`` or ``"zphot"``).
        bins:       Number of bins (>= 1).
        columns:    Statistics whose medians are reported.

    Returns:
        astropy Table, one row per bin: ``bin_low``, ``bin_high``, ``n_generated``,
        ``n_reference``, and per column ``median_<col>_generated``,
        ``median_<col>_reference`` and ``ratio_<col>`` (generated / reference medians;
        NaN when a bin has no finite value).
    """
    from astropy.table import Table

    if int(bins) < 1:
        raise InputDataError(f"bins must be >= 1, got {bins!r}")
    ref_by = _usable(reference, by, "reference", None)
    if ref_by.size == 0:
        raise InputDataError(f"reference column {by!r} has no finite value to bin by")
    edges = np.quantile(ref_by, np.linspace(0.0, 1.0, int(bins) + 1))

    def bin_index(table, which):
        values = np.asarray(_column(table, by, which), dtype=np.float64)
        index = np.searchsorted(edges, values, side="right") - 1
        index[values == edges[-1]] = int(bins) - 1
        index[~np.isfinite(values) | (values < edges[0]) | (values > edges[-1])] = -1
        return index

    gen_bin, ref_bin = bin_index(generated, "generated"), bin_index(reference, "reference")
    out = {"bin_low": edges[:-1], "bin_high": edges[1:],
           "n_generated": [int(np.sum(gen_bin == b)) for b in range(bins)],
           "n_reference": [int(np.sum(ref_bin == b)) for b in range(bins)]}
    for column in columns:
        gen_values = np.asarray(_column(generated, column, "generated"), dtype=np.float64)
        ref_values = np.asarray(_column(reference, column, "reference"), dtype=np.float64)
        gen_medians = [_finite_median(gen_values[gen_bin == b]) for b in range(bins)]
        ref_medians = [_finite_median(ref_values[ref_bin == b]) for b in range(bins)]
        out[f"median_{column}_generated"] = gen_medians
        out[f"median_{column}_reference"] = ref_medians
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"ratio_{column}"] = np.asarray(gen_medians) / np.asarray(ref_medians)
    return Table(out)


def _column(table, column: str, which: str):
    if column not in table.colnames:
        raise InputDataError(f"{which} table has no column {column!r}; columns are "
                             f"{table.colnames}; name existing columns")
    return table[column]


def _finite_median(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def plot_distributions(generated, reference, columns: Sequence[str],
                       path: str | os.PathLike, *, labels: tuple[str, str] = ("generated",
                                                                             "reference"),
                       bins: int = 30, overwrite: bool = False) -> None:
    """Overlaid normalised histograms of each statistic, KS statistic in each title.

    The histogram range is the 0.5-99.5 percentile range of both samples together (so a
    few outliers do not squash the plot). Written atomically as a PNG.

    Parameters:
        generated, reference:   astropy Tables with ``columns``.
        columns:                Statistics to plot, one panel each.
        path:                   Output PNG path.
        labels:                 Legend labels of the two samples.
        bins:                   Number of histogram bins.
        overwrite:              Replace an existing file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = list(columns)
    if not columns:
        raise InputDataError("plot_distributions needs at least one column to plot")
    stats = compare_distributions(generated, reference, columns)
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    figure = Figure(figsize=(4.0 * ncols, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, column, row in zip(axes, columns, stats):
        gen = _usable(generated, column, "generated", None)
        ref = _usable(reference, column, "reference", None)
        both = np.concatenate([gen, ref])
        if both.size:
            low, high = np.percentile(both, [0.5, 99.5])
            if high <= low:
                low, high = low - 0.5, high + 0.5
            edges = np.linspace(low, high, bins + 1)
            ax.hist(ref, bins=edges, density=True, histtype="stepfilled", alpha=0.4,
                    color="tab:blue", label=f"{labels[1]} ({ref.size})")
            ax.hist(gen, bins=edges, density=True, histtype="step", lw=1.8,
                    color="tab:orange", label=f"{labels[0]} ({gen.size})")
            ax.legend(fontsize=7)
        ax.set_xlabel(column)
        ax.set_title(f"{column}: KS={row['ks_statistic']:.3f} p={row['ks_pvalue']:.2g}",
                     fontsize=9)
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    with atomic_file(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
