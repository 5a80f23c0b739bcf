"""Graph datasets: Planetoid citation graphs, Zachary's karate club, and a
synthetic graph-classification set whose only signal is structure.

Graphs are PyG :class:`~torch_geometric.data.Data` records. Many small graphs
are batched the PyG way (:func:`collate`): node rows concatenated, edge ids
offset, a ``batch`` vector giving each node's graph.

Legend: N nodes, E edges, B graphs in a batch, N_max nodes of the largest
graph, F features, k encoding width.
"""

from __future__ import annotations

import copy
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = [
    "PLANETOID",
    "STRUCTURE_CLASSES",
    "GraphBatch",
    "NODE_ENCODINGS",
    "add_encodings",
    "collate",
    "karate_club",
    "load_planetoid",
    "node_encoding",
    "normalize_features",
    "parse_encoding",
    "planetoid_raw_files",
    "split_indices",
    "synthetic_structures",
]

#: lower-case name -> the folder name PyG's Planetoid uses under ``root``
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_RAW_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


def planetoid_raw_files(root: str | os.PathLike, name: str) -> list[Path]:
    """The eight files PyG's ``Planetoid(root, name)`` reads: ``<root>/<Name>/raw/ind.<name>.*``."""
    key = name.lower()
    if key not in PLANETOID:
        raise ValueError(f"unknown Planetoid dataset {name!r}; choose one of {sorted(PLANETOID.values())}")
    raw = Path(root) / PLANETOID[key] / "raw"
    return [raw / f"ind.{key}.{part}" for part in _RAW_PARTS]


def normalize_features(x: Tensor) -> Tensor:
    """Scale each row to sum 1 (rows of zeros stay zero), as Kipf & Welling and PyG's ``NormalizeFeatures``."""
    total = x.sum(-1, keepdim=True)
    return x / total.masked_fill(total == 0, 1.0)


def load_planetoid(root: str | os.PathLike, name: str, normalize: bool = True) -> Data:
    """Cora, CiteSeer or PubMed with the public split (20 labels per class, 500 validation, 1000 test).

    Reads the raw files already under ``<root>/<Name>/raw/`` and never
    downloads: missing files raise ``FileNotFoundError`` naming them. Through
    PyG's ``Planetoid``, which caches ``<root>/<Name>/processed/``; when that
    folder cannot be written (a read-only copy), the raw files are parsed
    directly with the same reader and nothing is cached.

    Returns:
        ``Data`` with ``x`` ``[N, F]`` (rows scaled to sum 1 when ``normalize``),
        ``edge_index`` ``[2, E]``, ``y`` ``[N]``, ``train_mask``/``val_mask``/``test_mask`` ``[N]``.
    """
    files = planetoid_raw_files(root, name)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{PLANETOID[name.lower()]} raw files not found under {files[0].parent} (nothing is downloaded): "
            f"missing {', '.join(f.name for f in missing)}. Copy the 8 files ind.{name.lower()}."
            f"{{{','.join(_RAW_PARTS)}}} there, e.g. from the planetoid/ folder of the benchmark data."
        )
    folder = files[0].parent.parent
    if _writable(folder / "processed" if (folder / "processed").is_dir() else folder):
        from torch_geometric.datasets import Planetoid

        data = Planetoid(str(root), PLANETOID[name.lower()])[0]
    else:
        from torch_geometric.io import read_planetoid_data

        data = read_planetoid_data(str(files[0].parent), PLANETOID[name.lower()])
    if normalize:
        data.x = normalize_features(data.x)
    return data


def _writable(path: Path) -> bool:
    """Writable by us and not marked read-only (a superuser passes ``os.access`` on read-only folders)."""
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def karate_club() -> Data:
    """Zachary's karate club (34 members, 78 friendships) with its two-club split.

    Labels are the club each member joined after the split (networkx's
    ``"club"`` attribute): 0 = Mr. Hi (node 0), 1 = Officer (node 33).
    Features are one-hot node ids (``x`` = identity, ``[34, 34]``).

    Split (fixed, documented): train = the two leaders, nodes 0 and 33 (one
    label per class); of the other 32 members in id order, every fourth
    (positions 0, 4, 8, ...) is validation (8 nodes) and the rest test (24 nodes).
    """
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    y = torch.tensor([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)])
    edges = torch.tensor(list(g.edges), dtype=torch.long).t()
    edge_index = torch.cat([edges, edges.flip(0)], dim=1)
    train = torch.zeros(n, dtype=torch.bool)
    train[[0, n - 1]] = True
    rest = torch.arange(1, n - 1)
    val = torch.zeros(n, dtype=torch.bool)
    val[rest[0::4]] = True
    test = ~(train | val)
    return Data(x=torch.eye(n), edge_index=edge_index, y=y, train_mask=train, val_mask=val, test_mask=test)


# --------------------------------------------------------------- synthetic graphs
def _cycle(n, rng):
    return nx.cycle_graph(n)


def _path(n, rng):
    return nx.path_graph(n)


def _tree(n, rng):
    # a uniformly random labelled tree from a random Prufer sequence
    return nx.from_prufer_sequence(rng.integers(0, n, size=n - 2).tolist())


def _ladder(n, rng):
    return nx.ladder_graph(max(n // 2, 2))


def _grid(n, rng):
    rows = int(rng.integers(3, max(int(np.sqrt(n)), 3) + 1))
    return nx.grid_2d_graph(rows, max(n // rows, 3))


def _prism(n, rng):
    return nx.circular_ladder_graph(max(n // 2, 3))


def _regular(n, rng):
    return nx.random_regular_graph(3, n + (n % 2), seed=int(rng.integers(2**31)))


def _barabasi(n, rng):
    return nx.barabasi_albert_graph(n, 2, seed=int(rng.integers(2**31)))


#: class id -> (name, generator(n, rng)). Circular ladders and random 3-regular graphs of the same size have the
#: same degrees everywhere, so colour refinement (1-WL, hence message passing on constant features) cannot tell them
#: apart; cycles of length 4 (random-walk return probabilities, distances) can.
STRUCTURE_CLASSES = {
    0: ("cycle", _cycle),
    1: ("path", _path),
    2: ("tree", _tree),
    3: ("ladder", _ladder),
    4: ("grid", _grid),
    5: ("circular ladder", _prism),
    6: ("random 3-regular", _regular),
    7: ("Barabasi-Albert m=2", _barabasi),
}


def synthetic_structures(
    num_per_class: int = 150, min_nodes: int = 10, max_nodes: int = 40, seed: int = 0
) -> list[Data]:
    """A graph-classification set where structure is the only signal.

    ``num_per_class`` graphs of each class in :data:`STRUCTURE_CLASSES`, each
    with a size drawn uniformly from ``[min_nodes, max_nodes]`` (generators
    round to their own shapes: even sizes for ladders, rows x columns for
    grids) and node ids shuffled. Every node has the constant feature 1.
    The same ``seed`` gives the same graphs.

    Returns:
        a list of ``Data(x [n, 1], edge_index [2, E] (both directions), y [1], num_nodes=n)``,
        classes interleaved (graph ``i`` has class ``i % num_classes``).
    """
    if min_nodes < 6 or max_nodes < min_nodes:
        raise ValueError(f"need 6 <= min_nodes <= max_nodes, got {min_nodes} and {max_nodes}")
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1, got {num_per_class}")
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(num_per_class):
        for label, (_, make) in STRUCTURE_CLASSES.items():
            g = nx.convert_node_labels_to_integers(make(int(rng.integers(min_nodes, max_nodes + 1)), rng))
            n = g.number_of_nodes()
            order = rng.permutation(n)
            edges = np.array([(order[u], order[v]) for u, v in g.edges], dtype=np.int64).reshape(-1, 2).T
            edge_index = torch.from_numpy(np.concatenate([edges, edges[::-1]], axis=1).copy())
            graphs.append(Data(x=torch.ones(n, 1), edge_index=edge_index, y=torch.tensor([label]), num_nodes=n))
    return graphs


def split_indices(
    num_items: int, fractions: tuple[float, float] = (0.6, 0.2), seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Shuffle ``range(num_items)`` and cut it into train / validation / test (the rest)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(num_items, generator=gen)
    n_train, n_val = int(fractions[0] * num_items), int(fractions[1] * num_items)
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


#: node encodings (``pe`` ``[n, dim]``) that :func:`add_encodings` computes; ``"shortest-path"`` is an edge bias
NODE_ENCODINGS = ("laplacian", "random-walk", "degree")


def parse_encoding(kind: str) -> tuple[str | None, bool]:
    """Split an encoding name into (node encoding or None, shortest-path bias or not).

    Accepted: ``"none"``, one of :data:`NODE_ENCODINGS`, ``"shortest-path"``,
    or a node encoding and the bias joined by ``+`` (``"degree+shortest-path"``,
    Graphormer's pair).
    """
    if not isinstance(kind, str):
        raise TypeError(f"encoding must be a string, got {type(kind).__name__}")
    parts = [p for p in kind.split("+") if p]
    node = [p for p in parts if p in NODE_ENCODINGS]
    spd = "shortest-path" in parts
    unknown = [p for p in parts if p not in NODE_ENCODINGS and p not in ("shortest-path", "none")]
    if unknown or not parts or len(node) > 1 or len(parts) > 2 or ("none" in parts and len(parts) > 1):
        raise ValueError(
            f"unknown encoding {kind!r}; use 'none', one of {NODE_ENCODINGS}, 'shortest-path', "
            "or a node encoding joined to it with '+' (e.g. 'degree+shortest-path')"
        )
    return (node[0] if node else None), spd


def node_encoding(edge_index: Tensor, num_nodes: int, kind: str, dim: int) -> Tensor:
    """A structural node encoding ``[num_nodes, dim]``.

    ``"laplacian"``: eigenvectors of the normalised Laplacian (zero-padded for
    small graphs, :func:`~graphformer.encodings.laplacian_pe`); ``"random-walk"``:
    return probabilities after 1..dim steps (:func:`~graphformer.encodings.random_walk_pe`);
    ``"degree"``: one-hot degree, degrees above ``dim - 1`` share the last column
    (:func:`~graphformer.encodings.degree_encoding`).
    """
    from .. import encodings

    if kind == "laplacian":
        return encodings.laplacian_pe(edge_index, num_nodes, dim)
    if kind == "random-walk":
        return encodings.random_walk_pe(edge_index, num_nodes, dim)
    if kind == "degree":
        return encodings.degree_encoding(edge_index, num_nodes, dim - 1)
    raise ValueError(f"unknown node encoding {kind!r}; choose one of {NODE_ENCODINGS}")


def add_encodings(graphs: list[Data], kind: str, dim: int = 8, max_distance: int = 8) -> list[Data]:
    """Copies of ``graphs`` carrying the encodings named by ``kind`` (and no other); the inputs are left unchanged.

    ``kind`` as :func:`parse_encoding`: a node encoding becomes ``pe``
    ``[n, dim]`` (:func:`node_encoding`); ``"shortest-path"`` becomes
    ``distance`` ``[n, n]``, hops clipped to ``max_distance`` and
    ``max_distance + 1`` where unreachable
    (:func:`~graphformer.encodings.shortest_path_distances`).
    """
    from .. import encodings

    node, spd = parse_encoding(kind)
    out = []
    for g in graphs:
        g = copy.copy(g)  # shallow: the new attributes go to the copy only
        for attr in ("pe", "distance", "max_distance"):
            if attr in g:
                del g[attr]
        if node is not None:
            g.pe = node_encoding(g.edge_index, g.num_nodes, node, dim)
        if spd:
            g.distance = encodings.shortest_path_distances(g.edge_index, g.num_nodes, max_distance)
            g.max_distance = max_distance  # collate pads with the sentinel max_distance + 1
        out.append(g)
    return out


@dataclass
class GraphBatch:
    """Many graphs as one disjoint graph (PyG-style).

    Attributes:
        x: ``[N, F]`` node rows of every graph, graph after graph.
        edge_index: ``[2, E]`` edges with node ids offset by the graph's first row.
        batch: ``[N]`` graph id of each node.
        y: ``[B]`` graph labels.
        pe: ``[N, k]`` node encodings, or None.
        distance: ``[B, N_max, N_max]`` hop distances, or None; the padding entries hold the
            unreachable sentinel ``max_distance + 1``
            (:func:`~graphformer.encodings.pack_distances`; padded nodes are masked out of
            attention, so their value never reaches a weight).
    """

    x: Tensor
    edge_index: Tensor
    batch: Tensor
    y: Tensor
    pe: Tensor | None = None
    distance: Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return self.y.numel()


def collate(graphs: list[Data], *, unreachable: int | None = None) -> GraphBatch:
    """Batch graphs: concatenate nodes, offset edges, record each node's graph id, pad distance matrices.

    Distance matrices are packed by :func:`~graphformer.encodings.pack_distances`,
    padding = ``unreachable``; by default ``max_distance + 1`` of the graphs'
    ``max_distance`` (recorded by :func:`add_encodings`), else the largest
    entry of any matrix.
    """
    if not graphs:
        raise ValueError("collate needs at least one graph")
    sizes = [g.num_nodes for g in graphs]
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    x = torch.cat([g.x for g in graphs])
    edge_index = torch.cat([g.edge_index + off for g, off in zip(graphs, offsets)], dim=1)
    batch = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(sizes))
    y = torch.cat([g.y.view(-1) for g in graphs])
    pe = torch.cat([g.pe for g in graphs]) if getattr(graphs[0], "pe", None) is not None else None
    distance = None
    if getattr(graphs[0], "distance", None) is not None:
        from ..encodings import pack_distances

        if unreachable is None:
            recorded = getattr(graphs[0], "max_distance", None)
            unreachable = (
                int(recorded) + 1
                if recorded is not None
                else max((int(g.distance.max()) for g in graphs if g.distance.numel()), default=0)
            )
        distance = pack_distances([g.distance for g in graphs], unreachable)
    return GraphBatch(x, edge_index, batch, y, pe, distance)
