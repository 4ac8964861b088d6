"""JSON hyper-parameters of the models: read-only properties and ``get_config_dict``.

A model keeps the keyword arguments that rebuild it in ``self._config`` (plain JSON
types); the weights are saved apart with Keras 3 ``save_weights``.
"""

from __future__ import annotations

from typing import Any


def config_property(key: str, doc: str) -> property:
    """A read-only property returning ``self._config[key]``."""
    return property(lambda self: self._config[key], doc=doc)


class HyperparameterMixin:
    """Gives a class holding ``self._config`` a ``get_config_dict`` method."""

    _config: dict[str, Any]

    def get_config_dict(self) -> dict[str, Any]:
        """JSON-able keyword arguments that rebuild this network (weights not included)."""
        return {key: (list(v) if isinstance(v, (list, tuple)) else v)
                for key, v in self._config.items()}
