"""Conversions from torch.nn and PyTorch Geometric, and to / from networkx and scipy.

A ``torch.nn`` Transformer block and a PyG convolution are both one
:class:`~graphformer.GraphAttention` with a particular score and graph, so
each converts to a graphformer module holding copies of the same weights
and computing the same function:

=====================================  =========================================================
source                                 graphformer module
=====================================  =========================================================
``nn.MultiheadAttention``              :class:`TorchMultiheadAttention` (``GraphAttention(score="dot")``)
``nn.TransformerEncoderLayer``         :class:`TorchEncoderLayer` (a :class:`~graphformer.GraphformerLayer`)
``nn.TransformerEncoder``              :class:`TorchEncoder` (a :class:`~graphformer.GraphformerEncoder`)
``nn.TransformerDecoderLayer``         :class:`TorchDecoderLayer` (a :class:`~graphformer.GraphformerDecoderLayer`)
``nn.TransformerDecoder``              :class:`TorchDecoder`
``nn.Transformer``                     :class:`TorchTransformer`
``GCNConv``                            :class:`PygConv`: ``GraphAttention(score="gcn", self_loops="remaining")``
``GATConv``                            :class:`PygConv`: ``GraphAttention(score="additive", self_loops="add")``
``GATv2Conv``                          :class:`PygConv`: ``GraphAttention(score="gatv2", self_loops="add")``
``TransformerConv``                    :class:`PygConv`: ``GraphAttention(score="dot", root_weight=True)``
=====================================  =========================================================

Each converted module takes its peer's own call form as well as
graphformer's: ``m(query, key, value, attn_mask=..., ...)`` or
``layer(src, src_mask=...)`` for torch (in the source module's layout,
seq-first where it was built with ``batch_first=False``), and
``conv(x, edge_index, edge_weight)`` or ``conv(x, adj_t)`` for PyG. Where
the peer's semantics are a trap — ``GCNConv(cached=True)`` ignoring a new
graph, a seq-first module read as batch-first — the converted module gives
the same numbers on the same calls and raises where the two would silently
differ; see :func:`from_torch` and :func:`from_pyg`, and ``docs/interop.md``
for every option.

The graph helpers move edges between formats: ``edge_index`` ``[2, E]``
(row 0 = source j, row 1 = target i, a message flows j -> i), PyG's sparse
adjacency ``adj_t`` (:func:`from_sparse_adjacency`), networkx graphs, scipy
sparse matrices and PyG ``Data`` objects; they live in :mod:`graphformer.convert`
and are re-exported here under the same names.

Legend: B batch, N nodes, E edges, H heads, C channels per head, d model width.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionWeights, GraphAttention
from .convert import (  # the graph formats live in graphformer.convert; re-exported by their old names
    _is_sparse_tensor,
    from_data,
    from_networkx,
    from_scipy,
    from_sparse_adjacency,
    to_networkx,
    to_scipy,
)
from .layers import GraphformerDecoderLayer, GraphformerEncoder, GraphformerLayer

__all__ = [
    "PygConv",
    "TorchDecoder",
    "TorchDecoderLayer",
    "TorchEncoder",
    "TorchEncoderLayer",
    "TorchMultiheadAttention",
    "TorchTransformer",
    "from_data",
    "from_networkx",
    "from_pyg",
    "from_scipy",
    "from_sparse_adjacency",
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
        raise ValueError(
            f"cannot copy a weight of shape {tuple(weight.shape)} into a Linear of shape {tuple(dst.weight.shape)}"
        )
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
def from_torch(module: nn.Module, *, batch_first: bool | None = None) -> nn.Module:
    """Convert a ``torch.nn`` attention module to the graphformer module computing the same function.

    ==============================  =====================================================================
    ``module``                      returns (a subclass of)
    ==============================  =====================================================================
    ``nn.MultiheadAttention``       :class:`TorchMultiheadAttention` (a :class:`~graphformer.GraphAttention`)
    ``nn.TransformerEncoderLayer``  :class:`TorchEncoderLayer` (a :class:`~graphformer.GraphformerLayer`)
    ``nn.TransformerEncoder``       :class:`TorchEncoder` (a :class:`~graphformer.GraphformerEncoder`)
    ``nn.TransformerDecoderLayer``  :class:`TorchDecoderLayer` (a :class:`~graphformer.GraphformerDecoderLayer`)
    ``nn.TransformerDecoder``       :class:`TorchDecoder`
    ``nn.Transformer``              :class:`TorchTransformer`
    ==============================  =====================================================================

    The result holds copies of the weights (on the same device, in the same
    dtype and training mode) and takes both call forms — torch's own and
    graphformer's — returning what the torch module returns, to 1e-5 in
    float32 eval mode (outputs and gradients)::

        m(q, k, v, key_padding_mask=, need_weights=, attn_mask=, is_causal=) == mha(q, k, v, ...)  # (out, weights)
        m(x)                            == mha(x, x, x)[0]      == layer(x)
        m(x, causal=True)               == layer(x, src_mask=causal_mask, is_causal=True)
        m(x, key_padding_mask=pad)      == layer(x, src_key_padding_mask=pad)
        m(x, attn_mask=mask)            == layer(x, src_mask=mask)       # any bool or float mask
        m((x_src, x_dst))               == mha(x_dst, x_src, x_src)[0]
        m(tgt, memory, tgt_mask=..., memory_mask=..., ...)  == decoder(tgt, memory, tgt_mask=..., ...)
        m(tgt, memory, causal=True)     == decoder(tgt, memory, tgt_mask=causal_mask, tgt_is_causal=True)
        m(src, tgt, src_mask=..., tgt_mask=..., ...)        == transformer(src, tgt, ...)

    Masks follow torch: a bool ``attn_mask`` / ``tgt_mask`` / ``memory_mask``
    is True where attention is *not* allowed, a float one is added to the
    scores (``-inf`` = no edge); ``key_padding_mask`` is bool (True = padded)
    or float (added). A dense mask is a graph given by its adjacency matrix:
    it runs on the dense path (``GraphAttention(adjacency=..., attn_bias=...)``).
    ``is_causal`` / ``tgt_is_causal`` are hints in torch: with a mask given
    the mask is used (torch may use either); without one they mean causal.

    Layout: the converted module takes the layout of the module it came
    from — a module built with ``batch_first=False`` is called on seq-first
    ``[N, B, d]`` tensors in either call form, exactly as the torch module
    (trap: converting it to a batch-first module would silently mix up
    sequence and batch when they have the same length). Pass
    ``batch_first=True`` (or False) to choose the layout instead; the
    attribute ``m.batch_first`` says which one a module takes. Unbatched
    ``[N, d]`` input works in both layouts, as in torch.

    Converted decoder layers and stacks follow torch's defaults too: the
    bare call ``m(tgt, memory)`` attends to every target position (no mask),
    where :class:`~graphformer.GraphformerDecoderLayer` itself defaults to
    ``causal=True``.

    Dropout rates, layer-norm epsilons, activations (relu, gelu or any
    callable), ``norm_first``, ``bias``, ``kdim`` / ``vdim`` are copied.
    Gradients agree: the gradient of torch's fused ``in_proj_weight`` is the
    concatenation of those of ``q_proj``, ``k_proj`` and ``v_proj``.

    Two conventions differ, both on inputs torch itself treats specially: a
    target whose every source is masked gets a zero message here (some of
    torch's kernels return NaN for it, others zero), and ``nn.TransformerEncoder``'s nested-tensor fast path
    (eval mode, no grad, ``src_key_padding_mask`` given) returns zeros at
    padded positions, where the converted module computes them.

    Raises:
        ValueError: for ``nn.MultiheadAttention`` built with ``add_bias_kv=True`` or
            ``add_zero_attn=True`` (a learned or zero key/value node appended after
            the projections, which no graph over the given nodes expresses).
        TypeError: for any other module type.
    """
    if batch_first is not None and not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be None, True or False, got {batch_first!r}")
    converters = {
        nn.MultiheadAttention: _from_mha,
        nn.TransformerEncoderLayer: _from_encoder_layer,
        nn.TransformerEncoder: _from_encoder,
        nn.TransformerDecoderLayer: _from_decoder_layer,
        nn.TransformerDecoder: _from_decoder,
        nn.Transformer: _from_transformer,
    }
    for kind, convert in converters.items():
        if isinstance(module, kind):
            m = convert(module)
            m.batch_first = _source_batch_first(module) if batch_first is None else batch_first
            return _like(m, module)
    raise TypeError(
        "from_torch converts nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder, "
        "nn.TransformerDecoderLayer, nn.TransformerDecoder and nn.Transformer, "
        f"got {type(module).__name__}"
    )


def _source_batch_first(module: nn.Module) -> bool:
    """The layout a torch module takes: that of its (first) ``nn.MultiheadAttention``."""
    for sub in module.modules():
        if isinstance(sub, nn.MultiheadAttention):
            return bool(sub.batch_first)
    return bool(getattr(module, "batch_first", True))


def _is_dense(t) -> bool:
    """A strided floating or bool tensor: a feature tensor or a torch mask, not an ``edge_index``."""
    return isinstance(t, Tensor) and t.layout == torch.strided and (t.is_floating_point() or t.dtype == torch.bool)


def _to_batch_first(batch_first: bool, *xs):
    """Transpose ``[N, B, d]`` tensors (and pairs of them) to ``[B, N, d]`` unless already batch-first."""

    def flip(x):
        if isinstance(x, (tuple, list)):
            return type(x)(flip(t) for t in x)
        return x.transpose(0, 1) if (not batch_first and isinstance(x, Tensor) and x.dim() == 3) else x

    return flip(xs[0]) if len(xs) == 1 else tuple(flip(x) for x in xs)


def _torch_masks(
    attn_mask: Tensor | None,
    key_padding_mask: Tensor | None,
    is_causal: bool,
    *,
    batch: int,
    heads: int,
    targets: int,
    sources: int,
    unbatched: bool,
) -> dict[str, Any]:
    """GraphAttention keyword arguments for torch's masks.

    torch's bool masks are True where attention is *not* allowed, float masks
    are added to the scores; here the allowed edges become ``adjacency``
    (True = edge j -> i) and the finite additions ``attn_bias``. ``attn_mask``
    is ``[M, N]`` or ``[B * H, M, N]`` (``[H, M, N]`` unbatched);
    ``key_padding_mask`` ``[B, N]`` (``[N]`` unbatched).
    """
    kw: dict[str, Any] = {}
    adjacency, bias = None, None
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"attn_mask must be a bool or float tensor, got {type(attn_mask).__name__}")
        if attn_mask.dim() == 3:
            attn_mask = attn_mask.reshape(1 if unbatched else batch, heads, targets, sources)
        elif attn_mask.dim() != 2:
            raise ValueError(f"attn_mask must be [M, N] or [B * num_heads, M, N], got {tuple(attn_mask.shape)}")
        if attn_mask.dtype == torch.bool:
            adjacency = ~attn_mask
        else:
            finite = torch.isfinite(attn_mask)
            bias = attn_mask.masked_fill(~finite, 0.0)
            adjacency = None if bool(finite.all()) else finite
    elif is_causal:
        kw["causal"] = True
    if key_padding_mask is not None:
        if key_padding_mask.dtype == torch.bool:
            kw["key_padding_mask"] = key_padding_mask
        else:  # an additive float mask: -inf removes the edge, finite values bias it
            pad = key_padding_mask.reshape(-1 if not unbatched else 1, 1, 1, sources)
            finite = torch.isfinite(pad)
            pad_bias = pad.masked_fill(~finite, 0.0).expand(-1, -1, targets, -1)
            bias = pad_bias if bias is None else bias + pad_bias
            if not bool(finite.all()):
                finite = finite.expand(-1, -1, targets, -1)
                adjacency = finite if adjacency is None else adjacency & finite
    if adjacency is not None:
        kw["adjacency"] = adjacency
    if bias is not None:
        kw["attn_bias"] = bias
    return kw


class TorchMultiheadAttention(GraphAttention):
    """A :class:`~graphformer.GraphAttention` converted from ``nn.MultiheadAttention``, taking torch's call form too.

    * torch's form, ``m(query, key, value, key_padding_mask=None, need_weights=True,
      attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
      ``(out, weights)`` as ``nn.MultiheadAttention`` does (``weights`` None
      without ``need_weights``), with ``value`` distinct from ``key`` if
      wanted; ``key``/``value`` ``[B, N, kdim]`` / ``[B, N, vdim]``.
    * graphformer's form, ``m(x)``, ``m((x_src, x_dst))``, ``m(x, edge_index)``
      with the keywords of :meth:`GraphAttention.forward`, returns the output
      alone; it also takes torch's ``attn_mask`` / ``is_causal`` and a float
      ``key_padding_mask``.

    3-D inputs and outputs are seq-first ``[N, B, d]`` when
    :attr:`batch_first` is False (the layout of the module it came from).
    """

    batch_first: bool = True

    def forward(
        self,
        query,
        key=None,
        value=None,
        key_padding_mask=None,
        need_weights=None,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
        **kwargs,
    ):
        """Attend; torch's form when ``key`` is a feature tensor, graphformer's otherwise (see the class)."""
        if not _is_dense(key):  # graphformer's form: the second argument is edge_index (or nothing)
            if need_weights is not None:
                raise TypeError(
                    "need_weights belongs to torch's call form m(query, key, value, ...); in "
                    "graphformer's form pass return_attention=True"
                )
            x = _to_batch_first(self.batch_first, query)
            edge_index = kwargs.pop("edge_index", key)
            if value is not None:
                kwargs["value"] = _to_batch_first(self.batch_first, value)
            kw = kwargs
            if (
                attn_mask is not None
                or is_causal
                or (key_padding_mask is not None and key_padding_mask.dtype != torch.bool)
            ):
                x_dst = x[1] if isinstance(x, (tuple, list)) else x
                x_src = x[0] if isinstance(x, (tuple, list)) else x
                kw = {
                    **_torch_masks(
                        attn_mask,
                        key_padding_mask,
                        is_causal,
                        batch=x_dst.size(0) if x_dst.dim() == 3 else 1,
                        heads=self.num_heads,
                        targets=x_dst.size(-2),
                        sources=x_src.size(-2),
                        unbatched=x_dst.dim() == 2,
                    ),
                    **kwargs,
                }
                if kw.pop("causal", False) or kwargs.get("causal", False):
                    kw["causal"] = True
            elif key_padding_mask is not None:
                kw = {**kwargs, "key_padding_mask": key_padding_mask}
            out = super().forward(x, edge_index, **kw)
            if kwargs.get("return_attention", False):
                return _to_batch_first(self.batch_first, out[0]), out[1]
            return _to_batch_first(self.batch_first, out)
        if value is None:
            raise TypeError("torch's call form m(query, key, value, ...) needs value")
        need_weights = True if need_weights is None else need_weights
        q, k, v = _to_batch_first(self.batch_first, query, key, value)
        unbatched = q.dim() == 2
        kw = _torch_masks(
            attn_mask,
            key_padding_mask,
            is_causal,
            batch=1 if unbatched else q.size(0),
            heads=self.num_heads,
            targets=q.size(-2),
            sources=k.size(-2),
            unbatched=unbatched,
        )
        if key is query and value is key:
            x, value_arg = q, None  # self-attention: one fused projection, as torch
        else:
            x, value_arg = (k, q), (None if value is key else v)
        res = super().forward(x, value=value_arg, return_attention=need_weights, **kw, **kwargs)
        out, att = res if need_weights else (res, None)
        weights = None
        if att is not None:
            weights = att.weights.mean(dim=-3) if average_attn_weights else att.weights
        return _to_batch_first(self.batch_first, out), weights


def _from_mha(mha: nn.MultiheadAttention) -> TorchMultiheadAttention:
    if mha.bias_k is not None:
        raise ValueError(
            "nn.MultiheadAttention with add_bias_kv=True appends a learned key/value node to every "
            "sequence after the projections, which no graph over the given nodes expresses; build "
            "the module with add_bias_kv=False"
        )
    if mha.add_zero_attn:
        raise ValueError(
            "nn.MultiheadAttention with add_zero_attn=True appends a zero key/value node after the "
            "projections, which no graph over the given nodes expresses; build the module with "
            "add_zero_attn=False"
        )
    d = mha.embed_dim
    bias = mha.in_proj_bias is not None
    attn = TorchMultiheadAttention(
        d,
        mha.num_heads,
        score="dot",
        dropout=mha.dropout,
        bias=bias,
        kdim=None if mha.kdim == d else mha.kdim,
        vdim=None if mha.vdim == mha.kdim else mha.vdim,
    )
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
    return attn


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


def _split_mask(edge_index, mask):
    """torch passes the mask second where graphformer passes edge_index: tell them apart by dtype."""
    if _is_dense(edge_index):
        if mask is not None:
            raise TypeError("a mask was given both positionally and by keyword")
        return None, edge_index
    return edge_index, mask


class TorchEncoderLayer(GraphformerLayer):
    """A :class:`~graphformer.GraphformerLayer` converted from ``nn.TransformerEncoderLayer``.

    Takes torch's call form ``m(src, src_mask=None, src_key_padding_mask=None,
    is_causal=False)`` (masks as torch's, bool or float) and graphformer's
    ``m(x, edge_index=None, causal=..., key_padding_mask=..., ...)``; seq-first
    3-D tensors when :attr:`batch_first` is False.
    """

    batch_first: bool = True

    def forward(self, src, edge_index=None, src_key_padding_mask=None, is_causal=False, *, src_mask=None, **kwargs):
        """Apply the block (see the class docstring for the call forms)."""
        edge_index, src_mask = _split_mask(edge_index, src_mask)
        x = _to_batch_first(self.batch_first, src)
        if src_mask is not None:
            kwargs["attn_mask"] = src_mask
        if src_key_padding_mask is not None:
            kwargs["key_padding_mask"] = src_key_padding_mask
        if is_causal:
            kwargs["is_causal"] = True
        out = super().forward(x, edge_index, **kwargs)
        if kwargs.get("return_attention", False):
            return _to_batch_first(self.batch_first, out[0]), out[1]
        return _to_batch_first(self.batch_first, out)


def _from_encoder_layer(layer: nn.TransformerEncoderLayer) -> TorchEncoderLayer:
    d, ff = layer.linear1.in_features, layer.linear1.out_features
    m = TorchEncoderLayer(
        d,
        layer.self_attn.num_heads,
        ff,
        dropout=layer.dropout.p,
        activation=_activation_of(layer),
        norm_first=layer.norm_first,
        layer_norm_eps=layer.norm1.eps,
        bias=layer.linear1.bias is not None,
    )
    m.self_attn = _from_mha(layer.self_attn)
    _load_feedforward(m, layer)
    _load_norm(m.norm1, layer.norm1)
    _load_norm(m.norm2, layer.norm2)
    m.dropout1.p, m.dropout2.p = layer.dropout1.p, layer.dropout2.p
    return _like(m, layer)


class TorchEncoder(GraphformerEncoder):
    """A :class:`~graphformer.GraphformerEncoder` converted from ``nn.TransformerEncoder``.

    Takes torch's call form ``m(src, mask=None, src_key_padding_mask=None,
    is_causal=None)`` and graphformer's ``m(x, edge_index=None, **kwargs)``;
    seq-first 3-D tensors when :attr:`batch_first` is False.
    """

    batch_first: bool = True

    def forward(self, src, edge_index=None, src_key_padding_mask=None, is_causal=None, *, mask=None, **kwargs):
        """Run every layer in turn (see the class docstring for the call forms)."""
        edge_index, mask = _split_mask(edge_index, mask)
        x = _to_batch_first(self.batch_first, src)
        if mask is not None:
            kwargs["attn_mask"] = mask
        if src_key_padding_mask is not None:
            kwargs["key_padding_mask"] = src_key_padding_mask
        if is_causal:
            kwargs["is_causal"] = True
        out = super().forward(x, edge_index, **kwargs)
        if kwargs.get("return_attention", False):
            return _to_batch_first(self.batch_first, out[0]), out[1]
        return _to_batch_first(self.batch_first, out)


def _from_encoder(encoder: nn.TransformerEncoder) -> TorchEncoder:
    layers = [_from_encoder_layer(lay) for lay in encoder.layers]
    m = TorchEncoder(layers[0], 1, norm=copy.deepcopy(encoder.norm))
    m.layers = nn.ModuleList(layers)
    return _like(m, encoder)


def _decoder_masks(
    tgt_mask,
    memory_mask,
    tgt_key_padding_mask,
    memory_key_padding_mask,
    tgt_is_causal,
    memory_is_causal,
    causal,
    key_padding_mask,
):
    """Self- and cross-attention keywords of a decoder call in either form."""
    if isinstance(tgt_mask, bool):  # graphformer's positional m(x, memory, causal)
        causal, tgt_mask = tgt_mask, None
    if key_padding_mask is not None:
        if tgt_key_padding_mask is not None:
            raise TypeError("give the target padding as key_padding_mask or tgt_key_padding_mask, not both")
        tgt_key_padding_mask = key_padding_mask
    self_kw = {
        "attn_mask": tgt_mask,
        "key_padding_mask": tgt_key_padding_mask,
        "is_causal": bool(tgt_is_causal) or bool(causal),
    }
    cross_kw = {
        "attn_mask": memory_mask,
        "key_padding_mask": memory_key_padding_mask,
        "is_causal": bool(memory_is_causal),
    }
    return self_kw, cross_kw


class TorchDecoderLayer(GraphformerDecoderLayer):
    """A :class:`~graphformer.GraphformerDecoderLayer` converted from ``nn.TransformerDecoderLayer``.

    Takes torch's call form ``m(tgt, memory, tgt_mask=None, memory_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, tgt_is_causal=False,
    memory_is_causal=False)`` (masks as torch's, bool or float, any pattern)
    and graphformer's ``m(x, memory, causal=..., key_padding_mask=...,
    memory_key_padding_mask=...)``. Unlike the parent class the bare call
    ``m(tgt, memory)`` uses no mask, as torch's does. Seq-first 3-D tensors
    when :attr:`batch_first` is False.
    """

    batch_first: bool = True

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=False,
        memory_is_causal=False,
        *,
        causal=False,
        key_padding_mask=None,
    ):
        """Decode ``tgt`` attending to itself and to ``memory`` (see the class docstring)."""
        self_kw, cross_kw = _decoder_masks(
            tgt_mask,
            memory_mask,
            tgt_key_padding_mask,
            memory_key_padding_mask,
            tgt_is_causal,
            memory_is_causal,
            causal,
            key_padding_mask,
        )
        x, mem = _to_batch_first(self.batch_first, tgt, memory)
        return _to_batch_first(self.batch_first, self._decode(x, mem, self_kw, cross_kw))

    def _decode(self, x: Tensor, memory: Tensor, self_kw: dict, cross_kw: dict) -> Tensor:
        """The parent's block on batch-first tensors, with torch-style masks for both attentions."""

        def self_block(h):
            return self.dropout1(self.self_attn(h, **self_kw))

        def cross_block(h):
            return self.dropout2(self.cross_attn((memory, h), **cross_kw))

        if self.norm_first:
            x = x + self_block(self.norm1(x))
            x = x + cross_block(self.norm2(x))
            return x + self.dropout3(self.feedforward(self.norm3(x)))
        x = self.norm1(x + self_block(x))
        x = self.norm2(x + cross_block(x))
        return self.norm3(x + self.dropout3(self.feedforward(x)))


def _from_decoder_layer(layer: nn.TransformerDecoderLayer) -> TorchDecoderLayer:
    d, ff = layer.linear1.in_features, layer.linear1.out_features
    m = TorchDecoderLayer(
        d,
        layer.self_attn.num_heads,
        ff,
        dropout=layer.dropout.p,
        activation=_activation_of(layer),
        norm_first=layer.norm_first,
        layer_norm_eps=layer.norm1.eps,
        bias=layer.linear1.bias is not None,
    )
    m.self_attn = _from_mha(layer.self_attn)
    m.cross_attn = _from_mha(layer.multihead_attn)
    _load_feedforward(m, layer)
    for name in ("norm1", "norm2", "norm3"):
        _load_norm(getattr(m, name), getattr(layer, name))
    for name in ("dropout1", "dropout2", "dropout3"):
        getattr(m, name).p = getattr(layer, name).p
    return _like(m, layer)


class TorchDecoder(nn.Module):
    r"""A stack of :class:`TorchDecoderLayer`\ s with an optional final norm, converted from ``nn.TransformerDecoder``.

    The graph of each layer is the decoder's own (causal, or any ``tgt_mask``)
    over the targets plus the complete bipartite graph (or ``memory_mask``)
    from the memory. Call forms as :class:`TorchDecoderLayer`; the masks are
    shared by every layer.

    Shapes: tgt ``[B, M, d]``, memory ``[B, N, d]`` -> ``[B, M, d]`` (seq-first
    when :attr:`batch_first` is False).
    """

    batch_first: bool = True

    def __init__(self, layers: Sequence[TorchDecoderLayer], norm: nn.Module | None = None):
        super().__init__()
        if not layers:
            raise ValueError("TorchDecoder needs at least one layer")
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=None,
        memory_is_causal=False,
        *,
        causal=False,
        key_padding_mask=None,
    ):
        """Run every layer in turn (see :class:`TorchDecoderLayer` for the arguments)."""
        self_kw, cross_kw = _decoder_masks(
            tgt_mask,
            memory_mask,
            tgt_key_padding_mask,
            memory_key_padding_mask,
            tgt_is_causal,
            memory_is_causal,
            causal,
            key_padding_mask,
        )
        x, mem = _to_batch_first(self.batch_first, tgt, memory)
        for layer in self.layers:
            x = layer._decode(x, mem, self_kw, cross_kw)
        if self.norm is not None:
            x = self.norm(x)
        return _to_batch_first(self.batch_first, x)


def _from_decoder(decoder: nn.TransformerDecoder) -> TorchDecoder:
    return _like(
        TorchDecoder([_from_decoder_layer(lay) for lay in decoder.layers], copy.deepcopy(decoder.norm)), decoder
    )


class TorchTransformer(nn.Module):
    """An encoder-decoder converted from ``nn.Transformer``: a :class:`TorchEncoder` and a :class:`TorchDecoder`.

    The encoder attends over the source's graph (complete, or ``src_mask``),
    the decoder over the target's (``tgt_mask``, or ``causal=True``) and from
    the encoded memory (``memory_mask``). ``m(src, tgt, src_mask=None,
    tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None,
    tgt_is_causal=None, memory_is_causal=False)`` equals the torch module's
    call; graphformer's keywords ``causal`` (decoder self-attention) and
    ``key_padding_mask`` (source padding) are accepted too.

    Shapes: src ``[B, N, d]``, tgt ``[B, M, d]`` -> ``[B, M, d]`` (seq-first
    when :attr:`batch_first` is False).
    """

    batch_first: bool = True

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal=None,
        tgt_is_causal=None,
        memory_is_causal=False,
        *,
        causal=False,
        key_padding_mask=None,
    ):
        """Encode ``src``, then decode ``tgt`` against it (see the class docstring)."""
        if key_padding_mask is not None:
            if src_key_padding_mask is not None:
                raise TypeError("give the source padding as key_padding_mask or src_key_padding_mask, not both")
            src_key_padding_mask = key_padding_mask
        src, tgt = _to_batch_first(self.batch_first, src, tgt)
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return _to_batch_first(
            self.batch_first,
            self.decoder(
                tgt,
                memory,
                tgt_mask,
                memory_mask,
                tgt_key_padding_mask,
                memory_key_padding_mask,
                tgt_is_causal,
                memory_is_causal,
                causal=causal,
            ),
        )


def _from_transformer(model: nn.Transformer) -> TorchTransformer:
    encoder, decoder = from_torch(model.encoder, batch_first=True), from_torch(model.decoder, batch_first=True)
    return _like(TorchTransformer(encoder, decoder), model)


# -------------------------------------------------------- PyTorch Geometric
def from_pyg(conv: nn.Module) -> PygConv:
    """Convert a PyTorch Geometric convolution to the :class:`~graphformer.GraphAttention` computing the same function.

    ====================  ==========================================================================
    ``conv``              GraphAttention (a :class:`PygConv`)
    ====================  ==========================================================================
    ``GCNConv``           ``score="gcn"`` (``"sum"`` with ``normalize=False``),
                          ``self_loops="remaining"`` if ``add_self_loops`` (``fill_value=2`` with
                          ``improved``); ``lin`` -> ``v_proj``
    ``GATConv``           ``score="additive"``, ``self_loops="add"`` if ``add_self_loops``, its
                          ``fill_value``; ``lin`` -> ``v_proj`` (or ``lin_src`` -> ``v_proj``,
                          ``lin_dst`` -> ``q_proj``), ``att_*`` -> ``score.att_*``, ``lin_edge`` ->
                          ``edge_proj``, ``res`` -> ``root``
    ``GATv2Conv``         ``score="gatv2"``; ``lin_l`` -> ``v_proj``, ``lin_r`` -> ``q_proj`` (the same
                          module with ``share_weights``), ``att`` -> ``score.att``
    ``TransformerConv``   ``score="dot"``; ``lin_query/key/value`` -> ``q/k/v_proj``, ``lin_edge``
                          -> ``edge_proj``, ``lin_skip`` -> ``root`` (with ``root_weight``),
                          ``lin_beta`` -> ``lin_beta`` (with ``beta``: the gated skip)
    ====================  ==========================================================================

    The result holds copies of the weights and takes PyG's call forms and
    graphformer's, in eval mode equal to the conv's (outputs, input and
    parameter gradients; PyG's ``att_src`` ``[1, H, C]`` is stored as ``[H, C]``)::

        m(x, edge_index)                 == conv(x, edge_index)
        m(x, edge_index, e)              == conv(x, edge_index, e)    # GCN: weights [E]; others: features
        m(x, edge_index, edge_attr=e)    == conv(x, edge_index, e)    # graphformer's keyword
        m(x, adj_t)                      == conv(x, adj_t)            # torch.sparse COO / CSR / CSC, EdgeIndex,
                                                                      # SparseTensor (when torch_sparse imports)
        m((x_src, x_dst), edge_index)    == conv((x_src, x_dst), edge_index)
        m(x, edge_index, return_attention_weights=True) == conv(x, ..., return_attention_weights=True)

    ``adj_t`` is PyG's transposed adjacency, ``adj_t[i, j]`` the edge j -> i
    (see :func:`from_sparse_adjacency`); its values are GCN's edge weights
    and ignored by the other convs, as in PyG. For ``edge_dim=1`` edge
    features may be ``[E]`` as well as ``[E, 1]``.

    Traps of the peer, kept where a converted model must give the same
    numbers and made loud where it would silently go wrong:

    * ``GCNConv(cached=True)`` normalises the first graph it sees and then
      ignores every later ``edge_index``. The converted layer keeps that
      graph too (PyG's own cache, if the conv already holds one) and gives
      the same output on it; called on a different graph it raises
      ``ValueError`` instead of answering for the old one
      (:meth:`PygConv.reset_cache` starts afresh).
    * ``GCNConv`` on a graph with several self-loops on one node keeps one
      loop per node, the last one's weight (``add_remaining_self_loops``); on
      a ``torch.sparse`` adjacency PyG instead *adds* the loop weight to the
      diagonal, and on a ``SparseTensor`` it replaces the diagonal — the
      converted layer follows each.
    * ``GCNConv(improved=True)`` gives the loops it adds weight 2 only when
      edge weights are passed (or a sparse adjacency, which carries them):
      PyG adds the loops before it makes the default weights of 1, so
      ``conv(x, edge_index)`` without weights is the plain GCN. The converted
      layer does the same.

    Raises:
        ValueError: for options without a counterpart: an aggregation other
            than ``"add"``, ``flow="target_to_source"``, GAT's ``normalize``, or
            lazily initialised (``in_channels=-1``) weights not materialised by a
            first call.
        TypeError: for any other module type.
    """
    from torch_geometric.nn import GATConv, GATv2Conv, GCNConv, TransformerConv

    kinds = {GCNConv: _from_gcn, GATConv: _from_gat, GATv2Conv: _from_gatv2, TransformerConv: _from_transformer_conv}
    for kind, convert in kinds.items():
        if isinstance(conv, kind):
            _check_message_passing(conv)
            m = convert(conv)
            m.conv_type = kind.__name__
            return _like(m, conv)
    raise TypeError(
        "from_pyg converts torch_geometric.nn GCNConv, GATConv, GATv2Conv and TransformerConv, "
        f"got {type(conv).__name__}"
    )


def _is_adjacency(obj) -> bool:
    if _is_sparse_tensor(obj):
        return True
    if not isinstance(obj, Tensor):
        return False
    if obj.layout != torch.strided:
        return True
    try:
        from torch_geometric import EdgeIndex
    except ImportError:  # pragma: no cover - torch_geometric is a dependency
        return False
    return isinstance(obj, EdgeIndex)


def _edge_keys(edge_index: Tensor, weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Edges sorted by (target, source) and their weights: a graph's identity whatever the edge order."""
    key = edge_index[1] * num_nodes + edge_index[0]
    order = torch.argsort(key, stable=True)
    return key[order], weight[order]


class PygConv(GraphAttention):
    """A :class:`~graphformer.GraphAttention` converted from a PyG conv, taking PyG's call forms too.

    ``m(x, edge_index, edge_attr=None, *, edge_weight=None, size=None,
    return_attention_weights=None, **kwargs)``: ``edge_index`` a ``[2, E]``
    tensor, a PyG ``EdgeIndex``, a ``torch.sparse`` adjacency ``adj_t`` or a
    ``SparseTensor``; ``edge_attr`` (third positional, as PyG) the edge
    weights of GCN or the edge features of the others; ``edge_weight`` its
    GCN name. With ``return_attention_weights`` (any bool, as PyG) it returns
    ``(out, (edge_index, alpha))``, ``alpha`` ``[E, H]`` over the edges the
    layer used (self-loops included) — for a ``torch.sparse`` input the
    first item is a sparse COO tensor ``[M, N, H]`` holding ``alpha`` at
    ``[i, j]``, as PyG gives (PyG keeps the input's layout); the other keywords are
    :meth:`GraphAttention.forward`'s (``return_attention=True`` gives the
    graphformer record).

    Attributes:
        conv_type: the PyG class it came from.
        improved: GCN's ``improved`` (added loops weigh 2, as ``fill_value``).
        cached: GCN's ``cached``: the first graph is kept and a call on
            another one raises (see :func:`from_pyg`). The check costs one
            sort of the edges per call, where PyG's cached conv skips the
            normalisation.

    GCN treats a sparse adjacency's self-loops as PyG does per format: on a
    ``torch.sparse`` tensor the added loop's weight is summed into the
    diagonal, on a ``SparseTensor`` the diagonal is replaced, on an
    ``edge_index`` / ``EdgeIndex`` one existing loop is kept.
    """

    conv_type: str = ""
    cached: bool = False
    improved: bool = False
    _cache: tuple[Tensor, Tensor, int] | None = None

    def reset_cache(self) -> None:
        """Forget the graph kept by ``cached=True``; the next call normalises its own graph."""
        self._cache = None

    def forward(
        self,
        x,
        edge_index=None,
        edge_attr=None,
        *,
        edge_weight=None,
        size=None,
        return_attention_weights=None,
        **kwargs,
    ):
        """Run the conv (see the class docstring for the call forms)."""
        if isinstance(x, (tuple, list)) and len(x) == 2 and x[1] is None:
            raise ValueError(
                f"{self.conv_type or 'the conv'} called on (x_src, None) (targets without features) "
                "has no counterpart here: the converted layer reads the targets' features; pass "
                "(x_src, x_dst)"
            )
        if edge_weight is not None:
            if edge_attr is not None:
                raise TypeError("give the edge weights once, as edge_attr or edge_weight")
            edge_attr = edge_weight
        if size is not None:
            x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, x)
            if (x_src.size(0), x_dst.size(0)) != tuple(size):
                raise ValueError(
                    f"size={tuple(size)} disagrees with the node features "
                    f"({x_src.size(0)} sources, {x_dst.size(0)} targets)"
                )
        adjacency_shape = None
        if edge_index is not None and _is_adjacency(edge_index):
            if isinstance(edge_index, Tensor) and edge_index.layout != torch.strided:
                adjacency_shape = tuple(edge_index.shape[:2])
            edge_index, edge_attr = self._from_adjacency(x, edge_index, edge_attr)
        if (
            edge_attr is not None
            and edge_attr.dim() == 1
            and self.edge_proj is not None
            and self.edge_proj.in_features == 1
        ):
            edge_attr = edge_attr.unsqueeze(-1)  # PyG takes [E] for edge_dim=1
        want = return_attention_weights is not None or kwargs.get("return_attention", False) or self.cached
        if edge_index is None:
            return super().forward(x, edge_attr=edge_attr, **kwargs)
        res = super().forward(x, edge_index, edge_attr=edge_attr, **{**kwargs, "return_attention": want})
        out, att = res if want else (res, None)
        if self.cached:
            self._check_cache(att, x)
        if return_attention_weights is not None:
            if adjacency_shape is not None:  # as PyG: the adjacency again, holding the coefficients [.., H]
                target_source = att.edge_index.flip(0)
                adj = torch.sparse_coo_tensor(target_source, att.weights, (*adjacency_shape, att.weights.size(1)))
                return out, (adj, att.weights)
            return out, (att.edge_index, att.weights)
        return (out, att) if kwargs.get("return_attention", False) else out

    def _from_adjacency(self, x, adj_t, edge_attr):
        """edge_index and edge attributes of a sparse adjacency, with PyG's per-format loop rules."""
        sparse_tensor = _is_sparse_tensor(adj_t)
        edge_index, values = from_sparse_adjacency(adj_t)
        if values is None:
            return edge_index, edge_attr
        if self.conv_type == "TransformerConv" and self.edge_proj is not None and edge_attr is None:
            raise ValueError(
                "TransformerConv with edge_dim reads edge features from edge_attr; PyG does not take "
                "them from a sparse adjacency's values either: pass edge_index and edge_attr"
            )
        if self.conv_type != "GCNConv":
            return edge_index, edge_attr  # only GCN reads the values (as weights), as in PyG
        if edge_attr is not None:
            raise ValueError(
                "GCNConv reads the edge weights from the sparse adjacency's values; do not pass "
                "edge_attr / edge_weight as well"
            )
        if self.self_loops is not None:
            fill = 2.0 if self.improved else 1.0
            loop = edge_index[0] == edge_index[1]
            n = x.size(0)
            diag = values.new_zeros(n)
            if not sparse_tensor:  # torch.sparse: the added loop's weight is summed into the diagonal
                diag = diag.index_add(0, edge_index[0, loop], values[loop])
            nodes = torch.arange(n, device=edge_index.device)
            edge_index = torch.cat([edge_index[:, ~loop], torch.stack([nodes, nodes])], dim=1)
            values = torch.cat([values[~loop], diag + fill])
        return edge_index, values

    def _check_cache(self, att: AttentionWeights, x) -> None:
        """Keep the first normalised graph; refuse a call on another one (PyG would silently reuse the first)."""
        n = x.size(0) if isinstance(x, Tensor) else x[1].size(0)
        key, weight = _edge_keys(att.edge_index, att.weights[:, 0].detach(), max(n, 1))
        if self._cache is None:
            self._cache = (key, weight, n)
            return
        cached_key, cached_weight, cached_n = self._cache
        same = (
            cached_n == n
            and torch.equal(cached_key, key)
            and torch.allclose(cached_weight.to(weight), weight, rtol=1e-5, atol=1e-6)
        )
        if not same:
            raise ValueError(
                "GCNConv(cached=True) normalised the graph of its first call and PyG silently reuses it for "
                "every later edge_index; this call passes a different graph, where the PyG conv would answer "
                "for the cached one. Call m.reset_cache() to normalise the new graph, or convert a conv built "
                "with cached=False"
            )


def _check_message_passing(conv: nn.Module) -> None:
    name = type(conv).__name__
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in conv.parameters()):
        raise ValueError(
            f"{name} has lazily initialised weights (in_channels=-1); call it once on data "
            "to materialise them, or build it with explicit in_channels"
        )
    if not isinstance(conv.aggr, str) or conv.aggr not in ("add", "sum"):
        raise ValueError(
            f"{name} with aggr={conv.aggr!r} cannot be converted: GraphAttention sums weighted messages (aggr='add')"
        )
    if conv.flow != "source_to_target":
        raise ValueError(
            f"{name} with flow={conv.flow!r} cannot be converted: GraphAttention sends messages "
            "edge_index[0] -> edge_index[1] (flow='source_to_target'); flip edge_index instead"
        )


def _channels(in_channels: int | Sequence[int]) -> tuple[int, int]:
    """(source width, target width) of a conv's ``in_channels``."""
    if isinstance(in_channels, int):
        return in_channels, in_channels
    return int(in_channels[0]), int(in_channels[1])


def _from_gcn(conv) -> PygConv:
    score = "gcn" if conv.normalize else "sum"
    loops = conv.normalize and conv.add_self_loops
    attn = PygConv(
        conv.in_channels,
        1,
        score=score,
        bias=conv.bias is not None,
        head_dim=conv.out_channels,
        out_proj=False,
        self_loops="remaining" if loops else None,
        fill_value=2.0 if conv.improved else None,
    )
    attn.improved = bool(conv.improved)
    attn.cached = bool(conv.cached)
    _load_linear(attn.v_proj, conv.lin.weight, conv.lin.bias)
    attn.bias = _param(conv.bias, conv.bias is not None and conv.bias.requires_grad)
    cache = getattr(conv, "_cached_edge_index", None)
    if conv.cached and cache is not None:  # PyG already normalised a graph: keep exactly that one
        cached_index, cached_weight = cache
        if cached_weight is None:  # a torch.sparse adjacency was cached
            cached_index, cached_weight = from_sparse_adjacency(cached_index)
        n = int(cached_index.max()) + 1 if cached_index.numel() else 0
        attn._cache = (*_edge_keys(cached_index, cached_weight.detach(), max(n, 1)), n)
    return attn


def _pyg_fill_value(conv):
    """GAT's self-loop ``fill_value`` for GraphAttention (None: the default, 'mean' for edge features)."""
    fill = conv.fill_value
    if isinstance(fill, Tensor):
        return fill.detach().clone()
    return fill


def _pyg_att(att: Tensor) -> nn.Parameter:
    """PyG's attention vector ``[1, H, C]`` as GraphAttention's ``[H, C]``."""
    return _param(att.reshape(att.shape[-2], att.shape[-1]), att.requires_grad)


def _load_root_and_bias(attn: GraphAttention, conv) -> None:
    if conv.res is not None:
        _load_linear(attn.root, conv.res.weight, conv.res.bias)
    attn.bias = _param(conv.bias, conv.bias is not None and conv.bias.requires_grad)


def _from_gat(conv) -> PygConv:
    if getattr(conv, "normalize", False):
        raise ValueError(
            "GATConv(normalize=True) renormalises the attention coefficients with GCN weights, which "
            "GraphAttention's softmax does not model; build the conv with normalize=False"
        )
    src, dst = _channels(conv.in_channels)
    shared = getattr(conv, "lin", None) is not None or conv.lin_src is conv.lin_dst
    attn = PygConv(
        dst,
        conv.heads,
        score="additive",
        dropout=conv.dropout,
        bias=conv.bias is not None,
        kdim=None if shared else src,
        head_dim=conv.out_channels,
        concat=conv.concat,
        out_proj=False,
        root_weight=conv.res is not None,
        edge_dim=conv.edge_dim,
        self_loops="add" if conv.add_self_loops else None,
        fill_value=_pyg_fill_value(conv),
    )
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


def _from_gatv2(conv) -> PygConv:
    src, dst = _channels(conv.in_channels)
    attn = PygConv(
        dst,
        conv.heads,
        score="gatv2",
        dropout=conv.dropout,
        bias=conv.bias is not None,
        kdim=None if src == dst else src,
        head_dim=conv.out_channels,
        concat=conv.concat,
        out_proj=False,
        root_weight=conv.res is not None,
        edge_dim=conv.edge_dim,
        self_loops="add" if conv.add_self_loops else None,
        fill_value=_pyg_fill_value(conv),
    )
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


def _from_transformer_conv(conv) -> PygConv:
    src, dst = _channels(conv.in_channels)
    beta = bool(conv.beta) and conv.root_weight  # PyG's gate acts only on the skip
    # bias=False: PyG's TransformerConv has no bias after aggregation; its projections' biases are copied below
    attn = PygConv(
        dst,
        conv.heads,
        score="dot",
        dropout=conv.dropout,
        bias=False,
        kdim=None if src == dst else src,
        head_dim=conv.out_channels,
        concat=conv.concat,
        out_proj=False,
        root_weight=conv.root_weight,
        edge_dim=conv.edge_dim,
        beta=beta,
    )
    _load_linear(attn.q_proj, conv.lin_query.weight, conv.lin_query.bias)
    _load_linear(attn.k_proj, conv.lin_key.weight, conv.lin_key.bias)
    _load_linear(attn.v_proj, conv.lin_value.weight, conv.lin_value.bias)
    if conv.lin_edge is not None:
        _load_linear(attn.edge_proj, conv.lin_edge.weight, conv.lin_edge.bias)
    if conv.root_weight:
        _load_linear(attn.root, conv.lin_skip.weight, conv.lin_skip.bias)
    if beta:
        _load_linear(attn.lin_beta, conv.lin_beta.weight, None)
    return attn
