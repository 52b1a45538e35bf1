"""Training throughput of edgenas's MobileNetEdgeTPUV2-S against timm's ``mobilenet_edgetpu_v2_s`` on one
CUDA GPU: 224x224, bf16 autocast, channels_last, SGD-Nesterov steps on random inputs.

The two models alternate (ours, timm, ours, timm, ...) for ``--rounds`` rounds so clock and thermal drift hit
both alike; each round times ``--steps`` steps after ``--warmup`` steps, synchronised, and the figure per
model is the median over rounds. Goal: ours / timm >= 0.97.

    python bench/gpu_throughput.py --json bench/results/gpu_throughput.json

Needs a CUDA machine with timm (pip install timm). ``--device cpu --no-timm --batch 8 --steps 2`` is a smoke
run of this script's own path on any machine.
"""

from __future__ import annotations

import statistics
import time

import torch

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.models import create_model


def build_timm():
    try:
        import timm
    except ImportError:
        raise SystemExit("bench/gpu_throughput.py compares against timm: pip install timm (or pass --no-timm)")
    return timm.create_model("mobilenet_edgetpu_v2_s", pretrained=False)


def images_per_s(model, device, batch: int, steps: int, warmup: int, bf16: bool) -> float:
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = parser(__doc__, record="bench/results/gpu_throughput.json", record_flag="--json", rounds=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--no-timm", action="store_true", help="time edgenas's model only (smoke run)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run this on a GPU machine (or --device cpu for a smoke run)")
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    models = {"edgenas": create_model("mobilenet_edgetpu_v2_s", num_classes=1000)}
    if not args.no_timm:
        models["timm"] = build_timm()
    for name, m in models.items():
        models[name] = m.to(device).train().to(memory_format=torch.channels_last)
    runs = {name: [] for name in models}
    for r in range(args.rounds):
        for name, m in models.items():
            runs[name].append(images_per_s(m, device, args.batch, args.steps, args.warmup, not args.no_bf16))
            print(f"round {r + 1}/{args.rounds} {name:8} {runs[name][-1]:9.1f} img/s", flush=True)
    medians = {name: statistics.median(v) for name, v in runs.items()}
    record = {"model": "mobilenet_edgetpu_v2_s", "input": 224, "batch": args.batch, "steps": args.steps,
              "bf16": not args.no_bf16, "channels_last": True, "images_per_s_runs": runs,
              "images_per_s_median": medians,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    if "timm" in medians:
        record["ratio_edgenas_over_timm"] = medians["edgenas"] / medians["timm"]
        print(f"edgenas / timm: {record['ratio_edgenas_over_timm']:.3f} (goal >= 0.97) on {record['device']}")
    write_record(args.json, record, torch.get_num_threads())


if __name__ == "__main__":
    main()
