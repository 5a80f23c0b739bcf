"""Tests of GraphAttention: two execution paths, one function.

The sparse path (``edge_index``) and the dense path (complete, causal and
complete bipartite graphs) are compared with each other on random graphs,
and both with references written here from the formulas: explicit softmax
attention, GCN as D^-1/2 (A+I) D^-1/2 X W, the neighbour mean, additive
biases. Edge cases (isolated nodes, empty graphs, padding, duplicates) and bad
input are covered at the end.

Legend: B batch, N nodes (M targets), E edges, H heads, C channels per head,
d model width.
"""

import math
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import graphformer as gf
from graphformer import ops
from graphformer.structure import (
    SparseGraph,
    add_self_loops,
    bipartite_edge_index,
    causal_edge_index,
    complete_edge_index,
)


def _cosine(q, k):
    """A user-defined score: scaled cosine similarity of query and key."""
    return 2.0 * F.cosine_similarity(q, k, dim=-1)


@pytest.fixture(autouse=True, scope="module")
def _test_scores():
    """The user-defined score of these tests, registered only while they run."""
    with gf.registered_score("test_cosine", _cosine):
        yield


SOFTMAX_SCORES = ["dot", "additive", "gatv2", "test_cosine"]
SCORES = SOFTMAX_SCORES + ["gcn", "mean"]
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
FAST = settings(max_examples=20, deadline=None)

seeds = st.integers(0, 2**16)
dtypes = st.sampled_from([torch.float32, torch.float64])


# ------------------------------------------------------------------ helpers
def make_layer(score="dot", heads=2, head_dim=3, dtype=torch.float64, seed=0, **kwargs) -> gf.GraphAttention:
    """A layer in eval mode with random weights and random (non-zero) biases."""
    torch.manual_seed(seed)
    layer = gf.GraphAttention(heads * head_dim, heads, score=score, **kwargs).to(dtype).eval()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return layer


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def shuffled(edge_index, seed=0):
    """The same edges in a random order."""
    return edge_index[:, torch.randperm(edge_index.size(1), generator=torch.Generator().manual_seed(seed))]


@st.composite
def graphs(draw, min_nodes=1, max_nodes=6, max_edges=18, self_loops=True):
    """(num_nodes, edge_index [2, E]): random directed multigraphs, isolated nodes included."""
    n = draw(st.integers(min_nodes, max_nodes))
    if n == 0:
        return 0, torch.zeros(2, 0, dtype=torch.long)
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=max_edges))
    if not self_loops:
        edges = [(j, i) for j, i in edges if i != j]
    return n, torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()


layer_options = st.fixed_dictionaries(
    {
        "concat": st.booleans(),
        "out_proj": st.booleans(),
        "root_weight": st.booleans(),
    }
)


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOL[dtype])


def in_degree(edge_index, n):
    return torch.bincount(edge_index[1], minlength=n)


@contextmanager
def csr_kernels(enabled: bool):
    """Force the torch.sparse CSR kernels (or the gather/scatter path) of the sparse path whatever the size."""
    old = ops._SMALL
    ops._SMALL = 0 if enabled else 1 << 62
    try:
        yield
    finally:
        ops._SMALL = old


# ============================================ the two paths are one function
@FAST
@given(
    score=st.sampled_from(SCORES),
    n=st.integers(1, 6),
    batch=st.integers(0, 2),
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 3),
    options=layer_options,
    dtype=dtypes,
    csr=st.booleans(),
    seed=seeds,
)
def test_sparse_on_complete_graph_equals_dense(score, n, batch, heads, head_dim, options, dtype, csr, seed):
    layer = make_layer(score, heads, head_dim, dtype, seed, **options)
    d = heads * head_dim
    edge_index = shuffled(complete_edge_index(n), seed)
    if batch == 0:  # one unbatched graph, x [N, d]
        x = randn(n, d, seed=seed, dtype=dtype)
        with csr_kernels(csr):
            sparse = layer(x, edge_index)
        assert_close(sparse, layer(x), dtype)
    else:
        x = randn(batch, n, d, seed=seed, dtype=dtype)
        dense = layer(x)
        assert dense.shape == (batch, n, layer.out_proj.out_features if options["out_proj"] else layer.out_dim)
        with csr_kernels(csr):
            sparse = torch.stack([layer(x[b], edge_index) for b in range(batch)])
        assert_close(sparse, dense, dtype)


@FAST
@given(score=st.sampled_from(SCORES), n=st.integers(1, 6), heads=st.integers(1, 3), dtype=dtypes, seed=seeds)
def test_causal_dense_equals_sparse_causal_graph(score, n, heads, dtype, seed):
    layer = make_layer(score, heads, 2, dtype, seed)
    x = randn(2, n, 2 * heads, seed=seed, dtype=dtype)
    dense = layer(x, causal=True)
    edge_index = shuffled(causal_edge_index(n), seed)
    assert_close(torch.stack([layer(x[b], edge_index) for b in range(2)]), dense, dtype)
    if score != "gcn":  # the last position sees everything (gcn's weights also read the sources' degrees)
        assert_close(dense[:, -1], layer(x)[:, -1], dtype)


@FAST
@given(
    score=st.sampled_from(SCORES),
    num_src=st.integers(1, 5),
    num_dst=st.integers(1, 5),
    heads=st.integers(1, 2),
    kdim=st.sampled_from([None, 3]),
    dtype=dtypes,
    seed=seeds,
)
def test_cross_attention_equals_sparse_complete_bipartite_graph(score, num_src, num_dst, heads, kdim, dtype, seed):
    layer = make_layer(score, heads, 2, dtype, seed, kdim=kdim)
    x_src = randn(2, num_src, kdim or 2 * heads, seed=seed, dtype=dtype)
    x_dst = randn(2, num_dst, 2 * heads, seed=seed + 1, dtype=dtype)
    dense = layer((x_src, x_dst))
    assert dense.shape == (2, num_dst, 2 * heads)
    edge_index = shuffled(bipartite_edge_index(num_src, num_dst), seed)
    sparse = torch.stack([layer((x_src[b], x_dst[b]), edge_index) for b in range(2)])
    assert_close(sparse, dense, dtype)
    assert_close(layer((x_src[0], x_dst[0])), dense[0], dtype)  # unbatched pair


@FAST
@given(
    score=st.sampled_from(SCORES), n=st.integers(1, 6), causal=st.booleans(), data=st.data(), dtype=dtypes, seed=seeds
)
def test_key_padding_mask_equals_dropping_the_padded_nodes(score, n, causal, data, dtype, seed):
    pad = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=2, max_size=2)))
    layer = make_layer(score, 2, 2, dtype, seed)
    x = randn(2, n, 4, seed=seed, dtype=dtype)
    out = layer(x, causal=causal, key_padding_mask=pad)
    assert torch.isfinite(out).all()
    for b in range(2):
        keep = ~pad[b]
        # the same graph written as edges: every kept source j -> every target i (j <= i if causal)
        edges = causal_edge_index(n) if causal else complete_edge_index(n)
        edges = edges[:, keep[edges[0]]]
        assert_close(out[b], layer(x[b], edges), dtype)
        if not causal and keep.any():
            # the kept nodes among themselves: a smaller complete graph
            assert_close(out[b, keep], layer(x[b, keep]), dtype)
            if score in SOFTMAX_SCORES:  # every node listens to the kept nodes only
                assert_close(out[b], layer((x[b, keep], x[b])), dtype)


@FAST
@given(
    score=st.sampled_from(SCORES), graph=graphs(), self_loops=st.sampled_from([None, "add", "remaining"]), seed=seeds
)
def test_permuting_nodes_permutes_sparse_outputs(score, graph, self_loops, seed):
    n, edge_index = graph
    layer = make_layer(score, 2, 2, torch.float64, seed, self_loops=self_loops)
    x = randn(n, 4, seed=seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # new node k is old node perm[k]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    out = layer(x, edge_index)
    assert_close(layer(x[perm], shuffled(inverse[edge_index], seed)), out[perm], torch.float64)


@FAST
@given(score=st.sampled_from(SCORES), n=st.integers(1, 6), seed=seeds)
def test_permuting_nodes_permutes_dense_outputs(score, n, seed):
    layer = make_layer(score, 2, 2, torch.float64, seed)
    x = randn(2, n, 4, seed=seed)
    pad = torch.rand(2, n, generator=torch.Generator().manual_seed(seed)) < 0.3
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    out = layer(x, key_padding_mask=pad)
    assert_close(layer(x[:, perm], key_padding_mask=pad[:, perm]), out[:, perm], torch.float64)


@FAST
@given(
    score=st.sampled_from(SCORES),
    parts=st.lists(graphs(min_nodes=0, max_nodes=4, max_edges=8), min_size=1, max_size=4),
    seed=seeds,
)
def test_pyg_style_batch_equals_graphs_one_by_one(score, parts, seed):
    layer = make_layer(score, 2, 2, torch.float64, seed)
    xs = [randn(n, 4, seed=seed + g) for g, (n, _) in enumerate(parts)]
    offsets = torch.tensor([0] + [n for n, _ in parts]).cumsum(0)
    x = torch.cat(xs)
    edge_index = torch.cat([ei + offsets[g] for g, (_, ei) in enumerate(parts)], dim=1)
    batch = torch.repeat_interleave(torch.arange(len(parts)), torch.tensor([n for n, _ in parts]))
    one_by_one = torch.cat([layer(xg, ei) for xg, (_, ei) in zip(xs, parts)])
    assert_close(layer(x, edge_index), one_by_one, torch.float64)
    assert_close(layer(x, edge_index, batch=batch), one_by_one, torch.float64)


@FAST
@given(
    score=st.sampled_from(SCORES),
    sizes=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    causal=st.booleans(),
    seed=seeds,
)
def test_batch_without_edges_is_one_complete_graph_per_graph(score, sizes, causal, seed):
    layer = make_layer(score, 2, 2, torch.float64, seed)
    xs = [randn(n, 4, seed=seed + g) for g, n in enumerate(sizes)]
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    out = layer(torch.cat(xs), batch=batch, causal=causal)
    assert_close(out, torch.cat([layer(xg, causal=causal) for xg in xs]), torch.float64)


@FAST
@given(
    score=st.sampled_from(SOFTMAX_SCORES + ["mean"]),
    src_sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    dst_extra=st.lists(st.integers(0, 2), min_size=3, max_size=3),
    seed=seeds,
)
def test_bipartite_batch_equals_cross_attention_one_by_one(score, src_sizes, dst_extra, seed):
    layer = make_layer(score, 2, 2, torch.float64, seed)
    dst_sizes = [1 + e for e in dst_extra[: len(src_sizes)]]
    x_src = [randn(n, 4, seed=seed + g) for g, n in enumerate(src_sizes)]
    x_dst = [randn(n, 4, seed=seed + 10 + g) for g, n in enumerate(dst_sizes)]
    ids = torch.arange(len(src_sizes))
    batch = tuple(torch.repeat_interleave(ids, torch.tensor(sizes)) for sizes in (src_sizes, dst_sizes))
    out = layer((torch.cat(x_src), torch.cat(x_dst)), batch=batch)
    assert_close(out, torch.cat([layer((s, t)) for s, t in zip(x_src, x_dst)]), torch.float64)


@pytest.mark.parametrize("score", SOFTMAX_SCORES + ["mean"])
def test_bipartite_batch_with_an_empty_side(score):
    """No source nodes at all: every target receives nothing (the layer's output of a zero message, no NaN);
    no target nodes: an empty output."""
    layer = make_layer(score, 2, 2, torch.float64)
    x_dst, batch_dst = randn(5, 4, seed=1), torch.tensor([0, 0, 1, 1, 1])
    no_src = (randn(0, 4, seed=2), torch.zeros(0, dtype=torch.long))
    out = layer((no_src[0], x_dst), batch=(no_src[1], batch_dst))
    nothing = layer((randn(1, 4, seed=3), x_dst), torch.zeros(2, 0, dtype=torch.long))  # the same targets, no edges
    assert out.shape == (5, 4) and torch.isfinite(out).all()
    assert_close(out, nothing, torch.float64)
    empty = layer((randn(3, 4, seed=4), randn(0, 4, seed=5)), batch=(torch.tensor([0, 0, 1]), no_src[1]))
    assert empty.shape == (0, 4)


@pytest.mark.parametrize("dense", [True, False])
def test_gcn_bipartite_batch_equals_graphs_one_by_one(dense):
    layer = make_layer("gcn", 1, 2, torch.float64)
    x_src, x_dst = [randn(1, 2, seed=1), randn(2, 2, seed=2)], [randn(2, 2, seed=3), randn(1, 2, seed=4)]
    one_by_one = torch.cat([layer((s, t)) for s, t in zip(x_src, x_dst)])
    pair = (torch.cat(x_src), torch.cat(x_dst))
    if dense:
        out = layer(pair, batch=(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])))
    else:
        out = layer(pair, torch.tensor([[0, 0, 1, 2], [0, 1, 2, 2]]))
    assert_close(out, one_by_one, torch.float64)


# ======================================================= attention weights
def segment_sum(values, index, n):
    return values.new_zeros(n, *values.shape[1:]).index_add_(0, index, values)


@FAST
@given(
    score=st.sampled_from(SCORES),
    graph=graphs(),
    heads=st.integers(1, 3),
    self_loops=st.sampled_from([None, "add"]),
    seed=seeds,
)
def test_sparse_attention_weights_are_normalised_per_target(score, graph, heads, self_loops, seed):
    n, edge_index = graph
    layer = make_layer(score, heads, 2, torch.float64, seed, self_loops=self_loops)
    x = randn(n, 2 * heads, seed=seed)
    out, att = layer(x, edge_index, return_attention=True)
    expected_edges = edge_index if self_loops is None else add_self_loops(edge_index, n)[0]
    assert torch.equal(att.edge_index, expected_edges)
    E = expected_edges.size(1)
    assert att.weights.shape == (E, heads) and att.scores.shape == (E, heads)
    assert ((att.weights >= 0) & (att.weights <= 1)).all()
    has_edges = in_degree(expected_edges, n) > 0
    totals = segment_sum(att.weights, expected_edges[1], n)
    if score in SOFTMAX_SCORES + ["mean"]:
        assert_close(totals[has_edges], torch.ones_like(totals[has_edges]), torch.float64)
    assert not totals[~has_edges].any()
    if score in SOFTMAX_SCORES and E:  # the weights are the per-target softmax of the returned scores
        ex = (att.scores - att.scores.max()).exp()
        assert_close(att.weights, ex / segment_sum(ex, expected_edges[1], n)[expected_edges[1]], torch.float64)
    else:
        assert torch.equal(att.weights, att.scores)
    assert_close(out, layer(x, expected_edges) if self_loops else layer(x, edge_index), torch.float64)


@FAST
@given(
    score=st.sampled_from(SCORES),
    n=st.integers(1, 5),
    heads=st.integers(1, 3),
    causal=st.booleans(),
    dtype=dtypes,
    seed=seeds,
)
def test_sparse_weights_match_dense_weights_on_the_complete_graph(score, n, heads, causal, dtype, seed):
    layer = make_layer(score, heads, 2, dtype, seed)
    x = randn(3, n, 2 * heads, seed=seed, dtype=dtype)
    out, att = layer(x, causal=causal, return_attention=True)
    assert att.weights.shape == (3, heads, n, n) and att.edge_index is None
    assert_close(out, layer(x, causal=causal), dtype)  # the explicit path equals the fused kernel
    if score in SOFTMAX_SCORES + ["mean"]:
        assert_close(att.weights.sum(-1), torch.ones(3, heads, n, dtype=dtype), dtype)
    if causal:
        assert not att.weights.triu(1).any()
    edge_index = shuffled(causal_edge_index(n) if causal else complete_edge_index(n), seed)
    j, i = edge_index
    for b in range(3):
        _, sparse = layer(x[b], edge_index, return_attention=True)
        assert torch.equal(sparse.edge_index, edge_index)
        assert_close(sparse.weights, att.weights[b][:, i, j].t(), dtype)  # [E, H] in the given edge order
        assert_close(sparse.scores, att.scores.expand(3, heads, n, n)[b][:, i, j].t(), dtype)
    _, unbatched = layer(x[0], causal=causal, return_attention=True)
    assert_close(unbatched.weights, att.weights[0], dtype)


# ================================================================ gradients
@FAST
@given(score=st.sampled_from(SCORES), n=st.integers(1, 5), causal=st.booleans(), csr=st.booleans(), seed=seeds)
def test_gradients_of_both_paths_agree(score, n, causal, csr, seed):
    layer = make_layer(score, 2, 2, torch.float64, seed, root_weight=True)
    x = randn(n, 4, seed=seed).requires_grad_()
    w = randn(n, 4, seed=seed + 1)
    params = [p for p in layer.parameters()]
    edge_index = shuffled(causal_edge_index(n) if causal else complete_edge_index(n), seed)
    grads_dense = torch.autograd.grad((layer(x, causal=causal) * w).sum(), [x] + params, allow_unused=True)
    with csr_kernels(csr):
        grads_sparse = torch.autograd.grad((layer(x, edge_index) * w).sum(), [x] + params, allow_unused=True)
    for gd, gs in zip(grads_dense, grads_sparse):
        assert (gd is None) == (gs is None)
        if gd is not None:
            assert_close(gs, gd, torch.float64)


@pytest.mark.parametrize("csr", [False, True], ids=["gather", "csr"])
@pytest.mark.parametrize("score", SCORES)
def test_gradcheck_of_the_sparse_layer(score, csr):
    layer = make_layer(score, 2, 2, torch.float64, seed=1)
    edge_index = torch.tensor([[3, 1, 0, 1, 2, 0], [2, 2, 0, 2, 1, 3]])  # unsorted, a duplicate, node 4 isolated
    x = randn(5, 4, seed=2).requires_grad_()
    with csr_kernels(csr):
        assert torch.autograd.gradcheck(lambda x: layer(x, edge_index), (x,))


# ============================================================== references
def test_dense_dot_equals_explicit_softmax_attention():
    layer = make_layer("dot", heads=2, head_dim=3, seed=3)
    x = randn(2, 5, 6, seed=4)
    H, C = 2, 3

    def heads(t):  # [B, N, H*C] -> [B, H, N, C]
        return t.view(2, 5, H, C).transpose(1, 2)

    q, k, v = heads(layer.q_proj(x)), heads(layer.k_proj(x)), heads(layer.v_proj(x))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C), dim=-1)  # [B, H, N, N]
    expected = layer.out_proj((weights @ v).transpose(1, 2).reshape(2, 5, H * C))
    assert_close(layer(x), expected, torch.float64)
    _, att = layer(x, return_attention=True)
    assert_close(att.weights, weights, torch.float64)
    # with a causal mask: -inf above the diagonal
    causal = torch.full((5, 5), float("-inf"), dtype=torch.float64).triu(1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C) + causal, dim=-1)
    expected = layer.out_proj((weights @ v).transpose(1, 2).reshape(2, 5, H * C))
    assert_close(layer(x, causal=True), expected, torch.float64)


def test_dense_dot_equals_multihead_attention():
    torch.manual_seed(5)
    mha = torch.nn.MultiheadAttention(6, 2, batch_first=True, dtype=torch.float64).eval()
    layer = make_layer("dot", heads=2, head_dim=3)
    with torch.no_grad():
        for lin, w, b in zip(
            (layer.q_proj, layer.k_proj, layer.v_proj), mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3)
        ):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layer.out_proj.load_state_dict(mha.out_proj.state_dict())
    x = randn(2, 5, 6, seed=6)
    pad = torch.tensor([[False, False, False, True, True], [False] * 5])
    assert_close(layer(x, key_padding_mask=pad), mha(x, x, x, key_padding_mask=pad)[0], torch.float64)


def dense_gcn(edge_index, n, weight=None):
    """D^-1/2 (A + I) D^-1/2 with A[i, j] the (summed) weight of edges j -> i and D its row sums."""
    a = torch.zeros(n, n, dtype=torch.float64)
    w = torch.ones(edge_index.size(1), dtype=torch.float64) if weight is None else weight
    a.index_put_((edge_index[1], edge_index[0]), w, accumulate=True)
    a = a + torch.eye(n, dtype=torch.float64)
    dinv = a.sum(1).rsqrt()
    return dinv[:, None] * a * dinv[None, :]


@FAST
@given(graph=graphs(self_loops=False), heads=st.integers(1, 2), weighted=st.booleans(), seed=seeds)
def test_gcn_score_equals_normalised_adjacency_product(graph, heads, weighted, seed):
    n, edge_index = graph
    layer = make_layer("gcn", heads, 3, torch.float64, seed, out_proj=False, concat=False, self_loops="remaining")
    x = randn(n, 3 * heads, seed=seed)
    weight = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.5 if weighted else None
    out = layer(x, edge_index, edge_attr=weight)
    xw = layer.v_proj(x).view(n, heads, 3).mean(1)  # concat=False averages the heads
    assert_close(out, dense_gcn(edge_index, n, weight) @ xw + layer.bias, torch.float64)


@FAST
@given(graph=graphs(), seed=seeds)
def test_mean_score_equals_neighbour_mean(graph, seed):
    n, edge_index = graph
    layer = make_layer("mean", 1, 4, torch.float64, seed, out_proj=False, bias=False)
    x = randn(n, 4, seed=seed)
    xw = layer.v_proj(x)
    expected = torch.zeros(n, 4, dtype=torch.float64)
    for i in range(n):
        sources = edge_index[0, edge_index[1] == i]  # duplicates listed (and counted) twice
        if sources.numel():
            expected[i] = xw[sources].mean(0)
    assert_close(layer(x, edge_index), expected, torch.float64)


def explicit_attention(layer, x, bias):
    """softmax(q k^T / sqrt(C) + bias) v for a 'dot' layer on x [B, N, d]; bias broadcast to [B, H, N, N]."""
    B, N, _ = x.shape
    H, C = layer.num_heads, layer.head_dim

    def heads(t):
        return t.view(B, N, H, C).transpose(1, 2)

    q, k, v = heads(layer.q_proj(x)), heads(layer.k_proj(x)), heads(layer.v_proj(x))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(C) + bias, dim=-1)
    return layer.out_proj((weights @ v).transpose(1, 2).reshape(B, N, H * C))


@pytest.mark.parametrize("shape", [(2, 2, 4, 4), (4, 4), (2, 1, 4, 4), (1, 2, 4, 4)])
def test_dense_attn_bias_is_added_to_the_scores(shape):
    layer = make_layer("dot", heads=2, head_dim=2, seed=7)
    x = randn(2, 4, 4, seed=8)
    bias = randn(*shape, seed=9)
    expected = explicit_attention(layer, x, bias)
    assert_close(layer(x, attn_bias=bias), expected, torch.float64)
    out, att = layer(x, attn_bias=bias, return_attention=True)
    assert_close(out, expected, torch.float64)


@pytest.mark.parametrize("score", SOFTMAX_SCORES)
@pytest.mark.parametrize("per_head", [False, True])
def test_sparse_attn_bias_equals_dense_attn_bias(score, per_head):
    layer = make_layer(score, heads=2, head_dim=2, seed=10)
    x = randn(5, 4, seed=11)
    edge_index = shuffled(complete_edge_index(5), seed=12)
    j, i = edge_index
    bias = randn(edge_index.size(1), 2, seed=13) if per_head else randn(edge_index.size(1), seed=13)
    dense_bias = torch.zeros(2, 5, 5, dtype=torch.float64)
    dense_bias[:, i, j] = bias.t() if per_head else bias
    expected = layer(x, attn_bias=dense_bias)
    assert_close(layer(x, edge_index, attn_bias=bias), expected, torch.float64)
    if score == "dot":
        assert_close(expected, explicit_attention(layer, x[None], dense_bias)[0], torch.float64)
    _, att = layer(x, edge_index, attn_bias=bias, return_attention=True)
    _, plain = layer(x, edge_index, return_attention=True)
    assert_close(att.scores, plain.scores + (bias if per_head else bias[:, None]), torch.float64)


@pytest.mark.parametrize("score", ["dot", "rotary", "additive"])
@pytest.mark.parametrize("batched", [False, True])
def test_causal_attn_bias_equals_sparse_causal_graph_with_that_bias(score, batched):
    """causal=True with a dense attn_bias: the fused kernel gets one mask, the bias with -inf above the diagonal."""
    layer = make_layer(score, heads=2, head_dim=2, seed=14)
    x = randn(5, 4, seed=15)
    bias = randn(2, 5, 5, seed=16)
    edge_index = causal_edge_index(5)
    j, i = edge_index
    expected = layer(x, edge_index, attn_bias=bias[:, i, j].t())
    dense_x = x.expand(3, 5, 4) if batched else x
    out = layer(dense_x, causal=True, attn_bias=bias)
    assert_close(out, expected.expand_as(out), torch.float64)
    out, att = layer(dense_x, causal=True, attn_bias=bias, return_attention=True)
    assert_close(out, expected.expand_as(out), torch.float64)
    assert not att.weights.triu(1).any()


def test_minus_inf_bias_removes_edges():
    """A -inf bias on an edge is the graph without that edge; a row of -inf gets a zero message."""
    layer = make_layer("dot", heads=2, head_dim=2, seed=14)
    x = randn(4, 4, seed=15)
    edge_index = complete_edge_index(4)
    drop = (edge_index[1] == 0) | ((edge_index[0] == 2) & (edge_index[1] == 3))
    bias = torch.zeros(edge_index.size(1), dtype=torch.float64).masked_fill(drop, float("-inf"))
    expected = layer(x, edge_index[:, ~drop])
    assert_close(layer(x, edge_index, attn_bias=bias), expected, torch.float64)
    dense_bias = torch.zeros(4, 4, dtype=torch.float64)
    dense_bias[edge_index[1], edge_index[0]] = bias
    assert_close(layer(x, attn_bias=dense_bias), expected, torch.float64)
    assert_close(expected[0], layer.out_proj.bias, torch.float64)


# =============================================================== edge cases
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("out_proj", [True, False])
def test_nodes_without_incoming_edges_get_a_zero_message(score, out_proj):
    layer = make_layer(score, 2, 2, torch.float64, seed=16, out_proj=out_proj)
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]])  # nodes 3 and 4 receive nothing
    x = randn(5, 4, seed=17).requires_grad_()
    out = layer(x, edge_index)
    bias = layer.out_proj.bias if out_proj else layer.bias
    assert_close(out[3:], bias.expand(2, -1), torch.float64)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()
    assert not grad[3].any()  # node 3 sends and receives nothing


@pytest.mark.parametrize("score", SCORES)
def test_empty_graphs(score):
    layer = make_layer(score, 2, 2, torch.float64, seed=18, root_weight=True)
    x = randn(3, 4, seed=19).requires_grad_()
    no_edges = torch.zeros(2, 0, dtype=torch.long)
    out, att = layer(x, no_edges, return_attention=True)
    zero_message = layer.out_proj(layer.root(x))
    assert_close(out, zero_message, torch.float64)
    assert att.weights.shape == (0, 2)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()
    # zero nodes: sparse, dense, batched and cross-attention forms
    empty = randn(0, 4, seed=20)
    assert layer(empty, no_edges).shape == (0, 4)
    assert layer(empty).shape == (0, 4)
    assert layer(randn(2, 0, 4)).shape == (2, 0, 4)
    assert layer(randn(0, 3, 4)).shape == (0, 3, 4)
    assert layer(empty, batch=torch.zeros(0, dtype=torch.long)).shape == (0, 4)
    _, att = layer(randn(2, 0, 4), return_attention=True)
    assert att.weights.shape == (2, 2, 0, 0)
    # targets without sources: cross-attention to an empty memory gives a zero message
    assert_close(layer((randn(1, 0, 4), x[None].detach())), layer.out_proj(layer.root(x[None])), torch.float64)


def test_duplicate_edges_count_twice_in_the_softmax():
    """Listing an edge twice equals giving it a bias of log 2 (as in PyG)."""
    layer = make_layer("additive", 2, 2, torch.float64, seed=21)
    x = randn(4, 4, seed=22)
    edge_index = torch.tensor([[0, 1, 2, 3, 1], [1, 1, 1, 0, 0]])
    doubled = torch.cat([edge_index, edge_index[:, :1]], dim=1)  # 0 -> 1 twice
    bias = torch.zeros(5, dtype=torch.float64)
    bias[0] = math.log(2.0)
    assert_close(layer(x, doubled), layer(x, edge_index, attn_bias=bias), torch.float64)
    _, att = layer(x, doubled, return_attention=True)
    torch.testing.assert_close(att.weights[0], att.weights[-1])


@pytest.mark.parametrize("score", ["gcn", "mean"])
def test_duplicate_edges_count_twice_in_fixed_weights(score):
    layer = make_layer(score, 1, 3, torch.float64, seed=23)
    x = randn(4, 3, seed=24)
    edge_index = torch.tensor([[0, 1, 2, 3, 1], [1, 1, 1, 0, 0]])
    doubled = torch.cat([edge_index, edge_index[:, :1]], dim=1)
    weight = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert_close(layer(x, doubled), layer(x, edge_index, edge_attr=weight), torch.float64)


def test_self_loops_are_ordinary_edges():
    layer = make_layer("dot", 2, 2, torch.float64, seed=25)
    x = randn(3, 4, seed=26)
    loops = torch.tensor([[0, 1, 2], [0, 1, 2]])
    # each node attends only to itself: softmax over one edge is 1, the message is its own value
    expected = layer.out_proj(layer.v_proj(x))
    assert_close(layer(x, loops), expected, torch.float64)
    # self_loops="add" on a graph without edges gives the same graph
    with_loops = make_layer("dot", 2, 2, torch.float64, seed=25, self_loops="add")
    assert_close(with_loops(x, torch.zeros(2, 0, dtype=torch.long)), expected, torch.float64)


@pytest.mark.parametrize("score", SCORES)
def test_fully_padded_rows_give_zero_messages_and_finite_gradients(score):
    layer = make_layer(score, 2, 2, torch.float64, seed=27)
    x = randn(2, 4, 4, seed=28).requires_grad_()
    pad = torch.tensor([[True] * 4, [False, False, True, True]])
    out, att = layer(x, key_padding_mask=pad, return_attention=True)
    assert torch.isfinite(out).all()
    assert_close(out[0], layer.out_proj.bias.expand(4, -1), torch.float64)
    assert not att.weights[0].any()
    assert not att.weights[1][..., 2:].any()
    assert_close(layer(x, key_padding_mask=pad), out, torch.float64)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all() and not grad[0].any()
    # causal + padding: the first position's only key is padded
    first_padded = torch.tensor([[True, False, False, False]] * 2)
    out = layer(x, causal=True, key_padding_mask=first_padded)
    assert_close(out[:, 0], layer.out_proj.bias.expand(2, -1), torch.float64)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("sparse", [False, True])
def test_dropout_acts_in_train_mode_only(sparse):
    layer = make_layer("dot", 2, 4, torch.float64, seed=29, dropout=0.5)
    reference = make_layer("dot", 2, 4, torch.float64, seed=29)
    reference.load_state_dict(layer.state_dict())
    x = randn(6, 8, seed=30)
    args = (x, complete_edge_index(6)) if sparse else (x,)
    out_eval = layer(*args)
    assert_close(out_eval, reference(*args), torch.float64)
    assert_close(layer(*args), out_eval, torch.float64)
    layer.train()
    torch.manual_seed(31)
    first = layer(*args)
    second = layer(*args)
    assert not torch.allclose(first, out_eval) and not torch.allclose(first, second)


@pytest.mark.parametrize(
    "score", ["dot", pytest.param("additive", marks=pytest.mark.slow), pytest.param("gcn", marks=pytest.mark.slow)]
)
def test_torch_compile_matches_eager_on_both_paths(score):
    torch._dynamo.reset()
    layer = make_layer(score, 2, 2, torch.float32, seed=32)
    compiled = torch.compile(layer, backend="aot_eager")
    x = randn(2, 5, 4, seed=33, dtype=torch.float32)
    torch.testing.assert_close(compiled(x), layer(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(compiled(x, causal=True), layer(x, causal=True), atol=1e-6, rtol=1e-6)
    edge_index = torch.tensor([[0, 1, 2, 3, 1, 4], [1, 2, 0, 0, 1, 1]])
    xs = x[0].clone().requires_grad_()
    out = compiled(xs, edge_index)
    torch.testing.assert_close(out, layer(x[0], edge_index), atol=1e-6, rtol=1e-6)
    (grad,) = torch.autograd.grad(out.sum(), xs)
    xe = x[0].clone().requires_grad_()
    (expected,) = torch.autograd.grad(layer(xe, edge_index).sum(), xe)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-6)


def test_torch_compile_fullgraph_on_the_sparse_path():
    """No graph breaks: the sparse kernels are custom operators dynamo can trace."""
    torch._dynamo.reset()
    layer = make_layer("dot", 2, 2, torch.float32, seed=34)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = randn(5, 4, seed=35, dtype=torch.float32)
    edge_index = torch.tensor([[0, 1, 2, 3, 1, 4], [1, 2, 0, 0, 1, 1]])
    torch.testing.assert_close(compiled(x, edge_index), layer(x, edge_index), atol=1e-6, rtol=1e-6)


def test_prepared_sparse_graph_equals_edge_index():
    layer = make_layer("gatv2", 2, 2, torch.float64, seed=36)
    x = randn(5, 4, seed=37)
    edge_index = torch.tensor([[0, 1, 2, 3, 1, 4], [1, 2, 0, 0, 1, 1]])
    graph = SparseGraph.from_edge_index(edge_index, 5)
    assert_close(layer(x, graph), layer(x, edge_index), torch.float64)


# ================================================================ bad input
X = torch.randn(5, 4)
EI = torch.tensor([[0, 1, 2], [1, 2, 0]])


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda a: a(X, torch.tensor([[5], [0]])), ValueError, r"edge_index\[0\]"),
        (lambda a: a(X, torch.tensor([[0], [5]])), ValueError, r"edge_index\[1\]"),
        (lambda a: a(X, torch.tensor([[-1], [0]])), ValueError, "edge_index has negative"),
        (lambda a: a(X, EI.t()), ValueError, r"edge_index must have shape \[2, E\]"),
        (lambda a: a(X, EI[0]), ValueError, r"edge_index must have shape \[2, E\]"),
        (lambda a: a(X, EI.float()), TypeError, "edge_index must hold integer"),
        (lambda a: a(X, EI.tolist()), TypeError, "edge_index must be a torch.Tensor"),
        (lambda a: a((X[:2], X), torch.tensor([[2], [0]])), ValueError, r"edge_index\[0\] \(sources\)"),
        (lambda a: a(torch.randn(5, 3), EI), ValueError, "x has 3 features.*d_model"),
        (lambda a: a(torch.randn(2, 5, 3)), ValueError, "x has 3 features.*d_model"),
        (lambda a: a((torch.randn(5, 3), X)), ValueError, "x_src has 3 features.*kdim"),
        (lambda a: a(torch.ones(5, 4, dtype=torch.long)), TypeError, "x must be a floating-point"),
        (lambda a: a(torch.randn(4)), ValueError, r"x must be \[N, d\]"),
        (lambda a: a((X, X, X)), ValueError, "pair"),
        (lambda a: a(torch.randn(2, 5, 4), EI), ValueError, r"with edge_index, x must be \[N, d\]"),
        (lambda a: a(X, EI, batch=torch.zeros(4, dtype=torch.long)), ValueError, r"batch must have shape \[5\]"),
        (lambda a: a(X, batch=torch.zeros(4, dtype=torch.long)), ValueError, r"batch must have shape \[5\]"),
        (lambda a: a(X, batch=torch.zeros(5)), TypeError, "batch must be an integer tensor"),
        (lambda a: a(X, batch=torch.tensor([0, 0, -1, 1, 1])), ValueError, "batch must hold graph ids >= 0"),
        (lambda a: a(X, batch=torch.tensor([0, 1, 0, 1, 1])), ValueError, "batch must hold graph ids.*increasing"),
        (
            lambda a: a(torch.randn(2, 5, 4), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
            ValueError,
            r"key_padding_mask must have shape \[B, N\]",
        ),
        (
            lambda a: a(torch.randn(2, 5, 4), key_padding_mask=torch.zeros(2, 5)),
            TypeError,
            "key_padding_mask must be bool",
        ),
        (lambda a: a(X, EI, key_padding_mask=torch.zeros(1, 5, dtype=torch.bool)), ValueError, "key_padding_mask"),
        (lambda a: a(X, EI, causal=True), ValueError, "causal"),
        (lambda a: a((torch.randn(3, 4), X), causal=True), ValueError, "causal=True needs as many targets"),
        (lambda a: a(X, EI, edge_attr=torch.randn(3, 2)), ValueError, "edge_attr.*edge_dim"),
        (lambda a: a(X, EI, edge_attr=torch.randn(4, 2)), ValueError, "edge_attr has 4 rows"),
        (lambda a: a(X, edge_attr=torch.randn(25, 2)), ValueError, "edge_attr needs an explicit edge_index"),
        (lambda a: a(X, EI, edge_attr=torch.randn(3)), ValueError, "'dot' score takes edge features.*edge_dim"),
        (lambda a: a(torch.randn(2, 5, 4), attn_bias=torch.randn(4, 4)), ValueError, r"attn_bias must end in \[M, N\]"),
        (lambda a: a(X, EI, attn_bias=torch.randn(4)), ValueError, r"attn_bias must be \[E\] or \[E, H\]"),
        (lambda a: a(X, EI, attn_bias=torch.randn(3, 3)), ValueError, r"attn_bias must be \[E\] or \[E, H\]"),
        (lambda a: a(X, SparseGraph.from_edge_index(EI, 4)), ValueError, "SparseGraph was built for 4"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, match):
    layer = gf.GraphAttention(4, 2)
    with pytest.raises(error, match=match):
        call(layer)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(d_model=6, num_heads=4), ValueError, "d_model=6 is not divisible by num_heads=4"),
        (dict(d_model=4, num_heads=0), ValueError, "num_heads must be a positive int"),
        (dict(d_model=0), ValueError, "d_model must be a positive int"),
        (dict(d_model=4, score="nope"), ValueError, "unknown score 'nope'"),
        (dict(d_model=4, score=3), TypeError, "score must be a name or a Score"),
        (dict(d_model=4, dropout=1.0), ValueError, "dropout must lie in"),
        (dict(d_model=4, self_loops="all"), ValueError, "self_loops must be"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        gf.GraphAttention(**kwargs)


def test_edge_attr_errors_on_fixed_weight_scores():
    gcn = gf.GraphAttention(4, 2, score="gcn")
    with pytest.raises(ValueError, match="edge_attr.*edge_dim"):
        gcn(X, EI, edge_attr=torch.randn(3, 2))
    with pytest.raises(ValueError, match="attn_bias is added to softmax scores"):
        gcn(X, EI, attn_bias=torch.randn(3))
    with pytest.raises(ValueError, match="attn_bias is added to softmax scores"):
        gcn(X[None], attn_bias=torch.randn(5, 5))
    with pytest.raises(ValueError, match="self_loops"):
        gf.GraphAttention(4, 2, self_loops="add")(X, EI, attn_bias=torch.randn(3))


# ====================================================== half precision
HALF = [torch.bfloat16, torch.float16]


def _high_in_degree(dtype, score="dot", num_src=10_000, num_dst=3, d=32, heads=4, seed=40):
    """A bipartite graph where every target hears from 10,000 sources, in half precision, with a
    float64 copy of the same (already rounded) weights and inputs as the exact reference."""
    layer = make_layer(score, heads, d // heads, dtype=torch.float32, seed=seed).to(dtype)
    exact = make_layer(score, heads, d // heads, dtype=torch.float32, seed=seed).to(dtype).double()
    x_src = (2 * randn(num_src, d, seed=seed + 1)).to(dtype)  # scores of size ~10: rounding them would show
    x_dst = (2 * randn(num_dst, d, seed=seed + 2)).to(dtype)
    return layer, exact, x_src, x_dst, bipartite_edge_index(num_src, num_dst)


def _errors(layer, exact, x_src, x_dst, edge_index, autocast=False):
    """Max abs error against float64 of the output and of the input gradients, sparse and dense path."""
    xs64, xd64 = x_src.double().requires_grad_(), x_dst.double().requires_grad_()
    ref = exact((xs64, xd64), edge_index)
    w = randn(*ref.shape, seed=41)  # a random linear loss, so the gradients differ per row
    ref_grads = torch.autograd.grad((ref * w).sum(), (xs64, xd64))
    errors = {}
    for path, graph in (("sparse", edge_index), ("dense", None)):
        xs, xd = x_src.clone().requires_grad_(), x_dst.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = layer((xs, xd), graph)
        grads = torch.autograd.grad((out.double() * w).sum(), (xs, xd))
        errors[path] = [(out.double() - ref).abs().max().item()] + [
            (g.double() - r).abs().max().item() for g, r in zip(grads, ref_grads)
        ]
    return errors, ref.abs().max().item()


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("score", ["dot", "additive"])
def test_half_precision_sparse_path_is_as_accurate_as_the_dense_path(dtype, score):
    """In-degree 10,000: outputs and gradients of the sparse path stay within the dense path's own error."""
    layer, exact, x_src, x_dst, edge_index = _high_in_degree(dtype, score)
    errors, scale = _errors(layer, exact, x_src, x_dst, edge_index)
    eps = torch.finfo(dtype).eps
    for which, (sparse, dense) in enumerate(zip(errors["sparse"], errors["dense"])):
        assert sparse <= 1.5 * dense + 4 * eps * scale, (which, errors)
    assert errors["sparse"][0] <= 8 * eps * scale, errors  # a few roundings of the output, nothing that grows with E


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_softmax_weights_sum_to_one_at_in_degree_10000(dtype):
    layer, exact, x_src, x_dst, edge_index = _high_in_degree(dtype)
    _, att = layer((x_src, x_dst), edge_index, return_attention=True)
    assert att.weights.dtype == dtype and att.scores.dtype == torch.float32  # scores are never rounded to half
    M, N = x_dst.size(0), x_src.size(0)  # noqa: N806  (edges target-major: [M, N, H])
    sums = att.weights.double().view(M, N, -1).sum(1)  # [M, H]
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=4 * torch.finfo(dtype).eps, rtol=0)
    # every weight is the float64 softmax of its scores rounded once: a relative error of eps / 2
    # (float16's subnormal weights below 6e-5 keep an absolute one of half their spacing, tiny * eps)
    ref = torch.softmax(att.scores.double().view(M, N, -1), dim=1).view(M * N, -1)
    info = torch.finfo(dtype)
    assert ((att.weights.double() - ref).abs() <= 0.505 * info.eps * ref + info.tiny * info.eps).all()


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_autocast_bf16_on_both_paths(score):
    """float32 weights under CPU autocast: bfloat16 matmuls, float32 softmax and sums, on both paths."""
    layer, exact, x_src, x_dst, edge_index = _high_in_degree(torch.float32, score, num_src=4000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer((x_src, x_dst), edge_index).dtype == torch.bfloat16
    errors, scale = _errors(layer, exact, x_src, x_dst, edge_index, autocast=True)
    eps = torch.finfo(torch.bfloat16).eps
    for which, (sparse, dense) in enumerate(zip(errors["sparse"], errors["dense"])):
        assert sparse <= 1.5 * dense + 4 * eps * scale, (which, errors)


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_complete_graph_scores_without_fused_kernel(dtype):
    """The explicit dense path (gatv2, return_attention) takes its softmax in float32 too."""
    layer, exact, x_src, x_dst, edge_index = _high_in_degree(dtype, "gatv2", num_src=2000)
    ref = exact((x_src.double(), x_dst.double()))
    scale, eps = ref.abs().max().item(), torch.finfo(dtype).eps
    sparse, dense = layer((x_src, x_dst), edge_index), layer((x_src, x_dst))
    assert (sparse.double() - ref).abs().max() <= 8 * eps * scale
    assert (dense.double() - ref).abs().max() <= 8 * eps * scale


# ================================================ dense scores in row blocks
@pytest.mark.parametrize("score", ["gatv2", "additive", "test_cosine"])
def test_dense_scores_without_fused_kernel_run_in_row_blocks(score, monkeypatch):
    """Blocks of target rows give the unblocked result, and no [B, H, M, N, C] tensor exists at once."""
    from graphformer import attention

    layer = make_layer(score, 2, 4, torch.float64, seed=42)
    x = randn(2, 12, 8, seed=43).requires_grad_()
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[1, 9:] = True
    bias = randn(2, 2, 12, 12, seed=44)
    expected = layer(x, causal=True, attn_bias=bias, key_padding_mask=pad)
    (grad_expected,) = torch.autograd.grad(expected.square().sum(), x)
    per_row = 2 * 2 * 12 * (4 if layer.score.pairwise_channels else 1)  # B * H * N (* C)
    monkeypatch.setattr(attention, "_CHUNK_ELEMENTS", 3 * per_row)  # blocks of 3 target rows
    calls = []
    original = attention.GraphAttention._dense_explicit
    monkeypatch.setattr(
        attention.GraphAttention,
        "_dense_explicit",
        lambda self, q, *a, **k: calls.append(q.size(-2)) or original(self, q, *a, **k),
    )
    out = layer(x, causal=True, attn_bias=bias, key_padding_mask=pad)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert set(calls) == {3}  # every block (and its recomputation in the backward pass) has 3 rows
    assert_close(out, expected, torch.float64)
    assert_close(grad, grad_expected, torch.float64)


class _DistanceScore(gf.Score):
    """s_ij = q_i . k_j - |i - j|: reads row positions, so it must not be cut into row blocks."""

    def sparse(self, q, k, graph, edge):
        return (q[:, graph.row] * k[:, graph.col]).sum(-1) - (graph.row - graph.col).abs()

    def dense(self, q, k, mask, bipartite=False):
        pos = torch.arange(q.size(-2))
        return q @ k.transpose(-1, -2) - (pos[:, None] - pos[None, :]).abs()


def test_scores_that_read_row_positions_are_not_cut_into_blocks(monkeypatch):
    from graphformer import attention

    layer = make_layer(_DistanceScore(), 2, 4, torch.float64, seed=45)
    x = randn(12, 8, seed=46)
    monkeypatch.setattr(attention, "_CHUNK_ELEMENTS", 1)  # would be blocks of one row
    assert_close(layer(x), layer(x, complete_edge_index(12)), torch.float64)


@pytest.mark.parametrize("score", ["dot", "additive", "gcn"])
def test_half_precision_layer_keeps_per_edge_memory_at_h_times_e(score):
    """A bf16 forward + backward builds no [H, E, C] tensor: the largest is [H, E] or a node tensor."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                    self.largest = max(self.largest, t.numel())
            return out

    N, E, H, C = 400, 12_000, 4, 16  # noqa: N806
    layer = gf.GraphAttention(H * C, H, score=score, dropout=0.1).to(torch.bfloat16).train()
    x = torch.randn(N, H * C, dtype=torch.bfloat16, requires_grad=True)
    graph = SparseGraph.from_edge_index(torch.randint(0, N, (2, E), generator=torch.Generator().manual_seed(47)), N)
    mode = Largest()
    with mode:
        layer(x, graph).sum().backward()
    assert mode.largest <= max(H * E, 3 * N * H * C) < H * E * C
