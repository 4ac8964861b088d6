"""What every section of the evaluation report shares: its constants, the context object
and the JSON conversion of the metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputDataError

#: Default cap on the number of generated galaxies (``n_generated=None``).
MAX_DEFAULT_GENERATED = 2000
#: Galaxies shown in the reconstruction figure and the generated grids.
N_SHOWN_RECONSTRUCTIONS = 6
N_SHOWN_GENERATED = 24
#: Steps of the redshift strip.
N_STRIP = 8
#: Equal-count redshift bins of the per-bin medians.
N_REDSHIFT_BINS = 5
#: Statistics always compared (HSM moments, flux, half-light radius).
MOMENT_STATISTICS = ("flux", "sigma_arcsec", "hlr_arcsec", "g", "rho4")
#: Statistics added with ``nonparametric=True`` (statmorph).
NONPARAMETRIC_STATISTICS = ("gini", "m20", "concentration", "asymmetry")
#: Statistics whose per-redshift-bin medians are reported.
BINNED_STATISTICS = ("sigma_arcsec", "hlr_arcsec", "flux")
#: Galaxies measured per call of measure_morphology (bounds memory on big held-out sets).
MORPHOLOGY_CHUNK = 512
#: Generated galaxies convolved with their PSFs per FFT call.
OBSERVE_CHUNK = 256
#: File names.
REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"
FIGURES = {"loss": "loss.png", "reconstructions": "reconstructions.png",
           "generated": "generated.png", "generated_observed": "generated_observed.png",
           "redshift_strip": "redshift_strip.png", "latent": "latent.png",
           "morphology": "morphology.png", "redshift_bins": "redshift_bins.png"}
#: Held-out galaxies reconstructed for the fidelity section (posterior mean and sample).
N_FIDELITY = 2000
#: Generated PSF-free galaxies measured for the isotropy test (|mean g1|, |mean g2| <
#: 0.003).  The mean of one shear component over N galaxies of intrinsic |g| ~ 0.23 has a
#: standard error of ~0.21 / sqrt(N): at N = 10,000 (the issue's minimum) the bound is 1.4
#: standard errors and an exactly isotropic generator fails it on ~28% of draws (both
#: components); at 40,000 it is 2.9 standard errors (fails ~1%), for ~5 min more at 128x128.
N_ISOTROPY = 40000
#: Training galaxies encoded for the memorization test.
N_MEMORIZATION_TRAINING = 5000


def check_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputDataError(f"{name} must be a whole number >= 1 (or None), got {value!r}")
    return int(value)


def plain(value: Any) -> Any:
    """JSON-able copy: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (str, type(None))):
        return value
    return str(value)


def table_rows(table, key: str = "statistic") -> dict[str, dict[str, Any]]:
    return {str(row[key]): {name: row[name] for name in table.colnames if name != key}
            for row in table}


@dataclass
class Context:
    """What every section of the report uses."""

    model: Any              # the GalaxyModel: generation and spec
    dataset: Any
    heldout: Any
    compat: Any
    out: Path
    seed: int
    batch_size: int
    figures: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    #: intermediate results shared between sections (reconstructions, morphology tables)
    results: dict = field(default_factory=dict)

    @property
    def net(self) -> float:
        """Network units per data-set flux unit."""
        return self.compat.net_per_data

    @property
    def conditional(self) -> bool:
        return bool(self.compat.condition_names)

    def figure(self, key: str) -> Path:
        """Path of figure ``key``, recorded as written."""
        self.figures[key] = FIGURES[key]
        return self.out / FIGURES[key]
