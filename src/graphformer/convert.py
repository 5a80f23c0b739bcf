"""Graph formats to and from ``edge_index``: edge lists, adjacency matrices, networkx, scipy, PyG.

graphformer's graph is an ``edge_index`` ``[2, E]`` (row 0 = source j, row 1
= target i, a message flows j -> i, as PyG). This module is the one place
that turns the other formats into it and back:

* any of the below -> ``edge_index``: :func:`to_edge_index`;
* dense adjacency ``A[j, i]`` (tensor, numpy): :func:`from_dense` / :func:`to_dense`;
* scipy sparse ``A[j, i]``: :func:`from_scipy` / :func:`to_scipy`, :func:`binary_adjacency`;
* PyG's transposed ``adj_t[i, j]`` (torch.sparse, ``SparseTensor``, ``EdgeIndex``):
  :func:`from_sparse_adjacency`;
* networkx: :func:`from_networkx` / :func:`to_networkx`;
* PyG ``Data`` / ``Batch``: :func:`from_data` / :func:`to_data`.

An adjacency matrix holds the edge j -> i at ``A[j, i]`` (row = source, as
``torch_geometric.utils.dense_to_sparse`` and ``from_scipy_sparse_matrix``);
only PyG's ``adj_t`` for ``conv(x, adj_t)`` is the transpose (row = target).
:func:`coalesce` sorts edges and merges duplicates, :func:`to_undirected`
adds the reverse of every edge.

It lives apart from :mod:`graphformer.structure` (the torch-only layouts
the attention kernels read on every call) because it reaches for scipy,
networkx and PyG, each imported only when used; :mod:`graphformer.interop`
re-exports its older names.

Legend: N nodes, E edges, F features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "EdgeList",
    "binary_adjacency",
    "coalesce",
    "from_data",
    "from_dense",
    "from_networkx",
    "from_scipy",
    "from_sparse_adjacency",
    "to_data",
    "to_dense",
    "to_edge_index",
    "to_networkx",
    "to_scipy",
    "to_undirected",
]


class EdgeList(NamedTuple):
    """What :func:`to_edge_index` returns: ``edge_index [2, E]`` long, ``edge_weight [E]`` or None, ``num_nodes``."""

    edge_index: Tensor
    edge_weight: Tensor | None
    num_nodes: int


def to_edge_index(graph, num_nodes: int | None = None, *, weight: str | None = None) -> EdgeList:
    """``edge_index``, edge weights and node count of a graph in any supported format.

    Accepted ``graph``:

    * an integer tensor ``[2, E]``: already an ``edge_index`` (checked, returned as long);
    * a list of ``(source, target)`` pairs (an edge list);
    * a floating / bool tensor or a numpy array ``[N, N]``: a dense adjacency ``A[j, i]``
      (:func:`from_dense`, weights = the nonzero entries);
    * a scipy sparse matrix ``A[j, i]`` (:func:`from_scipy`, stored entries);
    * a ``torch.sparse`` tensor ``A[j, i]`` (same convention as dense; PyG's transposed
      ``adj_t`` goes through :func:`from_sparse_adjacency` instead);
    * a networkx graph (:func:`from_networkx`; ``weight`` names the edge attribute
      read as weights, None for none);
    * a PyG ``Data``: its ``edge_index`` and 1-D ``edge_weight`` / ``edge_attr``.

    ``num_nodes`` defaults to the matrix size, the graph's node count, or the
    largest node id + 1.

    Raises:
        TypeError: an unsupported type, with the list of accepted ones.
        ValueError: a malformed ``edge_index``, a non-square matrix, or ``num_nodes`` too small.

    Example:
        >>> import networkx as nx, torch
        >>> to_edge_index(torch.tensor([[0.0, 2.0], [0.0, 0.0]]))  # A[0, 1] = 2: the edge 0 -> 1
        EdgeList(edge_index=tensor([[0],
                [1]]), edge_weight=tensor([2.]), num_nodes=2)
        >>> to_edge_index(nx.path_graph(3)).edge_index.tolist()
        [[0, 1, 1, 2], [1, 0, 2, 1]]
    """
    import numpy as np
    import scipy.sparse as sp

    w: Tensor | None = None
    size: int | None = None
    if _is_data(graph):
        ei = _check_index(graph.edge_index)
        w = _data_edge_attr(graph)
        w = w if w is not None and w.dim() == 1 else None
        size = graph.num_nodes
    elif _is_networkx(graph):
        _, ei, w = from_networkx(graph, edge_attr=weight)
        size = graph.number_of_nodes()
    elif sp.issparse(graph):
        ei, w = from_scipy(graph)
        size = _square(graph.shape)
    elif isinstance(graph, Tensor) and graph.layout != torch.strided:
        ei, w = from_sparse_adjacency(graph)
        ei = ei.flip(0)  # from_sparse_adjacency reads adj_t (row = target); here row = source
        size = _square(tuple(graph.shape[:2]))
    elif (
        isinstance(graph, Tensor)
        and not graph.is_floating_point()
        and graph.dtype != torch.bool
        and graph.dim() == 2
        and graph.size(0) == 2
    ):
        ei = _check_index(graph)
    elif isinstance(graph, (Tensor, np.ndarray)):
        ei, w = from_dense(graph)
        size = int(graph.shape[0])
    elif isinstance(graph, (list, tuple)):
        pairs = torch.as_tensor(graph, dtype=torch.long).reshape(-1, 2) if len(graph) else torch.zeros(0, 2)
        ei = _check_index(pairs.long().t().contiguous())
    else:
        raise TypeError(
            "graph must be an edge_index [2, E], a list of (source, target) pairs, a dense or sparse "
            "adjacency matrix (torch, numpy, scipy), a networkx graph or a PyG Data object, got "
            f"{type(graph).__name__}"
        )
    n = _num_nodes(ei, size if num_nodes is None else num_nodes, None)
    return EdgeList(ei, w, n)


def _square(shape) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"an adjacency matrix must be square [N, N], got shape {tuple(shape)}")
    return int(shape[0])


def _is_networkx(obj) -> bool:
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - networkx is a dependency
        return False
    return isinstance(obj, nx.Graph)


def from_dense(adj) -> tuple[Tensor, Tensor]:
    """``edge_index`` and weights of a dense adjacency ``[N_src, N_dst]``: an edge j -> i wherever ``A[j, i] != 0``.

    Edges come in row-major order (by source, then target), the order of
    ``torch_geometric.utils.dense_to_sparse``; :func:`coalesce` re-sorts.
    Takes a tensor (float, int or bool) or anything numpy reads; bool
    weights become 1.0.

    Returns:
        ``(edge_index [2, E] long, weight [E])`` (float64 for numpy input,
        otherwise the tensor's floating dtype or torch's default).
    """
    if not isinstance(adj, Tensor):
        import numpy as np

        adj = torch.from_numpy(np.asarray(adj, dtype=np.float64))
    if adj.dim() != 2:
        raise ValueError(f"adj must be a 2-D matrix [N_src, N_dst], got shape {tuple(adj.shape)}")
    src, dst = adj.nonzero(as_tuple=True)
    w = adj[src, dst]
    if not w.is_floating_point():
        w = w.to(torch.get_default_dtype())
    return torch.stack([src, dst]), w


def to_dense(
    edge_index: Tensor,
    num_nodes: int | tuple[int, int] | None = None,
    edge_weight: Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The dense adjacency ``A`` with ``A[j, i]`` = the weight of edge j -> i (1 without weights).

    Parallel edges are summed (as ``torch_geometric.utils.to_dense_adj``).
    ``num_nodes``: N for ``[N, N]`` or ``(num_src, num_dst)``; default the
    largest node id + 1.
    """
    edge_index = _check_index(edge_index)
    if isinstance(num_nodes, (tuple, list)):
        shape = (int(num_nodes[0]), int(num_nodes[1]))
    else:
        n = _num_nodes(edge_index, num_nodes, None)
        shape = (n, n)
    if edge_index.numel() and (int(edge_index[0].max()) >= shape[0] or int(edge_index[1].max()) >= shape[1]):
        raise ValueError(f"edge_index refers to node ids beyond the matrix shape {shape}; raise num_nodes")
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), dtype=dtype or torch.get_default_dtype(), device=edge_index.device)
    elif edge_weight.shape != (edge_index.size(1),):
        raise ValueError(f"edge_weight must have shape [E] = [{edge_index.size(1)}], got {tuple(edge_weight.shape)}")
    out = torch.zeros(shape, dtype=dtype or edge_weight.dtype, device=edge_index.device)
    return out.index_put_((edge_index[0], edge_index[1]), edge_weight.to(out.dtype), accumulate=True)


def coalesce(
    edge_index: Tensor,
    edge_weight: Tensor | None = None,
    num_nodes: int | None = None,
    *,
    by: str = "target",
    reduce: str = "sum",
) -> tuple[Tensor, Tensor | None]:
    """Edges sorted and each (source, target) pair kept once.

    Args:
        by: ``"target"`` sorts by (target, source), the CSR order of
            :class:`~graphformer.SparseGraph`; ``"source"`` by (source, target),
            PyG's ``coalesce`` order.
        reduce: how the weights of duplicates merge: ``"sum"`` (as PyG and
            scipy), ``"max"`` or ``"first"``.

    Returns:
        ``(edge_index, edge_weight)``, the weight None when none was given.
    """
    if by not in ("target", "source"):
        raise ValueError(f"by must be 'target' or 'source', got {by!r}")
    if reduce not in ("sum", "max", "first"):
        raise ValueError(f"reduce must be 'sum', 'max' or 'first', got {reduce!r}")
    edge_index = _check_index(edge_index)
    n = max(_num_nodes(edge_index, num_nodes, None), 1)
    major, minor = (edge_index[1], edge_index[0]) if by == "target" else (edge_index[0], edge_index[1])
    key = major * n + minor
    unique, inverse = torch.unique(key, sorted=True, return_inverse=True)
    out = torch.stack([unique % n, unique // n]) if by == "target" else torch.stack([unique // n, unique % n])
    if edge_weight is None:
        return out, None
    if edge_weight.size(0) != edge_index.size(1):
        raise ValueError(f"edge_weight has {edge_weight.size(0)} rows but edge_index has {edge_index.size(1)} edges")
    shape = (unique.numel(), *edge_weight.shape[1:])
    if reduce == "first":
        position = torch.arange(inverse.numel(), device=inverse.device)
        first = torch.full((unique.numel(),), inverse.numel(), dtype=torch.long, device=inverse.device)
        first = first.scatter_reduce(0, inverse, position, "amin")  # the first occurrence of each pair
        return out, edge_weight[first]
    index = inverse.view(-1, *([1] * (edge_weight.dim() - 1))).expand_as(edge_weight)
    merged = edge_weight.new_zeros(shape).scatter_reduce(
        0, index, edge_weight, "sum" if reduce == "sum" else "amax", include_self=False
    )
    return out, merged


def to_undirected(
    edge_index: Tensor, edge_weight: Tensor | None = None, num_nodes: int | None = None, *, self_loops: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Every edge in both directions, coalesced by (source, target) (as ``torch_geometric.utils.to_undirected``).

    A pair given both ways, or twice, keeps one edge; its weights are summed
    as in PyG. A self-loop is its own reverse and counts once (PyG counts it
    twice, doubling its weight). ``self_loops=False`` drops the loops.
    """
    edge_index = _check_index(edge_index)
    if not self_loops:
        keep = edge_index[0] != edge_index[1]
        edge_index = edge_index[:, keep]
        edge_weight = None if edge_weight is None else edge_weight[keep]
    both = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    weight = None if edge_weight is None else torch.cat([edge_weight, edge_weight])
    loops = both[0] == both[1]
    if bool(loops.any()):  # a loop reversed is itself: count it once
        keep = torch.ones_like(loops)
        keep[edge_index.size(1) :] = ~loops[edge_index.size(1) :]
        both = both[:, keep]
        weight = None if weight is None else weight[keep]
    return coalesce(both, weight, num_nodes, by="source")


def binary_adjacency(edge_index: Tensor, num_nodes: int, undirected: bool = False):
    """0/1 adjacency ``A[j, i] = 1`` for every edge j -> i: a ``scipy.sparse.csr_matrix``, float64.

    Duplicate edges count once. With ``undirected=True`` the edges are
    symmetrised and self-loops dropped (the graph behind a Laplacian).
    """
    import numpy as np
    import scipy.sparse as sp

    edge_index = _check_index(edge_index)
    src, dst = edge_index.detach().cpu().numpy()
    if undirected:
        keep = src != dst
        src, dst = np.concatenate([src[keep], dst[keep]]), np.concatenate([dst[keep], src[keep]])
    adj = sp.coo_matrix((np.ones(src.size), (src, dst)), shape=(num_nodes, num_nodes)).tocsr()
    adj.data[:] = 1.0  # duplicate edges count once
    return adj


def to_data(edge_index: Tensor, x: Tensor | None = None, edge_attr: Tensor | None = None, num_nodes: int | None = None):
    """A PyG ``Data`` holding ``edge_index``, ``x`` and ``edge_attr`` (the inverse of :func:`from_data`)."""
    from torch_geometric.data import Data

    edge_index = _check_index(edge_index)
    n = _num_nodes(edge_index, num_nodes, x)
    if edge_attr is not None and edge_attr.size(0) != edge_index.size(1):
        raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but edge_index has {edge_index.size(1)} edges")
    return Data(x=x, edge_index=edge_index, edge_attr=edge_attr, num_nodes=n)


def from_sparse_adjacency(adj_t) -> tuple[Tensor, Tensor | None]:
    """``edge_index`` ``[2, E]`` and values ``[E, ...]`` (or None) of PyG's transposed adjacency ``adj_t``.

    ``adj_t`` ``[num_dst, num_src]`` holds the edge j -> i at ``[i, j]`` (row =
    target), PyG's convention for ``conv(x, adj_t)``; so ``edge_index[0]`` is
    its column and ``edge_index[1]`` its row. Takes a ``torch.sparse`` COO
    (coalesced first: duplicates summed, as a sparse product sums them), CSR or
    CSC tensor, a PyG ``EdgeIndex`` (returned as a plain tensor, no values), or
    a ``torch_sparse.SparseTensor``.
    """
    if _is_sparse_tensor(adj_t):
        row, col, value = adj_t.coo()
        return torch.stack([col, row]), value
    if not isinstance(adj_t, Tensor):
        raise TypeError(
            f"adj_t must be a torch.sparse tensor, an EdgeIndex or a SparseTensor, got {type(adj_t).__name__}"
        )
    if adj_t.layout == torch.strided:
        if hasattr(adj_t, "as_tensor"):  # PyG's EdgeIndex: already [2, E]
            return adj_t.as_tensor(), None
        raise TypeError("adj_t must be a sparse tensor; a dense [2, E] tensor is an edge_index already")
    if adj_t.layout == torch.sparse_coo:
        adj_t = adj_t.coalesce()
        row, col = adj_t.indices()
    elif adj_t.layout == torch.sparse_csr:
        crow, col = adj_t.crow_indices(), adj_t.col_indices()
        row = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device), crow.diff())
    elif adj_t.layout == torch.sparse_csc:
        ccol, row = adj_t.ccol_indices(), adj_t.row_indices()
        col = torch.repeat_interleave(torch.arange(ccol.numel() - 1, device=ccol.device), ccol.diff())
    else:
        raise TypeError(f"adj_t layout {adj_t.layout} is not supported; use COO, CSR or CSC")
    return torch.stack([col.long(), row.long()]), adj_t.values()


def _is_sparse_tensor(obj) -> bool:
    """A ``torch_sparse.SparseTensor`` (False when torch_sparse is not installed)."""
    try:
        from torch_sparse import SparseTensor
    except ImportError:
        return False
    return isinstance(obj, SparseTensor)


def _names(attrs: str | Sequence[str] | None, what: str) -> list[str]:
    if attrs is None:
        return []
    if isinstance(attrs, str):
        return [attrs]
    if not all(isinstance(a, str) for a in attrs):
        raise TypeError(f"{what} must be an attribute name or a list of names, got {attrs!r}")
    return list(attrs)


def _column_block(values: list[Any], name: str, what: str) -> tuple[Tensor, bool]:
    """Stack per-item values (numbers or vectors) into ``[n, k]``; also say whether all were numbers."""
    dtype = torch.get_default_dtype()
    try:
        rows = [torch.as_tensor(v, dtype=dtype) for v in values]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{what} attribute {name!r} must hold numbers or vectors of numbers: {err}") from err
    widths = {r.numel() for r in rows}
    if len(widths) > 1:
        raise ValueError(f"{what} attribute {name!r} holds vectors of different lengths {sorted(widths)}")
    scalar = all(r.dim() == 0 for r in rows)
    if not rows:
        return torch.zeros(0, 1, dtype=dtype), True
    return torch.stack([r.reshape(-1) for r in rows]), scalar


def from_networkx(
    graph, node_attrs: str | Sequence[str] | None = None, edge_attr: str | Sequence[str] | None = None
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """Node features, ``edge_index`` and edge features of a networkx graph.

    Nodes are numbered in ``graph.nodes`` order. An undirected graph gives
    every edge in both directions (a self-loop once); a multigraph keeps its
    parallel edges.

    Args:
        graph: any networkx graph.
        node_attrs: a node attribute name, or several; their values (numbers or
            vectors) are concatenated into ``x`` ``[N, F]``. None: ``x`` is None.
        edge_attr: an edge attribute name, giving ``[E]`` for numbers (edge
            weights) or ``[E, F]`` for vectors; or a list of names,
            concatenated into ``[E, F]``. None: no edge features.

    Returns:
        ``(x, edge_index, edge_attr)``: ``[N, F]`` float or None, ``[2, E]``
        long, ``[E]`` / ``[E, F]`` float or None.
    """
    try:
        import networkx as nx
    except ImportError as err:  # pragma: no cover - networkx is a dependency
        raise ImportError("from_networkx needs networkx: pip install networkx") from err
    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx graph, got {type(graph).__name__}")
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}

    x = None
    node_names = _names(node_attrs, "node_attrs")
    if node_names:
        blocks = []
        for name in node_names:
            missing = [n for n in nodes if name not in graph.nodes[n]]
            if missing:
                raise ValueError(f"node {missing[0]!r} has no attribute {name!r} (node_attrs); give every node one")
            blocks.append(_column_block([graph.nodes[n][name] for n in nodes], name, "node")[0])
        x = torch.cat(blocks, dim=1)

    edge_names = _names(edge_attr, "edge_attr")
    src, dst, data = [], [], []
    for u, v, attrs in graph.edges(data=True):
        both = not graph.is_directed() and u != v
        for a, b in ((u, v), (v, u)) if both else ((u, v),):
            src.append(index[a])
            dst.append(index[b])
            data.append(attrs)
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)

    features = None
    if edge_names:
        blocks, scalar = [], False
        for name in edge_names:
            missing = [i for i, attrs in enumerate(data) if name not in attrs]
            if missing:
                i = missing[0]
                raise ValueError(
                    f"edge ({nodes[src[i]]!r}, {nodes[dst[i]]!r}) has no attribute {name!r} "
                    "(edge_attr); give every edge one"
                )
            block, scalar = _column_block([attrs[name] for attrs in data], name, "edge")
            blocks.append(block)
        features = torch.cat(blocks, dim=1)
        if isinstance(edge_attr, str) and scalar:
            features = features.squeeze(1)  # one number per edge: weights [E]
    return x, edge_index, features


def to_networkx(
    edge_index,
    num_nodes: int | None = None,
    *,
    x: Tensor | None = None,
    edge_attr: Tensor | None = None,
    node_attr_name: str = "x",
    edge_attr_name: str = "weight",
    to_undirected: bool = False,
):
    """A networkx graph with nodes ``0 .. N-1`` and the edges of ``edge_index``.

    Args:
        edge_index: ``[2, E]`` edges j -> i, or a PyG ``Data`` object (its
            ``x``, ``edge_attr`` / ``edge_weight`` and ``num_nodes`` are used
            unless given).
        num_nodes: N (default: largest node id + 1).
        x: node features ``[N, F]``, stored as lists under ``node_attr_name``.
        edge_attr: edge weights ``[E]`` (stored as floats) or features ``[E, F]``
            (stored as lists) under ``edge_attr_name``.
        to_undirected: return an ``nx.Graph`` (j -> i and i -> j become one edge)
            instead of an ``nx.DiGraph``.

    Parallel edges collapse into one (the last one's attribute is kept).
    """
    import networkx as nx

    if _is_data(edge_index):
        data = edge_index
        x = data.x if x is None else x
        edge_attr = _data_edge_attr(data) if edge_attr is None else edge_attr
        num_nodes = data.num_nodes if num_nodes is None else num_nodes
        edge_index = data.edge_index
    edge_index = _check_index(edge_index)
    num_nodes = _num_nodes(edge_index, num_nodes, x)
    graph = nx.Graph() if to_undirected else nx.DiGraph()
    if x is not None:
        if x.size(0) != num_nodes:
            raise ValueError(f"x has {x.size(0)} rows but num_nodes is {num_nodes}")
        graph.add_nodes_from((i, {node_attr_name: row}) for i, row in enumerate(x.detach().cpu().tolist()))
    else:
        graph.add_nodes_from(range(num_nodes))
    pairs = edge_index.t().cpu().tolist()
    if edge_attr is None:
        graph.add_edges_from(pairs)
    else:
        if edge_attr.size(0) != len(pairs):
            raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but edge_index has {len(pairs)} edges")
        values = edge_attr.detach().cpu().tolist()
        graph.add_edges_from((u, v, {edge_attr_name: value}) for (u, v), value in zip(pairs, values))
    return graph


def from_scipy(adj, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """``edge_index`` and edge weights of a sparse adjacency matrix.

    Every stored entry ``adj[j, i]`` becomes an edge j -> i (row = source,
    as PyG's ``from_scipy_sparse_matrix``) with weight ``adj[j, i]``; stored
    zeros are kept. A dense array is accepted and its nonzeros are used.

    Args:
        adj: a scipy sparse matrix or array (any format), or a dense array ``[N_src, N_dst]``.
        dtype: weight dtype (default: torch's default float dtype).

    Returns:
        ``(edge_index [2, E] long, edge_weight [E])``.
    """
    import numpy as np
    import scipy.sparse as sp

    if not sp.issparse(adj):
        if isinstance(adj, Tensor):
            adj = adj.detach().cpu().numpy()
        adj = np.asarray(adj)
        if adj.ndim != 2:
            raise ValueError(f"adj must be a 2-D matrix, got shape {adj.shape}")
        adj = sp.coo_array(adj)
    coo = adj.tocoo()
    edge_index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    weight = torch.from_numpy(np.asarray(coo.data)).to(dtype or torch.get_default_dtype())
    return edge_index, weight


def to_scipy(edge_index, num_nodes: int | tuple[int, int] | None = None, edge_weight: Tensor | None = None):
    """The sparse adjacency matrix of ``edge_index``, a ``scipy.sparse.coo_array``.

    Entry ``[j, i]`` holds the weight of edge j -> i (1 without weights);
    parallel edges stay separate entries (summed on ``.tocsr()``).

    Args:
        edge_index: ``[2, E]`` edges j -> i, or a PyG ``Data`` object.
        num_nodes: N for an ``[N, N]`` matrix, or ``(num_src, num_dst)`` for a
            bipartite graph (default: largest node id + 1).
        edge_weight: ``[E]`` weights.
    """
    import numpy as np
    import scipy.sparse as sp

    if _is_data(edge_index):
        data = edge_index
        num_nodes = data.num_nodes if num_nodes is None else num_nodes
        if edge_weight is None:
            edge_weight = _data_edge_attr(data)
            if edge_weight is not None and edge_weight.dim() != 1:
                edge_weight = None  # features, not weights
        edge_index = data.edge_index
    edge_index = _check_index(edge_index)
    if isinstance(num_nodes, (tuple, list)):
        shape = (int(num_nodes[0]), int(num_nodes[1]))
    else:
        n = _num_nodes(edge_index, num_nodes, None)
        shape = (n, n)
    E = edge_index.size(1)  # noqa: N806
    if edge_weight is None:
        values = np.ones(E, dtype=np.float32)
    else:
        if edge_weight.dim() != 1 or edge_weight.numel() != E:
            raise ValueError(f"edge_weight must have shape [E] = [{E}], got {tuple(edge_weight.shape)}")
        values = edge_weight.detach().cpu().numpy()
    row, col = edge_index.cpu().numpy()
    if E and (row.max() >= shape[0] or col.max() >= shape[1]):
        raise ValueError(f"edge_index refers to node ids beyond the matrix shape {shape}; raise num_nodes")
    return sp.coo_array((values, (row, col)), shape=shape)


def from_data(data) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor | None]:
    """``(x, edge_index, edge_attr, batch)`` of a PyG ``Data`` or ``Batch``, ready for a graphformer call.

    ``edge_attr`` is ``data.edge_attr``, or ``data.edge_weight`` when the
    object has no ``edge_attr``; ``batch`` is None for a single graph. Use as
    ``x, edge_index, edge_attr, batch = from_data(data); m(x, edge_index, edge_attr=edge_attr, batch=batch)``.
    """
    if not _is_data(data):
        raise TypeError(f"data must be a torch_geometric Data or Batch object, got {type(data).__name__}")
    if getattr(data, "edge_index", None) is None:
        raise ValueError(
            "data has no edge_index; graphformer's sparse path needs one (or call the "
            "module on data.x alone for the complete graph)"
        )
    return data.x, data.edge_index, _data_edge_attr(data), getattr(data, "batch", None)


def _is_data(obj) -> bool:
    try:
        from torch_geometric.data.data import BaseData
    except ImportError:  # pragma: no cover - torch_geometric is a dependency
        return False
    return isinstance(obj, BaseData)


def _data_edge_attr(data) -> Tensor | None:
    edge_attr = getattr(data, "edge_attr", None)
    return getattr(data, "edge_weight", None) if edge_attr is None else edge_attr


def _check_index(edge_index) -> Tensor:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a [2, E] tensor (or a PyG Data object), got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.dtype not in (torch.long, torch.int):
        raise TypeError(f"edge_index must hold integer node ids, got dtype {edge_index.dtype}; use .long()")
    if edge_index.numel() and int(edge_index.min()) < 0:
        raise ValueError("edge_index has negative node ids")
    return edge_index.long()


def _num_nodes(edge_index: Tensor, num_nodes: int | None, x: Tensor | None) -> int:
    smallest = int(edge_index.max()) + 1 if edge_index.numel() else 0
    if num_nodes is None:
        return max(smallest, 0 if x is None else x.size(0))
    if num_nodes < smallest:
        raise ValueError(f"num_nodes={num_nodes} but edge_index refers to node {smallest - 1}; raise num_nodes")
    return int(num_nodes)
