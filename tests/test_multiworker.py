"""Multi-worker training (``--strategy multiworker``): two local CPU workers on 127.0.0.1,
each a separate process as on a cluster; the cluster's bad inputs."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galsim_vae.training import TrainingConfigError
from galsim_vae.training.distributed import cluster_from_environment

TINY = ["--model", "cvae2", "--batch-size", "8", "--latent-size", "3", "--channels", "4,8",
        "--seed", "3", "--max-steps-per-epoch", "9", "--no-flow-prior"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports, index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _worker(args, ports, index, cwd, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "galsim_vae", "--quiet", "train", *map(str, args),
         "--strategy", "multiworker"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "TF_CONFIG": _tf_config(ports, index), **env})


def _run_cluster(args, cwd, n=2, timeout=300):
    ports = _free_ports(n)
    procs = [_worker(args, ports, i, cwd) for i in range(n)]
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, *output) for p, output in zip(procs, outputs)]


def _history(folder: Path) -> Table:
    return Table.read(folder / "history.csv")


@pytest.mark.slow
def test_two_workers_train_one_bundle_like_a_single_worker(tiny_dataset, tmp_path):
    args = [tiny_dataset, "--out", tmp_path / "multi", "--epochs", "3", *TINY]
    results = _run_cluster(args, tmp_path)
    for status, out, err in results:
        assert status == 0 and "Traceback" not in err, err
    # the chief wrote the bundle, the other worker said so and wrote nothing
    assert "wrote model bundle" in results[0][1] and "wrote model bundle" not in results[1][1]
    assert "worker 1 of 2" in results[1][2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi", "multi.checkpoints"]
    from galsim_vae import load_model

    model = load_model(tmp_path / "multi")
    record = json.loads((tmp_path / "multi" / "model.json").read_text())["training"]
    assert record["workers"] == 2 and record["replicas"] == 2
    assert record["batch_size"] == 8 and record["batch_size_per_replica"] == 4
    assert len(model.sample(2, redshift=0.5, rng=1)) == 2
    # the same global batch on one worker: the same loss curve within 2% per epoch (the
    # shards' order and the replicas' posterior samples differ)
    single = subprocess.run([sys.executable, "-m", "galsim_vae", "--quiet", "train",
                             *map(str, [tiny_dataset, "--out", tmp_path / "single",
                                        "--epochs", "3", *TINY])],
                            capture_output=True, text=True, cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    multi_loss = np.asarray(_history(tmp_path / "multi.checkpoints")["train_loss"])
    single_loss = np.asarray(_history(tmp_path / "single.checkpoints")["train_loss"])
    assert multi_loss[-1] < multi_loss[0]
    np.testing.assert_allclose(multi_loss, single_loss, rtol=0.02)


@pytest.mark.slow
def test_a_worker_dies_and_the_run_resumes_on_all(tiny_dataset, tmp_path):
    out = tmp_path / "multi"
    args = [tiny_dataset, "--out", out, "--epochs", "400", *TINY]
    ports = _free_ports(2)
    chief, other = (_worker(args, ports, i, tmp_path) for i in range(2))
    history = Path(str(out) + ".checkpoints") / "history.csv"
    start = time.time()
    while not history.is_file() and time.time() - start < 180:
        time.sleep(0.2)
    assert history.is_file(), chief.communicate()[1]
    other.kill()                                  # the node is lost
    other.communicate()
    _, err = chief.communicate(timeout=300)
    assert chief.returncode != 0                  # the chief cannot go on alone
    done = len(_history(out.with_name("multi.checkpoints")))
    assert 1 <= done < 400 and not out.exists()
    resumed = _run_cluster([tiny_dataset, "--out", out, "--epochs", str(done + 1), *TINY,
                            "--resume"], tmp_path)
    assert [r[0] for r in resumed] == [0, 0], resumed[0][2] + resumed[1][2]
    assert "resuming" in resumed[0][2] and "resuming" in resumed[1][2]
    assert len(_history(out)) == done + 1


@pytest.mark.slow
def test_a_worker_alone_names_the_missing_chief_and_writes_nothing(tiny_dataset, tmp_path):
    ports = _free_ports(2)
    alone = _worker([tiny_dataset, "--out", tmp_path / "b", "--epochs", "1", *TINY], ports, 1,
                    tmp_path, GALSIM_VAE_JOIN_TIMEOUT="15")
    _, err = alone.communicate(timeout=120)
    assert alone.returncode == -9, err          # ended by its watchdog
    assert f"worker 0 (the chief) at 127.0.0.1:{ports[0]}" in err
    assert "did not form within 15 s" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "needs a 'cluster' object"),
    ('{"cluster": {"ps": ["a:1"], "worker": ["a:2"]}, "task": {"type": "worker", "index": 0}}',
     "uses 'worker' (and optionally one 'chief') only"),
    ('{"cluster": {"worker": ["host-without-port"]}, "task": {"type": "worker", "index": 0}}',
     "list of 'host:port' addresses"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 is out of range: the cluster has 2 'worker' task(s), 0 to 1"),
])
def test_bad_tf_config_is_named(tf_config, message):
    with pytest.raises(TrainingConfigError, match=re.escape(message)):
        cluster_from_environment("multiworker", {"TF_CONFIG": tf_config})


def test_cluster_roles_from_tf_config_and_slurm():
    chief_first = json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]},
                              "task": {"type": "worker", "index": 1}})
    cluster = cluster_from_environment("multiworker", {"TF_CONFIG": chief_first})
    assert (cluster.index, cluster.count, cluster.is_chief) == (2, 3, False)
    assert cluster.addresses == ("c:1", "w:1", "w:2")
    slurm = cluster_from_environment("multiworker", {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4",
                                                     "SLURM_PROCID": "0"})
    assert (slurm.index, slurm.count, slurm.is_chief, slurm.source) == (0, 4, True, "Slurm")
    assert cluster_from_environment("auto", {"TF_CONFIG": chief_first}) is None
    with pytest.raises(TrainingConfigError, match="needs the cluster: set TF_CONFIG"):
        cluster_from_environment("multiworker", {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})
    with pytest.raises(TrainingConfigError, match="unknown strategy 'ring'"):
        cluster_from_environment("ring", {})


def test_cli_multiworker_without_seed_or_cluster_is_refused(tiny_dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "SLURM_JOB_ID")}
    base = [sys.executable, "-m", "galsim_vae", "train", str(tiny_dataset), "--out",
            str(tmp_path / "b"), "--strategy", "multiworker"]
    no_cluster = subprocess.run(base + ["--seed", "1"], capture_output=True, text=True, env=env)
    assert no_cluster.returncode == 2 and "needs the cluster" in no_cluster.stderr
    env["TF_CONFIG"] = _tf_config(_free_ports(2), 0)
    no_seed = subprocess.run(base, capture_output=True, text=True, env=env)
    assert no_seed.returncode == 2 and "needs --seed" in no_seed.stderr
    assert "Traceback" not in no_cluster.stderr + no_seed.stderr
    assert list(tmp_path.iterdir()) == []


def test_slurm_training_script_dry_run_and_refusals(tmp_path):
    script = str(Path(__file__).parents[1] / "examples" / "slurm" / "train_multiworker.sh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    dry = subprocess.run(["bash", script, str(tmp_path), "out", "--epochs", "40"],
                         capture_output=True, text=True, env={**env, "DRY_RUN": "1",
                                                              "NTASKS": "4"})
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == ["srun", "--ntasks=4", "galsim-vae", "train", str(tmp_path),
                                  "--out", "out", "--strategy", "multiworker", "--seed",
                                  "2026", "--resume", "--epochs", "40"]
    for args, extra_env, message in (
            ([str(tmp_path / "missing"), "out"], {"NTASKS": "2"}, "does not exist"),
            ([str(tmp_path), "out"], {"NTASKS": "two", "DRY_RUN": "1"}, "NTASKS"),
            ([str(tmp_path), "out"], {"NTASKS": "2"}, "not inside a Slurm job"),
            ([str(tmp_path)], {}, "give the data set and the bundle")):
        bad = subprocess.run(["bash", script, *args], capture_output=True, text=True,
                             env={**env, **extra_env})
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
