"""Checkpointed training state: model, optimizer, epoch counter, history, best weights.

One :class:`tf.train.Checkpoint` per epoch, kept by a :class:`tf.train.CheckpointManager`
in ``<checkpoint_dir>/ckpt``.  TensorFlow writes the checkpoint files first and then
updates the small ``checkpoint`` index file, so a run killed mid-save restores the
previous complete epoch.  The history (a JSON string variable) and the weights of the
best epoch so far (shadow variables) live in the same checkpoint, so they always agree
with the model and optimizer state they come with.

``<checkpoint_dir>/run.json`` records the settings that decide the result (data set,
model, schedules, seeds); a resumed run must use the same ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import OutputWriteError
from ..io_utils import atomic_file
from .errors import TrainingConfigError

RUN_FILE = "run.json"
CKPT_SUBDIR = "ckpt"
#: Settings a resumed run may change (they do not alter the epochs already trained).
#: What TensorFlow's file system says when a write fails for lack of space.
STORAGE_MESSAGES = ("File too large", "No space left", "Disk quota exceeded")

RESUMABLE_CHANGES = ("epochs", "early_stopping_patience", "restore_best", "flow_prior",
                     "flow_prior_epochs", "flow_prior_units", "flow_prior_couplings",
                     "flow_prior_spline_bins", "flow_condition_shift", "flow_fresh_samples",
                     "flow_balance", "flow_orientation",
                     "flow_refine_steps", "flow_refine_rate", "flow_orientations", "flow_select", "mixed_precision",
                     "xla", "name")


class TrainingState:
    """The checkpointed state of a training run.

    Parameters:
        directory: The checkpoint folder.
        model:     The (built) model.
        optimizer: The (built) optimizer.
        max_to_keep: Checkpoints kept (the latest ones).
        writer:    False for the workers of a multi-worker run other than the chief: they
                   restore from ``directory`` but save into a temporary folder.

    Attributes:
        epoch:   ``tf.Variable`` (int64): epochs completed.
        history: list of per-epoch rows (dicts), mirrored into the checkpoint on :meth:`save`.
    """

    def __init__(self, directory: str | os.PathLike, model, optimizer, *, max_to_keep: int = 2,
                 writer: bool = True):
        import tensorflow as tf

        self.directory = Path(directory)
        self.writer = writer
        self.model = model
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self._history_json = tf.Variable("[]", dtype=tf.string, trainable=False, name="history")
        self.best = tf.Module(name="best_weights")
        self.best.has_weights = tf.Variable(False, trainable=False, name="has_best")
        self.best.weights = [tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False,
                                         name=f"best_{i}")
                             for i, w in enumerate(model.weights)]
        self.history: list[dict[str, float]] = []
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch,
                                              history=self._history_json, best=self.best)
        self.manager = tf.train.CheckpointManager(self.checkpoint,
                                                  str(self.directory / CKPT_SUBDIR),
                                                  max_to_keep=max_to_keep)

    @property
    def latest(self) -> str | None:
        """Path prefix of the latest complete checkpoint, or None."""
        return self.manager.latest_checkpoint

    def restore(self) -> int:
        """Restore the latest checkpoint; returns the number of epochs it had completed."""
        latest = self.latest
        if latest is None:
            return 0
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.history = json.loads(self._history_json.numpy().decode())
        return int(self.epoch.numpy())

    def remember_best(self) -> None:
        """Copy the current model weights into the best-weights shadow."""
        for shadow, weight in zip(self.best.weights, self.model.weights):
            shadow.assign(weight.value if hasattr(weight, "value") else weight)
        self.best.has_weights.assign(True)

    def restore_best(self) -> bool:
        """Load the best epoch's weights into the model; False if none were recorded."""
        if not bool(self.best.has_weights.numpy()):
            return False
        for shadow, weight in zip(self.best.weights, self.model.weights):
            weight.assign(shadow)
        return True

    def save(self, epoch: int) -> str:
        """Checkpoint the state after ``epoch`` completed epochs.

        Raises:
            OutputWriteError: the disk is full, a file-size limit or a quota was hit
                (TensorFlow writes to temporary files first: the previous checkpoint
                stays the latest, and ``--resume`` continues from it).
        """
        import tensorflow as tf

        self.epoch.assign(epoch)
        self._history_json.assign(json.dumps(self.history))
        if not self.writer:
            # a multi-worker run's other workers take part in the save, into a folder
            # of their own that goes at once (TensorFlow's multi-worker guide)
            with tempfile.TemporaryDirectory(prefix="galsim-vae-worker-") as scratch:
                return tf.train.CheckpointManager(self.checkpoint, scratch,
                                                  max_to_keep=1).save(checkpoint_number=epoch)
        try:
            return self.manager.save(checkpoint_number=epoch)
        except (tf.errors.OpError, OSError) as err:
            text = str(err)
            if not any(mark in text for mark in STORAGE_MESSAGES):
                raise
            raise OutputWriteError(
                f"could not write the checkpoint of epoch {epoch} in "
                f"{str(self.directory)!r}: {text.splitlines()[-1][:200]}; nothing partial was "
                f"kept, the last complete checkpoint ({self.latest or 'none'}) is intact: free "
                "space and continue with --resume") from None


def write_run_settings(directory: Path, settings: Mapping[str, Any]) -> None:
    """Record the run's settings in ``<directory>/run.json`` (atomic)."""
    with atomic_file(directory / RUN_FILE, overwrite=True) as tmp:
        tmp.write_text(json.dumps(dict(settings), indent=2, sort_keys=True))


def check_run_settings(directory: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Compare a resumed run's settings with the checkpointed run's ``run.json``.

    Returns the recorded settings.

    Raises:
        TrainingConfigError: ``run.json`` is missing/unreadable or a setting that decides
            the result differs (the message names it, with both values).
    """
    path = directory / RUN_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TrainingConfigError(f"cannot resume from {str(directory)!r}: {str(path)!r} is "
                                  f"missing or unreadable ({err}); start a new run without "
                                  "--resume (with --overwrite to replace the folder)") from None
    current = json.loads(json.dumps(dict(settings)))  # same JSON types as recorded
    for key in sorted(set(recorded) | set(current)):
        if key in RESUMABLE_CHANGES or key == "seed_used":
            continue
        if recorded.get(key) != current.get(key):
            raise TrainingConfigError(
                f"cannot resume from {str(directory)!r}: {key} was {recorded.get(key)!r}, now "
                f"{current.get(key)!r}; resume with the original settings or start a new run")
    return recorded
