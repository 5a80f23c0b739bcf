"""The blocked path: attention on structured graphs as dense tiles.

A sliding window, a local+global pattern or a block-diagonal batch of small
graphs is a union of small dense blocks of the adjacency matrix. Instead of
scoring edges one by one (the sparse path), the blocked path gathers each
block's query and key rows into dense tiles and runs
:func:`torch.nn.functional.scaled_dot_product_attention` (or batched matrix
products, for the readable path and scores without a fused kernel) on all
tiles at once, masking the entries of a tile that are not edges.

A :class:`TilePlan` is built once from the structure (on the host, at
construction) and holds only index and mask tensors, so a call makes no
device->host reads and traces under ``torch.compile(fullgraph=True)``.

Legend: B batch, N nodes, E edges, H heads, C channels per head,
T tiles in a group, Q query rows per tile, K key columns per tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TileGroup", "TilePlan", "blocked_attention", "blocked_explicit", "tile_weights_to_edges"]


@dataclass
class TileGroup:
    """Tiles of one shape: ``T`` tiles of ``Q`` query rows and ``K`` key columns.

    Attributes:
        q_index: ``[T, Q]`` node of each query row; ``num_nodes`` (a zero
            padding row) where the tile has no node.
        k_index: ``[T, K]`` node of each key column, padded the same way.
        owned: ``[T, Q]`` the row's output is the node's output (each node is
            owned by exactly one row of the plan).
        mask: ``[T, Q, K]`` True = edge ``k -> q`` exists (rows not owned are all
            True, so that no row is empty); None when every entry is an edge.
        bias: the mask as an additive float32 bias ``[T, 1, Q, K]`` (0 or -inf), or None.
        causal: with ``mask`` None, the tile is lower-triangular (``Q == K``).
    """

    q_index: Tensor
    k_index: Tensor
    owned: Tensor
    mask: Tensor | None
    bias: Tensor | None
    causal: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.q_index.size(0), self.q_index.size(1), self.k_index.size(1)

    def to(self, device) -> TileGroup:
        move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return TileGroup(move(self.q_index), move(self.k_index), move(self.owned), move(self.mask),
                         move(self.bias), self.causal)

    def edge_mask(self) -> Tensor:
        """``[T, Q, K]`` True where an entry of an owned row is an edge."""
        T, Q, K = self.shape  # noqa: N806
        mask = self.mask
        if mask is None:
            mask = torch.ones(Q, K, dtype=torch.bool, device=self.q_index.device)
            if self.causal:
                mask = mask.tril()
            mask = mask.expand(T, Q, K)
        return mask & self.owned.unsqueeze(-1)


def make_group(q_index: Tensor, k_index: Tensor, owned: Tensor, mask: Tensor | None,
               causal: bool = False) -> TileGroup:
    """A :class:`TileGroup`; rows that are not owned get an all-True mask row."""
    bias = None
    if mask is not None:
        mask = mask | ~owned.unsqueeze(-1)
        bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        bias = bias.masked_fill_(~mask, float("-inf")).unsqueeze(1)
    return TileGroup(q_index, k_index, owned, mask, bias, causal)


class TilePlan:
    """How a structured graph on ``num_nodes`` nodes is cut into tile groups.

    ``inverse[n]`` is the position of node n's owned row in the concatenation
    of all groups' flattened ``[T * Q]`` rows. The explicit edges (CSR order:
    by target, then source) and, for returning attention weights, the
    position of each edge in the concatenated flattened ``[T * Q * K]``
    tiles are derived from the masks, so the tiles and ``edge_index`` cannot
    disagree.
    """

    def __init__(self, num_nodes: int, groups: list[TileGroup]):
        self.num_nodes = num_nodes
        self.groups = groups
        device = groups[0].q_index.device if groups else torch.device("cpu")
        rows = torch.cat([g.q_index.flatten() for g in groups]) if groups else torch.zeros(0, dtype=torch.long)
        owned = torch.cat([g.owned.flatten() for g in groups]) if groups else torch.zeros(0, dtype=torch.bool)
        nodes = rows[owned]
        count = torch.bincount(nodes, minlength=num_nodes)
        if nodes.numel() != num_nodes or bool((count != 1).any()):
            raise RuntimeError("internal error: a tile plan must own every node exactly once")
        inverse = torch.empty(num_nodes, dtype=torch.long, device=device)
        inverse[nodes] = torch.arange(rows.numel(), device=device)[owned]
        self.inverse = inverse
        self._edges: tuple[Tensor, Tensor] | None = None
        self._degree: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.inverse.device

    def to(self, device) -> TilePlan:
        plan = TilePlan.__new__(TilePlan)
        plan.num_nodes, plan.groups = self.num_nodes, [g.to(device) for g in self.groups]
        plan.inverse = self.inverse.to(device)
        plan._edges = None if self._edges is None else tuple(t.to(device) for t in self._edges)
        plan._degree = None if self._degree is None else self._degree.to(device)
        return plan

    def edges(self) -> tuple[Tensor, Tensor]:
        """``(edge_index [2, E], tile_position [E])``, edges sorted by (target, source)."""
        if self._edges is None:
            src, dst, pos, offset = [], [], [], 0
            for g in self.groups:
                T, Q, K = g.shape  # noqa: N806
                t, r, c = g.edge_mask().nonzero(as_tuple=True)
                dst.append(g.q_index[t, r])
                src.append(g.k_index[t, c])
                pos.append(offset + (t * Q + r) * K + c)
                offset += T * Q * K
            src, dst, pos = (torch.cat(x) if x else torch.zeros(0, dtype=torch.long) for x in (src, dst, pos))
            order = torch.argsort(dst * self.num_nodes + src)
            self._edges = (torch.stack([src[order], dst[order]]), pos[order])
        return self._edges

    def in_degree(self) -> Tensor:
        """Number of incoming edges of each node, ``[num_nodes]`` (long)."""
        if self._degree is None:
            deg = torch.zeros(self.num_nodes, dtype=torch.long, device=self.device)
            for g in self.groups:
                rows = g.edge_mask().sum(-1)  # [T, Q]
                deg.index_add_(0, g.q_index[g.owned], rows[g.owned])
            self._degree = deg
        return self._degree


def _pad_nodes(t: Tensor) -> Tensor:
    """[B, H, N, C] -> [B, N + 1, H, C] with a zero row N for padding."""
    t = t.transpose(1, 2)
    return torch.cat([t, t.new_zeros(t.size(0), 1, *t.shape[2:])], dim=1)


def _tiles(nodes: Tensor, index: Tensor) -> Tensor:
    """Gather rows: nodes [B, N + 1, H, C], index [T, R] -> [B * T, H, R, C]."""
    B, H, C = nodes.size(0), nodes.size(2), nodes.size(3)  # noqa: N806
    T, R = index.shape  # noqa: N806
    return nodes.index_select(1, index.flatten()).view(B * T, R, H, C).transpose(1, 2)


def _mask_for(group: TileGroup, batch: int, dtype) -> Tensor | None:
    if group.bias is None:
        return None
    bias = group.bias.to(dtype)
    return bias if batch == 1 else bias.repeat(batch, 1, 1, 1)


def _assemble(outs: list[Tensor], plan: TilePlan, batch: int) -> Tensor:
    """Group outputs [B * T, H, Q, C] -> [B, H, N, C] (each node read from its owned row)."""
    flat = [o.transpose(1, 2).reshape(batch, -1, o.size(1), o.size(3)) for o in outs]  # [B, T*Q, H, C]
    rows = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
    return rows.index_select(1, plan.inverse).transpose(1, 2)


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, plan: TilePlan, scale: float | None = None,
                      dropout_p: float = 0.0) -> Tensor:
    """Softmax attention along the plan's edges with the fused SDPA kernel.

    Args:
        q, k, v: ``[B, H, N, C]`` queries, keys and values of every node.
        plan: the structure's :class:`TilePlan`.
        scale: score scale (default ``1/sqrt(C)``).
        dropout_p: dropout on the attention weights.

    Returns:
        ``[B, H, N, C]``: for every node i, ``sum_j softmax_j(q_i . k_j * scale) v_j``
        over its incoming edges j -> i.
    """
    B = q.size(0)  # noqa: N806
    qn, kn, vn = _pad_nodes(q), _pad_nodes(k), _pad_nodes(v)
    outs = []
    for g in plan.groups:
        kt = _tiles(kn, g.k_index)
        out = F.scaled_dot_product_attention(
            _tiles(qn, g.q_index), kt, _tiles(vn, g.k_index), attn_mask=_mask_for(g, B, q.dtype),
            dropout_p=dropout_p, is_causal=g.mask is None and g.causal, scale=scale)
        outs.append(out)
    return _assemble(outs, plan, B)


def blocked_explicit(q: Tensor | None, k: Tensor, v: Tensor, plan: TilePlan, tile_scores,
                     softmax: bool = True, dropout=None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The readable blocked path: scores and weights of every tile as matrices.

    Args:
        q: ``[B, H, N, C]`` (or None for scores that do not read queries);
            k, v: ``[B, H, N, C]``.
        tile_scores: ``fn(q_tiles, k_tiles, group) -> [B*T, H, Q, K]``, the
            scores (``softmax=True``) or the final weights of the tiles, given
            ``q_tiles`` / ``k_tiles`` ``[B*T, H, Q|K, C]``.
        dropout: a function applied to the weights before aggregation.

    Returns:
        ``(out [B, H, N, C], weights, scores)``, the last two one
        ``[B*T, H, Q, K]`` tensor per group (zero / -inf off the edges).
    """
    B = k.size(0)  # noqa: N806
    qn = None if q is None else _pad_nodes(q)
    kn, vn = _pad_nodes(k), _pad_nodes(v)
    outs, weights, scores = [], [], []
    for g in plan.groups:
        T, Q, K = g.shape  # noqa: N806
        qt = None if qn is None else _tiles(qn, g.q_index)
        s = tile_scores(qt, _tiles(kn, g.k_index), g)
        mask = g.edge_mask() | ~g.owned.unsqueeze(-1)  # [T, Q, K]
        mask = mask.unsqueeze(1).repeat(B, 1, 1, 1) if B > 1 else mask.unsqueeze(1)
        if softmax:
            s = s.masked_fill(~mask, float("-inf"))
            top = s.detach().amax(-1, keepdim=True)
            ex = torch.exp(s - top)
            w = ex / ex.sum(-1, keepdim=True)
        else:
            w = s.masked_fill(~mask, 0.0)
        outs.append((w if dropout is None else dropout(w)) @ _tiles(vn, g.k_index))
        weights.append(w)
        scores.append(s)
    return _assemble(outs, plan, B), weights, scores


def tile_weights_to_edges(tiles: list[Tensor], plan: TilePlan, batch: int) -> Tensor:
    """Per-tile values ``[B*T, H, Q, K]`` (one per group) -> per-edge ``[B, E, H]`` in ``edge_index`` order."""
    _, pos = plan.edges()
    flat = [t.unflatten(0, (batch, -1)).permute(0, 1, 3, 4, 2).reshape(batch, -1, t.size(1)) for t in tiles]
    return torch.cat(flat, dim=1).index_select(1, pos)


# ------------------------------------------------------------- plan builders
def _tile_size(window: int, length: int) -> int:
    return max(1, min(max(window, 32), 256, length))


def window_groups(num_nodes: int, window: int, causal: bool, dilation: int, device=None,
                  global_mask: Tensor | None = None, global_nodes: Tensor | None = None) -> list[TileGroup]:
    """Tiles of the (dilated) sliding window ``j -> i`` for ``|i - j| <= window * dilation``,
    ``dilation | (i - j)`` (causal: ``0 <= i - j``).

    Nodes are split by residue ``i mod dilation``; each residue class is an
    ordinary window of half-width ``window`` over its own sequence, cut into
    tiles of ``P`` queries that see ``P + 2 window`` keys (``P + window``
    when causal). With ``global_nodes`` (ids) and ``global_mask`` (bool
    ``[N]``), every tile also sees the global nodes as extra keys, global
    keys are left out of the window part, and global nodes own no window row.
    """
    n, d, w = num_nodes, dilation, window
    length = -(-n // d)  # positions per residue class
    p = _tile_size(w, length)
    tiles = -(-length // p)
    r = torch.arange(d, device=device).view(d, 1, 1)
    t = torch.arange(tiles, device=device).view(1, tiles, 1)
    q_pos = t * p + torch.arange(p, device=device)  # [1, tiles, P]
    span = p + (w if causal else 2 * w)
    k_pos = t * p - w + torch.arange(span, device=device)  # [1, tiles, K]
    q_node, k_node = r + d * q_pos, r + d * k_pos  # [d, tiles, P|K]
    q_ok = q_node < n
    k_ok = (k_pos >= 0) & (k_node < n)
    diff = q_pos.unsqueeze(-1) - k_pos.unsqueeze(-2)  # [1, tiles, P, K]
    mask = (diff >= 0) & (diff <= w) if causal else diff.abs() <= w
    mask = mask & q_ok.unsqueeze(-1) & k_ok.unsqueeze(-2)
    q_index = torch.where(q_ok, q_node, n).flatten(0, 1)
    k_index = torch.where(k_ok, k_node, n).flatten(0, 1)
    mask, q_ok = mask.flatten(0, 1), q_ok.flatten(0, 1)
    if global_nodes is None:
        return [make_group(q_index, k_index, q_ok, mask)]
    is_global = torch.cat([global_mask, global_mask.new_zeros(1)])
    mask = mask & ~is_global[k_index].unsqueeze(-2)
    owned = q_ok & ~is_global[q_index]
    g_keys = global_nodes.expand(q_index.size(0), -1)  # [T, G]
    g_mask = owned.unsqueeze(-1).expand(-1, -1, global_nodes.numel())
    if causal:
        g_mask = g_mask & (global_nodes.view(1, 1, -1) <= q_index.unsqueeze(-1))
    window_part = make_group(q_index, torch.cat([k_index, g_keys], 1), owned, torch.cat([mask, g_mask], 2))
    all_nodes = torch.arange(n, device=device).unsqueeze(0)  # [1, N]
    g_rows = global_nodes.unsqueeze(0)  # [1, G]
    g_owned = torch.ones_like(g_rows, dtype=torch.bool)
    full = (all_nodes.unsqueeze(-2) <= g_rows.unsqueeze(-1)) if causal else None
    return [window_part, make_group(g_rows, all_nodes, g_owned, full)]


def block_groups(sizes: list[int], causal: bool, device=None, call_cost: int = 4096) -> list[TileGroup]:
    """Tiles of a block-diagonal graph: graph g is complete (causal: ``j <= i``) on its ``sizes[g]`` nodes.

    Graphs are bucketed by size; a bucket is one group padded to its largest
    graph. The buckets minimise padded score entries plus ``call_cost``
    entries per group (dynamic programming over the distinct sizes).
    """
    offsets, total = [], 0
    for s in sizes:
        offsets.append(total)
        total += s
    distinct = sorted({s for s in sizes if s > 0})
    if not distinct:
        return []
    count = {s: 0 for s in distinct}
    for s in sizes:
        if s > 0:
            count[s] += 1
    # best[i]: cheapest bucketing of distinct[:i]; a bucket distinct[j:i] is padded to distinct[i-1]
    best, cut = [0] + [None] * len(distinct), [0] * (len(distinct) + 1)
    for i in range(1, len(distinct) + 1):
        members = 0
        for j in range(i - 1, -1, -1):
            members += count[distinct[j]]
            cost = best[j] + members * distinct[i - 1] ** 2 + call_cost
            if best[i] is None or cost < best[i]:
                best[i], cut[i] = cost, j
    bounds, i = [], len(distinct)
    while i > 0:
        bounds.append((distinct[cut[i]], distinct[i - 1]))
        i = cut[i]
    groups = []
    for lo, hi in sorted(bounds):
        members = [g for g, s in enumerate(sizes) if lo <= s <= hi]
        start = torch.tensor([offsets[g] for g in members], device=device).unsqueeze(1)
        size = torch.tensor([sizes[g] for g in members], device=device).unsqueeze(1)
        pos = torch.arange(hi, device=device).unsqueeze(0)
        ok = pos < size  # [G, S]
        index = torch.where(ok, start + pos, total)
        if lo == hi:
            groups.append(make_group(index, index, ok, None, causal=causal))
        else:
            mask = ok.unsqueeze(-2) & ok.unsqueeze(-1)
            if causal:
                mask = mask & torch.ones(hi, hi, dtype=torch.bool, device=device).tril()
            groups.append(make_group(index, index, ok, mask))
    return groups
