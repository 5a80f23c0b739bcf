"""Conversions from torch.nn and PyTorch Geometric, and to / from networkx and scipy.

A ``torch.nn`` Transformer block and a PyG convolution are both one
:class:`~graphformer.GraphAttention` with a particular score and graph, so
each converts to a graphformer module holding copies of the same weights
and computing the same function:

=====================================  =========================================================
source                                 graphformer module
=====================================  =========================================================
``nn.MultiheadAttention``              ``GraphAttention(score="dot")``
``nn.TransformerEncoderLayer``         :class:`~graphformer.GraphformerLayer`
``nn.TransformerEncoder``              :class:`~graphformer.GraphformerEncoder`
``nn.TransformerDecoderLayer``         :class:`~graphformer.GraphformerDecoderLayer`
``GCNConv``                            ``GraphAttention(score="gcn", self_loops="remaining")``
``GATConv``                            ``GraphAttention(score="additive", self_loops="add")``
``GATv2Conv``                          ``GraphAttention(score="gatv2", self_loops="add")``
``TransformerConv``                    ``GraphAttention(score="dot", root_weight=True)``
=====================================  =========================================================

Converted torch modules are always batch-first: call ``m(x)``,
``m(x, causal=True)``, ``m(x, key_padding_mask=pad)``, ``m((x_src, x_dst))``
with ``x`` ``[B, N, d]`` whatever the source module's ``batch_first``.
Converted PyG convs are called as the conv is, with edge features passed by
keyword: ``m(x, edge_index, edge_attr=e)``.

The graph helpers move edges between formats: ``edge_index`` ``[2, E]``
(row 0 = source j, row 1 = target i, a message flows j -> i) and networkx
graphs, scipy sparse matrices and PyG ``Data`` objects.

Legend: B batch, N nodes, E edges, H heads, C channels per head, d model width.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import GraphAttention
from .layers import GraphformerDecoderLayer, GraphformerEncoder, GraphformerLayer

__all__ = [
    "from_data",
    "from_networkx",
    "from_pyg",
    "from_scipy",
    "from_torch",
    "to_networkx",
    "to_scipy",
]


# ---------------------------------------------------------------- copying weights
def _param(t: Tensor | None, requires_grad: bool = True) -> nn.Parameter | None:
    """A fresh leaf parameter holding a copy of ``t`` (None stays None)."""
    if t is None:
        return None
    return nn.Parameter(t.detach().clone(), requires_grad=requires_grad)


def _load_linear(dst: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
    """Give ``dst`` copies of ``weight`` ``[out, in]`` and ``bias`` ``[out]`` (or no bias)."""
    if tuple(dst.weight.shape) != tuple(weight.shape):
        raise ValueError(f"cannot copy a weight of shape {tuple(weight.shape)} into a Linear of shape "
                         f"{tuple(dst.weight.shape)}")
    dst.weight = _param(weight, weight.requires_grad)
    dst.bias = _param(bias, bias is not None and bias.requires_grad)


def _load_norm(dst: nn.LayerNorm, src: nn.LayerNorm) -> None:
    """Copy a LayerNorm's affine parameters and epsilon."""
    dst.weight = _param(src.weight, src.weight is not None and src.weight.requires_grad)
    dst.bias = _param(src.bias, src.bias is not None and src.bias.requires_grad)
    dst.eps = src.eps
    dst.elementwise_affine = src.elementwise_affine


def _like(module: nn.Module, reference: nn.Module) -> nn.Module:
    """Move ``module`` to the device and floating dtype of ``reference``'s first parameter, and copy its mode."""
    first = next(reference.parameters(), None)
    if first is not None:
        module.to(device=first.device, dtype=first.dtype)
    return module.train(reference.training)


# ------------------------------------------------------------------- torch.nn
def from_torch(module: nn.Module) -> nn.Module:
    """Convert a ``torch.nn`` attention module to the graphformer module computing the same function.

    ==============================  ==========================================================
    ``module``                      returns
    ==============================  ==========================================================
    ``nn.MultiheadAttention``       :class:`~graphformer.GraphAttention` (``score="dot"``)
    ``nn.TransformerEncoderLayer``  :class:`~graphformer.GraphformerLayer`
    ``nn.TransformerEncoder``       :class:`~graphformer.GraphformerEncoder`
    ``nn.TransformerDecoderLayer``  :class:`~graphformer.GraphformerDecoderLayer`
    ==============================  ==========================================================

    The result holds copies of the weights (on the same device, in the same
    dtype and training mode) and is always batch-first. For ``x`` ``[B, N, d]``
    and a batch-first torch module (one built with ``batch_first=False``
    takes and returns ``x.transpose(0, 1)`` instead)::

        m(x)                                   == mha(x, x, x)[0]   == layer(x)
        m(x, causal=True)                      == layer(x, src_mask=causal_mask, is_causal=True)
        m(x, key_padding_mask=pad)             == layer(x, src_key_padding_mask=pad)
        m((x_src, x_dst))                      == mha(x_dst, x_src, x_src)[0]
        m(x, memory, causal=True)              == decoder(x, memory, tgt_mask=causal_mask, tgt_is_causal=True)

    ``key_padding_mask`` is boolean (True = padded). Dropout rates, layer-norm
    epsilons, activations (relu, gelu or any callable), ``norm_first`` and
    ``bias`` are copied. Gradients agree too: the gradient of torch's fused
    ``in_proj_weight`` is the concatenation of those of ``q_proj``,
    ``k_proj`` and ``v_proj``.

    Two conventions differ, both on inputs torch itself treats specially: a
    target whose every source is masked gets a zero message here (some of
    torch's kernels return NaN for it, others zero), and ``nn.TransformerEncoder``'s nested-tensor fast path
    (eval mode, no grad, ``src_key_padding_mask`` given) returns zeros at
    padded positions, where the converted module computes them.

    Raises:
        ValueError: for ``nn.MultiheadAttention`` built with ``add_bias_kv=True``,
            ``add_zero_attn=True`` or ``kdim != vdim`` (no graph counterpart).
        TypeError: for any other module type.
    """
    if isinstance(module, nn.MultiheadAttention):
        return _from_mha(module)
    if isinstance(module, nn.TransformerEncoderLayer):
        return _from_encoder_layer(module)
    if isinstance(module, nn.TransformerEncoder):
        return _from_encoder(module)
    if isinstance(module, nn.TransformerDecoderLayer):
        return _from_decoder_layer(module)
    raise TypeError("from_torch converts nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder "
                    f"and nn.TransformerDecoderLayer, got {type(module).__name__}")


def _from_mha(mha: nn.MultiheadAttention) -> GraphAttention:
    if mha.bias_k is not None:
        raise ValueError("nn.MultiheadAttention with add_bias_kv=True appends a learned key/value node to every "
                         "sequence, which GraphAttention does not model; build the module with add_bias_kv=False")
    if mha.add_zero_attn:
        raise ValueError("nn.MultiheadAttention with add_zero_attn=True appends a zero key/value node, which "
                         "GraphAttention does not model; build the module with add_zero_attn=False")
    if mha.kdim != mha.vdim:
        raise ValueError(f"nn.MultiheadAttention with kdim={mha.kdim} != vdim={mha.vdim} has keys and values from "
                         "different node sets; GraphAttention takes one source node set (kdim == vdim)")
    d = mha.embed_dim
    bias = mha.in_proj_bias is not None
    attn = GraphAttention(d, mha.num_heads, score="dot", dropout=mha.dropout, bias=bias,
                          kdim=None if mha.kdim == d else mha.kdim)
    if mha._qkv_same_embed_dim:
        w = mha.in_proj_weight
        weights = [(t, w.requires_grad) for t in w.chunk(3)]
    else:
        weights = [(t, t.requires_grad) for t in (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)]
    biases = mha.in_proj_bias.chunk(3) if bias else (None, None, None)
    bias_grad = bias and mha.in_proj_bias.requires_grad
    for lin, (w, w_grad), b in zip((attn.q_proj, attn.k_proj, attn.v_proj), weights, biases):
        lin.weight = _param(w, w_grad)
        lin.bias = _param(b, bias_grad)
    _load_linear(attn.out_proj, mha.out_proj.weight, mha.out_proj.bias)
    return _like(attn, mha)


def _activation_of(layer: nn.Module) -> str | Callable[[Tensor], Tensor]:
    act = layer.activation
    if act is F.relu or type(act) is nn.ReLU:
        return "relu"
    if act is F.gelu or (type(act) is nn.GELU and act.approximate == "none"):
        return "gelu"
    return copy.deepcopy(act) if isinstance(act, nn.Module) else act


def _load_feedforward(dst: GraphformerLayer | GraphformerDecoderLayer, src: nn.Module) -> None:
    _load_linear(dst.feedforward.linear1, src.linear1.weight, src.linear1.bias)
    _load_linear(dst.feedforward.linear2, src.linear2.weight, src.linear2.bias)
    dst.feedforward.dropout.p = src.dropout.p


def _from_encoder_layer(layer: nn.TransformerEncoderLayer) -> GraphformerLayer:
    d, ff = layer.linear1.in_features, layer.linear1.out_features
    m = GraphformerLayer(d, layer.self_attn.num_heads, ff, dropout=layer.dropout.p,
                         activation=_activation_of(layer), norm_first=layer.norm_first,
                         layer_norm_eps=layer.norm1.eps, bias=layer.linear1.bias is not None)
    m.self_attn = _from_mha(layer.self_attn)
    _load_feedforward(m, layer)
    _load_norm(m.norm1, layer.norm1)
    _load_norm(m.norm2, layer.norm2)
    m.dropout1.p, m.dropout2.p = layer.dropout1.p, layer.dropout2.p
    return _like(m, layer)


def _from_encoder(encoder: nn.TransformerEncoder) -> GraphformerEncoder:
    layers = [_from_encoder_layer(lay) for lay in encoder.layers]
    m = GraphformerEncoder(layers[0], 1, norm=copy.deepcopy(encoder.norm))
    m.layers = nn.ModuleList(layers)
    return _like(m, encoder)


def _from_decoder_layer(layer: nn.TransformerDecoderLayer) -> GraphformerDecoderLayer:
    d, ff = layer.linear1.in_features, layer.linear1.out_features
    m = GraphformerDecoderLayer(d, layer.self_attn.num_heads, ff, dropout=layer.dropout.p,
                                activation=_activation_of(layer), norm_first=layer.norm_first,
                                layer_norm_eps=layer.norm1.eps, bias=layer.linear1.bias is not None)
    m.self_attn = _from_mha(layer.self_attn)
    m.cross_attn = _from_mha(layer.multihead_attn)
    _load_feedforward(m, layer)
    for name in ("norm1", "norm2", "norm3"):
        _load_norm(getattr(m, name), getattr(layer, name))
    for name in ("dropout1", "dropout2", "dropout3"):
        getattr(m, name).p = getattr(layer, name).p
    return _like(m, layer)


# -------------------------------------------------------- PyTorch Geometric
def from_pyg(conv: nn.Module) -> GraphAttention:
    """Convert a PyTorch Geometric convolution to the :class:`~graphformer.GraphAttention` computing the same function.

    ====================  ==========================================================================
    ``conv``              GraphAttention
    ====================  ==========================================================================
    ``GCNConv``           ``score="gcn"`` (``"sum"`` with ``normalize=False``),
                          ``self_loops="remaining"`` if ``add_self_loops``; ``lin`` -> ``v_proj``
    ``GATConv``           ``score="additive"``, ``self_loops="add"`` if ``add_self_loops``; ``lin``
                          -> ``v_proj`` (or ``lin_src`` -> ``v_proj``, ``lin_dst`` -> ``q_proj``),
                          ``att_*`` -> ``score.att_*``, ``lin_edge`` -> ``edge_proj``, ``res`` -> ``root``
    ``GATv2Conv``         ``score="gatv2"``; ``lin_l`` -> ``v_proj``, ``lin_r`` -> ``q_proj`` (the same
                          module with ``share_weights``), ``att`` -> ``score.att``
    ``TransformerConv``   ``score="dot"``; ``lin_query/key/value`` -> ``q/k/v_proj``, ``lin_edge``
                          -> ``edge_proj``, ``lin_skip`` -> ``root`` (with ``root_weight``)
    ====================  ==========================================================================

    The result holds copies of the weights and satisfies, in eval mode,
    ``m(x, edge_index) == conv(x, edge_index)``, ``m(x, edge_index, edge_attr=e)
    == conv(x, edge_index, e)`` (``e`` the edge weights ``[E]`` of GCN or the
    edge features ``[E, edge_dim]`` of the others) and, for the convs that
    take a pair, ``m((x_src, x_dst), edge_index) == conv((x_src, x_dst), edge_index)``;
    the gradients with respect to inputs and parameters agree as well
    (PyG's ``att_src`` ``[1, H, C]`` is stored as ``[H, C]``).

    ``GCNConv(cached=True)`` converts; the converted layer recomputes the
    normalisation on every call (the cached numbers, on the cached graph).
    Edge features are always ``[E, edge_dim]``: where PyG also takes ``[E]``
    for ``edge_dim=1``, pass ``e.unsqueeze(-1)``.

    Raises:
        ValueError: for options without a counterpart: ``GCNConv(improved=True)``,
            ``TransformerConv(beta=True)``, a self-loop ``fill_value`` other
            than ``"mean"`` together with ``edge_dim``, an aggregation other than
            ``"add"``, ``flow="target_to_source"``, or lazily initialised
            (``in_channels=-1``) weights not materialised by a first call.
        TypeError: for any other module type.
    """
    from torch_geometric.nn import GATConv, GATv2Conv, GCNConv, TransformerConv

    kinds = {GCNConv: _from_gcn, GATConv: _from_gat, GATv2Conv: _from_gatv2, TransformerConv: _from_transformer_conv}
    for kind, convert in kinds.items():
        if isinstance(conv, kind):
            _check_message_passing(conv)
            return _like(convert(conv), conv)
    raise TypeError("from_pyg converts torch_geometric.nn GCNConv, GATConv, GATv2Conv and TransformerConv, "
                    f"got {type(conv).__name__}")


def _check_message_passing(conv: nn.Module) -> None:
    name = type(conv).__name__
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in conv.parameters()):
        raise ValueError(f"{name} has lazily initialised weights (in_channels=-1); call it once on data "
                         "to materialise them, or build it with explicit in_channels")
    if not isinstance(conv.aggr, str) or conv.aggr not in ("add", "sum"):
        raise ValueError(f"{name} with aggr={conv.aggr!r} cannot be converted: GraphAttention sums weighted "
                         "messages (aggr='add')")
    if conv.flow != "source_to_target":
        raise ValueError(f"{name} with flow={conv.flow!r} cannot be converted: GraphAttention sends messages "
                         "edge_index[0] -> edge_index[1] (flow='source_to_target'); flip edge_index instead")


def _channels(in_channels: int | Sequence[int]) -> tuple[int, int]:
    """(source width, target width) of a conv's ``in_channels``."""
    if isinstance(in_channels, int):
        return in_channels, in_channels
    return int(in_channels[0]), int(in_channels[1])


def _from_gcn(conv) -> GraphAttention:
    if conv.improved:
        raise ValueError("GCNConv(improved=True) gives added self-loops weight 2, which GraphAttention's "
                         "self_loops='remaining' (weight 1) does not; build the conv with improved=False, or "
                         "add weight-2 self-loops to edge_index / edge weights yourself and use add_self_loops=False")
    score = "gcn" if conv.normalize else "sum"
    attn = GraphAttention(conv.in_channels, 1, score=score, bias=conv.bias is not None,
                          head_dim=conv.out_channels, out_proj=False,
                          self_loops="remaining" if conv.add_self_loops else None)
    _load_linear(attn.v_proj, conv.lin.weight, conv.lin.bias)
    attn.bias = _param(conv.bias, conv.bias is not None and conv.bias.requires_grad)
    return attn


def _check_fill_value(conv) -> None:
    fill = conv.fill_value
    if conv.add_self_loops and conv.edge_dim is not None and not (isinstance(fill, str) and fill == "mean"):
        raise ValueError(f"{type(conv).__name__}(fill_value={fill!r}) gives added self-loops that edge feature; "
                         "GraphAttention fills them with the mean of each node's incoming edge features "
                         "(fill_value='mean'). Build the conv with fill_value='mean', or add the loops to "
                         "edge_index and edge_attr yourself and build it with add_self_loops=False")


def _pyg_att(att: Tensor) -> nn.Parameter:
    """PyG's attention vector ``[1, H, C]`` as GraphAttention's ``[H, C]``."""
    return _param(att.reshape(att.shape[-2], att.shape[-1]), att.requires_grad)


def _load_root_and_bias(attn: GraphAttention, conv) -> None:
    if conv.res is not None:
        _load_linear(attn.root, conv.res.weight, conv.res.bias)
    attn.bias = _param(conv.bias, conv.bias is not None and conv.bias.requires_grad)


def _from_gat(conv) -> GraphAttention:
    _check_fill_value(conv)
    src, dst = _channels(conv.in_channels)
    shared = getattr(conv, "lin", None) is not None or conv.lin_src is conv.lin_dst
    attn = GraphAttention(dst, conv.heads, score="additive", dropout=conv.dropout, bias=conv.bias is not None,
                          kdim=None if shared else src, head_dim=conv.out_channels, concat=conv.concat,
                          out_proj=False, root_weight=conv.res is not None, edge_dim=conv.edge_dim,
                          self_loops="add" if conv.add_self_loops else None)
    attn.score.negative_slope = conv.negative_slope
    if shared:
        lin = conv.lin if getattr(conv, "lin", None) is not None else conv.lin_src
        _load_linear(attn.v_proj, lin.weight, lin.bias)
    else:
        _load_linear(attn.v_proj, conv.lin_src.weight, conv.lin_src.bias)
        _load_linear(attn.q_proj, conv.lin_dst.weight, conv.lin_dst.bias)
    attn.score.att_src = _pyg_att(conv.att_src)
    attn.score.att_dst = _pyg_att(conv.att_dst)
    if conv.lin_edge is not None:
        _load_linear(attn.edge_proj, conv.lin_edge.weight, conv.lin_edge.bias)
        attn.score.att_edge = _pyg_att(conv.att_edge)
    _load_root_and_bias(attn, conv)
    return attn


def _from_gatv2(conv) -> GraphAttention:
    _check_fill_value(conv)
    src, dst = _channels(conv.in_channels)
    attn = GraphAttention(dst, conv.heads, score="gatv2", dropout=conv.dropout, bias=conv.bias is not None,
                          kdim=None if src == dst else src, head_dim=conv.out_channels, concat=conv.concat,
                          out_proj=False, root_weight=conv.res is not None, edge_dim=conv.edge_dim,
                          self_loops="add" if conv.add_self_loops else None)
    attn.score.negative_slope = conv.negative_slope
    _load_linear(attn.v_proj, conv.lin_l.weight, conv.lin_l.bias)
    if conv.share_weights:
        attn.q_proj = attn.v_proj  # one module under two names: gradients accumulate once, as in PyG
    else:
        _load_linear(attn.q_proj, conv.lin_r.weight, conv.lin_r.bias)
    attn.score.att = _pyg_att(conv.att)
    if conv.lin_edge is not None:
        _load_linear(attn.edge_proj, conv.lin_edge.weight, conv.lin_edge.bias)
    _load_root_and_bias(attn, conv)
    return attn


def _from_transformer_conv(conv) -> GraphAttention:
    if conv.beta:
        raise ValueError("TransformerConv(beta=True) mixes the skip and the message with a learned gate, which "
                         "GraphAttention's root_weight (a plain sum) does not; build the conv with beta=False")
    src, dst = _channels(conv.in_channels)
    # bias=False: PyG's TransformerConv has no bias after aggregation; its projections' biases are copied below
    attn = GraphAttention(dst, conv.heads, score="dot", dropout=conv.dropout, bias=False,
                          kdim=None if src == dst else src, head_dim=conv.out_channels, concat=conv.concat,
                          out_proj=False, root_weight=conv.root_weight, edge_dim=conv.edge_dim)
    _load_linear(attn.q_proj, conv.lin_query.weight, conv.lin_query.bias)
    _load_linear(attn.k_proj, conv.lin_key.weight, conv.lin_key.bias)
    _load_linear(attn.v_proj, conv.lin_value.weight, conv.lin_value.bias)
    if conv.lin_edge is not None:
        _load_linear(attn.edge_proj, conv.lin_edge.weight, conv.lin_edge.bias)
    if conv.root_weight:
        _load_linear(attn.root, conv.lin_skip.weight, conv.lin_skip.bias)
    return attn


# ------------------------------------------------------------ graph formats
def _names(attrs: str | Sequence[str] | None, what: str) -> list[str]:
    if attrs is None:
        return []
    if isinstance(attrs, str):
        return [attrs]
    if not all(isinstance(a, str) for a in attrs):
        raise TypeError(f"{what} must be an attribute name or a list of names, got {attrs!r}")
    return list(attrs)


def _column_block(values: list[Any], name: str, what: str) -> tuple[Tensor, bool]:
    """Stack per-item values (numbers or vectors) into ``[n, k]``; also say whether all were numbers."""
    dtype = torch.get_default_dtype()
    try:
        rows = [torch.as_tensor(v, dtype=dtype) for v in values]
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{what} attribute {name!r} must hold numbers or vectors of numbers: {err}") from err
    widths = {r.numel() for r in rows}
    if len(widths) > 1:
        raise ValueError(f"{what} attribute {name!r} holds vectors of different lengths {sorted(widths)}")
    scalar = all(r.dim() == 0 for r in rows)
    if not rows:
        return torch.zeros(0, 1, dtype=dtype), True
    return torch.stack([r.reshape(-1) for r in rows]), scalar


def from_networkx(graph, node_attrs: str | Sequence[str] | None = None,
                  edge_attr: str | Sequence[str] | None = None) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """Node features, ``edge_index`` and edge features of a networkx graph.

    Nodes are numbered in ``graph.nodes`` order. An undirected graph gives
    every edge in both directions (a self-loop once); a multigraph keeps its
    parallel edges.

    Args:
        graph: any networkx graph.
        node_attrs: a node attribute name, or several; their values (numbers or
            vectors) are concatenated into ``x`` ``[N, F]``. None: ``x`` is None.
        edge_attr: an edge attribute name, giving ``[E]`` for numbers (edge
            weights) or ``[E, F]`` for vectors; or a list of names,
            concatenated into ``[E, F]``. None: no edge features.

    Returns:
        ``(x, edge_index, edge_attr)``: ``[N, F]`` float or None, ``[2, E]``
        long, ``[E]`` / ``[E, F]`` float or None.
    """
    try:
        import networkx as nx
    except ImportError as err:  # pragma: no cover - networkx is a dependency
        raise ImportError("from_networkx needs networkx: pip install networkx") from err
    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx graph, got {type(graph).__name__}")
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}

    x = None
    node_names = _names(node_attrs, "node_attrs")
    if node_names:
        blocks = []
        for name in node_names:
            missing = [n for n in nodes if name not in graph.nodes[n]]
            if missing:
                raise ValueError(f"node {missing[0]!r} has no attribute {name!r} (node_attrs); give every node one")
            blocks.append(_column_block([graph.nodes[n][name] for n in nodes], name, "node")[0])
        x = torch.cat(blocks, dim=1)

    edge_names = _names(edge_attr, "edge_attr")
    src, dst, data = [], [], []
    for u, v, attrs in graph.edges(data=True):
        both = not graph.is_directed() and u != v
        for a, b in ((u, v), (v, u)) if both else ((u, v),):
            src.append(index[a])
            dst.append(index[b])
            data.append(attrs)
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)

    features = None
    if edge_names:
        blocks, scalar = [], False
        for name in edge_names:
            missing = [i for i, attrs in enumerate(data) if name not in attrs]
            if missing:
                i = missing[0]
                raise ValueError(f"edge ({nodes[src[i]]!r}, {nodes[dst[i]]!r}) has no attribute {name!r} "
                                 "(edge_attr); give every edge one")
            block, scalar = _column_block([attrs[name] for attrs in data], name, "edge")
            blocks.append(block)
        features = torch.cat(blocks, dim=1)
        if isinstance(edge_attr, str) and scalar:
            features = features.squeeze(1)  # one number per edge: weights [E]
    return x, edge_index, features


def to_networkx(edge_index, num_nodes: int | None = None, *, x: Tensor | None = None,
                edge_attr: Tensor | None = None, node_attr_name: str = "x", edge_attr_name: str = "weight",
                to_undirected: bool = False):
    """A networkx graph with nodes ``0 .. N-1`` and the edges of ``edge_index``.

    Args:
        edge_index: ``[2, E]`` edges j -> i, or a PyG ``Data`` object (its
            ``x``, ``edge_attr`` / ``edge_weight`` and ``num_nodes`` are used
            unless given).
        num_nodes: N (default: largest node id + 1).
        x: node features ``[N, F]``, stored as lists under ``node_attr_name``.
        edge_attr: edge weights ``[E]`` (stored as floats) or features ``[E, F]``
            (stored as lists) under ``edge_attr_name``.
        to_undirected: return an ``nx.Graph`` (j -> i and i -> j become one edge)
            instead of an ``nx.DiGraph``.

    Parallel edges collapse into one (the last one's attribute is kept).
    """
    import networkx as nx

    if _is_data(edge_index):
        data = edge_index
        x = data.x if x is None else x
        edge_attr = _data_edge_attr(data) if edge_attr is None else edge_attr
        num_nodes = data.num_nodes if num_nodes is None else num_nodes
        edge_index = data.edge_index
    edge_index = _check_index(edge_index)
    num_nodes = _num_nodes(edge_index, num_nodes, x)
    graph = nx.Graph() if to_undirected else nx.DiGraph()
    if x is not None:
        if x.size(0) != num_nodes:
            raise ValueError(f"x has {x.size(0)} rows but num_nodes is {num_nodes}")
        graph.add_nodes_from((i, {node_attr_name: row}) for i, row in enumerate(x.detach().cpu().tolist()))
    else:
        graph.add_nodes_from(range(num_nodes))
    pairs = edge_index.t().cpu().tolist()
    if edge_attr is None:
        graph.add_edges_from(pairs)
    else:
        if edge_attr.size(0) != len(pairs):
            raise ValueError(f"edge_attr has {edge_attr.size(0)} rows but edge_index has {len(pairs)} edges")
        values = edge_attr.detach().cpu().tolist()
        graph.add_edges_from((u, v, {edge_attr_name: value}) for (u, v), value in zip(pairs, values))
    return graph


def from_scipy(adj, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """``edge_index`` and edge weights of a sparse adjacency matrix.

    Every stored entry ``adj[j, i]`` becomes an edge j -> i (row = source,
    as PyG's ``from_scipy_sparse_matrix``) with weight ``adj[j, i]``; stored
    zeros are kept. A dense array is accepted and its nonzeros are used.

    Args:
        adj: a scipy sparse matrix or array (any format), or a dense array ``[N_src, N_dst]``.
        dtype: weight dtype (default: torch's default float dtype).

    Returns:
        ``(edge_index [2, E] long, edge_weight [E])``.
    """
    import numpy as np
    import scipy.sparse as sp

    if not sp.issparse(adj):
        if isinstance(adj, Tensor):
            adj = adj.detach().cpu().numpy()
        adj = np.asarray(adj)
        if adj.ndim != 2:
            raise ValueError(f"adj must be a 2-D matrix, got shape {adj.shape}")
        adj = sp.coo_array(adj)
    coo = adj.tocoo()
    edge_index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
    weight = torch.from_numpy(np.asarray(coo.data)).to(dtype or torch.get_default_dtype())
    return edge_index, weight


def to_scipy(edge_index, num_nodes: int | tuple[int, int] | None = None, edge_weight: Tensor | None = None):
    """The sparse adjacency matrix of ``edge_index``, a ``scipy.sparse.coo_array``.

    Entry ``[j, i]`` holds the weight of edge j -> i (1 without weights);
    parallel edges stay separate entries (summed on ``.tocsr()``).

    Args:
        edge_index: ``[2, E]`` edges j -> i, or a PyG ``Data`` object.
        num_nodes: N for an ``[N, N]`` matrix, or ``(num_src, num_dst)`` for a
            bipartite graph (default: largest node id + 1).
        edge_weight: ``[E]`` weights.
    """
    import numpy as np
    import scipy.sparse as sp

    if _is_data(edge_index):
        data = edge_index
        num_nodes = data.num_nodes if num_nodes is None else num_nodes
        if edge_weight is None:
            edge_weight = _data_edge_attr(data)
            if edge_weight is not None and edge_weight.dim() != 1:
                edge_weight = None  # features, not weights
        edge_index = data.edge_index
    edge_index = _check_index(edge_index)
    if isinstance(num_nodes, (tuple, list)):
        shape = (int(num_nodes[0]), int(num_nodes[1]))
    else:
        n = _num_nodes(edge_index, num_nodes, None)
        shape = (n, n)
    E = edge_index.size(1)  # noqa: N806
    if edge_weight is None:
        values = np.ones(E, dtype=np.float32)
    else:
        if edge_weight.dim() != 1 or edge_weight.numel() != E:
            raise ValueError(f"edge_weight must have shape [E] = [{E}], got {tuple(edge_weight.shape)}")
        values = edge_weight.detach().cpu().numpy()
    row, col = edge_index.cpu().numpy()
    if E and (row.max() >= shape[0] or col.max() >= shape[1]):
        raise ValueError(f"edge_index refers to node ids beyond the matrix shape {shape}; raise num_nodes")
    return sp.coo_array((values, (row, col)), shape=shape)


def from_data(data) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor | None]:
    """``(x, edge_index, edge_attr, batch)`` of a PyG ``Data`` or ``Batch``, ready for a graphformer call.

    ``edge_attr`` is ``data.edge_attr``, or ``data.edge_weight`` when the
    object has no ``edge_attr``; ``batch`` is None for a single graph. Use as
    ``x, edge_index, edge_attr, batch = from_data(data); m(x, edge_index, edge_attr=edge_attr, batch=batch)``.
    """
    if not _is_data(data):
        raise TypeError(f"data must be a torch_geometric Data or Batch object, got {type(data).__name__}")
    if getattr(data, "edge_index", None) is None:
        raise ValueError("data has no edge_index; graphformer's sparse path needs one (or call the "
                         "module on data.x alone for the complete graph)")
    return data.x, data.edge_index, _data_edge_attr(data), getattr(data, "batch", None)


def _is_data(obj) -> bool:
    try:
        from torch_geometric.data.data import BaseData
    except ImportError:  # pragma: no cover - torch_geometric is a dependency
        return False
    return isinstance(obj, BaseData)


def _data_edge_attr(data) -> Tensor | None:
    edge_attr = getattr(data, "edge_attr", None)
    return getattr(data, "edge_weight", None) if edge_attr is None else edge_attr


def _check_index(edge_index) -> Tensor:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a [2, E] tensor (or a PyG Data object), got {type(edge_index).__name__}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
    if edge_index.dtype not in (torch.long, torch.int):
        raise TypeError(f"edge_index must hold integer node ids, got dtype {edge_index.dtype}; use .long()")
    if edge_index.numel() and int(edge_index.min()) < 0:
        raise ValueError("edge_index has negative node ids")
    return edge_index.long()


def _num_nodes(edge_index: Tensor, num_nodes: int | None, x: Tensor | None) -> int:
    smallest = int(edge_index.max()) + 1 if edge_index.numel() else 0
    if num_nodes is None:
        return max(smallest, 0 if x is None else x.size(0))
    if num_nodes < smallest:
        raise ValueError(f"num_nodes={num_nodes} but edge_index refers to node {smallest - 1}; raise num_nodes")
    return int(num_nodes)
