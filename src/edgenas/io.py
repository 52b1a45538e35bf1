"""Writing files so that nothing already written is lost: a temporary name in the same folder, then rename."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` (text, bytes, or a function that writes to the path it is given) to ``path`` atomically.
    Parent folders are created; a crash leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    elif isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        data(tmp)
    tmp.replace(path)
    return path
