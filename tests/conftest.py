import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GRAPHFORMER_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The read-only folder of real datasets (``../shared/data``); skips when absent."""
    if not DATA.is_dir():
        if os.environ.get("CI"):  # CI must run these tests, never skip them
            pytest.fail(f"shared data folder not found at {DATA} (set GRAPHFORMER_DATA)")
        pytest.skip(f"shared data folder not found at {DATA} (set GRAPHFORMER_DATA)")
    return DATA


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
