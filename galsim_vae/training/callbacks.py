"""What happens at the end of each epoch: the history row with its monitors, and the
logs written from it (``history.csv``, the loss-curve figure, TensorBoard, one log
line, the user's ``on_epoch_end``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..history import plot_loss_curves, write_history_csv
from .logs import TensorBoardLog


def log(message: str) -> None:
    """One progress line of training or of a prior's refit on stderr."""
    print(f"galsim-vae: {message}", file=sys.stderr, flush=True)


def epoch_row(epoch: int, beta: float, lr: float, train_means: Mapping[str, float],
              val_means: Mapping[str, float], per_galaxy: Mapping[str, list], *,
              beta_ref: float, monitor: str) -> dict[str, float]:
    """The history row of one epoch.

    ``val_mean_monitor`` and ``val_median_monitor`` rank epochs at the final beta
    ``beta_ref`` (so that epochs of a beta warm-up compare fairly): the mean validation
    loss, and the median of the per-galaxy losses (robust to the few very bright
    galaxies that dominate a mean); ``val_monitor`` is the one named by ``monitor``.
    """
    row: dict[str, float] = {"epoch": epoch, "beta": beta, "lr": lr}
    row.update({f"train_{k}": v for k, v in train_means.items()})
    row.update({f"val_{k}": v for k, v in val_means.items()})
    row["val_mean_monitor"] = val_means["loss"] + (beta_ref - beta) * val_means["kl"]
    if per_galaxy:
        galaxy_loss = (np.concatenate(per_galaxy["galaxy_loss"])
                       + (beta_ref - beta) * np.concatenate(per_galaxy["galaxy_kl"]))
        row["val_median_monitor"] = float(np.median(galaxy_loss))
    else:
        row["val_median_monitor"] = row["val_mean_monitor"]
    row["val_monitor"] = row[f"val_{monitor}_monitor"]
    return row


class EpochLogs:
    """Writes the logs of each finished epoch into the checkpoint folder.

    Parameters:
        folder:       the checkpoint folder.
        title:        title of the loss-curve figure.
        epochs:       the run's number of epochs (for the log line).
        on_epoch_end: the user's callback, given a copy of each row.
    """

    def __init__(self, folder: Path, title: str, epochs: int,
                 on_epoch_end: Callable[[dict[str, float]], None] | None = None):
        self.folder = Path(folder)
        self.title = title
        self.epochs = epochs
        self.on_epoch_end = on_epoch_end
        self.tensorboard = TensorBoardLog(self.folder / "tensorboard")

    def __call__(self, history: list[dict[str, float]]) -> None:
        row = history[-1]
        write_history_csv(history, self.folder / "history.csv")
        plot_loss_curves(history, self.folder / "loss_curve.png", title=self.title)
        self.tensorboard.write(row)
        log(f"epoch {row['epoch']}/{self.epochs}: beta {row['beta']:.4g} lr {row['lr']:.3g} "
            f"loss {row['train_loss']:.6g} val {row['val_loss']:.6g} ({row['time']:.1f} s)")
        if self.on_epoch_end is not None:
            self.on_epoch_end(dict(row))

    def close(self) -> None:
        """Close the TensorBoard writer (idempotent)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
