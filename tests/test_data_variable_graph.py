import numpy as np
import pytest
import torch

from graphformer.data import (
    adjacency_to_edges,
    correlation_knn_edges,
    read_adjacency,
)


# ------------------------------------------------------------ graphs over variables
def test_adjacency_to_edges_adds_missing_self_loops():
    adj = np.array([[0.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.2, 0.0]])
    edge_index, weight = adjacency_to_edges(adj)
    edges = {(int(s), int(t)): float(w) for (s, t), w in zip(edge_index.t(), weight)}
    assert edges == {(0, 0): 1.0, (0, 1): 0.5, (1, 0): 0.5, (1, 1): 1.0, (2, 1): pytest.approx(0.2), (2, 2): 1.0}
    key = edge_index[1] * 3 + edge_index[0]
    assert bool((key[1:] > key[:-1]).all())  # sorted by (target, source)


def test_correlation_knn_picks_most_correlated():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 1))
    values = np.hstack(
        [
            base,
            base + 0.1 * rng.normal(size=(500, 1)),
            rng.normal(size=(500, 1)),
            -base + 0.3 * rng.normal(size=(500, 1)),
        ]
    )
    edge_index, weight = correlation_knn_edges(values, k=2)
    assert edge_index.size(1) == 4 * 3
    assert torch.bincount(edge_index[1], minlength=4).tolist() == [3, 3, 3, 3]
    sources_of_0 = set(edge_index[0, edge_index[1] == 0].tolist())
    assert sources_of_0 == {0, 1, 3}  # itself, the near copy and the negated copy
    corr = np.abs(np.corrcoef(values.T))
    for (s, t), w in zip(edge_index.t().tolist(), weight.tolist()):
        assert w == pytest.approx(1.0 if s == t else corr[s, t], rel=1e-5)
    with pytest.raises(ValueError, match="k must lie"):
        correlation_knn_edges(values, k=4)


def test_read_adjacency_checks_size(tmp_path, shared_data):
    adj = read_adjacency(shared_data / "traffic" / "los_loop" / "los_adj.csv", 207)
    assert adj.shape == (207, 207) and np.count_nonzero(adj) == 2833
    with pytest.raises(ValueError, match="207 nodes but the series has 7"):
        read_adjacency(shared_data / "traffic" / "los_loop" / "los_adj.csv", 7)
    rect = tmp_path / "rect.csv"
    rect.write_text("1,0,0\n0,1,0\n")
    with pytest.raises(ValueError, match="square"):
        read_adjacency(rect)
