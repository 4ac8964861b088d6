"""galsim-vae: data-driven galaxy morphologies for GalSim.

Variational autoencoders (TensorFlow + TensorFlow Probability) trained on Hubble galaxy
images, wrapped as GalSim profiles (:class:`VAEGalaxy`) and GalSim YAML types.
Importing the package registers the config input ``vae_model`` and object type
``VAEGalaxy`` (``modules: [galsim_vae]`` in a YAML file).
"""

from ._version import __version__

__all__ = ["__version__"]
