"""What a task supplies to train, eval (and later search and export): the spec a run trains, its datasets,
its loss, its meter, and how its figures read. Those callers ask the task and never branch on its name; one
lookup (``edgenas.tasks.get_task``) picks it from ``RunConfig.task``."""

from __future__ import annotations

from typing import Callable, Protocol

import torch

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, target) -> scalar


class Meter(Protocol):
    """Accumulates an evaluation pass; ``summary`` holds ``quality`` (the headline %), ``loss`` (mean per
    image), ``images``, and the task's own figures."""

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float | None = None) -> None: ...

    def all_reduce(self) -> None: ...

    def summary(self, classes: list[str] | None = None) -> dict: ...


class Task(Protocol):
    """A task may also give ``collate(batch)``, the DataLoader's batching, when its targets do not stack."""

    name: str
    quality_label: str  # how the headline figure is named in progress lines ("top-1", "mIoU")

    def spec(self, cfg):
        """The ``Arch`` or ``Network`` a run trains: the registered model or file, fitted to the data."""

    def dataset(self, cfg, spec, split: str):
        """The ``train`` or ``val`` dataset, transformed for ``spec``; labels checked to fit its head."""

    def datasets(self, cfg, spec) -> tuple:
        """(train, val)."""

    def loss(self, cfg, train: bool = True) -> Loss:
        """The training criterion, or (``train`` False) the plain one evaluation reports."""

    def meter(self, spec, dataset=None) -> Meter:
        """A fresh meter for an evaluation pass over ``dataset`` (detection reads its ground truth)."""

    def epoch_record(self, summary: dict, ema: bool = False) -> dict:
        """The keys an epoch's record in metrics.jsonl takes from a validation summary."""

    def headline(self, summary: dict) -> str:
        """One line of an evaluation's figures, as ``edgenas eval`` prints it."""

    def per_class(self, summary: dict) -> tuple[str, dict]:
        """(column title, {class name: value or None}) for the per-class table."""


class BaseTask:
    """The parts of a task that are data: which summary figures go into an epoch record, under which names
    (``record_keys``: record suffix -> summary key), and which of them an EMA evaluation records."""

    record_keys: dict[str, str] = {}
    ema_keys: tuple[str, ...] = ()

    def epoch_record(self, summary: dict, ema: bool = False) -> dict:
        prefix = "ema_val_" if ema else "val_"
        keys = {k: self.record_keys[k] for k in self.ema_keys} if ema else self.record_keys
        record = {f"{prefix}quality": summary["quality"], **{prefix + k: summary[v] for k, v in keys.items()}}
        if not ema:
            record["val_images"] = summary["images"]
        return record

    def datasets(self, cfg, spec) -> tuple:
        return self.dataset(cfg, spec, "train"), self.dataset(cfg, spec, "val")


def percent(value: float | None) -> str:
    """A figure that can be undefined (a class with no pixels either way) as text."""
    return "-" if value is None else f"{value:.2f}"
