"""The latency and lookup-table commands."""

import json

import pytest

from test_cli import run


def test_latency_edgetpu_table_and_json(capsys, tmp_path):
    code, out, _ = run(capsys, "latency", "mobilenet_edgetpu_v2_s", "--target", "edgetpu", "--cache-dir", str(tmp_path))
    assert code == 0 and "stages[1].blocks[1].expand" in out and "on edgetpu (int8): 1.0196" in out
    code, out, _ = run(capsys, "latency", "mobilenet_edgetpu_v2_s", "--target", "macs", "--json")
    assert json.loads(out)["total"] == pytest.approx(1198.003968)


def test_calibrate_prints_the_published_table(capsys, tmp_path):
    code, out, _ = run(capsys, "latency", "calibrate", "--target", "edgetpu", "--cache-dir", str(tmp_path),
                       "--sweep", "0,1")
    assert code == 0 and "mobilenet_edgetpu_v2_tiny          0.78" in out and "leave-one-out MAPE 3.91%" in out
    assert "finding (fused beats IBN early, IBN beats fused late): holds" in out
    code, out, _ = run(capsys, "latency", "calibrate", "--target", "edgetpu", "--cache-dir", str(tmp_path), "--json",
                       "--sweep", "0")
    doc = json.loads(out)
    assert doc["loo_mape"] < 5 and doc["kendall_tau"] >= 0.9 and doc["sweep"]["0.0"]["finding_holds"] is False
    code, _, err = run(capsys, "latency", "calibrate", "--target", "cpu-ort")
    assert code == 1 and "calibrate fits the edgetpu model" in err


def test_check_and_lut_build_on_small_28(capsys, tmp_path):
    code, out, err = run(capsys, "latency", "check", "--target", "cpu-ort", "--space", "small-28", "--samples", "2",
                         "--fit-samples", "3", "--cache-dir", str(tmp_path), "--json", "--out", str(tmp_path / "c.json"))
    assert code == 0 and json.loads(out)["samples"] == 2
    assert len(json.loads((tmp_path / "c.json").read_text())["measured"]) == 2
    code, out, _ = run(capsys, "lut", "build", "--target", "cpu-ort", "--space", "small-28", "--samples", "1",
                       "--fit-samples", "3", "--seed", "5", "--cache-dir", str(tmp_path))
    assert code == 0 and "lut-cpu-ort.json" in out and "fitted on 3 models" in out


def test_check_covers_segmentation_models_with_their_tail(capsys, tmp_path):
    code, out, err = run(capsys, "latency", "check", "--target", "cpu-ort", "--models", "autoseg_edgetpu_x?",
                         "--tail", "resize64,argmax", "--input-size", "64", "--cache-dir", str(tmp_path),
                         "--out", str(tmp_path / "c.json"))
    assert code == 0 and "cpu-ort on autoseg_edgetpu_x?: 1 architectures" in out and "no overhead fitted" in out
    [arch] = json.loads((tmp_path / "c.json").read_text())["archs"]
    assert '"tail": "resize64,argmax"' in arch and '"input_size": 64' in arch
    code, _, err = run(capsys, "latency", "check", "--target", "cpu-ort", "--models", "nothing_like_this*")
    assert code == 1 and "--models 'nothing_like_this*': no zoo model matches" in err
    code, _, err = run(capsys, "latency", "check", "--target", "cpu-ort")
    assert code == 2 and "needs --space" in err


def test_check_covers_detection_models(capsys, tmp_path):
    """SpaghettiNet's graph (crops, max-pools, nearest upsampling, N-way sums) measured whole against its table."""
    code, out, _ = run(capsys, "latency", "check", "--target", "cpu-ort", "--models", "spaghettinet_edgetpu_s",
                       "--input-size", "64", "--cache-dir", str(tmp_path), "--json", "--out", str(tmp_path / "c.json"))
    assert code == 0 and json.loads(out)["samples"] == 1
    [measured] = json.loads((tmp_path / "c.json").read_text())["measured"]
    assert measured > 0


def test_unknown_target_is_one_line(capsys):
    code, _, err = run(capsys, "latency", "mobilenet_v2", "--target", "npu")
    assert code == 1 and err.startswith("edgenas: error: unknown latency target 'npu'") and err.count("\n") == 1


def test_warm_simulates_a_space_once_into_the_cache(capsys, tmp_path):
    args = ("latency", "warm", "--space", "small-28", "--samples", "2", "--cache-dir", str(tmp_path), "--json")
    code, out, _ = run(capsys, *args)
    first = json.loads(out)["spaces"][0]
    assert code == 0 and first["space"] == "small-28" and first["shapes"] > 100
    code, out, _ = run(capsys, *args)  # everything is in the cache (or the bundled table) now
    assert code == 0 and json.loads(out)["spaces"][0]["simulated"] == 0
    code, _, err = run(capsys, "latency", "warm", "--space", "nope")
    assert code == 1 and "unknown search space 'nope'" in err
