"""graphformer.convert against networkx, scipy and PyG's own utilities."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce as pyg_coalesce
from torch_geometric.utils import dense_to_sparse, from_scipy_sparse_matrix, to_dense_adj
from torch_geometric.utils import to_undirected as pyg_to_undirected

from graphformer import convert, encodings, interop
from graphformer.data.variable_graph import adjacency_to_edges
from graphformer.explain.inputs import graph_edges


def _random_graph(n=7, e=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    w = torch.rand(e, generator=g, dtype=torch.float64) + 0.5
    return ei, w


def test_from_dense_matches_pyg_dense_to_sparse():
    adj = torch.rand(6, 6) * (torch.rand(6, 6) > 0.5)
    ei, w = convert.from_dense(adj)
    ref_ei, ref_w = dense_to_sparse(adj)
    assert torch.equal(ei, ref_ei)
    assert torch.equal(w, ref_w)
    # numpy input gives the same edges, float64 weights
    ei_np, w_np = convert.from_dense(adj.numpy())
    assert torch.equal(ei_np, ref_ei) and w_np.dtype == torch.float64
    assert torch.allclose(w_np.float(), ref_w)


def test_to_dense_matches_pyg_to_dense_adj_with_duplicates():
    ei, w = _random_graph()
    dense = convert.to_dense(ei, 7, w)
    assert torch.allclose(dense, to_dense_adj(ei, edge_attr=w, max_num_nodes=7)[0])
    assert torch.equal(convert.to_dense(ei, 7), to_dense_adj(ei, max_num_nodes=7)[0])


def test_dense_round_trip():
    adj = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    ei, w = convert.from_dense(adj)
    assert torch.equal(convert.to_dense(ei, 3, w), adj)


@pytest.mark.parametrize("by", ["source", "target"])
def test_coalesce_matches_pyg(by):
    ei, w = _random_graph()
    out, merged = convert.coalesce(ei, w, 7, by=by)
    ref, ref_w = pyg_coalesce(ei, w, 7, sort_by_row=by == "source")
    assert torch.equal(out, ref)
    assert torch.allclose(merged, ref_w)
    out_max, merged_max = convert.coalesce(ei, w, 7, by=by, reduce="max")
    ref_max = pyg_coalesce(ei, w, 7, reduce="max", sort_by_row=by == "source")[1]
    assert torch.equal(out_max, ref) and torch.equal(merged_max, ref_max)


def test_coalesce_first_keeps_the_first_weight():
    ei = torch.tensor([[0, 1, 0], [1, 0, 1]])
    out, w = convert.coalesce(ei, torch.tensor([5.0, 6.0, 7.0]), 2, by="source", reduce="first")
    assert out.tolist() == [[0, 1], [1, 0]] and w.tolist() == [5.0, 6.0]


def test_to_undirected_matches_pyg():
    ei, w = _random_graph()
    out, merged = convert.to_undirected(ei, w, 7)
    ref, ref_w = pyg_to_undirected(ei, w, 7)
    assert torch.equal(out, ref)
    # PyG counts a self-loop twice (it is its own reverse); here it is counted once
    loop_w = torch.zeros(7, 7, dtype=w.dtype).index_put_((ei[0], ei[1]), w * (ei[0] == ei[1]), accumulate=True)
    assert torch.allclose(merged, ref_w - loop_w[out[0], out[1]])
    assert bool((ei[0] == ei[1]).any())  # the graph has loops, so the check above means something
    no_loops, _ = convert.to_undirected(ei, num_nodes=7, self_loops=False)
    assert torch.equal(no_loops, ref[:, ref[0] != ref[1]])


def test_scipy_round_trip_matches_pyg():
    ei, w = _random_graph()
    mat = convert.to_scipy(ei, 7, w)
    ref_ei, ref_w = from_scipy_sparse_matrix(sp.coo_matrix(mat))
    back_ei, back_w = convert.from_scipy(mat, dtype=torch.float64)
    assert torch.equal(back_ei, ref_ei) and torch.allclose(back_w, ref_w.double())
    assert np.allclose(mat.toarray(), convert.to_dense(ei, 7, w).numpy())


def test_binary_adjacency_matches_networkx():
    graph = nx.gnm_random_graph(9, 14, seed=1)
    graph.add_edge(3, 3)
    ei = convert.from_networkx(graph)[1]
    undirected = convert.binary_adjacency(ei, 9, undirected=True)
    ref = nx.to_numpy_array(graph, nodelist=range(9))
    np.fill_diagonal(ref, 0)
    assert isinstance(undirected, sp.csr_matrix) and undirected.dtype == np.float64
    assert np.array_equal(undirected.toarray(), ref)
    doubled = torch.cat([ei, ei], dim=1)  # duplicates count once
    assert np.array_equal(convert.binary_adjacency(doubled, 9).toarray(), (ref + np.eye(9) * (np.arange(9) == 3)))
    assert np.array_equal(encodings._adjacency(ei, 9).toarray(), ref)


def test_networkx_round_trip():
    graph = nx.gnm_random_graph(8, 12, seed=2, directed=True)
    _, ei, _ = convert.from_networkx(graph)
    back = convert.to_networkx(ei, 8)
    assert nx.utils.graphs_equal(back, graph)


@pytest.mark.parametrize("fmt", ["edge_index", "pairs", "dense", "numpy", "scipy", "torch_sparse", "networkx", "data"])
def test_to_edge_index_reads_every_format(fmt):
    adj = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    ei, w = dense_to_sparse(adj)  # node 3 isolated
    graph = {
        "edge_index": ei,
        "pairs": ei.t().tolist(),
        "dense": adj,
        "numpy": adj.numpy(),
        "scipy": sp.csr_matrix(adj.numpy()),
        "torch_sparse": adj.to_sparse(),
        "networkx": nx.from_numpy_array(adj.numpy(), create_using=nx.DiGraph),
        "data": Data(edge_index=ei, edge_weight=w, num_nodes=4),
    }[fmt]
    out = convert.to_edge_index(graph, num_nodes=4 if fmt in ("edge_index", "pairs") else None)
    order = torch.argsort(out.edge_index[0] * 4 + out.edge_index[1])
    assert torch.equal(out.edge_index[:, order], ei)
    assert out.num_nodes == 4
    if fmt not in ("edge_index", "pairs", "networkx"):
        assert torch.allclose(out.edge_weight[order].float(), w)
    if fmt == "networkx":
        weighted = convert.to_edge_index(graph, weight="weight")
        assert torch.allclose(weighted.edge_weight[order].float(), w)


def test_to_edge_index_errors():
    with pytest.raises(TypeError, match="networkx graph"):
        convert.to_edge_index("not a graph")
    with pytest.raises(ValueError, match="square"):
        convert.to_edge_index(sp.csr_matrix(np.ones((2, 3))))
    with pytest.raises(ValueError, match="num_nodes"):
        convert.to_edge_index(torch.tensor([[0, 5], [1, 2]]), num_nodes=3)


def test_callers_use_the_shared_conversion():
    # interop keeps its names, as the same functions
    for name in ("from_networkx", "to_networkx", "from_scipy", "to_scipy", "from_sparse_adjacency", "from_data"):
        assert getattr(interop, name) is getattr(convert, name)
    # explain's graph_edges: every pair once, both directions, sorted by source
    graph = nx.karate_club_graph()
    labels, ei = graph_edges(graph)
    ref = pyg_coalesce(pyg_to_undirected(convert.from_networkx(graph)[1]), num_nodes=34)
    assert labels == [str(n) for n in graph.nodes] and torch.equal(ei, ref)
    # the forecaster's adjacency_to_edges: (target, source) order, weights of A[j, i], loops filled
    adj = np.array([[0.0, 0.5, 0.0], [0.2, 2.0, 0.0], [0.0, 0.7, 0.0]])
    ei, w = adjacency_to_edges(adj)
    filled = torch.tensor(adj, dtype=torch.float32) + torch.diag(torch.tensor([1.0, 0.0, 1.0]))
    ref_ei, ref_w = pyg_coalesce(*dense_to_sparse(filled), num_nodes=3, sort_by_row=False)
    assert torch.equal(ei, ref_ei) and torch.equal(w, ref_w)
