"""Which ``tf.distribute`` strategy a training run uses, and which worker writes.

Strategies (``train(strategy_name=...)``, ``galsim-vae train --strategy``):

``auto``         (default) ``MirroredStrategy`` over this host's GPUs when it has several,
                 else TensorFlow's default strategy (one device).
``mirrored``     ``MirroredStrategy`` over this host's devices.
``multiworker``  ``MultiWorkerMirroredStrategy`` over several processes or hosts, each
                 running the same command.  The cluster comes from ``TF_CONFIG`` (a JSON
                 ``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
                 "index": i}}``), or, without it, from a Slurm job step of several tasks
                 (``srun``) through ``tf.distribute.cluster_resolver.SlurmClusterResolver``
                 (ports from :data:`PORT_BASE_ENV`, default 8888).

Worker 0 (or the ``chief`` task, if the cluster has one) is the chief: it alone creates
the checkpoint folder, writes ``run.json``, the logs, the checkpoints and the bundle; the
other workers save their checkpoints to a temporary folder that is removed at once
(every worker must take part in a save; TensorFlow's multi-worker guide).  Each worker
reads only its own shard of the data set (:func:`galsim_vae.data.make_tf_dataset`'s
``shard``).  A run stopped on any worker continues with ``--resume`` on all of them, from
the chief's checkpoints (the folder must be on a file system every worker sees).

TensorFlow waits without limit for a worker that never starts; a watchdog process turns
that into an error naming the workers that do not answer after :data:`JOIN_TIMEOUT_ENV`
seconds (and ends the waiting worker: exit status 137).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Mapping

from .errors import TrainingConfigError

STRATEGIES = ("auto", "mirrored", "multiworker")

#: Seconds every worker has to join the cluster (default :data:`JOIN_TIMEOUT_S`).
JOIN_TIMEOUT_ENV = "GALSIM_VAE_JOIN_TIMEOUT"
JOIN_TIMEOUT_S = 600.0
#: First port of the Slurm workers (one port per task on a node, from this one on).
PORT_BASE_ENV = "GALSIM_VAE_PORT_BASE"


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker cluster.

    Attributes:
        index:   This worker's rank, 0 to ``count - 1`` (0 is the chief).
        count:   Number of workers.
        source:  ``"TF_CONFIG"`` or ``"Slurm"``.
        addresses: ``host:port`` of every worker in rank order (None for Slurm until
                 the resolver has named the nodes).
    """

    index: int
    count: int
    source: str
    addresses: tuple[str, ...] | None = None

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_from_environment(strategy_name: str,
                             environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The multi-worker cluster this process belongs to (None unless ``multiworker``).

    Raises:
        TrainingConfigError: an unknown strategy; ``multiworker`` with neither a usable
            ``TF_CONFIG`` nor a Slurm step of several tasks; a malformed ``TF_CONFIG``.
    """
    if strategy_name not in STRATEGIES:
        raise TrainingConfigError(f"unknown strategy {strategy_name!r}; choose one of "
                                  f"{list(STRATEGIES)}")
    if strategy_name != "multiworker":
        return None
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG"):
        return _cluster_from_tf_config(environ["TF_CONFIG"])
    if environ.get("SLURM_JOB_ID") and int(environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return Cluster(index=int(environ.get("SLURM_PROCID", "0")),
                       count=int(environ["SLURM_NTASKS"]), source="Slurm")
    raise TrainingConfigError(
        "--strategy multiworker needs the cluster: set TF_CONFIG (e.g. '{\"cluster\": "
        "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
        "\"index\": 0}}', the same cluster and its own index on each worker), or run the "
        "workers as the tasks of a Slurm job step (srun, --ntasks 2 or more)")


def _cluster_from_tf_config(text: str) -> Cluster:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise TrainingConfigError(f"TF_CONFIG is not valid JSON ({err})") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) \
        else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainingConfigError("TF_CONFIG needs a 'cluster' object ({\"worker\": [...]}) "
                                  "and a 'task' object ({\"type\": \"worker\", \"index\": i})")
    jobs = [job for job in ("chief", "worker") if job in cluster]
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown or not jobs:
        raise TrainingConfigError(f"TF_CONFIG's cluster has jobs {sorted(cluster)}; galsim-vae "
                                  "uses 'worker' (and optionally one 'chief') only")
    addresses: list[str] = []
    for job in jobs:
        members = cluster[job]
        if not isinstance(members, list) or not members or not all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in members):
            raise TrainingConfigError(f"TF_CONFIG's cluster[{job!r}] must be a list of "
                                      f"'host:port' addresses, got {members!r}")
        addresses += members
    task_type, index = task.get("type"), task.get("index")
    if task_type not in jobs:
        raise TrainingConfigError(f"TF_CONFIG's task type {task_type!r} is not a job of its "
                                  f"cluster ({jobs})")
    count = len(cluster[task_type])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise TrainingConfigError(f"TF_CONFIG's task index {index!r} is out of range: the "
                                  f"cluster has {count} {task_type!r} task(s), 0 to {count - 1}")
    rank = index + (len(cluster["chief"]) if task_type == "worker" and "chief" in jobs else 0)
    return Cluster(index=rank, count=len(addresses), source="TF_CONFIG",
                   addresses=tuple(addresses))


def make_strategy(strategy_name: str, cluster: Cluster | None):
    """The ``tf.distribute`` strategy of ``strategy_name`` (see the module docstring).

    For ``multiworker`` this returns once every worker has joined (a first all-reduce),
    or a watchdog ends the process (status 137) with a line naming the workers that did
    not answer within :data:`JOIN_TIMEOUT_ENV` seconds (nothing has been written by then).
    """
    import tensorflow as tf

    if strategy_name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if cluster is None:
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    timeout = float(os.environ.get(JOIN_TIMEOUT_ENV, JOIN_TIMEOUT_S))
    with _Watchdog(cluster, timeout):
        resolver = None
        if cluster.source == "Slurm":
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
                port_base=int(os.environ.get(PORT_BASE_ENV, "8888")))
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        except tf.errors.UnknownError as err:
            address = cluster.addresses[cluster.index] if cluster.addresses else "its port"
            raise TrainingConfigError(
                f"worker {cluster.index} could not listen on {address} ({err.message}); is "
                "the port used by another process?") from None
        _join(strategy)
    return strategy


def _join(strategy) -> None:
    """A first all-reduce: returns once every worker is in the cluster."""
    import tensorflow as tf

    @tf.function
    def count_workers():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.constant(1.0)))

    count_workers()


def finish_together(strategy) -> None:
    """The workers' last meeting: the others wait here while the chief fits the prior and
    writes the bundle, so that every worker's exit status covers the whole run.

    Raises:
        TrainingConfigError: a worker stopped first (its log says why).
    """
    import tensorflow as tf

    try:
        _join(strategy)
    except (tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.DeadlineExceededError) as err:
        raise TrainingConfigError(f"a worker of the cluster stopped before the end of the run "
                                  f"({err.message.splitlines()[0][:200]}); see its log, then "
                                  "run the same command with --resume on every worker") from None


class _Watchdog:
    """A separate process that ends this one if the block does not finish in time.

    TensorFlow waits for the missing workers inside C++ code that holds Python's GIL, so
    neither a thread nor a signal handler of this process can act; the watchdog process
    prints which workers do not answer and kills this one (exit status 137: nothing has
    been written by then)."""

    def __init__(self, cluster: Cluster, timeout: float):
        self.cluster, self.timeout = cluster, timeout
        self.process = None

    def __enter__(self):
        import subprocess

        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), repr(self.timeout),
             json.dumps(list(self.cluster.addresses or ())), JOIN_TIMEOUT_ENV],
            stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.stdin.close()            # end of the wait: the watchdog leaves
        self.process.wait()


#: The watchdog process: waits on its stdin (closed when the cluster has formed, or when
#: this process dies), else probes each worker's address and kills the process.
_WATCHDOG = """
import json, os, select, signal, socket, sys
pid, timeout, addresses, env = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if ready:
    sys.exit(0)
silent = []
for rank, address in enumerate(addresses):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2.0).close()
    except OSError:
        silent.append(f"worker {rank}{' (the chief)' if rank == 0 else ''} at {address}")
who = ", ".join(silent) if silent else ("some workers (their addresses answer but they did "
                                        "not join: do all use the same cluster?)")
print(f"galsim-vae train: error: the multi-worker cluster did not form within {timeout:g} s: "
      f"no answer from {who}; start the same command on every worker of the cluster ({env} "
      "sets the wait); nothing was written", file=sys.stderr, flush=True)
os.kill(pid, signal.SIGKILL)
"""
