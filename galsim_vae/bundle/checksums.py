"""Checksums of the files of a bundle (sha256), recorded in ``model.json`` ``files``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping

from ..errors import BundleError


def sha256_file(path: str | os.PathLike) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def file_digests(folder: Path, exclude: tuple[str, ...]) -> dict[str, str]:
    """``{file name: sha256}`` of the files directly in ``folder`` (sorted by name)."""
    return {p.name: sha256_file(p) for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.name not in exclude}


def verify_files(path: Path, files: Mapping[str, str], source: str) -> None:
    """Every file of ``files`` is in the bundle folder with the recorded sha256.

    Raises:
        BundleError: a name with a folder, a missing file, or a checksum mismatch.
    """
    for file_name, digest in files.items():
        if Path(file_name).name != file_name:
            raise BundleError(f"{source!r}: file name {file_name!r} must not contain a folder")
        file_path = path / file_name
        if not file_path.is_file():
            raise BundleError(f"bundle {str(path)!r} lacks the file {file_name!r} listed in "
                              "model.json; the bundle is incomplete: copy it again")
        actual = sha256_file(file_path)
        if actual != digest:
            raise BundleError(f"checksum mismatch for {str(file_path)!r}: model.json records "
                              f"{digest}, the file has {actual}; the file is corrupt or was "
                              "changed: copy the bundle again")
