"""Where fidelity is lost: the diagnostics of the evaluation report.

Pure functions of measured morphology tables and stamps (numpy/scipy), used by
:mod:`galsim_vae.evaluation.report.section_fidelity`:

- :func:`signal_to_noise`: each galaxy's S/N in an aperture of twice its half-light
  radius, ``flux / (sigma * sqrt(pi (2 r_half)^2))`` (pixels), the quantity whose
  quartiles split the bright from the faint galaxies;
- :func:`column_means`: mean |g|, mean HSM size, mean and median flux of one sample,
  overall and per S/N bin, so that data, reconstructions (posterior mean and posterior
  sample, observed like the data with fresh noise) and prior samples stand side by side;
- :func:`paired_slope`: the least-squares slope of a reconstructed statistic against the
  data's, galaxy by galaxy (1 for a faithful autoencoder; shrinkage towards the mean
  gives slopes below 1);
- :func:`outer_flux_fraction`: the share of each stamp's flux outside a radius of
  ``OUTER_RADIUS`` stamp sides (a pedestal or ring shows up here);
- :func:`stacked_outer_share`: the same share of a bin's summed stamps (outside
  ``STACKED_OUTER_RADIUS``): the noise of faint stamps averages out in the sums, so a
  low-level halo that no single faint stamp shows is measured per S/N bin;
- :func:`isotropy`: mean g1, g2 with their standard errors and the KS test of the
  position angles against the uniform distribution;
- :func:`memorization_test`: each generated galaxy's nearest training and nearest
  held-out neighbour (equal-size sets) and the one-sided permutation test that the
  training one is closer (a model copying its training set would give that).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

#: Radius (in units of the stamp side) beyond which flux counts as "outer".
OUTER_RADIUS = 0.35
#: Radius (stamp sides) of :func:`stacked_outer_share`: beyond it the faint galaxies of the
#: first flux-normalised flagship held twice the data's share (0.18 against 0.08 of their
#: flux at mag_auto > 24.85, 2026-12-03), a halo worth 10% of their flux.
STACKED_OUTER_RADIUS = 0.2
#: Percentiles of the per-galaxy chi-square reported.
CHI2_PERCENTILES = (5, 25, 50, 75, 95, 99)


def signal_to_noise(flux: np.ndarray, hlr_pix: np.ndarray, noise_sigma: np.ndarray) -> np.ndarray:
    """S/N of each galaxy in a circular aperture of radius ``2 r_half`` (at least 1 pixel):
    ``flux / (sigma sqrt(pi (2 r_half)^2))``; NaN where the flux or radius is unknown."""
    radius = np.maximum(2.0 * np.asarray(hlr_pix, dtype=float), 1.0)
    return np.asarray(flux, dtype=float) / (np.asarray(noise_sigma, dtype=float)
                                            * np.sqrt(math.pi) * radius)


def quartile_bins(values: np.ndarray, percentiles=(25, 50, 75)) -> tuple[np.ndarray, np.ndarray]:
    """Bin index (0 = lowest) of each value by the given percentiles of the finite
    values, and the edges; NaN values get -1."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    edges = np.percentile(values[finite], percentiles) if finite.any() else np.zeros(0)
    index = np.full(values.shape, -1, dtype=int)
    index[finite] = np.searchsorted(edges, values[finite], side="right")
    return index, edges


def _stats(table: Mapping[str, Any], rows: np.ndarray) -> dict[str, float]:
    def col(name):
        values = np.asarray(table[name], dtype=float)[rows]
        return values[np.isfinite(values)]

    g, size, flux = col("g"), col("sigma_arcsec"), col("flux")
    return {"n": int(rows.sum()) if rows.dtype == bool else int(len(rows)),
            "mean_abs_g": float(np.mean(g)) if g.size else math.nan,
            "mean_size_arcsec": float(np.mean(size)) if size.size else math.nan,
            "mean_flux": float(np.mean(flux)) if flux.size else math.nan,
            "median_flux": float(np.median(flux)) if flux.size else math.nan}


def column_means(tables: Mapping[str, Mapping[str, Any]], bins: np.ndarray,
                 n_bins: int) -> dict[str, Any]:
    """Mean |g|, mean size, mean and median flux of each table (same rows, one per
    held-out galaxy), overall and in each of ``n_bins`` bins (``bins`` from
    :func:`quartile_bins`), with each sample's ratio to the ``"data"`` table and the KS
    statistics of its |g| and size distributions against the data's."""
    out: dict[str, Any] = {"all": {}, "bins": []}
    everything = np.ones(len(bins), dtype=bool)
    for key, table in tables.items():
        out["all"][key] = _stats(table, everything)
    for b in range(n_bins):
        rows = bins == b
        out["bins"].append({key: _stats(table, rows) for key, table in tables.items()})
    blocks = [(out["all"], everything), *((block, bins == b)
                                           for b, block in enumerate(out["bins"]))]
    for block, rows in blocks:
        data = block.get("data")
        for key, stats in block.items():
            if key == "data" or data is None:
                continue
            stats["ratio"] = {name: (stats[name] / data[name] if data[name] else math.nan)
                              for name in ("mean_abs_g", "mean_size_arcsec", "mean_flux",
                                           "median_flux")}
            stats["ks"] = {name: _ks(tables["data"][name], tables[key][name], rows)
                           for name in KS_COLUMNS}
    return out


#: Columns whose two-sample KS statistic against the data :func:`column_means` adds.
KS_COLUMNS = ("g", "sigma_arcsec")


def _ks(data: np.ndarray, sample: np.ndarray, rows: np.ndarray) -> float:
    """Two-sample KS statistic of the finite values of ``sample`` against ``data`` over
    ``rows`` (NaN with fewer than 2 of either): where the whole distribution, not only
    its mean, is lost."""
    from scipy.stats import ks_2samp

    a = np.asarray(data, dtype=float)[rows]
    b = np.asarray(sample, dtype=float)[rows]
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return math.nan
    return float(ks_2samp(a, b).statistic)


def paired_slope(data: np.ndarray, model: np.ndarray) -> float:
    """Least-squares slope of ``model`` against ``data`` over the galaxies where both are
    finite (NaN with fewer than 3)."""
    data, model = np.asarray(data, dtype=float), np.asarray(model, dtype=float)
    ok = np.isfinite(data) & np.isfinite(model)
    if ok.sum() < 3 or np.var(data[ok]) == 0:
        return math.nan
    return float(np.polyfit(data[ok], model[ok], 1)[0])


def outer_flux_fraction(stamps: np.ndarray, radius: float = OUTER_RADIUS) -> np.ndarray:
    """Per stamp, the flux at more than ``radius`` stamp sides from the stamp centre over
    the total flux (NaN for a stamp of zero total)."""
    stamps = np.asarray(stamps, dtype=float)
    size = stamps.shape[-1]
    y, x = np.indices((size, size)) - (size - 1) / 2.0
    outer = np.hypot(x, y) > radius * size
    total = stamps.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, stamps[:, outer].sum(axis=1) / total, math.nan)


def stacked_outer_share(stamps: np.ndarray, bins: np.ndarray, n_bins: int,
                        radius: float = STACKED_OUTER_RADIUS) -> list[float]:
    """Per bin b in ``range(n_bins)``: the flux of the bin's stamps beyond ``radius`` stamp
    sides from the centre, summed over the stamps, over their summed total flux (NaN for
    an empty bin or a zero sum).  Unlike a median of per-stamp shares, zero-mean noise
    averages out of both sums."""
    stamps = np.asarray(stamps, dtype=float)
    bins = np.asarray(bins)
    size = stamps.shape[-1]
    y, x = np.indices((size, size)) - (size - 1) / 2.0
    outer = np.hypot(x, y) > radius * size
    shares = []
    for b in range(n_bins):
        chosen = stamps[bins == b]
        total = chosen.sum()
        shares.append(float(chosen[:, outer].sum() / total) if chosen.size and total
                      else math.nan)
    return shares


def isotropy(g1: np.ndarray, g2: np.ndarray) -> dict[str, float]:
    """Mean g1, g2 with standard errors, and the KS test of the position angles
    ``0.5 atan2(g2, g1)`` against the uniform distribution on (-90, 90] degrees."""
    from scipy.stats import kstest

    g1, g2 = np.asarray(g1, dtype=float), np.asarray(g2, dtype=float)
    ok = np.isfinite(g1) & np.isfinite(g2)
    g1, g2 = g1[ok], g2[ok]
    n = int(ok.sum())
    if n < 2:
        return {"n": n}
    angle = 0.5 * np.degrees(np.arctan2(g2, g1))
    ks = kstest((angle + 90.0) / 180.0, "uniform")
    return {"n": n, "mean_g1": float(np.mean(g1)), "mean_g2": float(np.mean(g2)),
            "sem_g1": float(np.std(g1, ddof=1) / math.sqrt(n)),
            "sem_g2": float(np.std(g2, ddof=1) / math.sqrt(n)),
            "angle_ks": float(ks.statistic), "angle_ks_p": float(ks.pvalue)}


#: Random relabellings of the pooled training and held-out reference galaxies that give
#: the paired memorization test's null distribution (p resolution 1 / (N + 1)).
MEMORIZATION_PERMUTATIONS = 999
#: Nearest reference galaxies looked up per generated galaxy: its nearest training and
#: nearest held-out one under any relabelling are among them unless all K share a label
#: (probability 2^(1-K) for equal-size sets).
MEMORIZATION_NEIGHBOURS = 32


def _nearest_of_each_label(distances: np.ndarray, neighbour_is_training: np.ndarray):
    """(d_train, d_held): each row's distance to its first neighbour of each label, from
    its sorted ``distances`` (n, K) to the K nearest pooled reference galaxies; a row
    whose K neighbours all share one label gets the K-th distance for the other."""
    rows = np.arange(distances.shape[0])
    out = []
    for mask in (neighbour_is_training, ~neighbour_is_training):
        first = np.argmax(mask, axis=1)
        found = mask[rows, first]
        out.append(np.where(found, distances[rows, first], distances[:, -1]))
    return out[0], out[1]


def _median_log_ratio(distances: np.ndarray, neighbour_is_training: np.ndarray) -> float:
    d_train, d_held = _nearest_of_each_label(distances, neighbour_is_training)
    return float(np.median(np.log(np.maximum(d_train, 1e-300) / np.maximum(d_held, 1e-300))))


def memorization_test(training: np.ndarray, generated: np.ndarray, heldout: np.ndarray,
                      rng: np.random.Generator | None = None,
                      n_permutations: int = MEMORIZATION_PERMUTATIONS) -> dict[str, Any]:
    """Do generated galaxies sit closer to the training set than unseen galaxies do?

    Parameters are (N, d) feature vectors (e.g. posterior means of the stamps).  The
    training set is subsampled to the size of the held-out set, so that both reference
    sets are equally dense.  Two one-sided tests, each of which a copying model fails:

    - **against the held-out galaxies' own distances** (the data-copying test of Meehan,
      Chaudhuri & Dasgupta 2020, AISTATS): the distances of the generated galaxies to their
      nearest training galaxy against those of the held-out galaxies to theirs,
      Mann-Whitney U of "generated smaller" (``p_value_closer_than_heldout``).  A model
      that generates new galaxies of the same population gives equal distributions.
    - **paired**: for each generated galaxy, the ratio of its distance to the nearest
      training galaxy to its distance to the nearest held-out galaxy; the statistic is the
      median ratio, and its null distribution comes from ``n_permutations`` random
      relabellings of the pooled reference galaxies into two sets of the same sizes
      (a permutation test, ``p_value_generated_closer``).  Under the null (no copying)
      training and held-out galaxies are exchangeable, so the relabellings include what
      a signed-rank test of the distances would not: which galaxies happened to fall in
      either reference set.  With ~1e4 generated galaxies a Wilcoxon signed-rank test of
      fixed reference sets read a ~1% density difference between two random subsets as
      p ~ 1e-13 (cvae2_cosmos_sim, session 39), and on exchangeable samples with 10-15
      generated galaxies per reference galaxy it rejected at p < 0.05 17-22% of the time
      instead of 5% (``tests/test_fidelity.py``; this test: 6%).

    Besides copying, both also fall when the held-out galaxies are encoded more spread out
    than the training galaxies (an encoder that fits its training set better than unseen
    galaxies).

    Small p-values flag copying; the median ratios give the size of the effect.
    """
    from scipy.spatial import cKDTree
    from scipy.stats import mannwhitneyu

    rng = rng or np.random.default_rng(0)
    training = np.asarray(training, dtype=float)
    heldout = np.asarray(heldout, dtype=float)
    n_ref = min(len(training), len(heldout))
    training = training[rng.choice(len(training), size=n_ref, replace=False)]
    heldout = heldout[rng.choice(len(heldout), size=n_ref, replace=False)]
    generated = np.asarray(generated, dtype=float)
    pooled_is_training = np.arange(2 * n_ref) < n_ref
    k = min(MEMORIZATION_NEIGHBOURS, 2 * n_ref)
    distances, neighbours = cKDTree(np.concatenate([training, heldout])).query(generated, k=k)
    distances = distances.reshape(len(generated), k)
    neighbours = neighbours.reshape(len(generated), k)
    d_train, d_held = _nearest_of_each_label(distances, pooled_is_training[neighbours])
    observed = _median_log_ratio(distances, pooled_is_training[neighbours])
    at_most = sum(_median_log_ratio(distances, rng.permutation(pooled_is_training)[neighbours])
                  <= observed for _ in range(int(n_permutations)))
    d_heldout_train = cKDTree(training).query(heldout)[0]
    unpaired = mannwhitneyu(d_train, d_heldout_train, alternative="less")
    return {"n_reference": int(n_ref), "n_generated": int(len(generated)),
            "median_distance_training": float(np.median(d_train)),
            "median_distance_heldout": float(np.median(d_held)),
            "median_ratio": float(np.median(d_train / np.maximum(d_held, 1e-300))),
            "p_value_generated_closer": float((1 + at_most) / (1 + int(n_permutations))),
            "n_permutations": int(n_permutations),
            "median_heldout_to_training": float(np.median(d_heldout_train)),
            "heldout_ratio": float(np.median(d_train)
                                   / max(float(np.median(d_heldout_train)), 1e-300)),
            "p_value_closer_than_heldout": float(unpaired.pvalue),
            "test": "each generated galaxy's distance to its nearest training galaxy against "
                    "its distance to its nearest held-out galaxy (equal-size sets, the "
                    "encoder's posterior-mean space): the median ratio against "
                    f"{int(n_permutations)} random relabellings of the pooled training and "
                    "held-out galaxies (one-sided permutation test)",
            "test_heldout": "the generated galaxies' distances to their nearest training "
                            "galaxy against the held-out galaxies' distances to theirs "
                            "(Meehan et al. 2020), one-sided Mann-Whitney U"}


def chi2_summary(chi2: np.ndarray, idents: np.ndarray, n_worst: int = 5) -> dict[str, Any]:
    """Percentiles of the per-galaxy chi-square per pixel and the worst galaxies."""
    chi2 = np.asarray(chi2, dtype=float)
    order = np.argsort(chi2)[::-1][:n_worst]
    return {"percentiles": {str(p): float(np.percentile(chi2, p)) for p in CHI2_PERCENTILES},
            "worst": [{"ident": int(idents[i]), "chi2_per_pixel": float(chi2[i])}
                      for i in order]}
