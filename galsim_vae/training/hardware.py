"""The hardware a run used (recorded in the bundle's training record and model card)."""

from __future__ import annotations

import os
from typing import Any


def describe_hardware() -> dict[str, Any]:
    """CPU model, core count and visible GPU names (for the model card)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus: list[str] = []
    try:
        import tensorflow as tf

        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            gpus.append(str(details.get("device_name", device.name)))
    except Exception:  # noqa: BLE001 - hardware description is best effort
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus}
