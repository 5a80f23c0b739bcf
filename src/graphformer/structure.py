"""Graph structures: complete, causal, bipartite, explicit edges and batches.

Structured graphs -- :func:`sliding_window`, :func:`local_global`,
:func:`block_diagonal` -- are objects that go where ``edge_index`` goes and
run on dense tiles (:mod:`graphformer.blocked`); ``g.edge_index`` lists
their edges.

Convention (as in PyTorch Geometric): ``edge_index[0]`` is the source j,
``edge_index[1]`` the target i, and a message flows j -> i.

Legend: N nodes, E edges, B graphs in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BlockDiagonal",
    "DenseBatch",
    "DenseGraph",
    "LocalGlobal",
    "SlidingWindow",
    "SparseGraph",
    "StructuredGraph",
    "add_self_loops",
    "bipartite_edge_index",
    "block_diagonal",
    "causal_edge_index",
    "causal_mask",
    "check_edge_index",
    "complete_edge_index",
    "dense_graph",
    "layer_self_loops",
    "local_global",
    "remove_self_loops",
    "sliding_window",
    "to_dense_batch",
]


def check_edge_index(edge_index: Tensor, num_src: int, num_dst: int, name: str = "edge_index") -> None:
    """Raise ``TypeError``/``ValueError`` unless ``edge_index`` is a valid ``[2, E]`` index.

    Sources must lie in ``[0, num_src)`` and targets in ``[0, num_dst)``.
    The range check costs one ``aminmax`` pass over the edges and one
    device-to-host read (none under ``torch.compile``, which skips it).
    """
    _check_edge_form(edge_index, name)
    if edge_index.numel() == 0 or torch.compiler.is_compiling():
        return
    _check_range(_read_stats(edge_index), num_src, num_dst, name)


def _check_edge_form(edge_index: Tensor, name: str = "edge_index") -> None:
    """Type, dtype and shape of an edge index: no device read."""
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if edge_index.layout != torch.strided:
        raise TypeError(
            f"{name} is a sparse adjacency matrix ({edge_index.layout}), not a [2, E] edge list; "
            "convert PyG's adj_t (row = target) with graphformer.interop.from_sparse_adjacency(adj_t), "
            "or call a module made by from_pyg, which takes it as is"
        )
    if edge_index.dtype not in (torch.long, torch.int):
        raise TypeError(
            f"{name} must hold integer node ids (torch.long), got dtype {edge_index.dtype}; use {name}.long()"
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"{name} must have shape [2, E] (row 0 = sources, row 1 = targets), "
            f"got {tuple(edge_index.shape)}; transpose an [E, 2] list with .t()"
        )


def _read_stats(edge_index: Tensor, key: Tensor | None = None) -> list[int]:
    """``[min src, min dst, max src, max dst]`` (and 1 if ``key`` is not sorted) in one device-to-host read."""
    lo, hi = torch.aminmax(edge_index.long(), dim=1)
    parts = [lo, hi]
    if key is not None:
        parts.append((key[1:] < key[:-1]).any().long().view(1))
    return torch.cat(parts).tolist()


def _check_range(stats: list[int], num_src: int, num_dst: int, name: str) -> None:
    lo, hi = stats[0:2], stats[2:4]
    if min(lo) < 0:
        raise ValueError(f"{name} has negative node ids (smallest {min(lo)}); ids must be >= 0")
    if hi[0] >= num_src:
        raise ValueError(f"{name}[0] (sources) refers to node {hi[0]} but only {num_src} source nodes were given")
    if hi[1] >= num_dst:
        raise ValueError(f"{name}[1] (targets) refers to node {hi[1]} but only {num_dst} target nodes were given")


def complete_edge_index(num_nodes: int, self_loops: bool = True, device=None) -> Tensor:
    """All edges j -> i of the complete graph on ``num_nodes`` nodes, ``[2, N*N]``
    (``[2, N*(N-1)]`` without self-loops).

    Self-attention over a sentence is attention on this graph.
    """
    return bipartite_edge_index(num_nodes, num_nodes, self_loops=self_loops, device=device)


def causal_edge_index(num_nodes: int, device=None) -> Tensor:
    """Edges j -> i for every j <= i: the DAG a decoder attends over, ``[2, N(N+1)/2]``."""
    dst, src = torch.tril_indices(num_nodes, num_nodes, device=device)
    return torch.stack([src, dst])


def bipartite_edge_index(num_src: int, num_dst: int, self_loops: bool = True, device=None) -> Tensor:
    """Every edge from ``num_src`` source nodes to ``num_dst`` target nodes, ``[2, num_src*num_dst]``.

    Cross-attention is attention on this graph. With ``self_loops=False`` and
    equal node sets the edges j -> j are left out.
    """
    dst = torch.arange(num_dst, device=device).repeat_interleave(num_src)
    src = torch.arange(num_src, device=device).repeat(num_dst)
    edge_index = torch.stack([src, dst])
    if not self_loops:
        edge_index = edge_index[:, src != dst]
    return edge_index


def remove_self_loops(edge_index: Tensor, edge_attr: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Drop every edge i -> i (and its row of ``edge_attr``)."""
    keep = edge_index[0] != edge_index[1]
    return edge_index[:, keep], (None if edge_attr is None else edge_attr[keep])


def add_self_loops(
    edge_index: Tensor,
    num_nodes: int,
    edge_attr: Tensor | None = None,
    mode: str = "add",
    fill_value: float | str = 1.0,
) -> tuple[Tensor, Tensor | None]:
    """Give every node an edge to itself.

    ``mode="add"`` removes existing self-loops and appends one per node (GAT's
    convention). ``mode="remaining"`` keeps one existing self-loop per node
    with its attribute (the last one in edge order, where a node has
    several, as PyG's ``add_remaining_self_loops``) and adds one only where
    a node has none (GCN's convention).

    New loops get ``fill_value`` as attribute: a number, a tensor broadcast
    to one edge's attribute, or a reduction of the node's incoming
    attributes, ``"mean"``, ``"add"`` (= ``"sum"``), ``"max"``, ``"min"`` or
    ``"mul"`` (PyG's ``fill_value`` strings; a node without incoming edges
    gets 0, or 1 for ``"mul"``).
    """
    if mode not in ("add", "remaining"):
        raise ValueError(f"mode must be 'add' or 'remaining', got {mode!r}")
    device = edge_index.device
    loop = torch.arange(num_nodes, device=device)
    is_loop = edge_index[0] == edge_index[1]
    reduce_index, reduce_attr = edge_index, edge_attr  # the edges a reduced fill value is read from
    if mode == "add":
        edge_index, edge_attr_kept = edge_index[:, ~is_loop], (None if edge_attr is None else edge_attr[~is_loop])
        reduce_index, reduce_attr = edge_index, edge_attr_kept
        new_nodes = loop
    else:
        position = torch.arange(edge_index.size(1), device=device)
        last = torch.full((num_nodes,), -1, dtype=torch.long, device=device)
        last.scatter_reduce_(0, edge_index[0, is_loop], position[is_loop], reduce="amax")
        keep = ~is_loop
        keep[is_loop] = last[edge_index[0, is_loop]] == position[is_loop]  # one loop per node: the last one
        edge_index, edge_attr_kept = edge_index[:, keep], (None if edge_attr is None else edge_attr[keep])
        new_nodes = loop[last < 0]
    loops = torch.stack([new_nodes, new_nodes])
    new_index = torch.cat([edge_index, loops], dim=1)
    if edge_attr is None:
        return new_index, None
    if isinstance(fill_value, str):
        fill = _reduce_incoming(reduce_attr, reduce_index[1], num_nodes, fill_value)[new_nodes]
        fill = fill.view(-1, *edge_attr.shape[1:])
    elif isinstance(fill_value, Tensor):
        fill = fill_value.to(edge_attr).expand(new_nodes.numel(), *edge_attr.shape[1:])
    else:
        fill = edge_attr.new_full((new_nodes.numel(), *edge_attr.shape[1:]), float(fill_value))
    return new_index, torch.cat([edge_attr_kept, fill], dim=0)


def _reduce_incoming(attr: Tensor, target: Tensor, num_nodes: int, how: str) -> Tensor:
    """``[num_nodes, F]``: the ``how`` reduction of each node's incoming ``attr`` rows (0 where none)."""
    source = attr.reshape(attr.size(0), -1)
    if how in ("add", "sum", "mean"):
        total = source.new_zeros(num_nodes, source.size(1)).index_add_(0, target, source)
        if how != "mean":
            return total
        return total / torch.bincount(target, minlength=num_nodes).clamp(min=1).unsqueeze(-1)
    reductions = {"max": "amax", "min": "amin", "mul": "prod"}
    if how not in reductions:
        raise ValueError(
            f"fill_value must be a number, a tensor or one of 'mean', 'add', 'sum', 'max', 'min', 'mul', got {how!r}"
        )
    init = source.new_ones if how == "mul" else source.new_zeros
    index = target.unsqueeze(-1).expand_as(source)
    return init(num_nodes, source.size(1)).scatter_reduce_(0, index, source, reductions[how], include_self=False)


def to_dense_batch(x: Tensor, batch: Tensor, num_graphs: int | None = None) -> tuple[Tensor, Tensor]:
    """Pack node rows of many graphs ``[N, d]`` into ``[B, N_max, d]``.

    Returns the packed tensor and ``pad`` ``[B, N_max]`` (True = padding).
    Nodes of one graph must be contiguous in ``batch`` (as in a PyG ``Batch``).
    """
    counts = torch.bincount(batch, minlength=num_graphs or 0)
    num_graphs = counts.numel()
    n_max = int(counts.max()) if num_graphs else 0
    ptr = torch.zeros(num_graphs + 1, dtype=torch.long, device=x.device)
    ptr[1:] = torch.cumsum(counts, 0)
    pos = torch.arange(batch.numel(), device=x.device) - ptr[batch]
    out = x.new_zeros(num_graphs, n_max, *x.shape[1:])
    out[batch, pos] = x
    pad = torch.ones(num_graphs, n_max, dtype=torch.bool, device=x.device)
    pad[batch, pos] = False
    return out, pad


def layer_self_loops(
    edge_index: Tensor,
    num_src: int,
    num_dst: int,
    edge_attr: Tensor | None = None,
    mode: str | None = None,
    fill_value: float | str | Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The self-loop policy of :class:`~graphformer.GraphAttention` (``self_loops=mode``).

    ``mode=None`` returns the edges as given. Otherwise the edges are checked
    against ``num_src -> num_dst`` nodes and :func:`add_self_loops` gives each
    of the first ``min(num_src, num_dst)`` nodes a loop (``"add"``: replace
    the existing loops, as GAT; ``"remaining"``: add where missing, as GCN).
    ``fill_value=None`` picks the attribute of the new loops: ``"mean"`` of
    the node's incoming edge features (``edge_attr`` ``[E, F]``) with
    ``mode="add"``, else 1. The loops are appended, so the returned edges are
    not in CSR order.
    """
    if mode is None:
        return edge_index, edge_attr
    check_edge_index(edge_index, num_src, num_dst)
    if fill_value is None:
        fill_value = "mean" if mode == "add" and edge_attr is not None and edge_attr.dim() > 1 else 1.0
    return add_self_loops(edge_index, min(num_src, num_dst), edge_attr, mode=mode, fill_value=fill_value)


def causal_mask(num_dst: int, num_src: int, device=None) -> Tensor:
    """``[M, N]`` bool, True where ``j <= i``: the edges of the causal graph as an adjacency matrix."""
    return torch.ones(num_dst, num_src, dtype=torch.bool, device=device).tril()


@dataclass
class DenseGraph:
    """The edges of one dense attention call, as masks broadcastable to ``[B, H, M, N]``.

    Built by :func:`dense_graph` from the complete graph and its
    restrictions (causal, padded sources, padded targets, an adjacency
    matrix); an edge ``j -> i`` exists where all of them allow it.
    ``mask[..., i, j]`` True means the edge exists (the opposite of torch's
    bool ``attn_mask``).

    Attributes:
        num_dst, num_src: M targets and N sources.
        edges: bool, True where the edge ``j -> i`` exists; None when every
            edge exists or when :attr:`is_causal` leaves the causal pattern
            to the kernel.
        allowed: what a fused kernel may see: :attr:`edges` with the rows of
            :attr:`empty` opened (a row with no key would give NaN; the
            caller zeroes those rows afterwards). None = no mask.
        empty: bool broadcastable to ``[B, H, M, 1]``, True for a target with
            no incoming edge; None when the masks leave every target an edge.
        is_causal: the graph is exactly the causal one and the kernel applies
            it itself (``scaled_dot_product_attention(is_causal=True)``);
            :attr:`edges` and :attr:`allowed` are then None.
    """

    num_dst: int
    num_src: int
    edges: Tensor | None = None
    allowed: Tensor | None = None
    empty: Tensor | None = None
    is_causal: bool = False

    def edge_mask(self, device=None) -> Tensor | None:
        """The edges with the causal pattern spelled out (``[M, N]`` lower triangle); None = complete."""
        if self.is_causal:
            return causal_mask(self.num_dst, self.num_src, device)
        return self.edges

    def pattern(self, batch_size: int, num_heads: int, device=None) -> Tensor:
        """Every edge as a ``[B, H, M, N]`` bool tensor (what scores with fixed weights count)."""
        full = torch.ones(self.num_dst, self.num_src, dtype=torch.bool, device=device)
        edges = self.edge_mask(device)
        return (full if edges is None else edges & full).expand(batch_size, num_heads, self.num_dst, self.num_src)

    def kernel_mask(self, attn_bias: Tensor | None = None) -> Tensor | None:
        """``attn_mask`` for ``scaled_dot_product_attention``: :attr:`allowed`, or the bias with -inf off the edges."""
        if attn_bias is None:
            return self.allowed
        return attn_bias if self.allowed is None else torch.where(self.allowed, attn_bias, float("-inf"))


def _key_padding(key_padding_mask: Tensor, batch_size: int, num_src: int) -> Tensor:
    if key_padding_mask.dtype != torch.bool:
        raise TypeError(f"key_padding_mask must be bool (True = padded node), got {key_padding_mask.dtype}")
    if tuple(key_padding_mask.shape) != (batch_size, num_src):
        raise ValueError(
            f"key_padding_mask must have shape [B, N] = [{batch_size}, {num_src}], got {tuple(key_padding_mask.shape)}"
        )
    return ~key_padding_mask[:, None, None, :]


def _adjacency(adjacency: Tensor, num_dst: int, num_src: int) -> Tensor:
    if adjacency.dtype != torch.bool:
        raise TypeError(
            f"adjacency must be bool (True = edge j -> i exists), got {adjacency.dtype}; "
            "an additive float mask goes in attn_bias"
        )
    if adjacency.dim() < 2 or adjacency.shape[-2:] != (num_dst, num_src):
        raise ValueError(
            f"adjacency must end in [M, N] = [{num_dst}, {num_src}] and broadcast to [B, H, M, N], "
            f"got {tuple(adjacency.shape)}"
        )
    return adjacency


def _both(a: Tensor | None, b: Tensor) -> Tensor:
    return b if a is None else a & b


def dense_graph(
    batch_size: int,
    num_dst: int,
    num_src: int,
    *,
    causal: bool = False,
    key_padding_mask: Tensor | None = None,
    query_padding: Tensor | None = None,
    adjacency: Tensor | None = None,
    fused_causal: bool = False,
    device=None,
) -> DenseGraph:
    """The :class:`DenseGraph` of ``batch_size`` complete ``num_src -> num_dst`` graphs and their restrictions.

    Args:
        causal: keep only the edges ``j <= i`` (needs ``num_dst == num_src``).
        key_padding_mask: ``[B, N]`` bool, True marks a padded source (no edge leaves it).
        query_padding: ``[B, M]`` bool, True marks a padded target (no edge enters it).
        adjacency: bool broadcastable to ``[B, H, M, N]``, ``[..., i, j]`` True where ``j -> i`` exists.
        fused_causal: the kernel can apply a causal mask itself; when ``causal`` is the only
            restriction the result then carries ``is_causal=True`` and no mask.
        device: where the causal mask is built.
    """
    if causal and num_dst != num_src:
        raise ValueError(f"causal=True needs as many targets as sources, got {num_dst} and {num_src}")
    edges = None
    if key_padding_mask is not None:
        edges = _key_padding(key_padding_mask, batch_size, num_src)
    if query_padding is not None:  # padded targets of a packed batch receive nothing
        edges = _both(edges, ~query_padding[:, None, :, None])
    if adjacency is not None:
        edges = _both(edges, _adjacency(adjacency, num_dst, num_src))
    if causal and (edges is not None or not fused_causal):
        edges, causal = _both(edges, causal_mask(num_dst, num_src, device)), False
    if edges is None:
        return DenseGraph(num_dst, num_src, is_causal=causal)
    reach = edges if edges.size(-1) == num_src else edges.expand(*edges.shape[:-1], num_src)  # [..., 1] if no source
    empty = ~reach.any(-1, keepdim=True)  # targets with no incoming edge
    return DenseGraph(num_dst, num_src, edges, edges | empty, empty)


@dataclass
class SparseGraph:
    """Edges j -> i laid out for sparse kernels: CSR by target, plus its transpose.

    Build it once with :meth:`from_edge_index` and pass it in place of
    ``edge_index`` to reuse the layout across layers and steps.

    Attributes:
        num_src, num_dst: node counts of the two sides (equal for a plain graph).
        crow: ``[num_dst + 1]`` row pointers (row = target i).
        col: ``[E]`` source of each edge, in CSR order.
        row: ``[E]`` target of each edge, in CSR order.
        perm: ``[E]`` CSR position -> position in the given ``edge_index``
            (``None`` when the given edges were already in CSR order).
        t_crow, t_col, t_perm: the transposed layout (rows = sources), used
            by the backward pass; ``t_perm`` maps CSC positions to CSR positions.
        edge_index: the edges as given.
        bipartite: sources and targets are two node sets (cross-attention),
            even when they have the same size.
    """

    num_src: int
    num_dst: int
    crow: Tensor
    col: Tensor
    row: Tensor
    perm: Tensor | None
    t_crow: Tensor
    t_col: Tensor
    t_perm: Tensor
    edge_index: Tensor
    bipartite: bool = False

    @property
    def num_edges(self) -> int:
        return self.col.numel()

    @classmethod
    def from_edge_index(
        cls,
        edge_index: Tensor,
        num_src: int,
        num_dst: int | None = None,
        check: bool = True,
        bipartite: bool = False,
        sort: bool | None = None,
    ) -> SparseGraph:
        """Sort edges by (target, source) and build both CSR layouts.

        Costs at most one device-to-host read: the range check (``check``)
        and, on CPU, whether the edges are already sorted, read together.
        ``sort=True`` sorts without looking (e.g. after appending self-loops),
        ``sort=False`` promises the edges are in CSR order already; the
        default looks on CPU and always sorts on GPU and under
        ``torch.compile``, where a look would cost a device sync.
        Built once, the graph is reused by every layer and step without
        another read.
        """
        num_dst = num_src if num_dst is None else num_dst
        _check_edge_form(edge_index)
        edge_index = edge_index.long()
        src, dst = edge_index[0], edge_index[1]
        key = dst * num_src + src
        compiling = torch.compiler.is_compiling()
        if sort is None and (key.is_cuda or compiling):
            sort = True
        look = sort is None and key.numel() > 1
        check = check and key.numel() > 0 and not compiling
        if check or look:
            stats = _read_stats(edge_index, key if look else None)
            if check:
                _check_range(stats, num_src, num_dst, "edge_index")
            sort = bool(stats[-1]) if look else sort
        perm = None
        if sort:
            perm = torch.argsort(key)
            src, dst = src[perm], dst[perm]
        crow = _pointer(dst, num_dst)
        t_perm = torch.argsort(src * num_dst + dst)
        t_col = dst[t_perm]
        t_crow = _pointer(src[t_perm], num_src)
        return cls(
            num_src, num_dst, crow, src, dst, perm, t_crow, t_col, t_perm, edge_index, bipartite or num_src != num_dst
        )

    def to_csr_order(self, values: Tensor) -> Tensor:
        """Reorder per-edge ``values`` ``[E, ...]`` from the given edge order to CSR order."""
        return values if self.perm is None else values[self.perm]

    def to_edge_order(self, values: Tensor) -> Tensor:
        """Reorder per-edge ``values`` ``[E, ...]`` from CSR order back to the given edge order."""
        if self.perm is None:
            return values
        out = torch.empty_like(values)
        out[self.perm] = values
        return out

    def in_degree(self, weight: Tensor | None = None) -> Tensor:
        """Number (or total ``weight``, given in CSR order) of incoming edges per target, ``[num_dst]``."""
        if weight is None:
            return self.crow.diff()
        return weight.new_zeros(self.num_dst).index_add_(0, self.row, weight)


def _pointer(sorted_index: Tensor, size: int) -> Tensor:
    """CSR row pointers of a sorted index: ``ptr[r]`` = first position holding a value >= r."""
    bounds = torch.arange(size + 1, dtype=sorted_index.dtype, device=sorted_index.device)
    return torch.searchsorted(sorted_index.contiguous(), bounds)  # a row of a transposed edge_index is strided


@dataclass
class DenseBatch:
    """Many graphs' nodes (a PyG ``batch`` vector) laid out once as a padded ``[B, N_max, ...]`` batch.

    Build it once with :meth:`from_batch` (one device-to-host read: the ids
    are checked and the largest graph measured) and reuse it: :meth:`pack`
    and :meth:`unpack` move node rows in and out by index, with no read, so
    that the complete graph of every graph runs on the dense path as
    ``attn(layout.pack(x), key_padding_mask=layout.pad)``.

    Attributes:
        batch: ``[N]`` graph id of each node (ids >= 0, nodes of one graph contiguous).
        pos: ``[N]`` position of each node within its graph.
        pad: ``[B, N_max]`` bool, True = padding.
        num_graphs, max_nodes: B and N_max.
    """

    batch: Tensor
    pos: Tensor
    pad: Tensor
    num_graphs: int
    max_nodes: int

    @classmethod
    def from_batch(cls, batch: Tensor, num_graphs: int | None = None, name: str = "batch") -> DenseBatch:
        """Lay out ``batch`` (``num_graphs`` defaults to the largest id + 1)."""
        if not isinstance(batch, Tensor) or batch.dtype not in (torch.long, torch.int) or batch.dim() != 1:
            raise TypeError(f"{name} must be a 1-D integer tensor of graph ids, one per node")
        batch = batch.long()
        device = batch.device
        if batch.numel() == 0:
            b = num_graphs or 0
            return cls(batch, batch.clone(), torch.ones(b, 0, dtype=torch.bool, device=device), b, 0)
        starts = torch.ones_like(batch, dtype=torch.bool)
        starts[1:] = batch[1:] != batch[:-1]
        first = torch.cummax(torch.where(starts, torch.arange(batch.numel(), device=device), 0), 0).values
        pos = torch.arange(batch.numel(), device=device) - first  # position within the run of equal ids
        stats = torch.stack([batch[0], batch[-1], (batch[1:] < batch[:-1]).any().long(), pos.max()]).tolist()
        lowest, highest, unsorted, longest = stats
        if lowest < 0 or unsorted:
            raise ValueError(
                f"{name} must hold graph ids >= 0 in increasing order, the nodes of each graph "
                "contiguous (as in a PyG Batch); sort the nodes by graph id"
            )
        if num_graphs is None:
            num_graphs = highest + 1
        elif highest >= num_graphs:
            raise ValueError(f"{name} has graph id {highest} but num_graphs={num_graphs}")
        max_nodes = longest + 1
        pad = torch.ones(num_graphs, max_nodes, dtype=torch.bool, device=device)
        pad[batch, pos] = False
        return cls(batch, pos, pad, num_graphs, max_nodes)

    @property
    def num_nodes(self) -> int:
        return self.batch.numel()

    def pack(self, x: Tensor) -> Tensor:
        """``[N, ...]`` -> ``[B, N_max, ...]``, zeros at the padding."""
        if x.size(0) != self.num_nodes:
            raise ValueError(f"x has {x.size(0)} rows but the DenseBatch was built for {self.num_nodes} nodes")
        out = x.new_zeros(self.num_graphs, self.max_nodes, *x.shape[1:])
        return out.index_put((self.batch, self.pos), x)

    def unpack(self, dense: Tensor) -> Tensor:
        """``[B, N_max, ...]`` -> ``[N, ...]`` (the padding dropped)."""
        return dense[self.batch, self.pos]


# ------------------------------------------------------ structured graphs
class StructuredGraph:
    """A graph made of dense blocks (window, local+global, block-diagonal), usable wherever ``edge_index`` is.

    ``attn(x, g)`` computes exactly what ``attn(x, g.edge_index)`` computes,
    but on the blocked path (:mod:`graphformer.blocked`): dense tiles of
    queries and keys multiplied with the fused SDPA kernel (or batched
    matrix products), masked at the tile borders, in ``O(N w)`` memory for a
    window of half-width w. Scores and inputs the blocked path does not
    cover (edge features, edge biases, a score without a tiled form) run on
    the sparse path over :attr:`edge_index`, with the same result.

    The structure is validated and laid out once, at construction; a call
    reads nothing back from the device, so it also traces under
    ``torch.compile(fullgraph=True)``.

    Attributes:
        num_nodes: N, the number of nodes (the graph is square: sources =
            targets).
        plan: the :class:`~graphformer.blocked.TilePlan` (tiles and masks).
    """

    def __init__(self, num_nodes: int, plan):
        self.num_nodes = num_nodes
        self.plan = plan
        self._sparse: SparseGraph | None = None

    @property
    def device(self) -> torch.device:
        return self.plan.device

    @property
    def edge_index(self) -> Tensor:
        """The explicit edges j -> i, ``[2, E]``, sorted by target, then source (built on first use)."""
        return self.plan.edges()[0]

    @property
    def num_edges(self) -> int:
        """Number of edges E (counted from the tiles; reads one number back from the device)."""
        return int(self.in_degree().sum())

    def in_degree(self) -> Tensor:
        """Number of incoming edges of every node, ``[N]``."""
        return self.plan.in_degree()

    @property
    def sparse_graph(self) -> SparseGraph:
        """The same edges as a :class:`SparseGraph` (the sparse path's layout, built on first use)."""
        if self._sparse is None:
            self._sparse = SparseGraph.from_edge_index(self.edge_index, self.num_nodes, check=False)
        return self._sparse

    def to(self, device) -> StructuredGraph:
        """The same structure with its tensors on ``device`` (self when already there).

        The copy is kept, so a structure built on the CPU and used on a GPU
        moves once, not at every call.
        """
        device = torch.device(device)
        if device == self.device or (device.index is None and device.type == self.device.type):
            return self
        moved = self.__dict__.setdefault("_moved", {})
        if str(device) not in moved:
            other = type(self).__new__(type(self))
            other.__dict__.update(self.__dict__)
            other.plan, other._sparse, other._moved = self.plan.to(device), None, {}
            moved[str(device)] = other
        return moved[str(device)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:
        return f"num_nodes={self.num_nodes}"


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


class SlidingWindow(StructuredGraph):
    """Edges j -> i for ``|i - j| <= window * dilation`` with ``dilation | (i - j)``, self-loops included.

    With ``causal=True`` only ``0 <= i - j <= window * dilation`` (a decoder
    that sees the last ``window`` positions). Build it with :func:`sliding_window`.
    """

    def __init__(self, num_nodes: int, window: int, *, causal: bool = False, dilation: int = 1, device=None):
        from .blocked import TilePlan, window_groups

        self.window = _check_int("window", window, 0)
        self.dilation = _check_int("dilation", dilation, 1)
        self.causal = bool(causal)
        _check_int("num_nodes", num_nodes, 0)
        groups = window_groups(num_nodes, window, self.causal, dilation, device) if num_nodes else []
        super().__init__(num_nodes, TilePlan(num_nodes, groups))

    def _describe(self) -> str:
        return f"num_nodes={self.num_nodes}, window={self.window}, causal={self.causal}, dilation={self.dilation}"


class LocalGlobal(StructuredGraph):
    """A sliding window plus global nodes that see and are seen by every node (Longformer, BigBird).

    Edges: the :class:`SlidingWindow` edges, every ``g -> i`` and every
    ``j -> g`` for a global node g (causal: only those with source <= target).
    Build it with :func:`local_global`.
    """

    def __init__(
        self, num_nodes: int, window: int, global_nodes, *, causal: bool = False, dilation: int = 1, device=None
    ):
        from .blocked import TilePlan, window_groups

        self.window = _check_int("window", window, 0)
        self.dilation = _check_int("dilation", dilation, 1)
        self.causal = bool(causal)
        _check_int("num_nodes", num_nodes, 0)
        if isinstance(global_nodes, int) and not isinstance(global_nodes, bool):
            if not 0 <= global_nodes <= num_nodes:
                raise ValueError(f"global_nodes={global_nodes} (the first nodes) must lie in [0, {num_nodes}]")
            ids = torch.arange(global_nodes, device=device)
        else:
            if isinstance(global_nodes, (list, tuple)) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in global_nodes
            ):
                global_nodes = torch.tensor(global_nodes, dtype=torch.long)
            ids = torch.as_tensor(global_nodes, device=device)
            if ids.dtype not in (torch.long, torch.int) or ids.dim() != 1:
                raise TypeError(
                    "global_nodes must be an int (that many first nodes) or a 1-d list/tensor of "
                    f"node ids, got {global_nodes!r}"
                )
            ids = ids.long()
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_nodes):
                raise ValueError(f"global_nodes must be node ids in [0, {num_nodes}), got {ids.tolist()}")
            if ids.unique().numel() != ids.numel():
                raise ValueError("global_nodes lists a node twice; give each global node once")
            ids = ids.sort().values
        self.global_nodes = ids
        is_global = torch.zeros(num_nodes, dtype=torch.bool, device=device)
        is_global[ids] = True
        if not num_nodes:
            groups = []
        elif ids.numel():
            groups = window_groups(num_nodes, window, self.causal, dilation, device, is_global, ids)
        else:
            groups = window_groups(num_nodes, window, self.causal, dilation, device)
        super().__init__(num_nodes, TilePlan(num_nodes, groups))

    def _describe(self) -> str:
        return (
            f"num_nodes={self.num_nodes}, window={self.window}, global_nodes={self.global_nodes.numel()}, "
            f"causal={self.causal}, dilation={self.dilation}"
        )


class BlockDiagonal(StructuredGraph):
    """Many small graphs side by side, each a complete graph on its nodes (causal: edges j -> i for j <= i).

    The nodes of graph g are the ``sizes[g]`` consecutive nodes after those of
    the graphs before it (as in a PyG ``Batch``). This is the graph behind
    ``attn(x, batch=batch)``; prepare it once with :func:`block_diagonal` and
    pass it as ``attn(x, g)`` or ``attn(x, batch=g)`` to skip the per-call
    layout work. Build it with :func:`block_diagonal`.
    """

    def __init__(self, sizes, *, causal: bool = False, device=None):
        from .blocked import TilePlan, block_groups

        if isinstance(sizes, Tensor):
            if sizes.dtype not in (torch.long, torch.int) or sizes.dim() != 1:
                raise TypeError(
                    f"sizes must be a 1-d integer tensor or a list of ints, got {sizes.dtype} "
                    f"of shape {tuple(sizes.shape)}"
                )
            sizes = sizes.tolist()
        sizes = [_check_int("sizes[i]", s, 0) for s in sizes]
        self.sizes = sizes
        self.causal = bool(causal)
        total = sum(sizes)
        super().__init__(total, TilePlan(total, block_groups(sizes, self.causal, device)))

    @property
    def num_graphs(self) -> int:
        return len(self.sizes)

    def _describe(self) -> str:
        return f"num_graphs={self.num_graphs}, num_nodes={self.num_nodes}, causal={self.causal}"


def sliding_window(
    num_nodes: int, window: int, *, causal: bool = False, dilation: int = 1, device=None
) -> SlidingWindow:
    """The sliding-window graph on ``num_nodes`` positions: j -> i when ``|i - j| <= window * dilation``
    and ``i - j`` is a multiple of ``dilation`` (``causal=True``: ``0 <= i - j <= window * dilation``).

    Self-loops are included, so each node has up to ``2 window + 1`` incoming
    edges (``window + 1`` when causal). Pass the result where ``edge_index``
    goes: ``attn(x, sliding_window(N, 128))`` runs dense tiles in ``O(N window)``
    memory and equals ``attn(x, g.edge_index)``.

    >>> g = sliding_window(5, 1, causal=True)
    >>> g.edge_index.tolist()
    [[0, 0, 1, 1, 2, 2, 3, 3, 4], [0, 1, 1, 2, 2, 3, 3, 4, 4]]
    """
    return SlidingWindow(num_nodes, window, causal=causal, dilation=dilation, device=device)


def local_global(
    num_nodes: int, window: int, global_nodes, *, causal: bool = False, dilation: int = 1, device=None
) -> LocalGlobal:
    """A sliding window (as :func:`sliding_window`) plus global nodes that see and are seen by all nodes.

    ``global_nodes`` is a number k (the first k nodes, e.g. a ``[CLS]``
    token) or a list / tensor of node ids. This is Longformer's pattern and
    BigBird's without the random edges.
    """
    return LocalGlobal(num_nodes, window, global_nodes, causal=causal, dilation=dilation, device=device)


def block_diagonal(sizes=None, *, batch: Tensor | None = None, causal: bool = False, device=None) -> BlockDiagonal:
    """Many small complete graphs in one: from graph ``sizes`` or from a PyG ``batch`` vector.

    ``batch`` ``[N]`` gives the graph of each node; the nodes of a graph must
    be contiguous and the ids increasing (as in a PyG ``Batch``); ids with no
    node are empty graphs. With ``causal=True`` each graph is a decoder's DAG
    (j -> i for j <= i within the graph).
    """
    if (sizes is None) == (batch is None):
        raise ValueError("give exactly one of sizes (nodes per graph) and batch (graph id per node)")
    if batch is not None:
        if not isinstance(batch, Tensor) or batch.dtype not in (torch.long, torch.int) or batch.dim() != 1:
            raise TypeError("batch must be a 1-d integer tensor of graph ids, one per node")
        if batch.numel() and (int(batch[0]) < 0 or bool((batch[1:] < batch[:-1]).any())):
            raise ValueError(
                "batch must hold graph ids >= 0 in increasing order, the nodes of each graph "
                "contiguous (as in a PyG Batch); sort the nodes by graph id"
            )
        sizes = torch.bincount(batch.long())
        device = batch.device if device is None else device
    return BlockDiagonal(sizes, causal=causal, device=device)
