"""Two writers of one output, and read-only output folders: one wins whole, the other
fails clearly, nothing partial is left (``galsim_vae.io_utils``)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from galsim_vae.cli import main
from galsim_vae.errors import OutputExistsError
from galsim_vae.io_utils import atomic_directory, atomic_file

from test_generator import tiny_bundle


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_two_writers_one_wins_whole(tmp_path, kind):
    """Both writers start before either finishes (a barrier inside the write); the first
    to finish keeps its whole output, the second gets OutputExistsError and leaves no
    temporary behind."""
    target = tmp_path / ("out.npy" if kind == "file" else "out")
    barrier = threading.Barrier(2)
    results: dict = {}

    def write(name: str, value: float, delay: float) -> None:
        writer = atomic_file if kind == "file" else atomic_directory
        try:
            with writer(target) as tmp:
                barrier.wait(timeout=10)          # both have passed the existence check
                path = tmp if kind == "file" else tmp / "data.npy"
                np.save(path, np.full(1000, value))
                threading.Event().wait(delay)
            results[name] = "wrote"
        except OutputExistsError as err:
            results[name] = str(err)

    threads = [threading.Thread(target=write, args=("a", 1.0, 0.0)),
               threading.Thread(target=write, args=("b", 2.0, 0.3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == "wrote"
    assert "was written by another process" in results["b"]
    data = np.load(target if kind == "file" else target / "data.npy")
    np.testing.assert_array_equal(data, np.full(1000, 1.0))   # the winner's, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


@pytest.mark.skipif(sys.platform != "linux", reason="uses Linux folder semantics")
def test_read_only_output_folder(tiny_dataset, tmp_path_factory, capsys):
    """A folder that refuses new files: a 0555 folder, or for root (whom permissions do
    not stop) sysfs, which refuses file creation to everyone."""
    bundle = tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("ro"))
    if os.geteuid() == 0:
        folder = Path("/sys")
        before = sorted(os.listdir(folder))
    else:
        folder = tmp_path_factory.mktemp("readonly")
        folder.chmod(0o555)
        before = []
    try:
        assert main(["sample", str(bundle), "--n", "2", "--condition", "zphot=0.5",
                     "--out", str(folder / "s.fits")]) == 2
        err = capsys.readouterr().err
        assert f"cannot write output '{folder / 's.fits'}'" in err and "not writable" in err
        assert "Traceback" not in err and sorted(os.listdir(folder)) == before
    finally:
        if folder != Path("/sys"):
            folder.chmod(0o755)
