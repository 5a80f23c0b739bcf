import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GRAPHFORMER_DATA", REPO.parent / "shared" / "data"))


def require_data(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it when the ``CI`` environment variable is set.

    A data test must not pass silently in CI because the datasets were not mounted.
    """
    if not path.exists():
        message = f"dataset not found at {path} (set GRAPHFORMER_DATA to the folder of shared/data)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must provide it", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    """The read-only folder of real datasets (``../shared/data``); skips when absent, fails when ``CI`` is set."""
    return require_data(DATA)


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test on one CPU thread, then restore the setting.

    The models in the tests are tiny: on a few busy cores one thread is far faster than contended OpenMP threads.
    Results do not depend on it (the CLIs' ``--threads`` flags set it themselves; this restores it afterwards).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
