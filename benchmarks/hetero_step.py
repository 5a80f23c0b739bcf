"""Training-step time on tolokers: our GAT and GAT-sep against PyG ``GATConv`` models of the same size.

One step = forward on the whole graph (11,758 nodes, 1,038,000 directed
edges) + cross-entropy on the training nodes of split 0 + backward + an
Adam step, in training mode. Ours and the reference start from the same
weights and run in one process in alternation (A B A B ...); the ratio is
the median of the paired ratios (ours / PyG, below 1 = ours faster).

Cases (``--hidden`` D, ``--heads`` H, ``--layers`` L, dropout 0.2):

* ``gat``: :class:`graphformer.models.graph.GAT` (L layers, H heads x D/H, ELU,
  one averaged output head) against the same stack of ``GATConv`` (PyG's
  ``examples/gat.py`` model), edges given as ``edge_index`` each step, self-loops
  added on both sides;
* ``gat-sep``: :class:`graphformer.models.graph.GATSep` (input map, L residual
  blocks ``x + drop(FF(GAT(LN(x))))`` with a separate root weight and no
  self-loops, LayerNorm, output map) against the same model with PyG's
  ``GATConv(add_self_loops=False)`` plus a ``Linear`` root map in each block.

    python benchmarks/hetero_step.py --root ../shared/data/heterophilous
    python benchmarks/hetero_step.py --root ../shared/data/heterophilous --hidden 512 --heads 8 --repeats 5

Legend: N nodes, E edges, D width, H heads, L layers.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from graphformer.data.heterophilous import load_heterophilous
from graphformer.models.graph import GAT, GATSep

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graph_epoch import paired  # noqa: E402  (the graph-epoch benchmark's paired timing, in ms)


class PygGAT(nn.Module):
    """L ``GATConv`` layers (H heads, ELU between), the last one head, dropout on inputs and attention."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, heads: int, layers: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import GATConv

        dims = [in_channels] + [hidden * heads] * (layers - 1)
        self.convs = nn.ModuleList([GATConv(d, hidden, heads=heads, dropout=dropout) for d in dims[:-1]])
        self.convs.append(GATConv(dims[-1], out_channels, heads=1, concat=False, dropout=dropout))
        self.dropout = dropout

    def forward(self, x, edge_index):
        for i, conv in enumerate(self.convs):
            x = conv(F.dropout(x, self.dropout, self.training), edge_index)
            if i < len(self.convs) - 1:
                x = F.elu(x)
        return x


class PygSepBlock(nn.Module):
    """``x + drop(FF(GATConv(LN(x)) + W_r LN(x)))`` with PyG's ``GATConv`` (no self-loops)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.norm = nn.LayerNorm(d)
        self.conv = GATConv(d, d // heads, heads=heads, add_self_loops=False, bias=True)
        self.root = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, edge_index):
        h = self.norm(x)
        return x + self.dropout(self.ff(self.conv(h, edge_index) + self.root(h)))


class PygGATSep(nn.Module):
    """GAT-sep of Platonov et al. from PyG parts: input map, GELU, L :class:`PygSepBlock`, LayerNorm, output map."""

    def __init__(self, in_channels: int, d: int, out_channels: int, heads: int, layers: int, dropout: float):
        super().__init__()
        self.input = nn.Linear(in_channels, d)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([PygSepBlock(d, heads, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, out_channels)

    def forward(self, x, edge_index):
        h = F.gelu(self.dropout(self.input(x)))
        for block in self.blocks:
            h = block(h, edge_index)
        return self.head(self.norm(h))


def copy_sep_weights(ours: GATSep, ref: PygGATSep) -> None:
    """Give the PyG GAT-sep our weights (then both compute the same function; tests check it)."""
    with torch.no_grad():
        pairs = [(ref.input, ours.input), (ref.norm, ours.norm), (ref.head, ours.head)]
        for blk, layer in zip(ref.blocks, ours.layers):
            pairs += [
                (blk.norm, layer.norm),
                (blk.root, layer.attn.root),
                (blk.ff[0], layer.feedforward.linear1),
                (blk.ff[3], layer.feedforward.linear2),
            ]
            blk.conv.lin.weight.copy_(layer.attn.v_proj.weight)
            blk.conv.att_src.copy_(layer.attn.score.att_src.unsqueeze(0))
            blk.conv.att_dst.copy_(layer.attn.score.att_dst.unsqueeze(0))
            blk.conv.bias.copy_(layer.attn.bias)
        for dst, src in pairs:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def step_fn(model: nn.Module, x, edge_index, y, train):
    """One training step of ``model`` on the whole graph, as a closure."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x, edge_index)[train], y[train]).backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> None:
    """Time both cases and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/data/heterophilous", help="folder with tolokers.npz")
    parser.add_argument("--dataset", default="tolokers", help="heterophilous graph (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=64, help="width D (default: %(default)s)")
    parser.add_argument("--heads", type=int, default=4, help="heads H (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=2, help="layers L (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed pairs per case (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--only", help="run the cases whose name contains this text")
    args = parser.parse_args(argv)
    if args.hidden % args.heads:
        raise ValueError(f"--hidden {args.hidden} must be divisible by --heads {args.heads}")

    torch.set_num_threads(args.threads)
    data = load_heterophilous(args.root, args.dataset)
    x, ei, y = data.x, data.edge_index, data.y
    train = data.train_mask[:, 0] if data.train_mask.dim() == 2 else data.train_mask
    f, k, d, h, layers = x.size(1), int(y.max()) + 1, args.hidden, args.heads, args.layers
    print(
        f"{args.dataset}: {data.num_nodes} nodes, {data.num_edges} edges, {f} features; D={d}, H={h}, L={layers}; "
        f"torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, {args.repeats} pairs\n"
    )

    cases = []
    torch.manual_seed(0)
    cases.append(
        ("gat", GAT(f, d // h, k, heads=h, num_layers=layers, dropout=0.2), PygGAT(f, d // h, k, h, layers, 0.2))
    )
    torch.manual_seed(0)
    ours_sep, ref_sep = GATSep(f, d, k, num_layers=layers, num_heads=h, dropout=0.2), PygGATSep(f, d, k, h, layers, 0.2)
    copy_sep_weights(ours_sep, ref_sep)
    cases.append(("gat-sep", ours_sep, ref_sep))
    print("| case | parameters ours / PyG | ours (s / step) | PyG (s / step) | ours / PyG (median of paired ratios) |")
    print("| --- | --- | --- | --- | --- |")
    for name, ours, ref in cases:
        if args.only and args.only not in name:
            continue
        n_ours = sum(p.numel() for p in ours.parameters())
        n_ref = sum(p.numel() for p in ref.parameters())
        ms_ours, ms_ref, ratio = paired(step_fn(ours, x, ei, y, train), step_fn(ref, x, ei, y, train), args.repeats, 2)
        t_ours, t_ref = ms_ours / 1000, ms_ref / 1000  # seconds per step
        print(f"| {name} | {n_ours} / {n_ref} | {t_ours:.3f} | {t_ref:.3f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
