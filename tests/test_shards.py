"""Preparing a catalog in shards (``prepare cosmos --shard i/n``) and merging them: the
merged data set is the one a single run writes; shards of different runs are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from galsim_vae.data.cosmos import prepare_cosmos
from galsim_vae.data.dataset import Dataset
from galsim_vae.data.merge import merge_datasets, parse_shard
from galsim_vae.errors import InputDataError


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    from galsim_vae.simulation.survey import simulate_survey

    return simulate_survey(tmp_path_factory.mktemp("survey") / "survey", 30, seed=11,
                           sample="23.5", file_hdus=7)


def _prepare(out, survey, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_cosmos(out, survey, sample="23.5", stamp_size=48, psf_size=15,
                              **kwargs)


def test_three_shards_merge_into_the_single_run(survey, tmp_path):
    whole = Dataset(_prepare(tmp_path / "whole", survey))
    shards = [_prepare(tmp_path / f"shard{i}", survey, shard=(i, 3)) for i in (3, 1, 2)]
    sizes = [Dataset(p).n_galaxies for p in shards]
    assert sum(sizes) == whole.n_galaxies and min(sizes) >= whole.n_galaxies // 3
    # each shard read only its block of the catalog
    rows = [set(np.asarray(Dataset(p).catalog["catalog_index"])) for p in shards]
    assert not (rows[0] & rows[1]) and not (rows[1] & rows[2])
    merged = Dataset(merge_datasets(shards, tmp_path / "merged"))   # any order
    np.testing.assert_array_equal(np.asarray(merged.images), np.asarray(whole.images))
    # PSFs: renormalised to unit sum again on the way (float32 rounding)
    np.testing.assert_allclose(np.asarray(merged.psfs), np.asarray(whole.psfs), rtol=1e-6,
                               atol=1e-9)
    for name in whole.catalog.colnames:
        np.testing.assert_array_equal(merged.catalog[name], whole.catalog[name], err_msg=name)
    assert merged.meta["normalisation"] == whole.meta["normalisation"]
    # the noise models (one COSMOS correlation function here) and each galaxy's row of them
    assert whole.noise_rootps_table is not None
    np.testing.assert_array_equal(merged.noise_rootps_table, whole.noise_rootps_table)
    assert merged.meta["split"] == whole.meta["split"]
    assert merged.meta["source"]["n_written"] == whole.meta["source"]["n_written"]
    assert merged.meta["source"]["merged_from_shards"] == 3


def test_shards_of_different_runs_or_incomplete_sets_are_refused(survey, tmp_path):
    one = _prepare(tmp_path / "a1", survey, shard=(1, 2))
    two = _prepare(tmp_path / "a2", survey, shard=(2, 2))
    other_seed = _prepare(tmp_path / "b2", survey, shard=(2, 2), split_seed=9)
    with pytest.raises(InputDataError, match="split seed is 0 in one and 9 in the other"):
        merge_datasets([one, other_seed], tmp_path / "out")
    with pytest.raises(InputDataError, match=r"missing \[2\], given twice \[1\]"):
        merge_datasets([one, one], tmp_path / "out")
    with pytest.raises(InputDataError, match="is not a shard"):
        merge_datasets([one, _prepare(tmp_path / "whole", survey)], tmp_path / "out")
    three = _prepare(tmp_path / "c3", survey, shard=(3, 3))
    with pytest.raises(InputDataError, match="different numbers of parts"):
        merge_datasets([one, two, three], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    for text, message in (("0/3", "1 <= i <= n"), ("4/3", "1 <= i <= n"), ("2", "give i/n"),
                          ("a/b", "give i/n")):
        with pytest.raises(InputDataError, match=message):
            parse_shard(text)


def test_cli_shard_and_merge(survey, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", "prepare",
                               *map(str, args)], capture_output=True, text=True, cwd=tmp_path)

    for i in (1, 2):
        done = cli("cosmos", "--dir", survey, "--sample", "23.5", "--stamp-size", "48",
                   "--psf-size", "15", "--shard", f"{i}/2", "--out", f"s{i}")
        assert done.returncode == 0, done.stderr
    bad = cli("cosmos", "--dir", survey, "--sample", "23.5", "--shard", "3/2", "--out", "x")
    assert bad.returncode == 2 and "shard 3/2" in bad.stderr and "Traceback" not in bad.stderr
    merged = cli("merge", "s1", "s2", "--out", "all")
    assert merged.returncode == 0, merged.stderr
    assert "from 2 shards" in merged.stdout
    meta = json.loads((tmp_path / "all" / "dataset.json").read_text())
    assert meta["n_galaxies"] == sum(Dataset(tmp_path / f"s{i}").n_galaxies for i in (1, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all", "s1", "s2"]
