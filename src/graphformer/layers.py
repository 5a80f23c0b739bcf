"""Transformer blocks built on :class:`~graphformer.GraphAttention`.

A Transformer encoder layer is attention (message passing on a graph),
a residual connection and a normalisation, then a node-wise feed-forward
network. Nothing in it depends on the graph being complete.

Legend: B batch, N nodes, d model width.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import GraphAttention
from .scores import Score
from .structure import DenseBatch, SparseGraph

__all__ = [
    "ConvFeedForward",
    "FeedForward",
    "GraphformerDecoderLayer",
    "GraphformerEncoder",
    "GraphformerLayer",
    "LocalGlobalLayer",
]


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise ValueError(f"activation must be 'relu', 'gelu' or a callable, got {activation!r}")


def _identity(x: Tensor) -> Tensor:
    return x


class FeedForward(nn.Module):
    r"""Node-wise MLP, :math:`W_2\,\mathrm{drop}(\sigma(W_1 x + b_1)) + b_2`.

    Shapes: ``[..., d] -> [..., d]``.
    """

    def __init__(
        self,
        d_model: int,
        dim_feedforward: int,
        dropout: float = 0.1,
        activation: str | Callable = "relu",
        bias: bool = True,
    ):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        h = self.activation(self.linear1(x))
        if self.training and self.dropout.p > 0:  # (in eval, or at p = 0, dropout is the identity)
            h = self.dropout(h)
        return self.linear2(h)


class ConvFeedForward(nn.Module):
    r"""A feed-forward part made of 1-D convolutions along the node order.

    "Even a CNN would do": :math:`\mathrm{Conv}_2(\mathrm{drop}(\sigma(\mathrm{Conv}_1(x))))`
    with ``kernel_size`` taps and same-length padding, mixing each node with its
    neighbours in sequence order. Meaningful for sequences, not for
    unordered graphs.

    Shapes: ``[B, N, d] -> [B, N, d]`` (or ``[N, d] -> [N, d]``).
    """

    def __init__(
        self,
        d_model: int,
        dim_feedforward: int,
        kernel_size: int = 3,
        dropout: float = 0.1,
        activation: str | Callable = "relu",
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the sequence length, got {kernel_size}")
        self.conv1 = nn.Conv1d(d_model, dim_feedforward, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(dim_feedforward, d_model, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(-1, -2)  # [B, d, N]
        h = self.conv2(self.dropout(self.activation(self.conv1(h))))
        return h.transpose(-1, -2)


class GraphformerLayer(nn.Module):
    r"""Attention + residual + LayerNorm, then feed-forward + residual + LayerNorm.

    Post-norm (``norm_first=False``, the original Transformer):

    .. math::
        h = \mathrm{LN}_1(x + \mathrm{drop}(\mathrm{Attn}(x))), \quad
        y = \mathrm{LN}_2(h + \mathrm{drop}(\mathrm{FF}(h)))

    Pre-norm: :math:`h = x + \mathrm{drop}(\mathrm{Attn}(\mathrm{LN}_1 x))`,
    :math:`y = h + \mathrm{drop}(\mathrm{FF}(\mathrm{LN}_2 h))`.

    On the complete graph with ``score="dot"`` this is
    ``torch.nn.TransformerEncoderLayer`` (batch-first). It takes every call
    form of :class:`~graphformer.GraphAttention`; with a pair ``(x_src, x_dst)``
    the residual runs through the targets.

    Args:
        d_model, num_heads, dim_feedforward, dropout, activation, norm_first:
            as ``nn.TransformerEncoderLayer``.
        score: the attention score (``"dot"``, ``"additive"``, ``"gcn"``, ...).
        layer_norm_eps: LayerNorm epsilon.
        bias: biases in the projections, the feed-forward part and the norms.
        feedforward: a module ``[..., d] -> [..., d]`` replacing the MLP
            (e.g. :class:`ConvFeedForward`).
        attn_dropout: dropout on the attention weights only (default
            ``dropout``, as ``nn.TransformerEncoderLayer``, which uses one rate
            for both); ``dropout`` still acts on the residual branches and
            inside the feed-forward part.
        **attention_kwargs: passed on to :class:`~graphformer.GraphAttention`
            (``edge_dim``, ``self_loops``, ...).

    Shapes: as :class:`~graphformer.GraphAttention`, output width ``d_model``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int = 1,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable = "relu",
        norm_first: bool = False,
        score: str | Score = "dot",
        *,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        feedforward: nn.Module | None = None,
        attn_dropout: float | None = None,
        **attention_kwargs,
    ):
        super().__init__()
        if attn_dropout is not None and not 0.0 <= attn_dropout < 1.0:
            raise ValueError(f"attn_dropout must lie in [0, 1), got {attn_dropout}")
        self.self_attn = GraphAttention(
            d_model,
            num_heads,
            score=score,
            dropout=dropout if attn_dropout is None else attn_dropout,
            bias=bias,
            **attention_kwargs,
        )
        if self.self_attn.out_proj is None and self.self_attn.out_dim != d_model:
            raise ValueError("GraphformerLayer needs attention output of width d_model; keep out_proj=True")
        self.feedforward = (
            feedforward if feedforward is not None else FeedForward(d_model, dim_feedforward, dropout, activation, bias)
        )
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor | tuple[Tensor, Tensor], edge_index: Tensor | SparseGraph | None = None, **kwargs):
        """Apply the block; keyword arguments as :meth:`GraphAttention.forward`."""
        return_attention = kwargs.get("return_attention", False)
        pair = isinstance(x, (tuple, list))
        x_dst = x[1] if pair else x
        if self.norm_first:
            inp = (x[0], self.norm1(x_dst)) if pair else self.norm1(x_dst)
            res = self.self_attn(inp, edge_index, **kwargs)
            res, att = res if return_attention else (res, None)
            h = x_dst + self.dropout1(res)
            out = h + self.dropout2(self.feedforward(self.norm2(h)))
        else:
            res = self.self_attn(x, edge_index, **kwargs)
            res, att = res if return_attention else (res, None)
            h = self.norm1(x_dst + self.dropout1(res))
            out = self.norm2(h + self.dropout2(self.feedforward(h)))
        return (out, att) if return_attention else out

    def step(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None, *, window: int | None = None):
        """The block on ``T`` new nodes of a growing causal graph, with cached keys and values.

        See :meth:`GraphAttention.step`; returns ``(out [B, T, d], (k, v))``.
        """
        drop1, drop2 = (self.dropout1, self.dropout2) if self.training else (_identity, _identity)
        if self.norm_first:
            res, kv = self.self_attn.step(self.norm1(x), past, window=window)
            h = x + drop1(res)
            return h + drop2(self.feedforward(self.norm2(h))), kv
        res, kv = self.self_attn.step(x, past, window=window)
        h = self.norm1(x + drop1(res))
        return self.norm2(h + drop2(self.feedforward(h))), kv


class GraphformerEncoder(nn.Module):
    """A stack of ``num_layers`` copies of ``layer``, with an optional final norm.

    With a tensor ``edge_index`` the sparse layout is built once and shared by
    every layer. ``return_attention=True`` returns one record per layer.
    """

    def __init__(self, layer: GraphformerLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = norm

    def forward(self, x: Tensor, edge_index: Tensor | SparseGraph | None = None, **kwargs):
        """Run every layer in turn; keyword arguments as :meth:`GraphAttention.forward`."""
        return_attention = kwargs.get("return_attention", False)
        if (
            isinstance(edge_index, Tensor)
            and all(lay.self_attn.self_loops is None for lay in self.layers)
            and not isinstance(x, (tuple, list))
        ):
            edge_index = SparseGraph.from_edge_index(edge_index, x.size(0))
        records = []
        for layer in self.layers:
            x = layer(x, edge_index, **kwargs)
            if return_attention:
                x, att = x
                records.append(att)
        if self.norm is not None:
            x = self.norm(x)
        return (x, records) if return_attention else x


class GraphformerDecoderLayer(nn.Module):
    r"""Causal self-attention, cross-attention to a memory, then feed-forward.

    The decoder's graph is the causal DAG over its own positions plus a
    complete bipartite graph from the memory (encoder output) to every
    position. Post-norm:

    .. math::
        h_1 = \mathrm{LN}_1(x + \mathrm{SelfAttn}(x)),\;
        h_2 = \mathrm{LN}_2(h_1 + \mathrm{CrossAttn}(m \to h_1)),\;
        y = \mathrm{LN}_3(h_2 + \mathrm{FF}(h_2))

    On dense input with ``score="dot"`` this is ``torch.nn.TransformerDecoderLayer``
    (batch-first) with a causal target mask.

    Shapes: x ``[B, M, d]``, memory ``[B, N, d]`` -> ``[B, M, d]``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int = 1,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable = "relu",
        norm_first: bool = False,
        score: str | Score = "dot",
        *,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        feedforward: nn.Module | None = None,
    ):
        super().__init__()
        self.self_attn = GraphAttention(d_model, num_heads, score=score, dropout=dropout, bias=bias)
        self.cross_attn = GraphAttention(d_model, num_heads, score=score, dropout=dropout, bias=bias)
        self.feedforward = (
            feedforward if feedforward is not None else FeedForward(d_model, dim_feedforward, dropout, activation, bias)
        )
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        causal: bool = True,
        key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Decode ``x`` attending causally to itself and fully to ``memory``.

        Args:
            x: target sequence ``[B, M, d]``.
            memory: encoder output ``[B, N, d]``.
            causal: restrict self-attention to positions j <= i.
            key_padding_mask: ``[B, M]``, True = padded target position.
            memory_key_padding_mask: ``[B, N]``, True = padded memory position.
        """

        def self_block(h):
            return self.dropout1(self.self_attn(h, causal=causal, key_padding_mask=key_padding_mask))

        def cross_block(h):
            return self.dropout2(self.cross_attn((memory, h), key_padding_mask=memory_key_padding_mask))

        if self.norm_first:
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + self.dropout3(self.feedforward(self.norm3(x)))
        x = self.norm1(x + self_block(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + self.dropout3(self.feedforward(x)))


class LocalGlobalLayer(nn.Module):
    r"""Local attention on a sparse graph and global attention on the complete graph, in parallel, then FF.

    Two placements of the norms (``norm``):

    * ``"branch"`` (GPS, Rampášek et al. 2022): each branch has its own
      residual and LayerNorm, and the two are summed:

      .. math::
          h = \mathrm{LN}_Lig(x + \mathrm{drop}(\mathrm{Local}(x, A))ig)
            + \mathrm{LN}_Gig(x + \mathrm{drop}(\mathrm{Global}(x))ig), \quad
          y = \mathrm{LN}_{FF}ig(h + \mathrm{drop}(\mathrm{FF}(h))ig)

    * ``"sum"`` (a post-norm Transformer layer whose message is the sum of
      the two attentions; the graph-prior forecaster):

      .. math::
          h = \mathrm{LN}_Aig(x + \mathrm{drop}(\mathrm{Local}(x, A) + \mathrm{Global}(x))ig), \quad
          y = \mathrm{LN}_{FF}ig(h + \mathrm{drop}(\mathrm{FF}(h))ig)

    ``Local`` is a :class:`~graphformer.GraphAttention` with ``local_score``
    on the given edges (sparse path), ``Global`` one with the dot score on
    the complete graph of each input graph (dense path). On a complete input
    graph both attend over the same edges: ``"sum"`` is then a post-norm
    Transformer layer whose attention is the sum of two attention modules.

    Args:
        d_model: width d.
        num_heads: heads of both attention parts.
        dim_feedforward: width of the feed-forward part (default 2 d).
        dropout: on the residual branches and inside the feed-forward part.
        local_score: score of the local part (``"dot"``, ``"additive"``, ``"gcn"``, ...).
        activation: of the feed-forward part.
        attn_dropout: dropout on the attention weights of both parts (default ``dropout``).
        norm: ``"branch"`` or ``"sum"``, as above.

    Shapes:
        - x ``[N, d]`` (the nodes of every graph, ``batch`` ``[N]`` their graph ids; None:
          one graph), edge_index ``[2, E]`` or SparseGraph over the N nodes -> ``[N, d]``;
        - x ``[B, n, d]`` (B graphs of n nodes), the edges a block-diagonal graph over the
          B*n nodes (node ``b*n + v`` is node v of graph b) -> ``[B, n, d]``.

        ``edge_attr`` ``[E, ...]`` goes to the local part, ``attn_bias``
        (``[B, H, n, n]``, as :meth:`GraphAttention.forward`) to the global part.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int = 4,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        local_score: str | Score = "dot",
        activation: str | Callable = "relu",
        attn_dropout: float | None = None,
        *,
        norm: str = "branch",
    ):
        super().__init__()
        if norm not in ("branch", "sum"):
            raise ValueError(
                f"norm must be 'branch' (GPS: a norm per attention branch) or 'sum' (one norm after "
                f"the summed attentions), got {norm!r}"
            )
        if attn_dropout is not None and not 0.0 <= attn_dropout < 1.0:
            raise ValueError(f"attn_dropout must lie in [0, 1), got {attn_dropout}")
        attn_dropout = dropout if attn_dropout is None else attn_dropout
        self.norm = norm
        self.local_attn = GraphAttention(d_model, num_heads, score=local_score, dropout=attn_dropout)
        self.global_attn = GraphAttention(d_model, num_heads, score="dot", dropout=attn_dropout)
        self.feedforward = FeedForward(d_model, dim_feedforward or 2 * d_model, dropout, activation)
        if norm == "branch":
            self.norm_local = nn.LayerNorm(d_model)
            self.norm_global = nn.LayerNorm(d_model)
        else:
            self.norm_attn = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph,
        *,
        batch: Tensor | None = None,
        attn_bias: Tensor | None = None,
        edge_attr: Tensor | None = None,
    ) -> Tensor:
        """Apply the layer (see the class docstring for shapes)."""
        if x.dim() == 3:
            if batch is not None:
                raise ValueError("x [B, n, d] holds one graph per row already; batch must be None")
            local = self.local_attn(x.reshape(-1, x.size(-1)), edge_index, edge_attr=edge_attr).view_as(x)
        else:
            local = self.local_attn(x, edge_index, edge_attr=edge_attr)
        if self.norm == "branch":  # the local branch is finished first: dropout draws in the order of the formula
            h = self.norm_local(x + self.dropout(local))
            h = h + self.norm_global(x + self.dropout(self._global(x, batch, attn_bias)))
        else:
            h = self.norm_attn(x + self.dropout(local + self._global(x, batch, attn_bias)))
        return self.norm_ff(h + self.dropout(self.feedforward(h)))

    def _global(self, x: Tensor, batch, attn_bias: Tensor | None) -> Tensor:
        """The global part: dense attention over the complete graph of each graph of ``batch``.

        ``batch`` is a graph id per node, or a prepared
        :class:`~graphformer.structure.DenseBatch` (packed once per forward, no device read).
        """
        if isinstance(batch, DenseBatch):
            return batch.unpack(self.global_attn(batch.pack(x), key_padding_mask=batch.pad, attn_bias=attn_bias))
        return self.global_attn(x, batch=batch, attn_bias=attn_bias)
