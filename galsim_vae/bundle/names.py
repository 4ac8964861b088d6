"""Bundle names: the bundles shipped in ``trained/`` (package ``galsim_vae.trained``)
and the resolution of a name or a path to a bundle folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BundleError

#: The metadata file that marks a bundle folder.
MODEL_JSON = "model.json"


def _trained_folder() -> Path | None:
    """Folder of the bundles shipped with the package (``galsim_vae.trained``), or the
    ``trained/`` folder of a source checkout when that package is not installed."""
    import importlib.resources

    try:
        folder = importlib.resources.files("galsim_vae.trained")
        return Path(str(folder))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent.parent / "trained"
        return checkout if (checkout / "__init__.py").is_file() else None


def list_bundles() -> list[str]:
    """Names of the model bundles shipped with galsim-vae (sorted)."""
    folder = _trained_folder()
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / MODEL_JSON).is_file())


def resolve_bundle(name_or_path: str | os.PathLike) -> Path:
    """The folder of a bundle given by path or by the name of a shipped bundle.

    An existing folder path is returned as it is; otherwise ``name_or_path`` is looked up
    among the bundles of the installed ``galsim_vae.trained`` package.

    Raises:
        BundleError: neither; the message lists the shipped bundle names.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    folder = _trained_folder()
    if folder is not None and Path(name).name == name and (folder / name).is_dir():
        return folder / name
    available = list_bundles()
    raise BundleError(f"no model bundle {name!r}: it is neither a folder nor a bundle shipped "
                      f"with galsim-vae (available: {', '.join(available) or 'none'})")


def bundle_source(path: str | os.PathLike) -> str:
    """How to name a bundle folder in code that another process or machine runs: its
    name if it is a shipped bundle, else its absolute path."""
    path = Path(path).resolve()
    folder = _trained_folder()
    if folder is not None and path.parent == folder.resolve():
        return path.name
    return str(path)
