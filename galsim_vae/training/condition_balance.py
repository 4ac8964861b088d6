"""Weights that balance a flow prior's fit across its conditions.

A conditional flow fitted by maximum likelihood spends its capacity where the training
conditions are dense; where they are sparse (the largest, brightest, lowest-redshift
galaxies) the learned p(z | y) is pulled towards that of the neighbouring, commoner
conditions, and the generated galaxies regress towards the mean.  On the flagship of
2026-12-04 the observed sizes of flow samples at the largest ``flux_radius`` decile were
6.7% below the data's where the encoder's own posterior samples were 1.9% below
(trained/build_shipped.sh, session 33).

Weighting each row's log-likelihood by ``w(y)``, a function of the conditions only, does
not change the conditional density the fit converges to -- ``E_{p(y) w(y)} E_{p(z|y)}
log q(z|y)`` is still maximised by ``q = p`` at every y with ``w(y) > 0`` -- it moves the
flow's capacity (and its gradient steps) towards the conditions weighed up.  The weights
here are ``(1 / p(y))**power`` with ``p(y)`` the k-nearest-neighbour density of the
standardised conditions (Loftsgaarden & Quesenberry 1965, Ann. Math. Stat. 36, 1049):
``power`` 1 makes the conditions uniform over their support, 0.5 half way; they are
clipped at ``max_ratio`` times their median, so that a handful of isolated galaxies does
not take over the fit.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputDataError

#: Neighbours of the density estimate (of distinct galaxies: rows repeated for the
#: orientations of one stamp count once).
N_NEIGHBOURS = 32
#: Default exponent of the inverse density.
POWER = 0.5
#: Largest weight, in units of the median weight.
MAX_RATIO = 10.0


def condition_weights(train_conditions: np.ndarray, *others: np.ndarray,
                      power: float = POWER, max_ratio: float = MAX_RATIO,
                      n_neighbours: int = N_NEIGHBOURS) -> list[np.ndarray]:
    """Weights ``(1 / p(y))**power`` of the rows of ``train_conditions`` (N, k) and of
    each further array of conditions (M, k) (e.g. the validation rows), the density
    ``p`` estimated from the distinct training conditions by their ``n_neighbours``-th
    nearest neighbour; each array's weights have mean 1 over the training rows' scale.

    Returns:
        One (N,) array, then one (M,) array per further argument, positive float64.

    Raises:
        InputDataError: conditions that are not 2-D, non-finite, or too few distinct ones.
    """
    from scipy.spatial import cKDTree

    train = np.asarray(train_conditions, dtype=np.float64)
    if train.ndim != 2 or train.shape[1] < 1 or not np.all(np.isfinite(train)):
        raise InputDataError(f"conditions to balance must be finite (N, k) with k >= 1, got "
                             f"shape {train.shape}")
    if not 0 < power <= 1 or max_ratio < 1:
        raise InputDataError(f"balance power must be in (0, 1] and max_ratio >= 1, got "
                             f"{power}, {max_ratio}")
    distinct = np.unique(train, axis=0)
    k = min(int(n_neighbours), len(distinct) - 1)
    if k < 1:
        raise InputDataError(f"conditions to balance need at least 2 distinct rows, got "
                             f"{len(distinct)}")
    scale = distinct.std(axis=0)
    scale[scale == 0] = 1.0
    tree = cKDTree(distinct / scale)
    dimension = train.shape[1]

    def inverse_density(values: np.ndarray) -> np.ndarray:
        points = np.asarray(values, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != dimension or not np.all(np.isfinite(points)):
            raise InputDataError(f"conditions to weigh must be finite (M, {dimension}), got "
                                 f"shape {points.shape}")
        radius = tree.query(points / scale, k=k + 1)[0][:, -1]     # +1: a row finds itself
        return np.maximum(radius, 1e-12) ** dimension              # 1 / p, up to a constant

    raw = [inverse_density(train)] + [inverse_density(o) for o in others]
    median = np.median(raw[0] ** power)
    weights = [np.minimum(r ** power / median, max_ratio) for r in raw]
    mean = weights[0].mean()
    return [w / mean for w in weights]
