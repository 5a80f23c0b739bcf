"""graphformer.interop: converted torch.nn / PyG modules compute the same outputs and gradients.

Every equivalence test runs the source module and its conversion on copies of
the same inputs, backpropagates the same random projection of the output, and
compares outputs, input gradients and the gradients of corresponding weights.

Legend: B batch, N nodes, E edges, d model width.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GATConv, GATv2Conv, GCNConv, TransformerConv
from torch_geometric.utils import from_networkx as pyg_from_networkx
from torch_geometric.utils import from_scipy_sparse_matrix

import graphformer as gf
from graphformer.interop import (
    from_data,
    from_networkx,
    from_pyg,
    from_scipy,
    from_torch,
    to_networkx,
    to_scipy,
)
from graphformer.scores import SumScore

ATOL, RTOL = 1e-5, 1e-5
B, N, M, D, HEADS, FF = 2, 5, 4, 8, 2, 16


def assert_equivalent(ref_fn, gf_fn, inputs, pairs, module=None, atol=ATOL, rtol=RTOL):
    """Outputs, input gradients and weight gradients of ``ref_fn`` and ``gf_fn`` agree.

    ``pairs`` lists ``(ref_param, [gf_params])``: the reference parameter's
    gradient equals the gf gradients flattened and concatenated (q, k, v for a
    fused ``in_proj_weight``) and reshaped to the reference's shape. With
    ``module``, every parameter of the converted module must appear in ``pairs``.
    """
    if module is not None:
        covered = {id(p) for _, group in pairs for p in group}
        missing = [name for name, p in module.named_parameters() if id(p) not in covered]
        assert not missing, f"parameters without a counterpart: {missing}"
    ref_params = [ref for ref, _ in pairs]
    gf_params = list({id(p): p for _, group in pairs for p in group}.values())

    def run(fn, params):
        xs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
        out = fn(*xs)
        leaves = [x for x in xs if x.requires_grad]
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        grads = torch.autograd.grad((out * weight).sum(), leaves + params, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves + params, grads)]
        return out.detach(), grads[: len(leaves)], grads[len(leaves) :]

    ref_out, ref_in, ref_w = run(ref_fn, ref_params)
    gf_out, gf_in, gf_w = run(gf_fn, gf_params)
    torch.testing.assert_close(gf_out, ref_out, atol=atol, rtol=rtol)
    for g_ref, g_gf in zip(ref_in, gf_in):
        torch.testing.assert_close(g_gf, g_ref, atol=atol, rtol=rtol)
    by_id = {id(p): g for p, g in zip(gf_params, gf_w)}
    for (ref, group), g_ref in zip(pairs, ref_w):
        g_gf = torch.cat([by_id[id(p)].reshape(-1) for p in group]).reshape(ref.shape)
        torch.testing.assert_close(g_gf, g_ref, atol=atol, rtol=rtol)


def linear_pairs(ref: nn.Module, conv: nn.Module):
    """Weight and bias of two Linear / LayerNorm modules (both without bias, or both with)."""
    pairs = [(ref.weight, [conv.weight])]
    assert (ref.bias is None) == (conv.bias is None)
    return pairs + ([(ref.bias, [conv.bias])] if ref.bias is not None else [])


def mha_pairs(mha: nn.MultiheadAttention, attn: gf.GraphAttention):
    if mha._qkv_same_embed_dim:
        pairs = [(mha.in_proj_weight, [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])]
    else:
        pairs = [
            (mha.q_proj_weight, [attn.q_proj.weight]),
            (mha.k_proj_weight, [attn.k_proj.weight]),
            (mha.v_proj_weight, [attn.v_proj.weight]),
        ]
    if mha.in_proj_bias is not None:
        pairs.append((mha.in_proj_bias, [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
    return pairs + linear_pairs(mha.out_proj, attn.out_proj)


def encoder_pairs(layer: nn.TransformerEncoderLayer, m: gf.GraphformerLayer):
    return (
        mha_pairs(layer.self_attn, m.self_attn)
        + linear_pairs(layer.linear1, m.feedforward.linear1)
        + linear_pairs(layer.linear2, m.feedforward.linear2)
        + linear_pairs(layer.norm1, m.norm1)
        + linear_pairs(layer.norm2, m.norm2)
    )


def decoder_pairs(layer: nn.TransformerDecoderLayer, m: gf.GraphformerDecoderLayer):
    return (
        mha_pairs(layer.self_attn, m.self_attn)
        + mha_pairs(layer.multihead_attn, m.cross_attn)
        + linear_pairs(layer.linear1, m.feedforward.linear1)
        + linear_pairs(layer.linear2, m.feedforward.linear2)
        + linear_pairs(layer.norm1, m.norm1)
        + linear_pairs(layer.norm2, m.norm2)
        + linear_pairs(layer.norm3, m.norm3)
    )


def randomise(module: nn.Module) -> nn.Module:
    """Non-trivial values everywhere (torch and PyG initialise biases and norms to 0 / 1)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module


def seq_first(fn, batch_first: bool):
    """Call a torch module that may be sequence-first on batch-first tensors."""
    if batch_first:
        return fn
    return lambda *xs: fn(*(x.transpose(0, 1) for x in xs)).transpose(0, 1)


def causal_mask(n: int):
    """torch's boolean causal mask (True = not attended)."""
    return torch.ones(n, n, dtype=torch.bool).triu(1)


def padding(b: int, n: int):
    """Trailing padding; every sequence keeps its first position."""
    pad = torch.zeros(b, n, dtype=torch.bool)
    pad[0, n - 2 :] = True
    return pad


# ----------------------------------------------------------- MultiheadAttention
FORMS = ["plain", "causal", "padded", "causal_padded"]


def _mha_call(form: str, need_weights: bool = False):
    """(torch call on (mha, x), graphformer keyword arguments) for a self-attention call form."""
    mask = causal_mask(N) if "causal" in form else None
    pad = padding(B, N) if "padded" in form else None

    def ref(mha, x):
        return mha(
            x, x, x, attn_mask=mask, is_causal=mask is not None, key_padding_mask=pad, need_weights=need_weights
        )[0]

    return ref, {"causal": "causal" in form, "key_padding_mask": pad}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("form", FORMS)
def test_mha_self_attention(batch_first, bias, form):
    mha = randomise(nn.MultiheadAttention(D, HEADS, bias=bias, batch_first=batch_first)).eval()
    m = from_torch(mha)
    assert isinstance(m, gf.GraphAttention)
    ref, kwargs = _mha_call(form)
    x = torch.randn(B, N, D)
    assert_equivalent(
        seq_first(lambda x: ref(mha, x), batch_first),
        seq_first(lambda x: m(x, **kwargs), batch_first),
        [x],
        mha_pairs(mha, m),
        module=m,
    )


@pytest.mark.parametrize("form", FORMS)
def test_mha_need_weights_and_no_grad(form):
    """The weights-returning path and the no-grad fast path of torch give the same output too."""
    mha = randomise(nn.MultiheadAttention(D, HEADS, batch_first=True)).eval()
    m = from_torch(mha)
    x = torch.randn(B, N, D)
    ref, kwargs = _mha_call(form, need_weights=True)
    assert_equivalent(lambda x: ref(mha, x), lambda x: m(x, **kwargs), [x], mha_pairs(mha, m), module=m)
    ref, kwargs = _mha_call(form)
    with torch.no_grad():
        torch.testing.assert_close(m(x, **kwargs), ref(mha, x), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kdim", [None, 6])
@pytest.mark.parametrize("padded", [False, True])
def test_mha_cross_attention(batch_first, kdim, padded):
    mha = randomise(nn.MultiheadAttention(D, HEADS, batch_first=batch_first, kdim=kdim, vdim=kdim)).eval()
    m = from_torch(mha)
    assert m.kdim == (kdim or D)
    x_src, x_dst = torch.randn(B, N, kdim or D), torch.randn(B, M, D)
    pad = padding(B, N) if padded else None

    def ref(x_src, x_dst):
        return seq_first(lambda s, t: mha(t, s, s, key_padding_mask=pad)[0], batch_first)(x_src, x_dst)

    def conv(x_src, x_dst):
        return seq_first(lambda s, t: m((s, t), key_padding_mask=pad), batch_first)(x_src, x_dst)

    assert_equivalent(ref, conv, [x_src, x_dst], mha_pairs(mha, m), module=m)


def test_mha_float64_dtype_mode_and_frozen_weights():
    mha = randomise(nn.MultiheadAttention(D, HEADS, dropout=0.25, batch_first=True)).double()
    mha.out_proj.weight.requires_grad_(False)
    m = from_torch(mha)
    assert m.training and m.dropout == 0.25
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert not m.out_proj.weight.requires_grad and m.q_proj.weight.requires_grad
    mha.eval()
    m.eval()
    x = torch.randn(B, N, D, dtype=torch.float64)
    pairs = [pair for pair in mha_pairs(mha, m) if pair[0] is not mha.out_proj.weight]
    assert_equivalent(lambda x: mha(x, x, x)[0], m, [x], pairs, atol=1e-12, rtol=1e-12)


def test_mha_fully_padded_sequence_gets_zero_message():
    """Where every source is padded the attention output is out_proj(0), as torch's SDPA path gives, never NaN."""
    mha = randomise(nn.MultiheadAttention(D, HEADS, batch_first=True)).eval()
    m = from_torch(mha)
    x, pad = torch.randn(B, N, D), torch.zeros(B, N, dtype=torch.bool)
    pad[0] = True
    out = m(x, key_padding_mask=pad)
    torch.testing.assert_close(out[0], mha.out_proj.bias.detach().expand(N, D))
    torch.testing.assert_close(out, mha(x, x, x, key_padding_mask=pad, need_weights=False)[0], atol=ATOL, rtol=RTOL)


def test_mha_copies_are_independent():
    mha = nn.MultiheadAttention(D, HEADS, batch_first=True)
    m = from_torch(mha)
    with torch.no_grad():
        m.q_proj.weight.zero_()
    assert mha.in_proj_weight[:D].abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"add_bias_kv": True}, "add_bias_kv"),
        ({"add_zero_attn": True}, "add_zero_attn"),
    ],
)
def test_mha_unsupported_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_torch(nn.MultiheadAttention(D, HEADS, **kwargs))


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match="Linear"):
        from_torch(nn.Linear(D, D))


# --------------------------------------------------------------- encoder layer
def _encoder_call(form: str):
    mask = causal_mask(N) if "causal" in form else None
    pad = padding(B, N) if "padded" in form else None

    def ref(layer, x):
        return layer(x, src_mask=mask, is_causal=mask is not None, src_key_padding_mask=pad)

    return ref, {"causal": "causal" in form, "key_padding_mask": pad}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("form", FORMS)
def test_encoder_layer(batch_first, norm_first, bias, form):
    layer = nn.TransformerEncoderLayer(
        D, HEADS, FF, dropout=0.3, batch_first=batch_first, norm_first=norm_first, bias=bias
    )
    layer = randomise(layer).eval()
    m = from_torch(layer)
    assert isinstance(m, gf.GraphformerLayer) and not m.training
    ref, kwargs = _encoder_call(form)
    x = torch.randn(B, N, D)
    assert_equivalent(
        seq_first(lambda x: ref(layer, x), batch_first),
        seq_first(lambda x: m(x, **kwargs), batch_first),
        [x],
        encoder_pairs(layer, m),
        module=m,
    )


@pytest.mark.parametrize("activation", ["relu", "gelu", nn.GELU(approximate="tanh"), F.silu])
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_encoder_layer_activation_and_eps(activation, eps):
    layer = randomise(
        nn.TransformerEncoderLayer(D, HEADS, FF, activation=activation, layer_norm_eps=eps, batch_first=True)
    ).eval()
    m = from_torch(layer)
    assert m.norm1.eps == m.norm2.eps == eps
    x = torch.randn(B, N, D)
    assert_equivalent(layer, m, [x], encoder_pairs(layer, m), module=m)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("form", FORMS)
def test_encoder_layer_fast_path(norm_first, form):
    """Under no_grad in eval mode torch runs its fused kernel; the outputs still agree."""
    layer = randomise(nn.TransformerEncoderLayer(D, HEADS, FF, batch_first=True, norm_first=norm_first)).eval()
    m = from_torch(layer)
    ref, kwargs = _encoder_call(form)
    x = torch.randn(B, N, D)
    with torch.no_grad():
        torch.testing.assert_close(m(x, **kwargs), ref(layer, x), atol=ATOL, rtol=RTOL)


def test_encoder_layer_copies_dropout_rates_and_mode():
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.2, batch_first=True)
    layer.self_attn.dropout, layer.dropout.p, layer.dropout2.p = 0.1, 0.3, 0.4
    m = from_torch(layer)
    assert m.training
    assert (m.self_attn.dropout, m.feedforward.dropout.p, m.dropout1.p, m.dropout2.p) == (0.1, 0.3, 0.2, 0.4)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("final_norm", [False, True])
def test_encoder_stack(norm_first, final_norm):
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, batch_first=True, norm_first=norm_first)
    encoder = randomise(
        nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(D) if final_norm else None, enable_nested_tensor=False)
    ).eval()
    m = from_torch(encoder)
    assert isinstance(m, gf.GraphformerEncoder) and len(m.layers) == 2
    pairs = [pair for t, g in zip(encoder.layers, m.layers) for pair in encoder_pairs(t, g)]
    if final_norm:
        pairs += linear_pairs(encoder.norm, m.norm)
    x, pad = torch.randn(B, N, D), padding(B, N)
    assert_equivalent(
        lambda x: encoder(x, src_key_padding_mask=pad), lambda x: m(x, key_padding_mask=pad), [x], pairs, module=m
    )


def test_encoder_stack_nested_fast_path_agrees_on_real_positions():
    """torch's nested-tensor path zeroes padded outputs; every unpadded position agrees."""
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, batch_first=True)
    encoder = randomise(nn.TransformerEncoder(layer, 2)).eval()
    m = from_torch(encoder)
    x, pad = torch.randn(B, N, D), padding(B, N)
    with torch.no_grad():
        torch.testing.assert_close(
            m(x, key_padding_mask=pad)[~pad], encoder(x, src_key_padding_mask=pad)[~pad], atol=ATOL, rtol=RTOL
        )


# --------------------------------------------------------------- decoder layer
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("causal, padded", [(True, "none"), (True, "both"), (False, "target"), (False, "memory")])
def test_decoder_layer(batch_first, norm_first, bias, causal, padded):
    layer = nn.TransformerDecoderLayer(
        D, HEADS, FF, dropout=0.3, batch_first=batch_first, norm_first=norm_first, bias=bias
    )
    layer = randomise(layer).eval()
    m = from_torch(layer)
    assert isinstance(m, gf.GraphformerDecoderLayer)
    x, memory = torch.randn(B, N, D), torch.randn(B, M + 2, D)
    pad = padding(B, N) if padded in ("target", "both") else None
    mem_pad = padding(B, M + 2) if padded in ("memory", "both") else None
    mask = causal_mask(N) if causal else None

    def ref(x, memory):
        return layer(
            x, memory, tgt_mask=mask, tgt_is_causal=causal, tgt_key_padding_mask=pad, memory_key_padding_mask=mem_pad
        )

    def conv(x, memory):
        return m(x, memory, causal=causal, key_padding_mask=pad, memory_key_padding_mask=mem_pad)

    assert_equivalent(
        seq_first(ref, batch_first), seq_first(conv, batch_first), [x, memory], decoder_pairs(layer, m), module=m
    )


@pytest.mark.parametrize("activation", ["gelu", F.silu])
def test_decoder_layer_activation_and_no_grad(activation):
    layer = randomise(
        nn.TransformerDecoderLayer(D, HEADS, FF, activation=activation, layer_norm_eps=1e-3, batch_first=True)
    ).eval()
    m = from_torch(layer)
    assert m.norm3.eps == 1e-3
    x, memory = torch.randn(B, N, D), torch.randn(B, M, D)
    with torch.no_grad():
        torch.testing.assert_close(
            m(x, memory, causal=True),
            layer(x, memory, tgt_mask=causal_mask(N), tgt_is_causal=True),
            atol=ATOL,
            rtol=RTOL,
        )
        torch.testing.assert_close(m(x, memory), layer(x, memory), atol=ATOL, rtol=RTOL)  # torch's default: no mask


# ----------------------------------------------------------- PyG: graphs
NUM_NODES, C_IN, C_OUT, EDGE_DIM = 7, 5, 3, 4


@pytest.fixture
def graph():
    """A small directed graph with a self-loop (on node 2), a repeated edge, and a node (6) with no edges."""
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 2, 0, 3, 1, 4], [1, 2, 3, 4, 5, 0, 2, 2, 0, 5, 5]])
    x = torch.randn(NUM_NODES, C_IN)
    return x, edge_index


def bipartite_graph(num_src: int, num_dst: int, num_edges: int = 12):
    gen = torch.Generator().manual_seed(3)
    return torch.stack(
        [torch.randint(num_src, (num_edges,), generator=gen), torch.randint(num_dst, (num_edges,), generator=gen)]
    )


def conv_call(conv, *, edge_attr: bool):
    """PyG's call with the edge features positional."""
    if edge_attr:
        return lambda x, e, ei: conv(x, ei, e)
    return lambda x, ei: conv(x, ei)


def gf_call(m, *, edge_attr: bool):
    if edge_attr:
        return lambda x, e, ei: m(x, ei, edge_attr=e)
    return lambda x, ei: m(x, ei)


def pair_call(fn, *, edge_attr: bool):
    """Turn a call on x into one on (x_src, x_dst) given as two inputs."""
    if edge_attr:
        return lambda s, t, e, ei: fn((s, t), e, ei)
    return lambda s, t, ei: fn((s, t), ei)


# ------------------------------------------------------------------ GCNConv
def gcn_pairs(conv, m):
    pairs = [(conv.lin.weight, [m.v_proj.weight])]
    return pairs + ([(conv.bias, [m.bias])] if conv.bias is not None else [])


@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("cached", [False, True])
def test_gcn(graph, add_self_loops, bias, weighted, cached):
    x, edge_index = graph
    conv = randomise(GCNConv(C_IN, C_OUT, add_self_loops=add_self_loops, bias=bias, cached=cached)).eval()
    m = from_pyg(conv)
    assert isinstance(m, gf.GraphAttention) and m.self_loops == ("remaining" if add_self_loops else None)
    inputs = [x, torch.rand(edge_index.size(1)) + 0.5, edge_index] if weighted else [x, edge_index]
    assert_equivalent(
        conv_call(conv, edge_attr=weighted), gf_call(m, edge_attr=weighted), inputs, gcn_pairs(conv, m), module=m
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_without_normalisation(graph, weighted):
    x, edge_index = graph
    conv = randomise(GCNConv(C_IN, C_OUT, normalize=False)).eval()
    m = from_pyg(conv)
    assert isinstance(m.score, SumScore)
    inputs = [x, torch.rand(edge_index.size(1)), edge_index] if weighted else [x, edge_index]
    assert_equivalent(
        conv_call(conv, edge_attr=weighted), gf_call(m, edge_attr=weighted), inputs, gcn_pairs(conv, m), module=m
    )


def test_sum_score_on_the_complete_graph():
    """On the complete graph every target receives the sum of all values."""
    attn = gf.GraphAttention(C_IN, 1, score=SumScore(), head_dim=C_OUT, out_proj=False)
    x = torch.randn(NUM_NODES, C_IN)
    expected = attn.v_proj(x).sum(0, keepdim=True).expand(NUM_NODES, -1) + attn.bias
    torch.testing.assert_close(attn(x), expected)
    torch.testing.assert_close(attn(x, gf.structure.complete_edge_index(NUM_NODES)), expected)


# ------------------------------------------------------------------ GATConv
def gat_pairs(conv, m):
    if conv.lin is not None:
        pairs = [(conv.lin.weight, [m.v_proj.weight])]
    else:
        pairs = [(conv.lin_src.weight, [m.v_proj.weight]), (conv.lin_dst.weight, [m.q_proj.weight])]
    pairs += [(conv.att_src, [m.score.att_src]), (conv.att_dst, [m.score.att_dst])]
    if conv.lin_edge is not None:
        pairs += [(conv.lin_edge.weight, [m.edge_proj.weight]), (conv.att_edge, [m.score.att_edge])]
    if conv.res is not None:
        pairs += [(conv.res.weight, [m.root.weight])]
    return pairs + ([(conv.bias, [m.bias])] if conv.bias is not None else [])


@pytest.mark.parametrize("heads, concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("add_self_loops", [True, False])
@pytest.mark.parametrize("edge_dim", [None, EDGE_DIM])
@pytest.mark.parametrize("residual, bias", [(False, True), (True, True), (True, False)])
def test_gat(graph, heads, concat, add_self_loops, edge_dim, residual, bias):
    x, edge_index = graph
    conv = GATConv(
        C_IN,
        C_OUT,
        heads=heads,
        concat=concat,
        add_self_loops=add_self_loops,
        edge_dim=edge_dim,
        residual=residual,
        bias=bias,
        negative_slope=0.1,
        dropout=0.4,
    )
    conv = randomise(conv).eval()
    m = from_pyg(conv)
    assert m.dropout == 0.4 and m.score.negative_slope == 0.1
    with_e = edge_dim is not None
    inputs = [x, torch.randn(edge_index.size(1), EDGE_DIM), edge_index] if with_e else [x, edge_index]
    assert_equivalent(
        conv_call(conv, edge_attr=with_e), gf_call(m, edge_attr=with_e), inputs, gat_pairs(conv, m), module=m
    )


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize(
    "num_src, num_dst, self_loops, edge_dim",
    [
        (6, 4, True, None),
        (6, 4, True, EDGE_DIM),
        (3, 6, True, None),
        (5, 5, False, None),
        (5, 5, False, EDGE_DIM),
    ],
)  # (3, 6, True, EDGE_DIM) is left out: mean-filled loop features index past the loops, in PyG as here
def test_gat_bipartite(separate, num_src, num_dst, self_loops, edge_dim):
    in_dst = C_IN + 1 if separate else C_IN
    conv = GATConv(
        (C_IN, in_dst) if separate else C_IN,
        C_OUT,
        heads=2,
        add_self_loops=self_loops,
        edge_dim=edge_dim,
        residual=True,
    )
    conv = randomise(conv).eval()
    m = from_pyg(conv)
    assert (m.q_proj is not None) == separate
    edge_index = bipartite_graph(num_src, num_dst)
    x_src, x_dst = torch.randn(num_src, C_IN), torch.randn(num_dst, in_dst)
    with_e = edge_dim is not None
    inputs = [x_src, x_dst] + ([torch.randn(edge_index.size(1), EDGE_DIM)] if with_e else []) + [edge_index]
    assert_equivalent(
        pair_call(conv_call(conv, edge_attr=with_e), edge_attr=with_e),
        pair_call(gf_call(m, edge_attr=with_e), edge_attr=with_e),
        inputs,
        gat_pairs(conv, m),
        module=m,
    )


def test_gat_separate_projections_on_one_node_set(graph):
    x, edge_index = graph
    conv = randomise(GATConv((C_IN, C_IN), C_OUT, heads=2)).eval()
    m = from_pyg(conv)
    assert_equivalent(
        conv_call(conv, edge_attr=False), gf_call(m, edge_attr=False), [x, edge_index], gat_pairs(conv, m), module=m
    )


def test_gat_fill_value_without_edge_features_converts(graph):
    x, edge_index = graph
    conv = randomise(GATConv(C_IN, C_OUT, heads=2, fill_value=0.0)).eval()
    m = from_pyg(conv)
    torch.testing.assert_close(m(x, edge_index), conv(x, edge_index), atol=ATOL, rtol=RTOL)


def test_gat_attention_weights_match(graph):
    """The attention record holds PyG's coefficients, edge for edge."""
    x, edge_index = graph
    conv = randomise(GATConv(C_IN, C_OUT, heads=2)).eval()
    m = from_pyg(conv)
    _, (ei_ref, alpha_ref) = conv(x, edge_index, return_attention_weights=True)
    _, att = m(x, edge_index, return_attention=True)
    ref = {tuple(e): a for e, a in zip(ei_ref.t().tolist(), alpha_ref)}
    got = {tuple(e): a for e, a in zip(att.edge_index.t().tolist(), att.weights)}
    assert ref.keys() == got.keys()
    torch.testing.assert_close(
        torch.stack([got[k] for k in ref]), torch.stack(list(ref.values())), atol=ATOL, rtol=RTOL
    )


# ---------------------------------------------------------------- GATv2Conv
def gatv2_pairs(conv, m):
    pairs = linear_pairs(conv.lin_l, m.v_proj)
    if not conv.share_weights:
        pairs += linear_pairs(conv.lin_r, m.q_proj)
    pairs += [(conv.att, [m.score.att])]
    if conv.lin_edge is not None:
        pairs += [(conv.lin_edge.weight, [m.edge_proj.weight])]
    if conv.res is not None:
        pairs += [(conv.res.weight, [m.root.weight])]
    return pairs + ([(conv.bias, [m.bias])] if conv.bias is not None else [])


@pytest.mark.parametrize("heads, concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("share_weights", [False, True])
@pytest.mark.parametrize("edge_dim", [None, EDGE_DIM])
@pytest.mark.parametrize(
    "residual, bias, add_self_loops", [(False, True, True), (True, False, True), (True, True, False)]
)
def test_gatv2(graph, heads, concat, share_weights, edge_dim, residual, bias, add_self_loops):
    x, edge_index = graph
    conv = GATv2Conv(
        C_IN,
        C_OUT,
        heads=heads,
        concat=concat,
        share_weights=share_weights,
        edge_dim=edge_dim,
        residual=residual,
        bias=bias,
        add_self_loops=add_self_loops,
        negative_slope=0.3,
    )
    conv = randomise(conv).eval()
    m = from_pyg(conv)
    assert (m.q_proj is m.v_proj) == share_weights
    with_e = edge_dim is not None
    inputs = [x, torch.randn(edge_index.size(1), EDGE_DIM), edge_index] if with_e else [x, edge_index]
    assert_equivalent(
        conv_call(conv, edge_attr=with_e), gf_call(m, edge_attr=with_e), inputs, gatv2_pairs(conv, m), module=m
    )


@pytest.mark.parametrize("in_channels", [C_IN, (C_IN, C_IN + 2)])
def test_gatv2_bipartite(in_channels):
    conv = randomise(GATv2Conv(in_channels, C_OUT, heads=2, add_self_loops=False, residual=True)).eval()
    m = from_pyg(conv)
    num_src, num_dst = 6, 4
    in_dst = in_channels if isinstance(in_channels, int) else in_channels[1]
    inputs = [torch.randn(num_src, C_IN), torch.randn(num_dst, in_dst), bipartite_graph(num_src, num_dst)]
    assert_equivalent(
        pair_call(conv_call(conv, edge_attr=False), edge_attr=False),
        pair_call(gf_call(m, edge_attr=False), edge_attr=False),
        inputs,
        gatv2_pairs(conv, m),
        module=m,
    )


# ---------------------------------------------------------- TransformerConv
def transformer_conv_pairs(conv, m):
    pairs = (
        linear_pairs(conv.lin_query, m.q_proj)
        + linear_pairs(conv.lin_key, m.k_proj)
        + linear_pairs(conv.lin_value, m.v_proj)
    )
    if conv.lin_edge is not None:
        pairs += linear_pairs(conv.lin_edge, m.edge_proj)
    if conv.root_weight:
        pairs += linear_pairs(conv.lin_skip, m.root)
    return pairs


@pytest.mark.parametrize("heads, concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("root_weight", [True, False])
@pytest.mark.parametrize("edge_dim", [None, EDGE_DIM])
@pytest.mark.parametrize("bias", [True, False])
def test_transformer_conv(graph, heads, concat, root_weight, edge_dim, bias):
    x, edge_index = graph
    conv = TransformerConv(
        C_IN,
        C_OUT,
        heads=heads,
        concat=concat,
        root_weight=root_weight,
        edge_dim=edge_dim,
        bias=bias,
        beta=False,
        dropout=0.2,
    )
    conv = randomise(conv).eval()
    m = from_pyg(conv)
    assert m.bias is None and m.dropout == 0.2
    with_e = edge_dim is not None
    inputs = [x, torch.randn(edge_index.size(1), EDGE_DIM), edge_index] if with_e else [x, edge_index]
    assert_equivalent(
        conv_call(conv, edge_attr=with_e),
        gf_call(m, edge_attr=with_e),
        inputs,
        transformer_conv_pairs(conv, m),
        module=m,
    )


@pytest.mark.parametrize("in_channels", [C_IN, (C_IN + 1, C_IN)])
@pytest.mark.parametrize("edge_dim", [None, EDGE_DIM])
def test_transformer_conv_bipartite(in_channels, edge_dim):
    conv = randomise(TransformerConv(in_channels, C_OUT, heads=2, edge_dim=edge_dim)).eval()
    m = from_pyg(conv)
    in_src = in_channels if isinstance(in_channels, int) else in_channels[0]
    num_src, num_dst = 6, 4
    edge_index = bipartite_graph(num_src, num_dst)
    with_e = edge_dim is not None
    inputs = (
        [torch.randn(num_src, in_src), torch.randn(num_dst, C_IN)]
        + ([torch.randn(edge_index.size(1), EDGE_DIM)] if with_e else [])
        + [edge_index]
    )
    assert_equivalent(
        pair_call(conv_call(conv, edge_attr=with_e), edge_attr=with_e),
        pair_call(gf_call(m, edge_attr=with_e), edge_attr=with_e),
        inputs,
        transformer_conv_pairs(conv, m),
        module=m,
    )


def test_pyg_float64_and_training_mode(graph):
    x, edge_index = graph
    conv = randomise(TransformerConv(C_IN, C_OUT, heads=2)).double()
    m = from_pyg(conv)
    assert m.training and all(p.dtype == torch.float64 for p in m.parameters())
    conv.eval()
    m.eval()
    assert_equivalent(
        conv_call(conv, edge_attr=False),
        gf_call(m, edge_attr=False),
        [x.double(), edge_index],
        transformer_conv_pairs(conv, m),
        module=m,
        atol=1e-12,
        rtol=1e-12,
    )


# -------------------------------------------------------------- PyG errors
@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: GCNConv(C_IN, C_OUT, aggr="mean"), ValueError, "aggr"),
        (lambda: GCNConv(C_IN, C_OUT, flow="target_to_source"), ValueError, "flow"),
        (lambda: GCNConv(-1, C_OUT), ValueError, "lazily"),
        (lambda: nn.Linear(C_IN, C_OUT), TypeError, "GCNConv"),
    ],
)
def test_from_pyg_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        from_pyg(make())


def test_transformer_conv_beta_without_root_converts(graph):
    """beta only acts through the skip connection; without it there is nothing to gate."""
    x, edge_index = graph
    conv = randomise(TransformerConv(C_IN, C_OUT, heads=2, beta=True, root_weight=False)).eval()
    m = from_pyg(conv)
    torch.testing.assert_close(m(x, edge_index), conv(x, edge_index), atol=ATOL, rtol=RTOL)


# ---------------------------------------------------------------- networkx
def _edge_table(edge_index, edge_attr=None):
    """{(src, dst): attribute} of a graph without parallel edges."""
    pairs = [tuple(e) for e in edge_index.t().tolist()]
    assert len(set(pairs)) == len(pairs)
    values = [None] * len(pairs) if edge_attr is None else edge_attr.tolist()
    return dict(zip(pairs, values))


def test_from_networkx_undirected_gives_both_directions():
    g = nx.Graph()
    g.add_node("a", pos=[0.0, 1.0], mass=2.0)
    g.add_node("b", pos=[1.0, 1.0], mass=3.0)
    g.add_node("c", pos=[2.0, 0.0], mass=4.0)
    g.add_edge("a", "b", weight=0.5)
    g.add_edge("b", "c", weight=2.0)
    g.add_edge("c", "c", weight=7.0)
    x, edge_index, w = from_networkx(g, node_attrs=["pos", "mass"], edge_attr="weight")
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 3.0], [2.0, 0.0, 4.0]]))
    assert w.shape == (5,)
    assert _edge_table(edge_index, w) == {(0, 1): 0.5, (1, 0): 0.5, (1, 2): 2.0, (2, 1): 2.0, (2, 2): 7.0}


def test_from_networkx_matches_pyg_on_karate_club():
    g = nx.karate_club_graph()
    x, edge_index, w = from_networkx(g, edge_attr="weight")
    ref = pyg_from_networkx(g)
    assert x is None and edge_index.shape == (2, 2 * g.number_of_edges())
    assert _edge_table(edge_index, w) == _edge_table(ref.edge_index, ref.weight.float())


def test_from_networkx_vector_and_listed_edge_attributes():
    g = nx.DiGraph()
    g.add_edge(0, 1, e=[1.0, 2.0], w=3.0)
    g.add_edge(1, 0, e=[4.0, 5.0], w=6.0)
    _, edge_index, e = from_networkx(g, edge_attr="e")
    assert e.shape == (2, 2)
    _, _, ew = from_networkx(g, edge_attr=["e", "w"])
    assert _edge_table(edge_index, ew) == {(0, 1): [1.0, 2.0, 3.0], (1, 0): [4.0, 5.0, 6.0]}


def test_from_networkx_errors():
    g = nx.path_graph(3)
    with pytest.raises(ValueError, match="feat"):
        from_networkx(g, node_attrs="feat")
    with pytest.raises(ValueError, match="weight"):
        from_networkx(g, edge_attr="weight")
    with pytest.raises(TypeError, match="networkx"):
        from_networkx([(0, 1)])


def test_networkx_round_trip(graph):
    _, edge_index = graph
    edge_index = torch.unique(edge_index, dim=1)  # a DiGraph holds one edge per pair
    x, w = torch.randn(NUM_NODES, 3), torch.rand(edge_index.size(1))
    g = to_networkx(edge_index, NUM_NODES, x=x, edge_attr=w)
    assert isinstance(g, nx.DiGraph) and g.number_of_nodes() == NUM_NODES  # node 6 is isolated and kept
    x2, edge_index2, w2 = from_networkx(g, node_attrs="x", edge_attr="weight")
    torch.testing.assert_close(x2, x)
    table, table2 = _edge_table(edge_index, w), _edge_table(edge_index2, w2)
    assert table.keys() == table2.keys()
    torch.testing.assert_close(torch.tensor([table2[k] for k in table]), torch.tensor(list(table.values())))


def test_to_networkx_undirected_and_from_data():
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    data = Data(x=torch.randn(4, 2), edge_index=edge_index, edge_attr=torch.randn(4, 3))
    g = to_networkx(data, to_undirected=True)
    assert isinstance(g, nx.Graph) and not g.is_directed()
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 2
    assert torch.tensor(g.nodes[3]["x"]).allclose(data.x[3])
    assert len(g.edges[0, 1]["weight"]) == 3


# ------------------------------------------------------------------- scipy
def test_scipy_round_trip_keeps_edge_order(graph):
    _, edge_index = graph
    w = torch.rand(edge_index.size(1))
    adj = to_scipy(edge_index, NUM_NODES, w)
    assert adj.shape == (NUM_NODES, NUM_NODES)
    edge_index2, w2 = from_scipy(adj)
    assert torch.equal(edge_index2, edge_index)
    torch.testing.assert_close(w2, w)


def test_to_scipy_sums_parallel_edges_and_is_source_by_row(graph):
    _, edge_index = graph
    w = torch.rand(edge_index.size(1), dtype=torch.float64)
    dense = torch.zeros(NUM_NODES, NUM_NODES, dtype=torch.float64)
    dense.index_put_((edge_index[0], edge_index[1]), w, accumulate=True)
    np.testing.assert_allclose(to_scipy(edge_index, NUM_NODES, w).toarray(), dense.numpy())
    counts = torch.bincount(edge_index[0] * NUM_NODES + edge_index[1], minlength=NUM_NODES**2)
    np.testing.assert_array_equal(
        to_scipy(edge_index, NUM_NODES).toarray(), counts.view(NUM_NODES, NUM_NODES).numpy().astype(np.float32)
    )


def test_from_scipy_matches_pyg_and_accepts_dense():
    rng = np.random.default_rng(0)
    dense = rng.random((6, 6)) * (rng.random((6, 6)) < 0.4)
    edge_index, w = from_scipy(sp.csr_matrix(dense))
    ref_index, ref_w = from_scipy_sparse_matrix(sp.csr_matrix(dense))
    assert torch.equal(edge_index, ref_index)
    torch.testing.assert_close(w, ref_w.float())
    edge_index_d, w_d = from_scipy(dense, dtype=torch.float64)
    assert torch.equal(edge_index_d, ref_index) and w_d.dtype == torch.float64
    with pytest.raises(ValueError, match="2-D"):
        from_scipy(np.zeros(3))


def test_to_scipy_bipartite_and_errors():
    edge_index = bipartite_graph(3, 5)
    adj = to_scipy(edge_index, (3, 5))
    assert adj.shape == (3, 5) and adj.sum() == edge_index.size(1)
    with pytest.raises(ValueError, match="num_nodes"):
        to_scipy(edge_index, 2)
    with pytest.raises(ValueError, match="edge_weight"):
        to_scipy(edge_index, (3, 5), torch.ones(2))
    with pytest.raises(TypeError, match="edge_index"):
        to_scipy([[0, 1], [1, 0]], 2)


def test_scipy_gcn_weights_drive_the_converted_layer(graph):
    """Edge weights read from a matrix feed the converted GCN exactly as PyG's."""
    x, _ = graph
    rng = np.random.default_rng(1)
    adj = sp.random(NUM_NODES, NUM_NODES, density=0.3, random_state=rng, format="csr")
    edge_index, w = from_scipy(adj)
    conv = randomise(GCNConv(C_IN, C_OUT)).eval()
    torch.testing.assert_close(from_pyg(conv)(x, edge_index, edge_attr=w), conv(x, edge_index, w), atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------- PyG Data
def test_from_data_single_and_batch():
    d1 = Data(x=torch.randn(3, C_IN), edge_index=torch.tensor([[0, 1], [1, 2]]), edge_attr=torch.randn(2, EDGE_DIM))
    d2 = Data(
        x=torch.randn(4, C_IN), edge_index=torch.tensor([[0, 3, 2], [1, 1, 0]]), edge_attr=torch.randn(3, EDGE_DIM)
    )
    x, edge_index, edge_attr, batch = from_data(d1)
    assert x is d1.x and edge_index is d1.edge_index and edge_attr is d1.edge_attr and batch is None
    data = Batch.from_data_list([d1, d2])
    x, edge_index, edge_attr, batch = from_data(data)
    assert torch.equal(batch, torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    conv = randomise(GATConv(C_IN, C_OUT, heads=2, edge_dim=EDGE_DIM)).eval()
    torch.testing.assert_close(
        from_pyg(conv)(x, edge_index, edge_attr=edge_attr, batch=batch),
        conv(x, edge_index, edge_attr),
        atol=ATOL,
        rtol=RTOL,
    )


def test_from_data_edge_weight_and_errors():
    data = Data(x=torch.randn(3, 2), edge_index=torch.tensor([[0, 1], [1, 2]]), edge_weight=torch.rand(2))
    assert from_data(data)[2] is data.edge_weight
    with pytest.raises(TypeError, match="Data"):
        from_data({"x": data.x})
    with pytest.raises(ValueError, match="edge_index"):
        from_data(Data(x=torch.randn(3, 2)))


# =====================================================================
# The peers' own cases. Each test names the peer file and test it ports.
# =====================================================================
def assert_same_call(ref_fn, gf_fn, inputs, atol=ATOL, rtol=RTOL):
    """``ref_fn(*inputs)`` and ``gf_fn(*inputs)`` agree: every tensor they return, and the input gradients.

    Both may return a tensor or a tuple (torch's ``(out, weights)``); items
    that are None must be None in both. The gradient is that of a fixed
    random projection of the first output.
    """

    def run(fn):
        xs = [
            t.detach().clone().requires_grad_(t.is_floating_point())
            if isinstance(t, torch.Tensor) and t.layout == torch.strided
            else t
            for t in inputs
        ]
        out = fn(*xs)
        outs = list(out) if isinstance(out, tuple) else [out]
        leaves = [x for x in xs if isinstance(x, torch.Tensor) and x.requires_grad]
        first = outs[0]
        weight = torch.randn(first.shape, generator=torch.Generator().manual_seed(1), dtype=first.dtype)
        grads = torch.autograd.grad((first * weight).sum(), leaves, allow_unused=True) if leaves else []
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]
        return [o.detach() if isinstance(o, torch.Tensor) else o for o in outs], grads

    ref_out, ref_grads = run(ref_fn)
    gf_out, gf_grads = run(gf_fn)
    assert len(ref_out) == len(gf_out)
    for a, b in zip(gf_out, ref_out):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
    for a, b in zip(gf_grads, ref_grads):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


TRAILING = torch.tensor([False, False, True])  # common_modules' key padding mask: the last position padded


# ------------------------------------------------- nn.MultiheadAttention
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_mha_module_samples(bias, batch_first, padded, masked):
    """Port of torch/testing/_internal/common_modules.py: module_inputs_torch_nn_MultiheadAttention.

    Unbatched query, key and value (three different tensors), a [3] key
    padding mask and a [num_heads, 3, 3] bool attn_mask; torch's call form
    returns (out, weights) equal to torch's, and graphformer's form — the
    masks as a graph (adjacency) — gives the same output.
    """
    mha = randomise(nn.MultiheadAttention(3, 3, batch_first=batch_first, bias=bias)).eval()
    m = from_torch(mha)
    assert isinstance(m, gf.GraphAttention) and m.batch_first == batch_first
    pad = TRAILING if padded else None
    mask = TRAILING.expand(3, 3, 3) if masked else None
    q, k, v = torch.randn(3, 3), torch.randn(3, 3), torch.randn(3, 3)
    assert_same_call(
        lambda q, k, v: mha(q, k, v, key_padding_mask=pad, attn_mask=mask),
        lambda q, k, v: m(q, k, v, key_padding_mask=pad, attn_mask=mask),
        [q, k, v],
    )
    adjacency = None if mask is None else ~mask

    def graphformer_form(q, k, v):
        return m((k, q), value=v, key_padding_mask=pad, adjacency=adjacency)

    assert_same_call(lambda q, k, v: mha(q, k, v, key_padding_mask=pad, attn_mask=mask)[0], graphformer_form, [q, k, v])


@pytest.mark.parametrize("option", ["add_bias_kv", "add_zero_attn"])
def test_mha_module_samples_bias_kv_and_zero_attn_are_refused(option):
    """Port of common_modules.py: module_inputs_torch_nn_MultiheadAttention, its add_bias_kv / add_zero_attn samples.

    Both append a key/value node after the projections (learned, or zero)
    that no graph over the given nodes holds: refused, naming the option.
    """
    with pytest.raises(ValueError, match=option):
        from_torch(nn.MultiheadAttention(3, 3, **{option: True}))


MASKS = ["bool", "float", "bool_3d", "float_3d", "causal", "float_padding", "bool_padding_and_float_mask"]


def _torch_masks(kind: str, batch: int, heads: int, m: int, n: int):
    """(attn_mask, key_padding_mask, is_causal) of a mask kind, as torch's tests build them."""
    gen = torch.Generator().manual_seed(7)
    keep = torch.rand(batch * heads, m, n, generator=gen) > 0.4
    keep[..., 0] = True  # every target keeps one source (torch gives NaN for a row without any)
    float_mask = torch.randn(batch * heads, m, n, generator=gen).masked_fill(~keep, float("-inf"))
    pad = torch.zeros(batch, n, dtype=torch.bool)
    pad[0, n - 2 :] = True
    float_pad = torch.randn(batch, n, generator=gen).masked_fill(pad, float("-inf"))
    if kind == "bool":
        return ~keep[0], None, False
    if kind == "float":
        return float_mask[0], None, False
    if kind == "bool_3d":
        return ~keep, None, False
    if kind == "float_3d":
        return float_mask, None, False
    if kind == "causal":
        return causal_mask(m), None, True
    if kind == "float_padding":
        return None, float_pad, False
    return float_mask[0], pad, False


@pytest.mark.parametrize("kind", MASKS)
@pytest.mark.parametrize("kdim, vdim", [(None, None), (6, 6), (6, 4)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_torch_call_form_with_masks(kind, kdim, vdim, batch_first):
    """Port of test/nn/test_multihead_attention.py: test_multihead_attn_3d_attn_mask,
    test_multihead_attention_kdim_vdim (kdim != vdim included) and the masks of
    _multihead_attn_test_helper (bool / float attn_mask, float key_padding_mask).

    Query, key and value are three tensors; the weights come back averaged
    and per head as torch gives them.
    """
    mha = randomise(nn.MultiheadAttention(D, HEADS, batch_first=batch_first, kdim=kdim, vdim=vdim)).eval()
    m = from_torch(mha)
    attn_mask, pad, is_causal = _torch_masks(kind, B, HEADS, M if kind != "causal" else N, N)
    tgt = N if kind == "causal" else M
    shape = (B, tgt) if batch_first else (tgt, B)
    kv_shape = (B, N) if batch_first else (N, B)
    q, k, v = torch.randn(*shape, D), torch.randn(*kv_shape, kdim or D), torch.randn(*kv_shape, vdim or D)
    for average in (True, False):
        kw = dict(key_padding_mask=pad, attn_mask=attn_mask, is_causal=is_causal, average_attn_weights=average)
        assert_same_call(lambda q, k, v: mha(q, k, v, **kw), lambda q, k, v: m(q, k, v, **kw), [q, k, v])  # noqa: B023
    kw = dict(key_padding_mask=pad, attn_mask=attn_mask, is_causal=is_causal, need_weights=False)
    out, weights = m(q, k, v, **kw)
    assert weights is None
    with torch.no_grad():  # torch's fused kernel
        torch.testing.assert_close(out, mha(q, k, v, **kw)[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["bool", "float", "float_padding", "causal"])
def test_mha_graphformer_form_takes_torch_masks(kind):
    """Port of test/nn/test_multihead_attention.py: test_multihead_self_attn_two_masks_fast_path —
    self-attention with an attn_mask and a key padding mask, here in graphformer's form m(x, ...)."""
    mha = randomise(nn.MultiheadAttention(D, HEADS, batch_first=True)).eval()
    m = from_torch(mha)
    attn_mask, pad, is_causal = _torch_masks(kind, B, HEADS, N, N)
    x = torch.randn(B, N, D)
    kw = dict(key_padding_mask=pad, attn_mask=attn_mask, is_causal=is_causal)
    assert_same_call(lambda x: mha(x, x, x, **kw)[0], lambda x: m(x, **kw), [x])


def test_mha_value_distinct_from_key_and_self_attention_identity():
    """Port of test/nn/test_multihead_attention.py: test_multihead_attention_kdim_vdim — key and value differ;
    and mha(x, x, x) (one tensor) takes the fused self-attention projection, same numbers."""
    mha = randomise(nn.MultiheadAttention(D, HEADS, batch_first=True)).eval()
    m = from_torch(mha)
    q, k, v = torch.randn(B, M, D), torch.randn(B, N, D), torch.randn(B, N, D)
    assert_same_call(mha, m, [q, k, v])
    assert_same_call(lambda x: mha(x, x, x), lambda x: m(x, x, x), [q])
    assert_same_call(lambda q, k: mha(q, k, k), lambda q, k: m(q, k, k), [q, k])
    with pytest.raises(ValueError, match="vdim"):
        from_torch(nn.MultiheadAttention(D, HEADS, kdim=6, vdim=4))((torch.randn(N, 6), torch.randn(M, D)))


def test_dense_adjacency_is_the_graph_of_its_edges():
    """A dense mask is a graph given by its adjacency matrix: the dense path on it equals the sparse path on
    its edges (DESIGN: two paths, one function), gradients included."""
    attn = randomise(gf.GraphAttention(D, HEADS)).eval()
    adjacency = torch.rand(N, N) > 0.5
    adjacency[3] = False  # a target with no incoming edge: a zero message on both paths
    dst, src = adjacency.nonzero().t()
    edge_index = torch.stack([src, dst])
    assert_same_call(lambda x: attn(x, edge_index), lambda x: attn(x, adjacency=adjacency), [torch.randn(N, D)])
    with pytest.raises(TypeError, match="bool"):
        attn(torch.randn(N, D), adjacency=adjacency.float())


# ------------------------------------------------- the seq-first trap
def test_seq_first_module_keeps_its_layout_when_length_equals_batch():
    """The trap of issue 'batch_first=False': with sequence length == batch size a batch-first reading of
    seq-first input runs without error and is wrong. The converted module takes the source's layout."""
    layer = randomise(nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0)).eval()  # batch_first=False
    m = from_torch(layer)
    assert m.batch_first is False
    x = torch.randn(B, B, D)  # [N, B, d] with N == B: the shape cannot tell the layouts apart
    assert_same_call(layer, m, [x])
    batch_first = from_torch(layer, batch_first=True)
    assert batch_first.batch_first is True
    torch.testing.assert_close(batch_first(x.transpose(0, 1)).transpose(0, 1), layer(x), atol=ATOL, rtol=RTOL)
    assert not torch.allclose(batch_first(x), layer(x), atol=1e-3)  # the silent error the layout avoids
    with pytest.raises(TypeError, match="batch_first"):
        from_torch(layer, batch_first="no")


# ------------------------------------------------- encoder layer / encoder
ENCODER_SAMPLES = [
    (mask, pad, norm_first, batch_first, bias)
    for mask in (False, True)
    for pad in (False, True)
    for norm_first in (True, False)
    for batch_first in (True, False)
    for bias in (True, False)
]


@pytest.mark.parametrize("masked, padded, norm_first, batch_first, bias", ENCODER_SAMPLES)
def test_encoder_layer_module_samples(masked, padded, norm_first, batch_first, bias):
    """Port of common_modules.py: module_inputs_torch_nn_TransformerEncoderLayer (no_batch_dim samples):
    unbatched [3, 4] source, src_mask [F, F, T].expand(3, 3), src_key_padding_mask [F, F, T]; torch's
    call form, keyword and positional mask."""
    layer = nn.TransformerEncoderLayer(
        d_model=4, nhead=2, dim_feedforward=8, dropout=0.0, batch_first=batch_first, norm_first=norm_first, bias=bias
    )
    layer = randomise(layer).eval()
    m = from_torch(layer)
    mask = TRAILING.expand(3, 3) if masked else None
    pad = TRAILING if padded else None
    x = torch.randn(3, 4)
    assert_same_call(
        lambda x: layer(x, src_mask=mask, src_key_padding_mask=pad),
        lambda x: m(x, src_mask=mask, src_key_padding_mask=pad),
        [x],
    )
    assert_same_call(lambda x: layer(x, mask, pad), lambda x: m(x, mask, pad), [x])


@pytest.mark.parametrize("activation, bias", [("relu", True), (F.gelu, True), ("relu", False)])
def test_encoder_layer_module_samples_batched(activation, bias):
    """Port of common_modules.py: module_inputs_torch_nn_TransformerEncoderLayer, samples relu_activation,
    gelu_activation, no_bias: positional constructor (seq-first by default), [2, 3, 4] input."""
    layer = randomise(nn.TransformerEncoderLayer(4, 2, 8, 0.0, activation, bias=bias)).eval()
    m = from_torch(layer)
    assert_same_call(layer, m, [torch.randn(2, 3, 4)])


@pytest.mark.parametrize("kind", MASKS)
def test_encoder_layer_any_src_mask(kind):
    """Port of test/test_transformers.py: test_transformerencoderlayer_src_mask — any src_mask (bool, float,
    [B * H, N, N]), a float key padding mask, is_causal."""
    layer = randomise(nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)).eval()
    m = from_torch(layer)
    mask, pad, is_causal = _torch_masks(kind, B, HEADS, N, N)
    x = torch.randn(B, N, D)
    kw = dict(src_mask=mask, src_key_padding_mask=pad, is_causal=is_causal)
    assert_same_call(lambda x: layer(x, **kw), lambda x: m(x, **kw), [x])


@pytest.mark.parametrize(
    "masked, padded, batch_first", [(m_, p, b) for m_ in (False, True) for p in (False, True) for b in (True, False)]
)
def test_encoder_module_samples(masked, padded, batch_first):
    """Port of common_modules.py: module_inputs_torch_nn_TransformerEncoder (two layers, mask= instead of
    src_mask=), unbatched samples."""
    layer = nn.TransformerEncoderLayer(d_model=4, nhead=2, dim_feedforward=8, dropout=0.0, batch_first=batch_first)
    encoder = randomise(nn.TransformerEncoder(layer, 2)).eval()
    m = from_torch(encoder)
    assert isinstance(m, gf.GraphformerEncoder)
    mask = TRAILING.expand(3, 3) if masked else None
    pad = TRAILING if padded else None
    assert_same_call(
        lambda x: encoder(x, mask=mask, src_key_padding_mask=pad),
        lambda x: m(x, mask=mask, src_key_padding_mask=pad),
        [torch.randn(3, 4)],
    )
    assert_same_call(lambda x: encoder(x, mask, pad), lambda x: m(x, mask, pad), [torch.randn(3, 4)])


# ------------------------------------------------- decoder layer / decoder / Transformer
DECODER_SAMPLES = [
    (mask, pad, norm_first, bias, batch_first)
    for mask in (False, True)
    for pad in (False, True)
    for norm_first in (True, False)
    for bias in (True, False)
    for batch_first in (True, False)
]


@pytest.mark.parametrize("masked, padded, norm_first, bias, batch_first", DECODER_SAMPLES)
def test_decoder_layer_module_samples(masked, padded, norm_first, bias, batch_first):
    """Port of common_modules.py: module_inputs_torch_nn_TransformerDecoderLayer: unbatched and batched
    (seq-first when batch_first=False) target and memory, the same [F, F, T] mask as tgt_mask and
    memory_mask and as both key padding masks."""
    layer = nn.TransformerDecoderLayer(
        d_model=4, nhead=2, dim_feedforward=8, dropout=0.0, batch_first=batch_first, norm_first=norm_first, bias=bias
    )
    layer = randomise(layer).eval()
    m = from_torch(layer)
    mask = TRAILING.expand(3, 3) if masked else None
    pad = TRAILING if padded else None
    kw = dict(tgt_mask=mask, memory_mask=mask, tgt_key_padding_mask=pad, memory_key_padding_mask=pad)
    assert_same_call(lambda t, s: layer(t, s, **kw), lambda t, s: m(t, s, **kw), [torch.randn(3, 4), torch.randn(3, 4)])
    if padded:
        kw.update(tgt_key_padding_mask=pad.expand(2, 3), memory_key_padding_mask=pad.expand(2, 3))
    shape = (2, 3, 4) if batch_first else (3, 2, 4)
    assert_same_call(
        lambda t, s: layer(t, s, **kw), lambda t, s: m(t, s, **kw), [torch.randn(*shape), torch.randn(*shape)]
    )


@pytest.mark.parametrize("kind", MASKS)
def test_decoder_layer_any_tgt_and_memory_mask(kind):
    """Port of test/test_nn.py: test_transformerdecoderlayer (tgt_mask, memory_mask and both key padding
    masks, here of every kind: bool, float, per head, float padding)."""
    layer = randomise(nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)).eval()
    m = from_torch(layer)
    tgt_mask, tgt_pad, tgt_causal = _torch_masks(kind, B, HEADS, N, N)
    memory_mask, memory_pad, _ = _torch_masks(kind if kind != "causal" else "bool", B, HEADS, N, M + 2)
    kw = dict(
        tgt_mask=tgt_mask,
        memory_mask=memory_mask,
        tgt_key_padding_mask=tgt_pad,
        memory_key_padding_mask=memory_pad,
        tgt_is_causal=tgt_causal,
    )
    assert_same_call(
        lambda t, s: layer(t, s, **kw), lambda t, s: m(t, s, **kw), [torch.randn(B, N, D), torch.randn(B, M + 2, D)]
    )


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm", [False, True])
def test_decoder_stack(batch_first, norm):
    """Port of test/test_nn.py: test_transformerdecoder — a stack of decoder layers with a final norm,
    causal tgt_mask and padded memory; torch's call form and graphformer's (causal=True)."""
    layer = nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.0, batch_first=batch_first)
    decoder = randomise(nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(D) if norm else None)).eval()
    m = from_torch(decoder)
    assert isinstance(m, gf.interop.TorchDecoder) and len(m.layers) == 2
    mem_pad = padding(B, M + 2)
    shape, mem_shape = ((B, N), (B, M + 2)) if batch_first else ((N, B), (M + 2, B))
    inputs = [torch.randn(*shape, D), torch.randn(*mem_shape, D)]
    kw = dict(tgt_mask=causal_mask(N), tgt_is_causal=True, memory_key_padding_mask=mem_pad)
    assert_same_call(lambda t, s: decoder(t, s, **kw), lambda t, s: m(t, s, **kw), inputs)
    assert_same_call(
        lambda t, s: decoder(t, s, **kw), lambda t, s: m(t, s, causal=True, memory_key_padding_mask=mem_pad), inputs
    )
    assert_same_call(decoder, m, inputs)  # no mask, as torch's default


TRANSFORMER_SAMPLES = [
    (mask, pad, norm_first, bias, batch_first)
    for mask in (False, True)
    for pad in (False, True)
    for norm_first in (True, False)
    for bias in (True, False)
    for batch_first in (True, False)
]


@pytest.mark.parametrize("masked, padded, norm_first, bias, batch_first", TRANSFORMER_SAMPLES)
def test_transformer_module_samples(masked, padded, norm_first, bias, batch_first):
    """Port of common_modules.py: module_inputs_torch_nn_Transformer: one encoder and one decoder layer,
    unbatched and batched, the same [F, F, T] mask as src_mask and tgt_mask and as both key padding masks."""
    model = nn.Transformer(
        d_model=4,
        nhead=2,
        dim_feedforward=8,
        num_encoder_layers=1,
        num_decoder_layers=1,
        dropout=0.0,
        batch_first=batch_first,
        norm_first=norm_first,
        bias=bias,
    )
    model = randomise(model).eval()
    m = from_torch(model)
    assert isinstance(m, gf.interop.TorchTransformer)
    mask = TRAILING.expand(3, 3) if masked else None
    pad = TRAILING if padded else None
    kw = dict(tgt_mask=mask, src_mask=mask, tgt_key_padding_mask=pad, src_key_padding_mask=pad)
    assert_same_call(lambda s, t: model(s, t, **kw), lambda s, t: m(s, t, **kw), [torch.randn(3, 4), torch.randn(3, 4)])
    if padded:
        kw.update(tgt_key_padding_mask=pad.expand(2, 3), src_key_padding_mask=pad.expand(2, 3))
    shape = (2, 3, 4) if batch_first else (3, 2, 4)
    assert_same_call(
        lambda s, t: model(s, t, **kw), lambda s, t: m(s, t, **kw), [torch.randn(*shape), torch.randn(*shape)]
    )


def test_transformer_generate_square_subsequent_mask_and_memory_mask():
    """Port of test/test_nn.py: test_transformer_args_check / test_transformer (the causal float mask of
    nn.Transformer.generate_square_subsequent_mask, a memory_mask, memory padding)."""
    model = randomise(nn.Transformer(D, HEADS, 2, 2, FF, dropout=0.0, batch_first=True)).eval()
    m = from_torch(model)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(N)
    memory_mask, _, _ = _torch_masks("float", 1, HEADS, N, M + 2)
    mem_pad = padding(B, M + 2)
    kw = dict(tgt_mask=tgt_mask, memory_mask=memory_mask, memory_key_padding_mask=mem_pad, tgt_is_causal=True)
    inputs = [torch.randn(B, M + 2, D), torch.randn(B, N, D)]
    assert_same_call(lambda s, t: model(s, t, **kw), lambda s, t: m(s, t, **kw), inputs)
    no_memory_mask = dict(kw, memory_mask=None)
    assert_same_call(
        lambda s, t: model(s, t, **no_memory_mask),
        lambda s, t: m(s, t, causal=True, memory_key_padding_mask=mem_pad),
        inputs,
    )


# ------------------------------------------------- PyG: sparse adjacency, beta, fill values, loops, cache
from torch_geometric import EdgeIndex  # noqa: E402
from torch_geometric.utils import add_remaining_self_loops as pyg_add_remaining_self_loops  # noqa: E402
from torch_geometric.utils import add_self_loops as pyg_add_self_loops  # noqa: E402
from torch_geometric.utils import to_edge_index as pyg_to_edge_index  # noqa: E402
from torch_geometric.utils import to_torch_coo_tensor, to_torch_csc_tensor, to_torch_csr_tensor  # noqa: E402

from graphformer.interop import PygConv, from_sparse_adjacency  # noqa: E402

PYG_TAKES = ("csc_t", "edge_index", "sparse_tensor")
PYG_EDGES = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])  # PyG's test graph (GAT, GATv2, TransformerConv)
PYG_GCN_EDGES = torch.tensor([[0, 0, 0, 1, 2, 3], [1, 2, 3, 0, 0, 0]])  # PyG's GCN test graph


def adjacency_forms(edge_index, value=None, size=(4, 4)):
    """The transposed adjacency adj_t in the forms PyG's conv tests pass — CSC.t() (= CSR) and SparseTensor
    (when torch_sparse imports) — plus COO.t() (uncoalesced), CSR.t() (= CSC) and an EdgeIndex.

    PyG itself refuses some of these for some convs (CSC in gcn_norm and GATv2, an uncoalesced COO in
    TransformerConv); ``PYG_TAKES`` lists the forms every PyG conv takes.
    """
    forms = {
        "csc_t": to_torch_csc_tensor(edge_index, value, size=size).t(),
        "coo_t": to_torch_coo_tensor(edge_index, value, size=size).t(),
        "csr_t": to_torch_csr_tensor(edge_index, value, size=size).t(),
        "edge_index": EdgeIndex(edge_index, sparse_size=size),
    }
    try:
        from torch_sparse import SparseTensor
    except ImportError:
        pass
    else:
        forms["sparse_tensor"] = SparseTensor.from_edge_index(edge_index, value, sparse_sizes=size).t()
    return forms


def test_from_sparse_adjacency_matches_pyg_to_edge_index():
    """adj_t[i, j] is the edge j -> i: ours is PyG's to_edge_index(adj_t) flipped, in every layout."""
    value = torch.rand(PYG_GCN_EDGES.size(1))
    for name, adj_t in adjacency_forms(PYG_GCN_EDGES, value).items():
        edge_index, weight = from_sparse_adjacency(adj_t)
        assert type(edge_index) is torch.Tensor and edge_index.dtype == torch.long, name
        got = sorted(
            zip(map(tuple, edge_index.t().tolist()), [None] * edge_index.size(1) if weight is None else weight.tolist())
        )
        expected = sorted(zip(map(tuple, PYG_GCN_EDGES.t().tolist()), [None] * 6 if weight is None else value.tolist()))
        assert got == expected, name
        if isinstance(adj_t, torch.Tensor) and adj_t.layout in (torch.sparse_coo, torch.sparse_csr):
            ref, _ = pyg_to_edge_index(adj_t)
            assert sorted(map(tuple, ref.flip(0).t().tolist())) == sorted(map(tuple, edge_index.t().tolist()))
    with pytest.raises(TypeError, match="from_sparse_adjacency"):
        gf.GraphAttention(C_IN)(torch.randn(4, C_IN), to_torch_csc_tensor(PYG_GCN_EDGES, size=(4, 4)).t())


@pytest.mark.parametrize("form", ["csc_t", "coo_t", "csr_t", "edge_index"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_conv_sparse_adjacency(form, weighted):
    """Port of PyG test/nn/conv/test_gcn_conv.py: test_gcn_conv — conv(x, adj1.t()) and conv(x, adj2.t())
    (weights in the adjacency) equal conv(x, edge_index[, value]); our module agrees in each form, and
    takes PyG's positional weights and the edge_weight keyword."""
    x = torch.randn(4, 16)
    value = torch.rand(PYG_GCN_EDGES.size(1))
    conv = randomise(GCNConv(16, 32)).eval()
    m = from_pyg(conv)
    adj_t = adjacency_forms(PYG_GCN_EDGES, value if weighted else None)[form]
    weights = [value] if weighted and form == "edge_index" else []
    if form != "csr_t":  # gcn_norm refuses CSC
        assert_same_call(lambda x: conv(x, adj_t, *weights), lambda x: m(x, adj_t, *weights), [x])
    ref = conv(x, PYG_GCN_EDGES, value if weighted else None)
    torch.testing.assert_close(m(x, adj_t, *weights), ref, atol=1e-6, rtol=1e-5)
    if weighted:
        assert_same_call(
            lambda x, w: conv(x, PYG_GCN_EDGES, w), lambda x, w: m(x, PYG_GCN_EDGES, edge_weight=w), [x, value]
        )


def test_gcn_conv_cached_port():
    """Port of PyG test_gcn_conv.py: test_gcn_conv, its cached part — conv.cached = True after a call;
    conv(x, edge_index) and conv(x, adj1.t()) both give out1. Converted after PyG cached the graph, the
    module keeps PyG's cache and gives the same; on another graph it refuses instead of reusing it."""
    x = torch.randn(4, 16)
    conv = randomise(GCNConv(16, 32)).eval()
    out1 = conv(x, PYG_GCN_EDGES)
    conv.cached = True
    conv(x, PYG_GCN_EDGES)
    assert conv._cached_edge_index is not None
    m = from_pyg(conv)
    adj1 = to_torch_csc_tensor(PYG_GCN_EDGES, size=(4, 4))
    torch.testing.assert_close(m(x, PYG_GCN_EDGES), out1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m(x, adj1.t()), out1, atol=1e-6, rtol=1e-5)
    other = PYG_GCN_EDGES[:, :4]
    with pytest.raises(ValueError, match="cached"):
        m(x, other)
    m.reset_cache()
    torch.testing.assert_close(m(x, other), randomise_like(GCNConv(16, 32), conv)(x, other), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="reset_cache"):
        m(x, PYG_GCN_EDGES)


def randomise_like(fresh: nn.Module, source: nn.Module) -> nn.Module:
    """``fresh`` holding ``source``'s weights (same class), in eval mode."""
    fresh.load_state_dict(source.state_dict())
    return fresh.eval()


def test_gcn_cached_converted_before_any_call(graph):
    """The issue's disagreement: cached=True normalises once and PyG ignores a new edge_index (up to 1.29
    apart). Same calls give the same output; a call on a new graph raises."""
    x, edge_index = graph
    conv = randomise(GCNConv(C_IN, C_OUT, cached=True)).eval()
    m = from_pyg(conv)
    for _ in range(2):
        assert_same_call(lambda x: conv(x, edge_index), lambda x: m(x, edge_index), [x])
    perm = torch.randperm(edge_index.size(1))
    torch.testing.assert_close(m(x, edge_index[:, perm]), conv(x, edge_index), atol=ATOL, rtol=RTOL)  # same graph
    with pytest.raises(ValueError, match="GCNConv\\(cached=True\\)"):
        m(x, edge_index[:, 1:])


def test_gcn_several_self_loops_on_one_node():
    """The issue's disagreement: several self-loops on one node — PyG (add_remaining_self_loops) keeps one
    per node with the last one's weight; so does the converted layer (outputs and gradients)."""
    edge_index = torch.tensor([[0, 2, 1, 2, 3, 2, 4, 0], [1, 2, 2, 2, 4, 2, 0, 0]])  # node 2: three loops
    weight = torch.tensor([0.5, 2.0, 1.5, 0.25, 1.0, 3.0, 0.7, 1.2])
    x = torch.randn(5, C_IN)
    conv = randomise(GCNConv(C_IN, C_OUT)).eval()
    m = from_pyg(conv)
    assert_equivalent(
        lambda x, ei: conv(x, ei, weight), lambda x, ei: m(x, ei, weight), [x, edge_index], gcn_pairs(conv, m), module=m
    )
    # the weights of the loops dropped (2 -> 2 at positions 1 and 3) do not enter the output: zero gradient
    # here; PyG's index_put backward hands them the kept loop's gradient, an autograd artefact
    w = weight.clone().requires_grad_()
    m(x, edge_index, w).sum().backward()
    assert w.grad[[1, 3]].abs().max() == 0 and w.grad[5].abs() > 0
    w_ref = weight.clone().requires_grad_()
    conv(x, edge_index, w_ref).sum().backward()
    kept = [0, 2, 4, 5, 6, 7]
    torch.testing.assert_close(w.grad[kept], w_ref.grad[kept], atol=ATOL, rtol=RTOL)
    assert_equivalent(lambda x, ei: conv(x, ei), lambda x, ei: m(x, ei), [x, edge_index], gcn_pairs(conv, m))
    ref_index, ref_weight = pyg_add_remaining_self_loops(edge_index, weight, 1.0, 5)
    ours_index, ours_weight = gf.structure.add_self_loops(edge_index, 5, weight, mode="remaining")
    assert sorted(zip(map(tuple, ours_index.t().tolist()), ours_weight.tolist())) == sorted(
        zip(map(tuple, ref_index.t().tolist()), ref_weight.tolist())
    )


@pytest.mark.parametrize("form", ["edge_index", "csc_t", "coo_t"])
def test_gcn_sparse_adjacency_with_existing_loops(form):
    """PyG's loop rule differs by format: on a torch.sparse adjacency the added loop's weight is summed into
    the diagonal; on edge_index (and EdgeIndex) the existing loop is kept. The converted layer follows."""
    edge_index = torch.tensor([[0, 1, 2, 3, 2, 1], [1, 0, 1, 1, 2, 1]])
    value = torch.rand(edge_index.size(1)) + 0.5
    x = torch.randn(4, C_IN)
    for improved in (False, True):
        conv = randomise(GCNConv(C_IN, C_OUT, improved=improved)).eval()
        m = from_pyg(conv)
        adj_t = adjacency_forms(edge_index, value)[form] if form != "edge_index" else edge_index
        weights = [value] if form == "edge_index" else []
        assert_same_call(lambda x: conv(x, adj_t, *weights), lambda x: m(x, adj_t, *weights), [x])  # noqa: B023


@pytest.mark.parametrize("weighted", [False, True])
def test_gcn_improved(graph, weighted):
    """GCNConv(improved=True): added self-loops weigh 2 (where PyG adds them, see from_pyg's traps)."""
    x, edge_index = graph
    conv = randomise(GCNConv(C_IN, C_OUT, improved=True)).eval()
    m = from_pyg(conv)
    assert m.fill_value == 2.0
    inputs = [x, torch.rand(edge_index.size(1)) + 0.5, edge_index] if weighted else [x, edge_index]
    assert_equivalent(
        conv_call(conv, edge_attr=weighted), gf_call(m, edge_attr=weighted), inputs, gcn_pairs(conv, m), module=m
    )


@pytest.mark.parametrize("residual", [False, True])
def test_gat_conv_port(residual):
    """Port of PyG test/nn/conv/test_gat_conv.py: test_gat_conv — edge_index, size=(4, 4), adj1.t(),
    return_attention_weights (sizes (2, 7) / (7, 2), weights in [0, 1], the sparse form [4, 4, 2] with 7
    entries) and the bipartite (x1, x2) call with a [4, 2] adjacency."""
    x1, x2 = torch.randn(4, 8), torch.randn(2, 16)
    conv = randomise(GATConv(8, 32, heads=2, residual=residual)).eval()
    m = from_pyg(conv)
    adj1 = to_torch_csc_tensor(PYG_EDGES, size=(4, 4))
    for call in (
        lambda x, c: c(x, PYG_EDGES),
        lambda x, c: c(x, PYG_EDGES, size=(4, 4)),
        lambda x, c: c(x, adj1.t()),
        lambda x, c: c(x, EdgeIndex(PYG_EDGES, sparse_size=(4, 4))),
    ):
        assert_same_call(lambda x: call(x, conv), lambda x: call(x, m), [x1])  # noqa: B023 (called in the loop)
    out, (edge_index, alpha) = m(x1, PYG_EDGES, return_attention_weights=True)
    _, (ref_index, ref_alpha) = conv(x1, PYG_EDGES, return_attention_weights=True)
    assert edge_index.size() == (2, 7) and alpha.size() == (7, 2) and 0 <= alpha.min() and alpha.max() <= 1
    ours = {tuple(e): a for e, a in zip(edge_index.t().tolist(), alpha)}
    ref = {tuple(e): a for e, a in zip(ref_index.t().tolist(), ref_alpha)}
    assert ours.keys() == ref.keys()
    torch.testing.assert_close(torch.stack([ours[k] for k in ref]), torch.stack(list(ref.values())))
    out_sparse, (adj, alpha_sparse) = m(x1, adj1.t(), return_attention_weights=True)
    assert adj.size() == torch.Size([4, 4, 2]) and adj._nnz() == 7
    torch.testing.assert_close(out_sparse, out, atol=1e-6, rtol=1e-5)

    conv = randomise(GATConv((8, 16), 32, heads=2, residual=residual)).eval()
    m = from_pyg(conv)
    adj1 = to_torch_csc_tensor(PYG_EDGES, size=(4, 2))
    for call in (
        lambda s, t, c: c((s, t), PYG_EDGES),
        lambda s, t, c: c((s, t), PYG_EDGES, size=(4, 2)),
        lambda s, t, c: c((s, t), adj1.t()),
    ):
        assert_same_call(lambda s, t: call(s, t, conv), lambda s, t: call(s, t, m), [x1, x2])  # noqa: B023


@pytest.mark.parametrize("Conv", [GATConv, GATv2Conv])
@pytest.mark.parametrize("edge_dim, fill_value", [(1, 0.5), (1, "mean"), (4, 0.5), (4, "mean")])
def test_gat_conv_with_edge_attr_port(Conv, edge_dim, fill_value):  # noqa: N803
    """Port of PyG test_gat_conv.py: test_gat_conv_with_edge_attr and test_gatv2_conv.py:
    test_gatv2_conv_with_edge_attr — edge_dim=1 with 1-D edge weights given positionally, edge_dim=4 with
    edge features; self-loops filled with 0.5 or the mean."""
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 1, 1]])
    edge_attr = torch.randn(edge_index.size(1)) if edge_dim == 1 else torch.randn(edge_index.size(1), 4)
    conv = randomise(Conv(8, 32, heads=2, edge_dim=edge_dim, fill_value=fill_value)).eval()
    m = from_pyg(conv)
    assert_same_call(lambda x, e: conv(x, edge_index, e), lambda x, e: m(x, edge_index, e), [x, edge_attr])
    assert_same_call(lambda x, e: conv(x, edge_index, e), lambda x, e: m(x, edge_index, edge_attr=e), [x, edge_attr])


@pytest.mark.parametrize("Conv", [GATConv, GATv2Conv])
@pytest.mark.parametrize("fill_value", [0.5, "mean", "add", "sum", "max", "min", "mul", "tensor"])
def test_gat_fill_values_with_edge_features(graph, Conv, fill_value):  # noqa: N803
    """GAT / GATv2 self-loop fill_value other than 'mean' with edge_dim (numbers, tensors, every reduction of
    PyG's scatter): converted and equal, outputs and every gradient."""
    x, edge_index = graph
    fill = torch.randn(EDGE_DIM) if fill_value == "tensor" else fill_value
    conv = randomise(Conv(C_IN, C_OUT, heads=2, edge_dim=EDGE_DIM, fill_value=fill)).eval()
    m = from_pyg(conv)
    e = torch.randn(edge_index.size(1), EDGE_DIM)
    pairs = gat_pairs(conv, m) if Conv is GATConv else gatv2_pairs(conv, m)
    assert_equivalent(conv_call(conv, edge_attr=True), gf_call(m, edge_attr=True), [x, e, edge_index], pairs, module=m)
    no_loops = edge_index[0] != edge_index[1]  # GAT removes existing loops first
    reference, ref_attr = pyg_add_self_loops(edge_index[:, no_loops], e[no_loops], fill_value=fill, num_nodes=NUM_NODES)
    ours, our_attr = gf.structure.add_self_loops(edge_index, NUM_NODES, e, mode="add", fill_value=fill)
    loops = {i: a for (j, i), a in zip(ours.t().tolist(), our_attr) if i == j}
    ref_loops = {i: a for (j, i), a in zip(reference.t().tolist()[-NUM_NODES:], ref_attr[-NUM_NODES:])}
    torch.testing.assert_close(
        torch.stack([loops[i] for i in range(NUM_NODES)]), torch.stack([ref_loops[i] for i in range(NUM_NODES)])
    )


@pytest.mark.parametrize("Conv", [GATConv, GATv2Conv])
def test_gat_conv_empty_edge_index_port(Conv):  # noqa: N803
    """Port of PyG test_gat_conv.py: test_gat_conv_empty_edge_index — no nodes, no edges: out [0, 64]."""
    conv = Conv(8, 32, heads=2).eval()
    m = from_pyg(conv)
    out = m(torch.randn(0, 8), torch.empty(2, 0, dtype=torch.long))
    assert out.size() == (0, 64)


def test_gatv2_conv_port():
    """Port of PyG test/nn/conv/test_gatv2_conv.py: test_gatv2_conv — edge_index, adj.t() (SparseTensor and
    its CSC form), return_attention_weights (7 edges with loops) and the bipartite call."""
    x1, x2 = torch.randn(4, 8), torch.randn(2, 8)
    conv = randomise(GATv2Conv(8, 32, heads=2)).eval()
    m = from_pyg(conv)
    for name, adj_t in adjacency_forms(PYG_EDGES).items():
        ref = (lambda x: conv(x, adj_t)) if name in PYG_TAKES else (lambda x: conv(x, PYG_EDGES))  # noqa: B023
        assert_same_call(ref, lambda x: m(x, adj_t), [x1])  # noqa: B023 (called in the loop)
    out, (edge_index, alpha) = m(x1, PYG_EDGES, return_attention_weights=True)
    assert edge_index.size() == (2, 7) and alpha.size() == (7, 2) and 0 <= alpha.min() and alpha.max() <= 1
    torch.testing.assert_close(out, conv(x1, PYG_EDGES), atol=ATOL, rtol=RTOL)
    adj = to_torch_csc_tensor(PYG_EDGES, size=(4, 2))
    for call in (lambda s, t, c: c((s, t), PYG_EDGES), lambda s, t, c: c((s, t), adj.t())):
        assert_same_call(lambda s, t: call(s, t, conv), lambda s, t: call(s, t, m), [x1, x2])  # noqa: B023


def transformer_conv_beta_pairs(conv, m):
    pairs = transformer_conv_pairs(conv, m)
    return pairs + ([(conv.lin_beta.weight, [m.lin_beta.weight])] if m.lin_beta is not None else [])


def test_transformer_conv_port():
    """Port of PyG test/nn/conv/test_transformer_conv.py: test_transformer_conv — beta=True, heads=2;
    edge_index and adj.t() give one output; return_attention_weights ((2, 4) and (4, 2), in [0, 1]);
    the bipartite (8, 16) conv with a [4, 2] adjacency."""
    x1, x2 = torch.randn(4, 8), torch.randn(2, 16)
    conv = randomise(TransformerConv(8, 32, heads=2, beta=True)).eval()
    m = from_pyg(conv)
    assert m.lin_beta is not None
    for name, adj_t in adjacency_forms(PYG_EDGES).items():
        ref = (lambda x: conv(x, adj_t)) if name in PYG_TAKES else (lambda x: conv(x, PYG_EDGES))  # noqa: B023
        assert_same_call(ref, lambda x: m(x, adj_t), [x1])  # noqa: B023 (called in the loop)
    assert_equivalent(
        lambda x: conv(x, PYG_EDGES), lambda x: m(x, PYG_EDGES), [x1], transformer_conv_beta_pairs(conv, m), module=m
    )
    out, (edge_index, alpha) = m(x1, PYG_EDGES, return_attention_weights=True)
    assert edge_index.size() == (2, 4) and alpha.size() == (4, 2) and 0 <= alpha.min() and alpha.max() <= 1
    _, (_, ref_alpha) = conv(x1, PYG_EDGES, return_attention_weights=True)
    torch.testing.assert_close(alpha, ref_alpha, atol=ATOL, rtol=RTOL)

    conv = randomise(TransformerConv((8, 16), 32, heads=2, beta=True)).eval()
    m = from_pyg(conv)
    adj = to_torch_csc_tensor(PYG_EDGES, size=(4, 2))
    for call in (lambda s, t, c: c((s, t), PYG_EDGES), lambda s, t, c: c((s, t), adj.t())):
        assert_same_call(lambda s, t: call(s, t, conv), lambda s, t: call(s, t, m), [x1, x2])  # noqa: B023


@pytest.mark.parametrize("heads, concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("edge_dim", [None, 1, EDGE_DIM])
def test_transformer_conv_beta(graph, heads, concat, edge_dim):
    """TransformerConv(beta=True) — every PyG TransformerConv test and its UniMP example use it: the gated
    skip converts (lin_beta), outputs and every gradient equal; 1-D edge features for edge_dim=1."""
    x, edge_index = graph
    conv = randomise(TransformerConv(C_IN, C_OUT, heads=heads, concat=concat, beta=True, edge_dim=edge_dim)).eval()
    m = from_pyg(conv)
    inputs = [x, edge_index]
    if edge_dim is not None:
        e = torch.randn(edge_index.size(1)) if edge_dim == 1 else torch.randn(edge_index.size(1), edge_dim)
        inputs = [x, e, edge_index]
    ref = conv_call(conv, edge_attr=edge_dim is not None)
    if edge_dim == 1:  # PyG's TransformerConv wants [E, 1]; the converted layer takes [E] too

        def ref(x, e, ei):
            return conv(x, ei, e.unsqueeze(-1))

    assert_equivalent(
        ref, gf_call(m, edge_attr=edge_dim is not None), inputs, transformer_conv_beta_pairs(conv, m), module=m
    )
    if edge_dim is not None:
        with pytest.raises(ValueError, match="edge_attr"):
            m(x, to_torch_csc_tensor(edge_index, size=(NUM_NODES, NUM_NODES)).t())


def test_pyg_call_form_errors(graph):
    """Clear errors where PyG's forms would be ambiguous: weights both in the adjacency and given; weights
    given twice; a size that disagrees with x."""
    x, edge_index = graph
    m = from_pyg(GCNConv(C_IN, C_OUT))
    w = torch.rand(edge_index.size(1))
    adj_t = to_torch_csc_tensor(edge_index, w, size=(NUM_NODES, NUM_NODES)).t()
    with pytest.raises(ValueError, match="adjacency's values"):
        m(x, adj_t, w)
    with pytest.raises(TypeError, match="once"):
        m(x, edge_index, w, edge_weight=w)
    with pytest.raises(ValueError, match="size"):
        m(x, edge_index, size=(3, 3))
    assert isinstance(m, PygConv) and m.conv_type == "GCNConv"


def test_gcn_conv_sparse_input_feature_and_static_graph_ports(graph):
    """Ports of PyG test_gcn_conv.py: test_gcn_conv_with_sparse_input_feature (sparse COO node features:
    equal) and test_static_gcn_conv (x [3, 4, 16] with one edge_index: refused with the fix named); and of
    test_gat_conv.py: test_gat_conv's (x1, None) call (refused, naming what to pass)."""
    x = torch.sparse_coo_tensor(torch.tensor([[0, 0], [0, 1]]), torch.tensor([1.0, 1.0]), (4, 16))
    conv = randomise(GCNConv(16, 32)).eval()
    m = from_pyg(conv)
    torch.testing.assert_close(m(x, PYG_GCN_EDGES), conv(x, PYG_GCN_EDGES), atol=ATOL, rtol=RTOL)
    with pytest.raises(ValueError, match="stack graphs"):
        m(torch.randn(3, 4, 16), PYG_GCN_EDGES)
    gat = from_pyg(GATConv((8, 16), 32, heads=2))
    with pytest.raises(ValueError, match=r"\(x_src, x_dst\)"):
        gat((torch.randn(4, 8), None), PYG_EDGES, size=(4, 2))


@pytest.mark.parametrize("module", ["mha", "encoder_layer", "encoder"])
def test_torch_mask_and_edge_index_are_one_graph(module):
    """A dense torch mask is a graph given by its adjacency matrix: the converted module called on the
    mask's edges (sparse path, graphformer's form) equals the torch module called with the mask."""
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
    ref = {
        "mha": nn.MultiheadAttention(D, HEADS, batch_first=True),
        "encoder_layer": layer,
        "encoder": nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
    }[module]
    ref = randomise(ref).eval()
    m = from_torch(ref)
    blocked = torch.rand(N, N) > 0.5
    blocked[:, 0] = False  # every target keeps an edge (torch gives NaN for a row without one)
    dst, src = (~blocked).nonzero().t()
    edge_index = torch.stack([src, dst])
    x = torch.randn(1, N, D)
    if module == "mha":
        assert_same_call(lambda x: ref(x, x, x, attn_mask=blocked)[0][0], lambda x: m(x[0], edge_index), [x])
    elif module == "encoder_layer":
        assert_same_call(lambda x: ref(x, src_mask=blocked)[0], lambda x: m(x[0], edge_index), [x])
    else:
        assert_same_call(lambda x: ref(x, mask=blocked)[0], lambda x: m(x[0], edge_index), [x])
