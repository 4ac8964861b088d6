"""Atomic output: nothing half-written is ever left at the final path."""

from __future__ import annotations

import pytest

from galsim_vae.errors import MissingInputError, OutputExistsError
from galsim_vae.io_utils import TMP_MARK, atomic_directory, atomic_file


def test_atomic_directory_appears_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if TMP_MARK in p.name]


def test_atomic_directory_removed_on_error(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused_unless_overwrite(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="exists already"):
        with atomic_directory(target):
            pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_missing_parent_folder_named(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        with atomic_file(tmp_path / "nope" / "f.txt"):
            pass


def test_atomic_file(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(KeyError):
        with atomic_file(target) as tmp:
            tmp.write_text("partial")
            raise KeyError("x")
    assert list(tmp_path.iterdir()) == []
    with atomic_file(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"


def test_outputs_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "d"):
            pass
        with atomic_file(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644


class _Stopped(Exception):
    pass


@pytest.mark.parametrize("writer, maker", [(atomic_directory, "mkdtemp"),
                                           (atomic_file, "mkstemp")])
def test_a_signal_right_after_the_temporary_is_made_leaves_nothing(tmp_path, monkeypatch,
                                                                   writer, maker):
    """A SIGTERM that lands just after the temporary output is created, before the code
    that removes it on failure is entered, still leaves nothing behind: the signal is held
    until the temporary is covered, then stops the block (seen under load in
    tests/test_signals.py: an interrupted `simulate` left its `out.tmp-*` folder)."""
    import os
    import signal
    import tempfile

    def stop(signum, frame):
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    real = getattr(tempfile, maker)

    def make_then_signal(*args, **kwargs):
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)      # arrives before the temporary is returned
        return made

    monkeypatch.setattr(tempfile, maker, make_then_signal)
    try:
        with pytest.raises(_Stopped):
            with writer(tmp_path / "out.npy") as tmp:
                tmp.touch()
                pytest.fail("the block ran to its end; the signal was lost")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []
