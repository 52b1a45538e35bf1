"""One object per task: its run spec, datasets, loss, meter and how its figures read (``base.Task``)."""

from __future__ import annotations

from ..spec.errors import SpecError
from .base import Meter, Task
from .classification import ClassificationTask
from .detection import DetectionTask
from .segmentation import SegmentationTask

TASKS: dict[str, Task] = {t.name: t for t in (ClassificationTask(), SegmentationTask(), DetectionTask())}


def get_task(cfg_or_name) -> Task:
    """The task of a ``RunConfig`` (its ``task`` field) or of a task name."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.task
    if name not in TASKS:
        raise SpecError(f"task: {name!r} is not one of {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "ClassificationTask", "DetectionTask", "Meter", "SegmentationTask", "Task", "get_task"]
