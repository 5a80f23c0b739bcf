import contextlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GRAPHFORMER_DATA", REPO.parent / "shared" / "data"))

# Property tests: fresh random examples locally; in CI the same examples every run, so a red build reproduces.
# Registered before the test modules are imported, so their own settings(max_examples=...) inherit it.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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


@contextlib.contextmanager
def restored_scores():
    """Undo every ``register_score`` made inside the block (the registry of score names is global)."""
    from graphformer import scores

    saved = dict(scores._REGISTRY)
    try:
        yield
    finally:
        scores._REGISTRY.clear()
        scores._REGISTRY.update(saved)


@pytest.fixture(autouse=True)
def _no_leaked_scores():
    """A score a test registers (the README's and the tutorial's "cosine") is gone after it.

    Scores registered when a test module is imported stay: they exist before the first test runs.
    """
    with restored_scores():
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def load_script(name: str, folder: str = "examples"):
    """Import ``<folder>/<name>.py`` of the repository as a module (registered in ``sys.modules`` for dataclasses)."""
    path = REPO / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------ forecasting models
FORECAST_DIMS = (4, 24, 12, 5, 4)  # B windows, L look-back, H horizon, V variables, F time features


def forecast_inputs(seed: int = 0):
    """x ``[B, L, V]``, x_mark ``[B, L, F]``, y_mark ``[B, H, F]`` of :data:`FORECAST_DIMS`."""
    B, L, H, V, F = FORECAST_DIMS  # noqa: N806
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, V, generator=g) * 3 + 2
    return x, torch.rand(B, L, F, generator=g) - 0.5, torch.rand(B, H, F, generator=g) - 0.5


def path_graph():
    """The path 0 -> 1 -> ... -> 4 over five variables, with self-loops."""
    # 0 -> 1 -> 2 -> 3 -> 4 plus self-loops
    src = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4])
    dst = torch.tensor([1, 2, 3, 4, 0, 1, 2, 3, 4])
    return torch.stack([src, dst])
