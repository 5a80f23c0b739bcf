import pytest
import torch

import graphformer as gf
from graphformer.data import correlation_knn_edges, load_series, prepare_forecast_data
from graphformer.models import (
    GraphPriorForecaster,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)

B, L, H, V, F = 4, 24, 12, 5, 4


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L, V, generator=g) * 3 + 2
    return x, torch.rand(B, L, F, generator=g) - 0.5, torch.rand(B, H, F, generator=g) - 0.5


def _path_graph():
    # 0 -> 1 -> 2 -> 3 -> 4 plus self-loops
    src = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 4])
    dst = torch.tensor([1, 2, 3, 4, 0, 1, 2, 3, 4])
    return torch.stack([src, dst])


def _models():
    small = dict(d_model=16, num_heads=2, d_ff=32, num_layers=2)
    return {
        "itransformer": ITransformer(L, H, **small),
        "temporal": TemporalTransformer(L, H, V, F, **small),
        "temporal-causal": TemporalTransformer(L, H, V, F, causal=True, **small),
        "patch": PatchTransformer(L, H, patch_len=8, stride=4, **small),
        "graph-dot": GraphPriorForecaster(L, H, _path_graph(), V, **small),
        "graph-gcn": GraphPriorForecaster(L, H, _path_graph(), V, score="gcn", **small),
        "graph-additive-mix": GraphPriorForecaster(L, H, _path_graph(), V, score="additive", mix_complete=True,
                                                   **small),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_output_shapes_and_gradients(name):
    model = _models()[name]
    x, x_mark, y_mark = _inputs()
    y = model(x, x_mark, y_mark)
    assert y.shape == (B, H, V) and torch.isfinite(y).all()
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_normalize_roundtrip_and_statistics():
    x, _, _ = _inputs()
    z, stats = normalize(x)
    torch.testing.assert_close(z.mean(1), torch.zeros(B, V), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(1, unbiased=False), torch.ones(B, V), atol=1e-4, rtol=0)
    torch.testing.assert_close(stats.undo(z), x, atol=1e-5, rtol=1e-5)
    expected_std = torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)  # eps inside the sqrt
    torch.testing.assert_close(stats.std, expected_std)


@pytest.mark.parametrize("name", ["itransformer", "patch", "graph-dot", "temporal"])
def test_instance_norm_makes_forecasts_affine_equivariant(name):
    model = _models()[name].eval()
    x, x_mark, y_mark = _inputs()
    with torch.no_grad():
        base = model(x, x_mark, y_mark)
        moved = model(10.0 * x - 7.0, x_mark, y_mark)
    torch.testing.assert_close(moved, 10.0 * base - 7.0, atol=1e-3, rtol=1e-4)


def test_itransformer_is_permutation_equivariant_over_variables():
    # the variables are the nodes of a complete graph: no node is first
    model = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32).eval()
    x, x_mark, _ = _inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(model(x[..., perm], x_mark), model(x, x_mark)[..., perm], atol=1e-5, rtol=1e-5)


def test_itransformer_time_feature_tokens_join_the_graph():
    model = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32).eval()
    x, x_mark, _ = _inputs()
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
            ref.self_attn.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight,
                                                          attn.v_proj.weight]))
            ref.self_attn.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
            ref.self_attn.out_proj.load_state_dict(attn.out_proj.state_dict())
            ref.linear1.load_state_dict(lay.feedforward.linear1.state_dict())
            ref.linear2.load_state_dict(lay.feedforward.linear2.state_dict())
            ref.norm1.load_state_dict(lay.norm1.state_dict())
            ref.norm2.load_state_dict(lay.norm2.state_dict())
        layers.append(ref.eval())
    x, x_mark, _ = _inputs()
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
    x, x_mark, y_mark = _inputs()
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
    x, _, _ = _inputs()
    changed = x.clone()
    changed[:, :, 4] += torch.randn(B, L)  # the last node of the path 0 -> ... -> 4
    sparse = GraphPriorForecaster(L, H, _path_graph(), V, **one_layer).eval()
    mixed = GraphPriorForecaster(L, H, _path_graph(), V, mix_complete=True, **one_layer).eval()
    with torch.no_grad():
        torch.testing.assert_close(sparse(x)[..., :4], sparse(changed)[..., :4])  # nothing flows back
        assert not torch.allclose(mixed(x)[..., 0], mixed(changed)[..., 0])  # the complete graph reaches 0


def test_graph_prior_batches_windows_as_disjoint_graphs():
    model = GraphPriorForecaster(L, H, _path_graph(), V, score="gcn", d_model=16, num_heads=2, d_ff=32).eval()
    x, _, _ = _inputs()
    with torch.no_grad():
        whole = model(x)
        alone = torch.cat([model(x[b:b + 1]) for b in range(B)])
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=1e-5)
    graph = model.batched_graph(B)
    assert isinstance(graph, gf.SparseGraph)
    assert graph.num_src == B * V and graph.num_edges == B * model.num_edges
    assert model.batched_graph(B) is graph  # built once per batch size


@pytest.mark.parametrize("mix_complete", [False, True])
def test_graph_prior_cache_follows_load_state_dict(mix_complete):
    """The batched graph is derived state: after load_state_dict the model answers for the loaded prior."""
    kw = {"score": "gcn", "d_model": 16, "num_heads": 2, "d_ff": 32, "mix_complete": mix_complete}
    path = _path_graph()
    star = torch.stack([torch.zeros(path.size(1), dtype=torch.long), path[1]])  # as many edges, another graph
    star[0, star[1] == 0] = 1
    source = GraphPriorForecaster(L, H, star, V, **kw).eval()
    target = GraphPriorForecaster(L, H, path, V, **kw).eval()
    x, _, _ = _inputs()
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
        fresh.load_state_dict({k: v for k, v in source.state_dict().items() if not k.startswith("edge_")},
                              strict=False)
        torch.testing.assert_close(target(x), fresh(x))
        moved = target.to(torch.device("cpu"), dtype=torch.float64)  # .to keeps a correct graph
        torch.testing.assert_close(moved(x.double()).float(), fresh(x), atol=1e-5, rtol=1e-4)


def test_graph_prior_loads_checkpoints_with_the_older_mixed_layer_names():
    model = GraphPriorForecaster(L, H, _path_graph(), V, mix_complete=True, d_model=16, num_heads=2, d_ff=32).eval()
    new_names = {"local_attn.": "graph_attn.", "global_attn.": "complete_attn.", "norm_attn.": "norm1.",
                 "norm_ff.": "norm2."}
    old_state = {}
    for key, value in model.state_dict().items():
        for new, old in new_names.items():
            key = key.replace(f".{new}", f".{old}") if key.startswith("layers.") else key
        old_state[key] = value + 0.01 if value.is_floating_point() else value
    assert any(".graph_attn." in k for k in old_state) and not any(".local_attn." in k for k in old_state)
    fresh = GraphPriorForecaster(L, H, _path_graph(), V, mix_complete=True, d_model=16, num_heads=2, d_ff=32)
    fresh.load_state_dict(old_state)  # strict: every key found under its new name
    expected = model.layers[0].local_attn.q_proj.weight + 0.01
    torch.testing.assert_close(fresh.layers[0].local_attn.q_proj.weight, expected)


def test_graph_prior_equivariant_under_relabelling():
    edge_index, weight = correlation_knn_edges(torch.randn(200, V).numpy(), 2)
    model = GraphPriorForecaster(L, H, edge_index, V, weight, score="gcn", d_model=16, num_heads=2, d_ff=32).eval()
    perm = torch.tensor([2, 4, 0, 1, 3])  # new node i is old node perm[i]
    inverse = torch.argsort(perm)
    relabelled = GraphPriorForecaster(L, H, inverse[edge_index], V, weight, score="gcn", d_model=16, num_heads=2,
                                      d_ff=32).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("edge_")}
    relabelled.load_state_dict(state, strict=False)
    x, _, _ = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(relabelled(x[..., perm]), model(x)[..., perm], atol=1e-5, rtol=1e-5)


def test_graph_prior_rejects_bad_graphs():
    with pytest.raises(ValueError, match="refers to node"):
        GraphPriorForecaster(L, H, torch.tensor([[0, 7], [1, 2]]), V)
    with pytest.raises(ValueError, match="one entry per edge"):
        GraphPriorForecaster(L, H, _path_graph(), V, edge_weight=torch.ones(3))
    with pytest.raises(ValueError, match="score must be"):
        GraphPriorForecaster(L, H, _path_graph(), V, score="cosine")


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


# ------------------------------------------------------------ Autoformer
from graphformer.attention import GraphAttention  # noqa: E402
from graphformer.data import cycle_phase  # noqa: E402
from graphformer.layers import GraphformerLayer  # noqa: E402
from graphformer.models import (  # noqa: E402
    AutoCorrelation,
    Autoformer,
    CycleForecaster,
    RecurrentCycle,
    SeriesDecomposition,
    TemporalQueryForecaster,
    autocorrelation,
)
from graphformer.models.autoformer import (  # noqa: E402
    AutoformerDecoderLayer,
    SeasonalPart,
    circulant_edge_index,
)


def test_fft_autocorrelation_equals_the_direct_sum():
    g = torch.Generator().manual_seed(1)
    for length in (1, 7, 24, 25):
        q = torch.randn(3, 2, length, generator=g, dtype=torch.float64)
        k = torch.randn(3, 2, length, generator=g, dtype=torch.float64)
        direct = torch.zeros_like(q)
        for tau in range(length):  # R(tau) = sum_t q_t k_{(t - tau) mod L}, O(L^2)
            for t in range(length):
                direct[..., tau] += q[..., t] * k[..., (t - tau) % length]
        torch.testing.assert_close(autocorrelation(q, k), direct)
    # along another axis, and the zero lag of a series with itself is its energy
    q = torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
    r = autocorrelation(q, q, dim=1)
    torch.testing.assert_close(r[:, 0], q.square().sum(1))
    assert (r[:, 1:] <= r[:, :1] + 1e-12).all()  # |R(tau)| <= R(0) (Cauchy-Schwarz)
    with pytest.raises(ValueError, match="same shape"):
        autocorrelation(q, q[:, :5])


def test_series_decomposition_parts_sum_to_the_input_and_keep_constants():
    x = torch.randn(2, 30, 3)
    seasonal, trend = SeriesDecomposition(5)(x)
    torch.testing.assert_close(seasonal + trend, x)
    # an interior trend value is the centred moving average
    torch.testing.assert_close(trend[:, 10], x[:, 8:13].mean(1))
    const = torch.full((1, 12, 2), 3.5)
    s, t = SeriesDecomposition(25)(const)
    torch.testing.assert_close(t, const)
    torch.testing.assert_close(s, torch.zeros_like(const))
    with pytest.raises(ValueError, match="odd"):
        SeriesDecomposition(4)


def test_autocorrelation_is_message_passing_on_the_circulant_graph():
    """Rolled-value aggregation == explicit sum over circulant edges with one softmax over the lags."""
    torch.manual_seed(0)
    attn = AutoCorrelation(8, num_heads=2, factor=2.0).eval()
    x = torch.randn(3, 20, 8)
    out = attn(x)
    scores, v = attn.lag_scores(x)  # [B, L], [B, H, C, L]
    k = attn.num_delays(20)
    assert k == int(2.0 * torch.log(torch.tensor(20.0)))
    for b in range(3):
        w, delays = torch.topk(scores[b], k)
        a = torch.softmax(w, 0)
        edges = circulant_edge_index(20, delays)  # [2, L k], delay-major
        weight = a.repeat_interleave(20)  # the score of an edge depends only on its delay
        values = v[b].reshape(-1, 20).T  # [L, H*C]
        msg = torch.zeros_like(values).index_add_(0, edges[1], values[edges[0]] * weight[:, None])
        expected = attn.out_proj(msg.view(20, 2, 4).permute(0, 1, 2).reshape(20, 8))
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=1e-5)
        # every node has the same k in-neighbours, at offsets +tau
        deg = torch.bincount(edges[1], minlength=20)
        assert (deg == k).all()
        assert ((edges[0] - edges[1]) % 20).view(k, 20).unique(dim=1).size(1) == 1


def test_autocorrelation_training_shares_the_delays_of_the_batch():
    torch.manual_seed(0)
    attn = AutoCorrelation(8, num_heads=2, factor=1.0).train()
    x = torch.randn(4, 16, 8)
    scores, v = attn.lag_scores(x)
    k = attn.num_delays(16)
    delays = torch.topk(scores.mean(0), k).indices
    weights = torch.softmax(scores[:, delays], -1)
    expected = sum(torch.roll(v, -int(d), -1) * weights[:, m].view(-1, 1, 1, 1) for m, d in enumerate(delays))
    expected = attn.out_proj(expected.permute(0, 3, 1, 2).reshape(4, 16, 8))
    torch.testing.assert_close(attn(x), expected)
    # cross auto-correlation: longer memory is cut, shorter memory is zero-padded
    assert attn((torch.randn(4, 30, 8), x)).shape == (4, 16, 8)
    assert attn((torch.randn(4, 5, 8), x)).shape == (4, 16, 8)
    with pytest.raises(ValueError, match="circulant"):
        attn(x, torch.zeros(2, 1, dtype=torch.long))


def test_autoformer_structure():
    model = Autoformer(L, 12, H, V, F, d_model=16, num_heads=2, d_ff=32, encoder_layers=2, decoder_layers=1,
                       moving_avg=5)
    # the encoder is the library's layer with the attention and the norms swapped, nothing else
    assert len(model.encoder) == 2
    for layer in model.encoder:
        assert type(layer) is GraphformerLayer
        assert isinstance(layer.self_attn, AutoCorrelation)
        assert isinstance(layer.norm1, SeasonalPart) and isinstance(layer.norm2, SeasonalPart)
        assert layer.feedforward.linear1.bias is None
    assert len(model.decoder) == 1 and isinstance(model.decoder[0], AutoformerDecoderLayer)
    x, x_mark, y_mark = _inputs()
    y = model(x, x_mark, y_mark)
    assert y.shape == (B, H, V)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        # the forecast starts from the look-back's decomposition: a constant series gives a constant forecast
        # when the seasonal path is silenced (zero projection)
        model.projection.weight.zero_()
        model.projection.bias.zero_()
        for layer in model.decoder:
            layer.trend_projection.weight.zero_()
        const = torch.full((B, L, V), 2.5)
        torch.testing.assert_close(model(const, x_mark, y_mark), torch.full((B, H, V), 2.5))
    with pytest.raises(ValueError, match="label_len"):
        Autoformer(L, L + 1, H, V)
    with pytest.raises(ValueError, match="time features"):
        model(x, None, None)


# ------------------------------------------------------------ periodic priors
def _phase_marks(start: torch.Tensor, length: int, cycle: int, features: int = F) -> torch.Tensor:
    rows = start.view(-1, 1) + torch.arange(length)
    return torch.cat([torch.rand(start.numel(), length, features) - 0.5, (rows % cycle).float().unsqueeze(-1)], -1)


def test_recurrent_cycle_rolls_to_the_phase():
    cycle = RecurrentCycle(5, 2)
    with torch.no_grad():
        cycle.data.copy_(torch.arange(10.0).view(5, 2))
    out = cycle(torch.tensor([0, 3]), 7)
    assert out.shape == (2, 7, 2)
    torch.testing.assert_close(out[1, :, 0], torch.tensor([6.0, 8, 0, 2, 4, 6, 8]))
    torch.testing.assert_close(out[0], cycle.data[torch.arange(7) % 5])


def test_cycle_forecaster_removes_and_restores_the_cycle():
    W = 6  # noqa: N806
    backbone = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32, use_norm=False)
    model = CycleForecaster(backbone, L, H, V, W).eval()
    with torch.no_grad():
        model.cycle.data.normal_()
    start = torch.tensor([0, 1, 5, 13])
    x = torch.randn(B, L, V) * 2 + 1
    x_mark, y_mark = _phase_marks(start, L, W), _phase_marks(start + L, H, W)
    y = model(x, x_mark, y_mark)
    # by hand: normalise, subtract the cycle at the window's phases, backbone, add the cycle after the origin
    xn, stats = normalize(x)
    phase = start % W
    cyc_in = model.cycle.data[(phase.view(-1, 1) + torch.arange(L)) % W]
    cyc_out = model.cycle.data[(phase.view(-1, 1) + L + torch.arange(H)) % W]
    expected = stats.undo(backbone(xn - cyc_in, x_mark[..., :-1]) + cyc_out)
    torch.testing.assert_close(y, expected)
    # a window a whole period later gets the same cycle; half a period later, another one
    later = x_mark.clone()
    later[..., -1] = ((start + W).view(-1, 1) + torch.arange(L)) % W
    torch.testing.assert_close(model(x, later, None), y)
    later[..., -1] = ((start + W // 2).view(-1, 1) + torch.arange(L)) % W
    assert not torch.allclose(model(x, later, None), y)
    with pytest.raises(ValueError, match="cycle_phase"):
        model(x, None, None)


def test_temporal_queries_attend_over_the_bipartite_graph():
    W = 4  # noqa: N806
    model = TemporalQueryForecaster(L, H, V, W, d_model=16, num_heads=2, dropout=0.0).eval()
    start = torch.tensor([0, 1, 2, 7])
    x = torch.randn(B, L, V)
    x_mark = _phase_marks(start, L, W)
    y = model(x, x_mark, None)
    assert y.shape == (B, H, V)
    # by hand: query node v carries the periodic table at the window's phases; keys/values are the variables
    xn, stats = normalize(x)
    nodes = xn.transpose(1, 2)
    queries = model.queries.data[(start.view(-1, 1) % W + torch.arange(L)) % W].transpose(1, 2)  # [B, V, L]
    attn = model.cross_attn
    assert isinstance(attn, GraphAttention)
    msg = attn((nodes, queries))  # dense complete bipartite graph: V variable nodes -> V query nodes
    edges = torch.cartesian_prod(torch.arange(V), torch.arange(V)).T  # every source j -> every target i
    flat = attn((nodes.reshape(B * V, L), queries.reshape(B * V, L)),
                torch.cat([edges + b * V for b in range(B)], dim=1))  # the same graph, edge by edge
    torch.testing.assert_close(flat.view(B, V, L), msg, atol=1e-5, rtol=1e-5)
    # the sources are a set: permuting the variable nodes leaves every query node's message unchanged
    perm = torch.randperm(V)
    torch.testing.assert_close(attn((nodes[:, perm], queries)), msg, atol=1e-5, rtol=1e-5)
    h = model.input_proj(nodes + msg)
    torch.testing.assert_close(y, stats.undo(model.head(h + model.mlp(h)).transpose(1, 2)))
    # windows with equal phase mod W share their queries
    same = model(x, _phase_marks(start + W, L, W), None)
    torch.testing.assert_close(same, y)
    with pytest.raises(ValueError, match="divide"):
        TemporalQueryForecaster(L, H, V, W, num_heads=5)


def test_cycle_phase_column_follows_the_series_rows():
    import numpy as np

    from graphformer.data import TimeSeries

    dates = np.datetime64("2020-01-01T00:00", "s") + np.arange(200) * np.timedelta64(1, "h")
    ts = TimeSeries(np.random.default_rng(0).normal(size=(200, 2)), ["a", "b"], dates, "toy")
    data = prepare_forecast_data(ts, 24, 12)
    with_phase = cycle_phase(data, 24)
    for block in ("train", "val", "test"):
        plain, extended = getattr(data, block), getattr(with_phase, block)
        assert extended.marks.size(1) == plain.marks.size(1) + 1
        torch.testing.assert_close(extended.marks[:, :-1], plain.marks)
        rows = torch.arange(plain.offset, plain.offset + plain.values.size(0))
        torch.testing.assert_close(extended.marks[:, -1], (rows % 24).float())
        assert len(extended) == len(plain)
    x, y, x_mark, y_mark = with_phase.test[3]
    assert int(x_mark[0, -1]) == (with_phase.test.offset + 3) % 24
    assert int(y_mark[0, -1]) == with_phase.test.origin(3) % 24
    with pytest.raises(ValueError, match="cycle_len"):
        cycle_phase(data, 0)


def test_full_table_commands_match_their_configs(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    from graphformer import cli, forecast

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_forecast_results_full", repo / "scripts" / "forecast_results.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    parser = cli.build_parser()
    cells = script.full_cells()
    assert {c.settings["model"] for c in cells} == {"cycle", "itransformer", "autoformer"}
    for cell in cells:
        cfg = cell.config(2021, Path("../shared/data"))
        cfg.check()
        args = parser.parse_args(script.cli_command(cell, 2021, "out").split()[1:])
        assert forecast.config_from_args(args) == cfg, cell.name
    # every dataset x horizon row is in the table; a row without runs says so and names its command
    page = tmp_path / "page.md"
    page.write_text("# Forecasting results\n\nkept\n")
    block = script.write_full_section(tmp_path, page)
    rows = [line for line in block.splitlines() if line.startswith("| ") and "not run" in line]
    assert len(rows) == sum(len(v[2]) for v in script.FULL.values()) == 24
    assert "kept" in page.read_text()
    script.write_full_section(tmp_path, page)  # replaced in place, not appended twice
    assert page.read_text().count(script.FULL_START) == 1


@pytest.mark.parametrize("model", ["autoformer", "cycle", "tqnet"])
def test_new_models_train_through_the_cli_and_reload(tmp_path, model):
    """The CLI's model choices: phase marks for the periodic models, a checkpoint that reproduces the test."""
    from conftest import DATA, require_data
    from graphformer import forecast

    path = require_data(DATA / "illness" / "national_illness.csv")
    extra = {"label_len": 18} if model == "autoformer" else {}  # --label-len is an autoformer setting
    cfg = forecast.ForecastConfig(data=str(path), model=model, seq_len=36, pred_len=24, epochs=1,
                                  d_model=16, d_ff=16, heads=4, layers=1, lr=1e-3, **extra)
    metrics = forecast.train(cfg, tmp_path, progress=False, plot=False)
    data = forecast.load_data(cfg)
    expected_marks = 4 + (model != "autoformer")  # the periodic models get the phase column
    assert data.num_time_features == expected_marks
    if model != "autoformer":
        assert int(data.test.marks[0, -1]) == data.test.offset % 52  # ILI: a year of weeks
    net, saved, _ = forecast.load_checkpoint(tmp_path / "best.pt")
    assert saved.model == model and type(net) is type(forecast.build_model(cfg, 7, expected_marks))
    again = forecast.evaluate(net, data.test.loader(32))
    assert again["mse"] == pytest.approx(metrics["mse"], rel=1e-5)
