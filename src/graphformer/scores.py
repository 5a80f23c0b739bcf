"""Score functions: how much target i listens to source j along edge j -> i.

"Change how attention is computed and you have a new transformer": the layer
(:class:`~graphformer.GraphAttention`) is fixed, the score is a small object
chosen by name.

================  ==========================================================  =========
name              score s_ij                                                  softmax
================  ==========================================================  =========
``"dot"``         q_i . (k_j + e_ij) / sqrt(C)     (Transformer, TransformerConv)  yes
``"additive"``    LeakyReLU(a_dst . q_i + a_src . v_j + a_e . e_ij)      (GAT)    yes
``"gatv2"``       a . LeakyReLU(q_i + v_j + e_ij)                      (GATv2)    yes
``"gcn"``         w_ij / sqrt(d_i d_j), d = weighted in-degree       (GCN)    no
``"mean"``        w_ij / d_i                                          (mean)   no
``"sum"``         w_ij                                                 (sum)    no
================  ==========================================================  =========

A new score is a function of a query and a key registered under a name::

    import torch.nn.functional as F
    import graphformer as gf

    @gf.register_score("cosine")
    def cosine(q, k):                      # q [..., C], k [..., C] broadcast
        return 10.0 * F.cosine_similarity(q, k, dim=-1)

    attn = gf.GraphAttention(64, num_heads=4, score="cosine")

A score with parameters subclasses :class:`Score` and is registered the same
way (``register_score("name")(MyScore)``); its constructor receives
``num_heads``, ``head_dim`` and ``edge_dim``.

Legend: B batch, H heads, M target nodes, N source nodes, E edges, C channels per head.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops

__all__ = [
    "AdditiveScore",
    "DotScore",
    "FunctionScore",
    "GATv2Score",
    "GCNScore",
    "MeanScore",
    "Score",
    "SumScore",
    "available_scores",
    "make_score",
    "register_score",
]


class Score(nn.Module):
    """Base class of score functions.

    Class attributes say which projections the layer must compute:

    * ``softmax``: scores are normalised with a softmax over incoming edges;
      otherwise :meth:`sparse`/:meth:`dense` return the final weights.
    * ``uses_query`` / ``uses_key``: the score reads q_i / k_j. A score with
      ``uses_key = False`` that reads the source side reads the values v_j.
    * ``query_shares_value``: q_i comes from the value projection when the
      layer has a single node set (GAT's shared weight matrix).
    * ``edge_in_value``: projected edge features are added to the values
      (TransformerConv) as well as used in the score.
    * ``formula``: the score (or fixed weight) of edge j -> i without edge
      features, as plain text; ``graphformer explain`` prints and draws it.
    """

    softmax: bool = True
    uses_query: bool = True
    uses_key: bool = True
    query_shares_value: bool = False
    edge_in_value: bool = False
    formula: str | None = None

    def sparse(self, q: Tensor | None, k: Tensor | None, graph, edge: Tensor | None) -> Tensor:
        """Scores of every edge, ``[H, E]`` in the graph's CSR order.

        Args:
            q: target features ``[H, M, C]`` (or None when unused).
            k: source features ``[H, N, C]`` (the values when ``uses_key`` is False).
            graph: :class:`~graphformer.structure.SparseGraph`.
            edge: projected edge features ``[H, E, C]`` in CSR order, or a
                scalar edge weight ``[E]``, or None.
        """
        raise NotImplementedError

    def dense(self, q: Tensor | None, k: Tensor | None, mask: Tensor | None, bipartite: bool = False) -> Tensor:
        """Scores of the complete (bipartite) graph, ``[B, H, M, N]``.

        ``mask`` (bool, broadcastable to ``[B, H, M, N]``, True = edge exists)
        and ``bipartite`` (two node sets) are given to scores without softmax,
        which must return masked weights.
        """
        raise NotImplementedError


class DotScore(Score):
    r"""Scaled dot product, :math:`s_{ij} = q_i^\top (k_j + e_{ij}) / \sqrt{C}`."""

    formula = "s_ij = q_i . k_j / sqrt(C)"

    edge_in_value = True

    def __init__(self, num_heads: int, head_dim: int, edge_dim: int | None = None):
        super().__init__()
        self.scale = 1.0 / math.sqrt(head_dim)

    def transform(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Map queries and keys before the product (identity; rotary positions rotate them).

        A subclass that only overrides this keeps the fused SDPA kernel on the dense path.
        """
        return q, k

    def sparse(self, q, k, graph, edge):
        q, k = self.transform(q, k)
        q = q * self.scale
        s = ops.sddmm(graph, q, k)
        if _edge_features(edge, "dot") is not None:
            s = s + (q.index_select(1, graph.row) * edge).sum(-1)
        return s

    def dense(self, q, k, mask, bipartite=False):
        q, k = self.transform(q, k)
        return (q * self.scale) @ k.transpose(-1, -2)


class AdditiveScore(Score):
    r"""GAT's score, :math:`s_{ij} = \mathrm{LeakyReLU}(a_{dst}^\top q_i + a_{src}^\top v_j + a_e^\top e_{ij})`.

    Only two numbers per node and head are computed before the edges are
    touched, so the score costs ``O(E H)``.
    """

    formula = "s_ij = LeakyReLU(a_dst . q_i + a_src . v_j)   (GAT; q_i = v_i on one node set)"

    uses_key = False
    query_shares_value = True

    def __init__(self, num_heads: int, head_dim: int, edge_dim: int | None = None,
                 negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.att_src = nn.Parameter(torch.empty(num_heads, head_dim))
        self.att_dst = nn.Parameter(torch.empty(num_heads, head_dim))
        self.att_edge = nn.Parameter(torch.empty(num_heads, head_dim)) if edge_dim is not None else None
        self.reset_parameters()

    def reset_parameters(self):
        for p in (self.att_src, self.att_dst, self.att_edge):
            if p is not None:
                nn.init.xavier_uniform_(p.unsqueeze(0))

    def sparse(self, q, k, graph, edge):
        alpha_src = (k * self.att_src.unsqueeze(1)).sum(-1)  # [H, N]
        alpha_dst = (q * self.att_dst.unsqueeze(1)).sum(-1)  # [H, M]
        s = alpha_src.index_select(1, graph.col) + alpha_dst.index_select(1, graph.row)
        if _edge_features(edge, "additive") is not None and self.att_edge is not None:
            s = s + (edge * self.att_edge.unsqueeze(1)).sum(-1)
        return F.leaky_relu(s, self.negative_slope)

    def dense(self, q, k, mask, bipartite=False):
        alpha_src = (k * self.att_src.unsqueeze(1)).sum(-1)  # [B, H, N]
        alpha_dst = (q * self.att_dst.unsqueeze(1)).sum(-1)  # [B, H, M]
        return F.leaky_relu(alpha_dst.unsqueeze(-1) + alpha_src.unsqueeze(-2), self.negative_slope)


class GATv2Score(Score):
    r"""GATv2's score, :math:`s_{ij} = a^\top \mathrm{LeakyReLU}(q_i + v_j + e_{ij})`."""

    formula = "s_ij = a . LeakyReLU(q_i + v_j)   (GATv2)"

    uses_key = False

    def __init__(self, num_heads: int, head_dim: int, edge_dim: int | None = None,
                 negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.att = nn.Parameter(torch.empty(num_heads, head_dim))
        nn.init.xavier_uniform_(self.att.unsqueeze(0))

    def sparse(self, q, k, graph, edge):
        h = q.index_select(1, graph.row) + k.index_select(1, graph.col)  # [H, E, C]
        if _edge_features(edge, "gatv2") is not None:
            h = h + edge
        return (F.leaky_relu(h, self.negative_slope) * self.att.unsqueeze(1)).sum(-1)

    def dense(self, q, k, mask, bipartite=False):
        h = q.unsqueeze(-2) + k.unsqueeze(-3)  # [B, H, M, N, C]
        return (F.leaky_relu(h, self.negative_slope) * self.att[:, None, None, :]).sum(-1)


def _edge_features(edge: Tensor | None, name: str) -> Tensor | None:
    if edge is not None and edge.dim() != 3:
        raise ValueError(f"the {name!r} score takes edge features, not one weight per edge: build the layer "
                         f"with edge_dim=... and pass edge_attr of shape [E, edge_dim] (got {tuple(edge.shape)})")
    return edge


def _edge_weight(edge: Tensor | None, num_edges: int, like: Tensor) -> Tensor:
    if edge is None:
        return like.new_ones(num_edges)
    if edge.dim() != 1:
        raise ValueError("the 'gcn' and 'mean' scores take edge_attr as one weight per edge, shape [E]; "
                         f"got shape {tuple(edge.shape)}")
    return edge


def _inv(x: Tensor, power: float) -> Tensor:
    out = x.pow(-power)
    return out.masked_fill(x == 0, 0.0)


class GCNScore(Score):
    r"""Fixed GCN weights, :math:`a_{ij} = w_{ij} / \sqrt{d_i d_j}` with :math:`d` the weighted in-degree.

    For a plain graph d_j is node j's in-degree, as in PyG's ``gcn_norm``;
    for a bipartite graph (two node sets) it is source j's out-degree.
    No softmax: on the complete graph with self-loops every weight is 1/N.
    """

    formula = "a_ij = 1 / sqrt(d_i d_j)   (d = in-degree)"

    softmax = False
    uses_query = False
    uses_key = False

    def __init__(self, num_heads: int = 1, head_dim: int = 1, edge_dim: int | None = None):
        super().__init__()

    def sparse(self, q, k, graph, edge):
        H = k.size(0)  # noqa: N806
        w = _edge_weight(edge, graph.num_edges, k)
        deg_dst = graph.in_degree(w)
        if not graph.bipartite:
            deg_src = deg_dst
        else:
            deg_src = w.new_zeros(graph.num_src).index_add_(0, graph.col, w)
        weights = _inv(deg_dst, 0.5)[graph.row] * w * _inv(deg_src, 0.5)[graph.col]
        return weights.expand(H, -1)

    def dense(self, q, k, mask, bipartite=False):
        M, N = (q.size(-2) if q is not None else k.size(-2)), k.size(-2)  # noqa: N806
        if mask is None:
            mask = torch.ones(M, N, dtype=torch.bool, device=k.device)
        w = mask.to(k.dtype)
        deg_dst = w.sum(-1)  # [..., M]
        deg_src = w.sum(-2) if bipartite else deg_dst
        return _inv(deg_dst, 0.5).unsqueeze(-1) * w * _inv(deg_src, 0.5).unsqueeze(-2)


class MeanScore(Score):
    r"""Mean over in-neighbours, :math:`a_{ij} = w_{ij} / d_i`."""

    formula = "a_ij = 1 / d_i   (d = in-degree)"

    softmax = False
    uses_query = False
    uses_key = False

    def __init__(self, num_heads: int = 1, head_dim: int = 1, edge_dim: int | None = None):
        super().__init__()

    def sparse(self, q, k, graph, edge):
        w = _edge_weight(edge, graph.num_edges, k)
        return (w * _inv(graph.in_degree(w), 1.0)[graph.row]).expand(k.size(0), -1)

    def dense(self, q, k, mask, bipartite=False):
        M, N = (q.size(-2) if q is not None else k.size(-2)), k.size(-2)  # noqa: N806
        if mask is None:
            mask = torch.ones(M, N, dtype=torch.bool, device=k.device)
        w = mask.to(k.dtype)
        return w * _inv(w.sum(-1, keepdim=True), 1.0)


class SumScore(Score):
    r"""Unnormalised sum over in-neighbours, :math:`a_{ij} = w_{ij}` (1 without edge weights).

    The aggregation of ``GCNConv(normalize=False)``: each target adds up its
    (weighted) incoming messages.
    """

    formula = "a_ij = 1   (each target adds up its in-neighbours)"

    softmax = False
    uses_query = False
    uses_key = False

    def __init__(self, num_heads: int = 1, head_dim: int = 1, edge_dim: int | None = None):
        super().__init__()

    def sparse(self, q, k, graph, edge):
        return _edge_weight(edge, graph.num_edges, k).expand(k.size(0), -1)

    def dense(self, q, k, mask, bipartite=False):
        M, N = (q.size(-2) if q is not None else k.size(-2)), k.size(-2)  # noqa: N806
        return (torch.ones(M, N, dtype=torch.bool, device=k.device) if mask is None else mask).to(k.dtype)


class FunctionScore(Score):
    """A score given as a function ``fn(q_i, k_j) -> s_ij`` on broadcastable ``[..., C]`` tensors."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], softmax: bool = True):
        super().__init__()
        self.fn = fn
        self.softmax = softmax

    def sparse(self, q, k, graph, edge):
        return self.fn(q.index_select(1, graph.row), k.index_select(1, graph.col))

    def dense(self, q, k, mask, bipartite=False):
        s = self.fn(q.unsqueeze(-2), k.unsqueeze(-3))
        return s if self.softmax or mask is None else s * mask

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


_REGISTRY: dict[str, Callable[..., Score]] = {
    "dot": DotScore,
    "additive": AdditiveScore,
    "gat": AdditiveScore,
    "gatv2": GATv2Score,
    "gcn": GCNScore,
    "mean": MeanScore,
    "sum": SumScore,
}


def register_score(name: str, fn: Callable | None = None, *, softmax: bool = True):
    """Register a score under ``name``; usable as ``register_score(name, fn)`` or as a decorator.

    ``fn`` is either a :class:`Score` subclass (built with ``num_heads``,
    ``head_dim``, ``edge_dim``) or a plain function ``fn(q, k) -> scores``
    over the last dimension of broadcastable tensors.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")

    def add(fn):
        if inspect.isclass(fn) and issubclass(fn, Score):
            _REGISTRY[name] = fn
        elif callable(fn):
            _REGISTRY[name] = lambda num_heads, head_dim, edge_dim=None: FunctionScore(fn, softmax=softmax)
        else:
            raise TypeError(f"a score must be a Score subclass or a function (q, k) -> scores, got {fn!r}")
        return fn

    return add if fn is None else add(fn)


def available_scores() -> list[str]:
    """Names accepted by ``GraphAttention(score=...)``."""
    return sorted(_REGISTRY)


def make_score(score: str | Score, num_heads: int, head_dim: int, edge_dim: int | None = None) -> Score:
    """Build the score called ``score`` (or return a :class:`Score` instance as is)."""
    if isinstance(score, Score):
        return score
    if not isinstance(score, str):
        raise TypeError(f"score must be a name or a Score, got {type(score).__name__}")
    if score not in _REGISTRY:
        raise ValueError(f"unknown score {score!r}; choose one of {available_scores()} "
                         "or add one with graphformer.register_score")
    return _REGISTRY[score](num_heads=num_heads, head_dim=head_dim, edge_dim=edge_dim)
