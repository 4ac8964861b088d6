"""GalSim YAML output type ``AtomicFits``: GalSim's ``Fits`` output, written atomically.

GalSim's own ``Fits`` output (``galsim/config/output.py``) and its extra outputs (the
truth catalog, ``galsim/config/extra.py``) write straight into the final file names, so a
disk that fills up, a quota or a SIGTERM in the middle of a write leaves a truncated FITS
file or catalog behind, in place of the previous one.  ``AtomicFits`` builds the same
files but writes each one to a temporary beside it and renames it into place when it is
complete (:func:`galsim_vae.io_utils.atomic_file`); a failed or interrupted write removes
the temporary and leaves any previous file untouched, and the error names the file::

    modules: [galsim_vae]
    output:
        type: AtomicFits            # every key of GalSim's Fits output
        dir: output
        file_name: field.fits
        truth: {file_name: field_truth.dat, columns: {...}}

While a file is written, SIGTERM and SIGINT raise an exception in GalSim's main process
(:mod:`galsim_vae.interruption`), so the temporary is removed as for any other failure.
"""

from __future__ import annotations

import contextlib
import os
import threading

from galsim.config import ParseValue, RegisterOutputType, RetryIO
from galsim.config.extra import ensure_dir
from galsim.config.output import OutputBuilder
from galsim.fits import writeMulti

from . import interruption
from .io_utils import atomic_file


def _write_atomically(write, file_name: str, *args) -> None:
    """``write(temporary_name, *args)``, then the temporary renamed to ``file_name``."""
    signals = (interruption.handled()
               if threading.current_thread() is threading.main_thread()
               else contextlib.nullcontext())  # handlers can only be set in the main thread
    with signals, atomic_file(file_name, overwrite=True) as tmp:
        write(str(tmp), *args)


def _retries(output: dict, base: dict) -> int:
    """Tries of each write: 1 + ``output.retry_io`` (GalSim's meaning)."""
    if "retry_io" in output:
        return ParseValue(output, "retry_io", base, int)[0] + 1
    return 1


class AtomicFitsBuilder(OutputBuilder):
    """GalSim's ``Fits`` output builder whose files (the image file and every extra output
    with a ``file_name``) appear only when complete."""

    def writeFile(self, data, file_name, config, base, logger):
        _write_atomically(lambda name: writeMulti(data, name), file_name)

    def writeExtraOutputs(self, config, data, logger):
        """GalSim's ``WriteExtraOutputs`` (``galsim/config/extra.py``), each file written
        through a temporary."""
        output = config["output"]
        ntries = _retries(output, config)
        default_dir = ParseValue(output, "dir", config, str)[0] if "dir" in output else None
        noclobber = ("noclobber" in output
                     and ParseValue(output, "noclobber", config, bool)[0])
        last_files = config.setdefault("extra_last_file", {})
        for key, builder in config["extra_builder"].items():
            field = output[key]
            if "file_name" not in field:
                continue                # written into an HDU of the main file
            file_name = ParseValue(field, "file_name", config, str)[0]
            folder = ParseValue(field, "dir", config, str)[0] if "dir" in field else default_dir
            if folder is not None:
                file_name = os.path.join(folder, file_name)
            ensure_dir(file_name)
            if (noclobber and os.path.isfile(file_name)) or last_files.get(key) == file_name:
                continue
            builder.ensureFinalized(field, config, data, logger)

            def write(name, builder=builder, field=field):
                RetryIO(builder.writeFile, (name, field, config, logger), ntries, name, logger)
            _write_atomically(write, file_name)
            last_files[key] = file_name


RegisterOutputType("AtomicFits", AtomicFitsBuilder())
