"""Inputs of a trace: sentences and graphs, matrices typed on the command line or read from files.

Every number read here is checked to be finite: a NaN or an infinity in the
inputs is an error naming the argument, never a NaN in the tables or the JSON.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import networkx as nx
import torch
from torch import Tensor

from ..convert import coalesce, from_networkx
from ..structure import check_edge_index

__all__ = ["DEFAULT_SENTENCE", "NAMED_GRAPHS", "SIZED_GRAPHS", "named_graph", "parse_matrix"]

DEFAULT_SENTENCE = "我 爱 你"

NAMED_GRAPHS = {
    # name: (builder taking the --nodes count, uses the count)
    "karate": (lambda n: nx.karate_club_graph(), False),
    "florentine": (lambda n: nx.florentine_families_graph(), False),
    "petersen": (lambda n: nx.petersen_graph(), False),
    "house": (lambda n: nx.house_graph(), False),
    "kite": (lambda n: nx.krackhardt_kite_graph(), False),
    "path": (nx.path_graph, True),
    "cycle": (nx.cycle_graph, True),
    "star": (lambda n: nx.star_graph(n - 1), True),  # centre + n - 1 leaves
    "wheel": (nx.wheel_graph, True),
    "complete": (nx.complete_graph, True),
}
SIZED_GRAPHS = sorted(name for name, (_, sized) in NAMED_GRAPHS.items() if sized)
DEFAULT_NODES = 5  # size of the sized graphs when --nodes is not given


def named_graph(name: str, nodes: int | None = None) -> nx.Graph:
    """The small networkx graph called ``name``; ``nodes`` sets the size of the sized ones (path, cycle, ...).

    A size for a graph whose size is fixed (``karate``, ``petersen``, ...) is an
    error rather than silently ignored.
    """
    if name not in NAMED_GRAPHS:
        raise ValueError(f"unknown graph {name!r}; choose one of {sorted(NAMED_GRAPHS)}")
    build, sized = NAMED_GRAPHS[name]
    if nodes is not None and not sized:
        fixed = build(0).number_of_nodes()
        raise ValueError(
            f"--nodes sets the size of {', '.join(SIZED_GRAPHS)}; the {name!r} graph has a fixed size "
            f"({fixed} nodes): leave --nodes out"
        )
    if nodes is not None and (not isinstance(nodes, int) or nodes < 1):
        raise ValueError(f"--nodes must be an int >= 1, got {nodes!r}")
    return build(DEFAULT_NODES if nodes is None else nodes)


def check_finite(t: Tensor, name: str) -> Tensor:
    """``t`` unchanged, or a ValueError naming ``name`` and the first entry that is NaN or infinite."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name}: entry {list(where)} is {float(t[where])!r}, not a finite number; give finite numbers"
        )
    return t


def parse_matrix(text: str, name: str = "matrix") -> Tensor:
    """A matrix written as rows separated by ``;`` and entries by ``,`` (``"1,0;0,1"``), float64.

    A single row ``"1,2,3"`` is returned as ``[1, 3]``. Entries must be finite
    numbers (``nan`` or ``inf`` is a ValueError naming ``name``).

    Example::

        >>> parse_matrix("1,0;0,2").tolist()
        [[1.0, 0.0], [0.0, 2.0]]
    """
    rows = [r for r in str(text).replace("\n", ";").split(";") if r.strip()]
    if not rows:
        raise ValueError(f"{name} is empty; write rows separated by ';' and entries by ',' (e.g. \"1,0;0,1\")")
    try:
        data = [[float(v) for v in r.replace(" ", ",").split(",") if v.strip()] for r in rows]
    except ValueError as err:
        raise ValueError(
            f"{name}: could not read {text!r} as numbers ({err}); write rows separated by ';' and entries by ','"
        ) from None
    if len({len(r) for r in data}) != 1:
        raise ValueError(f"{name}: every row needs the same number of entries, got {[len(r) for r in data]}")
    for r, row in enumerate(data):
        for c, v in enumerate(row):
            if not math.isfinite(v):
                raise ValueError(
                    f"{name}: entry {v!r} (row {r + 1}, column {c + 1}) is not a finite number; give finite numbers"
                )
    return torch.tensor(data, dtype=torch.float64)


def read_csv_matrix(path: str | Path, name: str) -> Tensor:
    """The numbers of a CSV file (an optional header line and ``#`` comments skipped), float64."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}")
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line in csv.reader(fh):
            cells = [c.strip() for c in line if c.strip()]
            if not cells or cells[0].startswith("#"):
                continue
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                if rows:
                    raise ValueError(f"{name}: {str(path)!r} has a non-numeric row {line}") from None
                # a header line
    if not rows:
        raise ValueError(f"{name}: {str(path)!r} holds no numbers")
    return parse_matrix(";".join(",".join(repr(v) for v in r) for r in rows), name)


def read_edges(path: str | Path, directed: bool) -> tuple[list[str], Tensor]:
    """Node labels and edges j -> i of an edge-list file, one ``source target`` pair per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--edges: no such file {str(path)!r}")
    graph = nx.DiGraph() if directed else nx.Graph()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].replace(",", " ").split()
            if not line:
                continue
            if len(line) != 2:
                raise ValueError(f"--edges: line {number} of {str(path)!r} should be 'source target', got {line}")
            graph.add_edge(*line)
    if graph.number_of_nodes() == 0:
        raise ValueError(f"--edges: {str(path)!r} lists no edges")
    return graph_edges(graph)


def graph_edges(graph: nx.Graph) -> tuple[list[str], Tensor]:
    """Node labels and edges j -> i of a networkx graph (both directions when undirected)."""
    _, ei, _ = from_networkx(graph)
    ei, _ = coalesce(ei, num_nodes=graph.number_of_nodes(), by="source")  # each pair once, sorted
    return [str(n) for n in graph.nodes], ei


def nodes_of(tokens_or_graph, num_nodes: int | None) -> tuple[list[str], Tensor | None]:
    """Token labels and edges (None for a sentence: the complete graph / causal DAG)."""
    if isinstance(tokens_or_graph, str):
        tokens = tokens_or_graph.split()
        if not tokens:
            raise ValueError("the sentence is empty; give at least one token (tokens are separated by spaces)")
        return tokens, None
    if isinstance(tokens_or_graph, nx.Graph):
        if tokens_or_graph.number_of_nodes() == 0:
            raise ValueError("the graph has no nodes")
        return graph_edges(tokens_or_graph)
    if isinstance(tokens_or_graph, Tensor):
        if num_nodes is None:
            raise ValueError("with an edge_index tensor, pass num_nodes")
        check_edge_index(tokens_or_graph, num_nodes, num_nodes)
        return [str(i) for i in range(num_nodes)], tokens_or_graph.long()
    if isinstance(tokens_or_graph, (list, tuple)) and tokens_or_graph:
        return [str(t) for t in tokens_or_graph], None
    raise TypeError(
        "give a sentence (str), a list of tokens, a networkx graph or an edge_index tensor, "
        f"got {type(tokens_or_graph).__name__}"
    )


def rounded(t: Tensor, decimals: int = 2) -> Tensor:
    """``t`` rounded to ``decimals`` decimals, so that printed tables hold the exact numbers."""
    return torch.round(t * 10**decimals) / 10**decimals


def weight(spec, shape: tuple[int, int], name: str, generator: torch.Generator) -> Tensor:
    """A projection from ``"identity"``, ``"random"``, a ``"a,b;c,d"`` string or a tensor, ``[in, out]``."""
    if isinstance(spec, Tensor):
        w = spec.to(torch.float64)
    elif spec == "identity":
        if shape[0] != shape[1]:
            raise ValueError(
                f"{name}=identity needs a square matrix, but the shape is {shape} "
                "(d_model x heads*head_dim); give the matrix or 'random'"
            )
        return torch.eye(shape[0], dtype=torch.float64)
    elif spec == "random":
        bound = math.sqrt(6.0 / (shape[0] + shape[1]))  # Xavier uniform, as the layer's own init
        return rounded((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
    elif isinstance(spec, str):
        w = parse_matrix(spec, name)
    else:
        w = torch.as_tensor(spec, dtype=torch.float64)
    if w.dim() == 1:
        w = w.unsqueeze(0)
    if tuple(w.shape) != shape:
        raise ValueError(
            f"{name} must be a {shape[0]} x {shape[1]} matrix (d_model x heads*head_dim for W_q/W_k/W_v, "
            f"the transpose for W_o), got {tuple(w.shape)}"
        )
    return check_finite(w, name)


def input_values(values, tokens: list[str], d_model: int | None, generator: torch.Generator) -> Tensor:
    """The node inputs ``[N, d]``: given (string, list or tensor), else 1..N (d = 1) or seeded random."""
    N = len(tokens)  # noqa: N806
    if values is not None:
        vals = parse_matrix(values, "values") if isinstance(values, str) else torch.as_tensor(values).double()
        if vals.dim() == 1:
            vals = vals.unsqueeze(-1)
        if isinstance(values, str) and vals.size(0) == 1 and N > 1:
            vals = vals.t()  # "1,2,3": one value per token
        if vals.dim() != 2 or vals.size(0) != N:
            raise ValueError(
                f"values: got {vals.size(0)} rows for {N} tokens/nodes ({' '.join(tokens[:10])}"
                f"{' ...' if N > 10 else ''}); give one value (or row) per token"
            )
        if d_model is not None and vals.size(1) != d_model:
            raise ValueError(f"values have {vals.size(1)} columns but d_model is {d_model}")
        return check_finite(vals, "values")
    d = 1 if d_model is None else d_model
    if not isinstance(d, int) or d <= 0:
        raise ValueError(f"d_model must be a positive int, got {d!r}")
    if d == 1:
        return torch.arange(1, N + 1, dtype=torch.float64).unsqueeze(-1)
    return rounded(torch.randn(N, d, generator=generator, dtype=torch.float64))
