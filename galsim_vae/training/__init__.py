"""Training: options, beta and learning-rate schedules, the loop, checkpoints and logs.

``train(dataset, out_bundle, ...)`` trains a model of :mod:`galsim_vae.models` on a data
set and writes a model bundle (:mod:`galsim_vae.bundle`).  The schedules are plain
Python; importing this package does not import TensorFlow (``train`` does).
"""

from __future__ import annotations

from .errors import TrainingConfigError
from .options import TrainingOptions
from .schedules import BETA_SCHEDULES, BetaSchedule, LearningRateSchedule

__all__ = ["BETA_SCHEDULES", "BetaSchedule", "LearningRateSchedule", "TrainingConfigError",
           "TrainingOptions", "train"]


def train(*args, **kwargs):
    """See :func:`galsim_vae.training.trainer.train` (imports TensorFlow)."""
    from .trainer import train as _train

    return _train(*args, **kwargs)
