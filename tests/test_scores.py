"""Tests of the score functions and their registry.

Each built-in score is compared with its formula written here edge by edge
(TransformerConv's dot score with edge features, GAT, GATv2, GCN and mean
weights), and user-defined scores (a function, a Score subclass with
parameters) must run on both execution paths with one meaning.

Legend: N nodes, E edges, H heads, C channels per head.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graphformer as gf
from graphformer import scores
from graphformer.structure import SparseGraph, causal_edge_index, complete_edge_index


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=1e-10)


# unsorted edges, a duplicate (2 -> 1 twice); node 4 sends but receives nothing
EDGES = torch.tensor([[1, 3, 0, 2, 2, 4, 1, 0], [0, 0, 1, 1, 1, 2, 3, 3]])[:, [5, 0, 7, 2, 4, 1, 6, 3]]


def edge_softmax(s, target, n):
    """Softmax of per-edge scores s [E, H] over the edges entering each target."""
    out = torch.zeros_like(s)
    for i in range(n):
        sel = target == i
        if sel.any():
            out[sel] = torch.softmax(s[sel], dim=0)
    return out


def aggregate(weights, messages, target, n):
    """out[i] = sum over edges e entering i of weights[e, h] * messages[e, h, :] -> [n, H, C]."""
    return messages.new_zeros(n, *messages.shape[1:]).index_add_(0, target, weights.unsqueeze(-1) * messages)


# ------------------------------------------------------------------ registry
def test_registry_lists_and_builds_the_built_in_scores():
    names = gf.available_scores()
    for name, cls in [
        ("dot", scores.DotScore),
        ("additive", scores.AdditiveScore),
        ("gat", scores.AdditiveScore),
        ("gatv2", scores.GATv2Score),
        ("gcn", scores.GCNScore),
        ("mean", scores.MeanScore),
    ]:
        assert name in names
        assert isinstance(scores.make_score(name, num_heads=2, head_dim=3), cls)
    instance = scores.DotScore(2, 3)
    assert scores.make_score(instance, 2, 3) is instance
    assert names == sorted(names)


def test_make_score_rejects_unknown_names_and_types():
    with pytest.raises(ValueError, match="unknown score 'nope'.*register_score"):
        scores.make_score("nope", 1, 1)
    with pytest.raises(TypeError, match="score must be a name or a Score"):
        scores.make_score(1.5, 1, 1)


def test_register_score_rejects_bad_arguments():
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        gf.register_score("", lambda q, k: (q * k).sum(-1))
    with pytest.raises(TypeError, match="a score must be a Score subclass or a function"):
        gf.register_score("test_not_callable", 3)
    assert "test_not_callable" not in gf.available_scores()


def test_base_score_methods_must_be_overridden():
    with pytest.raises(NotImplementedError):
        gf.Score().sparse(None, None, None, None)
    with pytest.raises(NotImplementedError):
        gf.Score().dense(None, None, None)


def test_gat_is_an_alias_of_additive():
    torch.manual_seed(0)
    a = gf.GraphAttention(4, 2, score="gat").double()
    torch.manual_seed(0)
    b = gf.GraphAttention(4, 2, score="additive").double()
    x = randn(5, 4)
    close(a(x, EDGES), b(x, EDGES))


# --------------------------------------------------------- user-defined scores
def _scaled_l2(q, k):
    return -((q - k) ** 2).sum(-1)


def _raw_product(q, k):
    return (q * k).sum(-1).sigmoid()


class BilinearScore(gf.Score):
    """s_ij = q_i^T W_h k_j with a learned C x C matrix per head."""

    def __init__(self, num_heads, head_dim, edge_dim=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_heads, head_dim, head_dim) / head_dim)

    def sparse(self, q, k, graph, edge):
        return ((q @ self.weight)[:, graph.row] * k[:, graph.col]).sum(-1)

    def dense(self, q, k, mask):
        return q @ self.weight @ k.transpose(-1, -2)


@pytest.fixture(autouse=True, scope="module")
def _test_scores():
    """The user-defined scores of these tests, registered only while they run."""
    with (
        gf.registered_score("test_neg_l2", _scaled_l2),
        gf.registered_score("test_raw_product", _raw_product, softmax=False),
        gf.registered_score("test_bilinear", BilinearScore),
    ):
        yield


@pytest.mark.parametrize("name", ["test_neg_l2", "test_raw_product", "test_bilinear"])
@pytest.mark.parametrize("causal", [False, True])
def test_custom_scores_run_on_both_paths(name, causal):
    assert name in gf.available_scores()
    torch.manual_seed(1)
    layer = gf.GraphAttention(6, 2, score=name).double()
    x = randn(2, 5, 6, seed=2)
    dense = layer(x, causal=causal)
    edge_index = causal_edge_index(5) if causal else complete_edge_index(5)
    close(torch.stack([layer(x[b], edge_index) for b in range(2)]), dense)
    out, att = layer(x[0], edge_index, return_attention=True)
    q, k = layer._heads(layer.q_proj(x[0])), layer._heads(layer.k_proj(x[0]))  # [H, N, C]
    j, i = edge_index
    if name == "test_bilinear":
        expected = ((q @ layer.score.weight)[:, i] * k[:, j]).sum(-1).t()
    else:
        expected = globals()[{"test_neg_l2": "_scaled_l2", "test_raw_product": "_raw_product"}[name]](
            q[:, i], k[:, j]
        ).t()
    close(att.scores, expected)
    if name == "test_raw_product":  # without softmax the score is the weight
        close(att.weights, expected)


def test_custom_score_parameters_are_trained():
    layer = gf.GraphAttention(4, 2, score="test_bilinear").double()
    assert any(p is layer.score.weight for p in layer.parameters())
    out = layer(randn(5, 4), EDGES)
    (grad,) = torch.autograd.grad(out.square().sum(), layer.score.weight)
    assert grad.abs().sum() > 0


# ------------------------------------------------- built-ins against formulas
def test_dot_score_with_edge_features_is_transformer_conv():
    r"""s_ij = q_i . (k_j + e_ij) / sqrt(C); out_i = W_o sum_j a_ij (v_j + e_ij)."""
    torch.manual_seed(3)
    layer = gf.GraphAttention(6, 2, edge_dim=3).double()
    x, e = randn(5, 6, seed=4), randn(EDGES.size(1), 3, seed=5)
    H, C, n = 2, 3, 5
    q, k, v = (lin(x).view(n, H, C) for lin in (layer.q_proj, layer.k_proj, layer.v_proj))
    ep = layer.edge_proj(e).view(-1, H, C)
    j, i = EDGES
    s = (q[i] * (k[j] + ep)).sum(-1) / math.sqrt(C)  # [E, H]
    a = edge_softmax(s, i, n)
    expected = layer.out_proj(aggregate(a, v[j] + ep, i, n).reshape(n, H * C))
    out, att = layer(x, EDGES, edge_attr=e, return_attention=True)
    close(out, expected)
    close(att.scores, s)
    close(att.weights, a)


@pytest.mark.parametrize("edge_dim", [None, 3])
def test_additive_score_is_gat(edge_dim):
    r"""s_ij = LeakyReLU(a_dst . W x_i + a_src . W x_j + a_e . W_e e_ij); out_i = sum_j a_ij W x_j (+ bias)."""
    torch.manual_seed(6)
    score = scores.AdditiveScore(2, 3, edge_dim=edge_dim, negative_slope=0.1)
    layer = gf.GraphAttention(6, 2, score=score, edge_dim=edge_dim, out_proj=False).double()
    with torch.no_grad():
        layer.bias.normal_()
    x, e = randn(5, 6, seed=7), randn(EDGES.size(1), 3, seed=8)
    H, C, n = 2, 3, 5
    h = layer.v_proj(x).view(n, H, C)  # GAT shares one weight matrix between query and value
    j, i = EDGES
    s = (h[i] * score.att_dst).sum(-1) + (h[j] * score.att_src).sum(-1)
    if edge_dim is not None:
        s = s + (layer.edge_proj(e).view(-1, H, C) * score.att_edge).sum(-1)
    a = edge_softmax(F.leaky_relu(s, 0.1), i, n)
    expected = aggregate(a, h[j], i, n).reshape(n, H * C) + layer.bias
    out = layer(x, EDGES, edge_attr=e if edge_dim else None)
    close(out, expected)
    assert layer.q_proj is None and layer.k_proj is None


def test_gatv2_score_formula():
    r"""s_ij = a . LeakyReLU(W_q x_i + W_v x_j + W_e e_ij)."""
    torch.manual_seed(9)
    layer = gf.GraphAttention(6, 2, score="gatv2", edge_dim=3, out_proj=False, concat=False).double()
    x, e = randn(5, 6, seed=10), randn(EDGES.size(1), 3, seed=11)
    H, C, n = 2, 3, 5
    q, v = layer.q_proj(x).view(n, H, C), layer.v_proj(x).view(n, H, C)
    j, i = EDGES
    s = (F.leaky_relu(q[i] + v[j] + layer.edge_proj(e).view(-1, H, C), 0.2) * layer.score.att).sum(-1)
    expected = aggregate(edge_softmax(s, i, n), v[j], i, n).mean(1) + layer.bias  # concat=False: head mean
    close(layer(x, EDGES, edge_attr=e), expected)


@pytest.mark.parametrize("name", ["gcn", "mean"])
def test_fixed_weights_on_the_complete_graph_are_uniform(name):
    layer = gf.GraphAttention(4, 2, score=name).double()
    x = randn(3, 5, 4)
    _, att = layer(x, return_attention=True)
    close(att.weights, torch.full((3, 2, 5, 5), 0.2, dtype=torch.float64))
    _, att = layer(x[0], complete_edge_index(5), return_attention=True)
    close(att.weights, torch.full((25, 2), 0.2, dtype=torch.float64))


def test_gcn_weights_are_symmetric_degree_normalised():
    layer = gf.GraphAttention(4, 1, score="gcn").double()
    _, att = layer(randn(5, 4), EDGES, return_attention=True)
    deg = torch.bincount(EDGES[1], minlength=5).double()  # in-degrees; node 4 has none
    j, i = EDGES
    expected = (deg[i] * deg[j]).rsqrt()
    close(att.weights[:, 0], expected.masked_fill(deg[j] == 0, 0.0))  # as PyG's gcn_norm: 1/sqrt(0) -> 0


def test_gcn_on_a_bipartite_graph_uses_source_out_degrees():
    layer = gf.GraphAttention(4, 1, score="gcn").double()
    edge_index = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 1]])  # 3 sources -> 2 targets
    _, att = layer((randn(3, 4), randn(2, 4)), edge_index, return_attention=True)
    deg_dst, deg_src = torch.tensor([2.0, 2.0]).double(), torch.tensor([1.0, 2.0, 1.0]).double()
    close(att.weights[:, 0], (deg_dst[edge_index[1]] * deg_src[edge_index[0]]).rsqrt())
    _, dense = layer((randn(1, 3, 4), randn(1, 2, 4)), return_attention=True)  # complete bipartite: 1/sqrt(3 * 2)
    close(dense.weights, torch.full((1, 1, 2, 3), 1 / math.sqrt(6), dtype=torch.float64))


def test_fixed_weight_scores_take_one_weight_per_edge():
    layer = gf.GraphAttention(4, 1, score="mean")
    with pytest.raises(ValueError, match=r"edge_attr with features needs the layer built with edge_dim"):
        layer(torch.randn(5, 4), EDGES, edge_attr=torch.randn(EDGES.size(1), 2))
    with pytest.raises(ValueError, match=r"one weight per edge, shape \[E\]"):
        layer.score.sparse(
            None, torch.randn(1, 5, 4), SparseGraph.from_edge_index(EDGES, 5), torch.randn(1, EDGES.size(1), 4)
        )


@pytest.mark.parametrize("name", ["dot", "additive", "gatv2"])
def test_learned_scores_reject_a_scalar_edge_weight(name):
    layer = gf.GraphAttention(4, 2, score=name)
    with pytest.raises(ValueError, match=f"'{name}' score takes edge features.*edge_dim"):
        layer(torch.randn(5, 4), EDGES, edge_attr=torch.rand(EDGES.size(1)))


# ------------------------------------------------------------- the registry
def _l1(q, k):
    return -(q - k).abs().sum(-1)


def test_registering_an_existing_name_raises_unless_override():
    for name in ("dot", "test_neg_l2"):
        with pytest.raises(ValueError, match=f"'{name}' is already registered.*override=True"):
            gf.register_score(name, _l1)
    assert isinstance(scores.make_score("dot", 2, 3), scores.DotScore)  # the built-in is still there
    with gf.registered_score("dot", _l1, override=True):
        assert isinstance(scores.make_score("dot", 2, 3), scores.FunctionScore)
        assert not gf.GraphAttention(6, 2)._sdpa_ok()  # an override does replace the fused kernel's score
    assert isinstance(scores.make_score("dot", 2, 3), scores.DotScore)  # restored after the block


def test_unregister_score_removes_names_and_restores_built_ins():
    before = gf.available_scores()
    gf.register_score("test_l1", _l1)
    assert "test_l1" in gf.available_scores()
    gf.unregister_score("test_l1")
    assert gf.available_scores() == before
    with pytest.raises(ValueError, match="no score named 'test_l1'"):
        gf.unregister_score("test_l1")
    gf.register_score("mean", _l1, override=True)
    gf.unregister_score("mean")  # an overridden built-in gets its built-in back
    assert isinstance(scores.make_score("mean", 1, 1), scores.MeanScore)
    with pytest.raises(ValueError, match="built-in score and cannot be unregistered"):
        gf.unregister_score("mean")
    with pytest.raises(TypeError, match="non-empty string"):
        gf.unregister_score("")


def test_registered_score_restores_the_registry_after_an_error():
    before = gf.available_scores()
    with pytest.raises(RuntimeError, match="inside"):
        with gf.registered_score("test_l1", _l1):
            assert "test_l1" in gf.available_scores()
            raise RuntimeError("inside")
    assert gf.available_scores() == before
    with pytest.raises(ValueError, match="already registered"), gf.registered_score("gcn", _l1):
        pass
    assert isinstance(scores.make_score("gcn", 1, 1), scores.GCNScore)


def test_rotary_lives_in_scores_and_encodings_re_exports_it():
    from graphformer import encodings

    assert scores._BUILT_IN["rotary"] is scores.RotaryScore  # built in, not registered by importing encodings
    for name in ("Rotary", "RotaryScore", "apply_rotary"):
        assert getattr(encodings, name) is getattr(scores, name) and name in encodings.__all__
    assert isinstance(scores.make_score("rotary", 2, 4), scores.RotaryScore)


# ------------------------------------------------------- edge features, reset
@pytest.mark.parametrize("name", ["gcn", "mean", "sum", "test_neg_l2", "test_bilinear"])
def test_scores_that_ignore_edge_features_refuse_edge_dim(name):
    with pytest.raises(ValueError, match="reads no edge features, so edge_dim=3"):
        gf.GraphAttention(6, 2, score=name, edge_dim=3)


@pytest.mark.parametrize("name", ["dot", "additive", "gatv2", "rotary"])
def test_scores_that_read_edge_features_train_the_edge_projection(name):
    layer = gf.GraphAttention(6, 2, score=name, edge_dim=3).double()
    out = layer(randn(5, 6), EDGES, edge_attr=randn(EDGES.size(1), 3, seed=1))
    (grad,) = torch.autograd.grad(out.square().sum(), layer.edge_proj.weight)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["dot", "additive", "gatv2", "gcn", "mean", "sum", "rotary", "test_bilinear"])
def test_reset_parameters_resets_every_score(name):
    edge_dim = 3 if name in ("additive", "gatv2") else None
    layer = gf.GraphAttention(6, 2, score=name, edge_dim=edge_dim)
    params = list(layer.score.parameters())
    with torch.no_grad():
        for p in params:
            p.fill_(7.0)
    torch.manual_seed(5)
    layer.reset_parameters()
    if name == "test_bilinear":  # a user subclass without reset_parameters keeps its values: nothing to reset
        assert all((p == 7.0).all() for p in params)
        return
    for p in params:  # re-drawn: xavier-uniform values, not the filled ones
        assert not (p == 7.0).any() and p.abs().max() <= math.sqrt(6 / (p.size(0) + p.size(1)))
    snapshot = [p.detach().clone() for p in params]
    torch.manual_seed(5)
    layer.reset_parameters()
    for p, s in zip(params, snapshot):
        torch.testing.assert_close(p.detach(), s)
