"""The simulated COSMOS-format survey: a population drawn from published scaling
relations, each galaxy drawn with GalSim through a real HST PSF with COSMOS noise,
written as a GalSim COSMOS catalog (read by ``galsim.COSMOSCatalog`` and by
``galsim-vae prepare cosmos``) with its truth table, and compared with real catalogs.

- :mod:`.scaling_relations`: the published relations that set the population;
- :mod:`.galaxy`: one simulated galaxy (truth, stamp, measured catalog quantities);
- :mod:`.cosmos_format`: GalSim's catalog/image/PSF/selection files and ``truth.fits``;
- :mod:`.survey`: :func:`simulate_survey`, the whole survey in parallel processes;
- :mod:`.compare`: simulated against real parameter-catalog distributions.

Importing this package imports neither TensorFlow nor GalSim.
"""

__all__ = ["simulate_survey"]


def simulate_survey(*args, **kwargs):
    """See :func:`galsim_vae.simulation.survey.simulate_survey`."""
    from .survey import simulate_survey as _simulate

    return _simulate(*args, **kwargs)
