"""The ``galsim-vae`` command line: a thin shell over the library.

Each sub-command lives in :mod:`galsim_vae.commands` as a module with
``add_parser(subparsers)`` and ``run(args) -> int``.  Errors galsim-vae raises on purpose
(and missing files, permission problems) print one line naming the problem and exit
with status 2; nothing half-written is left behind because every writer is atomic.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from typing import Sequence

from ._version import __version__
from .commands import add_command_parsers
from .errors import GalsimVAEError
from .interruption import EXIT_STATUS, Terminated, handled, received
from .tf_runtime import VERBOSE_ENV

#: Sub-commands, in the order ``--help`` lists them: name -> module in galsim_vae.commands.
COMMANDS = {
    "prepare": "prepare",
    "simulate": "simulate",
    "train": "train",
    "evaluate": "evaluate",
    "sample": "sample",
    "demo": "demo",
    "export": "export",
    "refit-prior": "refit_prior",
}

#: Sub-commands that run TensorFlow (imported quietly first).
TENSORFLOW_COMMANDS = ("train", "evaluate", "export", "refit-prior")

#: Storage failures turned into a one-line error: errno -> what happened.
STORAGE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file-size limit was hit",
                  errno.EDQUOT: "the disk quota is exceeded",
                  errno.EROFS: "the file system is read-only"}

#: Exit status for bad input or a failed operation.
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command whose module is present."""
    parser = argparse.ArgumentParser(
        prog="galsim-vae",
        description="Data-driven galaxy morphologies for GalSim: prepare Hubble training "
                    "sets, train TFP VAEs, render VAE galaxies.")
    parser.add_argument("--version", action="version", version=f"galsim-vae {__version__}")
    parser.add_argument("--quiet", action="store_true", help="hide progress bars")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up notices (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_command_parsers(sub, COMMANDS.values())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``galsim-vae`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"
    if args.quiet:
        os.environ["GALSIM_VAE_PROGRESS"] = "0"
    else:
        os.environ.setdefault("GALSIM_VAE_PROGRESS", "1")
    with handled():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run one sub-command; errors and signals become a line on stderr and a status."""
    try:
        return _run_or_stop(args)
    except Exception:
        # a signal turned into another error on its way out (a C extension initialising)
        signum = received()
        if signum is None:
            raise
        return _stopped(args, signum)


def console_main() -> None:
    """Entry point of the ``galsim-vae`` script and ``python -m galsim_vae``: run
    :func:`main` and exit with its status.

    A command stopped by SIGINT or SIGTERM has already removed its partial output and
    printed its line when :func:`main` returns 130 or 143; it then leaves at once
    (``os._exit`` after flushing stdout and stderr).  Through the interpreter's
    finalisation instead, the full test suite saw ``evaluate`` and ``simulate`` stopped by
    SIGINT end by the signal itself (status -2) after printing their line, in 2 of 2 CI
    runs, never when run alone.
    """
    status = main()
    if status in EXIT_STATUS.values():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def _stopped(args: argparse.Namespace, signum: int) -> int:
    """The line and status of a command stopped by ``signum``."""
    if signum == signal.SIGINT:
        print(f"galsim-vae {args.command}: interrupted; no partial output was kept",
              file=sys.stderr)
    else:
        print(f"galsim-vae {args.command}: terminated (SIGTERM); no partial output was kept"
              + ("; training checkpoints are intact: continue with --resume"
                 if args.command == "train" else ""), file=sys.stderr)
    return EXIT_STATUS[signum]


def _run_or_stop(args: argparse.Namespace) -> int:
    """Run one sub-command; known errors and signals become a line and a status."""
    try:
        if args.command in TENSORFLOW_COMMANDS:
            from .tf_runtime import import_tensorflow

            import_tensorflow()
        return int(args.run(args) or 0)
    except GalsimVAEError as err:
        print(f"galsim-vae {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        print(f"galsim-vae {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as err:
        if err.errno not in STORAGE_ERRORS:
            raise
        print(f"galsim-vae {args.command}: error: {STORAGE_ERRORS[err.errno]} while writing "
              f"{err.filename or 'the output'} ({err.strerror}); nothing partial was kept "
              "and any previous output is untouched: free space (or raise the limit) and "
              "run the command again", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return _stopped(args, signal.SIGINT)
    except Terminated:
        return _stopped(args, signal.SIGTERM)


if __name__ == "__main__":  # pragma: no cover
    console_main()
