"""Where a search's quality comes from: the task space (the space adapted to the data, a proxy task when it
differs), the training / held-out split, and batches that are pure functions of (seed, step)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..config import RunConfig
from ..space import SearchSpace
from ..spec import SpecError
from ..train.setup import data_shape, dataset


class Batches:
    """Batch ``step`` of a split: a slice of a permutation drawn from (seed, pass), as a pure function."""

    def __init__(self, data, indices: list[int], batch_size: int, seed: int):
        self.data, self.indices, self.batch_size, self.seed = data, indices, batch_size, seed
        self.per_pass = max(len(indices) // batch_size, 1)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = divmod(step, self.per_pass)
        order = torch.randperm(len(self.indices), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        self.data.set_epoch(epoch)
        items = [self.data[self.indices[i]] for i in order[b * self.batch_size:(b + 1) * self.batch_size].tolist()]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def task_space(cfg: RunConfig, space: SearchSpace) -> SearchSpace:
    """The space the supernet trains on: ``space`` adapted to the data (its input channels, classes and
    normalization) at ``search.input_size``; ``space`` itself when nothing differs. Decisions are shared, so
    a decision's quality is measured on the task and its latency priced on ``space`` at deployment size."""
    t, shape = space.template, data_shape(cfg.data)
    changes = shape.arch_changes(cfg.search.input_size or t.input_size)
    if all(getattr(t, k) == v for k, v in changes.items()) and t.head.num_classes == shape.num_classes:
        return space
    size = changes["input_size"]
    template = t.model_copy(update={**changes, "head": t.head.model_copy(update={"num_classes": shape.num_classes})})
    return SearchSpace(f"{space.name}@{cfg.data.dataset}-{size}", template,
                       f"{space.name} adapted to {cfg.data.dataset} at {size} px (a proxy task)")


def proxy_note(space: SearchSpace, task: SearchSpace, cfg: RunConfig) -> str | None:
    """One sentence saying where quality and latency come from, when they come from different places."""
    if task is space:
        return None
    a, b = task.template, space.template
    return (f"Quality is estimated on {cfg.data.dataset} at {a.input_size}x{a.input_size}x{a.in_channels}, "
            f"{a.head.num_classes} classes (a proxy task); latency is predicted for the {space.name} "
            f"architecture at {b.input_size}x{b.input_size}x{b.in_channels}, {b.head.num_classes} classes.")


def splits(cfg: RunConfig, space: SearchSpace, held_batch: int) -> tuple[Batches, Batches]:
    """Batches for weight steps (the training images but the last ``search.heldout``, augmented as
    configured) and for quality estimates (those last images, transformed as at evaluation). ``space``:
    the task space (``task_space``)."""
    template = space.sample_arch(np.random.default_rng(cfg.train.seed))  # input size, channels, preprocessing
    train_data = dataset(cfg, template, "train")
    held_data = copy.copy(train_data)
    held_data.transform = dataset(cfg, template, "val").transform
    n, k = len(train_data), cfg.search.heldout
    if k >= n:
        raise SpecError(f"search.heldout: {k} leaves no training images of {n}")
    return (Batches(train_data, list(range(n - k)), cfg.train.batch_size, cfg.train.seed),
            Batches(held_data, list(range(n - k, n)), held_batch, cfg.train.seed + 1))
