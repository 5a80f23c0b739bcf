"""graphformer demo: one layer on built-in data.

1. The sentence "我 爱 你" as a complete graph of three tokens (d_model = 1,
   token values 1, 2, 3, identity projections): every token reads the whole
   sentence.
2. The same sentence as a decoder: the causal DAG, each token reads only its
   past.
3. The same layer with the fixed ``"gcn"`` score on a small networkx graph is
   a GCN: its output equals D^-1/2 (A + I) D^-1/2 X computed by hand.
"""

from __future__ import annotations

import argparse

import networkx as nx
import torch

from ._text import format_table
from .attention import GraphAttention
from .convert import from_networkx, to_dense
from .structure import add_self_loops

__all__ = ["add_arguments", "run", "sentence_layer"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer demo``."""
    parser.add_argument("--sentence", default="我 爱 你", help="space-separated tokens (default: %(default)s)")


def sentence_layer() -> GraphAttention:
    """A one-head attention layer with d_model = 1 and identity projections (Q = K = V = X)."""
    layer = GraphAttention(1, num_heads=1, bias=False)
    with torch.no_grad():
        for lin in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
            lin.weight.fill_(1.0)
    return layer.eval()


def run(args: argparse.Namespace) -> dict:
    """Print the three views and return their outputs as metrics."""
    tokens = args.sentence.split()
    if not tokens:
        raise ValueError("--sentence must contain at least one token")
    x = torch.arange(1, len(tokens) + 1, dtype=torch.float64).unsqueeze(-1)  # [N, 1]
    layer = sentence_layer().double()
    metrics: dict = {"tokens": tokens}

    with torch.no_grad():
        print(f"1. '{' '.join(tokens)}' as a complete graph: every token attends to every token")
        out, att = layer(x, return_attention=True)
        print(format_table(x.T, ["value"], tokens, title="token values (Q = K = V = X)"))
        print(format_table(att.scores[0], tokens, tokens, title="scores q_i k_j / sqrt(d)  (row attends to column)"))
        print(format_table(att.weights[0], tokens, tokens, title="softmax weights"))
        print(format_table(out.T, ["output"], tokens, title="outputs: each token's view of the sentence"))
        metrics["complete_outputs"] = out.squeeze(-1).tolist()

        print("\n2. the same sentence as a decoder: the causal DAG (edges j -> i for j <= i)")
        out_c, att_c = layer(x, causal=True, return_attention=True)
        print(format_table(att_c.weights[0], tokens, tokens, title="causal softmax weights"))
        print(format_table(out_c.T, ["output"], tokens, title="outputs"))
        metrics["causal_outputs"] = out_c.squeeze(-1).tolist()

        print("\n3. the same layer with the fixed 'gcn' score on a path graph is a GCN")
        graph = nx.path_graph(5)
        edge_index = from_networkx(graph)[1]  # both directions of every edge
        feats = torch.arange(1.0, 6.0, dtype=torch.float64).unsqueeze(-1)
        gcn = GraphAttention(1, score="gcn", out_proj=False, bias=False, self_loops="remaining").double()
        with torch.no_grad():
            gcn.v_proj.weight.fill_(1.0)
        out_g = gcn(feats, edge_index)
        loops, _ = add_self_loops(edge_index, 5)
        adj = to_dense(loops, 5, dtype=torch.float64).t()  # adj[i, j] = 1 for an edge j -> i
        dinv = adj.sum(1).rsqrt()
        by_hand = dinv[:, None] * adj * dinv[None, :] @ feats
        nodes = [str(n) for n in graph.nodes]
        print(format_table(torch.cat([feats, out_g, by_hand], 1).T, ["x", "layer", "D^-1/2 (A+I) D^-1/2 x"], nodes))
        metrics["gcn_outputs"] = out_g.squeeze(-1).tolist()
        metrics["gcn_max_abs_error"] = float((out_g - by_hand).abs().max())
    return metrics
