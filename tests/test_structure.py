"""Tests of the graph structures: complete, causal, bipartite, self-loops, batches, CSR layout.

Legend: N nodes, E edges, B graphs in a batch.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphformer import structure
from graphformer.structure import SparseGraph

FAST = settings(max_examples=25, deadline=None)


@st.composite
def bipartite_graphs(draw, max_nodes=6, max_edges=16):
    """(num_src, num_dst, edge_index [2, E]) with any edge order and duplicates."""
    num_src = draw(st.integers(1, max_nodes))
    num_dst = draw(st.integers(1, max_nodes))
    edges = draw(st.lists(st.tuples(st.integers(0, num_src - 1), st.integers(0, num_dst - 1)), max_size=max_edges))
    return num_src, num_dst, torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()


def edge_set(edge_index):
    return sorted(map(tuple, edge_index.t().tolist()))


# ------------------------------------------------------- fixed structures
@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_complete_edge_index_lists_every_pair_once(n):
    ei = structure.complete_edge_index(n)
    assert ei.shape == (2, n * n) and ei.dtype == torch.long
    assert edge_set(ei) == sorted((j, i) for i in range(n) for j in range(n))
    no_loops = structure.complete_edge_index(n, self_loops=False)
    assert edge_set(no_loops) == sorted((j, i) for i in range(n) for j in range(n) if i != j)


@pytest.mark.parametrize("n", [0, 1, 4])
def test_causal_edge_index_points_forward_in_time(n):
    ei = structure.causal_edge_index(n)
    assert ei.shape == (2, n * (n + 1) // 2)
    assert edge_set(ei) == sorted((j, i) for i in range(n) for j in range(i + 1))


@pytest.mark.parametrize("num_src,num_dst", [(3, 2), (1, 4), (0, 3), (3, 3)])
def test_bipartite_edge_index_connects_every_source_to_every_target(num_src, num_dst):
    ei = structure.bipartite_edge_index(num_src, num_dst)
    assert edge_set(ei) == sorted((j, i) for i in range(num_dst) for j in range(num_src))
    no_loops = structure.bipartite_edge_index(num_src, num_dst, self_loops=False)
    assert edge_set(no_loops) == sorted((j, i) for i in range(num_dst) for j in range(num_src) if i != j)


# --------------------------------------------------------------- self-loops
def test_remove_self_loops_keeps_attributes_aligned():
    ei = torch.tensor([[0, 1, 1, 2], [0, 2, 1, 0]])
    attr = torch.tensor([10.0, 20.0, 30.0, 40.0])
    out, out_attr = structure.remove_self_loops(ei, attr)
    assert out.tolist() == [[1, 2], [2, 0]] and out_attr.tolist() == [20.0, 40.0]
    assert structure.remove_self_loops(ei)[1] is None


def test_add_self_loops_add_mode_replaces_existing_loops():
    ei = torch.tensor([[0, 1, 1, 2], [0, 2, 1, 0]])
    attr = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    out, out_attr = structure.add_self_loops(ei, 4, attr, mode="add", fill_value=7.0)
    pairs = list(zip(map(tuple, out.t().tolist()), out_attr.squeeze(-1).tolist()))
    expected = [((1, 2), 2.0), ((2, 0), 4.0)] + [((i, i), 7.0) for i in range(4)]
    assert sorted(pairs) == sorted(expected)


def test_add_self_loops_remaining_mode_keeps_existing_loops():
    ei = torch.tensor([[0, 1, 1, 2], [0, 2, 1, 0]])
    attr = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out, out_attr = structure.add_self_loops(ei, 4, attr, mode="remaining")
    pairs = sorted(zip(map(tuple, out.t().tolist()), out_attr.tolist()))
    assert pairs == sorted([((0, 0), 1.0), ((1, 2), 2.0), ((1, 1), 3.0), ((2, 0), 4.0), ((2, 2), 1.0), ((3, 3), 1.0)])


def test_add_self_loops_mean_fill_is_the_mean_of_incoming_attributes():
    ei = torch.tensor([[1, 2, 0], [0, 0, 1]])
    attr = torch.tensor([[2.0, 0.0], [4.0, 2.0], [6.0, 6.0]])
    out, out_attr = structure.add_self_loops(ei, 3, attr, mode="add", fill_value="mean")
    loops = {tuple(e): a for e, a in zip(out.t().tolist(), out_attr.tolist()) if e[0] == e[1]}
    assert loops == {(0, 0): [3.0, 1.0], (1, 1): [6.0, 6.0], (2, 2): [0.0, 0.0]}


def test_add_self_loops_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        structure.add_self_loops(torch.zeros(2, 0, dtype=torch.long), 2, mode="some")


# ------------------------------------------------------------------ batches
@FAST
@given(sizes=st.lists(st.integers(0, 4), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_to_dense_batch_packs_each_graph_into_its_row(sizes, seed):
    x = torch.randn(sum(sizes), 3, generator=torch.Generator().manual_seed(seed))
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    dense, pad = structure.to_dense_batch(x, batch, num_graphs=len(sizes))
    n_max = max(sizes)
    assert dense.shape == (len(sizes), n_max, 3) and pad.shape == (len(sizes), n_max)
    start = 0
    for b, n in enumerate(sizes):
        torch.testing.assert_close(dense[b, :n], x[start : start + n], rtol=0, atol=0)
        assert not dense[b, n:].any()
        assert pad[b].tolist() == [False] * n + [True] * (n_max - n)
        start += n
    torch.testing.assert_close(dense[~pad], x, rtol=0, atol=0)


# --------------------------------------------------------- edge checking
@pytest.mark.parametrize(
    "edge_index,error,match",
    [
        ([[0, 1], [1, 0]], TypeError, "torch.Tensor"),
        (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), TypeError, "integer"),
        (torch.tensor([[0, 1], [1, 0], [0, 0]]), ValueError, r"\[2, E\]"),
        (torch.tensor([0, 1]), ValueError, r"\[2, E\]"),
        (torch.tensor([[0, -1], [1, 0]]), ValueError, "negative"),
        (torch.tensor([[0, 3], [1, 0]]), ValueError, r"edge_index\[0\]"),
        (torch.tensor([[0, 1], [1, 2]]), ValueError, r"edge_index\[1\]"),
    ],
)
def test_check_edge_index_rejects_bad_input(edge_index, error, match):
    with pytest.raises(error, match=match):
        structure.check_edge_index(edge_index, num_src=3, num_dst=2)


@pytest.mark.parametrize("dtype", [torch.long, torch.int])
def test_check_edge_index_accepts_valid_input_up_to_the_exact_bound(dtype):
    edge_index = torch.tensor([[2, 0], [1, 0]], dtype=dtype)  # largest source 2, largest target 1
    assert structure.check_edge_index(edge_index, 3, 2) is None
    with pytest.raises(ValueError, match=r"edge_index\[0\]"):  # one source node fewer: the bound is exact
        structure.check_edge_index(edge_index, 2, 2)
    with pytest.raises(ValueError, match=r"edge_index\[1\]"):
        structure.check_edge_index(edge_index, 3, 1)


def test_check_edge_index_accepts_an_empty_edge_list():
    assert structure.check_edge_index(torch.zeros(2, 0, dtype=torch.long), 0, 0) is None
    with pytest.raises(ValueError, match=r"\[2, E\]"):  # but the shape is still checked
        structure.check_edge_index(torch.zeros(0, 2, dtype=torch.long), 0, 0)


# ------------------------------------------------------------ SparseGraph
@FAST
@given(graph=bipartite_graphs())
def test_sparse_graph_layout_is_consistent(graph):
    num_src, num_dst, edge_index = graph
    sg = SparseGraph.from_edge_index(edge_index, num_src, num_dst)
    E = edge_index.size(1)
    assert sg.num_edges == E and (sg.num_src, sg.num_dst) == (num_src, num_dst)
    # CSR by target: rows sorted by (target, source), pointers count the in-degrees
    assert sg.crow.tolist() == [0] + torch.cumsum(torch.bincount(edge_index[1], minlength=num_dst), 0).tolist()
    key = (sg.row * num_src + sg.col).tolist()
    assert key == sorted(key)
    assert sorted(zip(sg.col.tolist(), sg.row.tolist())) == edge_set(edge_index)
    assert torch.equal(sg.row, torch.repeat_interleave(torch.arange(num_dst), sg.crow.diff()))
    # edge order <-> CSR order round-trips, and the CSR order of the given edges is (col, row)
    ids = torch.arange(E)
    assert torch.equal(sg.to_edge_order(sg.to_csr_order(ids)), ids)
    assert torch.equal(sg.to_csr_order(edge_index.t()), torch.stack([sg.col, sg.row], 1))
    # transposed layout: CSC positions -> CSR positions, sorted by (source, target)
    assert sorted(sg.t_perm.tolist()) == list(range(E))
    assert torch.equal(sg.t_col, sg.row[sg.t_perm])
    t_key = (sg.col[sg.t_perm] * num_dst + sg.t_col).tolist()
    assert t_key == sorted(t_key)
    assert sg.t_crow.tolist() == [0] + torch.cumsum(torch.bincount(edge_index[0], minlength=num_src), 0).tolist()
    # degrees
    assert torch.equal(sg.in_degree(), torch.bincount(edge_index[1], minlength=num_dst))
    w = torch.rand(E, dtype=torch.float64)
    expected = torch.zeros(num_dst, dtype=torch.float64).index_add_(0, edge_index[1], w)
    torch.testing.assert_close(sg.in_degree(sg.to_csr_order(w)), expected)
    assert torch.equal(sg.edge_index, edge_index)


def test_sparse_graph_keeps_sorted_edges_without_permutation():
    ei = torch.tensor([[0, 2, 1, 0], [0, 0, 1, 2]])  # already sorted by (target, source)
    sg = SparseGraph.from_edge_index(ei, 3)
    assert sg.perm is None
    values = torch.arange(4)
    assert sg.to_csr_order(values) is values and sg.to_edge_order(values) is values


def test_sparse_graph_checks_its_edges():
    with pytest.raises(ValueError, match=r"edge_index\[0\]"):
        SparseGraph.from_edge_index(torch.tensor([[4], [0]]), 3)


# ------------------------------------------------------ structured graphs
def _edge_set(edge_index):
    return sorted(map(tuple, edge_index.t().tolist()))


def _window_edges(n, window, causal=False, dilation=1):
    """The definition, pair by pair: j -> i for |i - j| <= window*dilation, dilation | (i - j)."""
    span = window * dilation
    return sorted(
        (j, i)
        for i in range(n)
        for j in range(n)
        if (i - j) % dilation == 0 and (0 <= i - j <= span if causal else abs(i - j) <= span)
    )


def _assert_csr_order(edge_index):
    key = (edge_index[1] * (int(edge_index.max()) + 1) + edge_index[0]).tolist() if edge_index.numel() else []
    assert key == sorted(key) and len(set(key)) == len(key)  # sorted by (target, source), no duplicates


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), window=st.integers(0, 9), causal=st.booleans(), dilation=st.integers(1, 4))
def test_sliding_window_edges_match_the_definition(n, window, causal, dilation):
    g = structure.sliding_window(n, window, causal=causal, dilation=dilation)
    assert _edge_set(g.edge_index) == [(j, i) for j, i in _window_edges(n, window, causal, dilation)]
    _assert_csr_order(g.edge_index)
    assert torch.equal(g.in_degree(), torch.bincount(g.edge_index[1], minlength=n))
    assert g.num_nodes == n and g.num_edges == g.edge_index.size(1)


def test_sliding_window_at_the_issue_size_has_4_2m_edges():
    n, w = 16_384, 128
    g = structure.sliding_window(n, w)
    assert g.num_edges == n * (2 * w + 1) - w * (w + 1)  # 4,194,176
    # the tiles hold O(N w) entries, not O(N^2)
    entries = sum(grp.mask.numel() for grp in g.plan.groups)
    assert entries <= 2 * n * (2 * w + 1)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), window=st.integers(0, 4), causal=st.booleans(), dilation=st.integers(1, 3), data=st.data())
def test_local_global_edges_match_the_definition(n, window, causal, dilation, data):
    ids = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=min(n, 4)))
    g = structure.local_global(n, window, ids, causal=causal, dilation=dilation)
    expected = set(_window_edges(n, window, causal, dilation))
    for gid in ids:
        for other in range(n):
            expected |= {(gid, other), (other, gid)}
    if causal:
        expected = {(j, i) for j, i in expected if j <= i}
    assert _edge_set(g.edge_index) == sorted(expected)
    _assert_csr_order(g.edge_index)


def test_local_global_takes_a_number_of_first_nodes():
    a = structure.local_global(12, 2, 3)
    b = structure.local_global(12, 2, [2, 0, 1])
    assert torch.equal(a.edge_index, b.edge_index)
    assert torch.equal(a.global_nodes, torch.arange(3))


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), max_size=8), causal=st.booleans())
def test_block_diagonal_edges_are_one_complete_graph_per_graph(sizes, causal):
    g = structure.block_diagonal(sizes, causal=causal)
    expected, start = [], 0
    for s in sizes:
        expected += [(start + j, start + i) for i in range(s) for j in range(s) if not causal or j <= i]
        start += s
    assert _edge_set(g.edge_index) == sorted(expected)
    _assert_csr_order(g.edge_index)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.long))
    assert torch.equal(structure.block_diagonal(batch=batch, causal=causal).edge_index, g.edge_index)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: structure.sliding_window(10, -1), ValueError, "window must be >= 0"),
        (lambda: structure.sliding_window(10, 2, dilation=0), ValueError, "dilation must be >= 1"),
        (lambda: structure.sliding_window(10, 2.5), TypeError, "window must be an int"),
        (lambda: structure.sliding_window(-3, 2), ValueError, "num_nodes must be >= 0"),
        (lambda: structure.local_global(10, 2, [0, 10]), ValueError, r"global_nodes must be node ids in \[0, 10\)"),
        (lambda: structure.local_global(10, 2, [1, 1]), ValueError, "lists a node twice"),
        (lambda: structure.local_global(10, 2, 11), ValueError, "must lie in"),
        (lambda: structure.local_global(10, 2, [0.5]), TypeError, "global_nodes must be an int"),
        (lambda: structure.block_diagonal([2, -1]), ValueError, r"sizes\[i\] must be >= 0"),
        (lambda: structure.block_diagonal(), ValueError, "exactly one of sizes"),
        (lambda: structure.block_diagonal(batch=torch.tensor([0, 1, 0])), ValueError, "increasing order"),
        (lambda: structure.block_diagonal(batch=torch.tensor([0.0, 1.0])), TypeError, "integer tensor"),
    ],
)
def test_structures_validate_at_construction(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_structure_moves_to_a_device_and_keeps_its_edges():
    g = structure.sliding_window(20, 3, causal=True)
    assert g.to("cpu") is g
    assert torch.equal(g.sparse_graph.edge_index, g.edge_index)
    assert "SlidingWindow(num_nodes=20, window=3, causal=True" in repr(g)


# -------------------------------------------------- dense-call edge masks
def _dense_edges(graph, batch_size):
    """The edges ``(b, j, i)`` a DenseGraph lets through, read off its mask."""
    mask = graph.edge_mask()
    if mask is None:
        mask = torch.ones(graph.num_dst, graph.num_src, dtype=torch.bool)
    mask = mask.expand(batch_size, 1, graph.num_dst, graph.num_src)[:, 0]
    return {(b, j, i) for b, i, j in mask.nonzero().tolist()}


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    batch_size=st.integers(1, 3),
    num_dst=st.integers(0, 5),
    num_src=st.integers(0, 5),
    causal=st.booleans(),
    use_kpm=st.booleans(),
    use_qp=st.booleans(),
    use_adj=st.booleans(),
    fused_causal=st.booleans(),
)
def test_dense_graph_keeps_exactly_the_edges_every_restriction_allows(
    data, batch_size, num_dst, num_src, causal, use_kpm, use_qp, use_adj, fused_causal
):
    if causal:
        num_src = num_dst
    bools = st.booleans()
    kpm = [[data.draw(bools) for _ in range(num_src)] for _ in range(batch_size)] if use_kpm else None
    qp = [[data.draw(bools) for _ in range(num_dst)] for _ in range(batch_size)] if use_qp else None
    adj = (
        [[[data.draw(bools) for _ in range(num_src)] for _ in range(num_dst)] for _ in range(batch_size)]
        if use_adj
        else None
    )
    graph = structure.dense_graph(
        batch_size,
        num_dst,
        num_src,
        causal=causal,
        fused_causal=fused_causal,
        key_padding_mask=None if kpm is None else torch.tensor(kpm, dtype=torch.bool).view(batch_size, num_src),
        query_padding=None if qp is None else torch.tensor(qp, dtype=torch.bool).view(batch_size, num_dst),
        adjacency=None if adj is None else torch.tensor(adj, dtype=torch.bool).view(batch_size, 1, num_dst, num_src),
    )

    expected = {
        (b, j, i)
        for b in range(batch_size)
        for i in range(num_dst)
        for j in range(num_src)
        if (not causal or j <= i)
        and (kpm is None or not kpm[b][j])
        and (qp is None or not qp[b][i])
        and (adj is None or adj[b][i][j])
    }
    assert _dense_edges(graph, batch_size) == expected
    assert (graph.num_dst, graph.num_src) == (num_dst, num_src)

    only_causal = causal and not (use_kpm or use_qp or use_adj)
    assert graph.is_causal == (only_causal and fused_causal)
    if graph.is_causal or not (causal or use_kpm or use_qp or use_adj):  # left to the kernel, or complete
        assert graph.edges is None and graph.allowed is None and graph.empty is None
        return
    receiving = {(b, i) for b, _, i in expected}
    empty = graph.empty.expand(batch_size, 1, num_dst, 1)[:, 0, :, 0]
    assert {(b, i) for b, i in empty.nonzero().tolist()} == {
        (b, i) for b in range(batch_size) for i in range(num_dst) if (b, i) not in receiving
    }
    # the fused kernel sees the edges, with every empty row opened to all sources (zeroed by the caller)
    allowed = graph.allowed.expand(batch_size, 1, num_dst, num_src)[:, 0]
    assert {(b, j, i) for b, i, j in allowed.nonzero().tolist()} == expected | {
        (b, j, i) for b, i in empty.nonzero().tolist() for j in range(num_src)
    }


def test_dense_graph_of_the_complete_graph_has_no_mask():
    graph = structure.dense_graph(2, 3, 4)
    assert (graph.edges, graph.allowed, graph.empty, graph.is_causal) == (None, None, None, False)
    assert graph.edge_mask() is None and graph.kernel_mask() is None
    assert graph.pattern(2, 3).shape == (2, 3, 3, 4) and bool(graph.pattern(2, 3).all())


def test_dense_graph_causal_without_a_fused_kernel_spells_out_the_triangle():
    graph = structure.dense_graph(1, 3, 3, causal=True)
    assert not graph.is_causal
    assert graph.edges.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert graph.empty.shape == (3, 1) and not graph.empty.any()
    fused = structure.dense_graph(1, 3, 3, causal=True, fused_causal=True)
    assert fused.is_causal and fused.edges is None
    assert torch.equal(fused.edge_mask(), graph.edges)  # the same graph, spelled out on request
    assert torch.equal(fused.pattern(2, 1), graph.edges.expand(2, 1, 3, 3))


def test_dense_graph_kernel_mask_puts_minus_infinity_off_the_edges():
    pad = torch.tensor([[False, True, False]])
    graph = structure.dense_graph(1, 2, 3, key_padding_mask=pad)
    bias = torch.arange(6.0).view(2, 3)
    mask = graph.kernel_mask(bias)
    assert mask.shape == (1, 1, 2, 3)
    assert mask[0, 0].tolist() == [[0.0, float("-inf"), 2.0], [3.0, float("-inf"), 5.0]]
    assert graph.kernel_mask() is graph.allowed and graph.allowed[0, 0, 0].tolist() == [True, False, True]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(causal=True), ValueError, "as many targets as sources"),
        (dict(key_padding_mask=torch.zeros(2, 3)), TypeError, "key_padding_mask must be bool"),
        (dict(key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)), ValueError, r"\[B, N\] = \[2, 3\]"),
        (dict(adjacency=torch.ones(2, 3)), TypeError, "adjacency must be bool"),
        (dict(adjacency=torch.ones(3, 2, dtype=torch.bool)), ValueError, r"\[M, N\] = \[2, 3\]"),
    ],
)
def test_dense_graph_rejects_bad_masks(kwargs, error, match):
    with pytest.raises(error, match=match):
        structure.dense_graph(2, 2, 3, **kwargs)


# -------------------------------------------------------- self-loop policy
def test_layer_self_loops_none_returns_the_edges_as_given():
    ei, attr = torch.tensor([[0, 1], [1, 1]]), torch.randn(2, 3)
    out, out_attr = structure.layer_self_loops(ei, 2, 2, attr, mode=None)
    assert out is ei and out_attr is attr


def test_layer_self_loops_fills_features_with_the_mean_and_weights_with_one():
    ei = torch.tensor([[1, 2, 0, 1], [0, 0, 1, 1]])
    feats = torch.tensor([[2.0], [4.0], [6.0], [8.0]])
    out, fill = structure.layer_self_loops(ei, 3, 3, feats, mode="add")
    loops = {tuple(e): a for e, a in zip(out.t().tolist(), fill.tolist()) if e[0] == e[1]}
    assert loops == {(0, 0): [3.0], (1, 1): [6.0], (2, 2): [0.0]}  # the old loop (1, 1) is not averaged in
    weights = torch.tensor([2.0, 4.0, 6.0, 8.0])
    out, fill = structure.layer_self_loops(ei, 3, 3, weights, mode="add")
    assert {tuple(e): a for e, a in zip(out.t().tolist(), fill.tolist()) if e[0] == e[1]} == {
        (0, 0): 1.0,
        (1, 1): 1.0,
        (2, 2): 1.0,
    }
    out, fill = structure.layer_self_loops(ei, 3, 3, feats, mode="remaining")  # keeps (1, 1) with its value
    assert {tuple(e): a for e, a in zip(out.t().tolist(), fill.tolist()) if e[0] == e[1]} == {
        (0, 0): [1.0],
        (1, 1): [8.0],
        (2, 2): [1.0],
    }
    out, fill = structure.layer_self_loops(ei, 3, 3, feats, mode="add", fill_value="max")
    assert {tuple(e): a for e, a in zip(out.t().tolist(), fill.tolist()) if e[0] == e[1]} == {
        (0, 0): [4.0],
        (1, 1): [6.0],
        (2, 2): [0.0],
    }


def test_layer_self_loops_loops_only_nodes_on_both_sides_and_checks_the_edges():
    ei = torch.tensor([[0, 3], [1, 0]])  # 4 sources -> 2 targets
    out, _ = structure.layer_self_loops(ei, 4, 2, mode="add")
    assert edge_set(out) == [(0, 0), (0, 1), (1, 1), (3, 0)]
    with pytest.raises(ValueError, match=r"edge_index\[0\]"):
        structure.layer_self_loops(ei, 3, 2, mode="remaining")
