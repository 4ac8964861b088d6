"""A disk that fills up mid-write (a file-size limit, RLIMIT_FSIZE, in a child process):
a one-line error, exit status 2, no partial output, the previous output untouched."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from test_generator import tiny_bundle


def _limited(limit_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def _run(args, limit_bytes, cwd):
    return subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, preexec_fn=_limited(limit_bytes),
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory):
    return tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("fsize"))


def _check_refused(result, out):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "nothing partial was kept" in result.stderr
    assert "could not write" in result.stderr or "a file-size limit was hit" in result.stderr
    assert not any(p.name.startswith(out.name) and p != out for p in out.parent.iterdir()), \
        sorted(p.name for p in out.parent.iterdir())       # no temporaries left


def test_sample_with_a_full_disk(bundle, tmp_path):
    out = tmp_path / "stamps.fits"
    result = _run(["sample", bundle, "--n", "64", "--redshift", "0.5", "--seed", "1",
                   "--out", out], 20_000, tmp_path)
    _check_refused(result, out)
    assert not out.exists()
    # the previous output is untouched by a failed --overwrite
    assert _run(["sample", bundle, "--n", "2", "--redshift", "0.5", "--seed", "1", "--out",
                 out], 10**9, tmp_path).returncode == 0
    before = out.read_bytes()
    result = _run(["sample", bundle, "--n", "64", "--redshift", "0.5", "--seed", "1",
                   "--out", out, "--overwrite"], 20_000, tmp_path)
    _check_refused(result, out)
    assert out.read_bytes() == before


def test_prepare_and_train_with_a_full_disk(tiny_dataset, tmp_path):
    from conftest import TEST_DATA

    out = tmp_path / "prepared"
    result = _run(["prepare", "cosmos", "--dir", TEST_DATA / "cosmos_paltas_23.5",
                   "--sample", "23.5", "--stamp-size", "64", "--psf-file",
                   TEST_DATA / "cosmos_paltas_23.5" / "psf_101.fits", "--exclusion-level",
                   "none", "--out", out], 50_000, tmp_path)
    _check_refused(result, out)
    assert not out.exists()
    bundle = tmp_path / "bundle"
    result = _run(["train", tiny_dataset, "--out", bundle, "--model", "vae", "--epochs", "1",
                   "--batch-size", "16", "--max-steps-per-epoch", "1", "--latent-size", "3",
                   "--channels", "4,8", "--no-flow-prior", "--seed", "1"], 30_000, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert not bundle.exists()


def test_simulate_with_a_full_disk(tmp_path):
    out = tmp_path / "survey"
    result = _run(["simulate", "--n", "20", "--seed", "1", "--out", out], 30_000, tmp_path)
    _check_refused(result, out)
    assert not out.exists()
    # a survey written before stays whole when --overwrite fails
    assert _run(["simulate", "--n", "3", "--seed", "1", "--out", out], 10**9,
                tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = _run(["simulate", "--n", "20", "--seed", "2", "--out", out, "--overwrite"],
                  30_000, tmp_path)
    _check_refused(result, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_evaluate_with_a_full_disk(bundle, tiny_dataset, tmp_path):
    out = tmp_path / "report"
    result = _run(["evaluate", bundle, "--data", tiny_dataset, "--out", out, "--max-heldout",
                   "4", "--n-generated", "5", "--n-isotropy", "20", "--seed", "1"],
                  20_000, tmp_path)
    _check_refused(result, out)
    assert not out.exists()


def _galsim_field(tmp_path, limit_bytes, *overrides):
    """``galsim examples/field.yaml`` (tiny bundle, AtomicFits output) under a file-size
    limit; the output goes to tmp_path/output."""
    config = Path(__file__).parent.parent / "examples" / "field.yaml"
    return subprocess.run(
        [str(Path(sys.executable).parent / "galsim"), str(config), "output.type=AtomicFits",
         f"output.dir={tmp_path / 'output'}", "image.nobjects=4", *overrides],
        capture_output=True, text=True, cwd=tmp_path, preexec_fn=_limited(limit_bytes),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_galsim_field_with_a_full_disk(bundle, tmp_path):
    """GalSim's own Fits output leaves a truncated file in place of the old one; the
    AtomicFits output leaves the previous image and truth catalog whole."""
    model = f"input.vae_model.file_name={bundle}"
    first = _galsim_field(tmp_path, 10**9, model, "image.size=64")
    assert first.returncode == 0, first.stderr
    output = tmp_path / "output"
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    assert sorted(before) == ["field.fits", "field_truth.dat"]
    result = _galsim_field(tmp_path, 30_000, model, "image.size=512")
    assert result.returncode != 0
    assert "could not write" in result.stderr and "nothing partial was kept" in result.stderr
    assert str(output / "field.fits") in result.stderr
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
