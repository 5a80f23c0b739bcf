"""Tests of the sparse kernels: sddmm, spmm, segment_softmax and segment_sum.

Every kernel is compared with a dense reference written here from the edge
list (in the caller's edge order), on both its torch.sparse CSR path and its
gather/scatter path, and its gradient is checked numerically in float64 on
small graphs with unsorted edges, duplicate edges, self-loops and isolated
nodes.

Legend: H heads, M target nodes, N source nodes, E edges, C channels per head.
"""

from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphformer import ops
from graphformer.structure import SparseGraph

FAST = settings(max_examples=25, deadline=None)


@st.composite
def bipartite_graphs(draw, max_nodes=6, max_edges=16):
    """(num_src, num_dst, edge_index [2, E]) with any edge order, duplicates and isolated nodes."""
    num_src = draw(st.integers(1, max_nodes))
    num_dst = draw(st.integers(1, max_nodes))
    edges = draw(st.lists(st.tuples(st.integers(0, num_src - 1), st.integers(0, num_dst - 1)), max_size=max_edges))
    edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t()
    return num_src, num_dst, edge_index


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@contextmanager
def csr_kernels(enabled: bool):
    """Force the torch.sparse CSR kernels (or the gather/scatter path) whatever the graph size."""
    old = ops._SMALL
    ops._SMALL = 0 if enabled else 1 << 62
    try:
        yield
    finally:
        ops._SMALL = old


KERNELS = pytest.mark.parametrize("csr", [False, True], ids=["gather", "csr"])


def dense_adjacency(edge_index, values, num_src, num_dst):
    """[H, M, N] matrices with values[h, e] summed at (target, source); duplicates add up."""
    H = values.size(0)
    adj = values.new_zeros(H, num_dst, num_src)
    for h in range(H):
        adj[h].index_put_((edge_index[1], edge_index[0]), values[h], accumulate=True)
    return adj


def segment_softmax_reference(scores, edge_index, num_dst):
    """Per-target softmax over the given edges, written as a loop; edges in the given order."""
    out = torch.zeros_like(scores)
    for i in range(num_dst):
        sel = edge_index[1] == i
        if sel.any():
            out[:, sel] = torch.softmax(scores[:, sel], dim=-1)
    return out


# ----------------------------------------------------------- forward values
@FAST
@given(
    graph=bipartite_graphs(),
    heads=st.integers(1, 3),
    channels=st.integers(1, 4),
    csr=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sddmm_equals_per_edge_dot_products(graph, heads, channels, csr, seed):
    num_src, num_dst, edge_index = graph
    g = _gen(seed)
    a = torch.randn(heads, num_dst, channels, generator=g, dtype=torch.float64)
    b = torch.randn(heads, num_src, channels, generator=g, dtype=torch.float64)
    sg = SparseGraph.from_edge_index(edge_index, num_src, num_dst)
    with csr_kernels(csr):
        out = sg.to_edge_order(ops.sddmm(sg, a, b).t()).t()  # back to the given edge order, [H, E]
    expected = (a[:, edge_index[1]] * b[:, edge_index[0]]).sum(-1)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


@FAST
@given(
    graph=bipartite_graphs(),
    heads=st.integers(1, 3),
    channels=st.integers(1, 4),
    csr=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_spmm_equals_dense_matrix_product(graph, heads, channels, csr, seed):
    num_src, num_dst, edge_index = graph
    g = _gen(seed)
    values = torch.randn(heads, edge_index.size(1), generator=g, dtype=torch.float64)
    dense = torch.randn(heads, num_src, channels, generator=g, dtype=torch.float64)
    sg = SparseGraph.from_edge_index(edge_index, num_src, num_dst)
    with csr_kernels(csr):
        out = ops.spmm(sg, sg.to_csr_order(values.t()).t(), dense)
    expected = dense_adjacency(edge_index, values, num_src, num_dst) @ dense
    assert out.shape == (heads, num_dst, channels)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


@FAST
@given(graph=bipartite_graphs(), heads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_segment_softmax_equals_per_target_softmax(graph, heads, seed):
    num_src, num_dst, edge_index = graph
    scores = 3 * torch.randn(heads, edge_index.size(1), generator=_gen(seed), dtype=torch.float64)
    sg = SparseGraph.from_edge_index(edge_index, num_src, num_dst)
    out = sg.to_edge_order(ops.segment_softmax(sg.to_csr_order(scores.t()).t(), sg).t()).t()
    torch.testing.assert_close(out, segment_softmax_reference(scores, edge_index, num_dst), atol=1e-12, rtol=0)


@FAST
@given(graph=bipartite_graphs(), heads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_segment_sum_adds_edge_values_into_their_targets(graph, heads, seed):
    num_src, num_dst, edge_index = graph
    values = torch.randn(heads, edge_index.size(1), 2, generator=_gen(seed), dtype=torch.float64)
    sg = SparseGraph.from_edge_index(edge_index, num_src, num_dst)
    out = ops.segment_sum(sg.to_csr_order(values.transpose(0, 1)).transpose(0, 1), sg)
    expected = values.new_zeros(heads, num_dst, 2).index_add_(1, edge_index[1], values)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


def test_segment_softmax_is_stable_for_large_scores():
    edge_index = torch.tensor([[0, 1, 2], [0, 0, 0]])
    sg = SparseGraph.from_edge_index(edge_index, 3)
    scores = torch.tensor([[1000.0, 1000.0, -1000.0]])
    out = ops.segment_softmax(scores, sg)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5, 0.0]]))


def test_segment_softmax_minus_inf_gives_zero_and_never_nan():
    # target 0: one finite score and one -inf; target 1: only -inf scores
    edge_index = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 1]])
    sg = SparseGraph.from_edge_index(edge_index, 2)
    inf = float("-inf")
    scores = torch.tensor([[0.5, inf, inf, inf]], dtype=torch.float64, requires_grad=True)
    out = ops.segment_softmax(scores, sg)
    assert out.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    (grad,) = torch.autograd.grad(out.sum(), scores)
    assert torch.isfinite(grad).all()


@KERNELS
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_dtypes_match_float64(dtype, csr):
    """Half-precision inputs, float32 arithmetic: sddmm is exact to float32, spmm is rounded once to dtype."""
    g = _gen(0)
    edge_index = torch.tensor([[2, 0, 1, 1, 0], [0, 1, 1, 0, 1]])
    sg = SparseGraph.from_edge_index(edge_index, 3, 2)
    a, b = torch.randn(2, 2, 4, generator=g).to(dtype), torch.randn(2, 3, 4, generator=g).to(dtype)
    values = torch.rand(2, 5, generator=g).to(dtype)
    with csr_kernels(csr):
        scores, out = ops.sddmm(sg, a, b), ops.spmm(sg, values, b)
    assert scores.dtype == torch.float32 and out.dtype == dtype
    torch.testing.assert_close(scores.double(), ops.sddmm(sg, a.double(), b.double()), atol=1e-6, rtol=1e-6)
    exact = ops.spmm(sg, values.double(), b.double())
    assert ((out.double() - exact).abs() <= 0.505 * torch.finfo(dtype).eps * exact.abs() + 1e-6).all()


@KERNELS
def test_kernels_on_a_graph_without_edges(csr):
    sg = SparseGraph.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 3, 4)
    a, b = torch.randn(2, 4, 5, requires_grad=True), torch.randn(2, 3, 5, requires_grad=True)
    with csr_kernels(csr):
        s = ops.sddmm(sg, a, b)
        assert s.shape == (2, 0)
        w = ops.segment_softmax(s, sg)
        out = ops.spmm(sg, w, b)
    assert out.shape == (2, 4, 5) and not out.any()
    (out.sum() + s.sum()).backward()
    assert a.grad is not None and not a.grad.any() and b.grad is not None and not b.grad.any()


# ------------------------------------------------------------- gradients
# unsorted edges, a duplicate edge (1 -> 2 twice), a self-loop (0 -> 0), and
# isolated nodes (target 4 and source 5 have no edge)
GRAD_EDGES = torch.tensor([[3, 1, 0, 1, 2, 0, 3], [2, 2, 0, 2, 1, 3, 0]])
GRAD_SIZES = [(6, 5), (6, 6)]


@KERNELS
@pytest.mark.parametrize("num_src,num_dst", GRAD_SIZES)
def test_gradcheck_sddmm(num_src, num_dst, csr):
    sg = SparseGraph.from_edge_index(GRAD_EDGES, num_src, num_dst)
    assert sg.perm is not None  # the edges really are out of CSR order
    g = _gen(1)
    a = torch.randn(2, num_dst, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, num_src, 3, generator=g, dtype=torch.float64, requires_grad=True)
    with csr_kernels(csr):
        assert torch.autograd.gradcheck(lambda a, b: ops.sddmm(sg, a, b), (a, b))
        assert torch.autograd.gradgradcheck(lambda a, b: ops.sddmm(sg, a, b), (a, b))


@KERNELS
@pytest.mark.parametrize("num_src,num_dst", GRAD_SIZES)
def test_gradcheck_spmm(num_src, num_dst, csr):
    sg = SparseGraph.from_edge_index(GRAD_EDGES, num_src, num_dst)
    g = _gen(2)
    values = torch.randn(2, GRAD_EDGES.size(1), generator=g, dtype=torch.float64, requires_grad=True)
    dense = torch.randn(2, num_src, 3, generator=g, dtype=torch.float64, requires_grad=True)
    with csr_kernels(csr):
        assert torch.autograd.gradcheck(lambda v, d: ops.spmm(sg, v, d), (values, dense))
        assert torch.autograd.gradgradcheck(lambda v, d: ops.spmm(sg, v, d), (values, dense))


@pytest.mark.parametrize("num_src,num_dst", GRAD_SIZES)
def test_gradcheck_segment_softmax_and_segment_sum(num_src, num_dst):
    sg = SparseGraph.from_edge_index(GRAD_EDGES, num_src, num_dst)
    scores = torch.randn(2, GRAD_EDGES.size(1), generator=_gen(3), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: ops.segment_softmax(s, sg), (scores,))
    assert torch.autograd.gradgradcheck(lambda s: ops.segment_softmax(s, sg), (scores,))
    values = torch.randn(2, GRAD_EDGES.size(1), 3, generator=_gen(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: ops.segment_sum(v, sg), (values,))


@KERNELS
def test_gradcheck_full_message_passing(csr):
    """softmax(sddmm(q, k)) then spmm(., v): the sparse attention core, end to end."""
    sg = SparseGraph.from_edge_index(GRAD_EDGES, 6, 5)
    g = _gen(4)
    q = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def attend(q, k, v):
        return ops.spmm(sg, ops.segment_softmax(ops.sddmm(sg, q, k), sg), v)

    with csr_kernels(csr):
        assert torch.autograd.gradcheck(attend, (q, k, v))


# ------------------------------------------------------- half precision
class _LargestTensor(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest tensor (in elements) any operator returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_per_edge_memory_at_h_times_e(dtype):
    """No [H, E, C] gather: the largest tensor of a forward + backward is [H, E] or a node tensor [H, N, C]."""
    H, N, C, E = 4, 300, 16, 6000  # noqa: N806
    g = _gen(7)
    sg = SparseGraph.from_edge_index(torch.randint(0, N, (2, E), generator=g), N)
    q, k, v = (torch.randn(H, N, C, generator=g).to(dtype).requires_grad_() for _ in range(3))
    mode = _LargestTensor()
    with mode:
        w = ops.segment_softmax(ops.sddmm(sg, q, k), sg, dtype=dtype)
        out = ops.spmm(sg, w, v)
        out.sum().backward()
    assert w.dtype == dtype and out.dtype == dtype and q.grad.dtype == dtype
    assert mode.largest <= max(H * E, H * N * C) < H * E * C


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sums_accumulate_in_float32_at_in_degree_10000(dtype):
    """One target, 10,000 incoming edges: weights sum to 1 and the aggregate is a correctly rounded sum."""
    E, C = 10_000, 8  # noqa: N806
    sg = SparseGraph.from_edge_index(torch.stack([torch.arange(E), torch.zeros(E, dtype=torch.long)]), E, 1)
    g = _gen(8)
    scores = (3 * torch.randn(2, E, generator=g)).to(dtype)
    weights = ops.segment_softmax(scores, sg)
    assert weights.dtype == dtype
    exact = torch.softmax(scores.double(), dim=1)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(weights.double().sum(1), torch.ones(2, dtype=torch.float64), atol=4 * eps, rtol=0)
    assert ((weights.double() - exact).abs() <= 0.505 * eps * exact + torch.finfo(dtype).tiny * eps).all()
    v = torch.rand(2, E, C, generator=g).to(dtype)  # all positive: a half-precision running sum would stall
    out = ops.spmm(sg, weights, v)
    expected = torch.einsum("he,hec->hc", weights.double(), v.double()).unsqueeze(1)
    torch.testing.assert_close(out.double(), expected, atol=0, rtol=eps)
    ones = torch.ones(1, E, dtype=dtype)  # a half-precision running sum of ones stalls at 256 (bf16) / 2048 (fp16)
    assert ops.spmm(sg, ones, torch.ones(1, E, 1, dtype=dtype)).item() == torch.tensor(float(E)).to(dtype).item()
