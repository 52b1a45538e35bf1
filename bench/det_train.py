"""Training SpaghettiNet-EdgeTPU-S on this machine: on composite scenes (Fashion-MNIST objects with exact
boxes on a photograph, mAP on a held-out composite set) and on coco128 (128 real COCO train2017 images,
scored on 128 val2017 images with COCO's evaluator), from scratch as Google trains it.

Each run goes through ``edgenas.train.loop.fit`` with configs/det_composite.yaml and the overrides below; the
record holds every epoch's val mAP/AP50, the wall time and CPU-minutes (wall x threads). Runs resume where
they stopped (the loop's checkpoints).

    python bench/det_train.py --coco ../shared/data/coco128 --out bench/results/det_train.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgenas.config import load_config
from edgenas.env import environment, write_record
from edgenas.tasks import get_task
from edgenas.train.loop import CHECKPOINT, fit

RUNS = {
    # 2000 scenes at 128 px, 200 held-out scenes (their own seed and Fashion-MNIST's test objects)
    "composite_128": ["model.input_size=128", "data.train_subset=2000", "data.val_subset=200", "train.epochs=14",
                      "train.lr=0.05", "train.warmup_epochs=1", "train.ema_decay=0.999"],
    # coco128 at the deployment size, 90 classes: 128 training images are far too few for SpaghettiNet
    "coco128_320": ["data.dataset=coco", "model.input_size=320", "data.train_subset=128", "data.val_subset=128",
                    "train.epochs=16", "train.batch_size=16", "train.lr=0.05", "train.warmup_epochs=1"],
}


def run(name: str, args, extra: list[str]) -> dict:
    out = Path(args.work) / name
    data = [f"data.data_dir={args.coco}"] if "data.dataset=coco" in extra else []
    cfg = load_config("configs/det_composite.yaml", overrides=[
        f"out={out}", f"train.threads={args.threads}", "train.log_every=50", *extra, *data])
    t0 = time.perf_counter()
    fit(cfg, get_task(cfg), resume=(out / CHECKPOINT).is_file())
    wall = time.perf_counter() - t0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in history if "val_map" in r]
    last = epochs[-1]
    print(f"{name}: val mAP {last['val_map']:.2f}% (AP50 {last['val_ap50']:.2f}%) after {len(epochs)} epochs",
          flush=True)
    return {"name": name, "overrides": extra, "epochs": epochs, "final_val_map": last["val_map"],
            "final_val_ap50": last["val_ap50"], "final_ema_val_map": last.get("ema_val_map"),
            "best_val_map": max(r["val_map"] for r in epochs), "train_images": cfg.data.train_subset,
            "wall_seconds_this_call": wall, "train_seconds": sum(r["epoch_seconds"] for r in epochs),
            "cpu_minutes": sum(r["epoch_seconds"] for r in epochs) * cfg.train.threads / 60,
            "threads": cfg.train.threads}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--coco", default="../shared/data/coco128")
    ap.add_argument("--work", default="runs/bench_det")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/det_train.json")
    args = ap.parse_args()
    runs = [run(name, args, extra) for name, extra in RUNS.items()]
    write_record(args.out, {"what": "SpaghettiNet-EdgeTPU-S trained from scratch: composite scenes (held-out "
                                    "composite mAP) and coco128 train (scored on coco128 val)",
                            "config": "configs/det_composite.yaml", "runs": runs,
                            "environment": environment(args.threads)})
    print(f"{'run':<16} {'val mAP':>8} {'AP50':>7} {'best':>7} {'CPU-min':>8}")
    for r in runs:
        print(f"{r['name']:<16} {r['final_val_map']:>8.2f} {r['final_val_ap50']:>7.2f} {r['best_val_map']:>7.2f} "
              f"{r['cpu_minutes']:>8.1f}")


if __name__ == "__main__":
    main()
