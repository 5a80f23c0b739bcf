"""models/forecasting.py: iTransformer, the temporal and patch transformers, the graph-prior forecaster."""

import pytest
import torch

import graphformer as gf
from conftest import FORECAST_DIMS, forecast_inputs, path_graph
from graphformer.data import correlation_knn_edges, load_series, prepare_forecast_data
from graphformer.models import (
    GraphPriorForecaster,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)

B, L, H, V, F = FORECAST_DIMS


def _models():
    small = dict(d_model=16, num_heads=2, d_ff=32, num_layers=2)
    return {
        "itransformer": ITransformer(L, H, **small),
        "temporal": TemporalTransformer(L, H, V, F, **small),
        "temporal-causal": TemporalTransformer(L, H, V, F, causal=True, **small),
        "patch": PatchTransformer(L, H, patch_len=8, stride=4, **small),
        "graph-dot": GraphPriorForecaster(L, H, path_graph(), V, **small),
        "graph-gcn": GraphPriorForecaster(L, H, path_graph(), V, score="gcn", **small),
        "graph-additive-mix": GraphPriorForecaster(L, H, path_graph(), V, score="additive", mix_complete=True, **small),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_output_shapes_and_gradients(name):
    model = _models()[name]
    x, x_mark, y_mark = forecast_inputs()
    y = model(x, x_mark, y_mark)
    assert y.shape == (B, H, V) and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_normalize_roundtrip_and_statistics():
    x, _, _ = forecast_inputs()
    z, stats = normalize(x)
    torch.testing.assert_close(z.mean(1), torch.zeros(B, V), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(1, unbiased=False), torch.ones(B, V), atol=1e-4, rtol=0)
    torch.testing.assert_close(stats.undo(z), x, atol=1e-5, rtol=1e-5)
    expected_std = torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)  # eps inside the sqrt
    torch.testing.assert_close(stats.std, expected_std)


@pytest.mark.parametrize("name", ["itransformer", "patch", "graph-dot", "temporal"])
def test_instance_norm_makes_forecasts_affine_equivariant(name):
    model = _models()[name].eval()
    x, x_mark, y_mark = forecast_inputs()
    with torch.no_grad():
        base = model(x, x_mark, y_mark)
        moved = model(10.0 * x - 7.0, x_mark, y_mark)
    torch.testing.assert_close(moved, 10.0 * base - 7.0, atol=1e-3, rtol=1e-4)


def test_itransformer_is_permutation_equivariant_over_variables():
    # the variables are the nodes of a complete graph: no node is first
    model = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32).eval()
    x, x_mark, _ = forecast_inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(model(x[..., perm], x_mark), model(x, x_mark)[..., perm], atol=1e-5, rtol=1e-5)


def test_itransformer_time_feature_tokens_join_the_graph():
    model = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32).eval()
    x, x_mark, _ = forecast_inputs()
    with torch.no_grad():
        assert not torch.allclose(model(x, x_mark), model(x))
        assert model(x, x_mark).shape == (B, H, V)  # time-feature tokens are not forecast


def test_itransformer_matches_a_torch_nn_reference():
    model = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32, num_layers=2).eval()
    layers = []
    for lay in model.encoder.layers:
        ref = torch.nn.TransformerEncoderLayer(16, 2, 32, 0.0, "gelu", batch_first=True)
        attn = lay.self_attn
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
            ref.self_attn.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
            ref.self_attn.out_proj.load_state_dict(attn.out_proj.state_dict())
            ref.linear1.load_state_dict(lay.feedforward.linear1.state_dict())
            ref.linear2.load_state_dict(lay.feedforward.linear2.state_dict())
            ref.norm1.load_state_dict(lay.norm1.state_dict())
            ref.norm2.load_state_dict(lay.norm2.state_dict())
        layers.append(ref.eval())
    x, x_mark, _ = forecast_inputs()
    mean = x.mean(1, keepdim=True)
    std = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    tokens = torch.cat([(x - mean) / std, x_mark], -1).transpose(1, 2)
    h = model.embedding(tokens)
    for ref in layers:
        h = ref(h)
    expected = model.projection(model.encoder.norm(h)).transpose(1, 2)[..., :V] * std + mean
    with torch.no_grad():
        torch.testing.assert_close(model(x, x_mark), expected, atol=1e-5, rtol=1e-5)


def test_temporal_causal_graph_hides_later_steps():
    x, x_mark, y_mark = forecast_inputs()
    later = y_mark.clone()
    later[:, -1] += 1.0  # only the calendar of the last horizon step changes
    models = _models()
    with torch.no_grad():
        causal = models["temporal-causal"].eval()
        torch.testing.assert_close(causal(x, x_mark, y_mark)[:, :-1], causal(x, x_mark, later)[:, :-1])
        complete = models["temporal"].eval()
        assert not torch.allclose(complete(x, x_mark, y_mark)[:, :-1], complete(x, x_mark, later)[:, :-1])
    with pytest.raises(ValueError, match="x_mark and y_mark"):
        complete(x)


def test_patch_transformer_patches_and_channel_independence():
    model = PatchTransformer(96, 24, d_model=16, num_heads=2, d_ff=32).eval()
    assert model.num_patches == 12  # PatchTST: (96 - 16) / 8 + 1, plus one padded patch
    x = torch.randn(2, 96, 3)
    changed = x.clone()
    changed[:, :, 0] = torch.randn(2, 96)
    with torch.no_grad():
        a, b = model(x), model(changed)
    torch.testing.assert_close(a[..., 1:], b[..., 1:])
    assert not torch.allclose(a[..., 0], b[..., 0])


def test_graph_prior_messages_follow_the_graph():
    one_layer = dict(d_model=16, num_heads=2, d_ff=32, num_layers=1)
    x, _, _ = forecast_inputs()
    changed = x.clone()
    changed[:, :, 4] += torch.randn(B, L)  # the last node of the path 0 -> ... -> 4
    sparse = GraphPriorForecaster(L, H, path_graph(), V, **one_layer).eval()
    mixed = GraphPriorForecaster(L, H, path_graph(), V, mix_complete=True, **one_layer).eval()
    with torch.no_grad():
        torch.testing.assert_close(sparse(x)[..., :4], sparse(changed)[..., :4])  # nothing flows back
        assert not torch.allclose(mixed(x)[..., 0], mixed(changed)[..., 0])  # the complete graph reaches 0


def test_graph_prior_batches_windows_as_disjoint_graphs():
    model = GraphPriorForecaster(L, H, path_graph(), V, score="gcn", d_model=16, num_heads=2, d_ff=32).eval()
    x, _, _ = forecast_inputs()
    with torch.no_grad():
        whole = model(x)
        alone = torch.cat([model(x[b : b + 1]) for b in range(B)])
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=1e-5)
    graph = model.batched_graph(B)
    assert isinstance(graph, gf.SparseGraph)
    assert graph.num_src == B * V and graph.num_edges == B * model.num_edges
    assert model.batched_graph(B) is graph  # built once per batch size


@pytest.mark.parametrize("mix_complete", [False, True])
def test_graph_prior_cache_follows_load_state_dict(mix_complete):
    """The batched graph is derived state: after load_state_dict the model answers for the loaded prior."""
    kw = {"score": "gcn", "d_model": 16, "num_heads": 2, "d_ff": 32, "mix_complete": mix_complete}
    path = path_graph()
    star = torch.stack([torch.zeros(path.size(1), dtype=torch.long), path[1]])  # as many edges, another graph
    star[0, star[1] == 0] = 1
    source = GraphPriorForecaster(L, H, star, V, **kw).eval()
    target = GraphPriorForecaster(L, H, path, V, **kw).eval()
    x, _, _ = forecast_inputs()
    with torch.no_grad():
        before = target(x)  # fills the cache with the path graph
        assert "_graphs" not in str(list(target.state_dict()))  # the cache is not part of the state
        target.load_state_dict(source.state_dict())
        torch.testing.assert_close(target(x), source(x))
        assert not torch.allclose(target(x), before)
        cached = target.batched_graph(B)
        assert target.batched_graph(B) is cached  # reused while the prior stays
        target.edge_index.copy_(path)  # an in-place edit is a new prior too
        assert target.batched_graph(B) is not cached
        fresh = GraphPriorForecaster(L, H, path, V, **kw).eval()
        fresh.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("edge_")}, strict=False)
        torch.testing.assert_close(target(x), fresh(x))
        moved = target.to(torch.device("cpu"), dtype=torch.float64)  # .to keeps a correct graph
        torch.testing.assert_close(moved(x.double()).float(), fresh(x), atol=1e-5, rtol=1e-4)


def test_graph_prior_loads_checkpoints_with_the_older_mixed_layer_names():
    model = GraphPriorForecaster(L, H, path_graph(), V, mix_complete=True, d_model=16, num_heads=2, d_ff=32).eval()
    new_names = {
        "local_attn.": "graph_attn.",
        "global_attn.": "complete_attn.",
        "norm_attn.": "norm1.",
        "norm_ff.": "norm2.",
    }
    old_state = {}
    for key, value in model.state_dict().items():
        for new, old in new_names.items():
            key = key.replace(f".{new}", f".{old}") if key.startswith("layers.") else key
        old_state[key] = value + 0.01 if value.is_floating_point() else value
    assert any(".graph_attn." in k for k in old_state) and not any(".local_attn." in k for k in old_state)
    fresh = GraphPriorForecaster(L, H, path_graph(), V, mix_complete=True, d_model=16, num_heads=2, d_ff=32)
    fresh.load_state_dict(old_state)  # strict: every key found under its new name
    expected = model.layers[0].local_attn.q_proj.weight + 0.01
    torch.testing.assert_close(fresh.layers[0].local_attn.q_proj.weight, expected)


def test_graph_prior_equivariant_under_relabelling():
    edge_index, weight = correlation_knn_edges(torch.randn(200, V).numpy(), 2)
    model = GraphPriorForecaster(L, H, edge_index, V, weight, score="gcn", d_model=16, num_heads=2, d_ff=32).eval()
    perm = torch.tensor([2, 4, 0, 1, 3])  # new node i is old node perm[i]
    inverse = torch.argsort(perm)
    relabelled = GraphPriorForecaster(
        L, H, inverse[edge_index], V, weight, score="gcn", d_model=16, num_heads=2, d_ff=32
    ).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("edge_")}
    relabelled.load_state_dict(state, strict=False)
    x, _, _ = forecast_inputs()
    with torch.no_grad():
        torch.testing.assert_close(relabelled(x[..., perm]), model(x)[..., perm], atol=1e-5, rtol=1e-5)


def test_graph_prior_rejects_bad_graphs():
    with pytest.raises(ValueError, match="refers to node"):
        GraphPriorForecaster(L, H, torch.tensor([[0, 7], [1, 2]]), V)
    with pytest.raises(ValueError, match="one entry per edge"):
        GraphPriorForecaster(L, H, path_graph(), V, edge_weight=torch.ones(3))
    with pytest.raises(ValueError, match="score must be"):
        GraphPriorForecaster(L, H, path_graph(), V, score="cosine")


def test_wrong_input_shapes_are_explained():
    model = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32)
    with pytest.raises(ValueError, match="look-back 10"):
        model(torch.randn(2, 10, V))
    with pytest.raises(ValueError, match="built for 5"):
        TemporalTransformer(L, H, V)(torch.randn(2, L, 3))


def test_short_run_on_a_slice_lowers_the_loss(shared_data):
    torch.manual_seed(0)
    series = load_series(shared_data / "ett" / "ETTh1.csv").head(800)
    data = prepare_forecast_data(series, 48, 24, split="ratio")
    model = ITransformer(48, 24, d_model=32, num_heads=4, d_ff=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = list(data.train.loader(32, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)))

    def loss_on(batch_list):
        model.eval()
        with torch.no_grad():
            return sum(float(((model(x, m) - y) ** 2).mean()) for x, y, m, _ in batch_list) / len(batch_list)

    before = loss_on(batches)
    model.train()
    for x, y, x_mark, _ in batches:
        optimizer.zero_grad()
        ((model(x, x_mark) - y) ** 2).mean().backward()
        optimizer.step()
    after = loss_on(batches)
    assert after < 0.9 * before
