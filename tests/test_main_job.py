"""The main job (`make run`) end to end, as the Makefile runs it, at tiny settings: a broken main job fails the
suite. The command line is read from the Makefile's `run` recipe, so a change there is what this runs; only
the data folder, the output folder and a few sizes (--set) differ."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_data import write_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]
TINY = ["search.steps=8", "search.heldout=64", "search.rl_batch=32", "search.checkpoint_every=100",
        "train.batch_size=16", "data.train_subset=256", "data.val_subset=64", "search.retrain_epochs=1"]


def make_run_argv(data_dir: Path, out: Path) -> list[str]:
    """The `run` recipe's command, with the venv's edgenas as this interpreter's module and the given folders."""
    recipe = re.search(r"^run:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    argv = shlex.split(recipe)
    assert argv[0] == "$(BIN)/edgenas", argv
    argv = [sys.executable, "-m", "edgenas", *argv[1:]]
    argv[argv.index("--data-dir") + 1] = str(data_dir)
    argv[argv.index("--out") + 1] = str(out)
    return argv


def run_tiny(data_dir: Path, out: Path) -> subprocess.CompletedProcess:
    argv = make_run_argv(data_dir, out) + [a for s in TINY for a in ("--set", s)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("main_job")
    (root / "data").mkdir()
    write_fashion_mnist(root / "data", n=400)
    return root / "quickstart", run_tiny(root / "data", root / "quickstart")


def test_the_main_job_runs_every_phase(main_job):
    out, done = main_job
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"config.yaml", "arch.yaml", "task_arch.yaml", "trace.jsonl", "result.json", "model.onnx",
            "report.html"} <= {p.name for p in out.iterdir()}
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["search"]["space"] == "edgetpu-v2-224" and result["latency_model"] == "edgetpu"
    assert len((out / "trace.jsonl").read_text().splitlines()) == 8
    # it lands on its target: the controller of 8 steps has not settled, so the decoding chooses, and says so
    assert abs(result["target_error"]) <= result["config"]["search"]["target_tolerance"]
    assert result["selection"]["rule"] in ("most likely", "most likely within the target band")
    onnx = result["retrained"]["onnx"]
    assert onnx["top1_agreement"] >= 99.0 and onnx["path"].endswith("model.onnx")
    assert "report.html" in done.stdout and "test top-1" in done.stdout
    # the report: the zoo (every MobileNetEdgeTPUV2, points of the space) on the latency axis and in a table, never
    # on the quality axis beside the controller's samples; the star at the samples' own estimator
    page = (out / "report.html").read_text()
    zoo = {z["name"] for z in result["zoo"]}
    assert {f"mobilenet_edgetpu_v2_{s}" for s in ("tiny", "xs", "s", "m", "l")} <= zoo
    assert page.count('class="zoo"') == page.count('class="zoo-row"') == len(zoo) and 'class="zoo-label"' not in page
    assert "Zoo models stand on the latency axis only" in page and f"{result['supernet_quality']:.3f}" in page


def test_the_main_job_says_what_it_does_from_the_start(main_job):
    """A log (stderr is a pipe here) gets a line per phase, the first before any step, and the first step's."""
    _, done = main_job
    lines = done.stderr.splitlines()
    assert lines[0].startswith("search: edgetpu-v2-224 for edgetpu at 1.2, 8 steps (2 of warm-up)"), lines[:3]
    assert any(line.startswith("search: building the supernet") for line in lines)
    first_step = next(i for i, line in enumerate(lines) if line.startswith("warm-up ["))
    assert " 1/8 " in lines[first_step] and "left" in lines[first_step]
    for phase in ("search: choosing the architecture", "retrain: ", "epoch 1/1", "export: ", "report: "):
        assert any(line.startswith(phase) for line in lines), phase


def test_the_main_job_resumes_to_the_same_answer(main_job):
    """`make run` again reuses what is there: no step runs twice, the result is the same."""
    out, done = main_job
    before = json.loads((out / "result.json").read_text())
    again = run_tiny(out.parent / "data", out)
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads((out / "result.json").read_text())
    assert after["decision"] == before["decision"] and after["retrained"]["top1"] == before["retrained"]["top1"]
    assert not any(line.startswith("warm-up [") for line in again.stderr.splitlines())
