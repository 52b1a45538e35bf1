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
from ..spec import parse_arch, parse_spec
from .report import write_report
from .tunas import search


def _rank0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def retrain(cfg: RunConfig, result: dict, *, resume: bool, progress: bool = True) -> dict:
    """Train the searched architecture (as the task sees it) from scratch with ``cfg.train`` for
    ``search.retrain_epochs`` epochs into OUT/retrain, evaluate it, export it to OUT/model.onnx."""
    note(f"retrain: the chosen architecture from scratch for {cfg.search.retrain_epochs} epochs on "
         f"{cfg.data.dataset}, into {Path(cfg.out) / 'retrain'}", progress and _rank0())
    if cfg.task != "classification":
        return _retrain_dense(cfg, result, resume=resume, progress=progress)
    from ..export import export
    from ..tasks import get_task
    from ..tasks.parity import parity_data
    from ..train.loop import fit_classification
    from ..train.setup import load_trained

    out = Path(cfg.out)
    arch = parse_arch(result["task_arch"])
    arch.save(out / "task_arch.yaml")
    rcfg = load_config(base={"model": {"arch": str(out / "task_arch.yaml"), "input_size": arch.input_size},
                             "data": cfg.data.model_dump(mode="json"),
                             "train": {**cfg.train.model_dump(mode="json"), "epochs": cfg.search.retrain_epochs},
                             "out": str(out / "retrain")})
    t0 = time.time()
    record = fit_classification(rcfg, resume=resume)
    seconds = time.time() - t0
    retrained = {"epochs": cfg.search.retrain_epochs, "top1": record.get("val_top1"),
                 "test_images": record.get("val_images"), "seconds": round(seconds, 1),
                 "checkpoint": str(out / "retrain" / "checkpoint.pt")}
    if _rank0():
        note(f"export: {out / 'model.onnx'}, checked against PyTorch on 500 test images", progress)
        tcfg, tarch, model = load_trained(out / "retrain" / "checkpoint.pt")
        images, labels, _ = parity_data(get_task(tcfg), tcfg, tarch, check=500, calibration=0)
        retrained["onnx"] = export(model, "onnx", out / "model.onnx", images, labels).to_dict()
    return retrained


def training_config(cfg: RunConfig, spec, arch_file: Path, epochs: int, out: Path) -> RunConfig:
    """The run config that trains ``spec`` (a network or a detector, saved to ``arch_file``) from scratch on
    the search's task and data with its ``train`` settings for ``epochs``, into ``out``."""
    spec.save(arch_file)
    return load_config(base={"task": cfg.task, "data": cfg.data.model_dump(mode="json"),
                             "model": {"arch": str(arch_file), "input_size": spec.input_size,
                                       "num_classes": spec.num_classes},
                             "train": {**cfg.train.model_dump(mode="json"), "epochs": epochs}, "out": str(out)})


def _retrain_dense(cfg: RunConfig, result: dict, *, resume: bool, progress: bool) -> dict:
    """``retrain`` for a segmentation network or a detector: the task's own training, validation metric
    and export (for segmentation the serving graph with the exact argmax tail), checked against PyTorch."""
    from ..tasks import get_task
    from ..train.loop import fit
    from ..train.setup import load_trained

    out, task = Path(cfg.out), get_task(cfg)
    spec = parse_spec(result["task_arch"])
    rcfg = training_config(cfg, spec, out / "task_arch.yaml", cfg.search.retrain_epochs, out / "retrain")
    t0 = time.time()
    record = fit(rcfg, resume=resume)
    retrained = {"epochs": cfg.search.retrain_epochs, "quality": record.get("val_quality"),
                 "quality_label": task.quality_label, "test_images": record.get("val_images"),
                 "seconds": round(time.time() - t0, 1), "checkpoint": str(out / "retrain" / "checkpoint.pt")}
    if _rank0():
        note(f"export: {out / 'model.onnx'}, checked against PyTorch on 8 validation images", progress)
        tcfg, tspec, model = load_trained(out / "retrain" / "checkpoint.pt")
        record, line = task.export(model.eval(), "onnx", out / "model.onnx", tcfg, tspec, check=8, calibration=0)
        retrained.update(export=record, export_line=line)
    return retrained


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
