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
``"rotary"``      (R_i q_i) . (R_j k_j) / sqrt(C)   (RoPE, R_p rotates by position)  yes
================  ==========================================================  =========

What each score costs on the dense path (complete graphs, no ``edge_index``):
``"dot"`` and ``"rotary"`` run the fused
:func:`~torch.nn.functional.scaled_dot_product_attention` kernel and never
build the N x N scores; ``"additive"``, ``"gcn"``, ``"mean"`` and ``"sum"``
build ``[B, H, M, N]`` matrices; ``"gatv2"`` and function scores build
``[B, H, M, N, C]``. Softmax scores without a fused kernel are evaluated a
block of target rows at a time on large graphs (see
:class:`~graphformer.GraphAttention`).

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

Names are unique: registering a name that exists raises unless
``override=True``; :func:`unregister_score` removes a name (and gives a
built-in name its built-in score back), and :func:`registered_score` registers
a name for the duration of a ``with`` block::

    with gf.registered_score("cosine", cosine):
        attn = gf.GraphAttention(64, num_heads=4, score="cosine")

Legend: B batch, H heads, M target nodes, N source nodes, E edges, C channels per head.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
    "Rotary",
    "RotaryScore",
    "Score",
    "SumScore",
    "apply_rotary",
    "available_scores",
    "make_score",
    "register_score",
    "registered_score",
    "unregister_score",
]

_FULL = (torch.float32, torch.float64)


def _acc(t: Tensor) -> torch.dtype:
    """The dtype sums over channels accumulate in: float32 for float16 / bfloat16."""
    return t.dtype if t.dtype in _FULL else torch.float32


def _dot(x: Tensor, y: Tensor) -> Tensor:
    """``(x * y).sum(-1)`` accumulated in float32 for half-precision inputs."""
    return (x * y).sum(-1, dtype=_acc(x))


def _matmul_scores(q: Tensor, k: Tensor) -> Tensor:
    """``q @ k^T`` ``[..., M, N]``; half-precision inputs give float32 scores (autocast does not round them)."""
    if q.dtype in _FULL and k.dtype in _FULL and not torch.is_autocast_enabled(q.device.type):
        return q @ k.transpose(-1, -2)
    with torch.autocast(q.device.type, enabled=False):
        return q.to(_acc(q)) @ k.to(_acc(q)).transpose(-1, -2)


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
    * ``uses_edge_features``: the score reads projected edge features
      ``[H, E, C]``; a layer built with ``edge_dim`` refuses a score that
      does not (its edge projection would never get a gradient). A subclass
      that reads ``edge`` sets it to True.
    * ``pairwise_channels``: the dense path builds ``[B, H, M, N, C]``
      numbers (not only ``[B, H, M, N]``); used to size the blocks of target
      rows on large complete graphs.
    * ``row_blocks``: :meth:`dense` of a block of target rows depends only on
      those rows' queries (not on their positions), so the layer may evaluate
      large complete graphs a block of rows at a time. False by default: a
      subclass that reads row positions must not be cut into blocks.

    :meth:`reset_parameters` re-initialises the score's parameters; the base
    class resets every submodule that has a ``reset_parameters``.
    """

    softmax: bool = True
    uses_query: bool = True
    uses_key: bool = True
    query_shares_value: bool = False
    edge_in_value: bool = False
    formula: str | None = None
    uses_edge_features: bool = False
    pairwise_channels: bool = True
    row_blocks: bool = False

    def reset_parameters(self) -> None:
        """Re-initialise the parameters (the base class: every submodule with ``reset_parameters``)."""
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

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
    r"""Scaled dot product, :math:`s_{ij} = q_i^\top (k_j + e_{ij}) / \sqrt{C}`.

    Dense path: the fused SDPA kernel (no N x N scores) unless attention
    weights are returned, then ``[B, H, M, N]``. Sparse path: ``[H, E]``
    (plus ``[H, E, C]`` for edge features).
    """

    formula = "s_ij = q_i . k_j / sqrt(C)"

    edge_in_value = True
    uses_edge_features = True
    pairwise_channels = False

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
        s = ops.sddmm(graph, q, k)  # float32 for half-precision q, k
        if _edge_features(edge, "dot") is not None:
            s = s + _dot(q.index_select(1, graph.row), edge)
        return s

    def dense(self, q, k, mask, bipartite=False):
        q, k = self.transform(q, k)
        return _matmul_scores(q * self.scale, k)


class AdditiveScore(Score):
    r"""GAT's score, :math:`s_{ij} = \mathrm{LeakyReLU}(a_{dst}^\top q_i + a_{src}^\top v_j + a_e^\top e_{ij})`.

    Only two numbers per node and head are computed before the edges are
    touched, so the score costs ``O(E H)`` on the sparse path and
    ``[B, H, M, N]`` on the dense path.
    """

    formula = "s_ij = LeakyReLU(a_dst . q_i + a_src . v_j)   (GAT; q_i = v_i on one node set)"

    uses_key = False
    query_shares_value = True
    uses_edge_features = True
    pairwise_channels = False
    row_blocks = True

    def __init__(self, num_heads: int, head_dim: int, edge_dim: int | None = None, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.att_src = nn.Parameter(torch.empty(num_heads, head_dim))
        self.att_dst = nn.Parameter(torch.empty(num_heads, head_dim))
        self.att_edge = nn.Parameter(torch.empty(num_heads, head_dim)) if edge_dim is not None else None
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform attention vectors (as PyG's ``GATConv``)."""
        for p in (self.att_src, self.att_dst, self.att_edge):
            if p is not None:
                nn.init.xavier_uniform_(p.unsqueeze(0))

    def sparse(self, q, k, graph, edge):
        alpha_src = _dot(k, self.att_src.unsqueeze(1))  # [H, N], float32 for half inputs
        alpha_dst = _dot(q, self.att_dst.unsqueeze(1))  # [H, M]
        s = alpha_src.index_select(1, graph.col) + alpha_dst.index_select(1, graph.row)
        if _edge_features(edge, "additive") is not None and self.att_edge is not None:
            s = s + _dot(edge, self.att_edge.unsqueeze(1))
        return F.leaky_relu(s, self.negative_slope)

    def dense(self, q, k, mask, bipartite=False):
        alpha_src = _dot(k, self.att_src.unsqueeze(1))  # [B, H, N]
        alpha_dst = _dot(q, self.att_dst.unsqueeze(1))  # [B, H, M]
        return F.leaky_relu(alpha_dst.unsqueeze(-1) + alpha_src.unsqueeze(-2), self.negative_slope)


class GATv2Score(Score):
    r"""GATv2's score, :math:`s_{ij} = a^\top \mathrm{LeakyReLU}(q_i + v_j + e_{ij})`.

    The non-linearity acts on every channel of every edge: ``[H, E, C]`` on
    the sparse path, ``[B, H, M, N, C]`` on the dense path (built a block of
    target rows at a time on large graphs).
    """

    formula = "s_ij = a . LeakyReLU(q_i + v_j)   (GATv2)"

    uses_key = False
    uses_edge_features = True
    row_blocks = True

    def __init__(self, num_heads: int, head_dim: int, edge_dim: int | None = None, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope
        self.att = nn.Parameter(torch.empty(num_heads, head_dim))
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform attention vector (as PyG's ``GATv2Conv``)."""
        nn.init.xavier_uniform_(self.att.unsqueeze(0))

    def sparse(self, q, k, graph, edge):
        h = q.index_select(1, graph.row) + k.index_select(1, graph.col)  # [H, E, C]
        if _edge_features(edge, "gatv2") is not None:
            h = h + edge
        return _dot(F.leaky_relu(h, self.negative_slope), self.att.unsqueeze(1))

    def dense(self, q, k, mask, bipartite=False):
        h = q.unsqueeze(-2) + k.unsqueeze(-3)  # [B, H, M, N, C]
        return _dot(F.leaky_relu(h, self.negative_slope), self.att[:, None, None, :])


def _edge_features(edge: Tensor | None, name: str) -> Tensor | None:
    if edge is not None and edge.dim() != 3:
        raise ValueError(
            f"the {name!r} score takes edge features, not one weight per edge: build the layer "
            f"with edge_dim=... and pass edge_attr of shape [E, edge_dim] (got {tuple(edge.shape)})"
        )
    return edge


def _edge_weight(edge: Tensor | None, num_edges: int, like: Tensor) -> Tensor:
    if edge is None:
        return like.new_ones(num_edges)
    if edge.dim() != 1:
        raise ValueError(
            "the 'gcn' and 'mean' scores take edge_attr as one weight per edge, shape [E]; "
            f"got shape {tuple(edge.shape)}"
        )
    return edge


def _inv(x: Tensor, power: float) -> Tensor:
    out = x.pow(-power)
    return out.masked_fill(x == 0, 0.0)


class GCNScore(Score):
    r"""Fixed GCN weights, :math:`a_{ij} = w_{ij} / \sqrt{d_i d_j}` with :math:`d` the weighted in-degree.

    For a plain graph d_j is node j's in-degree, as in PyG's ``gcn_norm``;
    for a bipartite graph (two node sets) it is source j's out-degree.
    No softmax: on the complete graph with self-loops every weight is 1/N.
    Dense path: ``[B, H, M, N]`` weights (``[M, N]`` broadcast without padding).
    """

    formula = "a_ij = 1 / sqrt(d_i d_j)   (d = in-degree)"

    softmax = False
    uses_query = False
    uses_key = False
    pairwise_channels = False

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
    r"""Mean over in-neighbours, :math:`a_{ij} = w_{ij} / d_i`.

    Dense path: ``[B, H, M, N]`` weights (``[M, N]`` broadcast without padding).
    """

    formula = "a_ij = 1 / d_i   (d = in-degree)"

    softmax = False
    uses_query = False
    uses_key = False
    pairwise_channels = False

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
    (weighted) incoming messages. Dense path: ``[M, N]`` (or the mask's shape) weights.
    """

    formula = "a_ij = 1   (each target adds up its in-neighbours)"

    softmax = False
    uses_query = False
    uses_key = False
    pairwise_channels = False

    def __init__(self, num_heads: int = 1, head_dim: int = 1, edge_dim: int | None = None):
        super().__init__()

    def sparse(self, q, k, graph, edge):
        return _edge_weight(edge, graph.num_edges, k).expand(k.size(0), -1)

    def dense(self, q, k, mask, bipartite=False):
        M, N = (q.size(-2) if q is not None else k.size(-2)), k.size(-2)  # noqa: N806
        return (torch.ones(M, N, dtype=torch.bool, device=k.device) if mask is None else mask).to(k.dtype)


def _rotary_angles(positions: Tensor, head_dim: int, base: float) -> Tensor:
    """Angles ``p * base^{-2i/C}``, ``[..., N, C // 2]`` in float64."""
    inv_freq = torch.exp(
        torch.arange(0, head_dim - 1, 2, dtype=torch.float64, device=positions.device) * (-math.log(base) / head_dim)
    )
    return positions.to(torch.float64).unsqueeze(-1) * inv_freq


def apply_rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    r"""Rotate each channel pair ``(x_{2i}, x_{2i+1})`` by the angle :math:`p\,\theta_i` (RoFormer).

    .. math::
        \begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix} =
        \begin{pmatrix} \cos p\theta_i & -\sin p\theta_i \\ \sin p\theta_i & \cos p\theta_i \end{pmatrix}
        \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix}, \qquad \theta_i = base^{-2i/C}

    the frequencies of :func:`sinusoidal`. With an odd C the last channel is
    left as it is.

    Args:
        x: ``[..., N, C]`` queries or keys (any leading dims, e.g. ``[B, H, N, C]``).
        positions: ``[N]`` (or broadcastable to ``x.shape[:-1]``) position of each row.
    """
    C = x.size(-1)  # noqa: N806
    if positions.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"positions must give one position per row of x ({x.shape[-2]}), got shape {tuple(positions.shape)}"
        )
    angles = _rotary_angles(positions, C, base)  # [..., N, C//2]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    pairs = x[..., : 2 * (C // 2)].unflatten(-1, (C // 2, 2))  # [..., N, C//2, 2]
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    return torch.cat([rotated, x[..., 2 * (C // 2) :]], dim=-1) if C % 2 else rotated


class Rotary(nn.Module):
    """Rotary position embedding as a module: ``Rotary(head_dim)(x, positions)`` = :func:`apply_rotary`.

    Shapes: ``x [..., N, head_dim]``, ``positions [N]`` (default ``0..N-1``) -> ``[..., N, head_dim]``.
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if not isinstance(head_dim, int) or head_dim <= 0:
            raise ValueError(f"head_dim must be a positive int, got {head_dim!r}")
        self.head_dim, self.base = head_dim, base

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        if x.size(-1) != self.head_dim:
            raise ValueError(f"x has {x.size(-1)} channels but the rotary encoding was built for {self.head_dim}")
        if positions is None:
            positions = torch.arange(x.size(-2), device=x.device)
        return apply_rotary(x, positions, self.base)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"


class RotaryScore(DotScore):
    r"""The dot score on rotated queries and keys (RoPE), registered as ``score="rotary"``.

    .. math::
        s_{ij} = (R_i q_i)^\top (R_j k_j) / \sqrt{C} = q_i^\top R_{j - i}\, k_j / \sqrt{C}

    Because rotations compose, the score sees positions only through the
    offset ``j - i``: a *relative* encoding. A node-feature encoding
    (:func:`sinusoidal`, :class:`LearnablePositions`) is added to x before the
    projections and enters the score through ``q_i`` and ``k_j`` separately,
    so the layer sees absolute positions and must learn any relative
    pattern; a rotary score puts the offset into the edge itself, like a bias
    ``b_{ij}`` that depends on ``i - j`` and on the content.

    Positions: on the dense path (complete, causal or bipartite graph) the
    node's index in the sequence; on the sparse path the node id in
    ``edge_index``. In a PyG batch the ids of one graph are shifted by a
    constant, which cancels in ``j - i``. Edge features are used as in
    ``"dot"``. The dense path rotates q and k, then runs the fused SDPA kernel.
    """

    formula = "s_ij = (R_i q_i) . (R_j k_j) / sqrt(C)   (R_p rotates channel pairs by position p)"

    def __init__(self, num_heads: int, head_dim: int, edge_dim: int | None = None, base: float = 10000.0):
        super().__init__(num_heads, head_dim, edge_dim)
        self.rotary = Rotary(head_dim, base)

    def _rotate(self, t: Tensor) -> Tensor:
        return self.rotary(t, torch.arange(t.size(-2), device=t.device))

    def transform(self, q, k):
        return self._rotate(q), self._rotate(k)


class FunctionScore(Score):
    """A score given as a function ``fn(q_i, k_j) -> s_ij`` on broadcastable ``[..., C]`` tensors.

    It reads no edge features (a layer with ``edge_dim`` refuses it). Cost:
    ``[H, E, C]`` gathered pairs on the sparse path, ``[B, H, M, N, C]`` on the
    dense path (a block of target rows at a time on large graphs).
    """

    row_blocks = True  # fn sees one (q_i, k_j) pair at a time

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


_BUILT_IN: dict[str, Callable[..., Score]] = {
    "dot": DotScore,
    "additive": AdditiveScore,
    "gat": AdditiveScore,
    "gatv2": GATv2Score,
    "gcn": GCNScore,
    "mean": MeanScore,
    "sum": SumScore,
    "rotary": RotaryScore,
}
_REGISTRY: dict[str, Callable[..., Score]] = dict(_BUILT_IN)


def _factory(fn, softmax: bool) -> Callable[..., Score]:
    if inspect.isclass(fn) and issubclass(fn, Score):
        return fn
    if callable(fn):
        return lambda num_heads, head_dim, edge_dim=None: FunctionScore(fn, softmax=softmax)
    raise TypeError(f"a score must be a Score subclass or a function (q, k) -> scores, got {fn!r}")


def _check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")


def register_score(name: str, fn: Callable | None = None, *, softmax: bool = True, override: bool = False):
    """Register a score under ``name``; usable as ``register_score(name, fn)`` or as a decorator.

    ``fn`` is either a :class:`Score` subclass (built with ``num_heads``,
    ``head_dim``, ``edge_dim``) or a plain function ``fn(q, k) -> scores``
    over the last dimension of broadcastable tensors.

    A name that is already registered (built-in names included) raises
    ``ValueError`` unless ``override=True``; replacing ``"dot"`` would also
    lose its fused SDPA kernel for every later layer.
    """
    _check_name(name)

    def add(fn):
        factory = _factory(fn, softmax)
        if name in _REGISTRY and not override:
            raise ValueError(
                f"a score named {name!r} is already registered; pick another name, pass "
                f"override=True to replace it, or call unregister_score({name!r}) first"
            )
        _REGISTRY[name] = factory
        return fn

    return add if fn is None else add(fn)


def unregister_score(name: str) -> None:
    """Remove the score registered under ``name``.

    A built-in name replaced with ``override=True`` gets its built-in score
    back; a built-in score itself cannot be removed.
    """
    _check_name(name)
    if name not in _REGISTRY:
        raise ValueError(f"no score named {name!r} is registered; registered: {available_scores()}")
    if name in _BUILT_IN:
        if _REGISTRY[name] is _BUILT_IN[name]:
            raise ValueError(f"{name!r} is a built-in score and cannot be unregistered")
        _REGISTRY[name] = _BUILT_IN[name]
    else:
        del _REGISTRY[name]


@contextmanager
def registered_score(name: str, fn: Callable, *, softmax: bool = True, override: bool = False) -> Iterator[Callable]:
    """Register ``fn`` under ``name`` inside a ``with`` block and restore the registry after it.

    Takes the arguments of :func:`register_score`; whatever ``name`` meant
    before the block (nothing, or the score it replaced with
    ``override=True``) is what it means after.
    """
    _check_name(name)
    previous = _REGISTRY.get(name)
    register_score(name, fn, softmax=softmax, override=override)
    try:
        yield fn
    finally:
        if previous is None:
            _REGISTRY.pop(name, None)
        else:
            _REGISTRY[name] = previous


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
        raise ValueError(
            f"unknown score {score!r}; choose one of {available_scores()} or add one with graphformer.register_score"
        )
    return _REGISTRY[score](num_heads=num_heads, head_dim=head_dim, edge_dim=edge_dim)
