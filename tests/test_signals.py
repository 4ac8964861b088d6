"""SIGTERM and SIGINT in the middle of a command: partial files are removed, a clear line
is printed, the exit status says what happened; a trained checkpoint survives SIGTERM and
--resume continues."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_generator import tiny_bundle


def _start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "galsim_vae", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "GALSIM_VAE_PROGRESS": "0"})


def _wait_for(predicate, timeout=60.0):
    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _signal_leaves_nothing(proc, signum, status, word, folder, what="the command"):
    """Send ``signum`` to ``proc``; it must stop with ``status``, print ``word`` and "no
    partial output was kept" without a traceback, and leave ``folder`` empty (skipped if
    it finished first)."""
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip(f"{what} finished before the signal arrived")
    assert proc.returncode == status, err
    assert word in err and "no partial output was kept" in err and "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == []


@pytest.mark.parametrize("signum, exception", [(signal.SIGTERM, "Terminated"),
                                                (signal.SIGINT, "KeyboardInterrupt")])
def test_a_swallowed_signal_is_raised_again_at_the_next_check(signum, exception):
    """TensorFlow runs __del__ methods where an exception is only printed: the signal is
    recorded, and the trainer's check after each epoch raises it again."""
    from galsim_vae import interruption

    interruption.check()                      # outside handled(): nothing recorded
    with interruption.handled():
        try:
            os.kill(os.getpid(), signum)
            time.sleep(1)
        except BaseException as err:          # what "Exception ignored" amounts to
            assert type(err).__name__ == exception
        with pytest.raises(BaseException) as raised:
            interruption.check()
        assert type(raised.value).__name__ == exception
    assert signal.getsignal(signum) is not interruption._handle
    interruption.check()                      # cleared on the way out


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory):
    return tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("signals"))


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_sample_interrupted_leaves_nothing(bundle, tmp_path, signum, status, word):
    out = tmp_path / "cube.fits"
    proc = _start(["sample", bundle, "--n", "200000", "--redshift", "0.5", "--seed", "1",
                   "--out", out], tmp_path)
    # interrupted once it writes (a temporary beside the output), or mid-generation
    _wait_for(lambda: any(p.name.startswith("cube.fits") for p in tmp_path.iterdir()), 20)
    _signal_leaves_nothing(proc, signum, status, word, tmp_path)   # while writing the cube


@pytest.mark.slow
def test_train_terminated_then_resumed(tiny_dataset, tmp_path):
    out = tmp_path / "bundle"
    args = ["train", tiny_dataset, "--out", out, "--model", "vae", "--epochs", "40",
            "--batch-size", "8", "--latent-size", "3", "--channels", "4,8",
            "--no-flow-prior", "--seed", "3"]
    proc = _start(args, tmp_path)
    ckpt = Path(str(out) + ".checkpoints") / "ckpt" / "checkpoint"
    assert _wait_for(ckpt.is_file, 120), proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "continue with --resume" in err and "Traceback" not in err
    assert not out.exists() and ckpt.is_file()
    from astropy.table import Table

    # the epochs the last complete checkpoint holds (history.csv is written just after
    # it, so a signal in between leaves that file one epoch behind)
    done = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', ckpt.read_text()).group(1))
    assert done >= 1
    args[args.index("--epochs") + 1] = str(done + 1)
    resumed = subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", *map(str, args),
                              "--resume"], capture_output=True, text=True, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert len(Table.read(out / "history.csv")) == done + 1


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_simulate_and_evaluate_interrupted_leave_nothing(bundle, tiny_dataset, tmp_path,
                                                         signum, status, word):
    for name, args in (("survey", ["simulate", "--n", "5000", "--seed", "1"]),
                       ("report", ["evaluate", bundle, "--data", tiny_dataset,
                                   "--n-isotropy", "200000", "--seed", "1"])):
        folder = tmp_path / name
        folder.mkdir()
        proc = _start([*args, "--out", folder / "out"], folder)
        # once the command has started its output (a temporary folder beside --out)
        assert _wait_for(lambda: any(folder.iterdir()), 120), proc.communicate()[1]
        _signal_leaves_nothing(proc, signum, status, word, folder, name)


@pytest.mark.slow
def test_galsim_field_terminated_keeps_only_whole_files(bundle, tmp_path):
    """SIGTERM at any moment of a many-file ``galsim`` run (AtomicFits output): the files
    left are complete images and catalogs, never a truncated one or a temporary."""
    import galsim

    config = Path(__file__).parent.parent / "examples" / "field.yaml"
    output = tmp_path / "output"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "galsim"), str(config), "output.type=AtomicFits",
         f"input.vae_model.file_name={bundle}", f"output.dir={output}", "image.size=512",
         "image.nobjects=8", "output.nfiles=200", "output.file_name=$'f%03d.fits' % file_num",
         "output.truth.file_name=$'t%03d.dat' % file_num"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: output.is_dir() and len(list(output.iterdir())) >= 4, 120), \
        proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    names = sorted(p.name for p in output.iterdir())
    assert all(n.endswith((".fits", ".dat")) and n[1:4].isdigit() for n in names), names
    for name in names:
        if name.endswith(".fits"):
            assert galsim.fits.read(str(output / name)).array.shape == (512, 512)
        else:
            assert len((output / name).read_text().splitlines()) == 9   # header + 8 rows


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A simulated COSMOS-format survey of 300 galaxies (prepare takes a few seconds)."""
    folder = tmp_path_factory.mktemp("signals_survey") / "survey"
    done = subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", "simulate", "--n",
                           "300", "--seed", "4", "--processes", "2", "--out", str(folder)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, word", [(signal.SIGTERM, 143, "terminated"),
                                                  (signal.SIGINT, 130, "interrupted")])
def test_prepare_interrupted_leaves_nothing(survey, tmp_path, signum, status, word):
    proc = _start(["prepare", "cosmos", "--dir", survey, "--sample", "25.2", "--stamp-size",
                   "256", "--out", tmp_path / "data"], tmp_path)
    assert _wait_for(lambda: any(tmp_path.iterdir()), 120), proc.communicate()[1]
    _signal_leaves_nothing(proc, signum, status, word, tmp_path, "prepare")  # mid-write


def test_a_signal_turned_into_another_error_still_stops_the_command(capsys):
    """Ctrl-C while a C extension initialises (LiteRT's interpreter, imported on first
    use) reaches the command as "ImportError: initialization failed": the command still
    exits 130 with its one line, no traceback; the same error without a signal is raised."""
    import argparse

    from galsim_vae import cli
    from galsim_vae.interruption import handled

    def extension_import(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as interrupt:
            raise ImportError("initialization failed") from interrupt

    args = argparse.Namespace(command="sample", run=extension_import)
    with handled():
        assert cli._run(args) == 130
    assert "galsim-vae sample: interrupted; no partial output was kept" in capsys.readouterr().err

    def broken(args):
        raise ImportError("initialization failed")

    with handled(), pytest.raises(ImportError, match="initialization failed"):
        cli._run(argparse.Namespace(command="sample", run=broken))
