"""The registries: one each for architectures, decoders, priors and likelihoods.

A new decoder, prior, likelihood or architecture is one module that registers itself
here (or is registered by name and import path, so that nothing is imported before it
is used); the bundle's typed spec names it, and training, the bundle reader, the
generator and the evaluation find it through :meth:`Registry.get`, with no edit
elsewhere.  Importing this module imports neither TensorFlow nor GalSim: the built-in
entries are import paths, loaded on first use.

Contracts of the entries:

- ``ARCHITECTURES``: a ``keras.Model`` class built as ``cls(**hyperparameters)`` with
  ``encode``, ``decode``, ``likelihood``, ``prior``, ``prior_transform``, ``noise_shape``,
  ``compute_losses``, ``get_config_dict`` (see docs/architecture.md).
- ``DECODERS``: ``build(stamp_size, in_features, channels, output_activation, **options)
  -> keras.Model`` mapping (B, in_features) to (B, S, S, 1).
- ``PRIORS``: a class built as ``cls(**hyperparameters)`` with ``transform(eps,
  conditions) -> z``, ``distribution(conditions)``, ``latent_size``, ``n_conditions``,
  ``get_config_dict``, ``save_weights``/``load_weights`` (``has_weights=True``); the
  ``normal`` entry is N(0, I) and has no weights.
- ``LIKELIHOODS``: ``fn(mean, noise_std, **options) -> tfd.Distribution`` over the
  observed image.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Entry:
    """One registered object: ``target`` is the object or its ``"module:attribute"`` path;
    ``info`` holds declared properties (e.g. ``has_weights`` of a prior)."""

    name: str
    target: Any
    info: dict = field(default_factory=dict)

    def load(self) -> Any:
        """The registered object (imported on first use)."""
        if isinstance(self.target, str):
            module, _, attribute = self.target.partition(":")
            self.target = getattr(importlib.import_module(module), attribute)
        return self.target


class Registry:
    """Names -> objects of one kind (``"architecture"``, ``"decoder"``...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: Any = ..., *, replace: bool = False,
                 **info) -> Any:
        """Register ``target`` (an object, a ``"module:attribute"`` path, or None for an
        entry with nothing to build) under ``name``; without ``target``, a decorator.  A name is registered once unless ``replace``."""
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise ValueError(f"{self.kind} name {name!r} must be letters, digits and _")

        def add(obj: Any) -> Any:
            if name in self._entries and not replace:
                raise ValueError(f"{self.kind} {name!r} is registered already")
            self._entries[name] = Entry(name, obj, dict(info))
            return obj

        return add if target is ... else add(target)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register toy entries clean up with it)."""
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def info(self, name: str) -> dict:
        """The declared properties of ``name``."""
        return dict(self._entry(name).info)

    def get(self, name: str) -> Any:
        """The object registered as ``name`` (imported on first use)."""
        return self._entry(name).load()

    def _entry(self, name: str) -> Entry:
        from ..errors import BundleError

        if name not in self._entries:
            raise BundleError(f"unknown {self.kind} {name!r}; known: {list(self._entries)} "
                              "(a newer galsim-vae, or a module registering it, may be needed)")
        return self._entries[name]


ARCHITECTURES = Registry("architecture")
DECODERS = Registry("decoder")
PRIORS = Registry("prior")
LIKELIHOODS = Registry("likelihood")

ARCHITECTURES.register("vae", "galsim_vae.models.vae:BetaVAE")
for _name, _cls in (("cvae", "ConditionalVAE"), ("cvae2", "ConditionalVAE2"),
                    ("fancy_cvae", "FancyConditionalVAE")):
    ARCHITECTURES.register(_name, f"galsim_vae.models.conditional:{_cls}")
DECODERS.register("conv", "galsim_vae.models.networks:build_decoder_cnn")
DECODERS.register("subpixel", "galsim_vae.models.networks:build_subpixel_decoder_cnn")
PRIORS.register("normal", None, has_weights=False)
PRIORS.register("flow", "galsim_vae.models.prior:FlowPrior", has_weights=True)
LIKELIHOODS.register("gaussian", "galsim_vae.models.likelihood:pixel_likelihood")


def build_prior(kind: str, hyperparameters: dict) -> Any:
    """The prior registered as ``kind`` built from its hyper-parameters (None for the
    parameter-free ``normal`` prior)."""
    cls: Callable | None = PRIORS.get(kind)
    return None if cls is None else cls(**hyperparameters)
