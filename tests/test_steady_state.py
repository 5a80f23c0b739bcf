"""Steady state: no device-to-host reads and no graph breaks once a graph is prepared.

A read of device memory from Python (``.item()``, ``bool(t)``, ``int(t)``,
``.tolist()``, an operator whose output size depends on the data such as
``nonzero`` or boolean-mask indexing) is a host sync on a GPU: the CPU waits
for the device queue to drain. These tests count such reads on CPU, where
they are cheap but happen at exactly the same places:

* every ATen operator call, in the forward and the backward pass, goes
  through a :class:`~torch.utils._python_dispatch.TorchDispatchMode` that
  counts ``aten._local_scalar_dense`` (what ``item``, ``bool``, ``int`` and
  ``float`` of a tensor call) and the operators with data-dependent output
  shapes (``nonzero``, ``masked_select``, ``unique``, ``bincount``,
  ``repeat_interleave`` without ``output_size``, indexing with a bool mask);
* ``Tensor.tolist`` and ``Tensor.numpy``, which read memory without an
  operator call, are patched to count too.

The counter's own test shows it catches each kind, in forward and backward.
``torch.compile(fullgraph=True)`` raises on any graph break, so a compiled
call that runs is one graph; its outputs are compared with eager mode.

Legend: N nodes, E edges, B batch, H heads, d model width.
"""

import collections
import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import graphformer as gf
from graphformer.encodings import shortest_path_distances
from graphformer.models import (
    GAT,
    GCN,
    GPS,
    GraphPriorForecaster,
    GraphTransformer,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
)
from graphformer.structure import DenseBatch, SparseGraph

aten = torch.ops.aten
_DATA_DEPENDENT = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.allclose.default,
}
_INDEX = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}


class _ReadCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.reads = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _DATA_DEPENDENT:
            self.reads[str(func)] += 1
        elif func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            self.reads[str(func)] += 1
        elif func in _INDEX and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ())):
            self.reads[f"{func} with a bool mask"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_host_reads():
    """Count device-to-host reads inside the block (see the module docstring); yields a Counter."""
    counter = _ReadCounter()
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def counting(name):
        def read(self, *args, **kwargs):
            counter.reads[f"Tensor.{name}"] += 1
            return originals[name](self, *args, **kwargs)

        return read

    for name in originals:
        setattr(torch.Tensor, name, counting(name))
    try:
        with counter:
            yield counter.reads
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def reads_of(step) -> collections.Counter:
    """Reads of one call of ``step`` after a warm-up call."""
    step()
    with count_host_reads() as reads:
        step()
    return reads


def fwd_bwd(module, *args, **kwargs):
    """A step: forward, a loss, backward into the parameters and any input that requires grad."""

    def step():
        out = module(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        out.square().sum().backward()

    return step


# -------------------------------------------------------------- the counter
class _ReadInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float(grad.sum())  # a read in the backward pass


def test_the_counter_sees_every_kind_of_read_in_forward_and_backward():
    x = torch.randn(5, requires_grad=True)
    with count_host_reads() as reads:
        x.sum().item()
        bool(x[0] > 0)
        int(x.argmax())
        x.detach().tolist()
        x.detach().numpy()
        torch.nonzero(x > 0)
        x[x > 0]
        torch.bincount(torch.tensor([0, 2]))
        torch.repeat_interleave(torch.tensor([1, 2]))
        _ReadInBackward.apply(x).sum().backward()
    assert sum(reads.values()) == 10, reads
    with count_host_reads() as reads:
        torch.repeat_interleave(torch.tensor([1, 2]), output_size=3)  # the size is given: no read
        (x * 2).sum().backward()
    assert not reads, reads


# ------------------------------------------------ GraphAttention, prepared
N, D, H = 12, 8, 2
X = torch.randn(N, D, generator=torch.Generator().manual_seed(0))
EDGES = torch.randint(0, N, (2, 40), generator=torch.Generator().manual_seed(1))
GRAPH = SparseGraph.from_edge_index(EDGES, N)
SCORES = ["dot", "additive", "gatv2", "gcn", "mean", "sum", "rotary"]


@pytest.mark.parametrize("score", SCORES)
def test_prepared_sparse_graph_makes_no_host_reads(score):
    torch.manual_seed(2)
    edge_dim = 3 if score in ("dot", "additive", "gatv2") else None
    layer = gf.GraphAttention(D, H, score=score, edge_dim=edge_dim, dropout=0.1).train()
    x = X.clone().requires_grad_()
    kwargs = {"edge_attr": torch.randn(EDGES.size(1), 3)} if edge_dim else {}
    if score in ("dot", "additive", "gatv2", "rotary"):
        kwargs["attn_bias"] = torch.randn(EDGES.size(1), H)
    assert not reads_of(fwd_bwd(layer, x, GRAPH, **kwargs))
    assert not reads_of(fwd_bwd(layer, x, GRAPH, return_attention=True, **kwargs))
    bipartite = SparseGraph.from_edge_index(EDGES[:, EDGES[1] < 5], N, 5)
    assert not reads_of(fwd_bwd(layer, (x, X[:5]), bipartite))


@pytest.mark.parametrize("score", SCORES)
def test_dense_path_makes_no_host_reads(score):
    torch.manual_seed(3)
    layer = gf.GraphAttention(D, H, score=score, dropout=0.1).train()
    x = X.view(2, 6, D).clone().requires_grad_()
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    assert not reads_of(fwd_bwd(layer, x))
    assert not reads_of(fwd_bwd(layer, x, causal=True, key_padding_mask=pad))
    assert not reads_of(fwd_bwd(layer, (x, x[:, :3])))
    if score not in ("gcn", "mean", "sum"):
        assert not reads_of(fwd_bwd(layer, x, attn_bias=torch.randn(2, H, 6, 6), return_attention=True))


def test_raw_edge_index_is_checked_once():
    """One read checks the ids and whether the edges are sorted; self-loops add the read that counts them."""
    layer = gf.GraphAttention(D, H)
    assert sum(reads_of(fwd_bwd(layer, X, EDGES)).values()) == 1
    looped = gf.GraphAttention(D, H, self_loops="add")
    reads = reads_of(fwd_bwd(looped, X, EDGES))
    assert sum(reads.values()) == 2 and reads["aten.index.Tensor with a bool mask"] == 1, reads
    assert sum(reads_of(lambda: SparseGraph.from_edge_index(EDGES, N)).values()) == 1


def test_preparing_a_graph_still_checks_it():
    with pytest.raises(ValueError, match="refers to node 12"):
        SparseGraph.from_edge_index(torch.tensor([[0, 12], [1, 2]]), N)
    with pytest.raises(ValueError, match="negative node ids"):
        SparseGraph.from_edge_index(torch.tensor([[0, -1], [1, 2]]), N)
    unsorted = torch.tensor([[0, 1, 2], [2, 0, 1]])
    assert SparseGraph.from_edge_index(unsorted, 3).perm is not None
    assert SparseGraph.from_edge_index(unsorted[:, [1, 2, 0]], 3).perm is None


# ---------------------------------------------------------------- models
def _graph_batch():
    """Four graphs of 5 nodes (edges within each graph) and their packed hop distances."""
    batch = torch.arange(4).repeat_interleave(5)
    src = torch.randint(0, 5, (30,), generator=torch.Generator().manual_seed(4))
    dst = torch.randint(0, 5, (30,), generator=torch.Generator().manual_seed(5))
    graph_id = torch.arange(30) % 4
    edges = torch.stack([src + 5 * graph_id, dst + 5 * graph_id])
    return edges, batch, shortest_path_distances(edges, 20, 3, batch=batch)


def _sparse_models():
    torch.manual_seed(6)
    x = torch.randn(20, 6)
    edges, _, _ = _graph_batch()
    out = []
    for model in (GCN(6, 8, 3), GAT(6, 4, 3, heads=2), GraphTransformer(6, 8, 3, num_heads=2, attention="edges")):
        out.append((type(model).__name__, model, (x, model.prepare(edges, 20)), {}))
    gps = GPS(6, 8, 3, num_heads=2, max_distance=3)
    dist = shortest_path_distances(edges, 20, 3)
    out.append(("GPS", gps, (x, gps.prepare(edges, 20)), {"distance": dist}))  # one graph: no batch=
    complete = GraphTransformer(6, 8, 3, num_heads=2, attention="complete", max_distance=3)
    out.append(("GraphTransformer-complete", complete, (x,), {"distance": dist}))
    # many graphs: a prepared DenseBatch (every graph's complete graph, padded) and packed distances
    edges, batch, packed = _graph_batch()
    layout = DenseBatch.from_batch(batch)
    gps = GPS(6, 8, 3, num_heads=2, max_distance=3, graph_level=True)
    out.append(("GPS-batch", gps, (x, gps.prepare(edges, 20)), {"batch": layout, "distance": packed}))
    complete = GraphTransformer(6, 8, 3, num_heads=2, attention="complete", max_distance=3, graph_level=True)
    out.append(("GraphTransformer-complete-batch", complete, (x,), {"batch": layout, "distance": packed}))
    return out


def _forecasters():
    torch.manual_seed(7)
    x = torch.randn(2, 16, 3)
    prior = torch.tensor([[0, 1, 2, 1], [1, 0, 1, 2]])
    return [
        ("ITransformer", ITransformer(16, 4, d_model=8, num_heads=2, d_ff=16), (x,), {}),
        ("TemporalTransformer", TemporalTransformer(16, 4, 3, d_model=8, num_heads=2, d_ff=16), (x,), {}),
        ("PatchTransformer", PatchTransformer(16, 4, patch_len=4, stride=4, d_model=8, num_heads=2, d_ff=16), (x,), {}),
        ("GraphPriorForecaster", GraphPriorForecaster(16, 4, prior, 3, d_model=8, num_heads=2, d_ff=16), (x,), {}),
    ]


MODELS = _sparse_models() + _forecasters()


@pytest.mark.parametrize("name,model,args,kwargs", MODELS, ids=[m[0] for m in MODELS])
def test_models_on_prepared_graphs_make_no_host_reads(name, model, args, kwargs):
    model.eval()
    assert not reads_of(fwd_bwd(model, *args, **kwargs))  # distances are checked on the warm-up call only


def test_a_dense_batch_gives_what_the_batch_vector_gives():
    """The models' prepared layout computes what the ``batch=`` path of the layer computes."""
    torch.manual_seed(10)
    x = torch.randn(20, 6)
    edges, batch, packed = _graph_batch()
    layout = DenseBatch.from_batch(batch)
    reference = gf.GraphAttention(6, 2).eval()
    torch.testing.assert_close(
        layout.unpack(reference(layout.pack(x), key_padding_mask=layout.pad)),
        reference(x, batch=batch),
        atol=1e-6,
        rtol=1e-6,
    )
    for model in (
        GPS(6, 8, 3, num_heads=2, max_distance=3).eval(),
        GraphTransformer(6, 8, 3, num_heads=2, attention="complete", max_distance=3).eval(),
    ):
        args = (x, edges) if isinstance(model, GPS) else (x,)
        torch.testing.assert_close(
            model(*args, batch=layout, distance=packed), model(*args, batch=batch, distance=packed)
        )
    with pytest.raises(ValueError, match="increasing order"):
        DenseBatch.from_batch(torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="increasing order"):
        DenseBatch.from_batch(torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="integer tensor"):
        DenseBatch.from_batch(torch.zeros(3))


# ----------------------------------------------------------- torch.compile
def _compiled_equals_eager(module, *args, backend="aot_eager", **kwargs):
    """``aot_eager`` also traces the backward pass and the custom operators' fake kernels; ``eager``
    captures the graph with dynamo alone (enough to prove there is no graph break, and faster)."""
    torch._dynamo.reset()
    compiled = torch.compile(module, backend=backend, fullgraph=True)  # a graph break raises
    expected = module(*args, **kwargs)
    out = compiled(*args, **kwargs)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    return compiled


@pytest.mark.parametrize(
    "score", ["dot", pytest.param("additive", marks=pytest.mark.slow), pytest.param("gcn", marks=pytest.mark.slow)]
)
def test_graph_attention_compiles_fullgraph_on_every_path(score):
    torch.manual_seed(8)
    layer = gf.GraphAttention(D, H, score=score).eval()
    x = X.clone().requires_grad_()
    compiled = _compiled_equals_eager(layer, x, GRAPH)  # prepared sparse graph
    (grad,) = torch.autograd.grad(compiled(x, GRAPH).sum(), x)
    (expected,) = torch.autograd.grad(layer(x, GRAPH).sum(), x)
    torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compiled(X, EDGES), layer(X, EDGES), atol=1e-5, rtol=1e-5)  # raw edges
    dense = X.view(2, 6, D)
    torch.testing.assert_close(compiled(dense), layer(dense), atol=1e-5, rtol=1e-5)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 5] = True
    torch.testing.assert_close(
        compiled(dense, causal=True, key_padding_mask=pad),
        layer(dense, causal=True, key_padding_mask=pad),
        atol=1e-5,
        rtol=1e-5,
    )


def test_graph_attention_compiles_with_self_loops_and_half_precision():
    torch.manual_seed(9)
    layer = gf.GraphAttention(D, H, self_loops="add").eval()
    _compiled_equals_eager(layer, X, EDGES)
    half = gf.GraphAttention(D, H).to(torch.bfloat16).eval()
    _compiled_equals_eager(half, X.to(torch.bfloat16), GRAPH)


@pytest.mark.parametrize("name,model,args,kwargs", MODELS, ids=[m[0] for m in MODELS])
def test_models_compile_fullgraph(name, model, args, kwargs):
    model.eval()
    _compiled_equals_eager(model, *args, backend="eager", **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name,model,args,kwargs", MODELS, ids=[m[0] for m in MODELS])
def test_models_compile_fullgraph_with_aot_autograd(name, model, args, kwargs):
    model.eval()
    _compiled_equals_eager(model, *args, **kwargs)
