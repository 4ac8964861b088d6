"""galsim-vae: data-driven galaxy morphologies for GalSim.

Variational autoencoders (TensorFlow + TensorFlow Probability) trained on Hubble galaxy
images, wrapped as GalSim profiles (:class:`VAEGalaxy`) and GalSim YAML types.
Importing the package registers the config input ``vae_model``, the object type
``VAEGalaxy`` and the output type ``AtomicFits`` (``modules: [galsim_vae]`` in a YAML
file).  TensorFlow is imported only when a model is loaded (:func:`load_model`).
"""

from ._version import __version__
from .generator import GalaxyModel, load_model
from .gsobject import VAEGalaxy
from . import config  # noqa: F401  (registers the GalSim YAML types)
from . import config_output  # noqa: F401  (registers the YAML output type AtomicFits)

__all__ = ["__version__", "load_model", "GalaxyModel", "VAEGalaxy"]
