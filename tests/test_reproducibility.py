"""Reproducibility: the same seed gives bit-identical outputs, whatever the process count.

- examples/field.yaml (small, with a tiny bundle): the same ``random_seed`` gives a
  bit-identical FITS image and truth catalog; another seed does not; ``image.nproc`` 1 and
  4 give identical images (in a fresh process: TensorFlow does not survive ``fork()``,
  so nothing may load a model in the parent before the nproc=4 run).
- ``prepare cosmos`` twice: byte-identical arrays and catalog.

Covered elsewhere, not repeated here: a CPU training run with a fixed seed repeats its
loss history and weights exactly, also when interrupted and resumed
(tests/test_training.py::test_seed_reproducible_and_resume_equals_uninterrupted);
``simulate`` gives identical files for any ``--processes``
(tests/test_simulate.py::test_same_seed_identical_files_any_process_count); a batched
YAML run equals the unbatched one (tests/test_config.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TEST_DATA
from test_generator import tiny_bundle

pytest.importorskip("tensorflow")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOBJECTS = 8
SIZE = 128


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory) -> Path:
    return tiny_bundle("conditional", tiny_dataset, tmp_path_factory.mktemp("bundles_repro"))


def field_config(bundle: Path, out_dir: Path, *, seed: int, nproc: int = 1) -> dict:
    """examples/field.yaml at SIZE x SIZE pixels with NOBJECTS galaxies."""
    config = yaml.safe_load((EXAMPLES / "field.yaml").read_text())
    config["input"]["vae_model"]["file_name"] = str(bundle)
    config["image"].update(size=SIZE, nobjects=NOBJECTS, random_seed=seed, nproc=nproc)
    config["output"]["dir"] = str(out_dir)
    return config


def render_fields(configs: dict[str, dict], tmp_path: Path) -> dict[str, float]:
    """Run ``galsim.config.Process`` on each config, in order, in one fresh process;
    returns the wall time of each run (s)."""
    script = textwrap.dedent(f"""
        import json, time, galsim
        configs = json.loads({json.dumps(json.dumps(configs))})
        times = {{}}
        for name, config in configs.items():
            start = time.time()
            galsim.config.Process(config, logger=None)
            times[name] = time.time() - start
        print(json.dumps(times))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def read_field(out_dir: Path):
    from astropy.io import fits

    with fits.open(out_dir / "field.fits") as hdus:
        image = hdus[0].data.copy()
    return image, (out_dir / "field_truth.dat").read_bytes()


def test_field_yaml_same_seed_bit_identical_any_nproc(bundle, tmp_path):
    runs = {  # nproc=4 first: before the parent process has run TensorFlow
        "nproc4": field_config(bundle, tmp_path / "nproc4", seed=1234, nproc=4),
        "first": field_config(bundle, tmp_path / "first", seed=1234),
        "again": field_config(bundle, tmp_path / "again", seed=1234),
        "other": field_config(bundle, tmp_path / "other", seed=1235),
    }
    times = render_fields(runs, tmp_path)
    first, truth = read_field(tmp_path / "first")
    assert first.shape == (SIZE, SIZE)
    assert len(truth.splitlines()) == NOBJECTS + 1  # header + one row per galaxy

    again, truth_again = read_field(tmp_path / "again")
    np.testing.assert_array_equal(again, first)
    assert truth_again == truth

    nproc4, truth4 = read_field(tmp_path / "nproc4")
    np.testing.assert_array_equal(nproc4, first)
    assert truth4 == truth

    other, truth_other = read_field(tmp_path / "other")
    assert not np.array_equal(other, first) and truth_other != truth
    # for the record (docs/reliability.md): nproc=4 pays for 4 worker processes and the
    # model in GalSim's input-manager process; no timing is asserted
    print(f"field {SIZE}x{SIZE}, {NOBJECTS} galaxies: " +
          ", ".join(f"{name} {seconds:.1f} s" for name, seconds in times.items()))


def test_prepare_cosmos_twice_identical(tmp_path):
    from galsim_vae.data.cosmos import prepare_cosmos

    paltas = TEST_DATA / "cosmos_paltas_23.5"
    outputs = []
    for name in ("a", "b"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the paltas catalog's known defects
            outputs.append(prepare_cosmos(tmp_path / name, paltas, stamp_size=64,
                                          psf_file=paltas / "psf_101.fits", noise_seed=3))
    for file_name in ("images.npy", "psfs.npy", "catalog.fits", "dataset.json"):
        assert (outputs[0] / file_name).read_bytes() == (outputs[1] / file_name).read_bytes(), \
            file_name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = prepare_cosmos(tmp_path / "c", paltas, stamp_size=64,
                               psf_file=paltas / "psf_101.fits", noise_seed=4)
    assert (other / "images.npy").read_bytes() != (outputs[0] / "images.npy").read_bytes()


def build_two_images(bundle: Path, batch_size: int):
    """Images 0 and 1 of a two-image run built in this process with ``BuildImage`` (as
    ``galsim`` does for several images in one file); returns image 1 and the network
    calls it needed."""
    import galsim

    config = field_config(bundle, Path("unused"), seed=77)
    config.pop("output")
    config["input"]["vae_model"]["batch_size"] = batch_size
    config["image"].update(size=64, nobjects=6)
    galsim.config.ImportModules(config)
    galsim.config.BuildImage(config, image_num=0, obj_num=0, logger=None)
    model_input = config["_input_objs"]["vae_model"][0]
    calls = model_input.getCounts()["network_calls"]
    image = galsim.config.BuildImage(config, image_num=1, obj_num=6, logger=None)
    return image.array.copy(), model_input.getCounts()["network_calls"] - calls


def test_second_image_batched_equals_unbatched(bundle):
    batched, _ = build_two_images(bundle, 64)
    single, calls = build_two_images(bundle, 1)
    assert calls == 6
    np.testing.assert_array_equal(batched, single)


def test_second_image_of_a_file_is_decoded_in_one_batch(bundle):
    _, calls = build_two_images(bundle, 64)
    assert calls == 1
