"""GCN, GAT, GraphTransformer and GPS from graphformer.models.graph."""

import shutil

import pytest
import torch
import torch.nn.functional as F

from graphformer import encodings
from graphformer.classify import build_model
from graphformer.data.graphs import add_encodings, collate, load_planetoid, synthetic_structures
from graphformer.models.graph import (
    GAT,
    GCN,
    GPS,
    GRAPH_MODELS,
    GATRes,
    GATSep,
    GCNRes,
    GraphTransformer,
    GTRes,
    GTSep,
    build_graph_model,
    mean_pool,
)
from graphformer.structure import complete_edge_index


def _random_graph(num_nodes=12, num_edges=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    return ei[:, ei[0] != ei[1]]


def _small_graphs(encoding="none", num_per_class=1):
    graphs = synthetic_structures(num_per_class=num_per_class, min_nodes=8, max_nodes=14, seed=3)[:5]
    return add_encodings(graphs, encoding, dim=4, max_distance=6)


# ------------------------------------------------------------------ PyG equality
def test_gcn_equals_pyg_gcnconv_stack():
    from torch_geometric.nn import GCNConv

    x, ei = torch.randn(12, 5), _random_graph()
    model = GCN(5, 7, 3).eval()
    convs = [GCNConv(5, 7), GCNConv(7, 3)]
    with torch.no_grad():
        for ours, theirs in zip(model.convs, convs):
            theirs.lin.weight.copy_(ours.v_proj.weight)
            theirs.bias.normal_()
            ours.bias.copy_(theirs.bias)
    expected = convs[1](convs[0](x, ei).relu(), ei)
    torch.testing.assert_close(model(x, ei), expected, atol=1e-5, rtol=1e-5)


def test_gat_equals_pyg_gatconv_stack():
    from torch_geometric.nn import GATConv

    x, ei = torch.randn(12, 5), _random_graph()
    model = GAT(5, 4, 3, heads=2, out_heads=2).eval()
    convs = [GATConv(5, 4, heads=2), GATConv(8, 3, heads=2, concat=False)]
    with torch.no_grad():
        for ours, theirs in zip(model.convs, convs):
            theirs.lin.weight.copy_(ours.v_proj.weight)
            theirs.att_src.copy_(ours.score.att_src.unsqueeze(0))
            theirs.att_dst.copy_(ours.score.att_dst.unsqueeze(0))
            theirs.bias.normal_()
            ours.bias.copy_(theirs.bias)
    expected = convs[1](F.elu(convs[0](x, ei)), ei)
    torch.testing.assert_close(model(x, ei), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [GCN, GAT, GraphTransformer, GPS])
def test_prepared_graph_gives_same_output(cls):
    x, ei = torch.randn(12, 5), _random_graph()
    model = cls(5, 8, 3).eval()
    torch.testing.assert_close(model(x, model.prepare(ei, 12)), model(x, ei))


def test_gat_returns_attention_per_layer_normalised():
    x, ei = torch.randn(12, 5), _random_graph()
    model = GAT(5, 4, 3, heads=2).eval()
    out, records = model(x, ei, return_attention=True)
    assert out.shape == (12, 3) and len(records) == 2
    for att in records:
        total = torch.zeros(12, att.weights.size(1)).index_add_(0, att.edge_index[1], att.weights)
        torch.testing.assert_close(total, torch.ones_like(total))  # softmax over incoming edges (loops included)


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("cls", [GCN, GAT])
def test_message_passing_shapes(cls):
    x, ei = torch.randn(12, 5), _random_graph()
    assert cls(5, 8, 3)(x, ei).shape == (12, 3)


@pytest.mark.parametrize("attention", ["edges", "complete"])
def test_graph_transformer_node_shapes(attention):
    x, ei, pe = torch.randn(12, 5), _random_graph(), torch.randn(12, 4)
    model = GraphTransformer(5, 16, 3, num_heads=2, pe_dim=4, attention=attention)
    assert model(x, ei, pe=pe).shape == (12, 3)


def test_graph_level_shapes():
    b = collate(_small_graphs("shortest-path"))
    for model in (
        GraphTransformer(1, 16, 8, num_heads=2, attention="complete", max_distance=6, graph_level=True),
        GPS(1, 16, 8, num_heads=2, max_distance=6, graph_level=True),
    ):
        assert model(b.x, b.edge_index, batch=b.batch, distance=b.distance).shape == (5, 8)


def test_mean_pool_matches_per_graph_mean():
    x, batch = torch.randn(7, 3), torch.tensor([0, 0, 1, 1, 1, 2, 2])
    expected = torch.stack([x[batch == g].mean(0) for g in range(3)])
    torch.testing.assert_close(mean_pool(x, batch), expected)


# ------------------------------------------------- a batch is its graphs one by one
@pytest.mark.parametrize(
    "encoding,kwargs",
    [
        ("random-walk", {"cls": GraphTransformer, "attention": "complete", "pe_dim": 4}),
        ("laplacian", {"cls": GraphTransformer, "attention": "edges", "pe_dim": 4}),
        ("shortest-path", {"cls": GraphTransformer, "attention": "complete", "max_distance": 6}),
        ("random-walk", {"cls": GPS, "pe_dim": 4}),
        ("shortest-path", {"cls": GPS, "max_distance": 6}),
    ],
)
def test_batch_equals_graphs_one_by_one(encoding, kwargs):
    kwargs = dict(kwargs)
    cls = kwargs.pop("cls")
    graphs = _small_graphs(encoding)
    model = cls(1, 16, 8, num_heads=2, graph_level=True, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():  # non-zero distance biases, so they matter
            p.add_(0.1 * torch.randn_like(p))
        b = collate(graphs)
        together = model(b.x, b.edge_index, batch=b.batch, pe=b.pe, distance=b.distance)
        alone = torch.cat(
            [
                model(
                    g.x,
                    g.edge_index,
                    batch=torch.zeros(g.num_nodes, dtype=torch.long),
                    pe=getattr(g, "pe", None),
                    distance=None if b.distance is None else g.distance.unsqueeze(0),
                )
                for g in graphs
            ]
        )
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", [GCN, GAT])
def test_disjoint_union_equals_graphs_one_by_one(cls):
    graphs = _small_graphs()
    for g in graphs:
        g.x = torch.randn(g.num_nodes, 3)
    model = cls(3, 8, 4).eval()
    b = collate(graphs)
    alone = torch.cat([model(g.x, g.edge_index) for g in graphs])
    torch.testing.assert_close(model(b.x, b.edge_index), alone, atol=1e-5, rtol=1e-5)


def test_collate_offsets_edges_and_pads_distances():
    graphs = _small_graphs("shortest-path")
    b = collate(graphs)
    sizes = [g.num_nodes for g in graphs]
    assert b.batch.tolist() == sum(([i] * n for i, n in enumerate(sizes)), [])
    start = sum(sizes[:2])
    own = (b.batch[b.edge_index[0]] == 2) & (b.batch[b.edge_index[1]] == 2)
    assert torch.equal(b.edge_index[:, own] - start, graphs[2].edge_index)
    assert int(own.sum()) == graphs[2].edge_index.size(1)
    assert b.distance.shape == (5, max(sizes), max(sizes))
    assert torch.equal(b.distance[2, : sizes[2], : sizes[2]], graphs[2].distance)
    # one padding convention: collate packs as shortest_path_distances(batch=...) does (sentinel 6 + 1)
    packed = encodings.shortest_path_distances(b.edge_index, b.x.size(0), max_distance=6, batch=b.batch)
    assert torch.equal(b.distance, packed)
    small = sizes.index(min(sizes))
    assert bool((b.distance[small, min(sizes) :] == 7).all()) and min(sizes) < max(sizes)
    assert torch.equal(
        collate(graphs, unreachable=9).distance[small, :, min(sizes) :],
        torch.full((max(sizes), max(sizes) - min(sizes)), 9),
    )


# ------------------------------------------------------ what each reduces to
def test_gcn_on_complete_graph_averages_all_nodes():
    x = torch.randn(6, 4)
    conv = GCN(4, 8, 3, num_layers=1, dropout=0.0).eval()
    out = conv(x, complete_edge_index(6, self_loops=False))
    lin = conv.convs[0]
    expected = (x.mean(0, keepdim=True) @ lin.v_proj.weight.t() + lin.bias).expand(6, -1)
    torch.testing.assert_close(out, expected)


def test_transformer_edges_on_complete_graph_equals_complete_attention():
    x, pe = torch.randn(9, 5), torch.randn(9, 4)
    sparse = GraphTransformer(5, 16, 3, num_heads=2, pe_dim=4, attention="edges").eval()
    dense = GraphTransformer(5, 16, 3, num_heads=2, pe_dim=4, attention="complete").eval()
    dense.load_state_dict(sparse.state_dict())
    ei = complete_edge_index(9, self_loops=False)  # the model adds the self-loops
    torch.testing.assert_close(sparse(x, ei, pe=pe), dense(x, pe=pe), atol=1e-5, rtol=1e-4)


def test_constant_features_without_encoding_are_structure_blind():
    graphs = _small_graphs()
    model = GraphTransformer(1, 16, 8, num_heads=2, attention="edges", graph_level=True).eval()
    b = collate(graphs)
    out = model(b.x, b.edge_index, batch=b.batch)
    torch.testing.assert_close(out, out[:1].expand_as(out))  # softmax averages identical vectors


# ------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    x, ei = torch.randn(12, 5), _random_graph()
    with pytest.raises(ValueError, match="in_channels"):
        GCN(4, 8, 3)(x, ei)
    with pytest.raises(ValueError, match="pe_dim"):
        GraphTransformer(5, 16, 3, num_heads=2, pe_dim=4)(x, ei)
    with pytest.raises(ValueError, match="attention='complete'"):
        GraphTransformer(5, 16, 3, max_distance=4)
    with pytest.raises(ValueError, match="distance"):
        GraphTransformer(5, 16, 3, attention="complete", max_distance=4)(x, ei)
    with pytest.raises(ValueError, match="prepare"):
        GCN(5, 8, 3)(x, GCN(5, 8, 3).prepare(ei, 20))


# --------------------------------------------------------------- training
def test_gcn_learns_cora_quickly(shared_data, tmp_path):
    shutil.copytree(shared_data / "planetoid" / "Cora" / "raw", tmp_path / "Cora" / "raw")
    data = load_planetoid(tmp_path, "Cora")
    torch.manual_seed(0)
    model = GCN(data.num_features, 16, 7, dropout=0.0)  # no dropout: 30 steps, a third of the time
    graph = model.prepare(data.edge_index, data.num_nodes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    for _ in range(30):
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(data.x, graph)[data.train_mask], data.y[data.train_mask]).backward()
        opt.step()
    model.eval()
    pred = model(data.x, graph).argmax(-1)
    accuracy = float((pred[data.test_mask] == data.y[data.test_mask]).float().mean())
    assert accuracy > 0.6  # chance is about 0.3 (largest class)


# ------------------------------------------------------- -sep models (Platonov et al. 2023)
_TINY_EDGES = torch.tensor([[1, 2, 0, 3, 2], [0, 0, 1, 1, 3]])  # j -> i; node 4 receives nothing


@pytest.mark.parametrize("cls", [GATSep, GTSep])
@pytest.mark.parametrize("sep", [True, False])
def test_sep_models_shapes(cls, sep):
    x, ei = torch.randn(12, 5), _random_graph()
    model = cls(5, 16, 3, num_layers=3, num_heads=4, sep=sep)
    assert model(x, ei).shape == (12, 3)
    graph = model.prepare(ei, 12)
    assert graph.num_edges == ei.size(1) + (0 if sep else 12)  # self-loops only without sep
    model.eval()
    torch.testing.assert_close(model(x, graph), model(x, ei))


def _layer_norm(h, ln):
    return F.layer_norm(h, (h.size(-1),), ln.weight, ln.bias, ln.eps)


def _softmax_over_targets(scores, target, num_nodes):
    """scores [E, H] -> per-target softmax, by an explicit loop over nodes."""
    out = torch.zeros_like(scores)
    for i in range(num_nodes):
        m = target == i
        if m.any():
            out[m] = torch.softmax(scores[m], dim=0)
    return out


def test_gat_sep_equals_explicit_self_neighbour_computation():
    torch.manual_seed(1)
    n, d, heads = 5, 8, 2
    c = d // heads
    x = torch.randn(n, 3)
    model = GATSep(3, d, 2, num_layers=1, num_heads=heads, dropout=0.0).eval()
    block = model.layers[0]
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    src, dst = _TINY_EDGES
    h0 = F.gelu(model.input(x))
    h = _layer_norm(h0, block.norm)
    z = (h @ block.attn.v_proj.weight.T).view(n, heads, c)  # neighbours' transform W
    s = F.leaky_relu((z[src] * block.attn.score.att_src).sum(-1) + (z[dst] * block.attn.score.att_dst).sum(-1), 0.2)
    a = _softmax_over_targets(s, dst, n)  # [E, H]
    msg = torch.zeros(n, heads, c).index_add_(0, dst, a.unsqueeze(-1) * z[src]).reshape(n, d)
    own = h @ block.attn.root.weight.T + block.attn.root.bias  # the node itself, its own weight W_r
    mixed = msg + own + block.attn.bias
    ff = block.feedforward
    h1 = h0 + ff.linear2(F.gelu(ff.linear1(mixed)))
    expected = model.head(_layer_norm(h1, model.norm))
    torch.testing.assert_close(model(x, _TINY_EDGES), expected, atol=1e-5, rtol=1e-5)
    # node 4 has no neighbour: its update is the root term alone, not a NaN
    assert torch.isfinite(model(x, _TINY_EDGES)).all()


def test_gt_sep_equals_explicit_self_neighbour_computation():
    torch.manual_seed(2)
    n, d, heads = 5, 8, 2
    c = d // heads
    x = torch.randn(n, 3)
    model = GTSep(3, d, 2, num_layers=1, num_heads=heads, dropout=0.0).eval()
    layer = model.layers[0]
    att = layer.self_attn
    src, dst = _TINY_EDGES
    h0 = F.gelu(model.input(x))
    h = _layer_norm(h0, layer.norm1)
    q, k, v = (lin(h).view(n, heads, c) for lin in (att.q_proj, att.k_proj, att.v_proj))
    s = (q[dst] * k[src]).sum(-1) / c**0.5
    a = _softmax_over_targets(s, dst, n)
    msg = torch.zeros(n, heads, c).index_add_(0, dst, a.unsqueeze(-1) * v[src]).reshape(n, d)
    h1 = h0 + att.out_proj(msg + h @ att.root.weight.T)  # neighbours through W_v, the node through W_r
    ff = layer.feedforward
    h2 = h1 + ff.linear2(F.gelu(ff.linear1(_layer_norm(h1, layer.norm2))))
    expected = model.head(_layer_norm(h2, model.norm))
    torch.testing.assert_close(model(x, _TINY_EDGES), expected, atol=1e-5, rtol=1e-5)


def test_sep_has_no_self_loop_and_non_sep_has_one():
    """With sep, a node's own features reach it only through the root map."""
    for sep in (True, False):
        model = GATSep(3, 8, 2, num_layers=1, num_heads=2, dropout=0.0, sep=sep).eval()
        assert (model.layers[0].attn.root is not None) == sep
        _, att = model.layers[0].attn(torch.randn(5, 8), model.prepare(_TINY_EDGES, 5), return_attention=True)
        loops = int((att.edge_index[0] == att.edge_index[1]).sum())
        assert loops == (0 if sep else 5)


class _PygResidual(torch.nn.Module):
    """The paper's GCN / GAT rows from PyG parts: input map, GELU, blocks ``h + FF(conv(LN(h)))``, LN, output."""

    def __init__(self, conv, f, d, k, layers, heads):
        super().__init__()
        from torch_geometric.nn import GATConv, GCNConv

        def make():
            if conv == "gcn":  # self-loops added, 1/sqrt(d_i d_j)
                return GCNConv(d, d)
            return GATConv(d, d // heads, heads=heads)  # self-loops added, no root map

        self.input, self.head = torch.nn.Linear(f, d), torch.nn.Linear(d, k)
        self.norms = torch.nn.ModuleList([torch.nn.LayerNorm(d) for _ in range(layers)])
        self.convs = torch.nn.ModuleList([make() for _ in range(layers)])
        self.ffs = torch.nn.ModuleList(
            [torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.GELU(), torch.nn.Linear(d, d)) for _ in range(layers)]
        )
        self.norm = torch.nn.LayerNorm(d)

    def forward(self, x, edge_index):
        h = F.gelu(self.input(x))
        for norm, conv, ff in zip(self.norms, self.convs, self.ffs):
            h = h + ff(conv(norm(h), edge_index))
        return self.head(self.norm(h))


@pytest.mark.parametrize("conv", ["gcn", "gat"])
def test_residual_gcn_and_gat_rows_equal_pyg_convs_in_the_same_blocks(conv):
    torch.manual_seed(3)
    n, f, d, k, heads, layers = 14, 5, 8, 3, 2, 2
    ei = _random_graph(n, 50, seed=4).unique(dim=1)
    ei = torch.cat([ei, ei.flip(0)], 1).unique(dim=1)
    x = torch.randn(n, f)
    ours = (GCNRes if conv == "gcn" else GATRes)(f, d, k, num_layers=layers, num_heads=heads, dropout=0.0).eval()
    ref = _PygResidual(conv, f, d, k, layers, heads).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    with torch.no_grad():
        pairs = [(ref.input, ours.input), (ref.norm, ours.norm), (ref.head, ours.head)]
        for i, block in enumerate(ours.layers):
            assert block.attn.root is None  # no separate self weight: the node enters through its self-loop
            pairs += [(ref.norms[i], block.norm), (ref.ffs[i][0], block.feedforward.linear1)]
            pairs += [(ref.ffs[i][2], block.feedforward.linear2)]
            c = ref.convs[i]
            c.lin.weight.copy_(block.attn.v_proj.weight)
            c.bias.copy_(block.attn.bias)
            if conv == "gat":
                c.att_src.copy_(block.attn.score.att_src.unsqueeze(0))
                c.att_dst.copy_(block.attn.score.att_dst.unsqueeze(0))
        for dst, src in pairs:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    torch.testing.assert_close(ours(x, ei), ref(x, ei), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [GCNRes, GATRes, GTRes])
def test_res_rows_add_a_self_loop_and_have_no_root_map(cls):
    x, ei = torch.randn(12, 5), _random_graph()
    model = cls(5, 16, 3, num_layers=2, num_heads=4)
    assert model.sep is False and model.prepare(ei, 12).num_edges == ei.size(1) + 12
    assert model(x, ei).shape == (12, 3)
    assert cls(5, 16, 3, num_heads=4, sep=True).sep is True  # the -sep form on request


def test_graph_model_registry_and_classify_factory():
    names = {"gcn", "gat", "transformer", "gps", "gat-sep", "gt-sep", "gcn-res", "gat-res", "gt-res"}
    assert names <= set(GRAPH_MODELS)
    model = build_graph_model("GAT-sep", 5, 1)
    assert isinstance(model, GATSep) and model.input.out_features == 512 and len(model.layers) == 2
    x, ei = torch.randn(12, 5), _random_graph()
    net = build_model("gt-sep", 5, 3, hidden=16, heads=4, layers=2, dropout=0.2)
    assert isinstance(net, GTSep) and net(x, ei).shape == (12, 3)
    with pytest.raises(ValueError, match="unknown graph model"):
        build_graph_model("gat-sepp", 5, 1)
    with pytest.raises(ValueError, match="divisible"):
        GATSep(5, 10, 2, num_heads=4)


# ------------------------------------------------------------ one call for every model
def _models_with_pe(pe_dim, graph_level):
    return {
        "gcn": GCN(3, 8, 4, pe_dim=pe_dim, graph_level=graph_level),
        "gat": GAT(3, 4, 4, heads=2, pe_dim=pe_dim, graph_level=graph_level),
        "transformer": GraphTransformer(3, 8, 4, num_heads=2, pe_dim=pe_dim, graph_level=graph_level),
        "gps": GPS(3, 8, 4, num_heads=2, pe_dim=pe_dim, graph_level=graph_level),
        "gat-sep": GATSep(3, 8, 4, num_heads=2, pe_dim=pe_dim, graph_level=graph_level),
        "gt-sep": GTSep(3, 8, 4, num_heads=2, pe_dim=pe_dim, graph_level=graph_level),
        "gcn-res": GCNRes(3, 8, 4, pe_dim=pe_dim, graph_level=graph_level),
        "gat-res": GATRes(3, 8, 4, num_heads=2, pe_dim=pe_dim, graph_level=graph_level),
        "gt-res": GTRes(3, 8, 4, num_heads=2, pe_dim=pe_dim, graph_level=graph_level),
    }


def test_every_graph_model_takes_one_call():
    graphs = _small_graphs("random-walk")
    for g in graphs:
        g.x = torch.randn(g.num_nodes, 3)
    b = collate(graphs)
    models = _models_with_pe(4, True)
    assert set(models) == set(GRAPH_MODELS)
    for name, model in models.items():
        model.eval()
        out = model(b.x, b.edge_index, batch=b.batch, pe=b.pe, distance=None)
        assert out.shape == (len(graphs), 4), name
        with pytest.raises(ValueError, match="pe_dim=4"):
            model(b.x, b.edge_index, batch=b.batch)
        with pytest.raises(ValueError, match="distance"):
            model(b.x, b.edge_index, batch=b.batch, pe=b.pe, distance=b.x.new_zeros(5, 14, 14).long())
    for name, model in _models_with_pe(0, False).items():
        with pytest.raises(ValueError, match="pe_dim=0"):
            model(b.x, b.edge_index, pe=b.pe)
        if name != "transformer":  # the transformer's complete attention needs no edges; the others do
            with pytest.raises(ValueError, match="edge"):
                model(b.x)


@pytest.mark.parametrize("name", ["gcn", "gat", "gat-sep", "gt-sep", "gcn-res", "gat-res", "gt-res"])
def test_message_passing_models_read_pe_as_features_and_pool(name):
    """pe_dim / graph_level equal the old formula: the model on [x, pe], then the mean of each graph."""
    graphs = _small_graphs("degree")
    for g in graphs:
        g.x = torch.randn(g.num_nodes, 3)
    b = collate(graphs)
    with_pe = _models_with_pe(4, True)[name].eval()
    plain = {
        "gcn": GCN(7, 8, 4),
        "gat": GAT(7, 4, 4, heads=2),
        "gat-sep": GATSep(7, 8, 4, num_heads=2),
        "gt-sep": GTSep(7, 8, 4, num_heads=2),
        "gcn-res": GCNRes(7, 8, 4),
        "gat-res": GATRes(7, 8, 4, num_heads=2),
        "gt-res": GTRes(7, 8, 4, num_heads=2),
    }[name].eval()
    plain.load_state_dict(with_pe.state_dict())
    expected = mean_pool(plain(torch.cat([b.x, b.pe], -1), b.edge_index), b.batch)
    torch.testing.assert_close(with_pe(b.x, b.edge_index, batch=b.batch, pe=b.pe), expected)


def test_attn_dropout_is_a_layer_argument():
    model = GraphTransformer(3, 8, 2, num_heads=2, dropout=0.3, attn_dropout=0.0)
    assert all(layer.self_attn.dropout == 0.0 and layer.dropout1.p == 0.3 for layer in model.layers)
    assert all(layer.self_attn.dropout == 0.0 for layer in GTSep(3, 8, 2, num_heads=2).layers)
    assert all(layer.self_attn.dropout == 0.3 for layer in GraphTransformer(3, 8, 2, dropout=0.3).layers)
