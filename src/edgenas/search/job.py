"""``edgenas search`` end to end: the TuNAS search, then (``search.retrain_epochs``) the winner trained from
scratch on the task, evaluated on the test split and exported to ONNX with its parity check, then the report.
Every stage resumes: the search from its checkpoint, the retraining from its own."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch.distributed as dist

from ..config import RunConfig, load_config
from ..io import write_atomic
from ..progress import note
from ..spec import parse_spec
from ..tasks import get_task
from ..train.checkpoint import load_trained
from ..train.loop import fit
from .multitrial import multitrial_search
from .report import write_report
from .tunas import tunas_search


def search(cfg: RunConfig, *, resume: bool = True, stop_after: int | None = None, progress: bool = True) -> dict:
    """Run (or resume) the search ``cfg.search`` describes into ``cfg.out``; returns the result record. The
    strategy picks the loop: TuNAS's one-shot search, or a multi-trial baseline (random, evolution).
    ``stop_after``: return after that many TuNAS steps, as an interruption would (tests)."""
    if cfg.search is not None and cfg.search.strategy != "tunas":
        return multitrial_search(cfg, resume=resume, progress=progress)
    return tunas_search(cfg, resume=resume, stop_after=stop_after, progress=progress)


def _rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def retrain(cfg: RunConfig, result: dict, *, resume: bool, progress: bool = True) -> dict:
    """Train the searched architecture (as the task sees it) from scratch with ``cfg.train`` for
    ``search.retrain_epochs`` epochs into OUT/retrain, evaluate it, and export it to OUT/model.onnx with the
    task's own check (a classifier's logits on its test images; a segmentation network's serving graph with
    the exact argmax tail; a detector's heads), as ``edgenas train`` and ``edgenas export`` would."""
    note(f"retrain: the chosen architecture from scratch for {cfg.search.retrain_epochs} epochs on "
         f"{cfg.data.dataset}, into {Path(cfg.out) / 'retrain'}", progress and _rank0())
    out, task = Path(cfg.out), get_task(cfg)
    spec = parse_spec(result["task_arch"])
    rcfg = training_config(cfg, spec, out / "task_arch.yaml", cfg.search.retrain_epochs, out / "retrain")
    t0 = time.time()
    history = fit(rcfg, task, resume=resume)
    record = history[-1] if history else {}
    retrained = {"epochs": cfg.search.retrain_epochs, "quality": record.get("val_quality"),
                 "quality_label": task.quality_label,
                 **{k: record.get(f"val_{k}") for k in task.record_keys},  # a classifier's top1, top5, ...
                 "test_images": record.get("val_images"), "seconds": round(time.time() - t0, 1),
                 "checkpoint": str(out / "retrain" / "checkpoint.pt")}
    if _rank0():
        note(f"export: {out / 'model.onnx'}, checked against PyTorch on {task.parity_images} "
             "validation images", progress)
        tcfg, tspec, model = load_trained(out / "retrain" / "checkpoint.pt")
        retrained["onnx"], retrained["export_line"] = task.export(
            model.eval(), "onnx", out / "model.onnx", tcfg, tspec, check=task.parity_images, calibration=0)
    return retrained


def training_config(cfg: RunConfig, spec, arch_file: Path, epochs: int, out: Path) -> RunConfig:
    """The run config that trains ``spec`` (an arch, a network or a detector, saved to ``arch_file``) from
    scratch on the search's task and data with its ``train`` settings for ``epochs``, into ``out``."""
    spec.save(arch_file)
    return load_config(base={"task": cfg.task, "data": cfg.data.model_dump(mode="json"),
                             "model": {"arch": str(arch_file), "input_size": spec.input_size,
                                       "num_classes": spec.num_classes},
                             "train": {**cfg.train.model_dump(mode="json"), "epochs": epochs}, "out": str(out)})


def run(cfg: RunConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Search, retrain/evaluate/export when asked, write result.json and report.html; returns the result."""
    result = search(cfg, resume=resume, progress=progress)
    if cfg.search.retrain_epochs:
        result["retrained"] = retrain(cfg, result, resume=resume, progress=progress)
    if _rank0():
        out = Path(cfg.out)
        note(f"report: {out / 'report.html'}", progress)
        write_atomic(out / "result.json", json.dumps(result, indent=1, default=str))
        result["report"] = str(write_report(out))
    return result
