"""The machine a benchmark ran on, written into every result file."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numpy", "lightgbm", "torch", "torch_geometric", "sklearn"):
        with contextlib.suppress(ImportError):
            info[mod] = __import__(mod).__version__
    return info
