"""What a bundle's metadata may hold: plain JSON values, no code.

``model.json`` is data only.  These checks refuse anything that describes code or a
serialised Python object (Keras layer configs, Lambda layers, pickle or jsonpickle
payloads) and keep the model's hyper-parameters to numbers, short names and flat lists:
the keyword arguments of ``build_model``.  Nothing in a bundle is ever executed.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

import numpy as np

from ..errors import BundleError

# Keys and values that mark serialised code or objects (Keras configs, jsonpickle, pickle):
# a bundle holds plain numbers and names only, so any of these is refused.
_CODE_KEYS = {"class_name", "module", "registered_name", "py/object", "py/reduce",
              "py/function", "py/type", "__class__", "__reduce__", "function", "lambda",
              "code", "pickle", "config"}
_CODE_VALUES = re.compile(r"^(lambda\b|Lambda$|gAS|gAN|gAJ|\x80)|pickle|__import__|"
                          r"\bexec\(|\beval\(", re.IGNORECASE)
_NAME_VALUE = re.compile(r"^[A-Za-z0-9_.\-+ ]{0,64}$")


def plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON (numbers, strings, bools, None, lists, dicts)."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            raise BundleError(f"{where} is {value}: bundle metadata must be finite numbers")
        return value
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(list(value))]
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise BundleError(f"{where} is a {type(value).__name__}; bundle metadata holds plain "
                      "JSON values only (numbers, strings, lists, dicts)")


def reject_code(tree: Any, where: str, source: str) -> None:
    """Raise BundleError if ``tree`` (parsed model.json) holds anything that describes code
    or a serialised Python object: Keras layer configs (``class_name``), Lambda layers,
    jsonpickle/pickle payloads."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if str(key).lower() in _CODE_KEYS:
                raise BundleError(
                    f"{source}: {where}.{key} describes a serialised object or code; "
                    "galsim-vae bundles hold plain hyper-parameters only and are never "
                    "deserialised into code. Re-save the model with galsim_vae.bundle.save_bundle")
            reject_code(value, f"{where}.{key}", source)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            reject_code(value, f"{where}[{i}]", source)
    elif isinstance(tree, str) and _CODE_VALUES.search(tree):
        raise BundleError(
            f"{source}: {where} = {tree[:40]!r} names code or a pickled object; galsim-vae "
            "bundles hold plain hyper-parameters only (no Lambda layers, no pickle)")


def check_hyperparameters(hp: Any, source: str) -> dict[str, Any]:
    """Hyper-parameters must be a flat dict of numbers, bools, None, short names, or lists
    of those: the keyword arguments of ``build_model``."""
    if not isinstance(hp, Mapping):
        raise BundleError(f"{source}: 'hyperparameters' must be an object of build_model "
                          f"keyword arguments, got {type(hp).__name__}")

    def check(value: Any, where: str) -> None:
        if value is None or isinstance(value, (bool, int, float)):
            return
        if isinstance(value, str):
            if not _NAME_VALUE.match(value):
                raise BundleError(f"{source}: hyperparameters.{where} = {value[:40]!r} is not "
                                  "a plain name (letters, digits, _.-+, at most 64 characters)")
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, (list, dict)):
                    raise BundleError(f"{source}: hyperparameters.{where}[{i}] is nested; "
                                      "hyper-parameters are numbers, names or flat lists")
                check(v, f"{where}[{i}]")
            return
        raise BundleError(f"{source}: hyperparameters.{where} is a {type(value).__name__}; "
                          "hyper-parameters are numbers, names or flat lists (an object here "
                          "would be a serialised layer, which bundles never hold)")

    for key, value in hp.items():
        check(value, str(key))
    return dict(hp)
