"""The CLI: every command, its --json form, and one-line errors."""

import json
import subprocess
import sys

import pytest

from edgenas.cli import main
from edgenas.models import get_arch
from edgenas.spec import count

from test_data import write_fashion_mnist


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_table_and_json(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "mobilenet_edgetpu_v2_tiny" in out and "3.763" in out and "512.449" in out
    code, out, _ = run(capsys, "models", "mobilenet_edgetpu_v2_*", "--json")
    rows = json.loads(out)
    assert [r["params"] for r in rows] == [3_762_729, 4_462_697, 5_987_737, 8_464_233, 10_923_049]
    assert rows[0]["published_top1"] == 74.66


def test_models_time_forward_on_fashion_mnist(capsys, tmp_path):
    write_fashion_mnist(tmp_path)
    report = tmp_path / "out" / "models.json"
    code, out, _ = run(capsys, "models", "mobilenet_v3_small", "--time-forward", "--data-dir", str(tmp_path),
                       "--batch", "2", "--runs", "2", "--out", str(report))
    assert code == 0 and "eager ms / 2 img" in out
    doc = json.loads(report.read_text())
    assert doc["models"][0]["batch"] == 2 and doc["environment"]["threads"] == 2


def test_profile(capsys):
    code, out, _ = run(capsys, "profile", "mobilenet_edgetpu_v2_s")
    assert code == 0 and "stages[1].blocks[1].expand" in out and "conv3x3/g4" in out and "5,987,737 params" in out
    code, out, _ = run(capsys, "profile", "mobilenet_v2", "--input-size", "96", "--json")
    doc = json.loads(out)
    assert doc["input_size"] == 96 and doc["macs"] == count(get_arch("mobilenet_v2").replace(input_size=96)).macs
    assert sum(layer["params"] for layer in doc["layers"]) == doc["params"]


def test_arch_dump_then_validate(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    assert run(capsys, "arch", "dump", "mobilenet_edgetpu_v2_s", "--out", str(path))[0] == 0
    code, out, _ = run(capsys, "arch", "validate", str(path))
    assert code == 0 and out.startswith(f"ok: {path}: mobilenet_edgetpu_v2_s, 20 blocks, 5,987,737 params")
    code, out, _ = run(capsys, "profile", str(path), "--json")
    assert json.loads(out)["params"] == 5_987_737


def test_arch_validate_reports_one_line(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(get_arch("mobilenet_edgetpu_v2_s").to_yaml().replace("group_size: 64", "group_size: 100", 1))
    code, out, err = run(capsys, "arch", "validate", str(path))
    assert code == 1 and out == ""
    assert err == (f"edgenas: error: {path}: stages[1].blocks[1].group_size: 100 does not divide the 192 "
                   "expanded channels\n")


def test_space_show(capsys):
    code, out, _ = run(capsys, "space", "show", "edgetpu-v2-224", "--samples", "16")
    assert code == 0 and "stages[2].blocks[1]@gc_ibn.group_size" in out and "64 | 128" in out
    assert "zoo models that are points of it: mobilenet_edgetpu_v2_tiny, mobilenet_edgetpu_v2_xs" in out
    code, out, _ = run(capsys, "space", "show", "small-28", "--samples", "16", "--json")
    doc = json.loads(out)
    assert doc["size"] > 10**12 and doc["macs_range_sampled"]["min"] < doc["macs_range_sampled"]["max"]


def test_unknown_names(capsys):
    code, _, err = run(capsys, "profile", "resnet50")
    assert code == 1 and err.startswith("edgenas: error: unknown model 'resnet50'")
    code, _, err = run(capsys, "space", "show", "nope")
    assert code == 1 and "unknown search space 'nope'" in err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "edgenas", "models", "mobilenet_v3_small", "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)[0]["params"] == 2_542_856


def test_help_loads_no_command_module():
    """A command's module (and the scipy, search or training code it needs) loads only when that command runs,
    so ``--help`` and usage errors stay quick."""
    code = ("import sys; from edgenas.cli import main; main(['--help']); main(['latency']); "
            "print(sorted(m for m in sys.modules if m.startswith(('edgenas.cli.', 'edgenas.search', "
            "'edgenas.train', 'edgenas.latency.calibrate', 'scipy'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"


def _models_json() -> list[dict]:
    from edgenas.models import MODELS, list_models

    rows = []
    for name in list_models():
        c, pub = count(get_arch(name)), MODELS[name].published
        rows.append({"model": name, "family": MODELS[name].family, "task": MODELS[name].task, "params": c.params,
                     "macs": c.macs, "input_size": get_arch(name).input_size,
                     "num_classes": get_arch(name).num_classes,
                     **{k: getattr(pub, field) if pub else None for k, field in (
                         ("published_top1", "top1"), ("published_miou", "miou"), ("published_params_m", "params"),
                         ("published_note", "note"),
                         ("published_latency_ms", "latency_ms"), ("latency_device", "latency_device"))}})
    return rows


def _space_json() -> dict:
    from edgenas.space import get_space

    space = get_space("small-28")
    # MACs of the smallest and largest of 4 points drawn with seed 0: space.macs_range(default_rng(0), 4) at
    # commit 1e751e9; a change means the sampler draws other points for the same seed.
    sampled = {"min": 52_871_040, "max": 120_776_192, "samples": 4, "seed": 0}
    return {**space.to_dict(), "choices": {p: list(c.labels) for p, c in space.choices()},
            "macs_range_sampled": sampled, "zoo_members": [], "latency_range_sampled": None}


@pytest.mark.parametrize("argv,expected", [(["models", "--json"], _models_json),
                                           (["space", "show", "small-28", "--json", "--samples", "4"], _space_json)])
def test_json_is_parseable(capsys, argv, expected):
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out) == expected()  # one document, every field the library's figure
