"""Atomic output and progress reporting.

Nothing galsim-vae writes is ever left half-written: outputs are produced under a
temporary name beside the final one and renamed into place only when complete, so a
killed or failed run leaves either the previous state or nothing that reads as valid.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from .errors import MissingInputError, OutputExistsError

T = TypeVar("T")


def _umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask

#: Suffix of the temporary folders/files made beside an output while it is written.
TMP_MARK = ".tmp-"


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that ``path`` can be created: its parent exists and is writable, and it does
    not exist unless ``overwrite``.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False.
        MissingInputError: the parent folder does not exist, or a file stands in its path.
        PermissionError: the parent folder is not writable.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output path {str(path)!r} exists already; choose another path or pass "
            "overwrite=True (--overwrite on the command line)")
    parent = path.absolute().parent
    if not parent.is_dir():
        blocker = next((p for p in parent.parents if p.exists() and not p.is_dir()), None)
        if parent.exists() or blocker is not None:
            blocker = parent if parent.exists() else blocker
            raise MissingInputError(
                f"cannot write {str(path)!r}: {str(blocker)!r} is a file, not a folder; "
                "choose an output path inside a folder")
        raise MissingInputError(
            f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist; create it "
            "first (mkdir -p) or choose another output path")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {str(path)!r}: folder {str(parent)!r} is not writable")
    return path


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporary folders/files left beside ``path`` by writers that were killed (SIGKILL,
    power loss): siblings named ``<name>.tmp-*``.  They never read as valid outputs and
    are not reused; galsim-vae leaves them alone (another run may still be writing one)."""
    path = Path(path).absolute()
    try:
        return sorted(p for p in path.parent.glob(glob.escape(path.name) + TMP_MARK + "*"))
    except OSError:
        return []


def _warn_stale(path: Path) -> None:
    """Warn about the temporaries an interrupted earlier run left beside ``path``,
    saying how to remove them."""
    stale = stale_temporaries(path)
    if stale:
        names = " ".join(repr(str(p)) for p in stale[:5]) + (" ..." if len(stale) > 5 else "")
        warnings.warn(
            f"{len(stale)} temporary output(s) of an interrupted earlier run lie beside "
            f"{str(path)!r} and are ignored: {names}. Unless another galsim-vae run is "
            f"writing {str(path)!r} right now, delete them: rm -rf {names}",
            UserWarning, stacklevel=3)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Create the folder ``path`` atomically.

    Yields a temporary folder beside ``path``; when the ``with`` block ends without an
    exception it is renamed to ``path`` (replacing an existing one only if ``overwrite``).
    On any exception, including KeyboardInterrupt, the temporary folder is removed.
    A SIGKILL leaves only a folder whose name contains ``.tmp-``, never ``path``.
    """
    path = check_output_path(path, overwrite=overwrite)
    _warn_stale(path)
    with _signals_deferred() as held:  # no signal between creating tmp and the try
        with _writable_folder(path):
            tmp = Path(tempfile.mkdtemp(prefix=path.name + TMP_MARK,
                                        dir=path.absolute().parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the usual mode
        try:
            with _signals_restored(held):
                yield tmp
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            _raise_write_error(err, path)
            raise
        if overwrite and path.exists():
            old = path.with_name(path.name + TMP_MARK + "old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(tmp, path)   # fails if another process made ``path`` meanwhile
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if path.exists():
                raise _written_meanwhile(path) from None
            raise


#: Signals that the commands turn into a clean stop (:mod:`galsim_vae.interruption`); held
#: back while an atomic output's temporary is created, renamed or removed.
_DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _HeldSignals:
    """Python-level handlers that record SIGINT/SIGTERM instead of acting on them, and
    the handlers they replaced.  (Masking the signals in the main thread would not do:
    the kernel hands a process-directed signal to any thread that does not block it, and
    Python then runs the handler in the main thread all the same.)"""

    def __init__(self):
        self.caught: list[tuple[int, object]] = []
        self.originals = {s: signal.getsignal(s) for s in _DEFERRED_SIGNALS}

    def hold(self, signum, frame) -> None:
        self.caught.append((signum, frame))

    def install(self) -> None:
        for signum in self.originals:
            signal.signal(signum, self.hold)

    def restore(self) -> None:
        """Put the original handlers back and give them a signal held meanwhile (one
        that raises, e.g. KeyboardInterrupt, raises here)."""
        for signum, handler in self.originals.items():
            signal.signal(signum, handler)
        if not self.caught:
            return
        signum, frame = self.caught[0]
        self.caught.clear()
        handler = self.originals[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM for the block (in the main thread; elsewhere Python
    delivers no signal anyway): one that arrives meanwhile acts when the block ends.
    Without it, a signal landing between ``mkdtemp`` and the ``try`` that removes the
    temporary on failure left the temporary behind (seen once under load in
    ``tests/test_signals.py``).  Yields the held state for :func:`_signals_restored`."""
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    held = _HeldSignals()
    held.install()
    try:
        yield held
    finally:
        held.restore()


@contextlib.contextmanager
def _signals_restored(held: _HeldSignals | None):
    """Inside :func:`_signals_deferred`: the original handlers (the caller's work stays
    interruptible; a signal held so far acts now, inside the caller's ``try``), held
    again when the block ends."""
    if held is None:
        yield
        return
    held.restore()
    try:
        yield
    finally:
        held.install()


#: errno values of a failed write that says nothing about the inputs.
WRITE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)


def _raise_write_error(err: BaseException, path: Path) -> None:
    """Turn a failed write (disk full, file-size limit, quota, I/O error, or the short
    write numpy/astropy report without an errno) into :class:`OutputWriteError`."""
    from .errors import GalsimVAEError, OutputWriteError

    if not isinstance(err, OSError) or isinstance(err, (GalsimVAEError, FileNotFoundError,
                                                        PermissionError)):
        return
    if err.errno is not None and err.errno not in WRITE_ERRNOS:
        return
    raise OutputWriteError(
        f"could not write {str(path)!r}: {err} (disk full, a file-size limit or a quota?); "
        "nothing partial was kept and any previous output there is untouched: free space "
        "and run the command again") from err


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Write the file ``path`` atomically: yields a temporary path in the same folder,
    renamed to ``path`` when the block succeeds, removed when it fails."""
    path = check_output_path(path, overwrite=overwrite)
    _warn_stale(path)
    with _signals_deferred() as held:  # no signal between creating tmp and the try
        with _writable_folder(path):
            fd, name = tempfile.mkstemp(prefix=path.name + TMP_MARK,
                                        dir=path.absolute().parent, suffix=path.suffix)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        try:
            with _signals_restored(held):
                yield tmp
        except BaseException as err:
            tmp.unlink(missing_ok=True)
            _raise_write_error(err, path)
            raise
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # no-clobber: fails if another process made ``path`` meanwhile
        except FileExistsError:
            raise _written_meanwhile(path) from None
        except OSError:         # a file system without hard links: check, then rename
            if path.exists():
                raise _written_meanwhile(path) from None
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _writable_folder(path: Path):
    """Name the output and its folder when the folder refuses a new entry (permissions,
    a read-only file system: what ``os.access`` cannot always tell, e.g. for root)."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise PermissionError(err.errno, f"cannot write output {str(path)!r}: its folder "
                              f"{str(path.absolute().parent)!r} is not writable "
                              f"({err.strerror})") from None


def _written_meanwhile(path: Path):
    """The error of a writer that lost the race for ``path`` to another process."""
    from .errors import OutputExistsError

    return OutputExistsError(
        f"output path {str(path)!r} was written by another process while this one ran; "
        "its output is kept whole and this one was discarded (choose another path, or "
        "--overwrite to replace it)")


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise MissingInputError naming it and what it is."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{what} {str(path)!r} does not exist")
    return path


def progress(iterable: Iterable[T], *, total: int | None = None, desc: str = "",
             disable: bool | None = None) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm progress bar on stderr.

    The bar is shown when stderr is a terminal, or when ``GALSIM_VAE_PROGRESS=1``; it is
    hidden when ``GALSIM_VAE_PROGRESS=0`` or ``disable=True``.
    """
    from tqdm.auto import tqdm

    if disable is None:
        env = os.environ.get("GALSIM_VAE_PROGRESS")
        disable = (env == "0") if env is not None else not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=disable, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)
