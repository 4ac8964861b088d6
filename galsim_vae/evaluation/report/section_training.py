"""Report section: the training history (loss curves from the bundle's history.csv)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def history_metrics(bundle_path: Path, figure_path: Path, notes: list[str]) -> dict[str, Any]:
    """Loss curves from the bundle's history.csv (figure + numbers)."""
    from ...history import plot_loss_curves, read_history_csv

    path = bundle_path / "history.csv"
    if not path.is_file():
        notes.append("the bundle has no history.csv: no loss curves")
        return {"has_history": False}
    history = read_history_csv(path)
    if not history:
        notes.append("the bundle's history.csv is empty: no loss curves")
        return {"has_history": False}
    plot_loss_curves(history, figure_path, title=f"training history of {bundle_path.name}")
    monitored = [row.get("val_monitor", row.get("val_loss", math.nan)) for row in history]
    best = int(np.nanargmin(monitored)) if np.isfinite(monitored).any() else len(history) - 1
    return {"has_history": True, "n_epochs": len(history), "final": dict(history[-1]),
            "best_epoch": int(history[best]["epoch"]), "best_val_loss": monitored[best]}
