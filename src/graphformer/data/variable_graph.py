"""Graphs over the variables of a multivariate series.

A series with V variables is a graph with V nodes. The graph can be given
(a sensor network, as the Los-loop adjacency) or read off the training data
(each variable listens to the k variables it correlates with most).

Edges follow the PyG convention: ``edge_index[0]`` is the source j,
``edge_index[1]`` the target i, a message flows j -> i. An adjacency matrix
``A`` has an edge j -> i wherever ``A[j, i] != 0`` (as
``torch_geometric.utils.dense_to_sparse``).

Legend: V variables (nodes), E edges, T time steps.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from ..convert import coalesce, from_dense

__all__ = ["adjacency_to_edges", "correlation_knn_edges", "read_adjacency"]


def read_adjacency(path: str | os.PathLike, num_variables: int | None = None) -> np.ndarray:
    """Read a square adjacency matrix: a header-less comma-separated ``.csv``/``.txt`` or a ``.npy`` file.

    Args:
        path: the file.
        num_variables: if given, the matrix must be ``[V, V]`` with this V.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a square numeric matrix, NaN entries, or a size that
            does not match ``num_variables``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such graph file: {path}")
    try:
        adj = np.load(path) if path.endswith(".npy") else np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: not a comma-separated numeric adjacency matrix without header ({err})") from None
    adj = np.asarray(adj, dtype=np.float64)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"{path}: the adjacency matrix must be square, got shape {adj.shape}")
    if not np.isfinite(adj).all():
        raise ValueError(f"{path}: the adjacency matrix has NaN or infinite entries")
    if num_variables is not None and adj.shape[0] != num_variables:
        raise ValueError(
            f"{path}: the graph has {adj.shape[0]} nodes but the series has {num_variables} "
            "variables; the adjacency must be V x V in the column order of the data"
        )
    return adj


def adjacency_to_edges(adj, self_loops: bool = True) -> tuple[Tensor, Tensor]:
    """Edges and weights of a dense adjacency ``[V, V]``: ``edge_index [2, E]``, ``weight [E]``.

    Edges are sorted by (target, source). With ``self_loops=True`` every
    node gets an edge to itself (weight 1) where the matrix has none.
    """
    adj = torch.as_tensor(np.asarray(adj, dtype=np.float64), dtype=torch.float32).clone()
    if adj.dim() != 2 or adj.size(0) != adj.size(1):
        raise ValueError(f"adjacency must be a square [V, V] matrix, got shape {tuple(adj.shape)}")
    if self_loops:
        diag = adj.diagonal()
        diag[diag == 0] = 1.0
    edge_index, weight = from_dense(adj)
    return coalesce(edge_index, weight, adj.size(0), by="target")  # sorted by (dst, src)


def correlation_knn_edges(train_values, k: int, self_loops: bool = True) -> tuple[Tensor, Tensor]:
    """Each variable listens to the ``k`` variables whose training values correlate with it most.

    The strength of a pair is the absolute Pearson correlation over the
    training rows ``train_values`` ``[T, V]``; the edge weight is that
    strength (1 on self-loops). Constant columns correlate with nothing
    (strength 0).

    Returns:
        ``edge_index [2, E]`` sorted by (target, source) and ``weight [E]``,
        with ``E = V * (k + 1)`` (``V * k`` without self-loops).
    """
    values = np.asarray(train_values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"train_values must be [T, V], got shape {values.shape}")
    num_vars = values.shape[1]
    if not 1 <= k < num_vars:
        raise ValueError(f"k must lie in [1, V-1] = [1, {num_vars - 1}], got {k}")
    centred = values - values.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    norm[norm == 0] = np.inf
    strength = np.abs((centred.T @ centred) / np.outer(norm, norm))  # [V, V]
    np.fill_diagonal(strength, -np.inf)
    # stable sort: ties go to the lower variable index
    sources = np.argsort(-strength, axis=1, kind="stable")[:, :k]  # [V, k], row = target
    targets = np.repeat(np.arange(num_vars), k)
    sources = np.sort(sources, axis=1).reshape(-1)
    weight = strength[targets, sources]
    if self_loops:
        targets = np.concatenate([targets, np.arange(num_vars)])
        sources = np.concatenate([sources, np.arange(num_vars)])
        weight = np.concatenate([weight, np.ones(num_vars)])
        order = np.lexsort((sources, targets))
        targets, sources, weight = targets[order], sources[order], weight[order]
    edge_index = torch.as_tensor(np.stack([sources, targets]), dtype=torch.long)
    return edge_index, torch.as_tensor(weight, dtype=torch.float32)
