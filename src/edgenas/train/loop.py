"""A task-agnostic fit loop: schedules, EMA, AMP, gradient clipping, atomic per-epoch checkpoints that resume
to bitwise the same weights, and data parallelism under ``torchrun`` (gloo on CPU, nccl on GPU).

The caller hands ``fit`` the task (``edgenas.tasks.get_task(cfg)``), which supplies the spec, the datasets, the
loss and the meter; the loop knows only the task protocol (``tasks.base``) and never asks which task it runs.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ..config import RunConfig
from ..env import environment
from ..errors import EdgenasError
from ..io import open_folder, write_atomic
from ..models.pretrained import load_pretrained
from ..nn import build_model
from ..progress import Progress
from ..spec import SpecError, parse_spec
from ..tasks.base import Loss, Meter, Task
from .checkpoint import TRAINED, CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .schedule import lr_factor

CHECKPOINT = "checkpoint.pt"
RESUMED = (*TRAINED, "optimizer", "scheduler", "rng", "epoch", "history")  # what a resumed run reads


class DivergedError(EdgenasError):
    """Training produced a non-finite loss or weights; nothing of the diverged epoch was saved."""


def _diverged(where: str, what: str, cfg: RunConfig, bar: Progress) -> DivergedError:
    bar.close()  # a progress line without its newline: the error gets a line of its own
    t, last = cfg.train, Path(cfg.out) / CHECKPOINT
    kept = f"{last}, of the last good epoch, is kept" if last.is_file() else "no checkpoint was written"
    return DivergedError(
        f"{where}: {what}, so training stopped ({kept}); the weights diverged, most often from too high a "
        f"learning rate (train.lr {t.lr:g}): lower it, or set train.warmup_epochs or train.grad_clip"
        + (", or train.amp none" if t.amp != "none" else ""))


def _metrics_log(path: Path, start: int):
    """metrics.jsonl opened to append after its records of the epochs before ``start``: an interrupted run
    logged steps (and perhaps the record) of an epoch the resumed run trains again, and a line cut by the
    kill is no record."""
    kept = []
    if start and path.is_file():
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("epoch", start) < start:
                    kept.append(line + "\n")
            except (ValueError, AttributeError):
                continue
    write_atomic(path, "".join(kept))
    return open(path, "a", buffering=1)  # line-buffered: a kill loses no finished line


def distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def shard(n: int, epoch: int, seed: int, rank: int, world: int, shuffle: bool) -> list[int]:
    """This process's indices for an epoch: one seeded permutation, padded to a multiple of ``world`` by
    wrapping (as DistributedSampler does), every ``world``-th index from ``rank``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)) if shuffle \
        else torch.arange(n)
    order = order.tolist()
    order += order[: (-len(order)) % world]
    return order[rank::world]


def epoch_lr_factor(step: int, cfg: RunConfig, steps_per_epoch: int) -> float:
    """``cfg.train``'s schedule (set in epochs) at ``step``."""
    t = cfg.train
    return lr_factor(step, t.epochs * steps_per_epoch, t.warmup_epochs * steps_per_epoch, schedule=t.schedule,
                     decay_rate=t.decay_rate, decay_every=t.decay_epochs * steps_per_epoch, power=t.poly_power)


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """``cfg.train``'s optimizer over ``model``: weight decay on conv and linear weights, none on BatchNorm
    and biases (Google's and timm's practice; the supernet uses it too); the backbone's groups at
    ``backbone_lr_scale`` x lr (a fine-tune's pretrained layers below its new head)."""
    t = cfg.train
    split, found = t.backbone_lr_scale != 1.0, {}
    for name, p in model.named_parameters():  # (backbone, no decay): decayed first, as before the split
        found.setdefault((split and name.startswith("backbone."), p.ndim <= 1), []).append(p)
    groups = [{"params": params, "weight_decay": 0.0 if no_decay else t.weight_decay,
               "lr": t.lr * (t.backbone_lr_scale if backbone else 1.0)}
              for (backbone, no_decay), params in sorted(found.items())]
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=t.lr, alpha=t.rmsprop_decay, eps=t.rmsprop_eps, momentum=t.momentum)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.momentum, 0.999))
    return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov and t.momentum > 0)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _to(obj, device):
    """Tensors moved to ``device`` inside the tuples, lists and dicts a task's batches and outputs are made of
    (a detector's targets are a list of dicts; its outputs a tuple)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _float(out):
    return out.float() if isinstance(out, torch.Tensor) else type(out)(x.float() for x in out)


@torch.no_grad()
def evaluate(model: nn.Module, dataset, meter: Meter, loss_fn: Loss, batch_size: int, rank: int = 0,
             world: int = 1, channels_last: bool = False, collate=None) -> Meter:
    """``meter`` (a task's, e.g. ``task.meter(spec, dataset)``) filled with this process's share of ``dataset``
    and all-reduced over the processes; ``collate``: the task's batching (``task.collate``), if it has one;
    ``loss_fn`` None: no loss (a model that serves class maps has none)."""
    model.eval()
    indices = list(range(len(dataset)))[rank::world]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                                         collate_fn=collate)
    device = next(model.parameters()).device
    for x, y in loader:
        x, y = x.to(device), _to(y, device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = _float(model(x))
        meter.update(_to(logits, "cpu"), _to(y, "cpu"), None if loss_fn is None else loss_fn(logits, y).item())
    meter.all_reduce()
    return meter


def same_spec(saved: str, spec) -> bool:
    """Whether a checkpoint's arch JSON is ``spec``, compared as specs: a field added to the spec since (e.g. a
    detector's ``backbone``, null) does not make an older checkpoint another architecture."""
    if saved == spec.to_json():
        return True
    try:
        return parse_spec(json.loads(saved)) == spec
    except (SpecError, ValueError):
        return False


def trained_images(n: int, batch_size: int) -> int:
    """How many of a process's ``n`` shuffled images an epoch trains on: all, except a last batch of one
    image when there are other batches. BatchNorm in training cannot normalise one value per channel, which
    one image gives wherever a feature map is 1x1 (a global pool; a dense network's coarsest levels at small
    inputs); the shuffle puts that image in another batch next epoch. (torchvision's detection references
    drop every incomplete last batch; this keeps the pinned figures of runs whose last batch is larger.)"""
    return n - 1 if n > batch_size and n % batch_size == 1 else n


@dataclass
class Run:
    """What an epoch of ``fit`` works with, made by ``_set_up``."""

    cfg: RunConfig
    task: Task
    spec: object
    train_set: object
    val_set: object
    model: nn.Module
    ema: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    rank: int
    world: int
    net: nn.Module | None = None
    start: int = 0
    history: list = field(default_factory=list)


def _set_up(cfg: RunConfig, task: Task, resume: bool) -> Run:
    """Seeds, the spec, the data, the model (with imported weights when asked), the optimizer and schedule;
    resumed from the run's checkpoint when there is one. The order of random draws is what resume relies on."""
    rank, world = distributed()
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else \
        torch.device("cpu")
    out = Path(cfg.out)
    spec = task.spec(cfg)
    train_set, val_set = task.datasets(cfg, spec)
    model = build_model(spec)
    m = cfg.model
    if m is not None and m.pretrained and not (resume and (out / CHECKPOINT).is_file()):
        line = load_pretrained(model, m.pretrained, m.class_map, getattr(train_set, "classes", None))
        if rank == 0:
            print(line, file=sys.stderr)
    model = model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval() if t.ema_decay else None
    optimizer = make_optimizer(model, cfg)
    n = trained_images(len(shard(len(train_set), 0, 0, rank, world, False)), t.batch_size)
    steps_per_epoch = max(1, math.ceil(n / t.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: epoch_lr_factor(s, cfg, steps_per_epoch))
    run = Run(cfg, task, spec, train_set, val_set, model, ema, optimizer, scheduler, device, rank, world)
    if rank == 0:
        open_folder(out)
    if not resume and (out / CHECKPOINT).is_file():
        raise CheckpointError(f"{out}: already holds a run (checkpoint.pt); pass --resume to continue it or "
                              "choose another --out")
    if resume and (out / CHECKPOINT).is_file():
        _resume(run, out / CHECKPOINT)
    run.net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    return run


def _resume(run: Run, path: Path) -> None:
    state = load_checkpoint(path, RESUMED)
    if not same_spec(state["arch"], run.spec):
        raise CheckpointError(f"{path}: was trained on another architecture; use a new --out")
    run.model.load_state_dict(state["model"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    run.start, run.history = state["epoch"] + 1, json.loads(state["history"])


def _train_epoch(run: Run, epoch: int, loss_fn: Loss, bar: Progress, log) -> tuple[float, dict]:
    """One pass over this process's shard: (when it started, the record's training figures)."""
    cfg, t, device, world = run.cfg, run.cfg.train, run.device, run.world
    run.train_set.set_epoch(epoch)
    indices = shard(len(run.train_set), epoch, t.seed, run.rank, world, shuffle=True)
    indices = indices[:trained_images(len(indices), t.batch_size)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(run.train_set, indices), batch_size=t.batch_size,
                                         num_workers=cfg.data.workers, collate_fn=getattr(run.task, "collate", None))
    run.net.train()
    if t.freeze_bn:  # statistics stay as loaded; the affine parameters still train
        for m in run.net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    seen, t0, loss_sum = 0, time.perf_counter(), 0.0
    for i, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), _to(y, device)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.amp == "bf16"):
            loss = loss_fn(run.net(x), y)
        if not loss.isfinite():
            raise _diverged(f"epoch {epoch + 1}, step {i + 1}", f"the training loss is {loss.item()}", cfg, bar)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            nn.utils.clip_grad_norm_(run.model.parameters(), t.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        if run.ema is not None:
            ema_update(run.ema, run.model, t.ema_decay)
        seen += len(y) * world
        loss_sum += loss.item() * len(y)
        if run.rank == 0 and ((i + 1) % t.log_every == 0 or i + 1 == len(loader)):
            rate = seen / (time.perf_counter() - t0)
            lr = run.scheduler.get_last_lr()[0]
            bar.update(f"epoch {epoch + 1}/{t.epochs} [{i + 1}/{len(loader)}] loss {loss.item():.4f} "
                       f"lr {lr:.5f} {rate:.0f} img/s")
            log.write(json.dumps({"epoch": epoch, "step": epoch * len(loader) + i + 1, "loss": loss.item(),
                                  "lr": lr, "images_per_s": rate}) + "\n")
    train_time = time.perf_counter() - t0
    return t0, {"train_loss": loss_sum / max(len(indices), 1), "train_images_per_s": seen / train_time}


def _evaluate_epoch(run: Run, epoch: int, t0: float, trained: dict, val_loss: Loss, bar: Progress) -> dict:
    """The epoch's record: its training figures, then the validation (and EMA validation) summary's."""
    t, task, collate = run.cfg.train, run.task, getattr(run.task, "collate", None)

    def summary(model: nn.Module) -> dict:
        return evaluate(model, run.val_set, task.meter(run.spec, run.val_set), val_loss, t.batch_size, run.rank,
                        run.world, t.channels_last, collate).summary()

    plain = summary(run.model)
    if not math.isfinite(plain["loss"]):  # the epoch's last update met no training loss that would show it
        raise _diverged(f"epoch {epoch + 1}", f"the validation loss is {plain['loss']}", run.cfg, bar)
    record = {"epoch": epoch, "train_loss": trained["train_loss"], **task.epoch_record(plain),
              "processes": run.world, "train_images_per_s": trained["train_images_per_s"],
              "epoch_seconds": time.perf_counter() - t0}
    if run.ema is not None:
        record.update(task.epoch_record(summary(run.ema), ema=True))
    return record


def _checkpoint(run: Run, epoch: int, record: dict, bar: Progress, log) -> None:
    """Rank 0: the epoch's line, its record in metrics.jsonl and the checkpoint a resumed run starts from."""
    t, ema = run.cfg.train, run.ema
    bar.close(f"epoch {epoch + 1}/{t.epochs}: val {run.task.quality_label} {record['val_quality']:.2f}% "
              + (f"(EMA {record['ema_val_quality']:.2f}%) " if ema is not None else "")
              + f"{record['train_images_per_s']:.0f} img/s, {record['epoch_seconds']:.0f} s")
    log.write(json.dumps(record) + "\n")
    log.flush()
    save_checkpoint({"arch": run.spec.to_json(), "config": run.cfg.to_yaml(), "epoch": epoch,
                     "model": run.model.state_dict(), "ema": ema.state_dict() if ema is not None else {},
                     "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                     "rng": rng_state(), "history": json.dumps(run.history),
                     "environment": json.dumps(environment(torch.get_num_threads()))},
                    Path(run.cfg.out) / CHECKPOINT)


def fit(cfg: RunConfig, task: Task, *, resume: bool = False, stop_after: int | None = None) -> list[dict]:
    """Train ``cfg`` as ``task`` (``edgenas.tasks.get_task(cfg)``) does it, evaluating and checkpointing every
    epoch; returns the run's history, one record per epoch (a resumed run's earlier epochs included).

    ``stop_after`` ends the run after that many epochs in total (to test and exercise resume).
    """
    run = _set_up(cfg, task, resume)
    out, t = Path(cfg.out), cfg.train
    loss_fn, val_loss = task.loss(cfg, data=run.train_set), task.loss(cfg, train=False)
    if run.rank == 0:
        cfg.save(out / "config.yaml")
        run.spec.save(out / "arch.yaml")
    log = _metrics_log(out / "metrics.jsonl", run.start) if run.rank == 0 else None
    last = stop_after if stop_after is not None else t.epochs
    bar = Progress(enabled=run.rank == 0)
    for epoch in range(run.start, min(t.epochs, last)):
        cpu0 = time.process_time()  # this process's CPU time: the epoch's cost, however busy the machine was
        t0, trained = _train_epoch(run, epoch, loss_fn, bar, log)
        run.history.append(_evaluate_epoch(run, epoch, t0, trained, val_loss, bar))
        run.history[-1]["epoch_cpu_seconds"] = time.process_time() - cpu0
        if run.rank == 0:
            _checkpoint(run, epoch, run.history[-1], bar, log)
    if log:
        log.close()
    return run.history
