"""Fashion-MNIST accuracy of a zoo model adapted to 28x28 inputs, trained on the CPU within a time budget.

Runs `configs/fashion_mnist.yaml` (or --config), resumable (rerun with the same --out to continue after an
interruption), and writes the final record with wall time and machine to JSON.

    python bench/train_fashion_mnist.py --out runs/fashion_mnist --json bench/results/train_fashion_mnist.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from common import epochs, parser  # bench/ is on the path when a bench script runs
from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.io import write_atomic
from edgenas.tasks import ClassificationTask
from edgenas.train.loop import fit


def main() -> None:
    ap = parser(__doc__, record="bench/results/train_fashion_mnist.json", record_flag="--json",
                work="runs/fashion_mnist")
    ap.add_argument("--config", default="configs/fashion_mnist.yaml")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(args.config, args.set + [f"out={args.out}"])
    timing = Path(args.out) / "wall_seconds.json"
    spent = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    t0 = time.time()
    record = fit(cfg, ClassificationTask(), resume=True)[-1]
    spent += time.time() - t0
    write_atomic(timing, json.dumps({"seconds": spent}))  # a torn file would lose the time spent so far
    history = epochs(Path(args.out) / "metrics.jsonl", "val_top1")
    result = {"model": cfg.model.name, "input": "28x28x1, stride-1 stem", "epochs": cfg.train.epochs,
              "final": record, "best_val_top1": max(h["val_top1"] for h in history),
              "wall_minutes": spent / 60, "config": cfg.model_dump(mode="json")}
    write_record(args.json, result, cfg.train.threads)
    print(f"{cfg.model.name}: test top-1 {record['val_top1']:.2f}% after {cfg.train.epochs} epochs, "
          f"{spent / 60:.1f} min")


if __name__ == "__main__":
    main()
