"""The heterophilous node-classification graphs of Platonov et al. (ICLR 2023), through PyG.

``minesweeper``, ``tolokers``, ``chameleon_filtered`` and ``squirrel_filtered``
(also roman_empire, amazon_ratings and questions when their files are
there): one ``.npz`` per graph with ``node_features`` ``[N, F]``,
``node_labels`` ``[N]``, ``edges`` ``[E, 2]`` stored once per undirected edge,
and ten fixed 50/25/25 splits (``train_masks`` ... ``[10, N]``).

Read by PyG's ``HeterophilousGraphDataset`` (which makes the edges
bidirectional and writes ``<root>/<name>/processed/``); nothing is ever
downloaded. A read-only source -- ``<root>/<name>.npz`` as in the
benchmark data folder, or a ``<root>/<name>/raw/`` that cannot be written --
is first copied into a writable cache (``$GRAPHFORMER_CACHE`` or
``~/.cache/graphformer``, else a temporary folder); the source is never
written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from torch_geometric.data import Data

__all__ = ["BINARY", "HETEROPHILOUS", "load_heterophilous"]

HETEROPHILOUS = (
    "minesweeper",
    "tolokers",
    "chameleon_filtered",
    "squirrel_filtered",
    "roman_empire",
    "amazon_ratings",
    "questions",
)
BINARY = ("minesweeper", "tolokers", "questions")  # scored by ROC AUC in the paper; the others by accuracy
SOURCE = "https://github.com/yandex-research/heterophilous-graphs/tree/main/data"


def _writable(folder: Path) -> bool:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK)


def _cache_root() -> Path:
    for candidate in (os.environ.get("GRAPHFORMER_CACHE"), Path.home() / ".cache" / "graphformer"):
        if candidate and _writable(Path(candidate)):
            return Path(candidate) / "heterophilous"
    return Path(tempfile.mkdtemp(prefix="graphformer-heterophilous-"))


def _dataset_class():
    from torch_geometric.data import InMemoryDataset
    from torch_geometric.datasets import HeterophilousGraphDataset

    class _Local(HeterophilousGraphDataset):
        """PyG's reader for any of the names above, from local files only."""

        def __init__(self, root: str, name: str):
            self.name = name
            InMemoryDataset.__init__(self, root)
            self.load(self.processed_paths[0])

        def download(self) -> None:  # pragma: no cover - the raw file is checked first
            raise FileNotFoundError(f"{self.raw_paths[0]} is missing and nothing is downloaded")

    return _Local


def load_heterophilous(root: str | os.PathLike, name: str) -> Data:
    """One of :data:`HETEROPHILOUS` as a PyG ``Data`` (bidirectional edges, masks ``[N, 10]``).

    Looks for ``<root>/<name>/raw/<name>.npz`` (PyG's layout) or
    ``<root>/<name>.npz`` (the benchmark data folder's).

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: neither file exists (nothing is downloaded).
    """
    key = name.lower().replace("-", "_")
    if key not in HETEROPHILOUS:
        raise ValueError(f"unknown heterophilous graph {name!r}; choose one of {', '.join(HETEROPHILOUS)}")
    root = Path(root)
    nested, flat = root / key / "raw" / f"{key}.npz", root / f"{key}.npz"
    if nested.is_file():
        source, pyg_root = nested, root
    elif flat.is_file():
        source, pyg_root = flat, None
    else:
        raise FileNotFoundError(
            f"{key}.npz not found as {nested} or {flat} (nothing is downloaded); copy it from "
            f"{SOURCE} or the heterophilous/ folder of the benchmark data, and pass that folder "
            "as --root"
        )
    if pyg_root is None or not _writable(pyg_root / key):
        pyg_root = _cache_root()
        raw = pyg_root / key / "raw" / f"{key}.npz"
        if not raw.is_file() or raw.stat().st_size != source.stat().st_size:
            raw.parent.mkdir(parents=True, exist_ok=True)
            tmp = raw.with_name(f".{raw.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, raw)
            shutil.rmtree(pyg_root / key / "processed", ignore_errors=True)
    return _dataset_class()(str(pyg_root), key)[0]
