"""Exceptions raised by galsim-vae.

Every error names what is wrong (file, column, value, allowed range) and, where there is
one, the fix.  They derive from the built-in exception a user would expect (``ValueError``
for bad values, ``FileNotFoundError`` for missing files, ...), so ``except ValueError``
keeps working, and from :class:`GalsimVAEError`, so the CLI can turn any of them into a
one-line message and a non-zero exit.
"""

from __future__ import annotations


class GalsimVAEError(Exception):
    """Base class of every error galsim-vae raises on purpose."""


class InputDataError(GalsimVAEError, ValueError):
    """Input data (catalog, image, table, dataset) is unusable: bad column, NaN pixel, ..."""


class MissingInputError(GalsimVAEError, FileNotFoundError):
    """A file or folder the operation needs does not exist."""


class OutputExistsError(GalsimVAEError, FileExistsError):
    """An output path exists already and overwriting was not asked for."""


class BundleError(GalsimVAEError, ValueError):
    """A model bundle is missing files, fails its checksum, or is of an unknown format."""


class ConditionError(GalsimVAEError, ValueError):
    """A condition (e.g. redshift) or latent has the wrong shape or is out of range."""


class OutputWriteError(GalsimVAEError, OSError):
    """An output could not be written (disk full, file-size limit, quota, I/O error);
    nothing partial was kept."""
