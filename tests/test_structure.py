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
        torch.testing.assert_close(dense[b, :n], x[start:start + n], rtol=0, atol=0)
        assert not dense[b, n:].any()
        assert pad[b].tolist() == [False] * n + [True] * (n_max - n)
        start += n
    torch.testing.assert_close(dense[~pad], x, rtol=0, atol=0)


# --------------------------------------------------------- edge checking
@pytest.mark.parametrize("edge_index,error,match", [
    ([[0, 1], [1, 0]], TypeError, "torch.Tensor"),
    (torch.tensor([[0.0, 1.0], [1.0, 0.0]]), TypeError, "integer"),
    (torch.tensor([[0, 1], [1, 0], [0, 0]]), ValueError, r"\[2, E\]"),
    (torch.tensor([0, 1]), ValueError, r"\[2, E\]"),
    (torch.tensor([[0, -1], [1, 0]]), ValueError, "negative"),
    (torch.tensor([[0, 3], [1, 0]]), ValueError, r"edge_index\[0\]"),
    (torch.tensor([[0, 1], [1, 2]]), ValueError, r"edge_index\[1\]"),
])
def test_check_edge_index_rejects_bad_input(edge_index, error, match):
    with pytest.raises(error, match=match):
        structure.check_edge_index(edge_index, num_src=3, num_dst=2)


def test_check_edge_index_accepts_valid_and_empty_input():
    structure.check_edge_index(torch.tensor([[2, 0], [1, 0]]), 3, 2)
    structure.check_edge_index(torch.zeros(2, 0, dtype=torch.long), 0, 0)
    structure.check_edge_index(torch.tensor([[2, 0], [1, 0]], dtype=torch.int), 3, 2)


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
    return sorted((j, i) for i in range(n) for j in range(n)
                  if (i - j) % dilation == 0 and (0 <= i - j <= span if causal else abs(i - j) <= span))


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
@given(n=st.integers(1, 30), window=st.integers(0, 4), causal=st.booleans(), dilation=st.integers(1, 3),
       data=st.data())
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


@pytest.mark.parametrize("build, error, match", [
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
])
def test_structures_validate_at_construction(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_structure_moves_to_a_device_and_keeps_its_edges():
    g = structure.sliding_window(20, 3, causal=True)
    assert g.to("cpu") is g
    assert torch.equal(g.sparse_graph.edge_index, g.edge_index)
    assert "SlidingWindow(num_nodes=20, window=3, causal=True" in repr(g)
