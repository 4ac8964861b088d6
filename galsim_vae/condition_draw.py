"""Drawn conditions: the training distribution of a condition that users may leave out.

A model working on flux-normalised stamps needs a magnitude condition (it sets each
galaxy's flux).  Declared *drawn* in the bundle (``model.json`` ``conditions[i].drawn``),
the magnitude is drawn for users who do not give it, from its distribution in the
training split given the redshift, p(mag_auto | zphot), or alone: the model then serves
users who give only a redshift, or nothing, with galaxies whose magnitudes follow the
training survey's.  :class:`ConditionDraw` tabulates that distribution (quantiles in
equal-count bins of the redshift) and draws from it by inverse-CDF sampling of one
standard-normal number per galaxy.  Imports neither TensorFlow nor GalSim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import ConditionError

#: Probabilities at which :class:`ConditionDraw` tabulates its quantiles.
DRAW_QUANTILES = 101
#: Equal-count bins of the given condition (fewer when the training split is small).
DRAW_BINS = 20


@dataclass(frozen=True)
class ConditionDraw:
    """How a condition left out by the user is drawn: the inverse of its empirical CDF
    in the training split, in equal-count bins of another condition (``given``, e.g. the
    redshift: p(mag_auto | zphot)) or over the whole split (``given`` None).

    Parameters:
        given:     name of the condition it depends on, or None.
        edges:     bin edges of ``given`` (B + 1 values, ascending; () without one).
        quantiles: per bin, the values at probabilities ``linspace(0, 1, Q)`` (ascending).
    """

    given: str | None
    edges: tuple
    quantiles: tuple

    def __post_init__(self):
        quantiles = tuple(tuple(float(v) for v in row) for row in self.quantiles)
        edges = tuple(float(v) for v in self.edges)
        n_bins = max(1, len(edges) - 1)
        if (len(quantiles) != n_bins or any(len(r) < 2 for r in quantiles)
                or (self.given is None) != (len(edges) == 0)
                or not all(math.isfinite(v) for r in quantiles for v in r)
                or not all(math.isfinite(v) for v in edges)
                or any(np.diff(r).min() < 0 for r in quantiles)
                or (edges and np.diff(edges).min() < 0)):
            raise ConditionError(f"invalid condition draw: given {self.given!r}, {len(edges)} "
                                 f"edges, {len(quantiles)} quantile rows (finite, ascending, "
                                 "one row per bin)")
        object.__setattr__(self, "quantiles", quantiles)
        object.__setattr__(self, "edges", edges)

    @classmethod
    def fit(cls, values: np.ndarray, given_values: np.ndarray | None = None,
            given: str | None = None, *, bins: int = DRAW_BINS,
            n_quantiles: int = DRAW_QUANTILES) -> "ConditionDraw":
        """Tabulate the distribution of ``values`` (training split), in equal-count bins
        of ``given_values`` (with at least 50 galaxies each) when given."""
        values = np.asarray(values, dtype=float)
        probs = np.linspace(0.0, 1.0, int(n_quantiles))
        if given_values is None:
            return cls(None, (), (tuple(np.quantile(values, probs)),))
        given_values = np.asarray(given_values, dtype=float)
        n_bins = int(max(1, min(bins, len(values) // 50)))
        edges = np.quantile(given_values, np.linspace(0.0, 1.0, n_bins + 1))
        index = np.clip(np.searchsorted(edges[1:-1], given_values, side="right"), 0,
                        n_bins - 1)
        rows = tuple(tuple(np.quantile(values[index == b], probs)) for b in range(n_bins))
        return cls(given, tuple(edges), rows)

    def draw(self, normals: np.ndarray, given_values: np.ndarray | None = None) -> np.ndarray:
        """Values for standard-normal ``normals`` (n,) (``u = Phi(normal)`` through the
        inverse CDF of the bin of each ``given_values`` (n,))."""
        from scipy.special import ndtr

        u = ndtr(np.asarray(normals, dtype=float))
        probs = np.linspace(0.0, 1.0, len(self.quantiles[0]))
        if self.given is None:
            return np.interp(u, probs, self.quantiles[0])
        index = np.clip(np.searchsorted(self.edges[1:-1], given_values, side="right"), 0,
                        len(self.quantiles) - 1)
        out = np.empty(len(u))
        for b in np.unique(index):
            rows = index == b
            out[rows] = np.interp(u[rows], probs, self.quantiles[b])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"given": self.given, "edges": list(self.edges),
                "quantiles": [list(r) for r in self.quantiles]}

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> "ConditionDraw":
        try:
            return cls(entry.get("given"), tuple(entry.get("edges") or ()),
                       tuple(entry["quantiles"]))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ConditionError(f"invalid condition draw {entry!r}: {err}") from None
