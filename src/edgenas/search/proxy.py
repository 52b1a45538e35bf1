"""Where a search's quality comes from: the task space (the space adapted to the data, a proxy task when it
differs), the training / held-out split, and batches that are pure functions of (seed, step)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..config import RunConfig
from ..space import SearchSpace
from ..spec import Arch, SpecError
from ..tasks import get_task
from ..tasks.classification import data_shape
from ..tasks.detection import NUM_CLASSES as DET_CLASSES
from ..tasks.segmentation import NUM_CLASSES as SEG_CLASSES


class Batches:
    """Batch ``step`` of a split: a slice of a permutation drawn from (seed, pass), as a pure function."""

    def __init__(self, data, indices: list[int], batch_size: int, seed: int, collate=None):
        self.data, self.indices, self.batch_size, self.seed = data, indices, batch_size, seed
        self.per_pass = max(len(indices) // batch_size, 1)
        self.collate = collate or stack

    def __call__(self, step: int):
        epoch, b = divmod(step, self.per_pass)
        order = torch.randperm(len(self.indices), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        if hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        return self.collate([self.data[self.indices[i]]
                             for i in order[b * self.batch_size:(b + 1) * self.batch_size].tolist()])


def stack(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Images stacked; labels stacked where they are tensors (masks), else made one (class ids)."""
    ys = [y for _, y in items]
    return (torch.stack([x for x, _ in items]),
            torch.stack(ys) if isinstance(ys[0], torch.Tensor) else torch.tensor(ys))


def task_space(cfg: RunConfig, space: SearchSpace) -> SearchSpace:
    """The space the supernet trains on: ``space`` adapted to the data (its input channels, classes and
    normalization) at ``search.input_size``; ``space`` itself when nothing differs. Decisions are shared, so
    a decision's quality is measured on the task and its latency priced on ``space`` at deployment size."""
    t = space.template
    if not isinstance(t, Arch):
        return _dense_task_space(cfg, space)
    if cfg.task != "classification":
        raise SpecError(f"search.space: {space.name} is a classification space; task {cfg.task} searches "
                        "autoseg-512 (segmentation) or spaghetti-320 (detection)")
    shape = data_shape(cfg.data)
    changes = shape.arch_changes(cfg.search.input_size or t.input_size)
    if all(getattr(t, k) == v for k, v in changes.items()) and t.head.num_classes == shape.num_classes:
        return space
    size = changes["input_size"]
    template = t.model_copy(update={**changes, "head": t.head.model_copy(update={"num_classes": shape.num_classes})})
    return SearchSpace(f"{space.name}@{cfg.data.dataset}-{size}", template,
                       f"{space.name} adapted to {cfg.data.dataset} at {size} px (a proxy task)")


def _dense_task_space(cfg: RunConfig, space: SearchSpace) -> SearchSpace:
    """A segmentation or detection space with the dataset's classes at ``search.input_size``."""
    t = space.template
    if t.task != cfg.task:
        raise SpecError(f"search.space: {space.name} is a {t.task} space; set task: {t.task}")
    classes = (SEG_CLASSES if t.task == "segmentation" else DET_CLASSES).get(cfg.data.dataset)
    if classes is None:
        raise SpecError(f"data.dataset: {cfg.data.dataset} fixes no class count for a {t.task} search")
    size = cfg.search.input_size or t.input_size
    if size == t.input_size and classes == t.num_classes:
        return space
    if t.task == "segmentation":
        head = t.head.model_copy(update={"classifier": t.head.classifier.model_copy(update={"out_channels": classes})})
        template = t.model_copy(update={"input_size": size, "head": head,
                                        "backbone": t.backbone.model_copy(update={"input_size": size})})
    else:
        template = t.model_copy(update={"input_size": size, "head": t.head.model_copy(update={"num_classes": classes})})
    return SearchSpace(f"{space.name}@{cfg.data.dataset}-{size}", template,
                       f"{space.name} adapted to {cfg.data.dataset} at {size} px (a proxy task)",
                       finish=space.finish, decode=space.decode)


def proxy_note(space: SearchSpace, task: SearchSpace, cfg: RunConfig) -> str | None:
    """One sentence saying where quality and latency come from, when they come from different places."""
    if task is space:
        return None
    a, b = task.template, space.template
    return (f"Quality is estimated on {cfg.data.dataset} at {a.input_size}x{a.input_size}x{a.in_channels}, "
            f"{_classes(a)} classes (a proxy task); latency is predicted for the {space.name} "
            f"architecture at {b.input_size}x{b.input_size}x{b.in_channels}, {_classes(b)} classes.")


def _classes(template) -> int:
    return template.head.num_classes if isinstance(template, Arch) else template.num_classes


def splits(cfg: RunConfig, space: SearchSpace, held_batch: int) -> tuple[Batches, Batches]:
    """Batches for weight steps (the training images but the last ``search.heldout``, augmented as
    configured) and for quality estimates (those last images, transformed as at evaluation). ``space``:
    the task space (``task_space``)."""
    task = get_task(cfg)
    template = space.sample_arch(np.random.default_rng(cfg.train.seed))  # input size, channels, preprocessing
    train_data = task.dataset(cfg, template, "train")
    held_data = copy.copy(train_data)
    held_data.transform = task.dataset(cfg, template, "val").transform
    n, k = len(train_data), cfg.search.heldout
    if k >= n:
        raise SpecError(f"search.heldout: {k} leaves no training images of {n}")
    collate = getattr(task, "collate", None)
    return (Batches(train_data, list(range(n - k)), cfg.train.batch_size, cfg.train.seed, collate),
            Batches(held_data, list(range(n - k, n)), held_batch, cfg.train.seed + 1, collate))
