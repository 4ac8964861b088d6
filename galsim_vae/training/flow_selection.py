"""Choosing a flow prior's epoch by what its galaxies look like.

A flow fitted to a VAE's encodings is usually early-stopped on the likelihood of the
validation split's encodings.  That likelihood does not rank flows by the morphology of the
galaxies they generate: on the cvae2_cosmos_sim of 2026-12-03 the flow with the best
validation NLL (26.74 nats) gave decoded samples with KS |g| 0.071 and median sizes per
redshift quintile off by up to 22% against the decoded validation encodings, and a flow
with a worse NLL (27.16) KS |g| 0.052 and 4.7% (``benchmarks/prior_fit.py``,
benchmarks/README.md).  :func:`morphology_score` scores a flow by the distance between the
HSM |g| and size (Hirata & Seljak 2003; Mandelbaum et al. 2005) of its decoded samples and
those of the decoded validation encodings at the same conditions -- what a perfect prior
would give -- so that the fit keeps the epoch whose galaxies are closest.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .callbacks import log

#: Quantile bins of the first condition (the redshift of a cvae2) in the per-bin size term.
N_CONDITION_BINS = 5


def decoded_morphology(model, latents: np.ndarray, conditions: np.ndarray | None, *,
                       pixel_scale: float, desc: str = "flow samples", batch: int = 256):
    """HSM |g| (N,), size sigma (arcsec, N) and success mask (N,) of the PSF-free,
    noiseless profiles ``model`` decodes from ``latents`` at normalised ``conditions``."""
    from ..evaluation import measure_morphology

    profiles = []
    for start in range(0, len(latents), batch):
        cond = None if conditions is None else conditions[start:start + batch].astype(np.float32)
        profiles.append(model.decode(latents[start:start + batch].astype(np.float32), cond,
                                     training=False).numpy()[..., 0])
    stats = measure_morphology(np.concatenate(profiles), pixel_scale=pixel_scale,
                               noise_sigma=1e-6, nonparametric=False, desc=desc)
    return (np.asarray(stats["g"]), np.asarray(stats["sigma_arcsec"]),
            np.asarray(stats["flag"]) == 0)


def condition_bins(conditions: np.ndarray | None, n: int) -> np.ndarray:
    """Quantile-bin index (0 .. N_CONDITION_BINS - 1) of each row's first condition."""
    if conditions is None:
        return np.zeros(n, int)
    edges = np.quantile(conditions[:, 0], np.linspace(0, 1, N_CONDITION_BINS + 1)[1:-1])
    return np.searchsorted(edges, conditions[:, 0])


def morphology_distance(g, size, ok, ref_g, ref_size, ref_ok, bins) -> dict[str, float]:
    """How far generated |g| and sizes are from the reference at the same conditions:
    KS statistics, relative mean differences and the worst per-bin median size."""
    from scipy.stats import ks_2samp

    worst = max(abs(np.median(size[ok & (bins == b)])
                    / np.median(ref_size[ref_ok & (bins == b)]) - 1) for b in np.unique(bins))
    return {"ks_g": float(ks_2samp(g[ok], ref_g[ref_ok]).statistic),
            "ks_size": float(ks_2samp(size[ok], ref_size[ref_ok]).statistic),
            "mean_g": float(g[ok].mean() / ref_g[ref_ok].mean() - 1),
            "mean_size": float(size[ok].mean() / ref_size[ref_ok].mean() - 1),
            "worst_bin_size": float(worst)}


def morphology_score(model, latents: np.ndarray, conditions: np.ndarray | None, *,
                     pixel_scale: float, n: int = 2000,
                     seed: int = 0) -> Callable[[object], float]:
    """A ``score(flow) -> float`` (lower is better): the sum of the KS statistics of |g|
    and size, the absolute relative differences of their means and the worst per-bin
    median-size difference (the report's targets: KS < 0.05, means within 2% and 1%,
    bins within 5%) between ``n`` decoded draws of ``flow`` and ``n`` decoded
    ``latents`` (validation encodings) at the same conditions, with the same draws
    every call."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(latents), min(int(n), len(latents)), replace=False)
    cond = None if conditions is None else np.asarray(conditions)[rows]
    reference = decoded_morphology(model, np.asarray(latents)[rows], cond,
                                   pixel_scale=pixel_scale, desc="validation encodings")
    bins = condition_bins(cond, len(rows))
    eps = rng.standard_normal((len(rows), np.shape(latents)[1])).astype(np.float32)

    def score(flow) -> float:
        drawn = decoded_morphology(model, flow.transform(eps, cond).numpy(), cond,
                                   pixel_scale=pixel_scale)
        distance = morphology_distance(*drawn, *reference, bins)
        total = float(sum(abs(v) for v in distance.values()))
        log(f"flow morphology score {total:.4f}: " + ", ".join(
            f"{name} {value:+.4f}" for name, value in distance.items()))
        return total

    return score
