"""CamVid at its native 480x360 from pretrained starts, the same CPU budget each: zero-shot scores of Google's
two files through a class map, fine-tunes from them, DeepLabv3+ on timm's ImageNet backbone, and from scratch.

Every run evaluates on CamVid val (101 images) at 480x360 over the 11 classes; a run started from ADE20K-32
also over the seven classes the map covers (``mapped7_val_miou``). A fine-tune's figures are its weights after
the last epoch (its EMA weights' mIoU beside them); the curve of every epoch is kept. ``cpu_minutes`` is the
training process's CPU time. Runs resume where a killed benchmark stopped, and the record is rewritten after
each run, so a rerun continues the list:

    python bench/camvid_finetune.py --camvid ../shared/data/camvid
    python bench/camvid_finetune.py --only autoseg_ade20k     # one run (its record entry is replaced)
    python bench/camvid_finetune.py --only ablation_recipe --only ablation_without_class_map ...

The ablation runs (``ablation_*``: the recipe, then each of its settings undone alone, at a shorter budget)
and the optimizer comparison (``optimizer_*``) run only when named.
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
# name -> (start, overrides of CONFIG); zero-shot runs train nothing. A network with more MACs an image than
# Autoseg-XS gets fewer epochs, so that every fine-tune costs about the same CPU time (``EPOCHS``).
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
# The recipe's ablation (Autoseg-XS from ADE20K-32, ABLATION_EPOCHS each): the full recipe, then each setting
# undone alone; a setting stays in the recipe where undoing it costs mIoU.
ABLATION_EPOCHS = 6
ABLATIONS = {
    "recipe": [],
    "without_class_map": ["model.class_map=null"],
    "without_freeze_bn": ["train.freeze_bn=false"],
    "without_class_weights": ["train.class_weights=none"],
    "without_backbone_lr_scale": ["train.backbone_lr_scale=1.0"],
    "without_grad_clip": ["train.grad_clip=null"],
}
RUNS.update({f"ablation_{k}": ("google_autoseg_xs", v) for k, v in ABLATIONS.items()})
# The optimizer, chosen on OPTIMIZER_EPOCHS each (warm-up half an epoch): SGD + Nesterov over the whole network
# (its gradient clipped at norm 1, then at 10), and AdamW with the backbone at a tenth or 0.3 of the head's lr.
OPTIMIZER_EPOCHS = 3
_SGD = ["train.optimizer=sgd", "train.lr=0.01", "train.backbone_lr_scale=1.0", "train.weight_decay=4e-5"]
_ADAMW = ["train.optimizer=adamw", "train.lr=0.001", "train.weight_decay=0.0001"]
OPTIMIZERS = {"sgd_clip1": [*_SGD, "train.grad_clip=1.0"], "sgd_clip10": [*_SGD, "train.grad_clip=10"],
              "adamw_backbone_0.1": [*_ADAMW, "train.backbone_lr_scale=0.1"],
              "adamw_backbone_0.3": [*_ADAMW, "train.backbone_lr_scale=0.3"]}
RUNS.update({f"optimizer_{k}": ("google_autoseg_xs", [*v, "train.warmup_epochs=0.5"]) for k, v in OPTIMIZERS.items()})
# epochs per fine-tune, from MACs an image at 512 against Autoseg-XS's 1.91 G (20 epochs): DeepLab-slim 4.32 G,
# DeepLabv3+ on v2-M 9.67 G
EPOCHS = {"deeplab_slim_cityscapes": 9, "deeplabv3plus_timm": 4}


def final_scores(out: Path, overrides: list[str], ema: bool) -> dict:
    """The run's checkpoint evaluated on val at 480x360, and through the serving tails."""
    import torch

    from edgenas.train.checkpoint import load_trained

    cfg, spec, model = load_trained(out / "checkpoint.pt", ema=ema, overrides=overrides)
    return {**_scores(cfg, spec, model, torch), **tail_scores(cfg, spec, model, torch)}


def tail_scores(cfg, spec, model, torch) -> dict:
    """mIoU of a square serving graph: val images resized to the trained network's square input (its
    ``model.input_size``, 320 in the CamVid config), labels with them, the exact tail ``resize<S>,argmax`` and
    the fused ``resize<S/2>,argmax,resize<S>`` (Google's) inside."""
    from edgenas.config import load_config
    from edgenas.nn.network import Serving
    from edgenas.tasks import get_task
    from edgenas.train.loop import evaluate

    size = spec.input_size if isinstance(spec.input_size, int) else max(spec.input_size)
    served_cfg = load_config(base=cfg.model_dump(mode="json"), overrides=[f"data.eval_size={size}"])
    task = get_task(served_cfg)
    val = task.dataset(served_cfg, spec, "val")
    out = {"tail_size": size}
    for name, tail in (("exact", f"resize{size},argmax"), ("fused", f"resize{size // 2},argmax,resize{size}")):
        served = Serving(model, spec.with_tail(tail).tail)
        out[f"tail_{name}_val_miou"] = evaluate(served, val, task.meter(spec, val), None, 4).summary()["miou"]
    return out


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
    summary = evaluate(model, val, task.meter(spec, val), task.loss(cfg, train=False),
                       cfg.train.batch_size).summary(val.classes)  # as `edgenas eval` batches
    iou = summary["iou"]
    scores = {"final_val_miou": summary["miou"], "per_class_iou": iou, "val_pixel_accuracy": summary["pixel_accuracy"],
              "val_mean_class_accuracy": summary["mean_class_accuracy"], "val_loss": summary["loss"],
              "val_pixels": summary["pixels"]}
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
    budget = ABLATION_EPOCHS if name.startswith("ablation_") else OPTIMIZER_EPOCHS if \
        name.startswith("optimizer_") else EPOCHS.get(name, args.epochs)
    cfg, epochs, timing = timed_fit(CONFIG, Path(args.work) / name, [*overrides, f"train.epochs={budget}"],
                                    "val_miou")
    scores = final_scores(Path(args.work) / name, overrides, ema=False)
    scores["final_ema_val_miou"] = epochs[-1].get("ema_val_miou")
    curve = [{k: r.get(k) for k in ("epoch", "train_loss", "val_miou", "ema_val_miou", "epoch_cpu_seconds")}
             for r in epochs]
    return {"name": name, "start": start, "eval_size": EVAL_SIZE, **scores, "overrides": extra,
            "epochs": len(epochs), "curve": curve, **timing}


def plot(runs: list[dict], path: str) -> None:
    """Val mIoU against CPU-minutes, one line per fine-tune, the zero-shot starts as dashed levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    levels = []
    for r in runs:
        if r["name"].startswith(("ablation_", "optimizer_")):
            continue
        if r["start"] == "zero_shot":
            levels.append(r)
            continue
        cpu, miou = 0.0, []
        for e in r["curve"]:
            cpu += (e["epoch_cpu_seconds"] or 0) / 60
            miou.append((cpu, e["val_miou"]))
        ax.plot(*zip(*miou), marker=".", label=f"{r['name']} ({r['start']})")
    left = ax.get_xlim()[0]
    for r in levels:
        ax.axhline(r["final_val_miou"], ls="--", lw=1, color="grey")
        ax.annotate(f"{r['name']} {r['final_val_miou']:.1f}", (left, r["final_val_miou"]), fontsize=7,
                    xytext=(4, 2), textcoords="offset points", color="grey")
    ax.set_xlabel("CPU-minutes (training process)")
    ax.set_ylabel("CamVid val mIoU, 11 classes, 480x360 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = parser(__doc__, record="bench/results/camvid_finetune.json", work="runs/bench_camvid", work_flag="--work")
    ap.add_argument("--camvid", default="../shared/data/camvid")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of an Autoseg-XS fine-tune (default %(default)s)")
    ap.add_argument("--only", choices=tuple(RUNS), action="append", help="run only these (repeatable)")
    ap.add_argument("--plot", default="docs/camvid_finetune.png", help="the curves (default %(default)s)")
    args = ap.parse_args()
    path = Path(args.out)
    old = json.loads(path.read_text()) if path.is_file() else {}
    # runs of this config are kept and continued; a record of another protocol is replaced
    done = {r["name"]: r for r in old.get("runs", [])} if old.get("config") == CONFIG else {}
    for name in args.only or [n for n in RUNS if not n.startswith(("ablation_", "optimizer_"))]:
        done[name] = run(name, args)
        record = {"what": "CamVid val mIoU (11 classes, 480x360) from pretrained starts and from scratch, the "
                          "same CPU budget per fine-tune", "config": CONFIG, "epochs": args.epochs,
                  "runs": [done[n] for n in RUNS if n in done], "environment": environment(2)}
        write_record(path, record)
        plot(record["runs"], args.plot)
        r = done[name]
        print(f"{name:<26} {r['start']:<32} mIoU {r['final_val_miou']:>6.2f}  CPU-min {r['cpu_minutes']:>6.1f}",
              flush=True)


if __name__ == "__main__":
    main()
