"""Generated galaxies against the truth of a simulated survey.

A data set prepared (``galsim-vae prepare cosmos``) from a survey written by
:func:`galsim_vae.simulation.survey.simulate_survey` records the survey's catalog path in its
manifest (``source.catalog``); beside it lie ``simulation.json`` and ``truth.fits``, the
PSF-free parameters of every galaxy, keyed by ``IDENT`` (the data set's ``ident``).

What is compared, PSF-free against PSF-free:

- ``flux``: the sum of each generated profile's stamp against the truth total flux
  (``truth.fits`` ``flux``, count/s) of the held-out galaxies; a generated stamp holds the
  light inside the stamp only, so a few per cent less for large galaxies is expected.
- ``hlr_arcsec``: the half-light radius of each generated profile in circular apertures
  about its centroid (:func:`galsim_vae.evaluation.half_light_radius`, noise-free) against
  the truth circularised half-light radius ``hlr``.  For an elliptical galaxy the circular
  aperture radius is larger than the circularised one (it lies between ``sqrt(ab)`` and
  ``a``), so the generated sizes are expected to be biased high by roughly
  ``(1 + 1/sqrt(q)) / 2`` on average; the KS statistic is a shape check, not a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Statistic of the generated profiles -> truth.fits column it is compared with.
TRUTH_PAIRS = {"flux": "flux", "hlr_arcsec": "hlr"}


def find_truth_table(dataset) -> Path | None:
    """The ``truth.fits`` of the simulated survey a data set was prepared from, or None
    when the data set does not come from one (or the survey folder is gone)."""
    source = dataset.meta.get("source") or {}
    catalog = source.get("catalog")
    if not isinstance(catalog, str) or not catalog:
        return None
    folder = Path(catalog).parent
    truth = folder / "truth.fits"
    if truth.is_file() and (folder / "simulation.json").is_file():
        return truth
    return None


def compare_with_truth(truth_path: Path, idents: np.ndarray, generated_profiles: np.ndarray,
                       *, pixel_scale: float) -> dict[str, Any] | None:
    """Compare generated PSF-free profiles with the truth of the held-out galaxies.

    Parameters:
        truth_path:         ``truth.fits`` of the survey.
        idents:             Identifier of the held-out galaxy each generated galaxy was
                            paired with (N,); the truth of those galaxies is the reference.
        generated_profiles: (N, S, S) PSF-free generated profiles in the data set's flux
                            units (counts/s for surveys prepared by galsim-vae).
        pixel_scale:        arcsec/pixel.

    Returns:
        A dict: ``truth_table`` (path), ``n_matched`` (paired galaxies found in the
        truth), ``definitions`` and per statistic the row of
        :func:`galsim_vae.evaluation.compare_distributions` (generated vs truth); None when
        no held-out galaxy is in the truth table.
    """
    from astropy.table import Table

    from ..compare import compare_distributions
    from ..morphology import measure_morphology

    truth = Table.read(truth_path, format="fits")
    row_of = {int(ident): i for i, ident in enumerate(np.asarray(truth["IDENT"]))}
    rows = np.array([row_of.get(int(ident), -1) for ident in np.asarray(idents)], dtype=np.int64)
    if not (rows >= 0).any():
        return None
    # one truth row per generated galaxy: that of the held-out galaxy it was paired with
    reference = Table({name: np.asarray(truth[column], dtype=np.float64)[rows[rows >= 0]]
                       for name, column in TRUTH_PAIRS.items()})
    measured = measure_morphology(np.asarray(generated_profiles)[rows >= 0],
                                  pixel_scale=pixel_scale, noise_sigma=0.0,
                                  nonparametric=False, desc="generated (PSF-free)")
    table = compare_distributions(measured, reference, list(TRUTH_PAIRS))
    statistics = {str(row["statistic"]): {name: _plain(row[name]) for name in table.colnames
                                          if name != "statistic"} for row in table}
    return {"truth_table": str(truth_path), "n_matched": int((rows >= 0).sum()),
            "definitions": {
                "flux": "generated: sum of the PSF-free stamp; truth: total flux 'flux'",
                "hlr_arcsec": "generated: circular-aperture half-light radius of the PSF-free "
                              "stamp; truth: circularised half-light radius 'hlr' (smaller "
                              "for elongated galaxies by definition)"},
            "statistics": statistics}


def _plain(value) -> float | int:
    value = np.asarray(value).item()
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
