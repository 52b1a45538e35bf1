"""Bad files, data and flags end in one line naming what is wrong; interrupted runs leave nothing half-done
and resume without duplicates."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest
import torch
from PIL import Image

from edgenas.cli import main
from edgenas.config import load_config
from edgenas.data.datasets import ImageFolder
from edgenas.data.fashion_mnist import DataError
from edgenas.data.transforms import build_transform
from edgenas.errors import EdgenasError
from edgenas.io import write_atomic
from edgenas.nn import build_model
from edgenas.tasks import ClassificationTask, get_task
from edgenas.train.checkpoint import load_checkpoint, save_checkpoint
from edgenas.train.loop import DivergedError, fit

# 2 steps an epoch, 64 test images: the smallest run that trains, evaluates and checkpoints
TINY = ["model.name=mobilenet_v3_small", "model.stem_stride=1", "data.train_subset=128", "data.val_subset=64",
        "train.epochs=2", "train.batch_size=64", "train.threads=1", "data.augment=none", "train.log_every=1"]


def sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def cli_error(capsys, *argv: str) -> str:
    """Run ``edgenas argv``, which must fail with exactly one error line (progress lines and the phase notes
    of a job aside); the line."""
    code = main(list(argv))
    err = capsys.readouterr().err
    progress = ("\r", "epoch ", "warm-up [", "search [", "search: ", "retrain: ", "export: ", "report: ")
    lines = [line for line in err.split("\n") if line and not line.startswith(progress)]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("edgenas: error: "), err
    return lines[0]


def dead_pid() -> int:
    """The pid of a process that has exited (a killed writer's)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def half_run(tmp_path_factory):
    """A run folder holding the checkpoint of epoch 1 of 2, trained without EMA."""
    out = tmp_path_factory.mktemp("half") / "run"
    fit(load_config(overrides=TINY + [f"out={out}"]), ClassificationTask(), stop_after=1)
    return out


def copy_of(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


# --- checkpoints and weight files ----------------------------------------------------------------------
def _bad_checkpoint(tmp_path, kind: str):
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        torch.save({"arch": "{}", "model": {"w": torch.arange(50_000.0)}}, path)
        path.write_bytes(path.read_bytes()[:100_000])
    elif kind == "state-dict":
        torch.save({"conv.weight": torch.zeros(3), "conv.bias": torch.zeros(3)}, path)
    elif kind == "pickled-object":
        torch.save({"arch": Image.new("L", (1, 1))}, path)  # any class: weights_only refuses to import it
    elif kind == "list":
        torch.save([1, 2], path)
    else:
        torch.save({"arch": "{}", "model": {}}, path)  # a dict that lacks config and ema
    return path


SEG_64 = ["task=segmentation", "model.name=autoseg_edgetpu_xs", "model.input_size=64"]
DET_64 = ["task=detection", "model.name=spaghettinet_edgetpu_s", "model.input_size=64"]


def _untrained_checkpoint(path, overrides: list[str], config: list[str] | None = None):
    """A training checkpoint (untrained weights) of the spec ``overrides`` trains, its stored config that of
    ``config`` (default: the same overrides)."""
    cfg = load_config(overrides=overrides)
    spec = get_task(cfg).spec(cfg)
    stored = load_config(overrides=config) if config else cfg
    save_checkpoint({"arch": spec.to_json(), "config": stored.to_yaml(), "model": build_model(spec).state_dict(),
                     "ema": {}}, path)
    return path


@pytest.mark.parametrize("trained,config,sets,holds,asked", [
    (SEG_64, None, ["--set", "task=detection"], "segmentation", "detection"),
    (["model.name=mobilenet_v3_small"], None, ["--set", "task=segmentation", "--set", "data.dataset=composite"],
     "classification", "segmentation"),
    (DET_64, SEG_64, [], "detection", "segmentation"),  # the stored config says segmentation
])
def test_a_checkpoint_of_another_task_is_named_with_both_tasks(tmp_path, capsys, trained, config, sets, holds, asked):
    """These ended in AttributeErrors: the asked task read fields the checkpoint's spec does not have."""
    path = _untrained_checkpoint(tmp_path / "checkpoint.pt", trained, config)
    line = cli_error(capsys, "eval", str(path), *sets)
    assert line.startswith(f"edgenas: error: {path}: holds a {holds} model (") and \
        f"but task {asked} was asked for; evaluate it with task {holds} (--set task={holds})" in line


@pytest.mark.parametrize("command", ["eval", "export"])
@pytest.mark.parametrize("kind,says", [
    ("empty", "empty (0 bytes)"), ("garbage", "not a PyTorch file"), ("truncated", "truncated or corrupted"),
    ("state-dict", "a bare state dict (2 tensors), not an edgenas training checkpoint"),
    ("pickled-object", "holds Python objects"), ("list", "holds a list"),
    ("missing-keys", "missing keys: config, ema"),
])
def test_a_bad_checkpoint_is_named_with_its_problem(tmp_path, capsys, command, kind, says):
    path = _bad_checkpoint(tmp_path, kind)
    line = cli_error(capsys, command, str(path))
    assert line.startswith(f"edgenas: error: {path}: ") and says in line


def test_a_bad_weights_file_is_named_with_its_problem(tmp_path, capsys, fixtures_dir):
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes((fixtures_dir / "timm_mobilenet_edgetpu_v2_m.safetensors").read_bytes()[:50_000])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 100)
    for path in (truncated, garbage):
        line = cli_error(capsys, "eval", "--model", "mobilenet_edgetpu_v2_m", "--weights", str(path))
        assert line.startswith(f"edgenas: error: {path}: not a valid safetensors file")
    assert "truncated" in line


def test_flags_that_cannot_apply_are_errors(half_run, tmp_path, capsys):
    ckpt = str(half_run / "checkpoint.pt")
    for command in ("eval", "export"):
        line = cli_error(capsys, command, ckpt, "--ema")
        assert f"{ckpt}: was trained without EMA" in line and "--ema" in line
    assert "--ema" in cli_error(capsys, "eval", "--ema", "--model", "mobilenet_edgetpu_v2_m", "--weights", ckpt)
    assert "--calibration-images 0" in cli_error(capsys, "export", ckpt, "--format", "onnx-int8",
                                                 "--calibration-images", "0")
    assert f"{tmp_path}: is a folder" in cli_error(capsys, "export", ckpt, "--out", str(tmp_path))
    (tmp_path / "file").write_text("")
    assert f"{tmp_path / 'file'}: is a file, not a folder" in cli_error(
        capsys, "train", *sets(TINY), "--out", str(tmp_path / "file"))


# --- data ----------------------------------------------------------------------------------------------
def _png_header(path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` pixels in a few bytes: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b""))


def _image_folder(root, classes=("a", "b")):
    for split in ("train", "val"):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (36, 36), (80 * c, 60 * i, 120)).save(root / split / cls / f"{i}.png")
    return root


def test_labels_beyond_the_head_stop_before_the_first_step(tmp_path, capsys):
    line = cli_error(capsys, "train", *sets(TINY + ["model.num_classes=5"]), "--out", str(tmp_path / "a"))
    assert "(Fashion-MNIST train): labels run 0..9, but the model's head has 5 classes" in line
    assert "model.num_classes 5" in line
    data = _image_folder(tmp_path / "folder", ("a", "b", "c"))
    line = cli_error(capsys, "train", *sets(TINY + ["data.dataset=imagefolder", "model.input_size=32",
                                                    "model.num_classes=2"]),
                     "--data-dir", str(data), "--out", str(tmp_path / "b"))
    assert f"{data / 'train'}: labels run 0..2, but the model's head has 2 classes" in line
    shutil.rmtree(data / "val" / "b")  # val's class c would be read as class 1
    line = cli_error(capsys, "train", *sets(TINY + ["data.dataset=imagefolder", "model.input_size=32"]),
                     "--data-dir", str(data), "--out", str(tmp_path / "c"))
    assert f"{data / 'val'}: its classes differ from {data / 'train'}'s (b in only one)" in line
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


@pytest.mark.parametrize("pixels", [10_000, 20_000])  # PIL warns above 89M pixels and refuses above 179M
def test_a_decompression_bomb_is_skipped_or_named(tmp_path, pixels):
    (tmp_path / "a").mkdir()
    _png_header(tmp_path / "a" / "bomb.png", pixels, pixels)
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "ok.png")
    tf = build_transform(False, 8, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(DataError, match=r"bomb.png: too large to decode safely \(Image size"):
        ImageFolder(tmp_path, tf)[0]
    lenient = ImageFolder(tmp_path, tf, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipping .*bomb.png"):
        assert lenient[0][0].shape == (3, 8, 8)
    assert lenient.skipped == 1


def test_training_skips_a_decompression_bomb_only_when_asked(tmp_path, capsys):
    data = _image_folder(tmp_path / "folder")
    _png_header(data / "train" / "a" / "bomb.png", 20_000, 20_000)
    run = TINY + ["data.dataset=imagefolder", "model.input_size=32", "train.epochs=1"]
    line = cli_error(capsys, "train", *sets(run), "--data-dir", str(data), "--out", str(tmp_path / "a"))
    assert f"{data / 'train' / 'a' / 'bomb.png'}: too large to decode safely" in line
    with pytest.warns(UserWarning, match="skipping"):
        assert main(["train", *sets(run + ["data.skip_corrupt=true"]), "--data-dir", str(data), "--out",
                     str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 0


# --- training that diverges ----------------------------------------------------------------------------
def test_a_non_finite_loss_stops_training_and_writes_no_checkpoint(tmp_path, capsys):
    """One step an epoch, so no training loss shows the blown-up weights: the validation loss must."""
    out = tmp_path / "run"
    line = cli_error(capsys, "train", *sets(TINY + ["data.train_subset=64", "train.lr=1e30"]), "--out", str(out))
    assert "epoch 1: the validation loss is nan" in line and "train.lr 1e+30" in line
    assert "no checkpoint was written" in line and not (out / "checkpoint.pt").exists()


def test_divergence_on_resume_keeps_the_last_good_checkpoint(half_run, tmp_path):
    out = copy_of(half_run, tmp_path)
    state = load_checkpoint(out / "checkpoint.pt")
    for group in state["optimizer"]["param_groups"]:
        group["lr"] = 1e30  # what the first step of epoch 2 uses; the scheduler's base sets the rest
    state["scheduler"]["base_lrs"] = [1e30] * len(state["scheduler"]["base_lrs"])
    torch.save(state, out / "checkpoint.pt")
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(DivergedError, match=r"epoch 2, step 2: the training loss is nan.*checkpoint.pt, of the "
                                            r"last good epoch, is kept"):
        fit(load_config(overrides=TINY + [f"out={out}"]), ClassificationTask(), resume=True)
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not list(out.glob(".*.tmp"))


# --- interrupted runs ----------------------------------------------------------------------------------
def test_a_resumed_run_cleans_killed_writes_and_logs_each_record_once(half_run, tmp_path):
    """The state SIGKILL leaves mid-epoch 2: its step lines and a cut line in metrics.jsonl, and temporary
    files of dead writers; a live writer's temporary file is not touched."""
    out = copy_of(half_run, tmp_path)
    with open(out / "metrics.jsonl", "a") as log:
        log.write(json.dumps({"epoch": 1, "step": 3, "loss": 2.0}) + '\n{"epoch": 1, "tr')
    dead = [out / f".checkpoint.pt.{dead_pid()}.tmp", out / f".metrics.jsonl.{dead_pid()}.tmp"]
    for path in dead:
        path.write_bytes(b"half")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / f".arch.yaml.{live.pid}.tmp").write_text("in flight")
        fit(load_config(overrides=TINY + [f"out={out}"]), ClassificationTask(), resume=True)
        assert (out / f".arch.yaml.{live.pid}.tmp").exists()
    finally:
        live.kill()
        live.wait()
    assert not any(p.exists() for p in dead)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val_top1" in r] == [0, 1]
    steps = [(r["epoch"], r["step"]) for r in records if "step" in r]
    assert len(steps) == len(set(steps)) == 4  # 2 steps in each of 2 epochs
    # a later write of the same file also removes leftovers of dead writers
    stale = out / f".arch.yaml.{dead_pid()}.tmp"
    stale.write_text("")
    write_atomic(out / "arch.yaml", (out / "arch.yaml").read_text())
    assert not stale.exists()


def test_a_search_folder_is_cleaned_and_a_bad_search_checkpoint_named(tmp_path, capsys):
    out = tmp_path / "search"
    out.mkdir()
    stale = out / f".search_checkpoint.pt.{dead_pid()}.tmp"
    stale.write_bytes(b"half")
    torch.save({"controller": {}}, out / "search_checkpoint.pt")
    line = cli_error(capsys, "search", "--out", str(out), "--resume", *sets(["search.heldout=500", "train.threads=1",
                                                                            "data.train_subset=1000"]))
    assert f"{out / 'search_checkpoint.pt'}: not an edgenas search checkpoint (missing keys: rl_optimizer" in line
    assert not stale.exists()


def test_write_atomic_names_a_path_it_cannot_write_and_leaves_no_temporary(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(EdgenasError, match="file is a file, not a folder"):
        write_atomic(tmp_path / "file" / "x.json", "{}")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(EdgenasError, match=r"x.json: cannot write \(No space left on device\)"):
        write_atomic(tmp_path / "x.json", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_lut_build_killed_mid_table_resumes_losing_at_most_the_layer_in_flight(tmp_path, capsys):
    """SIGKILL once the table holds 3 entries, then the same command: the table on disk is whole JSON that grew
    entry by entry (a table saved every tenth measurement would hold none yet), and the resumed build measures
    exactly the entries it lacks."""
    build = ["lut", "build", "--target", "cpu-ort", "--space", "small-28", "--samples", "1", "--fit-samples", "1",
             "--cache-dir", str(tmp_path)]
    table = tmp_path / "lut-cpu-ort.json"
    proc = subprocess.Popen([sys.executable, "-m", "edgenas", *build], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while proc.poll() is None:
            if table.is_file() and len(json.loads(table.read_text())["entries"]) >= 3:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.kill()
    assert proc.wait() == -signal.SIGKILL, "the build ended before it was killed"
    held = len(json.loads(table.read_text())["entries"])
    assert 3 <= held < 10
    assert main(build) == 0
    out = capsys.readouterr().out
    total = len(json.loads(table.read_text())["entries"])
    assert f"{total} entries ({total - held} measured now)" in out and held < total
    assert main(build) == 0 and f"{total} entries (0 measured now)" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))
