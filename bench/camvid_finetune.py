"""Fine-tuning Autoseg-EdgeTPU-XS on CamVid: from Google's ADE20K-32 weights (the released TFLite, imported)
against from scratch, same config, same budget, on this machine's 2 cores.

configs/seg_camvid.yaml (256 px crops, evaluated on the 101 val images at 240x180) with ``--epochs`` epochs each;
the record holds every epoch's val mIoU, the wall time and CPU-minutes (wall x threads). Runs resume where they
stopped (the fit loop's checkpoints), so a killed benchmark restarts without losing finished epochs.

    python bench/camvid_finetune.py --camvid ../shared/data/camvid --epochs 30
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

TFLITE = Path(__file__).resolve().parents[1] / "tests/fixtures/google/autoseg_edgetpu_xs_fused_argmax.tflite"


def run(name: str, args, extra: list[str]) -> dict:
    out = Path(args.work) / name
    cfg = load_config("configs/seg_camvid.yaml", overrides=[
        f"data.data_dir={args.camvid}", f"train.epochs={args.epochs}", f"out={out}", *extra])
    t0 = time.perf_counter()
    fit(cfg, get_task(cfg), resume=(out / CHECKPOINT).is_file())
    wall = time.perf_counter() - t0
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in history if "val_miou" in r]
    return {"name": name, "overrides": extra, "epochs": epochs, "final_val_miou": epochs[-1]["val_miou"],
            "final_ema_val_miou": epochs[-1].get("ema_val_miou"), "best_val_miou": max(r["val_miou"] for r in epochs),
            "wall_seconds_this_call": wall, "train_seconds": sum(r["epoch_seconds"] for r in epochs),
            "cpu_minutes": sum(r["epoch_seconds"] for r in epochs) * cfg.train.threads / 60,
            "threads": cfg.train.threads}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--camvid", default="../shared/data/camvid")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--work", default="runs/bench_camvid")
    ap.add_argument("--out", default="bench/results/camvid_finetune.json")
    args = ap.parse_args()
    runs = [run("pretrained_ade20k", args, [f"model.pretrained={TFLITE}"]), run("scratch", args, [])]
    record = {"what": "Autoseg-EdgeTPU-XS fine-tuned on CamVid train (367), scored on CamVid val (101) at 240x180; "
                      "from Google's ADE20K-32 weights vs from scratch",
              "config": "configs/seg_camvid.yaml", "epochs": args.epochs, "runs": runs,
              "environment": environment(runs[0]["threads"])}
    write_record(args.out, record)
    print(f"{'run':<20} {'val mIoU':>9} {'EMA':>7} {'best':>7} {'CPU-min':>8}")
    for r in runs:
        ema = f"{r['final_ema_val_miou']:.2f}" if r["final_ema_val_miou"] is not None else "-"
        print(f"{r['name']:<20} {r['final_val_miou']:>9.2f} {ema:>7} {r['best_val_miou']:>7.2f} "
              f"{r['cpu_minutes']:>8.1f}")


if __name__ == "__main__":
    main()
