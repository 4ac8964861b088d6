"""SIGTERM and SIGINT as exceptions, and a record that one arrived.

Python runs a signal handler between two bytecodes of the main thread, wherever that is.
When it is inside a ``__del__`` method or a weak-reference callback (TensorFlow runs many
at the end of each dataset iteration), the exception the handler raises is printed as
"Exception ignored" and lost, and the command would carry on as if no signal had come.
The handler therefore also records the signal, and long loops call :func:`check` at their
safe points (the trainer after each checkpoint) to raise it again.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

#: Exit status of a command stopped by each signal (128 + signal number, as shells report).
EXIT_STATUS = {signal.SIGTERM: 143, signal.SIGINT: 130}


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that every atomic writer removes its
    temporaries on the way out (as for Ctrl-C)."""


_received: list[int] = []


def _exception_for(signum: int) -> BaseException:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handle(signum, frame) -> None:
    _received.append(signum)
    raise _exception_for(signum)


def check() -> None:
    """Raise the exception of a signal that arrived since :func:`handled` started (once
    more, in case the first was swallowed); return quietly if none did."""
    if _received:
        raise _exception_for(_received[-1])


def received() -> int | None:
    """The last signal that arrived since :func:`handled` started, or None.  A signal
    that lands while a C extension initialises (e.g. LiteRT's interpreter, imported on
    first use) reaches the caller as that extension's own error ("ImportError:
    initialization failed"), with the signal's exception as its cause: the record says
    the command was stopped all the same."""
    return _received[-1] if _received else None


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``,
    and both are recorded for :func:`check`; the previous handlers come back afterwards."""
    _received.clear()
    previous = {signum: signal.signal(signum, _handle) for signum in EXIT_STATUS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()
