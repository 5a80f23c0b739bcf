import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

import graphformer as gf
from graphformer import encodings


def _edges(graph: nx.Graph) -> tuple[torch.Tensor, int]:
    """Both directions of every edge of an undirected networkx graph (nodes relabelled 0..N-1)."""
    graph = nx.convert_node_labels_to_integers(graph)
    ei = torch.tensor(list(graph.edges), dtype=torch.long).reshape(-1, 2).t()
    return torch.cat([ei, ei.flip(0)], dim=1), graph.number_of_nodes()


def _projector(vectors: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(vectors)
    return q @ q.T


# ------------------------------------------------------------- sinusoidal
def test_sinusoidal_matches_the_formula():
    pe = encodings.sinusoidal(7, 6)
    assert pe.shape == (7, 6)
    for p in range(7):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_odd_dim():
    pe = encodings.sinusoidal(4, 5)
    assert pe.shape == (4, 5)
    assert pe[3, 4].item() == pytest.approx(math.sin(3 / 10000 ** (4 / 5)), abs=1e-6)


# ------------------------------------------------------------- Laplacian
@pytest.mark.parametrize("normalized", [True, False])
def test_laplacian_matches_networkx(normalized):
    graph = nx.karate_club_graph()
    graph.add_node(34)  # an isolated node
    ei, n = _edges(graph)
    lap = encodings.laplacian(ei, n, normalized).toarray()
    plain = nx.Graph(nx.to_numpy_array(graph) > 0)
    ref = (nx.normalized_laplacian_matrix(plain) if normalized else nx.laplacian_matrix(plain)).toarray()
    np.testing.assert_allclose(lap, ref, atol=1e-12)


@pytest.mark.parametrize("normalized", [True, False])
def test_laplacian_pe_are_eigenvectors(normalized):
    ei, n = _edges(nx.karate_club_graph())
    pe, vals = encodings.laplacian_pe(ei, n, 5, normalized=normalized, return_eigenvalues=True)
    assert pe.shape == (n, 5) and vals.shape == (5,)
    lap = encodings.laplacian(ei, n, normalized).toarray()
    v, w = pe.double().numpy(), vals.double().numpy()
    np.testing.assert_allclose(lap @ v, v * w, atol=1e-5)
    np.testing.assert_allclose(v.T @ v, np.eye(5), atol=1e-5)
    ref = np.linalg.eigvalsh(lap)[1:6]  # connected: skip the single zero eigenvalue
    np.testing.assert_allclose(w, ref, atol=1e-6)
    assert np.all(np.diff(w) >= -1e-7)


def test_laplacian_pe_sign_is_deterministic():
    ei, n = _edges(nx.karate_club_graph())
    pe = encodings.laplacian_pe(ei, n, 4)
    top = pe.abs().argmax(0)
    assert torch.all(pe[top, torch.arange(4)] > 0)
    # a relabelled-identical call (edges in another order) gives the same encoding
    perm = torch.randperm(ei.size(1))
    torch.testing.assert_close(encodings.laplacian_pe(ei[:, perm], n, 4), pe, atol=1e-5, rtol=0)
    flipped = encodings.fix_sign(-pe)
    torch.testing.assert_close(flipped, pe)


def test_fix_sign_breaks_ties_by_lowest_index():
    v = np.array([[0.5], [-0.5 + 1e-12], [0.1]])
    assert encodings.fix_sign(v)[0, 0] > 0
    assert encodings.fix_sign(-v)[0, 0] > 0


def test_laplacian_pe_dense_and_sparse_solvers_agree():
    graph = nx.connected_watts_strogatz_graph(400, 4, 0.2, seed=1)
    ei, n = _edges(graph)
    dense, wd = encodings.laplacian_pe(ei, n, 8, solver="dense", return_eigenvalues=True)
    sparse, ws = encodings.laplacian_pe(ei, n, 8, solver="sparse", return_eigenvalues=True)
    torch.testing.assert_close(wd, ws, atol=1e-5, rtol=0)
    # compare the spanned subspaces (rotation within a repeated eigenvalue is allowed) ...
    np.testing.assert_allclose(_projector(dense.double().numpy()), _projector(sparse.double().numpy()), atol=1e-4)
    # ... and, eigenvalues here being simple, the vectors themselves (same sign rule)
    assert float((wd[1:] - wd[:-1]).min()) > 1e-4
    torch.testing.assert_close(dense, sparse, atol=1e-4, rtol=0)


def test_laplacian_pe_auto_uses_sparse_above_threshold(monkeypatch):
    graph = nx.path_graph(40)
    ei, n = _edges(graph)
    monkeypatch.setattr(encodings, "DENSE_EIGH_MAX_NODES", 10)
    calls = []
    real = encodings.eigsh
    monkeypatch.setattr(encodings, "eigsh", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    auto = encodings.laplacian_pe(ei, n, 3)
    assert calls
    torch.testing.assert_close(auto, encodings.laplacian_pe(ei, n, 3, solver="dense"), atol=1e-5, rtol=0)


def test_laplacian_pe_pads_when_k_exceeds_the_spectrum():
    ei, n = _edges(nx.path_graph(4))
    pe, vals = encodings.laplacian_pe(ei, n, 6, return_eigenvalues=True)
    assert pe.shape == (4, 6)
    assert torch.all(pe[:, 3:] == 0) and torch.all(vals[3:] == 0)
    assert torch.all(pe[:, :3].abs().sum(0) > 0)


def test_laplacian_pe_disconnected_graph_skips_every_trivial_vector():
    graph = nx.disjoint_union(nx.cycle_graph(5), nx.path_graph(4))
    graph.add_node(9)  # isolated
    ei, n = _edges(graph)
    pe, vals = encodings.laplacian_pe(ei, n, 4, return_eigenvalues=True)
    lap = encodings.laplacian(ei, n).toarray()
    spectrum = np.linalg.eigvalsh(lap)
    assert np.sum(spectrum < 1e-9) == 3  # three components
    np.testing.assert_allclose(vals.numpy(), spectrum[3:7], atol=1e-6)
    assert torch.all(vals > 1e-6)
    v = pe.double().numpy()
    np.testing.assert_allclose(lap @ v, v * vals.double().numpy(), atol=1e-5)
    # all 7 non-trivial ones, then zero padding
    full = encodings.laplacian_pe(ei, n, 9)
    assert torch.all(full[:, 7:] == 0) and torch.all(full[:, :7].abs().sum(0) > 0)


def test_laplacian_pe_empty_and_bad_arguments():
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert torch.all(encodings.laplacian_pe(empty, 3, 2) == 0)
    with pytest.raises(ValueError, match="k must"):
        encodings.laplacian_pe(empty, 3, -1)
    with pytest.raises(ValueError, match="solver"):
        encodings.laplacian_pe(empty, 3, 1, solver="magic")
    with pytest.raises(ValueError, match="node"):
        encodings.laplacian_pe(torch.tensor([[0], [5]]), 3, 1)


@pytest.mark.parametrize("n", [8, 9, 12])
@pytest.mark.parametrize("normalized", [True, False])
def test_cycle_spectrum_is_the_sinusoidal_encoding(n, normalized):
    """The positional encoding of a sentence is the spectrum of its graph.

    Each eigenvalue 2 - 2cos(2 pi m / n) of C_n (halved when normalised, degree 2)
    carries the plane spanned by cos(2 pi m i / n) and sin(2 pi m i / n).
    """
    ei, _ = _edges(nx.cycle_graph(n))
    k = n - 1
    pe, vals = encodings.laplacian_pe(ei, n, k, normalized=normalized, return_eigenvalues=True)
    v = pe.double().numpy()
    vals64 = vals.double().numpy()
    i = np.arange(n)
    col = 0
    for m in range(1, n // 2 + 1):
        waves = [np.cos(2 * np.pi * m * i / n)]
        if 2 * m != n:
            waves.append(np.sin(2 * np.pi * m * i / n))
        lam = (2 - 2 * np.cos(2 * np.pi * m / n)) / (2 if normalized else 1)
        block = v[:, col : col + len(waves)]
        np.testing.assert_allclose(vals64[col : col + len(waves)], lam, atol=1e-6)
        waves = np.stack(waves, 1)
        waves /= np.linalg.norm(waves, axis=0)
        # same subspace: projecting the waves onto the eigenvectors loses nothing (float32 storage)
        residual = waves - block @ (block.T @ waves)
        assert np.abs(residual).max() < 1e-6
        col += len(waves.T)
    assert col == k


def test_cycle_spectrum_float64_residual_is_round_off():
    n = 16
    lap = encodings.laplacian(_edges(nx.cycle_graph(n))[0], n, normalized=False).toarray()
    w, v = np.linalg.eigh(lap)
    i = np.arange(n)
    for m in range(1, n // 2):
        block = v[:, 2 * m - 1 : 2 * m + 1]
        np.testing.assert_allclose(w[2 * m - 1 : 2 * m + 1], 2 - 2 * np.cos(2 * np.pi * m / n), atol=1e-12)
        waves = np.stack([np.cos(2 * np.pi * m * i / n), np.sin(2 * np.pi * m * i / n)], 1) / math.sqrt(n / 2)
        assert np.abs(waves - block @ (block.T @ waves)).max() < 1e-10


# ------------------------------------------------------------ random walk
def test_random_walk_pe_matches_matrix_powers():
    graph = nx.DiGraph([(0, 1), (1, 2), (2, 0), (2, 3), (3, 2), (1, 1), (4, 0)])
    ei = torch.tensor(list(graph.edges), dtype=torch.long).t()
    n, k = 5, 6
    pe = encodings.random_walk_pe(ei, n, k)
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[ei[0], ei[1]] = 1.0
    out = adj.sum(1, keepdim=True)
    step = torch.where(out > 0, adj / out.clamp(min=1), torch.zeros_like(adj))
    for t in range(1, k + 1):
        torch.testing.assert_close(
            pe[:, t - 1].double(), torch.linalg.matrix_power(step, t).diagonal(), atol=1e-6, rtol=0
        )


def test_random_walk_pe_undirected_cycle():
    ei, n = _edges(nx.cycle_graph(6))
    pe = encodings.random_walk_pe(ei, n, 4)
    # returning after t steps on a cycle: C(t, t/2) / 2^t for even t (t < n), else 0
    expected = torch.tensor([0.0, 0.5, 0.0, 6 / 16]).expand(6, 4)
    torch.testing.assert_close(pe, expected)


# ----------------------------------------------------------------- degree
def test_degree_encoding_one_hot_and_index():
    ei, n = _edges(nx.star_graph(5))  # centre 0 with degree 5
    idx = encodings.degree_encoding(ei, n, max_degree=3, one_hot=False)
    assert idx.tolist() == [3, 1, 1, 1, 1, 1]
    oh = encodings.degree_encoding(ei, n, max_degree=3)
    assert oh.shape == (6, 4)
    torch.testing.assert_close(oh.argmax(1), idx)
    directed = torch.tensor([[0, 0, 1], [1, 2, 2]])
    assert encodings.degree(directed, 3, "in").tolist() == [0, 1, 2]
    assert encodings.degree(directed, 3, "out").tolist() == [2, 1, 0]
    assert encodings.degree(directed, 3, "both").tolist() == [2, 2, 2]


def test_degree_encoding_module():
    ei = torch.tensor([[0, 0, 1], [1, 2, 2]])
    enc = encodings.DegreeEncoding(max_degree=1, dim=4, directed=True)
    h = enc(ei, 3)
    assert h.shape == (3, 4)
    w_in, w_out = enc.in_embedding.weight, enc.out_embedding.weight
    torch.testing.assert_close(h[2], w_in[1] + w_out[0])  # in-degree 2 clipped to 1, out-degree 0
    torch.testing.assert_close(h[0], w_in[0] + w_out[1])


# ---------------------------------------------------------- shortest path
def test_shortest_paths_match_networkx():
    graph = nx.disjoint_union(nx.karate_club_graph(), nx.path_graph(3))
    ei, n = _edges(graph)
    dist = encodings.shortest_path_distances(ei, n)
    assert dist.shape == (n, n) and dist.dtype == torch.long
    lengths = dict(nx.all_pairs_shortest_path_length(graph))
    ref = torch.full((n, n), n, dtype=torch.long)
    for i, row in lengths.items():
        for j, d in row.items():
            ref[i, j] = d
    torch.testing.assert_close(dist, ref)
    clipped = encodings.shortest_path_bias(ei, n, max_distance=2)
    torch.testing.assert_close(clipped, torch.where(ref == n, 3, ref.clamp(max=2)))


def test_shortest_paths_directed_follow_message_direction():
    ei = torch.tensor([[0, 1], [1, 2]])  # 0 -> 1 -> 2
    dist = encodings.shortest_path_distances(ei, 3, directed=True)
    graph = nx.DiGraph([(0, 1), (1, 2)])
    for j, row in nx.all_pairs_shortest_path_length(graph):
        for i in range(3):
            assert dist[i, j] == row.get(i, 3)  # row = target i, column = source j


def test_shortest_paths_batched():
    a, na = _edges(nx.path_graph(3))
    b, nb = _edges(nx.cycle_graph(4))
    ei = torch.cat([a, b + na], 1)
    batch = torch.tensor([0] * na + [1] * nb)
    packed = encodings.shortest_path_distances(ei, na + nb, max_distance=5, batch=batch)
    assert packed.shape == (2, 4, 4)
    torch.testing.assert_close(packed[0, :3, :3], encodings.shortest_path_distances(a, na, 5))
    torch.testing.assert_close(packed[1], encodings.shortest_path_distances(b, nb, 5))
    assert torch.all(packed[0, 3] == 6) and torch.all(packed[0, :, 3] == 6)


def test_pack_distances_pads_with_the_unreachable_sentinel():
    a = torch.tensor([[0, 1], [1, 0]])
    b = torch.tensor([[0, 1, 2], [1, 0, 4], [2, 4, 0]])
    packed = encodings.pack_distances([a, b], unreachable=4)
    assert packed.shape == (2, 3, 3) and packed.dtype == torch.long
    assert torch.equal(packed[0, :2, :2], a) and torch.equal(packed[1], b)
    assert packed[0, 2].tolist() == [4, 4, 4] and packed[0, :, 2].tolist() == [4, 4, 4]
    assert encodings.pack_distances([], unreachable=1).shape == (0, 0, 0)
    with pytest.raises(ValueError, match="square"):
        encodings.pack_distances([torch.zeros(2, 3, dtype=torch.long)], unreachable=1)
    with pytest.raises(ValueError, match="unreachable"):
        encodings.pack_distances([a], unreachable=-1)


def test_shortest_path_bias_changes_attention():
    ei, n = _edges(nx.karate_club_graph())
    spb = encodings.ShortestPathBias(num_heads=2, max_distance=4)
    dist = spb.distances(ei, n)
    attn = gf.GraphAttention(8, num_heads=2).eval()
    x = torch.randn(n, 8)
    zero_bias = spb(dist)
    assert zero_bias.shape == (2, n, n)
    torch.testing.assert_close(attn(x, attn_bias=zero_bias), attn(x))  # zero-initialised: plain attention
    with torch.no_grad():
        spb.embedding.weight.copy_(
            torch.tensor([[0.0, 1.0], [2.0, -1.0], [1.0, 0.5], [0.0, 0.0], [-1.0, 2.0], [-5.0, -5.0]])
        )
    bias = spb(dist)
    torch.testing.assert_close(bias[1, 0, 1], spb.embedding.weight[dist[0, 1], 1])
    out, att = attn(x, attn_bias=bias, return_attention=True)
    assert not torch.allclose(out, attn(x), atol=1e-4)
    # the record's scores are the plain scores plus the bias
    _, plain = attn(x, return_attention=True)
    torch.testing.assert_close(att.scores, plain.scores + bias, atol=1e-5, rtol=0)
    # gradient reaches the distance embedding
    attn(x, attn_bias=spb(dist)).sum().backward()
    assert spb.embedding.weight.grad.abs().sum() > 0


def test_shortest_path_bias_batched_and_sparse():
    spb = encodings.ShortestPathBias(num_heads=2, max_distance=3)
    torch.nn.init.normal_(spb.embedding.weight)
    a, na = _edges(nx.path_graph(3))
    b, nb = _edges(nx.cycle_graph(5))
    ei = torch.cat([a, b + na], 1)
    batch = torch.tensor([0] * na + [1] * nb)
    dist = spb.distances(ei, na + nb, batch=batch)
    bias = spb(dist)
    assert bias.shape == (2, 2, 5, 5)
    attn = gf.GraphAttention(4, num_heads=2).eval()
    x = torch.randn(na + nb, 4)
    out = attn(x, batch=batch, attn_bias=bias)
    torch.testing.assert_close(out[na:], attn(x[na:], attn_bias=bias[1]), atol=1e-5, rtol=0)
    # sparse path: the bias of each edge j -> i
    full = spb.distances(b, nb)
    edge_bias = spb.edge_bias(full, b)
    assert edge_bias.shape == (b.size(1), 2)
    torch.testing.assert_close(edge_bias[:, 0], spb(full)[0][b[1], b[0]])
    complete = gf.structure.complete_edge_index(nb)
    sparse = attn(x[na:], complete, attn_bias=spb.edge_bias(full, complete))
    torch.testing.assert_close(sparse, attn(x[na:], attn_bias=spb(full)), atol=1e-5, rtol=0)


def test_shortest_path_bias_rejects_out_of_range_distances():
    spb = encodings.ShortestPathBias(num_heads=1, max_distance=2)
    with pytest.raises(ValueError, match="max_distance"):
        spb(torch.full((2, 2), 7))
    with pytest.raises(TypeError, match="integer"):
        spb(torch.zeros(2, 2))


# ------------------------------------------------------------ time features
def test_time_features_by_hand():
    hourly = encodings.time_features(["2016-07-01 00:00:00", "2016-07-03 13:00:00", "2017-12-31 23:00:00"], "h")
    # 2016-07-01 is a Friday (weekday 4), day 183 of a leap year; 2016-07-03 a Sunday; 2017-12-31 a Sunday, day 365
    expected = torch.tensor(
        [
            [0 / 23 - 0.5, 4 / 6 - 0.5, 0 / 30 - 0.5, 182 / 365 - 0.5],
            [13 / 23 - 0.5, 6 / 6 - 0.5, 2 / 30 - 0.5, 184 / 365 - 0.5],
            [23 / 23 - 0.5, 6 / 6 - 0.5, 30 / 30 - 0.5, 364 / 365 - 0.5],
        ]
    )
    torch.testing.assert_close(hourly, expected)
    quarter = encodings.time_features(["2016-07-01 13:45:00", "2016-02-29 00:15:00"], "t")
    expected = torch.tensor(
        [
            [45 / 59 - 0.5, 13 / 23 - 0.5, 4 / 6 - 0.5, 0 / 30 - 0.5, 182 / 365 - 0.5],
            [15 / 59 - 0.5, 0 / 23 - 0.5, 0 / 6 - 0.5, 28 / 30 - 0.5, 59 / 365 - 0.5],  # a Monday
        ]
    )
    torch.testing.assert_close(quarter, expected)


@pytest.mark.parametrize("freq", ["h", "t"])
def test_time_features_match_pandas(freq):
    dates = pd.Series(pd.date_range("2019-12-28", periods=24 * 20, freq="h" if freq == "h" else "15min"))
    dates = pd.concat([dates, pd.Series(pd.date_range("2020-02-27 22:00", periods=100, freq="37min"))])
    dt = dates.dt
    cols = [
        dt.hour / 23.0 - 0.5,
        dt.day_of_week / 6.0 - 0.5,
        (dt.day - 1) / 30.0 - 0.5,
        (dt.day_of_year - 1) / 365.0 - 0.5,
    ]
    if freq == "t":
        cols.insert(0, dt.minute / 59.0 - 0.5)
    expected = torch.tensor(np.stack([c.to_numpy() for c in cols], 1), dtype=torch.float32)
    torch.testing.assert_close(encodings.time_features(dates.to_numpy(), freq), expected)


def test_time_features_month_and_bad_freq():
    months = encodings.time_features(["2020-01-15", "2020-12-01"], "m")
    torch.testing.assert_close(months, torch.tensor([[-0.5], [0.5]]))
    with pytest.raises(ValueError, match="freq"):
        encodings.time_features(["2020-01-01"], "fortnight")


# ------------------------------------------------------ learnable, rotary
def test_learnable_positions():
    pos = encodings.learnable(10, 4)
    assert isinstance(pos, encodings.LearnablePositions)
    out = pos(torch.tensor([[0, 3], [9, 3]]))
    assert out.shape == (2, 2, 4)
    torch.testing.assert_close(out[0, 1], pos.embedding.weight[3])
    torch.testing.assert_close(pos(5), pos.embedding.weight[:5])
    out.sum().backward()
    assert pos.embedding.weight.grad[3].abs().sum() > 0
    with pytest.raises(ValueError, match="num_positions"):
        pos(torch.tensor([10]))


def test_apply_rotary_is_a_complex_rotation():
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    positions = torch.tensor([0, 1, 2, 7, 30])
    out = encodings.apply_rotary(x, positions)
    theta = 10000.0 ** (-torch.arange(0, 6, 2, dtype=torch.float64) / 6)
    z = torch.view_as_complex(x.reshape(2, 5, 3, 2).contiguous())
    ref = torch.view_as_real(z * torch.polar(torch.ones(5, 3, dtype=torch.float64), positions[:, None] * theta))
    torch.testing.assert_close(out, ref.flatten(-2))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    odd = encodings.Rotary(5)(x[..., :5])
    torch.testing.assert_close(odd[..., 4], x[..., 4])  # the unpaired channel is not rotated
    torch.testing.assert_close(odd[..., :4], encodings.apply_rotary(x[..., :4], torch.arange(5), base=10000**0.8))


def test_rotary_dot_scores_depend_only_on_offset():
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    rot = encodings.Rotary(8)

    def score(i, j):
        qi = rot(q.expand(1, 8), torch.tensor([i]))
        kj = rot(k.expand(1, 8), torch.tensor([j]))
        return float(qi @ kj.T)

    for i, j, shift in [(0, 3, 5), (7, 2, 11), (4, 4, 100), (1, 9, 37)]:
        assert score(i, j) == pytest.approx(score(i + shift, j + shift), abs=1e-10)
    assert abs(score(0, 1) - score(0, 2)) > 1e-6  # but it does depend on the offset


def test_rotary_score_in_graph_attention():
    attn = gf.GraphAttention(8, num_heads=2, score="rotary").eval()
    assert isinstance(attn.score, encodings.RotaryScore)
    n = 7
    same = torch.randn(1, 8).expand(n, 8)  # one token repeated: only positions differ
    _, att = attn(same, return_attention=True)
    scores = att.scores  # [H, N, N]
    for offset in range(-n + 1, n):
        diag = torch.diagonal(scores, offset=offset, dim1=-2, dim2=-1)
        torch.testing.assert_close(diag, diag[..., :1].expand_as(diag), atol=1e-5, rtol=0)  # Toeplitz
    assert (scores[0, 0, 1] - scores[0, 0, 2]).abs() > 1e-4
    x = torch.randn(n, 8)
    dense = attn(x)
    torch.testing.assert_close(attn(x, gf.structure.complete_edge_index(n)), dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(attn(x, gf.structure.causal_edge_index(n)), attn(x, causal=True), atol=1e-5, rtol=0)
    # sparse path: positions are node ids, so a graph shifted by a constant id in a batch gives the same output
    ei = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 3]])
    alone = attn(x[:4], ei)
    both = attn(torch.cat([x[:4], x[:4]]), torch.cat([ei, ei + 4], 1))
    torch.testing.assert_close(both[4:], alone, atol=1e-5, rtol=0)
    # and differs from the position-blind dot score with the same weights
    plain = gf.GraphAttention(8, num_heads=2).eval()
    plain.load_state_dict(attn.state_dict())
    assert not torch.allclose(plain(x), dense, atol=1e-4)
