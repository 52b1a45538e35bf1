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
