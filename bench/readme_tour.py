"""The figures of README.md's tour, recorded: each command the tour shows, run with --json, its output kept.

Parts (run any subset; the record keeps the steps of the parts not run this time):
  spec     the spec, space and edgetpu-latency commands; seconds, nothing measured
  train    the tour's 3-epoch smoke run of MobileNetEdgeTPUV2-Tiny on 6,000 Fashion-MNIST images, its
           evaluation and exports; a few minutes on 2 cores, needs the data (make setup installs it)
  trained  the exports of the fully trained model of bench/train_fashion_mnist.py (run that first: about
           35-50 minutes); skipped when its checkpoint is missing

    python bench/readme_tour.py [--parts spec,train,trained] [--runs runs/readme_tour]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import epochs, parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record


def spec_steps(runs: Path) -> dict[str, list[str]]:
    s_yaml = runs / "s.yaml"
    return {
        "profile": ["profile", "mobilenet_edgetpu_v2_tiny"],
        "arch_dump": ["arch", "dump", "mobilenet_edgetpu_v2_s", "--out", str(s_yaml)],
        "arch_validate": ["arch", "validate", str(s_yaml)],
        "arch_validate_bad": ["arch", "validate", str(runs / "s_bad.yaml")],  # written by break_group_size
        "space_show": ["space", "show", "edgetpu-v2-224", "--target", "edgetpu"],
        "space_show_small": ["space", "show", "small-28", "--target", "edgetpu"],
        "space_show_seg": ["space", "show", "autoseg-512", "--samples", "64"],
        "latency_tiny": ["latency", "mobilenet_edgetpu_v2_tiny", "--target", "edgetpu"],
        "calibrate": ["latency", "calibrate", "--target", "edgetpu"],
        "models_v2": ["models", "mobilenet_edgetpu_v2_*"],
        "models_seg": ["models", "autoseg_*"],
        "profile_seg": ["profile", "autoseg_edgetpu_xs", "--tail", "resize256,argmax,resize512"],
        "latency_seg_exact": ["latency", "autoseg_edgetpu_xs", "--target", "edgetpu", "--tail", "resize512,argmax"],
        "latency_seg_fused": ["latency", "autoseg_edgetpu_xs", "--target", "edgetpu", "--tail",
                              "resize256,argmax,resize512"],
    }


def break_group_size(runs: Path) -> None:
    """The tour's bad edit: the first group size of 64 made 100, which divides no expanded width."""
    text = (runs / "s.yaml").read_text()
    (runs / "s_bad.yaml").write_text(text.replace("group_size: 64", "group_size: 100", 1))


def train_steps(runs: Path) -> dict[str, list[str]]:
    tiny = runs / "tiny"
    ckpt = str(tiny / "checkpoint.pt")
    return {
        "train": ["train", "--model", "mobilenet_edgetpu_v2_tiny", "--set", "data.train_subset=6000",
                  "--set", "train.epochs=3", "--out", str(tiny), "--resume"],
        "eval": ["eval", ckpt],
        "export_onnx": ["export", ckpt, "--format", "onnx"],
        "export_tflite": ["export", ckpt, "--format", "tflite", "--check-images", "100"],
        "export_onnx_int8": ["export", ckpt, "--format", "onnx-int8"],  # the tour shows it refused
    }


def trained_steps(checkpoint: Path) -> dict[str, list[str]]:
    ckpt = str(checkpoint)
    return {
        "trained_onnx": ["export", ckpt, "--format", "onnx"],
        "trained_onnx_int8": ["export", ckpt, "--format", "onnx-int8", "--check-images", "2000"],
        "trained_tflite_int8": ["export", ckpt, "--format", "tflite-int8", "--check-images", "2000"],
    }


def run(argv: list[str]) -> dict:
    t0 = time.time()
    # --json output is the record; the human-readable lines the README shows are formatted from the same data
    proc = subprocess.run([sys.executable, "-m", "edgenas", *argv, "--json"], capture_output=True, text=True)
    step = {"argv": argv, "rc": proc.returncode, "seconds": time.time() - t0,
            "stderr_tail": proc.stderr.strip().splitlines()[-3:]}
    try:
        step["output"] = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        step["output"] = proc.stdout.strip().splitlines()  # a command without --json output: its text
    return step


def main() -> None:
    ap = parser(__doc__, record="bench/results/readme_tour.json", record_flag="--json")
    ap.add_argument("--parts", default="spec,train,trained")
    ap.add_argument("--runs", default=None, help="folder for the tour's files (default: a temporary one)")
    ap.add_argument("--trained", default="runs/fashion_mnist/checkpoint.pt")
    args = ap.parse_args()
    out = Path(args.json)
    record = json.loads(out.read_text()) if out.is_file() else {}
    steps = record.setdefault("steps", {})
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.runs or tmp)
        runs.mkdir(parents=True, exist_ok=True)
        parts = {"spec": spec_steps(runs), "train": train_steps(runs)}
        if Path(args.trained).is_file():
            parts["trained"] = trained_steps(Path(args.trained))
        for part in args.parts.split(","):
            if part not in parts:
                why = f"{args.trained} is missing" if part == "trained" else "no such part"
                print(f"{part}: skipped ({why})", flush=True)
                continue
            for name, argv in parts[part].items():
                if name == "arch_validate_bad":
                    break_group_size(runs)
                steps[name] = {"part": part, **run(argv)}
                if name == "train":
                    run_dir = Path(argv[argv.index("--out") + 1])
                    steps[name]["epochs"] = epochs(run_dir / "metrics.jsonl", "val_top1")
                print(f"{part}/{name}: rc {steps[name]['rc']}, {steps[name]['seconds']:.0f} s", flush=True)
                # the next record written must not lose what finished, whatever stops the run
                write_record(out, record)


if __name__ == "__main__":
    main()
