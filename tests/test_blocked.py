"""Tests of the blocked path: structured graphs on dense tiles compute what their edges compute.

Every structure (sliding window, dilated, causal, local+global, block-diagonal)
is run with every score that has a tiled form and compared with the sparse
path on the structure's explicit ``edge_index``: outputs, attention weights
(in ``edge_index`` order) and gradients, float32 to 1e-5. Then: inputs that
fall back to the sparse path, the ``batch=`` path, ``torch.compile``, host
reads, memory.

Legend: B batch, N nodes, E edges, H heads, d model width.
"""

import pytest
import torch
import torch.nn.functional as F

import graphformer as gf
from graphformer import structure
from graphformer.scores import FunctionScore
from test_steady_state import count_host_reads

D = 16
TOL = dict(atol=1e-5, rtol=1e-5)


def _cosine(q, k):
    return 2.0 * F.cosine_similarity(q, k, dim=-1)


STRUCTURES = {
    "window": lambda: structure.sliding_window(70, 5),
    "window-wide": lambda: structure.sliding_window(9, 40),
    "causal": lambda: structure.sliding_window(70, 5, causal=True),
    "dilated": lambda: structure.sliding_window(70, 3, dilation=4),
    "dilated-causal": lambda: structure.sliding_window(70, 3, causal=True, dilation=3),
    "local-global": lambda: structure.local_global(60, 3, [0, 17, 59]),
    "local-global-causal": lambda: structure.local_global(60, 2, 2, causal=True, dilation=2),
    "blocks": lambda: structure.block_diagonal([3, 0, 7, 7, 1, 12, 5]),
    "blocks-causal": lambda: structure.block_diagonal([3, 0, 7, 7, 1, 12, 5], causal=True),
}
SCORES = ["dot", "rotary", "additive", "gatv2", "gcn", "mean", "sum", "function"]


def make_layer(score, seed=0, **kwargs):
    torch.manual_seed(seed)
    score = FunctionScore(_cosine) if score == "function" else score
    layer = gf.GraphAttention(D, 4, score=score, **kwargs)
    with torch.no_grad():  # non-zero biases, so that they are tested too
        for p in layer.parameters():
            if p.dim() == 1:
                p.uniform_(-0.5, 0.5)
    return layer.eval()


def _grads(layer, x, out):
    params = [p for p in layer.parameters() if p.requires_grad]
    return torch.autograd.grad(
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), [x] + params, allow_unused=True
    )


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_structure_equals_its_edge_index(name, score):
    g = STRUCTURES[name]()
    layer = make_layer(score)
    assert layer._tile_kind() is not None  # these scores run on tiles, not on the fallback
    x = torch.randn(g.num_nodes, D, requires_grad=True)
    ref, ref_att = layer(x, g.edge_index, return_attention=True)
    out = layer(x, g)
    torch.testing.assert_close(out, ref, **TOL)
    out_att, att = layer(x, g, return_attention=True)
    torch.testing.assert_close(out_att, ref, **TOL)
    assert torch.equal(att.edge_index, ref_att.edge_index)
    torch.testing.assert_close(att.weights, ref_att.weights, **TOL)
    torch.testing.assert_close(att.scores, ref_att.scores, **TOL)
    for a, b in zip(_grads(layer, x, out), _grads(layer, x, ref)):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["window", "local-global", "blocks-causal"])
def test_softmax_weights_of_every_target_sum_to_one(name):
    g = STRUCTURES[name]()
    _, att = make_layer("dot")(torch.randn(g.num_nodes, D), g, return_attention=True)
    sums = torch.zeros(g.num_nodes, 4).index_add_(0, g.edge_index[1], att.weights)
    torch.testing.assert_close(sums, torch.ones_like(sums), **TOL)
    assert bool((att.weights >= 0).all())


@pytest.mark.parametrize("score", ["dot", "additive", "gcn"])
def test_batched_input_is_each_row_on_the_structure(score):
    g = structure.sliding_window(40, 4, causal=True)
    layer = make_layer(score)
    x = torch.randn(3, 40, D)
    out = layer(x, g)
    assert out.shape == (3, 40, D)
    torch.testing.assert_close(out, torch.stack([layer(row, g.edge_index) for row in x]), **TOL)
    _, att = layer(x, g, return_attention=True)
    assert att.weights.shape == (3, g.num_edges, 4)


@pytest.mark.parametrize(
    "kwargs, call",
    [
        (dict(edge_dim=3), lambda layer, x, g, e: layer(x, g, edge_attr=torch.randn(e, 3))),
        ({}, lambda layer, x, g, e: layer(x, g, attn_bias=torch.randn(e, 4))),
        (dict(self_loops="add"), lambda layer, x, g, e: layer(x, g, return_attention=True)),
    ],
)
def test_inputs_without_a_tiled_form_fall_back_to_the_sparse_path_exactly(kwargs, call):
    g = structure.local_global(30, 2, [4])
    layer = make_layer("dot", **kwargs)
    x = torch.randn(30, D)
    torch.manual_seed(1)
    out = call(layer, x, g, g.num_edges)
    torch.manual_seed(1)
    ref = call(layer, x, g.edge_index, g.num_edges)
    out, ref = (out[0], ref[0]) if isinstance(out, tuple) else (out, ref)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("self_loops", ["add", "remaining"])
def test_self_loops_leave_a_structure_unchanged(self_loops):
    g = structure.sliding_window(30, 3)  # every structure holds all self-loops
    layer = make_layer("additive", self_loops=self_loops)
    x = torch.randn(30, D)
    torch.testing.assert_close(layer(x, g), layer(x, g.edge_index), **TOL)


def test_score_without_a_tiled_form_runs_on_the_sparse_path():
    class Shifted(gf.scores.DotScore):
        def dense(self, q, k, mask, bipartite=False):
            return super().dense(q, k, mask) + 1.0

        def sparse(self, q, k, graph, edge):
            return super().sparse(q, k, graph, edge) + 1.0

    torch.manual_seed(0)
    layer = gf.GraphAttention(D, 4, score=Shifted(4, D // 4))
    assert layer._tile_kind() is None
    g = structure.sliding_window(25, 2)
    x = torch.randn(25, D)
    assert torch.equal(layer(x, g), layer(x, g.sparse_graph))


def test_layers_and_encoder_accept_a_structure():
    torch.manual_seed(0)
    layer = gf.GraphformerLayer(D, 4, 32, dropout=0.0).eval()
    encoder = gf.GraphformerEncoder(layer, 2).eval()
    g = structure.local_global(50, 4, 1)
    x = torch.randn(50, D)
    torch.testing.assert_close(layer(x, g), layer(x, g.edge_index), **TOL)
    torch.testing.assert_close(encoder(x, g), encoder(x, g.edge_index), **TOL)


def test_wrong_number_of_nodes_is_rejected():
    with pytest.raises(ValueError, match="the structure has 10 nodes but x has 12"):
        make_layer("dot")(torch.randn(12, D), structure.sliding_window(10, 2))
    with pytest.raises(ValueError, match="build it with causal=True"):
        make_layer("dot")(torch.randn(10, D), structure.sliding_window(10, 2), causal=True)


def test_empty_structure():
    layer = make_layer("dot")
    for g in (structure.sliding_window(0, 3), structure.block_diagonal([0, 0])):
        out, att = layer(torch.randn(0, D), g, return_attention=True)
        assert out.shape == (0, D) and att.weights.shape == (0, 4)


# ------------------------------------------------------------------ batch=
def _graphs(seed=0, count=9):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 9, (count,), generator=gen)
    sizes[3] = 0  # an empty graph id
    return sizes, torch.repeat_interleave(torch.arange(count), sizes)


@pytest.mark.parametrize("score", ["dot", "rotary", "additive", "gcn", "mean"])
@pytest.mark.parametrize("causal", [False, True])
def test_batch_equals_the_padded_path_and_the_prepared_structure(score, causal):
    sizes, batch = _graphs()
    layer = make_layer(score)
    x = torch.randn(batch.numel(), D)
    padded = layer._padded_complete(x, x, batch, False, causal, None, False)[0]
    torch.testing.assert_close(layer(x, batch=batch, causal=causal), padded, **TOL)
    g = structure.block_diagonal(batch=batch, causal=causal)
    torch.testing.assert_close(layer(x, batch=g), padded, **TOL)
    torch.testing.assert_close(layer(x, g), padded, **TOL)
    torch.testing.assert_close(layer._masked_complete(x, batch, causal), padded, **TOL)


@pytest.mark.parametrize("case", ["prepared", "raw batch", "window"])
def test_compiles_without_graph_breaks_and_equals_eager(case):
    torch._dynamo.reset()
    sizes, batch = _graphs()
    layer = make_layer("dot")
    x = torch.randn(batch.numel(), D)
    g = structure.block_diagonal(batch=batch, causal=True)
    w = structure.local_global(batch.numel(), 3, 2)
    fn = {
        "prepared": lambda t: layer(t, batch=g),
        "raw batch": lambda t: layer(t, batch=batch, causal=True),
        "window": lambda t: layer(t, w),
    }[case]
    explained = torch._dynamo.explain(fn)(x)
    assert explained.graph_break_count == 0
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(fn, fullgraph=True)(x), fn(x), **TOL)


@pytest.mark.parametrize("name", ["window", "dilated", "local-global", "blocks-causal"])
@pytest.mark.parametrize("score", ["dot", "additive", "gcn"])
def test_prepared_structure_makes_no_host_reads(name, score):
    g = STRUCTURES[name]()
    layer = make_layer(score)
    x = torch.randn(g.num_nodes, D, requires_grad=True)
    layer(x, g, return_attention=True)  # lazily built layouts (edges, degrees) are built before counting
    with count_host_reads() as reads:
        out = layer(x, g)
        out.sum().backward()
        _, att = layer(x, g, return_attention=True)
    assert not reads, dict(reads)
    with count_host_reads() as reads:  # the counter sees the reads it is meant to see
        layer(x, g.edge_index)
    assert reads


def test_batch_with_a_prepared_block_diagonal_makes_no_host_reads():
    _, batch = _graphs()
    g = structure.block_diagonal(batch=batch, causal=True)
    layer = make_layer("dot")
    x = torch.randn(batch.numel(), D, requires_grad=True)
    with count_host_reads() as reads:
        layer(x, batch=g, causal=True).sum().backward()
    assert not reads, dict(reads)


def _saved_bytes(fn):
    """Bytes of the tensors autograd keeps for the backward pass of fn()."""
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(total)


def test_memory_grows_linearly_in_the_number_of_nodes():
    layer = make_layer("dot")
    saved = {}
    for n in (1024, 4096):
        g = structure.sliding_window(n, 32)
        x = torch.randn(n, D, requires_grad=True)
        saved[n] = _saved_bytes(lambda x=x, g=g: layer(x, g))
    assert saved[4096] <= 4.5 * saved[1024]  # O(N w): 4x the nodes, about 4x the memory
    assert saved[4096] < 4096 * 4096 * 4 / 8  # far below one N x N float matrix


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("return_attention", [False, True])
def test_bfloat16_stays_close_to_float64(score, return_attention):
    g = structure.local_global(200, 8, 2)
    layer = make_layer(score)
    x = torch.randn(g.num_nodes, D)
    ref = layer.double()(x.double(), g.edge_index)
    out = layer.to(torch.bfloat16)(x.to(torch.bfloat16), g, return_attention=return_attention)
    out = out[0] if return_attention else out
    assert out.dtype == torch.bfloat16
    assert (out.double() - ref).abs().max() <= 0.05 * ref.abs().max()
