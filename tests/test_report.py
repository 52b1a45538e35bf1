"""report.html: the search job's static page, opened in headless Chromium (Debian's, installed by make test)."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.search.report import OP_COLORS

CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]


def _chromium(*args, cwd) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)"
    return subprocess.run([exe, *CHROMIUM, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _console(stderr: str) -> list[str]:
    """Console messages (script errors, failed loads, console.* calls) from Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    """A small search run end to end by the job: search, retrain one epoch, evaluate, export, report."""
    from edgenas.config import load_config
    from edgenas.search.job import run

    out = tmp_path_factory.mktemp("search")
    cfg = load_config(overrides=[
        "search.steps=10", "search.heldout=300", "data.train_subset=900", "data.val_subset=200",
        "train.batch_size=32", "search.rl_batch=64", "train.threads=1", "train.lr=0.02", "search.target=edgetpu",
        "search.latency_target=0.3", "search.rl_lr=0.2", "search.retrain_epochs=2", f"out={out}"],
        base={"search": {}})
    result = run(cfg, progress=False)
    return out, result


def test_the_job_retrains_evaluates_and_exports_the_winner(search_dir):
    out, result = search_dir
    r = result["retrained"]
    assert r["epochs"] == 2 and r["test_images"] == 200
    # top-1 is the saved model's, counted again here on the same 200 test images (in the fit loop's batches,
    # so that no other conv algorithm can move a near tie), as correct / 200 x 100
    from edgenas.tasks import get_task
    from edgenas.tasks.parity import parity_data
    from edgenas.train.checkpoint import load_trained

    cfg, arch, model = load_trained(out / "retrain" / "checkpoint.pt")
    images, labels, _ = parity_data(get_task(cfg), cfg, arch, check=1000, calibration=0)
    with torch.no_grad():
        logits = torch.cat([model.eval()(b) for b in images.split(cfg.train.batch_size)])
    correct = int((logits.argmax(1) == labels).sum())
    assert len(labels) == 200 and r["top1"] == correct / 200 * 100
    # It learned: chance is 10% (sd 2.1 points over 200 images), where a broken fit loop stays. Two epochs,
    # because one left some winners (which arch wins moves with the latency model) near chance.
    assert r["top1"] > 20
    assert r["onnx"]["max_abs_diff"] < 1e-3 and (out / "model.onnx").stat().st_size > 10_000
    saved = json.loads((out / "result.json").read_text())
    assert saved["retrained"]["top1"] == r["top1"] and saved["proxy"] is None  # small-28 is Fashion-MNIST's
    assert {"arch.yaml", "task_arch.yaml", "trace.jsonl", "report.html", "config.yaml"} <= \
        {p.name for p in out.iterdir()}


def test_report_opens_in_a_browser_with_its_figures(search_dir):
    out, result = search_dir
    trace = [json.loads(line) for line in (out / "trace.jsonl").read_text().splitlines()]
    page = out / "report.html"
    text = page.read_text()
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch
    assert "https://" not in text and "<script" not in text

    dom = _chromium("--dump-dom", page.as_uri(), cwd=out)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console(dom.stderr), _console(dom.stderr)
    for fig in ("fig-pareto", "fig-arch", "fig-probabilities", "fig-trace", "chosen"):
        assert f'id="{fig}"' in dom.stdout, fig
    tried = sum(len(r.get("samples", [])) for r in trace)
    assert dom.stdout.count('class="tried"') == tried > 0
    arch = result["arch"]
    assert dom.stdout.count('class="block"') == sum(len(s["blocks"]) for s in arch["stages"]) + 2  # + stem, head
    assert re.search(r"retrained from scratch.*test top-1", dom.stdout)
    # the star is scored as the dots are (batch statistics); its own-statistics figure is in the table; the zoo
    # stands on the latency axis only, listed with its latencies, and the page says why
    assert f"{result['supernet_quality']:.3f}" in dom.stdout
    assert f"{result['supernet_quality_recalibrated']:.3f}" in dom.stdout and "own BatchNorm statistics" in dom.stdout
    # (small-28's zoo at 28 px is empty; test_main_job checks a report with the MobileNetEdgeTPUV2 zoo)
    assert dom.stdout.count('class="zoo"') == dom.stdout.count('class="zoo-row"') == len(result["zoo"])
    assert "Zoo models stand on the latency axis only" in dom.stdout and "chosen by" in dom.stdout

    shot = out / "shot.png"
    done = _chromium("--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri(), cwd=out)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert (pixels.min(1) < 200).mean() > 0.02  # not blank
    used = {b.get("type") for s in arch["stages"] for b in s["blocks"]}
    for op in used & set(OP_COLORS):  # every op of the chosen arch is drawn in its colour
        rgb = np.array([int(OP_COLORS[op][i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(1) < 12).sum() > 50, op


def test_console_check_catches_a_broken_page(tmp_path):
    """The no-console-errors assertion above can fail: a page with a script error trips it."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>undefined_function()</script></body></html>")
    done = _chromium("--dump-dom", bad.as_uri(), cwd=tmp_path)
    assert any("undefined_function" in line for line in _console(done.stderr))


def test_report_command_rebuilds_the_page(search_dir, capsys):
    from edgenas.cli import main

    out, _ = search_dir
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_report_of_a_broken_folder_is_one_line(tmp_path, capsys):
    from edgenas.cli import main

    (tmp_path / "result.json").write_text("{bad")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "result.json: not valid JSON" in err
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / "trace.jsonl").write_text("{}\n")
    assert main(["report", str(tmp_path)]) == 1
    assert "is not a search's record" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()
