"""What a task supplies to train, eval, search and export: the spec a run trains, its datasets, its loss, its
meter, and how its figures read. Those callers ask the task and never branch on its name; one lookup
(``edgenas.tasks.get_task``) picks it from ``RunConfig.task``, and the fit loop is handed the task it runs.

Below the protocol, what every task shares: which task a spec belongs to, the spec a run trains (the model
the config names, refused when it is another task's, fitted in one validated ``replace``) and the check
that a dataset's labels fit the head."""

from __future__ import annotations

from typing import Callable, Protocol, TypeVar

import torch

from ..errors import DataError
from ..models import get_arch
from ..spec import SpecError, load_spec

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
    parity_images: int  # how many images a search's export of its winner is checked on
    record_keys: dict[str, str]  # an epoch record's own figures (``val_<key>``) -> the summary's names

    def spec(self, cfg):
        """The ``Arch``, ``Network`` or ``Detector`` a run trains: the registered model or file, fitted to the data."""

    def dataset(self, cfg, spec, split: str):
        """The ``train`` or ``val`` dataset, transformed for ``spec``; labels checked to fit its head."""

    def datasets(self, cfg, spec) -> tuple:
        """(train, val)."""

    def loss(self, cfg, train: bool = True, data=None) -> Loss:
        """The training criterion (``data``: the training set, where the criterion reads it, e.g. class
        weights), or (``train`` False) the plain one evaluation reports."""

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


S = TypeVar("S")


def spec_task(spec) -> str:
    """The task a spec is trained for: a ``Network`` or ``Detector`` says so; an ``Arch`` classifies."""
    return getattr(spec, "task", "classification")


def trained_spec(cfg, kind: type[S], changes: Callable[[S], dict]) -> S:
    """The spec a run trains: the registered ``model.name`` or the ``model.arch`` file, refused unless it is a
    ``kind``, with the task's ``changes(spec)`` (classes, input size, training settings) applied in one
    ``replace``: each replace validates the whole spec again."""
    m = cfg.model
    if m is None:
        raise SpecError("model: a training run needs model.name or model.arch")
    spec = get_arch(m.name) if m.name else load_spec(m.arch)
    if not isinstance(spec, kind):
        field, ref = ("model.name", m.name) if m.name else ("model.arch", m.arch)
        task = spec_task(spec)
        raise SpecError(f"{field}: {ref} is a {task} {'arch' if task == 'classification' else 'network'}; set "
                        f"task: {task} to train it (this run's task is {cfg.task})")
    return spec.replace(**changes(spec))


def training_changes(spec, train, drop_path: bool = True) -> dict:
    """The config's BatchNorm momentum and (``drop_path``: for a spec with blocks) drop-path rate, as changes
    to ``spec``'s own fields."""
    changes: dict = {}
    if drop_path and train.drop_path_rate is not None:
        changes["drop_path_rate"] = train.drop_path_rate
    if train.bn_momentum is not None:
        changes["norm"] = spec.norm.model_copy(update={"momentum": train.bn_momentum})
    return changes


def check_labels(data, num_classes: int, cfg) -> None:
    """Before the first step: a label the head has no output for would end the run mid-epoch in the loss."""
    lo, hi = data.label_range()
    if lo >= 0 and hi < num_classes:
        return
    fix = (f"model.num_classes {num_classes} is too few; leave it unset to take the dataset's"
           if cfg.model is not None and cfg.model.num_classes else "this data does not fit the model")
    raise DataError(f"{data.source}: labels run {lo}..{hi}, but the model's head has {num_classes} classes "
                    f"(0..{num_classes - 1}); {fix}")
