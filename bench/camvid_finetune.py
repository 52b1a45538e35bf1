"""CamVid at its native 480x360 from pretrained starts, the same CPU budget each: zero-shot scores of Google's
two files through a class map, fine-tunes from them, DeepLabv3+ on timm's ImageNet backbone, and from scratch.

Every run evaluates on CamVid val (101 images) at 480x360 over the 11 classes; a run started from ADE20K-32
also over the seven classes the map covers (``mapped7_val_miou``). A fine-tune's figures are its EMA weights'
after the last epoch (the weights one would ship); the curve of every epoch is kept. ``cpu_minutes`` is the
training process's CPU time. Runs resume where a killed benchmark stopped, and the record is rewritten after
each run, so a rerun continues the list:

    python bench/camvid_finetune.py --camvid ../shared/data/camvid
    python bench/camvid_finetune.py --only autoseg_ade20k     # one run (its record entry is replaced)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.env import environment, write_record
from timed_fit import timed_fit

ROOT = Path(__file__).resolve().parents[1]
AUTOSEG = "tests/fixtures/google/autoseg_edgetpu_xs_fused_argmax.tflite"
DEEPLAB = "tests/fixtures/google/deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"
TIMM = "tests/fixtures/timm_mobilenet_edgetpu_v2_m.safetensors"
ADE_MAP, CITY_MAP = "configs/class_maps/camvid_from_ade20k32.yaml", "configs/class_maps/camvid_from_cityscapes.yaml"
CONFIG = "configs/seg_camvid_finetune.yaml"
EVAL_SIZE = [360, 480]
# name -> (start, overrides of CONFIG); zero-shot runs train nothing
RUNS = {
    "zero_shot_autoseg": ("zero_shot", [f"model.pretrained={AUTOSEG}", f"model.class_map={ADE_MAP}"]),
    "zero_shot_deeplab_slim": ("zero_shot", ["model.name=deeplab_mobilenet_edgetpu_slim",
                                             f"model.pretrained={DEEPLAB}", f"model.class_map={CITY_MAP}"]),
    "autoseg_ade20k": ("google_autoseg_xs", []),
    "deeplab_slim_cityscapes": ("google_deeplab_slim_cityscapes", [
        "model.name=deeplab_mobilenet_edgetpu_slim", f"model.pretrained={DEEPLAB}", f"model.class_map={CITY_MAP}"]),
    "deeplabv3plus_timm": ("timm_imagenet", ["model.name=deeplabv3plus_mobilenet_edgetpu_v2_m",
                                             f"model.pretrained={TIMM}", "model.class_map=null",
                                             "train.backbone_lr_scale=1.0", "train.freeze_bn=false"]),
    "scratch": ("scratch", ["model.pretrained=null", "model.class_map=null", "train.backbone_lr_scale=1.0",
                            "train.freeze_bn=false"]),
}


def final_scores(out: Path, overrides: list[str], ema: bool) -> dict:
    """The run's checkpoint (its EMA weights when it has them) evaluated on val at 480x360."""
    import torch

    from edgenas.train.checkpoint import load_trained

    cfg, spec, model = load_trained(out / "checkpoint.pt", ema=ema, overrides=overrides)
    return _scores(cfg, spec, model, torch)


def zero_shot_scores(overrides: list[str]) -> tuple[dict, float]:
    import torch

    from edgenas.config import load_config
    from edgenas.models.pretrained import load_pretrained
    from edgenas.nn import build_model
    from edgenas.tasks import get_task

    cfg = load_config(CONFIG, overrides)
    spec = get_task(cfg).spec(cfg)
    model = build_model(spec)
    cpu0 = time.process_time()
    scores = _scores(cfg, spec, model, torch, lambda val: load_pretrained(model, cfg.model.pretrained,
                                                                           cfg.model.class_map, val.classes))
    return scores, (time.process_time() - cpu0) / 60


def _scores(cfg, spec, model, torch, start=None) -> dict:
    from edgenas.tasks import get_task
    from edgenas.train.loop import evaluate

    task = get_task(cfg)
    val = task.dataset(cfg, spec, "val")
    if start is not None:
        print(start(val))
    torch.set_num_threads(cfg.train.threads or 2)
    summary = evaluate(model, val, task.meter(spec, val), task.loss(cfg, train=False), 4).summary(val.classes)
    iou = summary["iou"]
    scores = {"final_val_miou": summary["miou"], "per_class_iou": iou}
    if cfg.model.class_map and "ade20k" in Path(cfg.model.class_map).name:
        from edgenas.models.class_map import load_class_map

        mapped = load_class_map(cfg.model.class_map, val.classes).mapped
        scores["mapped7_val_miou"] = round(sum(iou[c] or 0.0 for c in mapped) / len(mapped), 2)
    return scores


def run(name: str, args) -> dict:
    start, extra = RUNS[name]
    overrides = [f"data.data_dir={args.camvid}", *extra]
    if start == "zero_shot":
        scores, cpu = zero_shot_scores(overrides)
        return {"name": name, "start": start, "eval_size": EVAL_SIZE, **scores, "cpu_minutes": round(cpu, 2)}
    cfg, epochs, timing = timed_fit(CONFIG, Path(args.work) / name, [*overrides, f"train.epochs={args.epochs}"],
                                    "val_miou")
    scores = final_scores(Path(args.work) / name, overrides, ema=bool(cfg.train.ema_decay))
    curve = [{k: r.get(k) for k in ("epoch", "train_loss", "val_miou", "ema_val_miou", "epoch_cpu_seconds")}
             for r in epochs]
    return {"name": name, "start": start, "eval_size": EVAL_SIZE, **scores, "overrides": extra,
            "epochs": len(epochs), "curve": curve, **timing}


def main() -> None:
    ap = parser(__doc__, record="bench/results/camvid_finetune.json", work="runs/bench_camvid", work_flag="--work")
    ap.add_argument("--camvid", default="../shared/data/camvid")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--only", choices=tuple(RUNS), action="append", help="run only these (repeatable)")
    args = ap.parse_args()
    path = Path(args.out)
    old = json.loads(path.read_text()) if path.is_file() else {}
    # runs of this config are kept and continued; a record of another protocol is replaced
    done = {r["name"]: r for r in old.get("runs", [])} if old.get("config") == CONFIG else {}
    for name in args.only or RUNS:
        done[name] = run(name, args)
        record = {"what": "CamVid val mIoU (11 classes, 480x360) from pretrained starts and from scratch, the "
                          "same CPU budget per fine-tune", "config": CONFIG, "epochs": args.epochs,
                  "runs": [done[n] for n in RUNS if n in done], "environment": environment(2)}
        write_record(path, record)
        r = done[name]
        print(f"{name:<26} {r['start']:<32} mIoU {r['final_val_miou']:>6.2f}  CPU-min {r['cpu_minutes']:>6.1f}",
              flush=True)


if __name__ == "__main__":
    main()
