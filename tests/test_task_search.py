"""TuNAS on the segmentation and detection spaces: the task's loss and quality, the sliced supernet, resume."""

import html
import json

import pytest

from edgenas.config import load_config
from edgenas.search.job import run
from edgenas.search import search
from edgenas.spec import SpecError

CASES = {"segmentation": ("autoseg-512", 2000, "held-out mIoU"),
         "detection": ("spaghetti-320", 1000, "1 / (1 + held-out SSD loss)")}


def _cfg(task: str, out, **search_more):
    space, target, _ = CASES[task]
    return load_config(base={
        "task": task, "out": str(out),
        "search": {"space": space, "target": "macs", "latency_target": target, "steps": 6, "warmup_fraction": 0.5,
                   "heldout": 8, "rl_batch": 4, "input_size": 64, "checkpoint_every": 3, **search_more},
        "data": {"train_subset": 32, "val_subset": 8}, "train": {"batch_size": 4, "threads": 1, "lr": 0.05}})


@pytest.mark.parametrize("task", CASES)
def test_the_search_job_of_a_dense_task_end_to_end_and_resumed(task, tmp_path):
    """The job (search, retraining, ONNX export, report) once; the search again, interrupted and resumed."""
    space, _, label = CASES[task]
    whole = run(_cfg(task, tmp_path / "whole", retrain_epochs=1), progress=False)
    assert search(_cfg(task, tmp_path / "part"), stop_after=4, progress=False) == {"stopped_at": 4}
    resumed = search(_cfg(task, tmp_path / "part"), resume=True, progress=False)
    assert resumed["decision"] == whole["decision"]
    trace = [json.loads(line) for line in (tmp_path / "part" / "trace.jsonl").read_text().splitlines()]
    assert trace == [json.loads(line) for line in (tmp_path / "whole" / "trace.jsonl").read_text().splitlines()]
    assert whole["quality_label"].startswith(label) and 0 <= whole["supernet_quality"] <= 1
    assert whole["arch"]["kind"] == ("network" if task == "segmentation" else "detector")
    assert whole["task_arch"]["input_size"] == 64 and whole["arch"]["input_size"] == (512 if task == "segmentation"
                                                                                      else 320)
    assert "at 64x64x3" in whole["proxy"] and f"the {space} architecture" in whole["proxy"]
    scored = [z["name"] for z in whole["zoo"] if "supernet_quality" in z]
    assert len(scored) == 3 and all(z["latency"] > 0 for z in whole["zoo"])  # the zoo points of the space
    assert (tmp_path / "whole" / "arch.yaml").is_file()
    retrained = whole["retrained"]
    assert retrained["epochs"] == 1 and 0 <= retrained["quality"] <= 100 and retrained["test_images"] == 8
    assert (tmp_path / "whole" / "model.onnx").is_file() and retrained["export_line"].startswith("wrote ")
    page = (tmp_path / "whole" / "report.html").read_text()
    nodes = [n["name"] for n in whole["arch"]["nodes"]]
    assert 'id="fig-arch"' in page and all(f">{n}</text>" in page for n in nodes)  # drawn node by node
    assert whole["quality_measure"] == label and html.escape(label) in page


def test_a_space_of_another_task_is_refused(tmp_path):
    cfg = load_config(base={"search": {"space": "autoseg-512", "steps": 2}, "out": str(tmp_path)})
    with pytest.raises(SpecError, match="autoseg-512 is a segmentation space; set task: segmentation"):
        search(cfg, progress=False)
    cfg = _cfg("detection", tmp_path / "det", space="small-28")
    with pytest.raises(SpecError, match="small-28 is a classification space"):
        search(cfg, progress=False)


def test_random_search_of_a_dense_task_trains_trials_with_the_tasks_objective(tmp_path):
    cfg = _cfg("segmentation", tmp_path, strategy="random", trials=2, trial_steps=2)
    result = search(cfg, progress=False)
    assert result["strategy"] == "random" and result["trials"] == 2
    assert result["quality_measure"] == "held-out mIoU" and 0 <= result["quality"] <= 1
    assert result["arch"]["kind"] == "network" and (tmp_path / "trace.jsonl").is_file()
