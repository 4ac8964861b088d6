"""The training history (one row per epoch): ``history.csv`` and the loss-curve figure.

Written by the trainer each epoch and read back by the evaluation report; neither
imports the other.  Columns, in order: ``epoch`` (from 1), ``beta`` (KL weight applied
that epoch), ``lr`` (learning rate), ``train_loss``, ``train_nll``, ``train_kl`` (means
per galaxy over the epoch's training batches, in nats), ``val_loss``, ``val_nll``,
``val_kl`` (means over the validation split, same beta), any further columns sorted
(model losses such as ``train_redshift_loss``; ``val_mean_monitor`` and
``val_median_monitor``, the mean and the median per-galaxy validation loss at the final
beta, see :meth:`BetaSchedule.reference`), then ``val_monitor`` (the one of the two the
run ranks epochs by), ``steps`` (training steps of the epoch) and ``time`` (seconds).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from .io_utils import atomic_file


#: Columns every history has, in order (model-specific losses go before ``val_monitor``).
BASE_COLUMNS = ("epoch", "beta", "lr", "train_loss", "train_nll", "train_kl",
                "val_loss", "val_nll", "val_kl")
TAIL_COLUMNS = ("val_monitor", "steps", "time")


def history_columns(history: Sequence[Mapping[str, float]]) -> list[str]:
    """Column order of a history: base columns, extra losses (sorted), monitor, time."""
    extra = sorted({k for row in history for k in row} - set(BASE_COLUMNS) - set(TAIL_COLUMNS))
    return [*BASE_COLUMNS, *extra, *TAIL_COLUMNS]


def write_history_csv(history: Sequence[Mapping[str, float]], path: str | os.PathLike) -> Path:
    """Write the history to ``path`` (CSV with a header row), atomically, replacing it."""
    columns = history_columns(history)
    with atomic_file(path, overwrite=True) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            for row in history:
                writer.writerow({k: (int(v) if k == "epoch" else repr(float(v)))
                                 for k, v in row.items()})
    return Path(path)


def read_history_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """Read a ``history.csv`` back into rows of floats (``epoch`` as int)."""
    with open(path, newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()
                         if v != ""})
    return rows


def plot_loss_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike, *,
                     title: str = "") -> Path:
    """Save a PNG of the training and validation losses (and beta) against epoch.

    Three panels: total loss (negative ELBO with beta*KL), reconstruction NLL and KL, each
    with train and validation curves; beta on a twin axis of the first panel.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, label in zip(axes, ("loss", "nll", "kl"),
                              ("loss = NLL + beta KL  [nats/galaxy]", "NLL  [nats/galaxy]",
                               "KL  [nats/galaxy]")):
        for split, style in (("train", "-o"), ("val", "--s")):
            values = [row.get(f"{split}_{key}", math.nan) for row in history]
            ax.plot(epochs, values, style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "nll" and all(v > 0 for row in history for v in
                                (row.get("train_nll", -1), row.get("val_nll", -1))):
            ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=8)
    twin = axes[0].twinx()
    twin.plot(epochs, [row["beta"] for row in history], ":", color="gray")
    twin.set_ylabel("beta", color="gray")
    if title:
        fig.suptitle(title)
    with atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)
