"""Sub-commands of ``galsim-vae``: one module each, with ``add_parser(subparsers)``
(which sets ``run`` as the parser default) and ``run(args) -> int``."""

from __future__ import annotations

import importlib
from typing import Iterable


def add_command_parsers(subparsers, module_names: Iterable[str]) -> None:
    """Import ``galsim_vae.commands.<name>`` for each name and add its parser."""
    for name in module_names:
        importlib.import_module(f"galsim_vae.commands.{name}").add_parser(subparsers)
