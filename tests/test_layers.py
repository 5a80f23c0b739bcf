"""Tests of the Transformer blocks: encoder layer, encoder stack, decoder layer, feed-forward parts.

The blocks are compared with their formulas composed here by hand and, on the
complete graph with the "dot" score, with ``torch.nn.TransformerEncoderLayer``
and ``torch.nn.TransformerDecoderLayer`` given the same weights (copied here
parameter by parameter).

Legend: B batch, N nodes (M targets), d model width.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graphformer as gf
from graphformer.structure import SparseGraph, complete_edge_index

D, HEADS, FF = 8, 2, 16


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Random values for every parameter, LayerNorm scales around 1 and biases included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            centre = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            p.copy_(centre + 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def close(actual, expected, dtype=torch.float64):
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)


def make_layer(norm_first=False, activation="relu", dtype=torch.float64, seed=0, **kwargs):
    layer = gf.GraphformerLayer(D, HEADS, FF, dropout=0.0, activation=activation, norm_first=norm_first, **kwargs)
    return randomise(layer.to(dtype), seed).eval()


def feed_forward(layer, h, activation=F.relu):
    ff = layer.feedforward
    return F.linear(activation(F.linear(h, ff.linear1.weight, ff.linear1.bias)), ff.linear2.weight, ff.linear2.bias)


def layer_norm(norm, h):
    return F.layer_norm(h, (D,), norm.weight, norm.bias, norm.eps)


# the call forms of GraphformerLayer and the matching attention call
CALLS = {
    "dense": lambda x: ((x,), {}),
    "causal": lambda x: ((x,), {"causal": True}),
    "padding": lambda x: ((x,), {"key_padding_mask": torch.tensor([[False, False, True, False, True]] * 2)}),
    "sparse": lambda x: ((x[0], torch.tensor([[0, 1, 2, 3, 4, 1], [1, 2, 0, 0, 1, 1]])), {}),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_post_norm_layer_is_the_explicit_composition(call, activation):
    layer = make_layer(norm_first=False, activation=activation, seed=1)
    args, kwargs = CALLS[call](randn(2, 5, D, seed=2))
    x = args[0]
    act = F.relu if activation == "relu" else F.gelu
    h = layer_norm(layer.norm1, x + layer.self_attn(*args, **kwargs))
    expected = layer_norm(layer.norm2, h + feed_forward(layer, h, act))
    close(layer(*args, **kwargs), expected)


@pytest.mark.parametrize("call", list(CALLS))
def test_pre_norm_layer_is_the_explicit_composition(call):
    layer = make_layer(norm_first=True, seed=3)
    args, kwargs = CALLS[call](randn(2, 5, D, seed=4))
    x = args[0]
    h = x + layer.self_attn(layer_norm(layer.norm1, x), *args[1:], **kwargs)
    expected = h + feed_forward(layer, layer_norm(layer.norm2, h))
    close(layer(*args, **kwargs), expected)


@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_on_a_pair_keeps_the_residual_on_the_targets(norm_first):
    layer = make_layer(norm_first=norm_first, seed=5)
    x_src, x_dst = randn(2, 3, D, seed=6), randn(2, 4, D, seed=7)
    if norm_first:
        h = x_dst + layer.self_attn((x_src, layer_norm(layer.norm1, x_dst)))
        expected = h + feed_forward(layer, layer_norm(layer.norm2, h))
    else:
        h = layer_norm(layer.norm1, x_dst + layer.self_attn((x_src, x_dst)))
        expected = layer_norm(layer.norm2, h + feed_forward(layer, h))
    close(layer((x_src, x_dst)), expected)


def test_layer_returns_the_attention_record():
    layer = make_layer(seed=8)
    x = randn(5, D, seed=9)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 0, 0]])
    out, att = layer(x, edge_index, return_attention=True)
    close(out, layer(x, edge_index))
    assert att.weights.shape == (4, HEADS) and torch.equal(att.edge_index, edge_index)


def test_layer_passes_attention_options_through():
    layer = make_layer(seed=10, score="additive", edge_dim=3, self_loops="add")
    x, edge_attr = randn(5, D, seed=11), randn(4, 3, seed=12)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 0, 0]])
    h = layer_norm(layer.norm1, x + layer.self_attn(x, edge_index, edge_attr=edge_attr))
    close(layer(x, edge_index, edge_attr=edge_attr), layer_norm(layer.norm2, h + feed_forward(layer, h)))
    assert layer.self_attn.edge_proj.in_features == 3


def test_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation must be"):
        gf.GraphformerLayer(D, HEADS, FF, activation="tanh")
    with pytest.raises(ValueError, match="width d_model.*out_proj"):
        gf.GraphformerLayer(D, HEADS, FF, out_proj=False, concat=False)
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        gf.GraphformerEncoder(gf.GraphformerLayer(D, HEADS, FF), 0)


def test_dropout_changes_the_layer_in_train_mode_only():
    layer = gf.GraphformerLayer(D, HEADS, FF, dropout=0.3).double()
    x = randn(2, 5, D, seed=13)
    layer.eval()
    out = layer(x)
    close(layer(x), out)
    layer.train()
    assert not torch.allclose(layer(x), out)


# ------------------------------------------------------------ torch.nn twins
def copy_attention(dst: gf.GraphAttention, src: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        for lin, w, b in zip(
            (dst.q_proj, dst.k_proj, dst.v_proj), src.in_proj_weight.chunk(3), src.in_proj_bias.chunk(3)
        ):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        dst.out_proj.weight.copy_(src.out_proj.weight)
        dst.out_proj.bias.copy_(src.out_proj.bias)


def copy_module(dst: nn.Module, src: nn.Module) -> None:
    dst.load_state_dict(src.state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layer_equals_torch_transformer_encoder_layer(norm_first, activation):
    torch.manual_seed(14)
    ref = nn.TransformerEncoderLayer(
        D, HEADS, FF, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    )
    randomise(ref, 15).eval()
    layer = gf.GraphformerLayer(D, HEADS, FF, dropout=0.1, activation=activation, norm_first=norm_first).eval()
    copy_attention(layer.self_attn, ref.self_attn)
    copy_module(layer.feedforward.linear1, ref.linear1)
    copy_module(layer.feedforward.linear2, ref.linear2)
    copy_module(layer.norm1, ref.norm1)
    copy_module(layer.norm2, ref.norm2)
    x = randn(2, 5, D, seed=16, dtype=torch.float32)
    expected = ref(x)
    close(layer(x), expected, torch.float32)
    # the same layer on the explicit complete graph, one graph at a time
    edge_index = complete_edge_index(5)
    close(torch.stack([layer(x[b], edge_index) for b in range(2)]), expected, torch.float32)
    # padding and causal masks
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    close(layer(x, key_padding_mask=pad), ref(x, src_key_padding_mask=pad), torch.float32)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    close(layer(x, causal=True), ref(x, src_mask=mask, is_causal=True), torch.float32)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch_transformer_decoder_layer(norm_first):
    torch.manual_seed(17)
    ref = nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.1, batch_first=True, norm_first=norm_first)
    randomise(ref, 18).eval()
    layer = gf.GraphformerDecoderLayer(D, HEADS, FF, dropout=0.1, norm_first=norm_first).eval()
    copy_attention(layer.self_attn, ref.self_attn)
    copy_attention(layer.cross_attn, ref.multihead_attn)
    copy_module(layer.feedforward.linear1, ref.linear1)
    copy_module(layer.feedforward.linear2, ref.linear2)
    for i in (1, 2, 3):
        copy_module(getattr(layer, f"norm{i}"), getattr(ref, f"norm{i}"))
    x, memory = randn(2, 4, D, seed=19, dtype=torch.float32), randn(2, 6, D, seed=20, dtype=torch.float32)
    mask = torch.ones(4, 4, dtype=torch.bool).triu(1)  # True = may not attend
    close(layer(x, memory), ref(x, memory, tgt_mask=mask, tgt_is_causal=True), torch.float32)
    close(layer(x, memory, causal=False), ref(x, memory), torch.float32)
    memory_pad = torch.tensor([[False] * 4 + [True] * 2, [False] * 6])
    tgt_pad = torch.tensor([[False, False, False, True], [False] * 4])
    expected = ref(
        x, memory, tgt_mask=mask, tgt_is_causal=True, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=memory_pad
    )
    close(layer(x, memory, key_padding_mask=tgt_pad, memory_key_padding_mask=memory_pad), expected, torch.float32)


# ------------------------------------------------------------------ encoder
def test_encoder_equals_its_layers_in_turn_and_shares_one_sparse_graph(monkeypatch):
    encoder = gf.GraphformerEncoder(make_layer(seed=21), 3, norm=nn.LayerNorm(D)).double().eval()
    for k, layer in enumerate(encoder.layers):
        randomise(layer, 22 + k)
    assert not torch.equal(encoder.layers[0].feedforward.linear1.weight, encoder.layers[1].feedforward.linear1.weight)
    x = randn(6, D, seed=25)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 1], [1, 2, 0, 0, 1, 2, 5]])
    expected = x
    for layer in encoder.layers:
        expected = layer(expected, edge_index)
    expected = encoder.norm(expected)

    built = []
    original = SparseGraph.from_edge_index.__func__

    def counting(cls, *args, **kwargs):
        graph = original(cls, *args, **kwargs)
        built.append(graph)
        return graph

    monkeypatch.setattr(SparseGraph, "from_edge_index", classmethod(counting))
    out, records = encoder(x, edge_index, return_attention=True)
    close(out, expected)
    assert len(built) == 1  # one layout for the three layers
    assert len(records) == 3 and all(torch.equal(r.edge_index, edge_index) for r in records)
    close(encoder(x, built[0]), expected)  # a prepared SparseGraph is used as is


def test_encoder_on_complete_graphs_equals_its_layers_in_turn():
    encoder = gf.GraphformerEncoder(make_layer(seed=26, norm_first=True), 2).double().eval()
    randomise(encoder.layers[1], 27)
    x = randn(2, 5, D, seed=28)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    expected = encoder.layers[1](encoder.layers[0](x, key_padding_mask=pad), key_padding_mask=pad)
    close(encoder(x, key_padding_mask=pad), expected)


def test_encoder_with_layers_that_add_self_loops():
    encoder = gf.GraphformerEncoder(make_layer(seed=29, score="additive", self_loops="add"), 2).double().eval()
    x = randn(4, D, seed=30)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    close(encoder(x, edge_index), encoder.layers[1](encoder.layers[0](x, edge_index), edge_index))


# ------------------------------------------------------------- feed-forward
def test_feed_forward_formula():
    ff = randomise(gf.FeedForward(D, FF, dropout=0.0, activation="gelu").double(), 31)
    x = randn(3, 5, D, seed=32)
    expected = F.linear(F.gelu(F.linear(x, ff.linear1.weight, ff.linear1.bias)), ff.linear2.weight, ff.linear2.bias)
    close(ff(x), expected)


def test_conv_feed_forward_keeps_shapes_and_is_local():
    ff = randomise(gf.ConvFeedForward(D, FF, kernel_size=3, dropout=0.0).double(), 33).eval()
    x = randn(2, 7, D, seed=34)
    out = ff(x)
    assert out.shape == x.shape
    assert ff(x[0]).shape == (7, D)
    close(ff(x[0]), out[0])
    # two convolutions of width 3: position 0 reaches positions 0..2 only
    changed = x.clone()
    changed[:, 0] += 1.0
    diff = (ff(changed) - out).abs().amax(-1)
    assert (diff[:, :3] > 0).all() and not diff[:, 3:].any()


def test_conv_feed_forward_with_kernel_one_is_the_mlp():
    conv = randomise(gf.ConvFeedForward(D, FF, kernel_size=1, dropout=0.0).double(), 35)
    mlp = gf.FeedForward(D, FF, dropout=0.0).double()
    with torch.no_grad():
        mlp.linear1.weight.copy_(conv.conv1.weight.squeeze(-1))
        mlp.linear1.bias.copy_(conv.conv1.bias)
        mlp.linear2.weight.copy_(conv.conv2.weight.squeeze(-1))
        mlp.linear2.bias.copy_(conv.conv2.bias)
    x = randn(2, 5, D, seed=36)
    close(conv(x), mlp(x))


def test_conv_feed_forward_in_a_layer():
    layer = gf.GraphformerLayer(D, HEADS, feedforward=gf.ConvFeedForward(D, FF), dropout=0.0).double().eval()
    x = randn(2, 6, D, seed=37)
    out = layer(x, causal=True)
    assert out.shape == x.shape and torch.isfinite(out).all()
    h = layer_norm(layer.norm1, x + layer.self_attn(x, causal=True))
    close(out, layer_norm(layer.norm2, h + layer.feedforward(h)))


def test_conv_feed_forward_needs_an_odd_kernel():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        gf.ConvFeedForward(D, FF, kernel_size=2)


def test_layer_attn_dropout_argument():
    layer = gf.GraphformerLayer(8, 2, 16, dropout=0.2, attn_dropout=0.0)
    assert layer.self_attn.dropout == 0.0 and layer.dropout1.p == 0.2 and layer.feedforward.dropout.p == 0.2
    assert gf.GraphformerLayer(8, 2, 16, dropout=0.2).self_attn.dropout == 0.2  # default: as nn.TransformerEncoderLayer
    with pytest.raises(ValueError, match="attn_dropout"):
        gf.GraphformerLayer(8, 2, 16, attn_dropout=1.0)
    # train mode, attn_dropout=0 with dropout elsewhere off: the layer is deterministic
    layer = gf.GraphformerLayer(8, 2, 16, dropout=0.0, attn_dropout=0.0).train()
    x = torch.randn(5, 8)
    torch.testing.assert_close(layer(x), layer(x))
    noisy = gf.GraphformerLayer(8, 2, 16, dropout=0.0, attn_dropout=0.5).train()
    assert not torch.allclose(noisy(x), noisy(x))


# ------------------------------------------------------------ LocalGlobalLayer
class _OldGPSLayer(nn.Module):
    """models/graph.py's GPSLayer before LocalGlobalLayer, verbatim: the reference of norm="branch"."""

    def __init__(self, d_model, num_heads, dim_feedforward, dropout, local_score, activation="relu"):
        super().__init__()
        self.local_attn = gf.GraphAttention(d_model, num_heads, score=local_score, dropout=dropout)
        self.global_attn = gf.GraphAttention(d_model, num_heads, score="dot", dropout=dropout)
        self.feedforward = gf.FeedForward(d_model, dim_feedforward, dropout, activation)
        self.norm_local = nn.LayerNorm(d_model)
        self.norm_global = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, edge_index, batch=None, attn_bias=None):
        h_local = self.norm_local(x + self.dropout(self.local_attn(x, edge_index)))
        h_global = self.norm_global(x + self.dropout(self.global_attn(x, batch=batch, attn_bias=attn_bias)))
        h = h_local + h_global
        return self.norm_ff(h + self.dropout(self.feedforward(h)))


class _OldSparsePlusCompleteLayer(nn.Module):
    """models/forecasting.py's private layer before LocalGlobalLayer, verbatim: the reference of norm="sum"."""

    def __init__(self, d_model, num_heads, d_ff, dropout, activation, score):
        super().__init__()
        self.graph_attn = gf.GraphAttention(d_model, num_heads, score=score, dropout=dropout)
        self.complete_attn = gf.GraphAttention(d_model, num_heads, score="dot", dropout=dropout)
        self.feedforward = gf.FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x, graph, edge_attr):
        B, V, d = x.shape  # noqa: N806
        sparse = self.graph_attn(x.reshape(B * V, d), graph, edge_attr=edge_attr).view(B, V, d)
        h = self.norm1(x + self.dropout1(sparse + self.complete_attn(x)))
        return self.norm2(h + self.dropout2(self.feedforward(h)))


def _perturbed(module):
    with torch.no_grad():  # non-trivial norms and biases, so every parameter matters
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("local_score", ["dot", "gcn"])
def test_local_global_branch_norm_is_the_old_gps_layer(train, local_score):
    from graphformer.layers import LocalGlobalLayer
    from graphformer.models.graph import GPSLayer

    old = _perturbed(_OldGPSLayer(8, 2, 12, 0.2, local_score))
    new = LocalGlobalLayer(8, 2, 12, 0.2, local_score, norm="branch")
    new.load_state_dict(old.state_dict())  # the same parameter names
    gps = GPSLayer(8, 2, 12, 0.2, local_score)
    gps.load_state_dict(old.state_dict())
    x = torch.randn(9, 8)
    ei = torch.cat([complete_edge_index(4), complete_edge_index(5) + 4], 1)[:, ::2]
    batch = torch.tensor([0] * 4 + [1] * 5)
    bias = torch.randn(2, 2, 5, 5)
    outs = []
    for m in (old, new, gps):
        m.train(train)
        torch.manual_seed(7)
        outs.append(m(x, ei, batch=batch, attn_bias=bias) if m is not gps else m(x, ei, batch, bias))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    torch.testing.assert_close(outs[2], outs[0], rtol=0, atol=0)


@pytest.mark.parametrize("train", [False, True])
def test_local_global_sum_norm_is_the_old_forecaster_layer(train):
    from graphformer.layers import LocalGlobalLayer

    old = _perturbed(_OldSparsePlusCompleteLayer(8, 2, 12, 0.2, "gelu", "gcn"))
    new = LocalGlobalLayer(8, 2, 12, 0.2, "gcn", "gelu", norm="sum")
    names = {"graph_attn": "local_attn", "complete_attn": "global_attn", "norm1": "norm_attn", "norm2": "norm_ff"}
    new.load_state_dict(
        {
            names.get(k.split(".")[0], k.split(".")[0]) + k[len(k.split(".")[0]) :]: v
            for k, v in old.state_dict().items()
        }
    )
    B, V = 3, 5  # noqa: N806
    path = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 4], [1, 2, 3, 4, 0, 1, 2, 3, 4]])
    graph = SparseGraph.from_edge_index(torch.cat([path + b * V for b in range(B)], 1), B * V)
    weight = torch.rand(graph.num_edges)
    x = torch.randn(B, V, 8)
    outs = []
    for m in (old, new):
        m.train(train)
        torch.manual_seed(7)
        outs.append(m(x, graph, weight) if m is old else m(x, graph, edge_attr=weight))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)


def test_local_global_norm_placements_differ_and_check_arguments():
    from graphformer.layers import LocalGlobalLayer

    torch.manual_seed(0)
    branch = LocalGlobalLayer(8, 2, norm="branch").eval()
    torch.manual_seed(0)
    summed = LocalGlobalLayer(8, 2, norm="sum").eval()
    x, ei = torch.randn(6, 8), complete_edge_index(6)
    assert not torch.allclose(branch(x, ei), summed(x, ei))
    with pytest.raises(ValueError, match="norm must be"):
        LocalGlobalLayer(8, 2, norm="pre")
    with pytest.raises(ValueError, match="batch must be None"):
        summed(x.view(2, 3, 8), ei, batch=torch.zeros(6, dtype=torch.long))
