"""graphformer classify: node classification (Planetoid, karate club) or graph classification (synthetic structures).

Every model is one attention layer under different settings: ``gcn`` (fixed
degree-normalised weights), ``gat`` (additive scores), ``transformer`` (dot
scores on the edges or on each graph's complete graph, with structural
encodings) and ``gps`` (local edges + global complete graph per layer).

Protocol: for each of ``--runs`` seeds (``seed``, ``seed + 1``, ...) train
for ``--epochs`` epochs with Adam, evaluate after every epoch, and keep the
test accuracy of the epoch with the best validation accuracy (ties go to the
lower validation loss). ``accuracy_mean`` / ``accuracy_std`` summarise the
runs (sample standard deviation).

Datasets:

* ``Cora``, ``CiteSeer``, ``PubMed``: PyG's ``Planetoid`` under ``--root``
  (raw files must already be there: nothing is downloaded), public split,
  features scaled to rows summing to 1.
* ``karate``: Zachary's karate club, two labelled leaders
  (:func:`graphformer.data.graphs.karate_club`).
* ``synthetic-structures``: 1200 small graphs in 8 structural classes with
  constant node features, split 60/20/20
  (:func:`graphformer.data.graphs.synthetic_structures`).

Legend: N nodes, E edges, B graphs, F features, K classes, k encoding width.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.graphs import NODE_ENCODINGS, parse_encoding
from .models.graph import GAT, GCN, GPS, HETEROPHILY_RECIPE, GraphTransformer, build_graph_model, mean_pool

__all__ = [
    "GRAPH_DATASETS",
    "MODELS",
    "NODE_DATASETS",
    "add_arguments",
    "build_model",
    "load_dataset",
    "run",
    "train_graph_classifier",
    "train_node_classifier",
]

NODE_DATASETS = ("Cora", "CiteSeer", "PubMed", "karate")
GRAPH_DATASETS = ("synthetic-structures",)
MODELS = ("gcn", "gat", "transformer", "gps", "gat-sep", "gt-sep")
SEP_MODELS = ("gat-sep", "gt-sep")  # Platonov et al. 2023: residual + LayerNorm, self and neighbours apart

# Published settings (Kipf & Welling 2017; Velickovic et al. 2018); the transformer rows are ours.
NODE_DEFAULTS = {
    "gcn": {"hidden": 16, "heads": 1, "layers": 2, "dropout": 0.5, "lr": 0.01, "weight_decay": 5e-4,
            "epochs": 200, "encoding": "none"},
    "gat": {"hidden": 8, "heads": 8, "layers": 2, "dropout": 0.6, "lr": 0.005, "weight_decay": 5e-4,
            "epochs": 200, "encoding": "none"},
    "transformer": {"hidden": 64, "heads": 4, "layers": 2, "dropout": 0.5, "lr": 0.005, "weight_decay": 5e-4,
                    "epochs": 200, "encoding": "random-walk"},
    "gps": {"hidden": 64, "heads": 4, "layers": 2, "dropout": 0.5, "lr": 0.005, "weight_decay": 5e-4,
            "epochs": 200, "encoding": "random-walk"},
    # the published recipe (graphformer.models.graph.HETEROPHILY_RECIPE); hidden is the full width
    **{name: {"hidden": HETEROPHILY_RECIPE["hidden"], "heads": HETEROPHILY_RECIPE["heads"], "layers": 2,
              "dropout": HETEROPHILY_RECIPE["dropout"], "lr": HETEROPHILY_RECIPE["lr"],
              "weight_decay": HETEROPHILY_RECIPE["weight_decay"], "epochs": HETEROPHILY_RECIPE["steps"],
              "encoding": "none"} for name in SEP_MODELS},
}
# GPS attends over the complete graph of all N nodes; dropout on those N x N weights has no fused CPU kernel
# (about 8x slower on Cora), so its attention weights are not dropped (features and residuals still are).
GPS_ATTN_DROPOUT = 0.0
GRAPH_DEFAULTS = {
    name: {"hidden": 64, "heads": 1 if name == "gcn" else 4, "layers": 3, "dropout": 0.0,
           # GCN's mean-pooled degree-normalised sums barely move at 0.001 in 100 epochs
           "lr": 0.01 if name == "gcn" else 0.001, "weight_decay": 0.0, "epochs": 100, "encoding": "random-walk"}
    for name in MODELS
}
MAX_DISTANCE = 8  # shortest-path distances above this share one bias (synthetic graphs have diameter <= 39)


# ------------------------------------------------------------------ data
def load_dataset(name: str, root: str | Path = "data"):
    """A node dataset (PyG ``Data`` with masks) or a list of small graphs, by name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        FileNotFoundError: a Planetoid dataset whose raw files are not under ``root``.
    """
    from .data import graphs

    key = name.lower()
    if key in graphs.PLANETOID:
        return graphs.load_planetoid(root, key)
    if key in ("karate", "karate-club"):
        return graphs.karate_club()
    if key in ("synthetic-structures", "synthetic"):
        return graphs.synthetic_structures(seed=0)
    raise ValueError(f"unknown dataset {name!r}; choose one of {NODE_DATASETS + GRAPH_DATASETS}")


def _check_node_data(data) -> None:
    for attr in ("x", "edge_index"):
        if getattr(data, attr, None) is None:
            raise ValueError(f"the dataset has no {attr}; node classification needs x [N, F] and edge_index [2, E]")
    y = getattr(data, "y", None)
    if y is None:
        raise ValueError("the dataset has no labels (data.y is missing); node classification needs y [N] "
                         "with a class id per node")
    if y.dim() != 1 or y.numel() != data.x.size(0) or y.is_floating_point():
        raise ValueError(f"data.y must hold one integer class id per node, shape [{data.x.size(0)}], "
                         f"got {tuple(y.shape)} {y.dtype}")
    for mask in ("train_mask", "val_mask", "test_mask"):
        m = getattr(data, mask, None)
        if m is None or m.dtype != torch.bool or m.shape != y.shape:
            raise ValueError(f"the dataset needs a bool {mask} of shape [{y.numel()}] (which nodes train, "
                             "validate and test)")
        if not bool(m.any()):
            raise ValueError(f"{mask} selects no node")
        if bool((y[m] < 0).any()):
            raise ValueError(f"some nodes in {mask} have no label (y < 0)")


def _node_encoding(data, encoding: str, dim: int) -> Tensor | None:
    from .data.graphs import node_encoding

    node, spd = parse_encoding(encoding)
    if spd:
        raise ValueError(f"encoding {encoding!r}: the shortest-path bias is for graph classification (an N x N "
                         "distance matrix per graph); for nodes use 'none' or one of laplacian, random-walk, degree")
    return None if node is None else node_encoding(data.edge_index, data.num_nodes, node, dim)


# ---------------------------------------------------------------- models
class _WithEncoding(nn.Module):
    """A GCN / GAT reading the structural encoding as extra input features, optionally mean-pooled per graph."""

    def __init__(self, model: nn.Module, graph_level: bool):
        super().__init__()
        self.model, self.graph_level = model, graph_level

    def prepare(self, edge_index: Tensor, num_nodes: int):
        return self.model.prepare(edge_index, num_nodes)

    def forward(self, x, edge_index, *, batch=None, pe=None, distance=None):
        if pe is not None:
            x = torch.cat([x, pe], dim=-1)
        out = self.model(x, edge_index)
        return mean_pool(out, batch) if self.graph_level else out


def build_model(name: str, in_channels: int, num_classes: int, *, hidden: int, heads: int = 4, layers: int = 2,
                dropout: float = 0.5, encoding: str = "none", pe_dim: int = 8, graph_level: bool = False,
                attention: str | None = None, out_heads: int = 1) -> nn.Module:
    """One of :data:`MODELS`, called as ``model(x, edge_index, batch=, pe=, distance=)``.

    ``encoding`` (see :func:`graphformer.data.graphs.parse_encoding`) decides what
    the model reads besides ``x``: a ``pe`` ``[N, pe_dim]`` (``"laplacian"``,
    ``"random-walk"``, ``"degree"``; concatenated to ``x`` for GCN and GAT,
    projected and added for the transformers) and/or a ``distance`` matrix
    (``"shortest-path"``: a learned attention bias, transformers only).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")
    node, with_spd = parse_encoding(encoding)
    pe = pe_dim if node is not None else 0
    flip = node == "laplacian"
    spd = MAX_DISTANCE if with_spd else None
    if name in SEP_MODELS:
        if spd is not None:
            raise ValueError(f"{name} attends only along edges; use a node encoding, not shortest-path")
        return _WithEncoding(build_graph_model(name, in_channels + pe, num_classes, hidden_channels=hidden,
                                               num_heads=heads, num_layers=layers, dropout=dropout), graph_level)
    if name in ("gcn", "gat"):
        if spd is not None:
            raise ValueError(f"the shortest-path encoding is an attention bias over all pairs; {name} attends only "
                             "along edges. Use --model transformer or gps, or a node encoding")
        if name == "gcn":
            model = GCN(in_channels + pe, hidden, num_classes, num_layers=layers, dropout=dropout)
        else:
            model = GAT(in_channels + pe, hidden, num_classes, heads=heads, out_heads=out_heads,
                        num_layers=layers, dropout=dropout)
        return _WithEncoding(model, graph_level)
    if name == "transformer":
        attention = attention or ("complete" if graph_level or spd is not None else "edges")
        return GraphTransformer(in_channels, hidden, num_classes, layers, heads, dropout, pe_dim=pe, sign_flip=flip,
                                attention=attention, max_distance=spd, graph_level=graph_level)
    if attention is not None:
        raise ValueError("--attention applies to the transformer model; GPS always uses both")
    return GPS(in_channels, hidden, num_classes, layers, heads, dropout, pe_dim=pe, sign_flip=flip,
               max_distance=spd, graph_level=graph_level, attn_dropout=GPS_ATTN_DROPOUT)


# -------------------------------------------------------------- training
def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean()) if y.numel() else float("nan")


def _better(val_acc: float, val_loss: float, best: tuple[float, float] | None) -> bool:
    return best is None or val_acc > best[0] or (val_acc == best[0] and val_loss < best[1])


def _summary(runs: list[dict]) -> dict:
    acc = [r["test_accuracy"] for r in runs]
    mean = sum(acc) / len(acc)
    std = math.sqrt(sum((a - mean) ** 2 for a in acc) / (len(acc) - 1)) if len(acc) > 1 else 0.0
    val = [r["val_accuracy"] for r in runs]
    return {"accuracy_mean": mean, "accuracy_std": std, "val_accuracy_mean": sum(val) / len(val)}


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="epoch", mininterval=0.5, leave=False)


def train_node_classifier(data, model: str = "gcn", *, runs: int = 1, epochs: int | None = None, seed: int = 0,
                          lr: float | None = None, weight_decay: float | None = None, hidden: int | None = None,
                          heads: int | None = None, layers: int | None = None, dropout: float | None = None,
                          encoding: str | None = None, pe_dim: int = 8, attention: str | None = None,
                          out_heads: int = 1, progress: bool = False) -> dict:
    """Train ``model`` on one graph with train/val/test masks, ``runs`` times; return the metrics.

    Options left as None take the model's defaults (:data:`NODE_DEFAULTS`: the
    published settings for GCN and GAT). The layout of the edges is built once
    per run (``model.prepare``) and reused by every epoch.

    Returns:
        ``{"accuracy_mean", "accuracy_std", "val_accuracy_mean", "runs": [{"seed", "best_epoch",
        "val_accuracy", "test_accuracy", "seconds"}, ...], "config": {...}}``.
    """
    _check_node_data(data)
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    cfg = _config(NODE_DEFAULTS[model], epochs=epochs, lr=lr, weight_decay=weight_decay, hidden=hidden, heads=heads,
                  layers=layers, dropout=dropout, encoding=encoding)
    _check_runs(runs, cfg["epochs"])
    x, y = data.x.float(), data.y.long()
    num_classes = int(y.max()) + 1
    pe = _node_encoding(data, cfg["encoding"], pe_dim)
    masks = data.train_mask, data.val_mask, data.test_mask
    results = []
    bar = _progress(runs * cfg["epochs"], progress, f"{model}")
    for r in range(runs):
        torch.manual_seed(seed + r)
        net = build_model(model, x.size(1), num_classes, hidden=cfg["hidden"], heads=cfg["heads"],
                          layers=cfg["layers"], dropout=cfg["dropout"], encoding=cfg["encoding"], pe_dim=pe_dim,
                          attention=attention, out_heads=out_heads)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        start = time.perf_counter()
        graph = net.prepare(data.edge_index, x.size(0))
        best, best_epoch, best_test = None, 0, float("nan")
        for epoch in range(1, cfg["epochs"] + 1):
            net.train()
            opt.zero_grad()
            loss = F.cross_entropy(net(x, graph, pe=pe)[masks[0]], y[masks[0]])
            loss.backward()
            opt.step()
            net.eval()
            with torch.no_grad():
                out = net(x, graph, pe=pe)
            val_loss = float(F.cross_entropy(out[masks[1]], y[masks[1]]))
            val_acc = _accuracy(out[masks[1]], y[masks[1]])
            if _better(val_acc, val_loss, best):
                best, best_epoch, best_test = (val_acc, val_loss), epoch, _accuracy(out[masks[2]], y[masks[2]])
            bar.update()
            bar.set_postfix(run=r + 1, loss=f"{loss.item():.3f}", val=f"{best[0]:.3f}", test=f"{best_test:.3f}")
        results.append({"seed": seed + r, "best_epoch": best_epoch, "val_accuracy": best[0],
                        "test_accuracy": best_test, "seconds": time.perf_counter() - start})
    bar.close()
    num_params = sum(p.numel() for p in net.parameters())
    return {**_summary(results), "runs": results, "num_parameters": num_params,
            "config": {"model": model, **cfg, "pe_dim": pe_dim, "seed": seed, "num_runs": runs}}


def train_graph_classifier(graphs, model: str = "transformer", *, runs: int = 1, epochs: int | None = None,
                           seed: int = 0, lr: float | None = None, weight_decay: float | None = None,
                           hidden: int | None = None, heads: int | None = None, layers: int | None = None,
                           dropout: float | None = None, encoding: str | None = None, pe_dim: int = 8,
                           attention: str | None = None, batch_size: int = 64, split_seed: int = 0,
                           progress: bool = False) -> dict:
    """Train a graph classifier on a list of small graphs (PyG ``Data`` with ``y`` ``[1]``); return the metrics.

    The graphs are split 60/20/20 (seeded by ``split_seed``, the same for
    every run), encoded once (:func:`graphformer.data.graphs.add_encodings`)
    and batched PyG-style (:func:`graphformer.data.graphs.collate`).
    Metrics as :func:`train_node_classifier`.
    """
    from .data.graphs import add_encodings, collate, split_indices

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
    if not graphs:
        raise ValueError("graph classification needs at least one graph")
    if any(getattr(g, "y", None) is None for g in graphs):
        raise ValueError("some graphs have no label (g.y is missing); graph classification needs one class id "
                         "per graph")
    cfg = _config(GRAPH_DEFAULTS[model], epochs=epochs, lr=lr, weight_decay=weight_decay, hidden=hidden,
                  heads=heads, layers=layers, dropout=dropout, encoding=encoding)
    _check_runs(runs, cfg["epochs"])
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    graphs = add_encodings(list(graphs), cfg["encoding"], pe_dim, MAX_DISTANCE)
    labels = torch.cat([g.y.view(-1) for g in graphs]).long()
    num_classes = int(labels.max()) + 1
    train_idx, val_idx, test_idx = split_indices(len(graphs), seed=split_seed)
    eval_batches = {name: [collate([graphs[i] for i in idx[k:k + 256]]) for k in range(0, len(idx), 256)]
                    for name, idx in (("val", val_idx), ("test", test_idx))}

    def forward(net, b):
        return net(b.x, b.edge_index, batch=b.batch, pe=b.pe, distance=b.distance)

    def evaluate(net, name):
        net.eval()
        with torch.no_grad():
            out = torch.cat([forward(net, b) for b in eval_batches[name]])
            y = torch.cat([b.y for b in eval_batches[name]])
        return _accuracy(out, y), float(F.cross_entropy(out, y))

    results = []
    bar = _progress(runs * cfg["epochs"], progress, f"{model}/{cfg['encoding']}")
    for r in range(runs):
        torch.manual_seed(seed + r)
        gen = torch.Generator().manual_seed(seed + r)
        net = build_model(model, graphs[0].x.size(1), num_classes, hidden=cfg["hidden"], heads=cfg["heads"],
                          layers=cfg["layers"], dropout=cfg["dropout"], encoding=cfg["encoding"], pe_dim=pe_dim,
                          graph_level=True, attention=attention)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        start = time.perf_counter()
        best, best_epoch, best_test = None, 0, float("nan")
        for epoch in range(1, cfg["epochs"] + 1):
            net.train()
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            for k in range(0, len(order), batch_size):
                b = collate([graphs[i] for i in order[k:k + batch_size]])
                opt.zero_grad()
                loss = F.cross_entropy(forward(net, b), b.y)
                loss.backward()
                opt.step()
            val_acc, val_loss = evaluate(net, "val")
            if _better(val_acc, val_loss, best):
                best, best_epoch, best_test = (val_acc, val_loss), epoch, evaluate(net, "test")[0]
            bar.update()
            bar.set_postfix(run=r + 1, loss=f"{loss.item():.3f}", val=f"{best[0]:.3f}", test=f"{best_test:.3f}")
        results.append({"seed": seed + r, "best_epoch": best_epoch, "val_accuracy": best[0],
                        "test_accuracy": best_test, "seconds": time.perf_counter() - start})
    bar.close()
    num_params = sum(p.numel() for p in net.parameters())
    return {**_summary(results), "runs": results, "num_parameters": num_params,
            "config": {"model": model, **cfg, "pe_dim": pe_dim, "batch_size": batch_size, "seed": seed,
                       "num_runs": runs, "attention": attention}}


def _config(defaults: dict, **given) -> dict:
    cfg = dict(defaults)
    cfg.update({k: v for k, v in given.items() if v is not None})
    parse_encoding(cfg["encoding"])
    for key in ("hidden", "heads", "layers"):
        if cfg[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    if not 0.0 <= cfg["dropout"] < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {cfg['dropout']}")
    return cfg


def _check_runs(runs: int, epochs: int) -> None:
    if runs < 1 or epochs < 1:
        raise ValueError(f"runs and epochs must be >= 1, got runs={runs}, epochs={epochs}")


# ------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer classify``."""
    parser.add_argument("--dataset", default="Cora",
                        help=f"one of {', '.join(NODE_DATASETS + GRAPH_DATASETS)} (default: %(default)s)")
    parser.add_argument("--root", default="data",
                        help="folder holding <Name>/raw/ind.<name>.* for the Planetoid datasets; nothing is "
                             "downloaded (default: %(default)s)")
    parser.add_argument("--model", choices=MODELS, default="gcn", help="(default: %(default)s)")
    parser.add_argument("--runs", type=int, default=10, help="seeds seed, seed+1, ... (default: %(default)s)")
    parser.add_argument("--epochs", type=int, help="default: 200 (nodes), 100 (graphs)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default: %(default)s)")
    parser.add_argument("--lr", type=float, help="default: 0.01 gcn, 0.005 gat/transformer/gps; 0.001 for graphs "
                                                 "(gcn 0.01)")
    parser.add_argument("--weight-decay", type=float, help="default: 5e-4 (nodes), 0 (graphs)")
    parser.add_argument("--hidden", type=int, help="hidden width (per head for gat); default: 16 gcn, 8 gat, 64")
    parser.add_argument("--heads", type=int, help="attention heads; default: 8 gat, 4 transformer/gps")
    parser.add_argument("--layers", type=int, help="default: 2 (nodes), 3 (graphs)")
    parser.add_argument("--dropout", type=float, help="default: 0.5 gcn/transformer/gps, 0.6 gat; 0 for graphs")
    parser.add_argument("--encoding", metavar="NAME",
                        help=f"structural encoding: none, {', '.join(NODE_ENCODINGS)}, shortest-path, or a node "
                             "encoding + shortest-path (e.g. degree+shortest-path); default: none for gcn/gat on "
                             "nodes, random-walk otherwise")
    parser.add_argument("--pe-dim", type=int, default=8, help="width of the node encoding (default: %(default)s)")
    parser.add_argument("--attention", choices=("edges", "complete"),
                        help="transformer only: attend along the edges (default for nodes) or over each graph's "
                             "complete graph (default for graphs and with shortest-path)")
    parser.add_argument("--batch-size", type=int, default=64, help="graphs per batch (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", help="folder for metrics.json")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> dict:
    """Load the dataset, train ``--runs`` times and return (and write) the metrics."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.root)
    common = {"runs": args.runs, "epochs": args.epochs, "seed": args.seed, "lr": args.lr,
              "weight_decay": args.weight_decay, "hidden": args.hidden, "heads": args.heads, "layers": args.layers,
              "dropout": args.dropout, "encoding": args.encoding, "pe_dim": args.pe_dim, "attention": args.attention,
              "progress": not args.no_progress}
    if isinstance(data, list):
        metrics = train_graph_classifier(data, args.model, batch_size=args.batch_size, **common)
    else:
        out_heads = 8 if args.model == "gat" and args.dataset.lower() == "pubmed" else 1  # as in the GAT paper
        metrics = train_node_classifier(data, args.model, out_heads=out_heads, **common)
    metrics = {"dataset": args.dataset, "model": args.model, **metrics}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"{args.dataset} {args.model}: test accuracy {100 * metrics['accuracy_mean']:.1f} "
          f"± {100 * metrics['accuracy_std']:.1f} over {args.runs} run(s)")
    return metrics
