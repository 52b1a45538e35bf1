"""Why the quickstart's retrained winner had logits in the hundreds (issue 26): its architecture trained as the
main job retrains it (configs/quickstart.yaml's data and train sections, 3 epochs on 12,000 Fashion-MNIST images at
32 px), once with each dense-layer initialization, then the per-image largest |logit| on the 10,000 test images,
in eval- and train-mode BatchNorm, and how activations grow from the stem to the head on the worst image.

    google:      uniform +-1/sqrt(out_features) (Google's VarianceScaling(1/3, fan_out), sized for 1000 classes)
    torchvision: normal(0, 0.01), what edgenas.nn.init_weights now gives a classifier's final layer

The architecture is the winner recorded in bench/results/quickstart.json (`decision`), so the comparison does not
move with the search. About 10 minutes on 2 cores; each variant resumes from its own folder.

    python bench/init_logits.py [--data-dir DIR] [--json bench/results/init_logits.json]
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml

import edgenas.nn.model as model_module
from common import parser  # bench/ is on the path when a bench script runs
from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.search.proxy import task_space
from edgenas.space import get_space
from edgenas.tasks import ClassificationTask, get_task
from edgenas.tasks.parity import parity_data
from edgenas.train.checkpoint import load_trained
from edgenas.train.loop import fit

QUICKSTART = "configs/quickstart.yaml"
TORCHVISION = model_module.init_weights  # what edgenas uses


def google_dense(model: torch.nn.Module) -> None:
    """edgenas's initialization, then its dense layers as Google's rule has them (as before issue 26)."""
    TORCHVISION(model)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            torch.nn.init.uniform_(m.weight, -bound, bound)


def winner_arch(out: Path, data_dir: str) -> Path:
    """The recorded quickstart winner as the retraining sees it (the proxy task's arch), saved to ``out``."""
    record = json.loads(Path("bench/results/quickstart.json").read_text())
    cfg = load_config(QUICKSTART, [f"data.data_dir={data_dir}"])
    arch = task_space(cfg, get_space(cfg.search.space)).fix(record["decision"])
    out.parent.mkdir(parents=True, exist_ok=True)
    arch.save(out)
    return out


def logit_figures(logits: torch.Tensor) -> dict:
    peak = logits.abs().amax(1).numpy()
    q = np.percentile(peak, [50, 90, 99, 100])
    return {"max_abs_logit_median": float(q[0]), "max_abs_logit_p90": float(q[1]),
            "max_abs_logit_p99": float(q[2]), "max_abs_logit_max": float(q[3])}


def measure(checkpoint: Path) -> dict:
    cfg, arch, model = load_trained(checkpoint)
    images, labels, _ = parity_data(get_task(cfg), cfg, arch, check=10_000, calibration=0)
    norms = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    acts: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: acts.__setitem__(n, o.abs().amax((1, 2, 3))))
             for n, m in norms]
    with torch.no_grad():
        per_batch = []
        for b in images.split(500):
            per_batch.append((model.eval()(b), {n: a.clone() for n, a in acts.items()}))
        logits = torch.cat([lg for lg, _ in per_batch])
        peaks = {n: torch.cat([a[n] for _, a in per_batch]) for n, _ in norms}
    for h in hooks:
        h.remove()
    worst = int(logits.abs().amax(1).argmax())
    with torch.no_grad():
        train_logits = torch.cat([copy.deepcopy(model).train()(b) for b in images.split(500)])
    first, last = norms[0][0], norms[-1][0]
    return {"test_top1": float((logits.argmax(1) == labels).float().mean() * 100), **logit_figures(logits),
            "train_mode_bn": logit_figures(train_logits),
            "worst_image": {"index": worst, "label": int(labels[worst]),
                            "activation_over_median": {n: float(peaks[n][worst] / peaks[n].median())
                                                       for n in (first, last)}},
            "classes_of_top_1pct": np.bincount(labels[logits.abs().amax(1).argsort(descending=True)[:100]].numpy(),
                                               minlength=10).tolist()}


def main() -> None:
    args = parser(__doc__, record="bench/results/init_logits.json", record_flag="--json",
                  work="runs/bench_init_logits", data_dir="/usr/share/datasets/fashion-mnist").parse_args()
    out = Path(args.out)
    arch = winner_arch(out / "task_arch.yaml", args.data_dir)
    quick = yaml.safe_load(Path(QUICKSTART).read_text())
    rows = {}
    for name, init in (("google", google_dense), ("torchvision", TORCHVISION)):
        cfg = load_config(base={"model": {"arch": str(arch), "input_size": 32},
                                "data": {**quick["data"], "data_dir": args.data_dir},
                                "train": {**quick["train"], "epochs": quick["search"]["retrain_epochs"]},
                                "out": str(out / name)})
        saved, model_module.init_weights = model_module.init_weights, init
        try:
            fit(cfg, ClassificationTask(), resume=True)
        finally:
            model_module.init_weights = saved
        rows[name] = measure(out / name / "checkpoint.pt")
    write_record(args.json, {"arch": str(arch), "decision_from": "bench/results/quickstart.json", "variants": rows},
                 threads=2)
    print(f"{'init':<12} {'top-1':>6} {'median':>7} {'p99':>7} {'max':>7} {'max (train BN)':>14}")
    for name, r in rows.items():
        print(f"{name:<12} {r['test_top1']:>6.2f} {r['max_abs_logit_median']:>7.1f} {r['max_abs_logit_p99']:>7.1f} "
              f"{r['max_abs_logit_max']:>7.1f} {r['train_mode_bn']['max_abs_logit_max']:>14.1f}")


if __name__ == "__main__":
    main()
