"""The bench scripts' shared helper (bench/common.py): one parser for their common arguments, one reader of a
run's epochs. The scripts themselves are run by hand (they measure); this checks what they share, cheaply."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def common():
    # loaded from its file under its own name: a module called "common" must not stay in sys.modules
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "common.py")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_a_bench_script_takes_its_arguments_from_the_shared_parser(path):
    tree = ast.parse(path.read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    imported = {a.name for n in imports for a in n.names}
    assert "argparse" not in imported, f"{path.name}: builds its own parser; use common.parser"
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    has_main = "main" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert not has_main or "parser" in calls, f"{path.name}: main() builds no parser()"


def test_the_common_arguments_keep_each_script_s_names_and_defaults(common):
    ap = common.parser("What it measures.", record="bench/results/x.json", record_flag="--json",
                       work="runs/x", cache_dir=common.CACHE, data_dir=None, shared=True, threads=2, runs=20)
    args = ap.parse_args([])
    assert vars(args) == {"json": "bench/results/x.json", "out": "runs/x", "cache_dir": common.CACHE,
                          "data_dir": None, "shared": "../shared", "threads": 2, "runs": 20}
    assert ap.parse_args(["--threads", "4", "--cache-dir", "c"]).threads == 4
    assert "What it measures." in ap.format_help()
    bare = common.parser(None, record="r.json", cache_dir=None).parse_args([])
    assert vars(bare) == {"out": "r.json", "cache_dir": None}  # None: the latency model's own default
    assert vars(common.parser(None).parse_args([])) == {}


def test_a_run_s_epochs_are_the_lines_with_the_key(common, tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    assert common.epochs(metrics, "val_top1") == []  # before the run wrote any
    lines = ({"step": 1, "loss": 2.0}, {"epoch": 1, "val_top1": 80.0}, {"epoch": 2, "val_top1": 85.5})
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert [r["val_top1"] for r in common.epochs(metrics, "val_top1")] == [80.0, 85.5]


def test_the_zoo_lists_each_task_s_models_with_their_published_figures(common):
    from edgenas.models import MODELS, list_models

    rows = common.zoo("detection")
    assert [name for name, _, _ in rows] == list_models(task="detection")
    assert all(pub is MODELS[name].published for name, _, pub in rows)
