"""The installed environment: every module imports, the resolve is consistent, torch is the pinned CPU build."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import edgenas


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(edgenas.__path__, "edgenas.") if not m.name.endswith("__main__")]
    assert len(names) > 15
    for name in names:
        importlib.import_module(name)


def test_pip_check_finds_no_broken_requirements():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_torch_is_the_pinned_cpu_build():
    import torch

    assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None
    constraints = Path(__file__).parents[1] / "constraints.txt"
    pins = dict(line.split("==") for line in constraints.read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.13.0"


def test_spec_and_space_import_without_torch():
    code = "import sys, edgenas.spec, edgenas.space, edgenas.models.registry; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
