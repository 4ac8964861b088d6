"""Interrupted runs: SIGKILL loses nothing and leaves nothing that reads as valid.

- ``galsim-vae train`` killed mid-epoch after a checkpoint: ``--resume`` continues from
  the last complete checkpoint and ends with a bundle that loads and generates.
- ``galsim-vae prepare`` / ``simulate`` killed mid-run: nothing at the output path (only a
  ``<out>.tmp-*`` folder, which is not a data set or catalog either), and a rerun works
  beside the stale temporary, warning with the command that removes it (stale
  temporaries are never deleted automatically: another run may still own one).

Each kill is a real SIGKILL of a ``python -m galsim_vae`` subprocess.  For ``prepare``,
whose 10 test galaxies take a fraction of a second, the subprocess slows
``DatasetWriter.add`` by a sleep so the kill lands while galaxies are being written.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import galsim

import galsim_vae
from conftest import TEST_DATA
from galsim_vae.data import Dataset
from galsim_vae.errors import MissingInputError
from galsim_vae.io_utils import TMP_MARK

pytest.importorskip("tensorflow")

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "GALSIM_VAE_PROGRESS": "0",
       "PYTHONWARNINGS": "default"}
PALTAS = TEST_DATA / "cosmos_paltas_23.5"


def start(code_or_argv, log: Path) -> subprocess.Popen:
    """Start ``python -m galsim_vae ARGV`` (a list) or ``python -c CODE`` (a str)."""
    argv = ([sys.executable, "-m", "galsim_vae", *map(str, code_or_argv)]
            if isinstance(code_or_argv, list) else [sys.executable, "-c", code_or_argv])
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=ENV)


def wait_for(condition, process: subprocess.Popen, *, timeout: float, what: str):
    """Poll ``condition()`` every 20 ms until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(f"the run ended (status {process.returncode}) before {what}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"timed out waiting for {what}")


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def temporaries(out: Path) -> list[Path]:
    return sorted(out.parent.glob(out.name + TMP_MARK + "*"))


def latest_checkpoint(checkpoint_dir: Path) -> int:
    """Epoch of the latest complete checkpoint (TensorFlow's ``checkpoint`` index), or 0."""
    index = checkpoint_dir / "ckpt" / "checkpoint"
    try:
        match = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', index.read_text(), re.M)
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


# ------------------------------------------------------------------------------ train
@pytest.mark.slow
def test_train_killed_mid_epoch_resumes_to_a_valid_bundle(tiny_dataset, tmp_path):
    out, checkpoints = tmp_path / "bundle", tmp_path / "checkpoints"
    epochs = 6
    argv = ["train", tiny_dataset, "--out", out, "--checkpoint-dir", checkpoints,
            "--model", "cvae2", "--epochs", epochs, "--batch-size", "4", "--latent-size", "3",
            "--channels", "4,8", "--seed", "3", "--beta", "0.5"]
    process = start(argv, tmp_path / "first.log")
    wait_for(lambda: latest_checkpoint(checkpoints) >= 1, process, timeout=240,
             what="the first checkpoint")
    first = time.monotonic()
    wait_for(lambda: latest_checkpoint(checkpoints) >= 2, process, timeout=120,
             what="the second checkpoint")
    time.sleep((time.monotonic() - first) / 2)  # half an epoch later: mid-epoch 3
    kill(process)
    done = latest_checkpoint(checkpoints)
    assert 2 <= done < epochs, (tmp_path / "first.log").read_text()
    assert not out.exists()  # the bundle is written only at the end
    assert temporaries(out) == []

    resumed = subprocess.run([sys.executable, "-m", "galsim_vae", *map(str, argv), "--resume"],
                             capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoints / 'ckpt' / f'ckpt-{done}'} after epoch {done}" \
        in resumed.stderr
    trained = re.findall(r"epoch (\d+)/6:", resumed.stderr)
    assert [int(e) for e in trained] == list(range(done + 1, epochs + 1))  # not one repeated
    with open(checkpoints / "history.csv") as f:
        history = list(csv.DictReader(f))
    assert [int(float(row["epoch"])) for row in history] == list(range(1, epochs + 1))
    losses = [float(row["train_loss"]) for row in history]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]

    model = galsim_vae.load_model(out)
    assert model.spec.training["epochs_trained"] == epochs
    z_lo, z_hi = model.redshift_range
    stamps = model.generate(4, redshift=0.5 * (z_lo + z_hi), rng=galsim.BaseDeviate(1))
    assert stamps.shape == (4, 32, 32) and np.isfinite(stamps).all() and stamps.sum() > 0


# ---------------------------------------------------------------------------- prepare
SLOW_PREPARE = textwrap.dedent("""
    import sys, time
    from galsim_vae.data import writer
    add = writer.DatasetWriter.add
    def slow_add(self, *args, **kwargs):
        time.sleep(0.3)
        return add(self, *args, **kwargs)
    writer.DatasetWriter.add = slow_add
    from galsim_vae.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_prepare_killed_leaves_nothing_valid_and_rerun_works(tmp_path):
    out = tmp_path / "dataset"
    argv = ["--quiet", "prepare", "cosmos", "--dir", str(PALTAS), "--psf-file",
            str(PALTAS / "psf_101.fits"), "--stamp-size", "64", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-c", SLOW_PREPARE, *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    (tmp,) = wait_for(lambda: [p for p in temporaries(out) if (p / "images.npy").is_file()],
                      process, timeout=120, what="the data set's temporary folder")
    time.sleep(0.7)  # a few galaxies written
    kill(process)
    assert not out.exists()
    assert temporaries(out) == [tmp]  # killed: the temporary folder stays, never renamed
    for path in (out, tmp):
        with pytest.raises(MissingInputError, match="does not exist"):
            Dataset(path)

    rerun = subprocess.run([sys.executable, "-m", "galsim_vae", *argv], capture_output=True,
                           text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"rm -rf '{tmp}'" in rerun.stderr  # says what is stale and how to remove it
    dataset = Dataset(out)
    assert len(dataset) == 10 and dataset.stamp_size == 64
    assert temporaries(out) == [tmp]


# --------------------------------------------------------------------------- simulate
def test_simulate_killed_leaves_nothing_valid_and_rerun_works(tmp_path):
    out = tmp_path / "survey"
    code = (f"from galsim_vae.simulation.survey import simulate_survey; "
            f"simulate_survey({str(out)!r}, 500, seed=2, sample='23.5', file_hdus=4)")
    process = start(code, tmp_path / "simulate.log")
    (tmp,) = wait_for(
        lambda: [p for p in temporaries(out) if len(list(p.glob("*.fits"))) >= 4],
        process, timeout=240, what="two image files of the simulation")
    kill(process)
    assert not out.exists()
    assert temporaries(out) == [tmp]
    catalog = "real_galaxy_catalog_23.5.fits"
    assert not (tmp / catalog).exists()  # the catalog is written last
    for path in (out, tmp):
        with pytest.raises(OSError):  # GalSim cannot read either as a COSMOS catalog
            galsim.COSMOSCatalog(file_name=catalog, dir=str(path))
        with pytest.raises(MissingInputError):
            Dataset(path)

    rerun = subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", "simulate", "--n",
                            "3", "--seed", "2", "--sample", "23.5", "--out", str(out)],
                           capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "interrupted earlier run" in rerun.stderr and str(tmp) in rerun.stderr
    cosmos = galsim.COSMOSCatalog(file_name=catalog, dir=str(out), exclusion_level="none")
    assert cosmos.nobjects == 3


# ------------------------------------------------------- SIGKILL inside a checkpoint save
KILLED_IN_SAVE = textwrap.dedent("""
    import sys, time, pathlib
    import tensorflow as tf
    save = tf.train.CheckpointManager.save
    def save_then_hang(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 3:
            # what a save does first: the checkpoint's own files, written in full ...
            self._checkpoint.write(f"{self._prefix}-{checkpoint_number}")
            pathlib.Path(sys.argv[1]).write_text("in save")
            time.sleep(600)        # ... and the SIGKILL lands before the index is updated
        return save(self, checkpoint_number=checkpoint_number, **kwargs)
    tf.train.CheckpointManager.save = save_then_hang
    from galsim_vae.cli import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.slow
def test_train_killed_inside_a_checkpoint_save_resumes_from_the_last_complete(tiny_dataset,
                                                                              tmp_path):
    """SIGKILL while epoch 3's checkpoint is being saved (its files written, the index not
    yet updated): ``--resume`` continues after epoch 2, the last complete checkpoint, and
    finishes a valid bundle."""
    out, checkpoints, marker = tmp_path / "bundle", tmp_path / "checkpoints", tmp_path / "m"
    epochs = 4
    argv = ["train", tiny_dataset, "--out", out, "--checkpoint-dir", checkpoints,
            "--model", "cvae2", "--epochs", epochs, "--batch-size", "4", "--latent-size", "3",
            "--channels", "4,8", "--seed", "3", "--beta", "0.5"]
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-c", KILLED_IN_SAVE, str(marker),
                                    *map(str, argv)], stdout=log, stderr=subprocess.STDOUT,
                                   env=ENV)
    wait_for(marker.exists, process, timeout=300, what="the save of epoch 3")
    kill(process)
    assert latest_checkpoint(checkpoints) == 2
    assert list((checkpoints / "ckpt").glob("ckpt-3.*"))      # the half-saved files
    assert not out.exists() and temporaries(out) == []
    resumed = subprocess.run([sys.executable, "-m", "galsim_vae", *map(str, argv), "--resume"],
                             capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "after epoch 2" in resumed.stderr
    assert [int(e) for e in re.findall(r"epoch (\d+)/4:", resumed.stderr)] == [3, 4]
    assert latest_checkpoint(checkpoints) == 4
    model = galsim_vae.load_model(out)
    assert model.spec.training["epochs_trained"] == epochs
