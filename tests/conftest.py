import os
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
# The project's shared folder beside the checkout (../shared: real datasets for the seg/det tests); CI has it.
SHARED = Path(os.environ.get("EDGENAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def need(path: Path, what: str) -> Path:
    """``path``; missing, the test skips, except under CI=true, where a missing input fails."""
    if path.exists():
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{path}: missing; {what} must be present under CI=true")
    pytest.skip(f"{path}: missing ({what})")


def need_shared(relative: str, what: str) -> Path:
    """``SHARED / relative``, as ``need`` finds it."""
    return need(SHARED / relative, what)


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def _one_thread_per_worker():
    """Under pytest-xdist each worker has a core: torch's intra-op threads (2 on CI's 2 cores, and a test that
    sets train.threads leaves its count behind) would make the workers fight for both."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


# pytest-xdist hands whole files to the workers (--dist loadfile) in collection order, the next file to the
# worker that finishes first; alphabetical order put the longest file (test_search.py) last, so one worker ran
# it alone while the other idled. The longest files go first (their seconds on 2 cores from --durations,
# 2026-12-06: test_search 318, test_export 160, test_task_search 138, test_tflite_import 75, test_latency_litert
# 91, test_report 50, test_main_job 46, test_seg_train 60, test_latency_cli 46); within a file, order is kept.
LONGEST_FIRST = ("test_search.py", "test_export.py", "test_task_search.py", "test_latency_litert.py",
                 "test_tflite_import.py", "test_seg_train.py", "test_report.py", "test_main_job.py",
                 "test_latency_cli.py")


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable
