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
        q_index: ``[T, Q]`` node of each query row; ``num_nodes`` where the
            tile has no node (such a row is never owned).
        k_index: ``[T, K]`` node of each key column, padded the same way
            (a padded column is never an edge).
        owned: ``[T, Q]`` the row's output is the node's output (each node is
            owned by exactly one row of the plan).
        mask: ``[T, Q, K]`` True = edge ``k -> q`` exists (rows not owned are all
            True, so that no row is empty); None when every entry is an edge.
        bias: the mask as an additive float32 bias ``[T, 1, Q, K]`` (0 or -inf), or None.
        causal: with ``mask`` None, the tile is lower-triangular (``Q == K``).
        q_gather, k_gather: the indices with padding replaced by node 0, for gathering.
    """

    q_index: Tensor
    k_index: Tensor
    owned: Tensor
    mask: Tensor | None
    bias: Tensor | None
    causal: bool = False
    q_gather: Tensor | None = None
    k_gather: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, Q, K)``."""
        return self.q_index.size(0), self.q_index.size(1), self.k_index.size(1)

    def to(self, device) -> TileGroup:
        """The same group with its tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TileGroup(
            move(self.q_index),
            move(self.k_index),
            move(self.owned),
            move(self.mask),
            move(self.bias),
            self.causal,
            move(self.q_gather),
            move(self.k_gather),
        )

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


def make_group(
    q_index: Tensor, k_index: Tensor, owned: Tensor, mask: Tensor | None, num_nodes: int, causal: bool = False
) -> TileGroup:
    """A :class:`TileGroup`; rows that are not owned get an all-True mask row.

    A mask ``[1, Q, K]`` is shared by every tile (it broadcasts).
    """
    q_gather = q_index.masked_fill(q_index >= num_nodes, 0)
    k_gather = q_gather if k_index is q_index else k_index.masked_fill(k_index >= num_nodes, 0)
    bias = None
    if mask is not None:
        if mask.size(0) == owned.size(0):  # a shared [1, Q, K] mask is complete already
            mask = mask | ~owned.unsqueeze(-1)
        bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        bias = bias.masked_fill_(~mask, float("-inf")).unsqueeze(1)
    return TileGroup(q_index, k_index, owned, mask, bias, causal, q_gather, k_gather)


def make_groups(q_index: Tensor, k_index: Tensor, owned: Tensor, mask: Tensor, num_nodes: int) -> list[TileGroup]:
    """Groups of masked tiles: the tiles whose mask equals the middle tile's share one ``[1, Q, K]``
    mask (the interior of a window), the others (borders) keep their own."""
    full = mask | ~owned.unsqueeze(-1)
    T = full.size(0)  # noqa: N806
    same = (full == full[T // 2]).flatten(1).all(1)
    count = int(same.sum())
    if count < 2:
        return [make_group(q_index, k_index, owned, mask, num_nodes)]
    groups = []
    for rows, part in ((same.nonzero().squeeze(1), full[T // 2].unsqueeze(0)), ((~same).nonzero().squeeze(1), None)):
        if rows.numel():
            q = q_index[rows]
            k = q if k_index is q_index else k_index[rows]
            groups.append(make_group(q, k, owned[rows], mask[rows] if part is None else part, num_nodes))
    return groups


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
        self._gather_layout()
        self._edges: tuple[Tensor, Tensor] | None = None
        self._degree: Tensor | None = None

    def _gather_layout(self) -> None:
        """The rows every tile reads, as one index: each group's queries, then its keys unless shared."""
        parts = []
        for g in self.groups:
            parts.append(g.q_gather.flatten())
            if g.k_gather is not g.q_gather:
                parts.append(g.k_gather.flatten())
        self.gather_index = torch.cat(parts) if parts else self.inverse.new_zeros(0)
        self.gather_sizes = [p.numel() for p in parts]
        qs, ks = [g.q_gather.flatten() for g in self.groups], [g.k_gather.flatten() for g in self.groups]
        self.q_gather_index = torch.cat(qs) if qs else self.inverse.new_zeros(0)
        self.k_gather_index = torch.cat(ks) if ks else self.inverse.new_zeros(0)
        self.q_gather_sizes, self.k_gather_sizes = [q.numel() for q in qs], [k.numel() for k in ks]
        # node n's output is row n of the concatenated rows (a plain window): a slice, not a gather
        n = self.num_nodes
        self.inverse_is_prefix = bool(torch.equal(self.inverse, torch.arange(n, device=self.inverse.device)))
        # when every group's keys are its queries, each node is gathered once (as its owned row)
        # and padding entries get zero gradient: the gather is inverted by self.inverse
        shared = all(g.k_gather is g.q_gather for g in self.groups)
        self.gather_inverse = self.inverse if shared and self.groups else None

    @property
    def device(self) -> torch.device:
        """Where the plan's tensors live."""
        return self.inverse.device

    def to(self, device) -> TilePlan:
        """The same plan with its tensors on ``device``."""
        plan = TilePlan.__new__(TilePlan)
        plan.num_nodes, plan.groups = self.num_nodes, [g.to(device) for g in self.groups]
        plan.inverse = self.inverse.to(device)
        plan._gather_layout()
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


class _UniqueRows(torch.autograd.Function):
    """``x.index_select(1, index)`` where every node appears once (padding entries aside, whose
    gradient is zero): the backward pass is a gather with ``inverse`` instead of a scatter-add."""

    @staticmethod
    def forward(x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
        return x.index_select(1, index)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def _tile_inputs(q: Tensor | None, k: Tensor, v: Tensor, plan: TilePlan, qkv: Tensor | None = None):
    """Per group ``(q_tiles, k_tiles, v_tiles)`` ``[B*T, H, Q|K, C]`` from ``[B, H, N, C]`` inputs
    (or from ``qkv`` ``[B, N, 3, H, C]``, the three stacked, as the fused projection lays them out).

    All tiles come from one gather of the stacked rows, so the backward pass
    scatters into one gradient buffer instead of one per group.
    """
    if qkv is None:
        parts = [k, v] if q is None else [q, k, v]
        qkv = torch.stack([t.transpose(1, 2) for t in parts], dim=2)  # [B, N, 2|3, H, C]
    B, _, S, H, C = qkv.shape  # noqa: N806
    if plan.gather_inverse is not None:  # keys are queries: one gather of all rows
        rows = _UniqueRows.apply(qkv, plan.gather_index, plan.gather_inverse).split(plan.gather_sizes, dim=1)
        for g, part in zip(plan.groups, rows):
            T, Q, _ = g.shape  # noqa: N806
            parts = part.view(B * T, Q, S, H, C).unbind(2)  # unbind: its backward is one stack
            yield (
                (None if S == 2 else parts[0].transpose(1, 2)),
                parts[S - 2].transpose(1, 2),
                parts[S - 1].transpose(1, 2),
            )
        return
    # keys overlap between tiles: each group's queries, keys and values gathered into their own
    # tensors, their gradients scattered into one buffer
    q_index = [g.q_gather.flatten() for g in plan.groups] if S == 3 else []
    k_index = [g.k_gather.flatten() for g in plan.groups]
    tiles = _OverlappingTiles.apply(qkv, len(q_index), *q_index, *k_index)
    G = len(plan.groups)  # noqa: N806
    for i, g in enumerate(plan.groups):
        T, Q, K = g.shape  # noqa: N806
        qt = tiles[i].view(B * T, Q, H, C).transpose(1, 2) if S == 3 else None
        base = G if S == 3 else 0
        kt = tiles[base + 2 * i].view(B * T, K, H, C).transpose(1, 2)
        vt = tiles[base + 2 * i + 1].view(B * T, K, H, C).transpose(1, 2)
        yield qt, kt, vt


class _OverlappingTiles(torch.autograd.Function):
    """Rows of stacked ``qkv`` ``[B, N, S, H, C]`` for tiles whose key rows overlap.

    Inputs after ``qkv``: ``num_q`` query indices (gathered from slot 0), then
    one key index per group (keys from slot S-2, values from slot S-1).
    Outputs: the query rows of each group, then keys and values of each group,
    each ``[B, R, H, C]`` contiguous. The backward pass adds every gradient
    into one zero buffer, without stacking or slicing copies.
    """

    @staticmethod
    def forward(qkv: Tensor, num_q: int, *indices: Tensor):
        S = qkv.size(2)  # noqa: N806
        q_idx, k_idx = indices[:num_q], indices[num_q:]
        out = [qkv[:, :, 0].index_select(1, i) for i in q_idx]
        for i in k_idx:
            out += [qkv[:, :, S - 2].index_select(1, i), qkv[:, :, S - 1].index_select(1, i)]
        return tuple(out)

    @staticmethod
    def setup_context(ctx, inputs, output):
        qkv, num_q, *indices = inputs
        ctx.num_q, ctx.shape = num_q, qkv.shape
        ctx.save_for_backward(*indices)

    @staticmethod
    def backward(ctx, *grads):
        indices = ctx.saved_tensors
        num_q, S = ctx.num_q, ctx.shape[2]  # noqa: N806
        first = next(g for g in grads if g is not None)
        grad = first.new_zeros(ctx.shape)
        for i, g in zip(indices[:num_q], grads[:num_q]):
            if g is not None:
                grad[:, :, 0].index_add_(1, i, g)
        for n, i in enumerate(indices[num_q:]):
            for slot, g in ((S - 2, grads[num_q + 2 * n]), (S - 1, grads[num_q + 2 * n + 1])):
                if g is not None:
                    grad[:, :, slot].index_add_(1, i, g)
        return (grad, None, *([None] * len(indices)))


def _mask_for(group: TileGroup, batch: int, dtype) -> Tensor | None:
    if group.bias is None:
        return None
    bias = group.bias.to(dtype)
    return bias if batch == 1 or bias.size(0) == 1 else bias.repeat(batch, 1, 1, 1)


def _assemble(outs: list[Tensor], plan: TilePlan, batch: int) -> Tensor:
    """Group outputs [B * T, H, Q, C] -> [B, H, N, C] (each node read from its owned row)."""
    flat = [o.transpose(1, 2).reshape(batch, -1, o.size(1), o.size(3)) for o in outs]  # [B, T*Q, H, C]
    rows = flat[0] if len(flat) == 1 else torch.cat(flat, dim=1)
    if plan.inverse_is_prefix:
        return rows[:, : plan.num_nodes].transpose(1, 2)
    return rows.index_select(1, plan.inverse).transpose(1, 2)


def blocked_attention(
    q: Tensor | None,
    k: Tensor | None,
    v: Tensor | None,
    plan: TilePlan,
    scale: float | None = None,
    dropout_p: float = 0.0,
    qkv: Tensor | None = None,
) -> Tensor:
    """Softmax attention along the plan's edges with the fused SDPA kernel.

    Args:
        q, k, v: ``[B, H, N, C]`` queries, keys and values of every node.
        qkv: instead of q, k, v: the three stacked, ``[B, N, 3, H, C]``
            (the fused projection's output as it is laid out).
        plan: the structure's :class:`TilePlan`.
        scale: score scale (default ``1/sqrt(C)``).
        dropout_p: dropout on the attention weights.

    Returns:
        ``[B, H, N, C]``: for every node i, ``sum_j softmax_j(q_i . k_j * scale) v_j``
        over its incoming edges j -> i.
    """
    B = (q if qkv is None else qkv).size(0)  # noqa: N806
    dtype = (q if qkv is None else qkv).dtype
    outs = []
    for g, (qt, kt, vt) in zip(plan.groups, _tile_inputs(q, k, v, plan, qkv)):
        out = F.scaled_dot_product_attention(
            qt,
            kt,
            vt,
            attn_mask=_mask_for(g, B, dtype),
            dropout_p=dropout_p,
            is_causal=g.mask is None and g.causal,
            scale=scale,
        )
        outs.append(out)
    return _assemble(outs, plan, B)


def blocked_explicit(
    q: Tensor | None, k: Tensor, v: Tensor, plan: TilePlan, tile_scores, softmax: bool = True, dropout=None
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
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
    outs, weights, scores = [], [], []
    for g, (qt, kt, vt) in zip(plan.groups, _tile_inputs(q, k, v, plan)):
        s = tile_scores(qt, kt, g)
        mask = g.edge_mask() | ~g.owned.unsqueeze(-1)  # [T, Q, K]
        mask = mask.unsqueeze(1).repeat(B, 1, 1, 1) if B > 1 else mask.unsqueeze(1)
        if softmax:
            s = s.masked_fill(~mask, float("-inf"))
            # maxima and normalisers in float32 (at least), also for half-precision inputs
            wide = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
            top = wide.detach().amax(-1, keepdim=True)
            ex = torch.exp(wide - top)
            w = (ex / ex.sum(-1, keepdim=True)).to(s.dtype)
        else:
            w = s.masked_fill(~mask, 0.0)
        agg = w if dropout is None else dropout(w)
        outs.append(agg.to(vt.dtype) @ vt)  # scores of half inputs may come back in float32
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


def window_groups(
    num_nodes: int,
    window: int,
    causal: bool,
    dilation: int,
    device=None,
    global_mask: Tensor | None = None,
    global_nodes: Tensor | None = None,
) -> list[TileGroup]:
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
        return make_groups(q_index, k_index, q_ok, mask, n)
    is_global = torch.cat([global_mask, global_mask.new_zeros(1)])
    mask = mask & ~is_global[k_index].unsqueeze(-2)
    owned = q_ok & ~is_global[q_index]
    g_keys = global_nodes.expand(q_index.size(0), -1)  # [T, G]
    g_mask = owned.unsqueeze(-1).expand(-1, -1, global_nodes.numel())
    if causal:
        g_mask = g_mask & (global_nodes.view(1, 1, -1) <= q_index.unsqueeze(-1))
    window_part = make_groups(q_index, torch.cat([k_index, g_keys], 1), owned, torch.cat([mask, g_mask], 2), n)
    all_nodes = torch.arange(n, device=device).unsqueeze(0)  # [1, N]
    g_rows = global_nodes.unsqueeze(0)  # [1, G]
    g_owned = torch.ones_like(g_rows, dtype=torch.bool)
    full = (all_nodes.unsqueeze(-2) <= g_rows.unsqueeze(-1)) if causal else None
    return [*window_part, make_group(g_rows, all_nodes, g_owned, full, n)]


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
            groups.append(make_group(index, index, ok, None, total, causal=causal))
        else:
            mask = ok.unsqueeze(-2) & ok.unsqueeze(-1)
            if causal:
                mask = mask & torch.ones(hi, hi, dtype=torch.bool, device=device).tril()
            groups.append(make_group(index, index, ok, mask, total))
    return groups
