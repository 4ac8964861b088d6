"""The evaluation targets of a shipped model, judged met / not met.

The targets (issue "Shipped models and the evaluation report"), anchored on Lanusse et al.
(2021, MNRAS 504, 5543, sect. 5): on COSMOS I < 25.2 their generated galaxies had mean
``|g|`` 0.2578 against 0.2481 for the real ones (+3.9%) and mean size 0.1901" against
0.1888" (+0.7%).

- mean HSM ``|g|`` of generated galaxies within 2% of the held-out data;
- mean HSM size (``sigma``) within 1%;
- two-sample KS statistic below 0.05 for size, ``|g|`` and flux;
- conditional models: in each of 5 equal-count redshift bins, the median size and flux
  within 5% of the held-out medians;
- reconstruction chi-square per pixel between 0.9 and 1.2.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

#: Relative tolerance on the mean |g| (generated / held-out - 1).
MEAN_SHAPE_TOLERANCE = 0.02
#: Relative tolerance on the mean HSM size.
MEAN_SIZE_TOLERANCE = 0.01
#: Largest KS statistic allowed for size, |g| and flux.
KS_LIMIT = 0.05
#: Relative tolerance on the per-redshift-bin medians.
BINNED_MEDIAN_TOLERANCE = 0.05
#: Allowed range of the reconstruction chi-square per pixel.
CHI2_RANGE = (0.9, 1.2)
#: Size statistic of the targets (HSM adaptive-moment sigma, arcsec).
SIZE_COLUMN = "sigma_arcsec"
#: Median of the Kolmogorov distribution: the median of sqrt(n_eff) * KS for two samples
#: of one distribution (large samples; Kolmogorov 1933, Smirnov 1948).
KOLMOGOROV_MEDIAN = 0.8276
#: Lanusse et al. (2021) COSMOS 25.2 anchor: (generated, real) means.
LANUSSE_2021 = {"mean_abs_g": (0.2578, 0.2481), "mean_size_arcsec": (0.1901, 0.1888)}


def ks_null_median(n_generated: int, n_reference: int) -> float:
    """Median KS statistic of two samples of sizes ``n_generated``, ``n_reference`` drawn
    from the *same* distribution: ``0.8276 / sqrt(n1 n2 / (n1 + n2))``.

    The KS target (< 0.05) is only within reach when this is well below 0.05, i.e. with
    more than ~550 galaxies in each sample; for smaller samples a KS above the target says
    nothing about the model.
    """
    if n_generated < 1 or n_reference < 1:
        return math.nan
    return KOLMOGOROV_MEDIAN / math.sqrt(n_generated * n_reference / (n_generated + n_reference))


def _target(name: str, value: float, requirement: str, met: bool) -> dict[str, Any]:
    finite = isinstance(value, (int, float)) and math.isfinite(value)
    return {"target": name, "value": float(value) if finite else None,
            "requirement": requirement, "met": bool(met and finite)}


def evaluate_targets(statistics: Mapping[str, Mapping[str, float]], chi2: float,
                     binned: Mapping[str, list[float]] | None) -> list[dict[str, Any]]:
    """Judge each target.

    Parameters:
        statistics: Per statistic (``g``, ``sigma_arcsec``, ``flux``) the row of
                    ``compare_distributions`` as a dict (``mean_ratio``, ``ks_statistic``).
        chi2:       Mean reconstruction chi-square per pixel.
        binned:     For conditional models: ``ratio_<column>`` -> per-bin median ratios;
                    None otherwise (those targets are then left out).

    Returns:
        A list of dicts: ``target``, ``value``, ``requirement``, ``met``.
    """
    out = []
    ratio_g = statistics["g"]["mean_ratio"] - 1.0
    out.append(_target("mean |g| (generated / held-out - 1)", ratio_g,
                       f"|x| <= {MEAN_SHAPE_TOLERANCE:.0%}",
                       abs(ratio_g) <= MEAN_SHAPE_TOLERANCE))
    ratio_size = statistics[SIZE_COLUMN]["mean_ratio"] - 1.0
    out.append(_target("mean HSM size (generated / held-out - 1)", ratio_size,
                       f"|x| <= {MEAN_SIZE_TOLERANCE:.0%}",
                       abs(ratio_size) <= MEAN_SIZE_TOLERANCE))
    for column, label in ((SIZE_COLUMN, "HSM size"), ("g", "|g|"), ("flux", "flux")):
        ks = statistics[column]["ks_statistic"]
        out.append(_target(f"KS statistic, {label}", ks, f"< {KS_LIMIT}", ks < KS_LIMIT))
    if binned is not None:
        for column, label in ((SIZE_COLUMN, "HSM size"), ("flux", "flux")):
            ratios = [r for r in binned[f"ratio_{column}"]]
            worst = max((abs(r - 1.0) for r in ratios), default=math.nan) \
                if all(math.isfinite(r) for r in ratios) else math.nan
            out.append(_target(f"worst redshift-bin median {label} (|generated / held-out - 1|)",
                               worst, f"<= {BINNED_MEDIAN_TOLERANCE:.0%} in every bin",
                               worst <= BINNED_MEDIAN_TOLERANCE))
    low, high = CHI2_RANGE
    out.append(_target("reconstruction chi-square per pixel", chi2, f"{low} to {high}",
                       low <= chi2 <= high))
    return out


#: Isotropy: largest |mean g1|, |mean g2| of the generated galaxies, smallest KS p-value
#: of their position angles against uniform (issue "Faithful galaxies").
ISOTROPY_MEAN_G = 0.003
ISOTROPY_P = 0.01
#: Memorization: generated galaxies are flagged as copies when they sit closer to the
#: training set than held-out galaxies do at this significance.
MEMORIZATION_P = 0.05
#: Posterior predictive check: posterior-sample reconstructions observed with fresh noise
#: within this of the data's mean |g|, size and flux in every S/N quartile, and a paired
#: |g| slope above PPC_SLOPE at high S/N.
PPC_TOLERANCE = 0.05
PPC_SLOPE = 0.9


def fidelity_targets(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The targets of the fidelity and conditioning sections present in ``metrics``."""
    out = []
    fid = metrics.get("fidelity") or {}
    iso = (fid.get("isotropy") or {}).get("generated") or {}
    if iso.get("n", 0) >= 2:
        worst = max(abs(iso["mean_g1"]), abs(iso["mean_g2"]))
        out.append(_target(f"isotropy: max |mean g1|, |mean g2| of {iso['n']} generated",
                           worst, f"< {ISOTROPY_MEAN_G}", worst < ISOTROPY_MEAN_G))
        out.append(_target("isotropy: KS p-value of the position angles against uniform",
                           iso["angle_ks_p"], f"> {ISOTROPY_P}", iso["angle_ks_p"] > ISOTROPY_P))
    columns = fid.get("columns")
    if columns:
        worst = max((abs(block["recon_sample"]["ratio"][name] - 1.0)
                     for block in columns["bins"] if "recon_sample" in block
                     for name in ("mean_abs_g", "mean_size_arcsec", "mean_flux")),
                    default=math.nan)
        out.append(_target("posterior predictive: worst S/N-quartile |ratio - 1| of mean |g|, "
                           "size, flux (posterior samples)", worst,
                           f"<= {PPC_TOLERANCE:.0%}", worst <= PPC_TOLERANCE))
        slope = fid["paired_slopes"]["recon_sample"]["g_high_snr"]
        out.append(_target(f"paired |g| slope at S/N > {fid['high_snr']:g} (posterior samples)",
                           slope, f"> {PPC_SLOPE}", slope > PPC_SLOPE))
    memo = fid.get("memorization") or {}
    if "p_value_generated_closer" in memo:
        p = memo["p_value_generated_closer"]
        out.append(_target("memorization: p-value of generated closer to training than to "
                           "held-out (paired)", p, f">= {MEMORIZATION_P}",
                           p >= MEMORIZATION_P))
    if "p_value_closer_than_heldout" in memo:
        p = memo["p_value_closer_than_heldout"]
        out.append(_target("memorization: p-value of generated closer to training than "
                           "held-out galaxies are", p, f">= {MEMORIZATION_P}",
                           p >= MEMORIZATION_P))
    cond = metrics.get("conditioning") or {}
    if "magnitude" in cond:
        out.append(_target(f"worst bin |median generated magnitude - median "
                           f"{cond['magnitude']['condition']}| (mag)",
                           cond["magnitude"]["worst_offset_mag"], "<= 0.2",
                           cond["magnitude"]["met"]))
    if "size" in cond:
        ratio = cond["size"]["ratio"]
        out.append(_target(f"size slope against {cond['size']['condition']}, generated / data",
                           ratio, "within 10% of 1", cond["size"]["met"]))
    return out
