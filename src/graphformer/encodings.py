"""Positions, times and graph structure as node features or attention biases.

Attention alone is blind to order: "我爱你" and "你爱我" hold the same tokens,
and a complete graph has no first node. Everything that tells nodes apart
comes in from outside the layer, as a node feature (added or concatenated)
or as a bias on edges (``attn_bias``).

=====================================  ============================================  =====================
encoding                               what it is                                    enters as
=====================================  ============================================  =====================
:func:`sinusoidal`                     fixed sines/cosines of the position           node feature
:class:`LearnablePositions`            one trained vector per position               node feature
:func:`apply_rotary`, ``"rotary"``     queries/keys rotated by position (RoPE)       the score (relative)
:func:`time_features`                  calendar of a timestamp                       node feature
:func:`laplacian_pe`                   low-frequency Laplacian eigenvectors          node feature
:func:`random_walk_pe`                 return probabilities of random walks          node feature
:func:`degree_encoding`                node degree (one-hot / embedding index)       node feature
:class:`ShortestPathBias`              learned scalar per hop distance and head      ``attn_bias``
=====================================  ============================================  =====================

Absolute versus relative. A node feature p_i is added to x_i before the
projections, so the score q_i . k_j sees the two positions separately and must
learn whatever depends on their offset. A relative encoding acts on the edge:
the rotary score rotates q_i and k_j so that their product depends only on
i - j, and a structural bias adds b(dist(j, i)) to the score of edge j -> i.

The sentence is a special graph: the Laplacian eigenvectors of a cycle are
exactly the sines and cosines of :func:`sinusoidal` (``laplacian_pe`` of a
ring of n tokens spans cos(2 pi m i / n), sin(2 pi m i / n)), so the
positional encoding of a sequence is the spectrum of its graph.

Legend: N nodes (positions), E edges, B graphs, H heads, C channels per head, k encoding width.
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse import csgraph
from scipy.sparse.linalg import eigsh
from torch import Tensor, nn

from .scores import Rotary, RotaryScore, apply_rotary
from .structure import check_edge_index

__all__ = [
    "DENSE_EIGH_MAX_NODES",
    "DegreeEncoding",
    "LearnablePositions",
    "Rotary",
    "RotaryScore",
    "ShortestPathBias",
    "apply_rotary",
    "degree",
    "degree_encoding",
    "fix_sign",
    "laplacian",
    "laplacian_pe",
    "learnable",
    "pack_distances",
    "random_sign_flip",
    "random_walk_pe",
    "shortest_path_bias",
    "shortest_path_distances",
    "sinusoidal",
    "time_features",
]

DENSE_EIGH_MAX_NODES = 300
"""Below this many nodes :func:`laplacian_pe` diagonalises the dense Laplacian."""


def sinusoidal(num_positions: int, dim: int, base: float = 10000.0) -> Tensor:
    r"""Sinusoidal positional encoding (Vaswani et al. 2017), ``[num_positions, dim]``.

    .. math::
        PE_{p, 2i} = \sin(p / base^{2i/dim}), \quad PE_{p, 2i+1} = \cos(p / base^{2i/dim})
    """
    if num_positions < 0 or dim <= 0:
        raise ValueError(f"need num_positions >= 0 and dim > 0, got {num_positions} and {dim}")
    pos = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(base) / dim))
    pe = torch.zeros(num_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.float()


_FREQ_FEATURES = {
    # the "timeF" features of Informer / Autoformer / iTransformer, finest first
    "t": ["minute", "hour", "weekday", "day", "dayofyear"],
    "min": ["minute", "hour", "weekday", "day", "dayofyear"],
    "h": ["hour", "weekday", "day", "dayofyear"],
    "d": ["weekday", "day", "dayofyear"],
    "b": ["weekday", "day", "dayofyear"],
    "w": ["day", "weekofyear"],
    "m": ["month"],
}


def time_features(dates, freq: str = "h") -> Tensor:
    """Calendar features of timestamps, each scaled to [-0.5, 0.5], ``[T, F]``.

    minute/59, hour/23, weekday/6, (day-1)/30, (dayofyear-1)/365,
    (month-1)/11, (weekofyear-1)/52, each minus 0.5; which ones depends on
    ``freq`` (``"t"``/``"min"`` 15-minute data adds the minute; ``"h"`` hourly:
    hour, weekday, day, day of year; ``"d"`` daily; ``"w"``; ``"m"``).

    Args:
        dates: anything ``numpy.asarray(..., dtype="datetime64[m]")`` accepts
            (strings like ``"2016-07-01 00:00:00"``, datetime64, pandas).
        freq: the sampling frequency code.
    """
    if freq not in _FREQ_FEATURES:
        raise ValueError(f"freq must be one of {sorted(_FREQ_FEATURES)}, got {freq!r}")
    stamps = np.asarray(dates, dtype="datetime64[m]")
    minutes = stamps.astype("datetime64[m]").astype(np.int64)
    days = stamps.astype("datetime64[D]")
    year_start = stamps.astype("datetime64[Y]").astype("datetime64[D]")
    month_start = stamps.astype("datetime64[M]").astype("datetime64[D]")
    values = {
        "minute": (minutes % 60) / 59.0,
        "hour": ((minutes // 60) % 24) / 23.0,
        "weekday": ((days.astype(np.int64) + 3) % 7) / 6.0,  # 1970-01-01 was a Thursday (weekday 3)
        "day": (days - month_start).astype(np.int64) / 30.0,
        "dayofyear": (days - year_start).astype(np.int64) / 365.0,
        "month": (stamps.astype("datetime64[M]").astype(np.int64) % 12) / 11.0,
        "weekofyear": (_iso_week(stamps) - 1) / 52.0,
    }
    cols = [values[name] - 0.5 for name in _FREQ_FEATURES[freq]]
    return torch.tensor(np.stack(cols, axis=1), dtype=torch.float32)


# --------------------------------------------------- learnable and rotary
class LearnablePositions(nn.Module):
    """Learned absolute positions (BERT, GPT-2): one trained vector per position, ``[N, dim]``.

    Shapes: ``forward(positions [..., N] long) -> [..., N, dim]``, or
    ``forward(N: int)`` for positions ``0..N-1``.
    """

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        if not isinstance(num_positions, int) or num_positions <= 0:
            raise ValueError(f"num_positions must be a positive int, got {num_positions!r}")
        self.num_positions = num_positions
        self.embedding = nn.Embedding(num_positions, dim)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, positions: Tensor | int) -> Tensor:
        if isinstance(positions, int):
            positions = torch.arange(positions, device=self.embedding.weight.device)
        if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= self.num_positions):
            raise ValueError(
                f"positions must lie in [0, {self.num_positions}); build the encoding with a larger num_positions"
            )
        return self.embedding(positions)


def learnable(num_positions: int, dim: int) -> LearnablePositions:
    """A :class:`LearnablePositions` module (``nn.Embedding``-backed) for ``num_positions`` positions."""
    return LearnablePositions(num_positions, dim)


# apply_rotary, Rotary and RotaryScore live in graphformer.scores (imported above) and are re-exported here.


def _iso_week(stamps: np.ndarray) -> np.ndarray:
    """ISO-8601 week number (1..53) of each timestamp, as pandas' ``isocalendar().week``."""
    import pandas as pd

    return pd.DatetimeIndex(stamps).isocalendar().week.to_numpy(dtype=np.int64)


# ----------------------------------------------------------------- graphs
def _check_graph(edge_index: Tensor, num_nodes: int) -> None:
    if not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    check_edge_index(edge_index, num_nodes, num_nodes)


def _adjacency(edge_index: Tensor, num_nodes: int, undirected: bool = True) -> sp.csr_matrix:
    """0/1 adjacency ``A[j, i] = 1`` for every edge j -> i (scipy CSR, float64), duplicates collapsed.

    With ``undirected=True`` the edges are symmetrised and self-loops dropped
    (:func:`graphformer.convert.binary_adjacency`).
    """
    from .convert import binary_adjacency

    _check_graph(edge_index, num_nodes)
    return binary_adjacency(edge_index, num_nodes, undirected=undirected)


def laplacian(edge_index: Tensor, num_nodes: int, normalized: bool = True) -> sp.csr_matrix:
    r"""The graph Laplacian of the undirected graph behind ``edge_index`` (scipy CSR, float64).

    .. math::
        L = D - A \quad\text{or}\quad L_{sym} = I - D^{-1/2} A D^{-1/2}

    Edges are symmetrised and self-loops dropped. An isolated node has a zero
    row in both (as in ``networkx.normalized_laplacian_matrix``): it is a
    connected component of its own, with eigenvalue 0.
    """
    adj = _adjacency(edge_index, num_nodes)
    deg = np.asarray(adj.sum(axis=1)).ravel()
    lap = sp.diags(deg) - adj
    if normalized:
        with np.errstate(divide="ignore"):
            inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(deg), 0.0)
        lap = sp.diags(inv_sqrt) @ lap @ sp.diags(inv_sqrt)
    return sp.csr_matrix(lap)


def fix_sign(vectors: Tensor | np.ndarray, rtol: float = 1e-6):
    """Flip each column so that its largest-magnitude entry is positive.

    An eigenvector is defined up to its sign; this picks one. Ties (entries
    equal in magnitude within ``rtol``, as on a cycle) go to the lowest node
    index, so the choice does not depend on round-off. Columns that are zero
    stay zero. Returns the same type as given.
    """
    is_tensor = isinstance(vectors, Tensor)
    v = vectors.detach().cpu().double().numpy() if is_tensor else np.asarray(vectors, dtype=np.float64)
    if v.size == 0:
        return vectors
    mag = np.abs(v)
    top = mag.max(axis=0, keepdims=True)
    first = np.argmax(mag >= top * (1.0 - rtol), axis=0)  # first index of a (near-)largest entry
    sign = np.where(v[first, np.arange(v.shape[1])] < 0, -1.0, 1.0)
    out = v * sign
    return torch.from_numpy(out).to(dtype=vectors.dtype, device=vectors.device) if is_tensor else out


def laplacian_pe(
    edge_index: Tensor,
    num_nodes: int,
    k: int,
    normalized: bool = True,
    solver: str = "auto",
    return_eigenvalues: bool = False,
):
    r"""Laplacian eigenvector positional encoding (Dwivedi & Bresson 2020), ``[num_nodes, k]``.

    The eigenvectors of the k smallest non-trivial eigenvalues of the
    (symmetric normalised) Laplacian :math:`L v = \lambda v`, ascending in
    :math:`\lambda`. They are the graph's low frequencies: on a cycle C_n
    (the graph of a sentence closed into a ring) they are exactly the sines
    and cosines :math:`\cos(2\pi m i / n), \sin(2\pi m i / n)` of the
    sinusoidal encoding. The graph is treated as undirected.

    *Trivial* eigenvectors are those of eigenvalue 0: one per connected
    component (constant on it, times :math:`D^{1/2}` when normalised; an
    isolated node is a component). A disconnected graph therefore skips as many
    vectors as it has components. When fewer than ``k`` non-trivial
    eigenvectors exist (``k >= num_nodes`` for a connected graph), the missing
    columns are zeros.

    Sign: ``v`` and ``-v`` are both eigenvectors. Each column is flipped so
    that its largest-magnitude entry is positive (first such node on ties,
    :func:`fix_sign`), so the same graph always gives the same encoding.
    Within a repeated eigenvalue (cycles, grids, symmetric graphs) any
    rotation of the eigenspace is equally valid and no sign rule removes that
    freedom; models usually randomise signs during training
    (:func:`random_sign_flip`) to become invariant to it.

    Args:
        edge_index: ``[2, E]`` edges (made undirected).
        num_nodes: N.
        k: number of eigenvectors.
        normalized: use :math:`I - D^{-1/2} A D^{-1/2}` (default) or :math:`D - A`.
        solver: ``"dense"`` (``numpy.linalg.eigh``, every eigenpair),
            ``"sparse"`` (``scipy.sparse.linalg.eigsh`` in shift-invert mode,
            only the ones needed) or ``"auto"`` (dense below
            :data:`DENSE_EIGH_MAX_NODES` nodes).
        return_eigenvalues: also return the ``[k]`` eigenvalues (zero-padded
            like the vectors).

    Returns:
        float32 ``[num_nodes, k]`` (and the eigenvalues ``[k]``).
    """
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    if solver not in ("auto", "dense", "sparse"):
        raise ValueError(f"solver must be 'auto', 'dense' or 'sparse', got {solver!r}")
    lap = laplacian(edge_index, num_nodes, normalized)
    N = num_nodes  # noqa: N806
    num_components = csgraph.connected_components(lap, directed=False)[0] if N else 0
    wanted = min(k, N - num_components)  # non-trivial eigenvectors that exist
    need = num_components + wanted
    vals = np.zeros(k)
    vecs = np.zeros((N, k))
    if wanted > 0:
        use_dense = solver == "dense" or (solver == "auto" and N <= DENSE_EIGH_MAX_NODES) or need >= N - 1
        if use_dense:
            w, v = np.linalg.eigh(lap.toarray())
            w, v = w[:need], v[:, :need]
        else:
            # shift-invert around a point just below 0: L is positive semi-definite, so L - sigma I is
            # positive definite and the eigenvalues closest to sigma (the smallest) converge first
            v0 = np.random.default_rng(0).standard_normal(N)
            w, v = eigsh(lap.tocsc(), k=need, sigma=-1e-3, which="LM", v0=v0)
            order = np.argsort(w)
            w, v = w[order], v[:, order]
        vals[:wanted], vecs[:, :wanted] = w[num_components:], fix_sign(v[:, num_components:])
    pe = torch.from_numpy(vecs).float()
    return (pe, torch.from_numpy(vals).float()) if return_eigenvalues else pe


def random_sign_flip(pe: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Multiply each column of a Laplacian encoding ``[N, k]`` by a random sign (training-time augmentation)."""
    sign = torch.randint(0, 2, (pe.size(-1),), generator=generator, device=pe.device).to(pe.dtype) * 2 - 1
    return pe * sign


def random_walk_pe(edge_index: Tensor, num_nodes: int, k: int) -> Tensor:
    r"""Random-walk structural encoding (Dwivedi et al. 2022), ``[num_nodes, k]``.

    Column t-1 holds the probability that a random walk started at node i is
    back at i after t steps, :math:`\big((D^{-1} A)^t\big)_{ii}` for
    t = 1..k, with :math:`A_{ji} = 1` for each edge j -> i (the walker follows
    edges in their direction; duplicates count once) and :math:`D` the
    out-degree. A walker at a node without outgoing edges stops (its row of
    :math:`D^{-1} A` is zero). As PyG's ``AddRandomWalkPE``.
    """
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    adj = _adjacency(edge_index, num_nodes, undirected=False)
    out_deg = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(out_deg > 0, 1.0 / out_deg, 0.0)
    step = sp.csr_matrix(sp.diags(inv) @ adj)  # [N, N] transition matrix, rows sum to 1 (or 0)
    out = np.zeros((num_nodes, k))
    power = step
    for t in range(k):
        if t:
            power = power @ step
        out[:, t] = power.diagonal()
    return torch.from_numpy(out).float()


def degree(edge_index: Tensor, num_nodes: int, direction: str = "in") -> Tensor:
    """Number of incoming (``"in"``: edges j -> i counted at i), outgoing (``"out"``) or all
    (``"both"``) edges of every node, ``[num_nodes]`` long. Duplicate edges count each time."""
    _check_graph(edge_index, num_nodes)
    if direction not in ("in", "out", "both"):
        raise ValueError(f"direction must be 'in', 'out' or 'both', got {direction!r}")
    ei = edge_index.long()
    deg = torch.zeros(num_nodes, dtype=torch.long, device=ei.device)
    if direction in ("in", "both"):
        deg += torch.bincount(ei[1], minlength=num_nodes)
    if direction in ("out", "both"):
        deg += torch.bincount(ei[0], minlength=num_nodes)
    return deg


def degree_encoding(
    edge_index: Tensor, num_nodes: int, max_degree: int, one_hot: bool = True, direction: str = "in"
) -> Tensor:
    """Node degrees clipped to ``max_degree``: one-hot ``[N, max_degree + 1]`` float, or
    (``one_hot=False``) the index ``[N]`` long ready for an ``nn.Embedding(max_degree + 1, dim)``.

    Graphormer's centrality encoding; see :class:`DegreeEncoding` for the
    learnable version. ``direction`` as in :func:`degree`.
    """
    if not isinstance(max_degree, int) or max_degree < 0:
        raise ValueError(f"max_degree must be a non-negative int, got {max_degree!r}")
    index = degree(edge_index, num_nodes, direction).clamp(max=max_degree)
    return F.one_hot(index, max_degree + 1).float() if one_hot else index


class DegreeEncoding(nn.Module):
    r"""Learnable degree (centrality) encoding, Graphormer-style: ``[N, dim]``.

    .. math::
        h_i = z^{in}_{\min(\deg^{in}_i, D)} \;(+\; z^{out}_{\min(\deg^{out}_i, D)} \text{ if directed})

    added to the node features before the first layer. Undirected graphs
    (edges stored both ways) need only the in-degree.

    Args:
        max_degree: D; larger degrees share the last embedding.
        dim: width of the encoding (d_model).
        directed: also embed the out-degree and add it.

    Shapes: ``forward(edge_index [2, E], num_nodes) -> [num_nodes, dim]``.
    """

    def __init__(self, max_degree: int, dim: int, directed: bool = False):
        super().__init__()
        if not isinstance(max_degree, int) or max_degree < 0:
            raise ValueError(f"max_degree must be a non-negative int, got {max_degree!r}")
        self.max_degree = max_degree
        self.in_embedding = nn.Embedding(max_degree + 1, dim)
        self.out_embedding = nn.Embedding(max_degree + 1, dim) if directed else None

    def forward(self, edge_index: Tensor, num_nodes: int) -> Tensor:
        h = self.in_embedding(degree_encoding(edge_index, num_nodes, self.max_degree, one_hot=False, direction="in"))
        if self.out_embedding is not None:
            h = h + self.out_embedding(
                degree_encoding(edge_index, num_nodes, self.max_degree, one_hot=False, direction="out")
            )
        return h


def shortest_path_distances(
    edge_index: Tensor,
    num_nodes: int,
    max_distance: int | None = None,
    directed: bool = False,
    batch: Tensor | None = None,
) -> Tensor:
    """Hop distances between every pair of nodes (breadth-first search, ``scipy.sparse.csgraph``).

    ``D[i, j]`` is the number of edges on a shortest path from j to i (the
    direction messages flow, so ``D`` lines up with attention scores: row =
    target i, column = source j); symmetric when ``directed=False``.
    Distances above ``max_distance`` are clipped to it and unreachable pairs
    get the sentinel ``max_distance + 1``; ``max_distance`` defaults to
    ``num_nodes - 1`` (no path is longer), so by default nothing is clipped
    and unreachable = ``num_nodes``. The result indexes an embedding of
    ``max_distance + 2`` rows (:class:`ShortestPathBias`).

    With ``batch`` (graph id of each node, nodes of one graph contiguous, as
    in a PyG ``Batch``) the distances of each graph are packed into
    ``[B, N_max, N_max]``, padding marked unreachable, to go with
    ``GraphAttention(x, batch=batch, attn_bias=...)``.

    All pairs are stored, so memory is O(N^2): meant for the small graphs a
    graph transformer attends over densely.

    Returns:
        long ``[N, N]``, or ``[B, N_max, N_max]`` with ``batch``.
    """
    _check_graph(edge_index, num_nodes)
    if max_distance is None:
        max_distance = max(num_nodes - 1, 0)
    if not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"max_distance must be a non-negative int, got {max_distance!r}")
    adj = _adjacency(edge_index, num_nodes, undirected=False)
    adj.setdiag(0)
    adj.eliminate_zeros()
    if num_nodes:
        dist = csgraph.shortest_path(adj, method="D", directed=directed, unweighted=True)  # dist[j, i]: j -> i
    else:
        dist = np.zeros((0, 0))
    dist = dist.T
    reach = np.isfinite(dist)
    out = np.where(reach, np.minimum(np.where(reach, dist, 0), max_distance), max_distance + 1)
    out = torch.from_numpy(out.astype(np.int64))
    if batch is None:
        return out
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"batch must have shape [{num_nodes}] (one graph id per node), got {tuple(batch.shape)}")
    batch = batch.cpu().long()
    counts = torch.bincount(batch)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).tolist()
    return pack_distances([out[lo:hi, lo:hi] for lo, hi in zip(ptr[:-1], ptr[1:])], max_distance + 1)


def pack_distances(blocks: list[Tensor], unreachable: int) -> Tensor:
    """Pack per-graph distance matrices ``[n_b, n_b]`` into one ``[B, N_max, N_max]`` tensor.

    The one padding convention of the library: every padded entry (a row or
    column past a graph's own ``n_b`` nodes) holds ``unreachable``, the
    sentinel ``max_distance + 1`` of :func:`shortest_path_distances` — a
    padded node is reachable from no real node. Attention masks padded
    nodes out (``batch`` / ``key_padding_mask``), so the value never reaches
    a weight; being the sentinel, it is a valid row of the
    :class:`ShortestPathBias` table with the same ``max_distance``.

    Used by :func:`shortest_path_distances` (``batch=...``) and
    :func:`graphformer.data.graphs.collate`.

    Shapes: ``B`` blocks ``[n_b, n_b]`` (integer) -> long ``[B, max n_b, max n_b]``.
    """
    if not isinstance(unreachable, int) or unreachable < 0:
        raise ValueError(f"unreachable must be a non-negative int (max_distance + 1), got {unreachable!r}")
    for b, block in enumerate(blocks):
        if block.dim() != 2 or block.size(0) != block.size(1):
            raise ValueError(f"distance block {b} must be a square [n, n] matrix, got {tuple(block.shape)}")
    n_max = max((int(block.size(0)) for block in blocks), default=0)
    packed = torch.full((len(blocks), n_max, n_max), unreachable, dtype=torch.long)
    for b, block in enumerate(blocks):
        n = block.size(0)
        packed[b, :n, :n] = block.to(packed.device)
    return packed


shortest_path_bias = shortest_path_distances  # the distances that ShortestPathBias turns into a bias


def _out_of_range(values: Tensor, high: int) -> bool:
    """Any value outside ``[0, high]``: one device-to-host read."""
    lo, hi = torch.aminmax(values)
    lo, hi = torch.stack([lo, hi]).tolist()
    return lo < 0 or hi > high


class ShortestPathBias(nn.Module):
    r"""Graphormer's spatial encoding: a learnable scalar per (distance, head) added to the scores.

    .. math::
        s_{ij} \leftarrow s_{ij} + b^{(h)}_{\phi(j \to i)}

    with :math:`\phi` the shortest-path distance. On the complete graph this
    is how a graph transformer sees structure: every pair attends, but
    neighbours can be favoured over strangers. The row ``max_distance + 1``
    is the bias of unreachable pairs.

    Args:
        num_heads: H.
        max_distance: distances are expected clipped to it (as returned by
            :func:`shortest_path_distances` with the same ``max_distance``).

    Shapes:
        - ``forward(distances [N, N]) -> attn_bias [H, N, N]``
        - ``forward(distances [B, N, N]) -> attn_bias [B, H, N, N]``
        - :meth:`edge_bias` ``(distances [N, N], edge_index [2, E]) -> [E, H]``
          for the sparse path.
    """

    def __init__(self, num_heads: int, max_distance: int):
        super().__init__()
        if not isinstance(max_distance, int) or max_distance < 0:
            raise ValueError(f"max_distance must be a non-negative int, got {max_distance!r}")
        self.num_heads, self.max_distance = num_heads, max_distance
        self.embedding = nn.Embedding(max_distance + 2, num_heads)
        nn.init.zeros_(self.embedding.weight)  # start from the plain (structure-blind) attention

    def distances(self, edge_index: Tensor, num_nodes: int, batch: Tensor | None = None) -> Tensor:
        """:func:`shortest_path_distances` with this module's ``max_distance``."""
        return shortest_path_distances(edge_index, num_nodes, self.max_distance, batch=batch)

    def _lookup(self, distances: Tensor) -> Tensor:
        if distances.dtype not in (torch.long, torch.int):
            raise TypeError(f"distances must be an integer tensor, got {distances.dtype}")
        if distances.numel() and not torch.compiler.is_compiling() and not self._checked_already(distances):
            if _out_of_range(distances, self.max_distance + 1):
                raise ValueError(
                    f"distances must lie in [0, {self.max_distance + 1}] "
                    "(max_distance + 1 = unreachable); compute them with "
                    "shortest_path_distances(..., max_distance=module.max_distance)"
                )
            self._last_checked = (weakref.ref(distances), distances._version)
        return self.embedding(distances.long().to(self.embedding.weight.device))

    def _checked_already(self, distances: Tensor) -> bool:
        """True if these very distances, unmodified since, passed the check of an earlier call.

        The range check costs a device-to-host read: a step that reuses one
        distances tensor (full-batch training, a prepared batch) pays it once.
        """
        last = getattr(self, "_last_checked", None)
        return last is not None and last[0]() is distances and last[1] == distances._version

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_last_checked", None)  # a weak reference does not pickle
        return state

    def forward(self, distances: Tensor) -> Tensor:
        if distances.dim() not in (2, 3):
            raise ValueError(f"distances must be [N, N] or [B, N, N], got {tuple(distances.shape)}")
        return self._lookup(distances).movedim(-1, -3)  # [..., N, N, H] -> [..., H, N, N]

    def edge_bias(self, distances: Tensor, edge_index: Tensor) -> Tensor:
        """The bias of each edge j -> i, ``[E, H]``, for ``GraphAttention(x, edge_index, attn_bias=...)``."""
        return self._lookup(distances[edge_index[1], edge_index[0]])
