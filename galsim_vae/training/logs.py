"""TensorBoard scalars of a training run (the history itself: :mod:`galsim_vae.history`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping



class TensorBoardLog:
    """Per-epoch scalars written with ``tf.summary`` into a TensorBoard log folder.

    The scalars are written with ``tf.summary.write`` and the metadata of TensorBoard's
    ``scalars`` plugin (what ``tf.summary.scalar`` does), so no ``tensorboard`` package is
    needed to write them; install it to view them (``tensorboard --logdir ...``).

    Parameters:
        logdir: Folder of the event files (``<checkpoint_dir>/tensorboard``).
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        import tensorflow as tf

        self.logdir = Path(logdir)
        self._writer = tf.summary.create_file_writer(str(self.logdir))

    def write(self, row: Mapping[str, float]) -> None:
        """Write every column of one history row (but ``epoch``) at step ``epoch``."""
        import tensorflow as tf
        from tensorflow.core.framework.summary_pb2 import SummaryMetadata

        metadata = SummaryMetadata()
        metadata.plugin_data.plugin_name = "scalars"
        metadata.data_class = 1  # DATA_CLASS_SCALAR
        with self._writer.as_default(step=int(row["epoch"])):
            for key, value in row.items():
                if key != "epoch":
                    tf.summary.write(key, tf.constant(float(value), tf.float32),
                                     metadata=metadata.SerializeToString())
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
