"""The environment a result was measured in; every result file carries it."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int | None = None) -> dict:
    from . import __version__

    env = {
        "edgenas": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if "torch" in sys.modules or threads is not None:
        import torch

        env.update(torch=torch.__version__, threads=threads or torch.get_num_threads())
    return env
