"""graphformer.diagnostics: each measure against a direct numpy computation, collapse, and the recorder."""

import math

import numpy as np
import pytest
import torch

import graphformer as gf
from graphformer import diagnostics as dg
from graphformer.layers import GraphformerEncoder
from graphformer.models.graph import GCN, GPS, GATSep


def _np_energy(x, ei):
    return sum(np.sum((x[i] - x[j]) ** 2) for j, i in ei.T) / x.shape[0]


def _np_rank_one(x):
    return np.linalg.norm(x - x.mean(0, keepdims=True)) / np.linalg.norm(x)


def _np_numerical_rank(x):
    s = np.linalg.svd(x, compute_uv=False)
    return np.sum(s**2) / s[0] ** 2


def _np_effective_rank(x):
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(-np.sum(p * np.log(p)))


def _graph(n=9, e=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=gen)


# ------------------------------------------------------------ against numpy
def test_measures_equal_numpy():
    x = torch.randn(9, 5, dtype=torch.float64)
    ei = _graph()
    xn, ein = x.numpy(), ei.numpy()
    assert float(dg.dirichlet_energy(x, ei)) == pytest.approx(_np_energy(xn, ein), rel=1e-12)
    assert float(dg.rank_one_distance(x)) == pytest.approx(_np_rank_one(xn), rel=1e-12)
    assert float(dg.numerical_rank(x)) == pytest.approx(_np_numerical_rank(xn), rel=1e-10)
    assert float(dg.effective_rank(x)) == pytest.approx(_np_effective_rank(xn), rel=1e-10)
    # numpy input is accepted too
    assert float(dg.effective_rank(xn)) == pytest.approx(_np_effective_rank(xn), rel=1e-10)


def test_complete_graph_energy_closed_form_equals_all_pairs():
    x = torch.randn(7, 3, dtype=torch.float64)
    all_pairs = torch.cartesian_prod(torch.arange(7), torch.arange(7)).t()
    explicit = dg.dirichlet_energy(x, all_pairs)
    torch.testing.assert_close(dg.dirichlet_energy(x), explicit)
    # E_complete = 2 ||X - 1 x_bar^T||_F^2, so rank_one_distance^2 = E / (2 ||X||_F^2)
    torch.testing.assert_close(dg.rank_one_distance(x) ** 2, explicit / (2 * x.pow(2).sum()))
    # a prepared SparseGraph gives the same energy as its edges (self-loops add nothing)
    model = GCN(3, 4, 2)
    graph = model.prepare(_graph(7, 20), 7)
    torch.testing.assert_close(dg.dirichlet_energy(x, graph), dg.dirichlet_energy(x, _graph(7, 20)))


def test_batched_input_gives_one_value_per_graph():
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    ei = _graph(6, 15)
    for fn, args in (
        (dg.dirichlet_energy, (ei,)),
        (dg.dirichlet_energy, ()),
        (dg.rank_one_distance, ()),
        (dg.numerical_rank, ()),
        (dg.effective_rank, ()),
    ):
        batched = fn(x, *args)
        assert batched.shape == (4,)
        torch.testing.assert_close(batched, torch.stack([fn(x[b], *args) for b in range(4)]))


# ------------------------------------------------------- degenerate inputs
def test_zero_matrix_isolated_nodes_and_empty_give_no_nan():
    zero = torch.zeros(5, 3)
    for fn in (dg.dirichlet_energy, dg.rank_one_distance, dg.numerical_rank, dg.effective_rank):
        assert float(fn(zero)) == 0.0
        assert float(fn(torch.zeros(0, 3))) == 0.0
    x = torch.randn(6, 2)
    no_edges = torch.zeros(2, 0, dtype=torch.long)
    assert float(dg.dirichlet_energy(x, no_edges)) == 0.0


def test_rank_one_matrix():
    x = torch.ones(8, 1) @ torch.randn(1, 5)  # every row the same vector
    assert float(dg.rank_one_distance(x)) == pytest.approx(0.0, abs=1e-6)
    assert float(dg.dirichlet_energy(x)) == pytest.approx(0.0, abs=1e-5)
    assert float(dg.numerical_rank(x)) == pytest.approx(1.0, abs=1e-5)
    assert float(dg.effective_rank(x)) == pytest.approx(1.0, abs=1e-3)
    # an orthogonal matrix has all singular values equal: both ranks are full
    q = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    assert float(dg.numerical_rank(q)) == pytest.approx(6.0)
    assert float(dg.effective_rank(q)) == pytest.approx(6.0)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        dg.rank_one_distance(torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="edge_index"):
        dg.dirichlet_energy(torch.randn(4, 2), torch.randn(2, 3))
    with pytest.raises(ValueError, match="4 nodes"):
        dg.dirichlet_energy(torch.randn(4, 2), torch.tensor([[0, 5], [1, 2]]))
    with pytest.raises(ValueError, match="reduction"):
        dg.attention_entropy(torch.rand(2, 3, 3), reduction="sum")


# -------------------------------------------------------- attention entropy
def _np_entropy_sparse(w, ei, n):
    """w [E, H]: per-target entropy in bits, averaged over heads; nan where nothing arrives."""
    out = np.full(n, np.nan)
    for i in range(n):
        m = ei[1] == i
        if m.any():
            p = w[m] / w[m].sum(0, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                h = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=0)
            out[i] = h.mean()
    return out


def test_attention_entropy_sparse_equals_numpy_and_isolated_nodes_are_zero():
    n = 9
    ei = _graph(n, 25, seed=3)
    ei = ei[:, ei[1] != 8]  # node 8 receives nothing
    layer = gf.GraphAttention(4, num_heads=2)
    _, att = layer(torch.randn(n, 4), ei, return_attention=True)
    per_node = dg.attention_entropy(att, num_nodes=n, reduction="none")
    expected = _np_entropy_sparse(att.weights.detach().double().numpy(), att.edge_index.numpy(), n)
    assert per_node.shape == (n,)
    received = ~np.isnan(expected)
    np.testing.assert_allclose(per_node.double().numpy()[received], expected[received], rtol=1e-5, atol=1e-6)
    assert float(per_node[8]) == 0.0 and torch.isfinite(per_node).all()
    assert float(dg.attention_entropy(att, num_nodes=n)) == pytest.approx(expected[received].mean(), rel=1e-5)


def test_attention_entropy_dense_uniform_and_one_hot():
    n = 8
    uniform = torch.full((2, 3, n, n), 1.0 / n)  # [B, H, M, N]
    torch.testing.assert_close(dg.attention_entropy(uniform), torch.full((2,), 3.0))  # log2 8 bits
    one_hot = torch.eye(n).expand(3, n, n)  # [H, M, N]: each node listens to itself only
    assert float(dg.attention_entropy(one_hot)) == 0.0
    # a dense record from the layer, against numpy
    layer = gf.GraphAttention(4, num_heads=2)
    x = torch.randn(2, 5, 4)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    _, att = layer(x, key_padding_mask=pad, return_attention=True)
    w = att.weights.detach().double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(w > 0, w * np.log2(w), 0.0).sum(-1).mean(1)  # [B, M]
    np.testing.assert_allclose(dg.attention_entropy(att, reduction="none").double().numpy(), h, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- collapse
def test_pure_attention_collapses_to_rank_one_and_residuals_prevent_it():
    torch.manual_seed(0)
    x = torch.randn(12, 16)
    layers = [gf.GraphAttention(16, num_heads=2) for _ in range(12)]
    with torch.no_grad():
        h, r = x, x
        pure, resid = [], []
        for layer in layers:
            h = layer(h)
            r = r + layer(r)
            pure.append(float(dg.rank_one_distance(h)))
            resid.append(float(dg.rank_one_distance(r)))
    assert pure[-1] < 1e-3 * float(dg.rank_one_distance(x))
    assert resid[-1] > 0.1


def test_gcn_oversmooths_on_a_regular_graph():
    n = 8
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    ring = torch.cat([ring, ring.flip(0)], 1)
    conv = gf.GraphAttention(3, score="gcn", out_proj=False, bias=False, self_loops="remaining").double()
    with torch.no_grad():
        conv.v_proj.weight.copy_(torch.eye(3))  # H <- D^-1/2 (A + I) D^-1/2 H, no weights
    h = torch.randn(n, 3, dtype=torch.float64)
    energies = [float(dg.dirichlet_energy(h, ring))]
    with torch.no_grad():
        for _ in range(40):
            h = conv(h, ring)
            energies.append(float(dg.dirichlet_energy(h, ring)))
    # each layer shrinks the energy by at least lambda_2^2, lambda_2 = (1 + 2 cos(2 pi / n)) / 3
    lam2 = (1 + 2 * math.cos(2 * math.pi / n)) / 3
    assert all(b <= a * lam2**2 + 1e-12 for a, b in zip(energies, energies[1:]))
    assert energies[-1] < 1e-6 * energies[0]
    assert float(dg.rank_one_distance(h)) < 1e-3


# ---------------------------------------------------------------- recorder
def test_recorder_on_an_encoder_matches_direct_measures():
    enc = GraphformerEncoder(gf.GraphformerLayer(8, 2, 16, dropout=0.0), 3).eval()
    x = torch.randn(2, 6, 8)
    with dg.Recorder(enc) as rec:
        out = enc(x)
    assert [r.index for r in rec.records] == [0, 1, 2, 3]
    assert [r.name for r in rec.records] == ["input", "layers.0", "layers.1", "layers.2"]
    h, expected = x, [x]
    with torch.no_grad():
        for layer in enc.layers:
            h = layer(h)
            expected.append(h)
    torch.testing.assert_close(expected[-1], out)
    for r, h in zip(rec.records, expected):
        hd = h.double()
        assert r.rank_one_distance == pytest.approx(float(dg.rank_one_distance(hd).mean()), rel=1e-9)
        assert r.effective_rank == pytest.approx(float(dg.effective_rank(hd).mean()), rel=1e-9)
        assert r.dirichlet_energy == pytest.approx(float(dg.dirichlet_energy(hd).mean()), rel=1e-9)
    # entropy of each layer's self-attention on its (normalised) input
    with torch.no_grad():
        _, att = enc.layers[1].self_attn(
            enc.layers[1].norm1(expected[1]) if enc.layers[1].norm_first else expected[1], return_attention=True
        )
    assert rec.records[2].attention_entropy == pytest.approx(float(dg.attention_entropy(att).mean()), rel=1e-6)
    assert rec.records[0].attention_entropy is None
    curves = rec.curves()
    assert len(curves["numerical_rank"]) == 4 and "attention_entropy" in curves
    assert "layers.2" in rec.table()


def test_recorder_reads_the_graph_of_each_call_and_removes_its_hooks():
    x, ei = torch.randn(10, 4), _graph(10, 30)
    model = GCN(4, 6, 3, num_layers=3).eval()
    with dg.record(model, "convs.1 convs.2".split(), attention=False) as rec:
        model(x, ei)
    assert [r.name for r in rec.records] == ["input", "convs.1", "convs.2"]
    with torch.no_grad():
        h1 = model.convs[1](model.convs[0](x, ei).relu(), ei)
        h2 = model.convs[2](h1.relu(), ei)
    assert rec.records[2].dirichlet_energy == pytest.approx(float(dg.dirichlet_energy(h2.double(), ei)), rel=1e-6)
    assert rec.records[1].dirichlet_energy == pytest.approx(float(dg.dirichlet_energy(h1.double(), ei)), rel=1e-6)
    assert all(r.attention_entropy is None for r in rec.records)
    model(x, ei)  # hooks are gone: nothing more is recorded
    assert len(rec.records) == 3
    assert not any(m._forward_hooks for m in model.modules())


def test_recorder_selection_and_errors():
    model = GCN(4, 6, 3, num_layers=3)
    assert [n for n, _ in dg.Recorder(model).modules] == ["convs.0", "convs.1", "convs.2"]
    assert [n for n, _ in dg.Recorder(model, gf.GraphAttention).modules] == ["convs.0", "convs.1", "convs.2"]
    assert [n for n, _ in dg.Recorder(model, [model.convs[1]]).modules] == ["convs.1"]
    # by default the blocks of the layer-based models, not the attention inside them
    assert [n for n, _ in dg.Recorder(GATSep(4, 8, 2, num_layers=2, num_heads=2)).modules] == ["layers.0", "layers.1"]
    assert [n for n, _ in dg.Recorder(GPS(4, 8, 2, num_layers=3, num_heads=2)).modules] == [
        "layers.0",
        "layers.1",
        "layers.2",
    ]
    # a module inside another chosen one is dropped
    assert [n for n, _ in dg.Recorder(model, ["convs", "convs.1"]).modules] == ["convs"]
    with pytest.raises(ValueError, match="no submodule named"):
        dg.Recorder(model, ["convs.7"])
    with pytest.raises(TypeError, match="nn.Module"):
        dg.Recorder("model")
    with pytest.raises(ValueError, match="no module to hook"):
        dg.Recorder(torch.nn.Linear(2, 2))


def test_pyg_style_batch_gives_one_value_per_graph():
    sizes = [4, 6, 3]
    xs = [torch.randn(n, 3, dtype=torch.float64) for n in sizes]
    edges = [_graph(n, 8, seed=k) for k, n in enumerate(sizes)]
    offsets = [0, 4, 10]
    x = torch.cat(xs)
    ei = torch.cat([e + o for e, o in zip(edges, offsets)], 1)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    expected = torch.stack([dg.dirichlet_energy(xg, eg) for xg, eg in zip(xs, edges)])
    torch.testing.assert_close(dg.dirichlet_energy(x, ei, batch=batch), expected)
    torch.testing.assert_close(dg.dirichlet_energy(x, batch=batch), torch.stack([dg.dirichlet_energy(g) for g in xs]))
    for fn in (dg.rank_one_distance, dg.numerical_rank, dg.effective_rank):
        torch.testing.assert_close(fn(x, batch=batch), torch.stack([fn(g) for g in xs]))
    with pytest.raises(ValueError, match="joins two graphs"):
        dg.dirichlet_energy(x, torch.tensor([[0], [5]]), batch=batch)
    with pytest.raises(ValueError, match="graph id"):
        dg.rank_one_distance(x, batch=batch[:-1])


def test_recorder_reads_a_pyg_batch_as_many_graphs():
    layer = gf.GraphformerLayer(8, 2, 16, dropout=0.0).eval()
    sizes = [5, 7]
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    x = torch.randn(12, 8)
    with dg.record(layer) as rec:
        out = layer(x, batch=batch)  # two complete graphs
    per_graph = [out[:5].double(), out[5:].double()]
    expected = sum(float(dg.rank_one_distance(g)) for g in per_graph) / 2
    assert rec.records[1].rank_one_distance == pytest.approx(expected, rel=1e-9)
    energy = sum(float(dg.dirichlet_energy(g)) for g in per_graph) / 2
    assert rec.records[1].dirichlet_energy == pytest.approx(energy, rel=1e-9)
