"""Evaluation of generative galaxy models: morphology statistics measured the same way on
generated and held-out galaxies, and their comparison.

- :mod:`.morphology`: per-stamp flux, HSM adaptive-moment size, ellipticity and rho4,
  curve-of-growth half-light radius, and (statmorph) Gini, M20, concentration, asymmetry.
- :mod:`.compare`: two-sample comparison of those statistics (means, medians, KS test),
  medians in redshift bins, overlaid histograms.
- :mod:`.render`: "observe" PSF-free generated profiles like the data (HST PSF + noise).
- :mod:`.report`: :func:`evaluate`, the whole report of a bundle on a data set
  (``galsim-vae evaluate``); imports TensorFlow when called.

Importing this package imports numpy only; GalSim, statmorph, photutils, scipy and
matplotlib are imported by the functions that need them.
"""

from .compare import binned_medians, compare_distributions, plot_distributions
from .morphology import (FLAG_HLR, FLAG_HSM, FLAG_NO_SEGMENT, FLAG_STATMORPH,
                         gini_coefficient, half_light_radius, measure_morphology)
from .render import observe_like_data


def evaluate(*args, **kwargs) -> dict:
    """See :func:`galsim_vae.evaluation.report.evaluate` (imports TensorFlow)."""
    from .report import evaluate as _evaluate

    return _evaluate(*args, **kwargs)

__all__ = ["FLAG_HLR", "FLAG_HSM", "FLAG_NO_SEGMENT", "FLAG_STATMORPH",
           "binned_medians", "compare_distributions", "evaluate", "gini_coefficient",
           "half_light_radius", "measure_morphology", "observe_like_data",
           "plot_distributions"]
