"""Zachary's karate club: which club will each member join, from two labels?

The club split in two after a quarrel between the instructor (Mr. Hi, node 0)
and the administrator (the Officer, node 33). Only those two members are
labelled; a two-layer GAT (or GCN) reads the friendship graph and labels the
other 32 (one-hot node ids as features, so the graph is the only signal).
Accuracy is measured on 24 test members (8 more are the validation set,
see :func:`graphformer.data.graphs.karate_club`).

With ``--png`` the graph is drawn with each friendship's width set by the
attention the last layer pays along it (both directions averaged, heads
averaged), nodes coloured by the predicted club, the two labelled leaders
outlined. For GCN the "attention" is its fixed weight 1/sqrt(d_i d_j).

Run::

    python examples/karate_club.py --model gat --png karate.png

Legend: N members (34), E friendships (both directions, 156), H heads.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from graphformer.data.graphs import karate_club
from graphformer.interop import from_networkx
from graphformer.models.graph import GAT, GCN


def build(model: str, num_nodes: int, num_classes: int):
    """A small GAT (4 heads x 4 channels) or GCN (16 hidden) for one-hot node ids."""
    if model == "gat":
        return GAT(num_nodes, hidden_channels=4, out_channels=num_classes, heads=4, dropout=0.3)
    if model == "gcn":
        return GCN(num_nodes, hidden_channels=16, out_channels=num_classes, dropout=0.3)
    raise ValueError(f"--model must be 'gat' or 'gcn', got {model!r}")


def train(model, data, epochs: int, lr: float = 0.01) -> None:
    """Full-batch training on the labelled nodes (Adam, weight decay 5e-4), model left in eval mode."""
    graph = model.prepare(data.edge_index, data.num_nodes)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(data.x, graph)[data.train_mask], data.y[data.train_mask])
        loss.backward()
        opt.step()
    model.eval()


def edge_attention(model, data) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of the last layer along each friendship, ``[E]`` for ``edge_index`` ``[2, E]`` (no self-loops).

    Heads are averaged and each undirected edge gets the mean of its two directions.
    """
    graph = model.prepare(data.edge_index, data.num_nodes)
    with torch.no_grad():
        h = data.x
        for conv in model.convs[:-1]:
            h = conv(h, graph)
            h = F.elu(h) if isinstance(model, GAT) else F.relu(h)
        _, att = model.convs[-1](h, graph, return_attention=True)
    src, dst = att.edge_index
    keep = src != dst
    src, dst, w = src[keep], dst[keep], att.weights[keep].mean(-1)
    n = data.num_nodes
    dense = torch.zeros(n, n).index_put_((src, dst), w)
    dense = (dense + dense.t()) / 2
    edges = data.edge_index[:, data.edge_index[0] < data.edge_index[1]]
    return edges, dense[edges[0], edges[1]]


def draw(data, edges, widths, predicted, path: str) -> None:
    """Save the graph (spring layout, seed 0) as a PNG; needs matplotlib."""
    import networkx as nx
    from matplotlib.figure import Figure

    g = nx.Graph()
    g.add_nodes_from(range(data.num_nodes))
    g.add_edges_from(edges.t().tolist())
    pos = nx.spring_layout(g, seed=0)
    scale = 8.0 / float(widths.max())
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    nx.draw_networkx_edges(g, pos, edgelist=edges.t().tolist(), width=(widths * scale).tolist(), alpha=0.6, ax=ax)
    colors = ["tab:orange" if int(c) == 0 else "tab:blue" for c in predicted]
    outline = ["black" if bool(m) else "white" for m in data.train_mask]
    nx.draw_networkx_nodes(g, pos, node_color=colors, edgecolors=outline, linewidths=2.5, node_size=320, ax=ax)
    nx.draw_networkx_labels(g, pos, font_size=8, ax=ax)
    ax.set_title("karate club: predicted club (orange Mr. Hi, blue Officer); edge width = attention")
    ax.axis("off")
    fig.savefig(path, dpi=120, bbox_inches="tight")


def main(argv: list[str] | None = None) -> float:
    """Train, print the test accuracy and return it (optionally draw the graph)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("gat", "gcn"), default="gat")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", help="save the graph with attention as edge widths to this file")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    data = karate_club()  # labels and split; the edges are the networkx graph's, as from_networkx reads them
    import networkx as nx

    _, edge_index, _ = from_networkx(nx.karate_club_graph())
    data.edge_index = edge_index
    model = build(args.model, data.num_nodes, int(data.y.max()) + 1)
    train(model, data, args.epochs)
    with torch.no_grad():
        predicted = model(data.x, data.edge_index).argmax(-1)
    accuracy = float((predicted[data.test_mask] == data.y[data.test_mask]).float().mean())
    print(
        f"{args.model}: trained on members {data.train_mask.nonzero().flatten().tolist()}, "
        f"test accuracy {accuracy:.3f} on {int(data.test_mask.sum())} members"
    )
    if args.png:
        edges, widths = edge_attention(model, data)
        draw(data, edges, widths, predicted, args.png)
        print(f"saved {args.png}")
    return accuracy


if __name__ == "__main__":
    main()
