"""TensorFlow Probability VAEs for galaxy stamps: networks, likelihood, priors.

``build_model(architecture, **hyperparameters)`` builds an architecture of the registry
(:mod:`.registry`: ``ARCHITECTURES``, ``DECODERS``, ``PRIORS``, ``LIKELIHOODS``);
``model.get_config_dict()`` returns the JSON-able hyper-parameters that rebuild it.
``fit_flow_prior`` fits the learned latent prior (:class:`FlowPrior`) that
``model.attach_prior`` plugs in.  This package knows nothing about GalSim.

Importing ``galsim_vae.models`` does not import TensorFlow; the first use of
``build_model``, ``FlowPrior``, ``fit_flow_prior``, ... does.
"""

from __future__ import annotations

from typing import Any

from .registry import ARCHITECTURES as _ARCHITECTURE_REGISTRY

# public name -> module that defines it (imported on first access: TensorFlow is heavy)
_LAZY = {"BetaVAE": "vae", "ConditionalVAE": "conditional", "ConditionalVAE2": "conditional",
         "FancyConditionalVAE": "conditional",
         "FlowPrior": "prior", "fit_flow_prior": "prior_fit", "standard_normal_prior": "prior",
         "convolve_psf": "likelihood", "pixel_likelihood": "likelihood",
         "stage_sizes": "networks", "stage_channels": "networks"}

__all__ = ["ARCHITECTURES", "build_model", *sorted(_LAZY)]


def build_model(architecture: str, **hyperparameters: Any):
    """Build a VAE of the given architecture.

    Parameters:
        architecture:    One of :data:`ARCHITECTURES`.
        hyperparameters: Keyword arguments of the model class: ``stamp_size`` (required),
                         ``latent_size``, ``channels``, ``n_conditions``, ``psf_free``,
                         ``psf_size``, ``head_channels``, ``output_activation`` and, for
                         ``fancy_cvae``, ``redshift_weight``, ``redshift_hidden_units``
                         (see :class:`galsim_vae.models.vae.BetaVAE`).

    Returns:
        A built Keras model; ``build_model(m.architecture, **m.get_config_dict())``
        rebuilds the same network.
    """
    from ..errors import InputDataError

    if architecture not in _ARCHITECTURE_REGISTRY:
        raise InputDataError(f"unknown architecture {architecture!r}; choose one of "
                             f"{', '.join(_ARCHITECTURE_REGISTRY.names())}")
    if "stamp_size" not in hyperparameters:
        raise InputDataError(f"build_model({architecture!r}) needs stamp_size (pixels)")
    cls = _ARCHITECTURE_REGISTRY.get(architecture)
    try:
        return cls(**hyperparameters)
    except TypeError as err:   # unknown keyword
        raise InputDataError(f"bad hyper-parameters for {architecture!r}: {err}") from err


def __getattr__(name: str):
    if name == "ARCHITECTURES":     # the registered names, also those added later
        return _ARCHITECTURE_REGISTRY.names()
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
