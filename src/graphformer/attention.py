"""GraphAttention: one attention layer for every graph.

Legend: B batch, N nodes (M targets / N sources in a bipartite graph),
E edges, H heads, C channels per head, d model width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from . import blocked, ops
from . import scores as _scores
from .scores import DotScore, Score, make_score
from .structure import (
    BlockDiagonal,
    SparseGraph,
    StructuredGraph,
    causal_mask,
    dense_graph,
    layer_self_loops,
    to_dense_batch,
)

__all__ = ["AttentionWeights", "GraphAttention"]

_FULL = (torch.float32, torch.float64)
# A score without a fused dense kernel builds [B, H, rows, N] (or [B, H, rows, N, C]) numbers for a block
# of target rows; blocks are sized to hold about this many.
_CHUNK_ELEMENTS = 1 << 24


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in _FULL else torch.float32


@dataclass
class AttentionWeights:
    """What a layer attended to, returned with ``return_attention=True``.

    Attributes:
        weights: ``[E, H]`` on the sparse path, in the order of
            :attr:`edge_index`; ``[B, H, M, N]`` on the dense path
            (``[H, M, N]`` for unbatched input).
        edge_index: the edges the weights belong to (self-loops the layer
            added included), or None on the dense path.
        scores: the raw scores before normalisation, same layout as
            ``weights`` (equal to ``weights`` for scores without softmax).
    """

    weights: Tensor
    edge_index: Tensor | None = None
    scores: Tensor | None = None


class GraphAttention(nn.Module):
    r"""Attention as message passing over the edges of a graph.

    For every edge :math:`j \to i` and head :math:`h`:

    .. math::
        s_{ij} = \mathrm{score}(q_i, k_j, e_{ij}) + b_{ij}, \qquad
        a_{ij} = \mathrm{softmax}_{j \in \mathcal{N}(i)}(s_{ij}), \qquad
        o_i = W_o \big\Vert_h \sum_{j \in \mathcal{N}(i)} a_{ij} v_j

    with :math:`q = x W_q`, :math:`k = x W_k`, :math:`v = x W_v`. Scores
    without softmax (``"gcn"``, ``"mean"``) use fixed weights instead.
    On the complete graph with the ``"dot"`` score this is exactly
    ``torch.nn.MultiheadAttention``; on a sparse graph it is PyG's
    ``TransformerConv`` (``"dot"``), ``GATConv`` (``"additive"``) or
    ``GCNConv`` (``"gcn"``).

    Two execution paths compute the same function. Without ``edge_index``
    (complete, causal, complete bipartite graphs) the dense path runs the
    ``"dot"`` and ``"rotary"`` scores on
    :func:`torch.nn.functional.scaled_dot_product_attention`, which never
    builds the N x N edges; the other scores build their scores as matrices
    (``[B, H, M, N]`` for additive / gcn / mean / sum, ``[B, H, M, N, C]``
    for gatv2 and function scores -- each score's docstring gives its cost),
    a block of target rows at a time on large graphs so that no more than
    about ``2**24`` such numbers exist at once (recomputed in the backward
    pass). With ``edge_index`` the sparse path scores edges with a
    sampled dense-dense product, normalises with a segment softmax and
    aggregates with a sparse-dense product, keeping ``O(E H)`` memory.
    A node with no incoming edge receives a zero message. The edges of a
    dense call (``causal``, ``key_padding_mask``, ``adjacency``) are one
    :class:`~graphformer.structure.DenseGraph`, built by
    :func:`~graphformer.structure.dense_graph`; the layer's ``self_loops``
    policy is :func:`~graphformer.structure.layer_self_loops`.

    Precision: with float16 / bfloat16 inputs (or under ``torch.autocast``)
    both paths take softmax maxima, normalisers and aggregation sums in
    float32; scores are kept in float32, weights and outputs in the input
    dtype.

    Args:
        d_model: width of the (target) node features.
        num_heads: number of heads H.
        score: a score name (see :mod:`graphformer.scores`) or a :class:`Score`.
        dropout: dropout on the attention weights.
        bias: with ``out_proj=True``, biases on the q/k/v and output
            projections (as ``nn.MultiheadAttention``); with ``out_proj=False``,
            one bias added after aggregation (as PyG's convs).
        kdim: width of the source node features in cross-attention
            (default ``d_model``).
        head_dim: channels per head C (default ``d_model // num_heads``).
        concat: concatenate the heads (``H*C`` outputs) or average them (``C``).
        out_proj: apply an output projection back to ``d_model``.
        root_weight: add a linear map of the target's own features
            (TransformerConv's skip, GAT's residual).
        edge_dim: width of edge features; they are projected per head and
            enter the score (and the values, for ``"dot"``).
        self_loops: ``None``, ``"add"`` (replace self-loops by one per node, as
            GAT) or ``"remaining"`` (add where missing, as GCN); sparse path only.
        vdim: width of the source features the values are read from, when
            they differ from the keys' (``nn.MultiheadAttention(vdim=...)``);
            such a layer is called with ``value=`` (default ``kdim``).
        beta: with ``root_weight``, gate the skip instead of adding it
            (TransformerConv's ``beta``): :math:`\beta_i = \sigma(w^\top [o_i \Vert r_i \Vert o_i - r_i])`,
            output :math:`\beta_i r_i + (1 - \beta_i) o_i` with :math:`r_i` the root term.
        fill_value: attribute of the self-loops the layer adds: a number, a
            tensor, or a reduction of the node's incoming attributes
            (``"mean"``, ``"add"``, ``"max"``, ``"min"``, ``"mul"``, see
            :func:`~graphformer.structure.add_self_loops`). Default:
            ``"mean"`` for edge features with ``self_loops="add"``, else 1.

    Shapes:
        - sparse: x ``[N, d]`` or ``([N, kdim], [M, d])``, edge_index ``[2, E]``
          -> ``[M, d]``
        - dense: x ``[B, N, d]`` or ``[N, d]`` (one graph) or a pair of such
          -> ``[B, M, d]`` / ``[M, d]``
        - with ``batch`` ``[N]`` and no edges: one complete graph per graph id.
        - without ``out_proj`` the last dimension is ``H*C`` (or ``C`` when
          ``concat=False``).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int = 1,
        score: str | Score = "dot",
        dropout: float = 0.0,
        bias: bool = True,
        *,
        kdim: int | None = None,
        head_dim: int | None = None,
        concat: bool = True,
        out_proj: bool = True,
        root_weight: bool = False,
        edge_dim: int | None = None,
        self_loops: str | None = None,
        vdim: int | None = None,
        beta: bool = False,
        fill_value: float | str | Tensor | None = None,
    ):
        super().__init__()
        for name, value in (("d_model", d_model), ("num_heads", num_heads)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if head_dim is None:
            if d_model % num_heads:
                raise ValueError(
                    f"d_model={d_model} is not divisible by num_heads={num_heads}; "
                    "pick num_heads dividing d_model or pass head_dim"
                )
            head_dim = d_model // num_heads
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if self_loops not in (None, "add", "remaining"):
            raise ValueError(f"self_loops must be None, 'add' or 'remaining', got {self_loops!r}")
        if beta and not root_weight:
            raise ValueError("beta gates the root term; build the layer with root_weight=True as well")
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, head_dim
        self.kdim = d_model if kdim is None else kdim
        self.vdim = self.kdim if vdim is None else vdim
        self.fill_value = fill_value
        self.dropout, self.concat, self.self_loops = dropout, concat, self_loops
        self.score = make_score(score, num_heads, head_dim, edge_dim)
        if edge_dim is not None and not self.score.uses_edge_features:
            raise ValueError(
                f"the {type(self.score).__name__} reads no edge features, so edge_dim={edge_dim} would "
                "build an edge projection that never gets a gradient; leave edge_dim out (the 'gcn', "
                "'mean' and 'sum' scores take edge_attr as one weight per edge, shape [E]) or use a "
                "score that reads edges ('dot', 'additive', 'gatv2', 'rotary')"
            )
        inner = num_heads * head_dim
        self.out_dim = inner if concat else head_dim
        proj_bias = bias and out_proj

        self.v_proj = nn.Linear(self.vdim, inner, bias=proj_bias)
        separate_query = not self.score.query_shares_value or kdim is not None
        self.q_proj = nn.Linear(d_model, inner, bias=proj_bias) if self.score.uses_query and separate_query else None
        self.k_proj = nn.Linear(self.kdim, inner, bias=proj_bias) if self.score.uses_key else None
        self.edge_proj = nn.Linear(edge_dim, inner, bias=False) if edge_dim is not None else None
        self.root = nn.Linear(d_model, self.out_dim, bias=bias and not out_proj) if root_weight else None
        self.lin_beta = nn.Linear(3 * self.out_dim, 1, bias=False) if beta else None
        self.out_proj = nn.Linear(self.out_dim, d_model, bias=bias) if out_proj else None
        self.bias = nn.Parameter(torch.zeros(self.out_dim)) if bias and not out_proj else None
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform weights and zero biases (as ``nn.MultiheadAttention``)."""
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.edge_proj, self.root, self.out_proj, self.lin_beta):
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight)
                if lin.bias is not None:
                    nn.init.zeros_(lin.bias)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.score.reset_parameters()

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}"

    # ------------------------------------------------------------------ call
    def forward(
        self,
        x: Tensor | tuple[Tensor, Tensor],
        edge_index: Tensor | SparseGraph | StructuredGraph | None = None,
        *,
        edge_attr: Tensor | None = None,
        batch: Tensor | tuple[Tensor, Tensor] | None = None,
        causal: bool = False,
        key_padding_mask: Tensor | None = None,
        attn_bias: Tensor | None = None,
        return_attention: bool = False,
        adjacency: Tensor | None = None,
        value: Tensor | None = None,
    ):
        """Attend along the edges of a graph (see the class docstring for the forms).

        Args:
            x: node features, or a pair ``(x_src, x_dst)`` for a bipartite graph.
            edge_index: ``[2, E]`` edges j -> i (or a prepared :class:`SparseGraph`, or a
                structure from :mod:`graphformer.structure` such as ``sliding_window``, run
                on dense tiles; x may then also be ``[B, N, d]``); None for the complete
                (bipartite) graph.
            edge_attr: per-edge features ``[E, edge_dim]`` (or weights ``[E]``).
            batch: graph id of each node for many graphs in one tensor (or a prepared
                ``structure.block_diagonal``); a pair ``(batch_src, batch_dst)`` for
                bipartite input.
            causal: attend only to positions j <= i (dense path).
            key_padding_mask: ``[B, N]`` bool, True marks a padded source node.
            attn_bias: additive score bias, broadcastable to ``[B, H, M, N]``
                (dense) or ``[E]`` / ``[E, H]`` (sparse).
            return_attention: also return an :class:`AttentionWeights` record.
            adjacency: a dense graph given by its adjacency matrix (dense path):
                bool, broadcastable to ``[B, H, M, N]``, ``adjacency[..., i, j]``
                True where the edge j -> i exists. Combines with ``causal``
                and ``key_padding_mask`` (an edge must pass all of them).
                Note torch's bool ``attn_mask`` means the opposite (True = not
                attended): pass ``~attn_mask``.
            value: source features the values are read from when they differ
                from the keys' (``mha(query, key, value)``), ``[B, N, vdim]``
                with ``x = (key, query)``; dense path only.
        """
        x_src, x_dst, bipartite = self._split(x)
        edge_index, batch, causal = self._route(edge_index, batch, causal, adjacency, value)
        if isinstance(edge_index, StructuredGraph):
            if causal or key_padding_mask is not None:
                raise ValueError(
                    "causal and key_padding_mask describe the complete graph; a structure "
                    "already fixes the edges (build it with causal=True for a decoder)"
                )
            out, att = self._structured(
                x_src, x_dst, edge_index, edge_attr, batch, attn_bias, bipartite, return_attention
            )
        elif edge_index is not None:
            if causal or key_padding_mask is not None:
                raise ValueError(
                    "causal and key_padding_mask describe the complete graph; with an explicit "
                    "edge_index leave them out and list the edges you want instead"
                )
            out, att = self._sparse(x_src, x_dst, edge_index, edge_attr, batch, attn_bias, bipartite, return_attention)
        elif batch is not None:
            out, att = self._batched_complete(x_src, x_dst, batch, bipartite, causal, attn_bias, return_attention)
        else:
            if edge_attr is not None:
                raise ValueError(
                    "edge_attr needs an explicit edge_index; on the complete graph "
                    "pass a structural bias as attn_bias instead"
                )
            out, att = self._dense(
                x_src,
                x_dst,
                bipartite,
                causal,
                key_padding_mask,
                attn_bias,
                return_attention,
                adjacency=adjacency,
                value=value,
            )
        return (out, att) if return_attention else out

    def _route(self, edge_index, batch, causal, adjacency, value):
        """Check which graph arguments go together; a prepared structure passed as ``batch`` becomes the graph."""
        if isinstance(batch, StructuredGraph) and edge_index is None:
            edge_index, batch = batch, None
            if causal and not getattr(edge_index, "causal", False):
                raise ValueError("causal=True with a non-causal prepared structure; build it with causal=True")
            causal = False
        if value is None and self.vdim != self.kdim:
            raise ValueError(
                f"the layer reads values of width vdim={self.vdim} != kdim={self.kdim}; pass them as value="
            )
        if (adjacency is not None or value is not None) and (edge_index is not None or batch is not None):
            raise ValueError(
                "adjacency and value are dense-path inputs; with edge_index or batch leave them out "
                "(list the edges in edge_index instead)"
            )
        return edge_index, batch, causal

    # ------------------------------------------------------------ plumbing
    def _split(self, x):
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ValueError(f"cross-attention takes x as a pair (x_src, x_dst), got {len(x)} tensors")
            x_src, x_dst = x
            bipartite = True
        else:
            x_src = x_dst = x
            bipartite = False
        for name, t, width in (
            ("x_src" if bipartite else "x", x_src, self.kdim),
            ("x_dst" if bipartite else "x", x_dst, self.d_model),
        ):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; use .float()")
            if t.dim() not in (2, 3):
                raise ValueError(f"{name} must be [N, d] or [B, N, d], got shape {tuple(t.shape)}")
            if t.size(-1) != width:
                raise ValueError(
                    f"{name} has {t.size(-1)} features but the layer expects {width} "
                    f"({'kdim' if t is x_src and bipartite else 'd_model'})"
                )
        if bipartite and x_src.dim() != x_dst.dim():
            raise ValueError(
                f"x_src and x_dst must both be [N, d] or both [B, N, d], got "
                f"{tuple(x_src.shape)} and {tuple(x_dst.shape)}"
            )
        return x_src, x_dst, bipartite

    def _heads(self, t: Tensor) -> Tensor:
        """[..., N, H*C] -> [..., H, N, C] (a view)."""
        return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-2, -3)

    def _project(self, x_src: Tensor, x_dst: Tensor, bipartite: bool, value: Tensor | None = None):
        """q [.., H, M, C] (or None), k [.., H, N, C], v [.., H, N, C] (v from ``value`` when given)."""
        q_lin = self.q_proj if self.q_proj is not None else self.v_proj
        if value is not None:
            if value.shape[:-1] != x_src.shape[:-1]:
                raise ValueError(
                    f"value must hold one row per key node, shape {tuple(x_src.shape[:-1])} + "
                    f"[vdim], got {tuple(value.shape)}"
                )
            v = self._heads(self.v_proj(value))
            q = self._heads(q_lin(x_dst)) if self.score.uses_query else None
            k = self._heads(self.k_proj(x_src)) if self.k_proj is not None else v
            return q, k, v
        if not bipartite and self.q_proj is not None and self.k_proj is not None:
            # one matmul for the three projections, as nn.MultiheadAttention does
            weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            b = None
            if self.v_proj.bias is not None:
                b = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            q, k, v = F.linear(x_src, weight, b).chunk(3, dim=-1)
            return self._heads(q), self._heads(k), self._heads(v)
        v = self._heads(self.v_proj(x_src))
        q = None
        if self.score.uses_query:
            q = v if (self.q_proj is None and not bipartite) else self._heads(q_lin(x_dst))
        k = self._heads(self.k_proj(x_src)) if self.k_proj is not None else v
        return q, k, v

    def _finish(self, out: Tensor, x_dst: Tensor) -> Tensor:
        """Merge heads [.., H, M, C] -> [.., M, out_dim], add root and project."""
        if self.concat:
            out = out.transpose(-2, -3).flatten(-2)
        else:
            out = out.mean(dim=-3)
        if self.root is not None:
            root = self.root(x_dst)
            if self.lin_beta is not None:  # TransformerConv's gated skip
                beta = torch.sigmoid(self.lin_beta(torch.cat([out, root, out - root], dim=-1)))
                out = beta * root + (1 - beta) * out
            else:
                out = out + root
        if self.out_proj is not None:
            return self.out_proj(out)
        return out if self.bias is None else out + self.bias

    # --------------------------------------------------------- sparse path
    def _sparse(self, x_src, x_dst, edge_index, edge_attr, batch, attn_bias, bipartite, return_attention):
        """Explicit edges: sampled scores, a segment softmax and a sparse-dense product (``O(E H)`` memory)."""
        if x_src.dim() != 2:
            raise ValueError(
                f"with edge_index, x must be [N, d] (stack graphs into one PyG-style batch), "
                f"got shape {tuple(x_src.shape)}"
            )
        if batch is not None and not isinstance(batch, (tuple, list)):
            _check_batch(batch, x_dst.size(0))
        graph, edge_attr = self._sparse_graph(edge_index, edge_attr, attn_bias, x_src.size(0), x_dst.size(0), bipartite)
        q, k, v = self._project(x_src, x_dst, bipartite)  # [H, M, C], [H, N, C], [H, N, C]
        edge = self._edge_features(edge_attr, graph)
        scores, weights = self._sparse_weights(q, k, v, graph, edge, attn_bias)  # [H, E] each
        out = self._finish(self._sparse_aggregate(graph, weights, v, edge), x_dst)
        if not return_attention:
            return out, None
        att = AttentionWeights(graph.to_edge_order(weights.t()), graph.edge_index, graph.to_edge_order(scores.t()))
        return out, att

    def _sparse_graph(self, edge_index, edge_attr, attn_bias, num_src, num_dst, bipartite):
        """The CSR layout of the call's edges, with the layer's self-loops, and ``edge_attr`` to match."""
        if isinstance(edge_index, SparseGraph):
            if (edge_index.num_src, edge_index.num_dst) != (num_src, num_dst):
                raise ValueError(
                    f"the SparseGraph was built for {edge_index.num_src} -> {edge_index.num_dst} "
                    f"nodes, but x has {num_src} -> {num_dst}"
                )
            return edge_index, edge_attr
        if self.self_loops is None:
            return SparseGraph.from_edge_index(edge_index, num_src, num_dst, bipartite=bipartite), edge_attr
        edge_index, edge_attr = layer_self_loops(
            edge_index, num_src, num_dst, edge_attr, self.self_loops, self.fill_value
        )
        if attn_bias is not None:
            raise ValueError(
                "attn_bias on edges cannot be combined with self_loops; add the loops to "
                "edge_index yourself and give them a bias"
            )
        # checked by layer_self_loops; the loops were appended, so the edges need sorting (no second look)
        graph = SparseGraph.from_edge_index(edge_index, num_src, num_dst, check=False, bipartite=bipartite, sort=True)
        return graph, edge_attr

    def _edge_features(self, edge_attr, graph):
        """``edge_attr`` in CSR order as the score reads it: features ``[H, E, C]``, weights ``[E]`` or None."""
        if edge_attr is None:
            return None
        if edge_attr.size(0) != graph.num_edges:
            raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but there are {graph.num_edges} edges")
        edge_attr = graph.to_csr_order(edge_attr)
        if self.edge_proj is not None:
            if edge_attr.dim() != 2 or edge_attr.size(1) != self.edge_proj.in_features:
                raise ValueError(
                    f"edge_attr must be [E, {self.edge_proj.in_features}] (edge_dim), got {tuple(edge_attr.shape)}"
                )
            return self._heads(self.edge_proj(edge_attr))  # [H, E, C]
        if edge_attr.dim() == 1:
            return edge_attr  # a scalar weight per edge
        raise ValueError("edge_attr with features needs the layer built with edge_dim=...")

    def _sparse_weights(self, q, k, v, graph, edge, attn_bias):
        """Scores ``[H, E]`` of the edges (CSR order) and their weights: a segment softmax, or the fixed weights."""
        scores = self.score.sparse(q, k, graph, edge)  # [H, E]
        if not self.score.softmax:
            if attn_bias is not None:
                raise ValueError(
                    f"attn_bias is added to softmax scores; the {type(self.score).__name__} has fixed weights"
                )
            return scores, scores
        if attn_bias is not None:
            scores = scores + _edge_bias(attn_bias, graph.num_edges, self.num_heads, graph)
        return scores, ops.segment_softmax(scores, graph, dtype=v.dtype)  # float32 sums, weights in v's dtype

    def _sparse_aggregate(self, graph, weights, v, edge):
        """``[H, M, C]``: the weighted sum of the values (and of the edge features, for ``"dot"``) per target."""
        dropped = F.dropout(weights, self.dropout, self.training)
        out = ops.spmm(graph, dropped, v)  # [H, M, C]
        if edge is not None and edge.dim() == 3 and self.score.edge_in_value:
            out = out + ops.segment_sum(edge * dropped.unsqueeze(-1), graph)
        return out

    # ---------------------------------------------------------- dense path
    def _dense(
        self,
        x_src,
        x_dst,
        bipartite,
        causal,
        key_padding_mask,
        attn_bias,
        return_attention,
        query_padding=None,
        adjacency=None,
        value=None,
    ):
        """Complete (bipartite) graphs, restricted by the masks of :func:`~graphformer.structure.dense_graph`."""
        unbatched = x_dst.dim() == 2
        if unbatched:
            x_src, x_dst, value, key_padding_mask = _add_batch_dim(x_src, x_dst, value, key_padding_mask)
        B, M, N = x_dst.size(0), x_dst.size(1), x_src.size(1)  # noqa: N806
        if x_src.size(0) != B:
            raise ValueError(f"x_src and x_dst have different batch sizes ({x_src.size(0)} and {B})")
        # the fused kernel applies a causal mask itself only without another mask (attn_bias is one)
        graph = dense_graph(
            B,
            M,
            N,
            causal=causal,
            key_padding_mask=key_padding_mask,
            query_padding=query_padding,
            adjacency=adjacency,
            fused_causal=self._sdpa_ok() and attn_bias is None,
            device=x_dst.device,
        )
        attn_bias = _dense_bias(attn_bias, M, N, x_dst.dtype)
        q, k, v = self._project(x_src, x_dst, bipartite, value)
        out, att = self._dense_kernel(q, k, v, graph, attn_bias, bipartite, return_attention)
        if graph.empty is not None:  # a target with no incoming edge receives nothing
            out, att = _zero_rows(out, att, graph.empty)
        out = self._finish(out, x_dst)
        return _drop_batch_dim(out, att) if unbatched else (out, att)

    def _dense_kernel(self, q, k, v, graph, attn_bias, bipartite, return_attention):
        """Pick the kernel: fused SDPA, blocks of target rows, or the explicit ``[B, H, M, N]`` reference."""
        if not return_attention and self._sdpa_ok():
            q, k = self.score.transform(q, k)
            out = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=graph.kernel_mask(attn_bias),
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=graph.is_causal,
                scale=self.score.scale,
            )
            return out, None
        if self.score.softmax:
            edges = graph.edge_mask(v.device)
        else:  # fixed weights read M, N and the degrees off the full edge pattern
            edges = graph.pattern(v.size(0), self.num_heads, v.device)
        blocks = self.score.softmax and self.score.row_blocks and q is not None and not return_attention
        rows = self._chunk_rows(q, k) if blocks else graph.num_dst
        if rows < graph.num_dst:
            return self._dense_chunked(q, k, v, edges, attn_bias, rows), None
        return self._dense_explicit(q, k, v, edges, attn_bias, bipartite)

    def _sdpa_ok(self) -> bool:
        return isinstance(self.score, DotScore) and type(self.score).dense is DotScore.dense

    def _dense_explicit(self, q, k, v, allowed, attn_bias, bipartite=False):
        """The readable reference: every score and weight as a [B, H, M, N] matrix."""
        if self.score.softmax:
            scores = self.score.dense(q, k, None)
            if attn_bias is not None:
                scores = scores + attn_bias
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            if scores.size(-1) == 0:  # no source nodes: amax has nothing to reduce
                top = scores.new_zeros(scores.shape[:-1] + (1,))
            else:
                top = scores.detach().amax(-1, keepdim=True)
            top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
            ex = torch.exp(scores.to(_work_dtype(scores.dtype)) - top)  # maxima and normalisers in float32
            weights = ex / ex.sum(-1, keepdim=True).clamp(min=torch.finfo(ex.dtype).tiny)
            if v.dtype not in _FULL:  # half-precision weights, as on the sparse path
                weights = weights.to(v.dtype)
        else:
            if attn_bias is not None:
                raise ValueError(
                    f"attn_bias is added to softmax scores; the {type(self.score).__name__} has fixed weights"
                )
            scores = weights = self.score.dense(q, k, allowed, bipartite=bipartite)
        out = F.dropout(weights, self.dropout, self.training) @ v
        return out, AttentionWeights(weights, None, scores)

    def _chunk_rows(self, q, k) -> int:
        """Target rows per block so that a block's pairwise scores hold about ``_CHUNK_ELEMENTS`` numbers."""
        B, H, N, C = k.shape  # noqa: N806
        per_row = B * H * N * (C if self.score.pairwise_channels else 1)
        return max(1, _CHUNK_ELEMENTS // max(per_row, 1))

    def _dense_chunked(self, q, k, v, allowed, attn_bias, rows):
        """Softmax scores without a fused kernel, ``rows`` targets at a time (exact: each row is its own softmax).

        Under autograd every block is checkpointed, so its ``[B, H, rows, N(, C)]`` intermediates are
        recomputed in the backward pass instead of kept.
        """
        M = q.size(-2)  # noqa: N806

        def block(q_rows, allowed_rows, bias_rows):
            return self._dense_explicit(q_rows, k, v, allowed_rows, bias_rows)[0]

        def rows_of(t, i):
            return t if t is None or t.size(-2) == 1 else t[..., i : i + rows, :]

        outs = []
        for i in range(0, M, rows):
            args = (q[..., i : i + rows, :], rows_of(allowed, i), rows_of(attn_bias, i))
            if torch.is_grad_enabled():
                outs.append(torch.utils.checkpoint.checkpoint(block, *args, use_reentrant=False))
            else:
                outs.append(block(*args))
        return torch.cat(outs, dim=-2)

    # ------------------------------------------------------ blocked path
    def _tile_kind(self) -> str | None:
        """How the blocked path runs this score: "sdpa", "explicit", "fixed", or None (sparse fallback)."""
        if self._sdpa_ok():
            return "sdpa"
        if type(self.score) in (_scores.AdditiveScore, _scores.GATv2Score, _scores.FunctionScore):
            return "explicit"  # per-pair scores: their dense form applies to a tile as to the whole graph
        if type(self.score) in (_scores.GCNScore, _scores.MeanScore, _scores.SumScore):
            return "fixed"
        return None

    def _structured(self, x_src, x_dst, graph, edge_attr, batch, attn_bias, bipartite, return_attention):
        """A structured graph on dense tiles (:mod:`graphformer.blocked`); equal to the sparse path on its edges."""
        n = graph.num_nodes
        if x_src.size(-2) != n or x_dst.size(-2) != n:
            raise ValueError(
                f"the structure has {graph.num_nodes} nodes but x has {x_src.size(-2)} -> "
                f"{x_dst.size(-2)}; build it for the number of rows of x"
            )
        kind = self._tile_kind()
        if (
            kind is None
            or edge_attr is not None
            or attn_bias is not None
            or bipartite
            or (self.self_loops == "add" and return_attention)
        ):
            return self._structured_on_edges(
                x_src, x_dst, graph, edge_attr, batch, attn_bias, bipartite, return_attention
            )
        if batch is not None:
            _check_batch(batch, n)
        graph = graph.to(x_dst.device)
        unbatched = x_dst.dim() == 2
        xs = x_src.unsqueeze(0) if unbatched else x_src
        if self._tiles_fuse_qkv(kind, n, return_attention):
            out, att = self._tiles_fused(xs, graph.plan), None
        else:
            out, att = self._tiles(xs, graph, kind, return_attention)
        out = self._finish(out, xs)
        return _drop_batch_dim(out, att) if unbatched else (out, att)

    def _structured_on_edges(self, x_src, x_dst, graph, edge_attr, batch, attn_bias, bipartite, return_attention):
        """A structure this call cannot run on tiles: its edges on the sparse path."""
        if x_src.dim() != 2:
            raise ValueError(
                "a structure with [B, N, d] input runs on dense tiles, which this call cannot "
                "use (edge_attr, attn_bias, cross-attention or a score without a tiled form); "
                "pass x as [N, d]"
            )
        # every structure holds all self-loops, so self_loops changes the order of the edges, not the graph
        edges = graph.edge_index if self.self_loops is not None else graph.to(x_dst.device).sparse_graph
        return self._sparse(x_src, x_dst, edges, edge_attr, batch, attn_bias, bipartite, return_attention)

    def _tiles_fuse_qkv(self, kind, num_nodes, return_attention) -> bool:
        """Whether the tiles can read q, k, v from one fused projection (the plain dot score, no weights kept)."""
        return bool(
            kind == "sdpa"
            and not return_attention
            and num_nodes
            and self.q_proj is not None
            and self.k_proj is not None
            and type(self.score).transform is DotScore.transform
        )

    def _tiles_fused(self, xs, plan):
        """``[B, H, N, C]``: fused-kernel tiles fed by one matmul for q, k and v."""
        B, n = xs.size(0), xs.size(1)  # noqa: N806
        weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        b = None if self.v_proj.bias is None else torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
        qkv = F.linear(xs, weight, b).view(B, n, 3, self.num_heads, self.head_dim)  # [B, N, 3, H, C]
        return blocked.blocked_attention(
            None, None, None, plan, self.score.scale, self.dropout if self.training else 0.0, qkv=qkv
        )

    def _tiles(self, xs, graph, kind, return_attention):
        """``[B, H, N, C]`` and the weights on the structure's edges: fused tiles, or explicit tile scores."""
        q, k, v = self._project(xs, xs, False)  # [B, H, N, C]
        if graph.num_nodes == 0:
            att = None
            if return_attention:
                empty = v.new_zeros(v.size(0), 0, self.num_heads)
                att = AttentionWeights(empty, graph.edge_index, empty)
            return v, att
        if kind == "sdpa" and not return_attention:
            q, k = self.score.transform(q, k)
            out = blocked.blocked_attention(
                q, k, v, graph.plan, self.score.scale, self.dropout if self.training else 0.0
            )
            return out, None
        return self._tiles_explicit(q, k, v, graph, kind, return_attention)

    def _tiles_explicit(self, q, k, v, graph, kind, return_attention):
        """Tiles whose scores (or fixed weights) are built as matrices; the weights mapped back to edges."""
        plan, softmax = graph.plan, self.score.softmax
        if kind == "sdpa":
            q, k = self.score.transform(q, k)
            scale = self.score.scale
            tile_scores = lambda qt, kt, g: (qt * scale) @ kt.transpose(-1, -2)  # noqa: E731
        elif kind == "explicit":
            tile_scores = lambda qt, kt, g: self.score.dense(qt, kt, None)  # noqa: E731
        else:
            tile_scores = self._fixed_tile_weights(plan, v)
        if not self.score.uses_query:
            q = None
        out, w_tiles, s_tiles = blocked.blocked_explicit(
            q, k, v, plan, tile_scores, softmax, lambda w: F.dropout(w, self.dropout, self.training)
        )
        if not return_attention:
            return out, None
        B = v.size(0)  # noqa: N806
        weights = blocked.tile_weights_to_edges(w_tiles, plan, B)
        scores = blocked.tile_weights_to_edges(s_tiles, plan, B) if softmax else weights
        return out, AttentionWeights(weights, graph.edge_index, scores)

    def _fixed_tile_weights(self, plan, like: Tensor):
        """Tile weights of the fixed scores (gcn, mean, sum) from the structure's in-degrees."""
        deg = torch.cat([plan.in_degree(), plan.in_degree().new_zeros(1)]).to(like.dtype)  # [N + 1]
        heads = self.num_heads
        kind = type(self.score)

        def weights(qt, kt, g):
            T, Q, K = g.shape  # noqa: N806
            B = kt.size(0) // T  # noqa: N806
            if kind is _scores.GCNScore:
                inv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
                w = inv[g.q_index].unsqueeze(-1) * inv[g.k_index].unsqueeze(-2)  # [T, Q, K]
            elif kind is _scores.MeanScore:
                w = deg.reciprocal().masked_fill(deg == 0, 0.0)[g.q_index].unsqueeze(-1).expand(T, Q, K)
            else:
                w = deg.new_ones(T, Q, K)
            return w.unsqueeze(1).expand(T, heads, Q, K).repeat(B, 1, 1, 1)

        return weights

    # ---------------------------------------------- many complete graphs
    def _batched_complete(self, x_src, x_dst, batch, bipartite, causal, attn_bias, return_attention):
        """One complete graph per graph id: the block-diagonal structure on the blocked path.

        Cross-attention between graphs, a dense ``attn_bias`` ``[B, H, N_max, N_max]``
        and ``return_attention`` (weights ``[B, H, N_max, N_max]``) keep the padded
        layout. Under ``torch.compile`` a raw ``batch`` vector cannot be laid out
        without reading sizes back from the device, so it runs one masked
        ``N x N`` product; pass a prepared :func:`~graphformer.structure.block_diagonal`
        as ``batch`` (or as the graph) to compile the tiled path.
        """
        if bipartite or attn_bias is not None or return_attention or isinstance(batch, (tuple, list)):
            return self._padded_complete(x_src, x_dst, batch, bipartite, causal, attn_bias, return_attention)
        if x_src.dim() != 2:
            raise ValueError(f"with batch, x must be [N, d], got shape {tuple(x_src.shape)}")
        if torch.compiler.is_compiling():
            _check_batch(batch, x_src.size(0))
            return self._masked_complete(x_src, batch, causal), None
        _check_batch(batch, x_src.size(0), packed=True)
        graph = BlockDiagonal(torch.bincount(batch.long()), causal=causal, device=x_src.device)
        return self._structured(x_src, x_dst, graph, None, None, None, False, False)

    def _masked_complete(self, x, batch, causal):
        """Many complete graphs as one ``[N, N]`` masked product (no host reads; ``O(N^2)``)."""
        n = x.size(0)
        allowed = batch.unsqueeze(-1) == batch.unsqueeze(-2)  # [N, N], True = same graph
        if causal:
            allowed = allowed & causal_mask(n, n, x.device)
        q, k, v = self._project(x.unsqueeze(0), x.unsqueeze(0), False)  # [1, H, N, C]
        if self._sdpa_ok():
            q, k = self.score.transform(q, k)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0, scale=self.score.scale
            )
        else:
            out, _ = self._dense_explicit(q, k, v, allowed.expand(1, self.num_heads, n, n), None)
        return self._finish(out, x.unsqueeze(0)).squeeze(0)

    def _padded_complete(self, x_src, x_dst, batch, bipartite, causal, attn_bias, return_attention):
        """Many complete (bipartite) graphs packed into a padded ``[B, N_max, d]`` batch for the dense path."""
        batch_src, batch_dst = batch if isinstance(batch, (tuple, list)) else (batch, batch)
        if x_src.dim() != 2:
            raise ValueError(f"with batch, x must be [N, d], got shape {tuple(x_src.shape)}")
        _check_batch(batch_src, x_src.size(0), "batch_src" if bipartite else "batch", packed=True)
        _check_batch(batch_dst, x_dst.size(0), "batch_dst" if bipartite else "batch", packed=True)
        ids = [b.max() for b in (batch_src, batch_dst) if b.numel()]  # a side may have no nodes at all
        num_graphs = int(torch.stack(ids).max()) + 1 if ids else 0
        dense_src, pad_src = to_dense_batch(x_src, batch_src, num_graphs)
        dense_dst, pad_dst = to_dense_batch(x_dst, batch_dst, num_graphs) if bipartite else (dense_src, pad_src)
        out, att = self._dense(
            dense_src,
            dense_dst,
            bipartite,
            causal,
            pad_src,
            attn_bias,
            return_attention,
            query_padding=pad_dst if bipartite else None,
        )
        return out[~pad_dst], att

    # ------------------------------------------- incremental decoding
    def step(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None, *, window: int | None = None):
        r"""Causal self-attention for ``T`` new nodes appended to a graph that already has cached ones.

        Incremental decoding as a growing graph: each new node i receives an
        edge from every earlier node j (cached or new, j <= i) and, with
        ``window=W``, only from the last ones, :math:`0 \le i - j \le W`. The
        cache ``past = (k, v)`` holds the earlier nodes' keys and values, so
        they are never recomputed. Running ``step`` on a whole sequence with
        ``past=None`` equals ``forward(x, causal=True)`` (or the causal
        sliding-window graph); feeding the same nodes one at a time gives the
        same outputs.

        Args:
            x: the new nodes ``[B, T, d]``.
            past: keys and values of the earlier nodes, each ``[B, H, L, C]``,
                in node order (the last one is the newest), or None; or a
                cache object whose ``extend(k, v)`` appends the new nodes' keys
                and values and returns all of them (a preallocated buffer).
            window: keep edges from at most the ``W`` previous nodes.

        Returns:
            ``(out, (k, v))``: ``out`` ``[B, T, d]`` and the keys and values of
            the earlier and new nodes, ``[B, H, L + T, C]`` (trim them yourself,
            e.g. to the last ``W`` for a window).
        """
        if (
            not self._sdpa_ok()
            or type(self.score).transform is not DotScore.transform
            or self.q_proj is None
            or self.k_proj is None
        ):
            raise ValueError(
                "step (cached decoding) needs the plain 'dot' score (position-free queries and "
                f"keys) with query and key projections, got {type(self.score).__name__}"
            )
        if not isinstance(x, Tensor) or x.dim() != 3 or x.size(-1) != self.d_model:
            raise ValueError(
                f"step takes new nodes x [B, T, {self.d_model}], got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        if window is not None and (not isinstance(window, int) or window < 0):
            raise ValueError(f"window must be an int >= 0 (edges from the W previous nodes), got {window!r}")
        if x.size(-2) <= 8:  # a few new nodes: three small products beat concatenating the weights
            q, k, v = (
                self._heads(F.linear(x, lin.weight, lin.bias)) for lin in (self.q_proj, self.k_proj, self.v_proj)
            )
        else:
            q, k, v = self._project(x, x, False)  # [B, H, T, C] each
        if past is not None and callable(getattr(past, "extend", None)):
            k, v = past.extend(k, v)  # a preallocated cache appends in place: [B, H, L+T, C]
        elif past is not None:
            k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)  # [B, H, L+T, C]
        T, S = q.size(-2), k.size(-2)  # noqa: N806  T new targets, S = L + T sources
        L = S - T  # noqa: N806
        mask, is_causal = None, False
        if T > 1 or (window is not None and S - 1 > window):
            i = torch.arange(L, S, device=x.device).unsqueeze(1)  # positions of the new nodes
            j = torch.arange(S, device=x.device).unsqueeze(0)
            mask = j <= i
            if window is not None:
                mask = mask & (i - j <= window)
            if L == 0 and window is None:
                mask, is_causal = None, True
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.score.scale,
        )
        return self._finish(out, x), (k, v)


def _check_batch(batch, num_nodes: int, name: str = "batch", packed: bool = False) -> None:
    if not isinstance(batch, Tensor) or batch.dtype not in (torch.long, torch.int):
        raise TypeError(f"{name} must be an integer tensor of graph ids, one per node")
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"{name} must have shape [{num_nodes}] (one graph id per node), got {tuple(batch.shape)}")
    if (
        packed
        and batch.numel()
        and not torch.compiler.is_compiling()
        and (int(batch[0]) < 0 or bool((batch[1:] < batch[:-1]).any()))
    ):
        raise ValueError(
            f"{name} must hold graph ids >= 0 in increasing order, the nodes of each graph "
            "contiguous (as in a PyG Batch); sort the nodes by graph id"
        )


def _edge_bias(attn_bias: Tensor, num_edges: int, num_heads: int, graph: SparseGraph) -> Tensor:
    if (
        attn_bias.size(0) != num_edges
        or attn_bias.dim() > 2
        or (attn_bias.dim() == 2 and attn_bias.size(1) not in (1, num_heads))
    ):
        raise ValueError(
            f"with edge_index, attn_bias must be [E] or [E, H] = [{num_edges}, {num_heads}], "
            f"got {tuple(attn_bias.shape)}"
        )
    bias = graph.to_csr_order(attn_bias)
    return bias.t() if bias.dim() == 2 else bias.unsqueeze(0)


def _add_batch_dim(x_src, x_dst, value, key_padding_mask):
    """One graph ``[N, d]`` as a batch of one ``[1, N, d]`` (a ``[N]`` key padding mask as ``[1, N]``)."""
    value = None if value is None else value.unsqueeze(0)
    if key_padding_mask is not None and key_padding_mask.dim() == 1:
        key_padding_mask = key_padding_mask.unsqueeze(0)
    return x_src.unsqueeze(0), x_dst.unsqueeze(0), value, key_padding_mask


def _drop_batch_dim(out: Tensor, att: AttentionWeights | None):
    """Undo :func:`_add_batch_dim` on a layer's output and weights."""
    if att is not None:
        att = AttentionWeights(att.weights.squeeze(0), att.edge_index, att.scores.squeeze(0))
    return out.squeeze(0), att


def _zero_rows(out: Tensor, att: AttentionWeights | None, empty: Tensor):
    """Zero the messages (and weights) of targets with no incoming edge; the kernel saw those rows opened."""
    out = out.masked_fill(empty, 0.0)
    if att is not None:  # a target with no incoming edge attends to nothing
        att = AttentionWeights(att.weights.masked_fill(empty, 0.0), None, att.scores)
    return out, att


def _dense_bias(attn_bias: Tensor | None, num_dst: int, num_src: int, dtype: torch.dtype) -> Tensor | None:
    """``attn_bias`` of the dense path in the inputs' dtype, checked to end in ``[M, N]``."""
    if attn_bias is None:
        return None
    attn_bias = attn_bias.to(dtype)
    if attn_bias.dim() < 2 or attn_bias.shape[-2:] != (num_dst, num_src):
        raise ValueError(
            f"attn_bias must end in [M, N] = [{num_dst}, {num_src}] and broadcast to [B, H, M, N], "
            f"got {tuple(attn_bias.shape)}"
        )
    return attn_bias
