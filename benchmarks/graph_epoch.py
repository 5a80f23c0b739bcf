"""Training-epoch time of our GCN and GAT on Cora against PyG models of the same size.

One epoch = forward on the whole graph + cross-entropy on the training nodes
+ backward + an Adam step, in training mode. Ours
(:mod:`graphformer.models.graph`) and the reference (built from
``torch_geometric.nn.GCNConv`` / ``GATConv`` exactly as PyG's
``examples/gcn.py`` / ``examples/gat.py``: 16 hidden, dropout 0.5; 8 heads x 8,
dropout 0.6) start from the same weights and run in one process in
alternation (A B A B ...); the ratio is the median of the paired ratios
(ours / PyG, below 1 = ours faster).

Cases:

* ``standard``: the published settings, edges given as ``edge_index`` each
  epoch (both sides add self-loops and normalise every forward, PyG's default
  ``cached=False``);
* ``no dropout``: the same with dropout 0, which removes the dominant cost
  shared by both (dropout on the 2708 x 1433 input features) and leaves
  the graph part;
* ``prepared``: ours with the edge layout built once (``model.prepare``)
  against ``GCNConv(cached=True)`` (GCN) or PyG as before (GAT has no cache).

    python benchmarks/graph_epoch.py --root data/planetoid
    python benchmarks/graph_epoch.py --root data/planetoid --profile   # where our time goes
    python benchmarks/graph_epoch.py --root data/planetoid --only GAT --layout   # the cost of the edge layout

Legend: N nodes, E edges, F features.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from graphformer.data.graphs import load_planetoid
from graphformer.models.graph import GAT, GCN


class PygGCN(nn.Module):
    """PyG's examples/gcn.py model: dropout, GCNConv, ReLU, dropout, GCNConv."""

    def __init__(self, in_channels, hidden, out_channels, dropout=0.5, cached=False):
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(in_channels, hidden, cached=cached)
        self.conv2 = GCNConv(hidden, out_channels, cached=cached)
        self.dropout = dropout

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, self.training)
        x = self.conv1(x, edge_index).relu()
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


class PygGAT(nn.Module):
    """PyG's examples/gat.py model: dropout, GATConv (8 heads), ELU, dropout, GATConv (1 head)."""

    def __init__(self, in_channels, hidden, out_channels, heads=8, dropout=0.6):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.conv1 = GATConv(in_channels, hidden, heads=heads, dropout=dropout)
        self.conv2 = GATConv(hidden * heads, out_channels, heads=1, concat=False, dropout=dropout)
        self.dropout = dropout

    def forward(self, x, edge_index):
        x = F.dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, self.dropout, self.training)
        return self.conv2(x, edge_index)


def copy_weights(ours: nn.Module, ref: nn.Module) -> None:
    """Give the PyG model our initial weights (so both optimise the same problem)."""
    with torch.no_grad():
        for conv, pyg in zip(ours.convs, (ref.conv1, ref.conv2)):
            pyg.lin.weight.copy_(conv.v_proj.weight)
            pyg.bias.copy_(conv.bias)
            if hasattr(pyg, "att_src"):
                pyg.att_src.copy_(conv.score.att_src.unsqueeze(0))
                pyg.att_dst.copy_(conv.score.att_dst.unsqueeze(0))


def epoch_fn(model: nn.Module, data, graph):
    """One training step of ``model``, as a closure."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    model.train()

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(data.x, graph)[data.train_mask], data.y[data.train_mask])
        loss.backward()
        opt.step()

    return step


def paired(a, b, repeats: int, warmup: int = 3) -> tuple[float, float, float]:
    """Median time of ``a`` and ``b`` (ms) and the median of the paired ratios a / b, alternating the order."""
    for _ in range(warmup):
        a()
        b()
    ta, tb, ratios = [], [], []
    for i in range(repeats):
        order = (a, b) if i % 2 == 0 else (b, a)
        times = {}
        for fn in order:
            start = time.perf_counter()
            fn()
            times[fn] = time.perf_counter() - start
        ta.append(times[a])
        tb.append(times[b])
        ratios.append(times[a] / times[b])
    return 1000 * statistics.median(ta), 1000 * statistics.median(tb), statistics.median(ratios)


def cases(data):
    """(name, our step, PyG step) for every case."""
    n, f, k = data.num_nodes, data.num_features, int(data.y.max()) + 1
    out = []
    for dropout_name, on in (("standard", True), ("no dropout", False)):
        torch.manual_seed(0)
        ours = GCN(f, 16, k, dropout=0.5 if on else 0.0)
        ref = PygGCN(f, 16, k, dropout=0.5 if on else 0.0)
        copy_weights(ours, ref)
        out.append(
            (f"GCN, {dropout_name}", epoch_fn(ours, data, data.edge_index), epoch_fn(ref, data, data.edge_index))
        )
    torch.manual_seed(0)
    ours, ref = GCN(f, 16, k, dropout=0.0), PygGCN(f, 16, k, dropout=0.0, cached=True)
    copy_weights(ours, ref)
    out.append(
        (
            "GCN, no dropout, prepared / cached",
            epoch_fn(ours, data, ours.prepare(data.edge_index, n)),
            epoch_fn(ref, data, data.edge_index),
        )
    )
    for dropout_name, p in (("standard", 0.6), ("no dropout", 0.0)):
        torch.manual_seed(0)
        ours, ref = GAT(f, 8, k, heads=8, dropout=p), PygGAT(f, 8, k, heads=8, dropout=p)
        copy_weights(ours, ref)
        out.append(
            (f"GAT, {dropout_name}", epoch_fn(ours, data, data.edge_index), epoch_fn(ref, data, data.edge_index))
        )
    torch.manual_seed(0)
    ours, ref = GAT(f, 8, k, heads=8, dropout=0.0), PygGAT(f, 8, k, heads=8, dropout=0.0)
    copy_weights(ours, ref)
    out.append(
        (
            "GAT, no dropout, prepared",
            epoch_fn(ours, data, ours.prepare(data.edge_index, n)),
            epoch_fn(ref, data, data.edge_index),
        )
    )
    return out


def layout_timings(data, repeats: int = 100) -> None:
    """Print the cost of laying out Cora's edges (ours) and of PyG's GCN normalisation, median ms."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    from graphformer.structure import SparseGraph, add_self_loops, check_edge_index

    ei, n = data.edge_index, data.num_nodes
    looped, _ = add_self_loops(ei, n, mode="remaining")

    def median_ms(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    rows = [
        ("`structure.check_edge_index`", lambda: check_edge_index(ei, n, n)),
        ('`structure.add_self_loops(mode="remaining")`', lambda: add_self_loops(ei, n, mode="remaining")),
        (
            "`SparseGraph.from_edge_index(..., check=False)`",
            lambda: SparseGraph.from_edge_index(looped, n, check=False),
        ),
        ("(one `argsort` of the E + N keys)", lambda: torch.argsort(looped[1] * n + looped[0])),
        ("PyG `gcn_norm` (self-loops + degree normalisation)", lambda: gcn_norm(ei, None, n)),
    ]
    print(f"\n| step (median of {repeats}) | ms |\n| --- | --- |")
    for label, fn in rows:
        print(f"| {label} | {median_ms(fn):.2f} |")


def profile(step, label: str, rows: int = 12) -> None:
    """Print the operators that take our time (torch.profiler, 10 steps)."""
    from torch.profiler import profile as torch_profile

    for _ in range(3):
        step()
    with torch_profile() as prof:
        for _ in range(10):
            step()
    print(f"\n### {label}: top operators by self CPU time (10 epochs)\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> None:
    """Time every case and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="data/planetoid", help="folder with Cora/raw")
    parser.add_argument("--repeats", type=int, default=20, help="timed pairs per case (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--only", help="run the cases whose name contains this text")
    parser.add_argument("--profile", action="store_true", help="also profile our model in each case")
    parser.add_argument("--layout", action="store_true", help="also time the edge layout against gcn_norm")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = load_planetoid(args.root, "Cora")
    print(
        f"Cora: {data.num_nodes} nodes, {data.num_edges} edges, {data.num_features} features; "
        f"torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, {args.repeats} pairs\n"
    )
    print("| case | ours (ms) | PyG (ms) | ours / PyG (median of paired ratios) |")
    print("| --- | --- | --- | --- |")
    selected = [c for c in cases(data) if not args.only or args.only in c[0]]
    for name, ours, ref in selected:
        t_ours, t_ref, ratio = paired(ours, ref, args.repeats)
        print(f"| {name} | {t_ours:.1f} | {t_ref:.1f} | {ratio:.2f} |", flush=True)
    if args.layout:
        layout_timings(data)
    if args.profile:
        for name, ours, _ in selected:
            profile(ours, f"ours, {name}")


if __name__ == "__main__":
    main()
