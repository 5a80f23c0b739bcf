"""graphformer classify: node classification (Planetoid, heterophilous graphs, karate club) or graph classification.

Every model is one attention layer under different settings: ``gcn`` (fixed
degree-normalised weights), ``gat`` (additive scores), ``transformer`` (dot
scores on the edges or on each graph's complete graph, with structural
encodings) and ``gps`` (local edges + global complete graph per layer);
for the heterophilous graphs, Platonov et al.'s residual networks (LayerNorm
and a residual connection around each block): ``gat-sep`` and ``gt-sep``
(the node and its neighbours through separate weights, ``root_weight``) and
``gcn-res``, ``gat-res``, ``gt-res`` (the paper's GCN, GAT and GT rows: a
self-loop per node instead). The table :data:`MODELS` takes one line per model.

Protocol: for each of ``--runs`` runs (seed ``seed + r``; on the
heterophilous graphs also split ``r`` of their ten fixed splits) train with
Adam through :func:`graphformer.train.fit`, evaluate after every epoch, and
keep the test score of the epoch with the best validation score (ties go to
the lower validation loss). The score is the accuracy, or the ROC AUC on the
binary heterophilous graphs (minesweeper, tolokers, questions), as in their
paper. ``<metric>_mean`` / ``<metric>_std`` summarise the runs (sample
standard deviation). With ``--out`` each finished run is kept in
``runs.json`` at once; an interrupted command continues with ``--resume``
(the same result as uninterrupted), and ``--resume`` with a larger
``--runs`` adds runs.

Datasets:

* ``Cora``, ``CiteSeer``, ``PubMed``: PyG's ``Planetoid`` under ``--root``
  (raw files must already be there: nothing is downloaded), public split,
  features scaled to rows summing to 1.
* ``minesweeper``, ``tolokers``, ``chameleon_filtered``, ``squirrel_filtered``:
  PyG's ``HeterophilousGraphDataset`` from ``<root>/<name>.npz`` or
  ``<root>/<name>/raw/<name>.npz``, copied to a writable cache when the
  source is read-only (:mod:`graphformer.data.heterophilous`); edges made
  bidirectional; ``--runs N`` takes the first N of the ten fixed splits.
* ``karate``: Zachary's karate club, two labelled leaders
  (:func:`graphformer.data.graphs.karate_club`).
* ``synthetic-structures``: 1200 small graphs in 8 structural classes with
  constant node features, split 60/20/20
  (:func:`graphformer.data.graphs.synthetic_structures`). Graph-level
  training runs on mini-batches of ``--batch-size`` graphs and on many
  processes under ``torchrun``; node-level training is one full-graph step
  per epoch on one process.

Legend: N nodes, E edges, B graphs, F features, K classes, k encoding width.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import train as engine
from .data.graphs import NODE_ENCODINGS, parse_encoding
from .data.heterophilous import BINARY, HETEROPHILOUS
from .models.graph import GAT, GCN, GPS, HETEROPHILY_RECIPE, GraphTransformer, build_graph_model
from .train import option

__all__ = [
    "GRAPH_DATASETS",
    "HETEROPHILOUS_DATASETS",
    "MODELS",
    "NODE_DATASETS",
    "ClassifyConfig",
    "ModelArgs",
    "add_arguments",
    "build_model",
    "load_dataset",
    "roc_auc",
    "run",
    "train_graph_classifier",
    "train_node_classifier",
]

HETEROPHILOUS_DATASETS = ("minesweeper", "tolokers", "chameleon_filtered", "squirrel_filtered")
NODE_DATASETS = ("Cora", "CiteSeer", "PubMed", "karate", *HETEROPHILOUS_DATASETS)
GRAPH_DATASETS = ("synthetic-structures",)
SEP_MODELS = ("gat-sep", "gt-sep")  # Platonov et al. 2023: residual + LayerNorm, self and neighbours apart
# Platonov et al.'s residual models: the -sep ones and their GCN, GAT and GT rows (self-loops, no root map)
RESIDUAL_MODELS = (*SEP_MODELS, "gcn-res", "gat-res", "gt-res")
HEADLESS_MODELS = ("gcn", "gcn-res")  # models without attention heads

# Published settings (Kipf & Welling 2017; Velickovic et al. 2018); the transformer rows are ours.
NODE_DEFAULTS = {
    "gcn": {
        "hidden": 16,
        "heads": 1,
        "layers": 2,
        "dropout": 0.5,
        "lr": 0.01,
        "weight_decay": 5e-4,
        "epochs": 200,
        "encoding": "none",
    },
    "gat": {
        "hidden": 8,
        "heads": 8,
        "layers": 2,
        "dropout": 0.6,
        "lr": 0.005,
        "weight_decay": 5e-4,
        "epochs": 200,
        "encoding": "none",
    },
    "transformer": {
        "hidden": 64,
        "heads": 4,
        "layers": 2,
        "dropout": 0.5,
        "lr": 0.005,
        "weight_decay": 5e-4,
        "epochs": 200,
        "encoding": "random-walk",
    },
    "gps": {
        "hidden": 64,
        "heads": 4,
        "layers": 2,
        "dropout": 0.5,
        "lr": 0.005,
        "weight_decay": 5e-4,
        "epochs": 200,
        "encoding": "random-walk",
    },
    # the published recipe (graphformer.models.graph.HETEROPHILY_RECIPE); hidden is the full width
    **{
        name: {
            "hidden": HETEROPHILY_RECIPE["hidden"],
            "heads": HETEROPHILY_RECIPE["heads"],
            "layers": 2,
            "dropout": HETEROPHILY_RECIPE["dropout"],
            "lr": HETEROPHILY_RECIPE["lr"],
            "weight_decay": HETEROPHILY_RECIPE["weight_decay"],
            "epochs": HETEROPHILY_RECIPE["steps"],
            "encoding": "none",
        }
        for name in RESIDUAL_MODELS
    },
}
# GPS attends over the complete graph of all N nodes; dropout on those N x N weights has no fused CPU kernel
# (about 8x slower on Cora), so its attention weights are not dropped (features and residuals still are).
GPS_ATTN_DROPOUT = 0.0
GRAPH_DEFAULTS = {
    name: {
        "hidden": 64,
        "heads": 1 if name in HEADLESS_MODELS else 4,
        "layers": 3,
        "dropout": 0.0,
        # GCN's mean-pooled degree-normalised sums barely move at 0.001 in 100 epochs
        "lr": 0.01 if name == "gcn" else 0.001,
        "weight_decay": 0.0,
        "epochs": 100,
        "encoding": "random-walk",
    }
    for name in NODE_DEFAULTS
}
# Heterophilous graphs, CPU-sized: the paper's recipe is hidden 512, 8 heads, dropout 0.2, Adam lr 3e-5,
# 1000 steps, 1-5 layers chosen on validation (pass those flags on a GPU: docs/training.md); at hidden 512 a
# training step costs about 1.5-5 s per layer on a 2-core CPU. These defaults train at hidden 64.
HETERO_DEFAULTS = {
    name: {
        "hidden": 16 if name == "gat" else 64,
        "heads": 1 if name in HEADLESS_MODELS else 4,
        "layers": 2,
        "dropout": 0.2,
        "lr": 0.01 if name in ("gcn", "gat") else 0.001,
        "weight_decay": 0.0,
        "epochs": 500,
        "encoding": "none",
    }
    for name in NODE_DEFAULTS
}
# GAT-sep / GT-sep: hidden 64 (4 heads x 16), 5 residual blocks, Adam lr 1e-3, 300 full-graph steps, chosen on
# minesweeper split 0 by validation ROC AUC (GAT-sep: 4 blocks 400 steps val 93.20, 5 blocks 300 steps val 93.58;
# 2 blocks lr 3e-3 val 89.62). Cost on minesweeper, one thread of a shared 2-core machine: about 0.5 s per
# epoch (step + evaluation) at 5 blocks, 140-170 s per split (docs/results_graphs.md, section 4).
# On tolokers (split 0, validation) 3 blocks did better: GAT-sep --layers 3 --lr 3e-3, GT-sep --layers 3.
# gcn-res / gat-res / gt-res (the paper's GCN, GAT and GT rows) take the same CPU-sized defaults.
HETERO_DEFAULTS.update(
    {name: {**HETERO_DEFAULTS[name], "layers": 5, "lr": 0.001, "epochs": 300} for name in RESIDUAL_MODELS}
)
MAX_DISTANCE = 8  # shortest-path distances above this share one bias (synthetic graphs have diameter <= 39)


# ------------------------------------------------------------------ data
def load_dataset(name: str, root: str | Path = "data"):
    """A node dataset (PyG ``Data`` with masks) or a list of small graphs, by name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
        FileNotFoundError: a Planetoid / heterophilous dataset whose raw files are not under ``root``.
    """
    from .data import graphs

    key = name.lower()
    if key in graphs.PLANETOID:
        return graphs.load_planetoid(root, key)
    if key.replace("-", "_") in HETEROPHILOUS:
        from .data.heterophilous import load_heterophilous

        return load_heterophilous(root, key)
    if key in ("karate", "karate-club"):
        return graphs.karate_club()
    if key in ("synthetic-structures", "synthetic"):
        return graphs.synthetic_structures(seed=0)
    raise ValueError(f"unknown dataset {name!r}; choose one of {NODE_DATASETS + GRAPH_DATASETS}")


def dataset_kind(name: str) -> str:
    """``"node"``, ``"heterophilous"`` or ``"graph"``: which defaults and protocol a dataset name takes."""
    key = name.lower()
    if key.replace("-", "_") in HETEROPHILOUS:
        return "heterophilous"
    if key in ("synthetic-structures", "synthetic"):
        return "graph"
    return "node"


def _check_node_data(data) -> None:
    for attr in ("x", "edge_index"):
        if getattr(data, attr, None) is None:
            raise ValueError(f"the dataset has no {attr}; node classification needs x [N, F] and edge_index [2, E]")
    y = getattr(data, "y", None)
    if y is None:
        raise ValueError(
            "the dataset has no labels (data.y is missing); node classification needs y [N] with a class id per node"
        )
    if y.dim() != 1 or y.numel() != data.x.size(0) or y.is_floating_point():
        raise ValueError(
            f"data.y must hold one integer class id per node, shape [{data.x.size(0)}], got {tuple(y.shape)} {y.dtype}"
        )
    for mask in ("train_mask", "val_mask", "test_mask"):
        m = getattr(data, mask, None)
        if m is None or m.dtype != torch.bool or m.shape[0] != y.numel() or m.dim() > 2:
            raise ValueError(
                f"the dataset needs a bool {mask} of shape [{y.numel()}] or [{y.numel()}, splits] "
                "(which nodes train, validate and test)"
            )
        if not bool(m.any(0).all()):
            raise ValueError(f"{mask} selects no node")
        if bool((y[m.any(-1) if m.dim() == 2 else m] < 0).any()):
            raise ValueError(f"some nodes in {mask} have no label (y < 0)")


def _node_encoding(data, encoding: str, dim: int) -> Tensor | None:
    from .data.graphs import node_encoding

    node, spd = parse_encoding(encoding)
    if spd:
        raise ValueError(
            f"encoding {encoding!r}: the shortest-path bias is for graph classification (an N x N "
            "distance matrix per graph); for nodes use 'none' or one of laplacian, random-walk, degree"
        )
    return None if node is None else node_encoding(data.edge_index, data.num_nodes, node, dim)


# ---------------------------------------------------------------- metrics
def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (ties count one half).

    The Mann-Whitney statistic: ``(sum of the positives' ranks - P (P + 1) / 2) / (P N)``
    with average ranks for ties; NaN when one class is absent.
    """
    from scipy.stats import rankdata

    s = scores.detach().double().cpu().numpy()
    y = labels.detach().cpu().numpy().astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(-1) == y).float().mean()) if y.numel() else float("nan")


def _score(metric: str, logits: Tensor, y: Tensor) -> float:
    if metric == "roc_auc":
        return roc_auc(logits[:, 1] - logits[:, 0], y)
    return _accuracy(logits, y)


# ---------------------------------------------------------------- models
@dataclass
class ModelArgs:
    """What a :data:`MODELS` builder gets.

    ``pe_dim`` is 0 without a node encoding; ``max_distance`` is None without
    the shortest-path bias; ``attention`` is ``"edges"``, ``"complete"`` or None.
    """

    in_channels: int
    num_classes: int
    hidden: int
    heads: int
    layers: int
    dropout: float
    pe_dim: int
    sign_flip: bool
    max_distance: int | None
    graph_level: bool
    attention: str | None
    out_heads: int


def _transformer(a: ModelArgs) -> nn.Module:
    attention = a.attention or ("complete" if a.graph_level or a.max_distance is not None else "edges")
    return GraphTransformer(
        a.in_channels,
        a.hidden,
        a.num_classes,
        a.layers,
        a.heads,
        a.dropout,
        pe_dim=a.pe_dim,
        sign_flip=a.sign_flip,
        attention=attention,
        max_distance=a.max_distance,
        graph_level=a.graph_level,
    )


# One line per model: name -> builder(ModelArgs), called as model(x, edge_index, batch=, pe=, distance=).
MODELS: dict[str, Callable[[ModelArgs], nn.Module]] = {
    "gcn": lambda a: GCN(
        a.in_channels,
        a.hidden,
        a.num_classes,
        num_layers=a.layers,
        dropout=a.dropout,
        pe_dim=a.pe_dim,
        graph_level=a.graph_level,
    ),
    "gat": lambda a: GAT(
        a.in_channels,
        a.hidden,
        a.num_classes,
        heads=a.heads,
        out_heads=a.out_heads,
        num_layers=a.layers,
        dropout=a.dropout,
        pe_dim=a.pe_dim,
        graph_level=a.graph_level,
    ),
    "transformer": _transformer,
    "gps": lambda a: GPS(
        a.in_channels,
        a.hidden,
        a.num_classes,
        a.layers,
        a.heads,
        a.dropout,
        pe_dim=a.pe_dim,
        sign_flip=a.sign_flip,
        max_distance=a.max_distance,
        graph_level=a.graph_level,
        attn_dropout=GPS_ATTN_DROPOUT,
    ),
    **{
        name: (
            lambda a, name=name: build_graph_model(
                name,
                a.in_channels,
                a.num_classes,
                hidden_channels=a.hidden,
                num_heads=a.heads,
                num_layers=a.layers,
                dropout=a.dropout,
                pe_dim=a.pe_dim,
                graph_level=a.graph_level,
            )
        )
        for name in RESIDUAL_MODELS
    },
}
ATTENTION_MODELS = ("transformer",)  # models with a choice of --attention edges|complete
EDGE_ONLY_MODELS = ("gcn", "gat", *RESIDUAL_MODELS)  # models that attend along edges only (no shortest-path bias)


def _defaults(table: dict, name: str) -> dict:
    """The defaults of ``name``, else of its family (``gat-sep`` -> ``gat``), else of the transformer."""
    return table.get(name) or table.get(name.split("-")[0]) or table["transformer"]


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    *,
    hidden: int,
    heads: int = 4,
    layers: int = 2,
    dropout: float = 0.5,
    encoding: str = "none",
    pe_dim: int = 8,
    graph_level: bool = False,
    attention: str | None = None,
    out_heads: int = 1,
) -> nn.Module:
    """One of :data:`MODELS`, called as ``model(x, edge_index, batch=, pe=, distance=)``.

    ``encoding`` (see :func:`graphformer.data.graphs.parse_encoding`) decides what
    the model reads besides ``x``: a ``pe`` ``[N, pe_dim]`` (``"laplacian"``,
    ``"random-walk"``, ``"degree"``; concatenated to ``x`` for GCN and GAT,
    projected and added for the transformers) and/or a ``distance`` matrix
    (``"shortest-path"``: a learned attention bias, transformers only).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {tuple(MODELS)}")
    node, with_spd = parse_encoding(encoding)
    if with_spd and name in EDGE_ONLY_MODELS:
        raise ValueError(
            f"the shortest-path encoding is an attention bias over all pairs; {name} attends only "
            "along edges. Use --model transformer or gps, or a node encoding"
        )
    if attention is not None and name not in ATTENTION_MODELS:
        raise ValueError(
            f"--attention applies to --model {' / '.join(ATTENTION_MODELS)}; {name} always attends as it is defined"
        )
    args = ModelArgs(
        in_channels,
        num_classes,
        hidden,
        heads,
        layers,
        dropout,
        pe_dim if node is not None else 0,
        node == "laplacian",
        MAX_DISTANCE if with_spd else None,
        graph_level,
        attention,
        out_heads,
    )
    return MODELS[name](args)


# ------------------------------------------------------------ configuration
def _graph_level(cfg) -> bool:
    return dataset_kind(cfg.dataset) == "graph"


@dataclass(kw_only=True)
class ClassifyConfig(engine.TrainConfig):
    """A ``graphformer classify`` run; each field is one flag.

    Model settings left None take the defaults of the model on the dataset's
    kind (:data:`NODE_DEFAULTS`: the published GCN / GAT settings;
    :data:`GRAPH_DEFAULTS`; :data:`HETERO_DEFAULTS`); see :meth:`resolved`.
    """

    dataset: str = option("Cora", f"one of {', '.join(NODE_DATASETS + GRAPH_DATASETS)}")
    root: str = option(
        "data",
        "folder holding <Name>/raw/ind.<name>.* (Planetoid) or <name>.npz / "
        "<name>/raw/<name>.npz (heterophilous); nothing is downloaded",
    )
    model: str = option("gcn", "the model", choices=tuple(MODELS))
    runs: int = option(10, "runs with seeds seed, seed+1, ...; heterophilous graphs: the first N of the ten splits")
    epochs: int | None = option(
        None, "default: 200 (nodes), 100 (graphs), 500 (heterophilous; 300 for the -sep / -res models)"
    )
    lr: float | None = option(
        None,
        "default: 0.01 gcn, 0.005 gat/transformer/gps; 0.001 for graphs (gcn 0.01); "
        "heterophilous 0.01 gcn/gat, 0.001 transformer/gps and the -sep / -res models",
    )
    weight_decay: float | None = option(None, "default: 5e-4 (nodes), 0 (graphs, heterophilous)")
    seed: int = option(0, "first seed")
    hidden: int | None = option(
        None,
        "hidden width (per head for gat); default: 16 gcn, 8 gat, 64 (heterophilous: 16 per head for gat, else 64)",
    )
    heads: int | None = option(
        None,
        "attention heads; default: 8 gat, 4 transformer/gps",
        applies=(lambda c: c.model not in HEADLESS_MODELS, "models with attention heads"),
    )
    layers: int | None = option(None, "default: 2 (nodes), 3 (graphs), 2 (heterophilous; 5 for the -sep / -res models)")
    dropout: float | None = option(None, "default: 0.5 gcn/transformer/gps, 0.6 gat; 0 for graphs, 0.2 heterophilous")
    encoding: str | None = option(
        None,
        f"structural encoding: none, {', '.join(NODE_ENCODINGS)}, shortest-path, "
        "or a node encoding + shortest-path (e.g. degree+shortest-path); default: none for "
        "gcn/gat on nodes and for every model on the heterophilous graphs, random-walk "
        "otherwise",
        metavar="NAME",
    )
    pe_dim: int = option(8, "width of the node encoding")
    attention: str | None = option(
        None,
        "attend along the edges (default for nodes) or over each graph's complete "
        "graph (default for graphs and with shortest-path)",
        choices=("edges", "complete"),
        applies=(lambda c: c.model in ATTENTION_MODELS, "--model " + " / ".join(ATTENTION_MODELS)),
    )
    batch_size: int | None = option(
        None,
        "graphs per global batch (default: 64)",
        applies=(_graph_level, "graph-level datasets (node-level datasets train on the whole graph at every step)"),
    )
    out_heads: int | None = option(
        None,
        "heads of GAT's last layer (default: 8 on PubMed as in the GAT paper, else 1)",
        applies=(lambda c: c.model == "gat", "--model gat"),
    )

    def resolved(self) -> ClassifyConfig:
        """A copy with every None setting replaced by its default."""
        kind = dataset_kind(self.dataset)
        table = {"node": NODE_DEFAULTS, "graph": GRAPH_DEFAULTS, "heterophilous": HETERO_DEFAULTS}[kind]
        defaults = _defaults(table, self.model)
        values = {k: getattr(self, k) if getattr(self, k) is not None else v for k, v in defaults.items()}
        if self.batch_size is None:
            values["batch_size"] = 64
        if self.out_heads is None:
            values["out_heads"] = 8 if self.model.split("-")[0] == "gat" and self.dataset.lower() == "pubmed" else 1
        return dataclasses.replace(self, **values)

    def check(self) -> None:
        """Raise ``ValueError`` on an impossible setting (call on :meth:`resolved`)."""
        super().check()
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {tuple(MODELS)}")
        if self.runs < 1:
            raise ValueError(f"--runs must be >= 1, got {self.runs}")
        parse_encoding(self.encoding)
        for key in ("hidden", "heads", "layers", "pe_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must lie in [0, 1), got {self.dropout}")


def _resolve(cfg: ClassifyConfig, given: set[str] | None, applicable: bool = True) -> ClassifyConfig:
    if applicable:
        engine.check_applicable(cfg, given)
    out = cfg.resolved()
    out.check()
    return out


# -------------------------------------------------------------- training
def _summary(runs: list[dict], metric: str) -> dict:
    test = [r[f"test_{metric}"] for r in runs]
    mean = sum(test) / len(test)
    std = math.sqrt(sum((a - mean) ** 2 for a in test) / (len(test) - 1)) if len(test) > 1 else 0.0
    val = [r[f"val_{metric}"] for r in runs]
    return {f"{metric}_mean": mean, f"{metric}_std": std, f"val_{metric}_mean": sum(val) / len(val)}


def _fit_config(cfg: ClassifyConfig, seed: int) -> engine.TrainConfig:
    """The engine's settings of one run (monitoring, no early stopping unless --patience)."""
    base = {f.name for f in dataclasses.fields(engine.TrainConfig)}
    return engine.TrainConfig(**{**{k: getattr(cfg, k) for k in base}, "seed": seed})


class _RunLog:
    """The finished runs of ``classify --runs N``, kept in ``--out/runs.json`` after each run.

    An interrupted command continues with ``--resume`` from the first run not
    finished (each run is seeded on its own, so the result is the same as
    uninterrupted), and ``--resume`` with a larger ``--runs`` adds runs. The
    settings must be the ones of the interrupted command (``--runs``,
    ``--threads`` and ``--device`` may differ).
    """

    FREE = ("num_runs", "threads", "device")

    def __init__(self, out: engine.RunDir | None = None, config: dict | None = None):
        self.out, self.config = out, config
        self.runs: list[dict] = []
        self.num_params = 0
        if out and out.resume:
            state = json.loads(out.file("runs.json").read_text())
            diff = engine.settings_diff(state["config"], config or {}, self.FREE)
            if diff:
                raise ValueError(
                    f"--resume: {out.file('runs.json')} was written with other settings "
                    f"(name: (then, now)) {diff}; repeat the first command's flags, or --overwrite"
                )
            self.runs, self.num_params = list(state["runs"]), int(state["num_parameters"])

    def save(self, runs: list[dict], num_params: int) -> None:
        if self.out:
            self.out.save_json("runs.json", {"config": self.config, "runs": runs, "num_parameters": num_params})


def _node_runs(
    data, cfg: ClassifyConfig, metric: str, ctx: engine.Context, progress: bool, log: _RunLog | None = None
) -> tuple[list, int]:
    _check_node_data(data)
    dev = ctx.device
    x, y = data.x.float().to(dev), data.y.long().to(dev)
    num_classes = int(y.max()) + 1
    pe = _node_encoding(data, cfg.encoding, cfg.pe_dim)
    pe = pe.to(dev) if pe is not None else None
    splits = data.train_mask.size(1) if data.train_mask.dim() == 2 else None
    if splits is not None and cfg.runs > splits:
        raise ValueError(f"--runs {cfg.runs}: {cfg.dataset} has {splits} fixed splits; use --runs {splits} or fewer")
    log = log or _RunLog()
    results, num_params = list(log.runs)[: cfg.runs], log.num_params
    for r in range(len(results), cfg.runs):
        train_m, val_m, test_m = (
            (m[:, r] if splits is not None else m).to(dev) for m in (data.train_mask, data.val_mask, data.test_mask)
        )
        torch.manual_seed(cfg.seed + r)
        net = build_model(
            cfg.model,
            x.size(1),
            num_classes,
            hidden=cfg.hidden,
            heads=cfg.heads,
            layers=cfg.layers,
            dropout=cfg.dropout,
            encoding=cfg.encoding,
            pe_dim=cfg.pe_dim,
            attention=cfg.attention,
            out_heads=cfg.out_heads,
        ).to(dev)
        num_params = sum(p.numel() for p in net.parameters())
        graph = net.prepare(data.edge_index.to(dev), x.size(0))
        start = time.perf_counter()

        def loss_fn(model, _batch, graph=graph, train_m=train_m):
            return F.cross_entropy(model(x, graph, pe=pe)[train_m].float(), y[train_m])

        def evaluate(model, graph=graph, val_m=val_m, test_m=test_m):
            out = model(x, graph, pe=pe).float()
            return {
                "val": _score(metric, out[val_m], y[val_m]),
                "val_loss": float(F.cross_entropy(out[val_m], y[val_m])),
                "test": _score(metric, out[test_m], y[test_m]),
            }

        fit = engine.fit(
            net,
            _fit_config(cfg, cfg.seed + r),
            ctx,
            loss_fn=loss_fn,
            evaluate=evaluate,
            monitor=("val", "val_loss"),
            mode=("max", "min"),
            progress=progress,
            desc=f"{cfg.model} run {r + 1}/{cfg.runs}",
            log=lambda line: None,
        )
        record = {
            "seed": cfg.seed + r,
            "best_epoch": fit.best_epoch,
            f"val_{metric}": fit.best["val"],
            f"test_{metric}": fit.best["test"],
            "seconds": time.perf_counter() - start,
        }
        if splits is not None:
            record["split"] = r
        results.append(record)
        log.save(results, num_params)
    return results, num_params


def _graph_runs(
    graphs, cfg: ClassifyConfig, ctx: engine.Context, progress: bool, split_seed: int = 0, log: _RunLog | None = None
):
    from .data.graphs import add_encodings, collate, split_indices

    if not graphs:
        raise ValueError("graph classification needs at least one graph")
    if any(getattr(g, "y", None) is None for g in graphs):
        raise ValueError(
            "some graphs have no label (g.y is missing); graph classification needs one class id per graph"
        )
    graphs = add_encodings(list(graphs), cfg.encoding, cfg.pe_dim, MAX_DISTANCE)
    labels = torch.cat([g.y.view(-1) for g in graphs]).long()
    num_classes = int(labels.max()) + 1
    train_idx, val_idx, test_idx = split_indices(len(graphs), seed=split_seed)
    dev = ctx.device

    def to(t):
        return None if t is None else t.to(dev, non_blocking=True)

    def forward(net, b):
        return net(to(b.x), to(b.edge_index), batch=to(b.batch), pe=to(b.pe), distance=to(b.distance))

    def batches(idx):  # this process's share of the graphs, in order
        mine = idx[list(engine.shard(len(idx), ctx))]
        return [collate([graphs[i] for i in mine[k : k + 256]]) for k in range(0, len(mine), 256)]

    eval_batches = {"val": batches(val_idx), "test": batches(test_idx)}

    def evaluate(net):
        out = {}
        for name, parts in eval_batches.items():
            correct = loss = count = 0.0
            for b in parts:
                logits = forward(net, b).float()
                target = b.y.to(dev)
                correct += float((logits.argmax(-1) == target).sum())
                loss += float(F.cross_entropy(logits, target, reduction="sum"))
                count += target.numel()
            total = engine.all_reduce_sum(torch.tensor([correct, loss, count], dtype=torch.float64), ctx)
            out[name], out[f"{name}_loss"] = float(total[0] / total[2]), float(total[1] / total[2])
        return out

    log = log or _RunLog()
    results, num_params = list(log.runs)[: cfg.runs], log.num_params
    for r in range(len(results), cfg.runs):
        torch.manual_seed(cfg.seed + r)
        net = build_model(
            cfg.model,
            graphs[0].x.size(1),
            num_classes,
            hidden=cfg.hidden,
            heads=cfg.heads,
            layers=cfg.layers,
            dropout=cfg.dropout,
            encoding=cfg.encoding,
            pe_dim=cfg.pe_dim,
            graph_level=True,
            attention=cfg.attention,
        ).to(dev)
        num_params = sum(p.numel() for p in net.parameters())
        start = time.perf_counter()
        fit = engine.fit(
            net,
            _fit_config(cfg, cfg.seed + r),
            ctx,
            loss_fn=lambda model, b: F.cross_entropy(forward(model, b).float(), b.y.to(dev)),
            train_size=len(train_idx),
            get_batch=lambda i: collate([graphs[j] for j in train_idx[i]]),
            evaluate=evaluate,
            monitor=("val", "val_loss"),
            mode=("max", "min"),
            progress=progress,
            desc=f"{cfg.model} run {r + 1}/{cfg.runs}",
            log=lambda line: None,
        )
        results.append(
            {
                "seed": cfg.seed + r,
                "best_epoch": fit.best_epoch,
                "val_accuracy": fit.best["val"],
                "test_accuracy": fit.best["test"],
                "seconds": time.perf_counter() - start,
            }
        )
        log.save(results, num_params)
    return results, num_params


def _config_record(cfg: ClassifyConfig) -> dict:
    keys = [
        "model",
        "hidden",
        "heads",
        "layers",
        "dropout",
        "lr",
        "weight_decay",
        "epochs",
        "encoding",
        "pe_dim",
        "seed",
        "device",
        "precision",
        "optimizer",
        "schedule",
        "warmup_steps",
        "grad_clip",
        "patience",
        "threads",
    ]
    record = {k: getattr(cfg, k) for k in keys}
    record["num_runs"] = cfg.runs
    return record


def _legacy_config(
    model: str,
    kind: str,
    runs: int,
    epochs,
    seed: int,
    lr,
    weight_decay,
    hidden,
    heads,
    layers,
    dropout,
    encoding,
    pe_dim: int,
    attention,
    extra: dict,
) -> ClassifyConfig:
    dataset = {"node": "karate", "graph": "synthetic-structures"}[kind]
    cfg = ClassifyConfig(
        dataset=dataset,
        model=model,
        runs=runs,
        epochs=epochs,
        seed=seed,
        lr=lr,
        weight_decay=weight_decay,
        hidden=hidden,
        heads=heads,
        layers=layers,
        dropout=dropout,
        encoding=encoding,
        pe_dim=pe_dim,
        attention=attention,
        **extra,
    )
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {tuple(MODELS)}")
    return _resolve(cfg, None, applicable=False)  # the Python functions share keyword arguments across models


def train_node_classifier(
    data,
    model: str = "gcn",
    *,
    runs: int = 1,
    epochs: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    weight_decay: float | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    layers: int | None = None,
    dropout: float | None = None,
    encoding: str | None = None,
    pe_dim: int = 8,
    attention: str | None = None,
    out_heads: int = 1,
    progress: bool = False,
    metric: str = "accuracy",
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    defaults: str = "node",
) -> dict:
    """Train ``model`` on one graph with train/val/test masks, ``runs`` times; return the metrics.

    Options left as None take the model's defaults (:data:`NODE_DEFAULTS`: the
    published settings for GCN and GAT; ``defaults="heterophilous"`` takes
    :data:`HETERO_DEFAULTS`). Masks of shape ``[N, S]`` hold S fixed splits:
    run ``r`` uses split ``r``. ``metric`` is ``"accuracy"`` or ``"roc_auc"``
    (binary labels). Each epoch is one full-graph step through
    :func:`graphformer.train.fit`; the layout of the edges is built once per run.

    Returns:
        ``{"<metric>_mean", "<metric>_std", "val_<metric>_mean", "runs": [{"seed", "best_epoch",
        "val_<metric>", "test_<metric>", "seconds"}, ...], "config": {...}}``.
    """
    if metric not in ("accuracy", "roc_auc"):
        raise ValueError(f"metric must be 'accuracy' or 'roc_auc', got {metric!r}")
    cfg = _legacy_config(
        model,
        "node",
        runs,
        epochs,
        seed,
        lr,
        weight_decay,
        hidden,
        heads,
        layers,
        dropout,
        encoding,
        pe_dim,
        attention,
        {"device": device, "precision": precision, "threads": threads},
    )
    if defaults == "heterophilous":
        cfg = _resolve(
            dataclasses.replace(
                cfg,
                dataset="minesweeper",
                **{
                    k: None
                    for k, v in (
                        ("epochs", epochs),
                        ("lr", lr),
                        ("weight_decay", weight_decay),
                        ("hidden", hidden),
                        ("heads", heads),
                        ("layers", layers),
                        ("dropout", dropout),
                        ("encoding", encoding),
                    )
                    if v is None
                },
            ),
            None,
            applicable=False,
        )
    cfg = dataclasses.replace(cfg, out_heads=out_heads)
    return _train_nodes(data, cfg, metric, progress)


def _train_nodes(data, cfg: ClassifyConfig, metric: str, progress: bool, log: _RunLog | None = None) -> dict:
    with engine.distributed(cfg.device) as ctx:
        if ctx.distributed:
            raise ValueError(
                f"{cfg.dataset} is one graph: node classification trains on the whole graph at every "
                "step, on one process; start it without torchrun"
            )
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        results, num_params = _node_runs(data, cfg, metric, ctx, progress, log)
    return {
        **_summary(results, metric),
        "metric": metric,
        "runs": results,
        "num_parameters": num_params,
        "config": {**_config_record(cfg), "out_heads": cfg.out_heads, "device": str(ctx.device)},
    }


def train_graph_classifier(
    graphs,
    model: str = "transformer",
    *,
    runs: int = 1,
    epochs: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    weight_decay: float | None = None,
    hidden: int | None = None,
    heads: int | None = None,
    layers: int | None = None,
    dropout: float | None = None,
    encoding: str | None = None,
    pe_dim: int = 8,
    attention: str | None = None,
    batch_size: int = 64,
    split_seed: int = 0,
    progress: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
) -> dict:
    """Train a graph classifier on a list of small graphs (PyG ``Data`` with ``y`` ``[1]``); return the metrics.

    The graphs are split 60/20/20 (seeded by ``split_seed``, the same for
    every run), encoded once (:func:`graphformer.data.graphs.add_encodings`)
    and batched PyG-style (:func:`graphformer.data.graphs.collate`) in global
    batches of ``batch_size`` graphs (shared among the processes under
    torchrun). Metrics as :func:`train_node_classifier`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not graphs:
        raise ValueError("graph classification needs at least one graph")
    if any(getattr(g, "y", None) is None for g in graphs):
        raise ValueError(
            "some graphs have no label (g.y is missing); graph classification needs one class id per graph"
        )
    cfg = _legacy_config(
        model,
        "graph",
        runs,
        epochs,
        seed,
        lr,
        weight_decay,
        hidden,
        heads,
        layers,
        dropout,
        encoding,
        pe_dim,
        attention,
        {"device": device, "precision": precision, "threads": threads, "batch_size": batch_size},
    )
    return _train_graphs(graphs, cfg, progress, split_seed)


def _train_graphs(graphs, cfg: ClassifyConfig, progress: bool, split_seed: int = 0, log: _RunLog | None = None) -> dict:
    with engine.distributed(cfg.device) as ctx:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        results, num_params = _graph_runs(graphs, cfg, ctx, progress and ctx.is_main, split_seed, log)
    return {
        **_summary(results, "accuracy"),
        "metric": "accuracy",
        "runs": results,
        "num_parameters": num_params,
        "config": {
            **_config_record(cfg),
            "batch_size": cfg.batch_size,
            "attention": cfg.attention,
            "processes": ctx.world_size,
            "device": str(ctx.device),
        },
    }


# ------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer classify``: the fields of :class:`ClassifyConfig`, then the run's."""
    engine.add_config_arguments(parser, ClassifyConfig)
    engine.add_run_arguments(parser, "metrics.json and runs.json (the runs finished so far)", resume=True)


def run(args: argparse.Namespace) -> dict:
    """Check ``--out``, load the dataset, train ``--runs`` times; return (and write) the metrics."""
    cfg, given = engine.config_from_args(ClassifyConfig, args)
    cfg = _resolve(cfg, given)
    if cfg.threads is None:  # torch's default oversubscribes a busy machine (docs/training.md)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
        cfg = dataclasses.replace(cfg, threads=engine.default_threads(local))
    out = engine.RunDir(
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        is_main=int(os.environ.get("RANK", "0")) == 0,
        resume_file="runs.json",
    )
    out.check()  # before any work: a file, or an existing run without --resume / --overwrite, is an error now
    data = load_dataset(cfg.dataset, cfg.root)
    progress = not args.quiet
    kind = dataset_kind(cfg.dataset)
    log = _RunLog(out, {"dataset": cfg.dataset, **_config_record(cfg)})
    if out.is_main:
        out.prepare()  # (--overwrite empties the folder now)
    if isinstance(data, list):
        metrics = _train_graphs(data, cfg, progress, log=log)
    else:
        metric = "roc_auc" if kind == "heterophilous" and cfg.dataset.lower() in BINARY else "accuracy"
        metrics = _train_nodes(data, cfg, metric, progress, log)
    metrics = {"dataset": cfg.dataset, "model": cfg.model, **metrics}
    if out.is_main:
        out.save_json("metrics.json", metrics)
        name = metrics["metric"].replace("roc_auc", "ROC AUC").replace("accuracy", "accuracy")
        print(
            f"{cfg.dataset} {cfg.model}: test {name} {100 * metrics[metrics['metric'] + '_mean']:.1f} "
            f"± {100 * metrics[metrics['metric'] + '_std']:.1f} over {cfg.runs} run(s)"
        )
    return metrics
