"""The survey example split into GalSim jobs (as the Slurm array script runs them) gives
the single run's files bit for bit, images and truth catalogs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SMALL = ["output.nfiles=4", "image.nobjects=4", "image.size=96"]
GALSIM = str(Path(sys.executable).parent / "galsim")


def _env():
    return {**os.environ, "GALSIM_VAE_PROGRESS": "0", "PATH": f"{Path(GALSIM).parent}:"
            + os.environ.get("PATH", "")}


def _dry_run(njobs: int, cpus: int, *extra: str) -> list[str]:
    out = subprocess.run(["bash", str(EXAMPLES / "slurm" / "render_survey.sh"), *extra],
                         env={**_env(), "DRY_RUN": "1", "NJOBS": str(njobs), "CPUS": str(cpus)},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()


@pytest.mark.slow
def test_split_jobs_equal_the_single_run(tmp_path):
    single = tmp_path / "single"
    subprocess.run([GALSIM, str(EXAMPLES / "survey.yaml"), *SMALL, f"output.dir={single}"],
                   env=_env(), check=True, capture_output=True, cwd=tmp_path)
    split = tmp_path / "split"
    commands = _dry_run(2, 2, *SMALL, f"output.dir={split}")
    assert len(commands) == 2
    assert all(f"-n 2 -j {j}" in c and "image.nproc=2" in c and "input.vae_model.threads=1" in c
               for j, c in enumerate(commands, start=1))
    for command in commands:          # what the Slurm array tasks run
        subprocess.run(["bash", "-c", command], env=_env(), check=True, capture_output=True,
                       cwd=tmp_path)
    names = sorted(p.name for p in single.iterdir())
    assert names == sorted(p.name for p in split.iterdir())
    assert len(names) == 8            # 4 tiles and 4 truth catalogs
    for name in names:
        with fits.open(single / name) as a, fits.open(split / name) as b:
            for ha, hb in zip(a, b):
                if ha.data is None:
                    continue
                assert ha.data.tobytes() == hb.data.tobytes(), name
    truth = fits.getdata(single / "tile_02_truth.fits")
    assert np.all(truth["g1"] == -0.03) and np.all(truth["tile"] == 2)
    assert np.all((truth["magnitude"] > 20.9) & (truth["magnitude"] < 24.1))


def test_slurm_script_refuses_bad_settings():
    script = str(EXAMPLES / "slurm" / "render_survey.sh")
    for env, message in (({"DRY_RUN": "1", "NJOBS": "0"}, "NJOBS"),
                         ({"DRY_RUN": "1", "NJOBS": "2", "CPUS": "two"}, "CPUS"),
                         ({"NJOBS": "2"}, "SLURM_ARRAY_TASK_ID is not set"),
                         ({"NJOBS": "2", "SLURM_ARRAY_TASK_ID": "3"}, "beyond the 2 jobs")):
        out = subprocess.run(["bash", script], env={**_env(), **env}, capture_output=True,
                             text=True)
        assert out.returncode == 2 and message in out.stderr, (env, out.stderr)


def test_thread_limit_setting(monkeypatch):
    from galsim_vae.tf_runtime import limit_threads

    monkeypatch.setenv("GALSIM_VAE_THREADS", "x")
    with pytest.raises(ValueError, match="GALSIM_VAE_THREADS='x'"):
        limit_threads()
    with pytest.raises(ValueError, match="whole number >= 1"):
        limit_threads(0)
    monkeypatch.delenv("GALSIM_VAE_THREADS")
    assert limit_threads() is None
