"""Forecasters: a multivariate time series as a graph.

Each model is one choice of nodes and graph, run through the same layer
(:class:`~graphformer.GraphformerLayer` / :class:`~graphformer.GraphAttention`):

* :class:`ITransformer`: the variables (plus time-feature channels) are the
  nodes of a complete graph;
* :class:`TemporalTransformer`: the time steps (look-back, then horizon) are
  the nodes of a complete or causal graph;
* :class:`PatchTransformer`: the patches of one variable are the nodes of a
  complete graph, one graph per variable (channel independence);
* :class:`GraphPriorForecaster`: the variables are the nodes of a given or
  k-nearest sparse graph, optionally summed with the complete graph.

All share one call, ``model(x, x_mark=None, y_mark=None) -> [B, H, V]``, and
one per-window instance normalisation (:func:`normalize`), undone after the
output projection.

Legend: B batch, L look-back (``seq_len``), H horizon (``pred_len``),
V variables, F time features, N nodes, P patches, d model width, E edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..encodings import sinusoidal
from ..layers import GraphformerEncoder, GraphformerLayer, LocalGlobalLayer
from ..structure import SparseGraph, check_edge_index

__all__ = [
    "GraphPriorForecaster",
    "ITransformer",
    "InstanceStats",
    "PatchTransformer",
    "TemporalTransformer",
    "normalize",
]


# ------------------------------------------------------------ normalisation
@dataclass
class InstanceStats:
    """Mean and standard deviation of one batch of windows, ``[B, 1, V]`` each."""

    mean: Tensor
    std: Tensor

    def undo(self, y: Tensor) -> Tensor:
        """Map a normalised forecast ``[B, H, V]`` back: ``y * std + mean``."""
        return y * self.std + self.mean


def normalize(x: Tensor, eps: float = 1e-5) -> tuple[Tensor, InstanceStats]:
    r"""Per-window instance normalisation (Non-stationary Transformer / iTransformer).

    .. math::
        \mu = \tfrac1L \sum_t x_t, \quad
        \sigma = \sqrt{\tfrac1L \sum_t (x_t - \mu)^2 + \epsilon}, \quad
        \hat x_t = (x_t - \mu) / \sigma

    per window and variable; :math:`\mu` is detached, :math:`\epsilon` sits
    inside the square root as in the reference code.

    Shapes: x ``[B, L, V]`` -> ``[B, L, V]`` and :class:`InstanceStats` ``[B, 1, V]``.
    """
    mean = x.mean(dim=1, keepdim=True).detach()
    centred = x - mean
    std = torch.sqrt(torch.var(centred, dim=1, keepdim=True, unbiased=False) + eps)
    return centred / std, InstanceStats(mean, std)


def _check_input(x: Tensor, seq_len: int, num_variables: int | None = None) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a [B, L, V] tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.size(1) != seq_len:
        raise ValueError(f"x has look-back {x.size(1)} but the model was built for seq_len={seq_len}")
    if num_variables is not None and x.size(2) != num_variables:
        raise ValueError(f"x has {x.size(2)} variables but the model was built for {num_variables}")


def _torch_default_init(module: nn.Module) -> None:
    """Re-initialise every Linear as ``nn.Linear`` does (the reference code's initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()


# ------------------------------------------------------------ iTransformer
class ITransformer(nn.Module):
    r"""iTransformer (Liu et al., ICLR 2024): the variables are the nodes of a complete graph.

    Each variable's whole look-back window is one token, so attention runs
    between variables, not between time steps. With ``x_mark`` the F
    time-feature channels join as F more tokens (as the reference code does).

    .. math::
        \hat x = \mathrm{norm}(x), \quad
        h^{(0)}_n = \mathrm{drop}(W_e \hat x_{:, n} + b_e) \;\; (n = 1..V+F), \quad
        h^{(l)} = \mathrm{GraphformerLayer}(h^{(l-1)}) \text{ on } K_{V+F}, \\
        \hat y_{:, v} = W_p\, \mathrm{LN}(h^{(n_\ell)}_v) + b_p \;\; (v = 1..V), \quad
        y = \mathrm{denorm}(\hat y)

    The layers are post-norm with GELU and dropout 0.1 in the reference
    configuration; all Linear layers use PyTorch's default initialisation,
    as the reference code.

    Args:
        seq_len: look-back L.
        pred_len: horizon H.
        d_model: token width d.
        num_heads: attention heads.
        d_ff: feed-forward width.
        num_layers: encoder layers.
        dropout: dropout on the embedding, attention weights and feed-forward.
        activation: feed-forward activation.
        use_norm: per-window instance normalisation.

    Shapes: x ``[B, L, V]``, x_mark ``[B, L, F]`` (optional) -> ``[B, H, V]``.
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        d_model: int = 512,
        num_heads: int = 8,
        d_ff: int = 2048,
        num_layers: int = 2,
        dropout: float = 0.1,
        activation: str = "gelu",
        use_norm: bool = True,
    ):
        super().__init__()
        self.seq_len, self.pred_len, self.use_norm = seq_len, pred_len, use_norm
        self.embedding = nn.Linear(seq_len, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = GraphformerLayer(d_model, num_heads, d_ff, dropout, activation)
        self.encoder = GraphformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.projection = nn.Linear(d_model, pred_len)
        _torch_default_init(self)

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]`` from ``x`` ``[B, L, V]`` (``y_mark`` is not used)."""
        _check_input(x, self.seq_len)
        num_vars = x.size(-1)
        if self.use_norm:
            x, stats = normalize(x)
        tokens = x if x_mark is None or x_mark.size(-1) == 0 else torch.cat([x, x_mark], dim=-1)  # [B, L, N]
        h = self.dropout(self.embedding(tokens.transpose(1, 2)))  # [B, N, d]
        h = self.encoder(h)  # complete graph over the N tokens
        y = self.projection(h).transpose(1, 2)[:, :, :num_vars]  # [B, H, V]
        return stats.undo(y) if self.use_norm else y


# ------------------------------------------------------------ time steps as nodes
class TemporalTransformer(nn.Module):
    r"""The classic view: time steps are the nodes; the horizon steps are nodes too.

    The L look-back steps carry their values, the H horizon steps a learned
    placeholder; every node adds its time features and a sinusoidal position.
    Attention runs on the complete graph of the L + H steps, or on the causal
    DAG (each step reads only earlier steps). The forecast is read off the
    horizon nodes:

    .. math::
        h^{(0)}_t = \begin{cases} W_x \hat x_t + W_m m_t + p_t & t \le L \\
                                   u + W_m m_t + p_t & t > L \end{cases}, \quad
        \hat y_t = W_o h^{(n_\ell)}_{L + t}

    Args:
        seq_len, pred_len: L and H.
        num_variables: V.
        num_time_features: F (0 for none).
        d_model, num_heads, d_ff, num_layers, dropout, activation: the encoder.
        causal: attend only to earlier steps (a decoder-style DAG).
        use_norm: per-window instance normalisation.

    Shapes: x ``[B, L, V]``, x_mark ``[B, L, F]``, y_mark ``[B, H, F]`` -> ``[B, H, V]``.
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        num_variables: int,
        num_time_features: int = 0,
        d_model: int = 128,
        num_heads: int = 8,
        d_ff: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        activation: str = "gelu",
        causal: bool = False,
        use_norm: bool = True,
    ):
        super().__init__()
        self.seq_len, self.pred_len, self.num_variables = seq_len, pred_len, num_variables
        self.causal, self.use_norm = causal, use_norm
        self.value_embedding = nn.Linear(num_variables, d_model)
        self.time_embedding = nn.Linear(num_time_features, d_model, bias=False) if num_time_features else None
        self.horizon_token = nn.Parameter(torch.zeros(d_model))
        self.register_buffer("position", sinusoidal(seq_len + pred_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = GraphformerLayer(d_model, num_heads, d_ff, dropout, activation)
        self.encoder = GraphformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, num_variables)

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]``; the time features of both look-back and horizon are used when given."""
        _check_input(x, self.seq_len, self.num_variables)
        if self.use_norm:
            x, stats = normalize(x)
        past = self.value_embedding(x)  # [B, L, d]
        future = self.horizon_token.expand(x.size(0), self.pred_len, -1)  # [B, H, d]
        h = torch.cat([past, future], dim=1) + self.position  # [B, L+H, d]
        if self.time_embedding is not None:
            if x_mark is None or y_mark is None:
                raise ValueError("this model was built with time features: pass x_mark and y_mark")
            h = h + self.time_embedding(torch.cat([x_mark, y_mark], dim=1))
        h = self.encoder(self.dropout(h), causal=self.causal)
        y = self.head(h[:, self.seq_len :])  # [B, H, V]
        return stats.undo(y) if self.use_norm else y


# ------------------------------------------------------------ patches as nodes
class PatchTransformer(nn.Module):
    r"""PatchTST (Nie et al., ICLR 2023): patches of one variable are the nodes; variables stay apart.

    Each variable's look-back is padded at the end by repeating its last value
    ``stride`` times, cut into P = (L + stride - patch_len) / stride + 1
    overlapping patches, and each patch becomes a token. Every variable is its
    own complete graph of P nodes (channel independence: the weights are
    shared, the graphs are not connected). A flatten head maps the P tokens
    to the horizon:

    .. math::
        h^{(0)}_p = W_e\, \hat x_{[p s,\, p s + \ell)} + w_p, \quad
        \hat y = W_h\, \mathrm{flatten}(h^{(n_\ell)}_{1..P}) + b_h

    (PatchTST's encoder uses BatchNorm; here it is the LayerNorm of the shared layer.)

    Args:
        seq_len, pred_len: L and H.
        patch_len, stride: patch length and step (16 and 8 in PatchTST).
        d_model, num_heads, d_ff, num_layers, dropout, activation: the encoder.
        head_dropout: dropout before the flatten head.
        use_norm: per-window instance normalisation.

    Shapes: x ``[B, L, V]`` -> ``[B, H, V]`` (time features are not used).
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        patch_len: int = 16,
        stride: int = 8,
        d_model: int = 128,
        num_heads: int = 8,
        d_ff: int = 256,
        num_layers: int = 3,
        dropout: float = 0.1,
        activation: str = "gelu",
        head_dropout: float = 0.0,
        use_norm: bool = True,
    ):
        super().__init__()
        if patch_len < 1 or stride < 1 or patch_len > seq_len + stride:
            raise ValueError(
                f"need 1 <= patch_len <= seq_len + stride and stride >= 1, got patch_len={patch_len}, "
                f"stride={stride}, seq_len={seq_len}"
            )
        self.seq_len, self.pred_len, self.patch_len, self.stride = seq_len, pred_len, patch_len, stride
        self.use_norm = use_norm
        self.num_patches = (seq_len + stride - patch_len) // stride + 1
        self.embedding = nn.Linear(patch_len, d_model)
        self.position = nn.Parameter(torch.empty(self.num_patches, d_model).uniform_(-0.02, 0.02))
        self.dropout = nn.Dropout(dropout)
        layer = GraphformerLayer(d_model, num_heads, d_ff, dropout, activation)
        self.encoder = GraphformerEncoder(layer, num_layers)
        self.head = nn.Sequential(
            nn.Flatten(-2), nn.Dropout(head_dropout), nn.Linear(self.num_patches * d_model, pred_len)
        )

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]`` from ``x`` ``[B, L, V]``."""
        _check_input(x, self.seq_len)
        B, _, V = x.shape  # noqa: N806
        if self.use_norm:
            x, stats = normalize(x)
        series = x.transpose(1, 2).reshape(B * V, self.seq_len)  # [B*V, L]
        series = torch.cat([series, series[:, -1:].expand(-1, self.stride)], dim=1)  # [B*V, L+stride]
        patches = series.unfold(-1, self.patch_len, self.stride)  # [B*V, P, patch_len]
        h = self.dropout(self.embedding(patches) + self.position)  # [B*V, P, d]
        h = self.encoder(h)  # one complete graph per variable and window
        y = self.head(h).view(B, V, self.pred_len).transpose(1, 2)  # [B, H, V]
        return stats.undo(y) if self.use_norm else y


# ------------------------------------------------------------ a prior graph over variables
#: parameter names of the mixed layer before it became LocalGlobalLayer(norm="sum"), for older checkpoints
_OLD_MIXED_NAMES = {
    "graph_attn.": "local_attn.",
    "complete_attn.": "global_attn.",
    "norm1.": "norm_attn.",
    "norm2.": "norm_ff.",
}


def _rename_mixed_layer_keys(module, state_dict, prefix, *args) -> None:
    """Load a checkpoint saved with the older names of the ``mix_complete`` layer's parameters."""
    for key in [k for k in state_dict if k.startswith(prefix + "layers.")]:
        head, _, rest = key[len(prefix + "layers.") :].partition(".")
        for old, new in _OLD_MIXED_NAMES.items():
            if rest.startswith(old):
                state_dict[f"{prefix}layers.{head}.{new}{rest[len(old) :]}"] = state_dict.pop(key)
                break


class GraphPriorForecaster(nn.Module):
    r"""Variables as the nodes of a sparse graph: a sensor network or the k most correlated variables.

    As :class:`ITransformer`, each variable's look-back window is one token,
    but a variable only listens to its neighbours in a prior graph G, with a
    learned (``"dot"``, ``"additive"``) or fixed (``"gcn"``, weighted by the
    edge weights) score. With ``mix_complete=True`` each layer adds a second,
    complete-graph dot-product attention to the graph message (summed before
    the residual):

    .. math::
        h^{(l)}_i = \mathrm{LN}\big(h_i + \sum_{j \in \mathcal N_G(i)} a_{ij} W_v h_j
                    \;[+ \textstyle\sum_{j=1}^{V} a^K_{ij} W^K_v h_j]\big) \to \mathrm{FF}

    The B windows of a batch are B disjoint copies of G: one block-diagonal
    :class:`~graphformer.SparseGraph` over B*V nodes, built once per batch
    size and reused by every layer and step.

    Args:
        seq_len, pred_len: L and H.
        edge_index: ``[2, E]`` edges j -> i over the V variables (self-loops
            included if wanted; the layer adds none).
        num_variables: V.
        edge_weight: ``[E]`` weights, used by the ``"gcn"`` score.
        score: ``"dot"``, ``"additive"`` or ``"gcn"``.
        mix_complete: add complete-graph attention in every layer.
        d_model, num_heads, d_ff, num_layers, dropout, activation: the encoder.
        use_norm: per-window instance normalisation.

    Shapes: x ``[B, L, V]`` -> ``[B, H, V]`` (time features are not used).
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        edge_index: Tensor,
        num_variables: int,
        edge_weight: Tensor | None = None,
        score: str = "dot",
        mix_complete: bool = False,
        d_model: int = 256,
        num_heads: int = 8,
        d_ff: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        activation: str = "gelu",
        use_norm: bool = True,
    ):
        super().__init__()
        if score not in ("dot", "additive", "gcn"):
            raise ValueError(f"score must be 'dot', 'additive' or 'gcn', got {score!r}")
        check_edge_index(edge_index, num_variables, num_variables)
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.size(1))
        if edge_weight.shape != (edge_index.size(1),):
            raise ValueError(
                f"edge_weight must have one entry per edge, shape [{edge_index.size(1)}], "
                f"got {tuple(edge_weight.shape)}"
            )
        order = torch.argsort(edge_index[1] * num_variables + edge_index[0])  # CSR order: by target, then source
        self.register_buffer("edge_index", edge_index.long()[:, order].clone())
        self.register_buffer("edge_weight", edge_weight.float()[order].clone())
        self.seq_len, self.pred_len, self.num_variables = seq_len, pred_len, num_variables
        self.score, self.mix_complete, self.use_norm = score, mix_complete, use_norm
        self.embedding = nn.Linear(seq_len, d_model)
        self.dropout = nn.Dropout(dropout)
        if mix_complete:
            # the summed attentions under one norm: LocalGlobalLayer's norm="sum"
            self.layers = nn.ModuleList(
                LocalGlobalLayer(d_model, num_heads, d_ff, dropout, score, activation, norm="sum")
                for _ in range(num_layers)
            )
        else:
            self.layers = nn.ModuleList(
                GraphformerLayer(d_model, num_heads, d_ff, dropout, activation, score=score) for _ in range(num_layers)
            )
        self.norm = nn.LayerNorm(d_model)
        self.projection = nn.Linear(d_model, pred_len)
        if mix_complete:
            self.register_load_state_dict_pre_hook(_rename_mixed_layer_keys)
        # derived state, not in the state_dict: layouts of the batched graph, keyed by batch size, for one
        # version of the prior (see batched_graph)
        self._graphs: dict[int, SparseGraph] = {}
        self._graphs_of: tuple | None = None

    def _prior_version(self) -> tuple:
        """What the cached layouts were built from: the ``edge_index`` buffer's storage, device and version.

        ``load_state_dict`` copies into the buffer in place (its ``_version``
        counter moves), ``.to(device)`` replaces it (a new storage), so either
        makes the cache stale.
        """
        ei = self.edge_index
        try:
            version = ei._version
        except RuntimeError:  # an inference-mode tensor keeps no version counter
            version = None
        return ei.device, ei.data_ptr(), version, tuple(ei.shape)

    def batched_graph(self, batch_size: int) -> SparseGraph:
        """The block-diagonal graph of ``batch_size`` copies of G (node ``b*V + v`` is variable v of window b).

        Built once per batch size and kept until the prior graph changes (a
        ``load_state_dict``, ``.to(device)`` or in-place edit of the
        ``edge_index`` buffer), then rebuilt from the buffer.
        """
        if not torch.compiler.is_compiling():  # a compiled forward reuses the graphs built eagerly
            version = self._prior_version()
            if version != self._graphs_of:
                self._graphs, self._graphs_of = {}, version
        if batch_size not in self._graphs:
            V = self.num_variables  # noqa: N806
            offsets = torch.arange(batch_size, device=self.edge_index.device) * V  # [B]
            edges = (self.edge_index.unsqueeze(1) + offsets.view(1, -1, 1)).reshape(2, -1)  # [2, B*E]
            self._graphs[batch_size] = SparseGraph.from_edge_index(edges, batch_size * V)
        return self._graphs[batch_size]

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]`` from ``x`` ``[B, L, V]``."""
        _check_input(x, self.seq_len, self.num_variables)
        B, _, V = x.shape  # noqa: N806
        if self.use_norm:
            x, stats = normalize(x)
        h = self.dropout(self.embedding(x.transpose(1, 2)))  # [B, V, d]
        graph = self.batched_graph(B)
        weight = self.edge_weight.repeat(B) if self.score == "gcn" else None  # [B*E]
        for layer in self.layers:
            if self.mix_complete:
                h = layer(h, graph, edge_attr=weight)
            else:
                h = layer(h.reshape(B * V, -1), graph, edge_attr=weight).view(B, V, -1)
        y = self.projection(self.norm(h)).transpose(1, 2)  # [B, H, V]
        return stats.undo(y) if self.use_norm else y

    @property
    def num_edges(self) -> int:
        """E, the edges of the prior graph (self-loops included)."""
        return self.edge_index.size(1)
