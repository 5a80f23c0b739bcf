"""graphformer forecast: train, early-stop and test a forecaster on a multivariate time series.

The protocol is the long-term forecasting protocol of iTransformer /
Time-Series-Library: the standard split (12/4/4 months for ETT, 70/10/20
otherwise), a StandardScaler fitted on the training rows, Adam on the MSE,
the learning rate halved every epoch after the first ("type1"), early
stopping on the validation loss, and MSE / MAE on the scaled test windows --
every test window, none dropped.

Files written to ``--out`` (each one atomically: a temporary file, then
``os.replace``, so an interrupted run leaves the last complete version):

* ``best.pt``: the best weights by validation loss, with the model config and
  the scaler, loadable with ``torch.load(path, weights_only=True)``;
* ``last.pt``: the state after the last completed epoch (model, optimizer,
  early-stopping counters, random states) for ``--resume``;
* ``metrics.json``: test MSE / MAE overall and per horizon step, and more;
* ``forecast.png``: truth against forecast for a few variables (needs matplotlib).

Legend: B batch, L look-back, H horizon, V variables, F time features, W windows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .data import (
    ForecastData,
    Scaler,
    adjacency_to_edges,
    correlation_knn_edges,
    cycle_phase,
    load_series,
    prepare_forecast_data,
    protocol_for,
    read_adjacency,
)
from .models import (
    Autoformer,
    CycleForecaster,
    GraphPriorForecaster,
    ITransformer,
    PatchTransformer,
    TemporalQueryForecaster,
    TemporalTransformer,
)

__all__ = [
    "ForecastConfig",
    "add_arguments",
    "build_model",
    "config_from_args",
    "evaluate",
    "load_checkpoint",
    "run",
    "seed_everything",
    "train",
]

MODELS = ("itransformer", "temporal", "patch", "graph", "autoformer", "cycle", "tqnet")
PERIODIC = ("cycle", "tqnet")  # models that read the cycle phase (last mark column)
CHECKPOINT_FORMAT = "graphformer-forecast/1"


# ------------------------------------------------------------ configuration
@dataclass
class ForecastConfig:
    """Everything one forecasting run depends on (the defaults are iTransformer's ETTh1 setting).

    Attributes:
        data: the series file (``.csv`` with optional ``date`` column, or
            header-less ``.txt``/``.txt.gz``).
        model: ``"itransformer"``, ``"temporal"``, ``"patch"``, ``"graph"``, ``"autoformer"``,
            ``"cycle"`` (CycleNet's residual cycles around an iTransformer) or ``"tqnet"``.
        seq_len, pred_len: look-back L and horizon H.
        epochs, batch_size, lr, patience: Adam on the MSE, lr halved every
            epoch after the first, early stopping after ``patience`` epochs
            without a lower validation loss.
        seed: seeds ``random``, ``numpy`` and ``torch`` (weights, dropout, shuffling).
        d_model, d_ff, layers, heads, dropout: the encoder.
        split: ``"auto"`` (ETT 12/4/4 months by file name, 70/10/20 otherwise),
            ``"ett_hour"``, ``"ett_minute"``, ``"ratio"`` or ``"tgcn"`` (80/20, no validation).
        scale: ``"standard"``, ``"max"`` or ``"none"``, fitted on training rows.
        freq: time-feature frequency (``"h"`` as the reference code), or
            ``"none"`` for no time features.
        fill: fill missing values (``"ffill"``, ...) instead of failing.
        layout: header-less files: ``"autoformer"`` (dates, target last) or ``"lstnet"``.
        limit_rows: use only the first rows of the file (quick runs; the
            split then falls back to 70/10/20 when the standard one does not fit).
        graph: adjacency file for ``model="graph"`` (V x V, header-less).
        knn: without ``graph``, connect each variable to its ``knn`` most
            correlated variables (training rows).
        score: the graph model's score: ``"dot"``, ``"additive"`` or ``"gcn"``.
        mix_complete: the graph model adds complete-graph attention.
        causal: the temporal model attends only to earlier steps.
        patch_len, stride: the patch model's patches.
        cycle_len: ``cycle`` / ``tqnet``: the period W in rows (None: the data's
            protocol, :data:`graphformer.data.PROTOCOLS`).
        label_len: ``autoformer``: the decoder's start length (None: ``seq_len // 2``).
        original_units: also report RMSE / MAE after undoing the scaling.
        threads: ``torch.set_num_threads`` (None leaves the default).
    """

    data: str
    model: str = "itransformer"
    seq_len: int = 96
    pred_len: int = 96
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    patience: int = 3
    seed: int = 2021
    d_model: int = 256
    d_ff: int = 256
    layers: int = 2
    heads: int = 8
    dropout: float = 0.1
    split: str = "auto"
    scale: str = "standard"
    freq: str = "h"
    fill: str | None = None
    layout: str = "autoformer"
    limit_rows: int | None = None
    graph: str | None = None
    knn: int = 3
    score: str = "dot"
    mix_complete: bool = False
    causal: bool = False
    patch_len: int = 16
    stride: int = 8
    original_units: bool = False
    threads: int | None = None
    cycle_len: int | None = None  # cycle / tqnet: period W in rows (None: the data's protocol, e.g. 24 for ETTh)
    label_len: int | None = None  # autoformer: decoder start length (None: seq_len // 2)
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """Raise ``ValueError`` on an impossible setting (before anything is loaded or written)."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        for name in ("seq_len", "pred_len", "epochs", "batch_size", "d_model", "d_ff", "layers", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        if self.limit_rows is not None and self.limit_rows < 2:
            raise ValueError(f"limit_rows must be >= 2, got {self.limit_rows}")
        if self.graph is not None and self.model != "graph":
            raise ValueError(f"--graph is used by --model graph only, not by {self.model!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def model_kwargs(self) -> dict:
        """The settings that define the network (compared on ``--resume``)."""
        keys = ["model", "seq_len", "pred_len", "d_model", "d_ff", "layers", "heads", "dropout"]
        keys += {"graph": ["score", "mix_complete", "knn", "graph"], "temporal": ["causal"],
                 "patch": ["patch_len", "stride"], "cycle": ["cycle_len"], "tqnet": ["cycle_len"],
                 "autoformer": ["label_len"]}.get(self.model, [])
        return {k: getattr(self, k) for k in keys}


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, ``numpy`` and ``torch``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------ data and model
def load_data(cfg: ForecastConfig) -> ForecastData:
    """Read, split, scale and window the series of ``cfg``."""
    series = load_series(cfg.data, fill=cfg.fill, layout=cfg.layout)
    split = cfg.split
    if cfg.limit_rows is not None and cfg.limit_rows < len(series):
        series = series.head(cfg.limit_rows)
        if split == "auto":
            split = "ratio"
    freq = None if cfg.freq == "none" else cfg.freq
    data = prepare_forecast_data(series, cfg.seq_len, cfg.pred_len, split=split, scale=cfg.scale, freq=freq)
    if cfg.model in PERIODIC:  # the window's phase in the cycle, as the last mark column
        data = cycle_phase(data, cfg.cycle_len or protocol_for(series.name).cycle_len)
    return data


def variable_graph(cfg: ForecastConfig, data: ForecastData) -> tuple[Tensor, Tensor]:
    """The prior graph of the graph model: ``--graph`` file, else k nearest by training correlation."""
    if cfg.graph is not None:
        return adjacency_to_edges(read_adjacency(cfg.graph, data.num_variables))
    if data.num_variables < 2:
        raise ValueError("a graph over variables needs at least 2 variables")
    return correlation_knn_edges(data.train_values(), min(cfg.knn, data.num_variables - 1))


def build_model(cfg: ForecastConfig, num_variables: int, num_time_features: int,
                edges: tuple[Tensor, Tensor] | None = None) -> nn.Module:
    """The network of ``cfg`` for V variables and F time features."""
    common = dict(d_model=cfg.d_model, num_heads=cfg.heads, d_ff=cfg.d_ff, num_layers=cfg.layers,
                  dropout=cfg.dropout)
    if cfg.model == "itransformer":
        return ITransformer(cfg.seq_len, cfg.pred_len, **common)
    if cfg.model == "temporal":
        return TemporalTransformer(cfg.seq_len, cfg.pred_len, num_variables, num_time_features, causal=cfg.causal,
                                   **common)
    if cfg.model == "patch":
        return PatchTransformer(cfg.seq_len, cfg.pred_len, cfg.patch_len, cfg.stride, **common)
    if cfg.model == "autoformer":
        return Autoformer(cfg.seq_len, cfg.label_len if cfg.label_len is not None else cfg.seq_len // 2, cfg.pred_len,
                          num_variables, num_time_features, cfg.d_model, cfg.heads, cfg.d_ff, cfg.layers, 1,
                          cfg.dropout, factor=3.0)  # factor 3: Autoformer's scripts
    if cfg.model in PERIODIC:
        cycle_len = cfg.cycle_len or protocol_for(os.path.basename(cfg.data).removesuffix(".csv")).cycle_len
        if cfg.model == "tqnet":
            return TemporalQueryForecaster(cfg.seq_len, cfg.pred_len, num_variables, cycle_len, cfg.d_model,
                                           dropout=cfg.dropout)
        backbone = ITransformer(cfg.seq_len, cfg.pred_len, use_norm=False, **common)
        return CycleForecaster(backbone, cfg.seq_len, cfg.pred_len, num_variables, cycle_len)
    if edges is None:
        raise ValueError("the graph model needs its edges")
    return GraphPriorForecaster(cfg.seq_len, cfg.pred_len, edges[0], num_variables, edges[1], score=cfg.score,
                                mix_complete=cfg.mix_complete, **common)


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, ForecastConfig, Scaler]:
    """Rebuild the model of a ``best.pt`` written by :func:`train` (loaded with ``weights_only=True``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a graphformer forecast checkpoint")
    cfg = ForecastConfig(**ckpt["config"])
    state = ckpt["model"]
    edges = (state["edge_index"], state["edge_weight"]) if cfg.model == "graph" else None
    model = build_model(cfg, ckpt["num_variables"], ckpt["num_time_features"], edges)
    model.load_state_dict(state)
    return model.eval(), cfg, Scaler.from_state_dict(ckpt["scaler"])


# ------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate(model: nn.Module, loader, scaler: Scaler | None = None, keep: int = 0) -> dict:
    """MSE and MAE over every window of ``loader``, overall and per horizon step.

    Args:
        model: the forecaster (put in eval mode here).
        loader: batches ``(x, y, x_mark, y_mark)``.
        scaler: if given, also RMSE / MAE after ``scaler.inverse_transform``.
        keep: keep the first ``keep`` windows' inputs, truths and forecasts.

    Returns:
        ``{"mse", "mae", "mse_per_step", "mae_per_step", "windows"}`` (plus
        ``"rmse_original"``, ``"mae_original"`` and per-step lists with a
        scaler, and ``"examples"`` with ``keep``).
    """
    model.eval()
    sq = ab = sq_orig = ab_orig = None
    windows, num_vars = 0, 1
    examples = []
    for x, y, x_mark, y_mark in loader:
        pred = model(x, x_mark, y_mark)
        err = (pred - y).double()
        sq = err.square().sum((0, 2)) + (0 if sq is None else sq)  # [H]
        ab = err.abs().sum((0, 2)) + (0 if ab is None else ab)
        if scaler is not None:
            err = (scaler.inverse_transform(pred.double()) - scaler.inverse_transform(y.double()))
            sq_orig = err.square().sum((0, 2)) + (0 if sq_orig is None else sq_orig)
            ab_orig = err.abs().sum((0, 2)) + (0 if ab_orig is None else ab_orig)
        if len(examples) < keep:
            examples.extend(zip(x[: keep - len(examples)], y, pred))
        windows += x.size(0)
        num_vars = y.size(-1)
    if windows == 0:
        raise ValueError("no windows to evaluate")
    count = windows * num_vars
    out = {"mse": float(sq.sum() / (count * sq.numel())), "mae": float(ab.sum() / (count * ab.numel())),
           "mse_per_step": (sq / count).tolist(), "mae_per_step": (ab / count).tolist(), "windows": windows}
    if scaler is not None:
        out["rmse_original"] = math.sqrt(float(sq_orig.sum() / (count * sq_orig.numel())))
        out["mae_original"] = float(ab_orig.sum() / (count * ab_orig.numel()))
        out["rmse_original_per_step"] = (sq_orig / count).sqrt().tolist()
        out["mae_original_per_step"] = (ab_orig / count).tolist()
    if keep:
        out["examples"] = examples
    return out


# ------------------------------------------------------------ files
def _atomic_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` to a temporary file in the same folder, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _save(obj, path: Path) -> None:
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _save_json(obj, path: Path) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    _atomic_write(path, write)


def _rng_state(generator: torch.Generator) -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "shuffle": generator.get_state(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "python": [int(v) for v in random.getstate()[1]]}


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["shuffle"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))


def _plot(examples, scaler: Scaler, columns: list[str], path: Path, max_vars: int = 4) -> bool:
    """Truth against forecast of the first test window for a few variables; False without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed: no forecast plot written", stacklevel=2)
        return False
    x, y, pred = (scaler.inverse_transform(t.double()).numpy() for t in examples[0])
    num_vars = x.shape[1]
    picks = sorted(set(range(min(max_vars - 1, num_vars))) | {num_vars - 1})  # the first few and the last
    fig = Figure(figsize=(9, 2.2 * len(picks)))
    FigureCanvasAgg(fig)
    L, H = x.shape[0], y.shape[0]  # noqa: N806
    for row, v in enumerate(picks):
        ax = fig.add_subplot(len(picks), 1, row + 1)
        ax.plot(range(L), x[:, v], color="0.5", label="look-back")
        ax.plot(range(L, L + H), y[:, v], color="k", label="truth")
        ax.plot(range(L, L + H), pred[:, v], color="tab:red", label="forecast")
        ax.set_ylabel(columns[v])
        if row == 0:
            ax.legend(loc="upper left", fontsize="small", ncol=3)
    fig.axes[-1].set_xlabel("time step (first test window)")
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return True


# ------------------------------------------------------------ training
def _lr_at(cfg: ForecastConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``: lr, lr, lr/2, lr/4, ... (the reference code's "type1" schedule)."""
    return cfg.lr * 0.5 ** max(0, epoch - 1)


def train(cfg: ForecastConfig, out: str | os.PathLike | None = None, *, resume: bool = False,
          progress: bool = True, plot: bool = True) -> dict:
    """Train, early-stop and test one forecaster; returns the metrics (also written to ``out/metrics.json``).

    Everything is checked (data, graph, resume state) before ``out`` is created.
    """
    cfg.check()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if resume and out is None:
        raise ValueError("--resume needs --out, the folder of the interrupted run")
    out = Path(out) if out is not None else None
    state = None
    if resume:
        last = out / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        state = torch.load(last, map_location="cpu", weights_only=True)
        saved = state["config"]
        mine = {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "threads", "original_units", "extra")}
        theirs = {k: v for k, v in saved.items() if k in mine}
        if theirs != mine:
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            raise ValueError(f"--resume with different settings than the interrupted run (saved, now): {diff}")
    elif out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")

    data = load_data(cfg)
    edges = variable_graph(cfg, data) if cfg.model == "graph" else None
    seed_everything(cfg.seed)
    model = build_model(cfg, data.num_variables, data.num_time_features, edges)
    # fused: one kernel per parameter and step instead of ~25 (at 11 tokens the step is mostly overhead)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = data.train.loader(cfg.batch_size, shuffle=True, drop_last=True, generator=generator)
    if len(train_loader) == 0:
        raise ValueError(f"the training block has {len(data.train)} windows, fewer than one batch of "
                         f"{cfg.batch_size}; lower --batch-size or use more rows")
    val_loader = data.val.loader(cfg.batch_size) if data.val is not None else None
    test_loader = data.test.loader(cfg.batch_size)

    history, best_val, best_epoch, bad_epochs, start_epoch, stopped = [], math.inf, -1, 0, 0, False
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, best_val, best_epoch = list(state["history"]), float(state["best_val"]), int(state["best_epoch"])
        bad_epochs, start_epoch, stopped = int(state["bad_epochs"]), int(state["epoch"]), bool(state["stopped"])
        _set_rng_state(state["rng"], generator)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    saved_cfg = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    meta = {"format": CHECKPOINT_FORMAT, "config": saved_cfg, "num_variables": data.num_variables,
            "num_time_features": data.num_time_features, "scaler": data.scaler.state_dict()}
    best_state = None
    if state is not None and best_epoch >= 0:
        best_state = torch.load(out / "best.pt", map_location="cpu", weights_only=True)["model"]
    loss_fn = nn.MSELoss()
    train_seconds = []
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        if stopped:
            break
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(cfg, epoch)
        model.train()
        started = time.perf_counter()
        total, steps = 0.0, 0
        bar = _progress(train_loader, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        for x, y, x_mark, y_mark in bar:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x, x_mark, y_mark), y)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            if progress and steps % 20 == 0:
                bar.set_postfix(loss=f"{total / steps:.4f}")
        train_seconds.append(time.perf_counter() - started)
        val_loss = evaluate(model, val_loader)["mse"] if val_loader is not None else math.nan
        record = {"epoch": epoch + 1, "lr": _lr_at(cfg, epoch), "train_loss": total / steps,
                  "val_loss": val_loss, "seconds": train_seconds[-1]}
        history.append(record)
        if val_loader is None or val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out is not None:
                _save({**meta, "model": best_state, "epoch": epoch + 1, "val_loss": val_loss}, out / "best.pt")
        else:
            bad_epochs += 1
            stopped = bad_epochs >= cfg.patience
        if progress:
            print(f"epoch {epoch + 1}: train {record['train_loss']:.4f}  val {val_loss:.4f}  "
                  f"({record['seconds']:.1f} s){'  early stop' if stopped else ''}", file=sys.stderr, flush=True)
        if out is not None:
            _save({"config": saved_cfg, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "epoch": epoch + 1, "best_val": best_val, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                   "stopped": stopped, "history": history, "rng": _rng_state(generator)}, out / "last.pt")

    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, test_loader, data.scaler if cfg.original_units else None,
                    keep=1 if plot and out is not None else 0)
    examples = test.pop("examples", None)
    metrics = {
        "data": os.path.basename(cfg.data), "model": cfg.model, "seq_len": cfg.seq_len, "pred_len": cfg.pred_len,
        "seed": cfg.seed, "split": data.scheme, "num_variables": data.num_variables,
        "mse": test["mse"], "mae": test["mae"],
        **{k: v for k, v in test.items() if k not in ("mse", "mae")},
        "test_windows": test["windows"], "train_windows": len(data.train),
        "val_windows": 0 if data.val is None else len(data.val),
        "best_epoch": best_epoch + 1, "best_val_loss": best_val if math.isfinite(best_val) else None,
        "epochs_run": len(history), "early_stopped": stopped,
        "seconds_per_epoch": (sum(train_seconds) / len(train_seconds)) if train_seconds else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
    }
    del metrics["windows"]
    if out is not None:
        if examples and plot:
            metrics["plot"] = "forecast.png" if _plot(examples, data.scaler, data.series.columns,
                                                      out / "forecast.png") else None
        _save_json(metrics, out / "metrics.json")
    return metrics


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


# ------------------------------------------------------------ command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer forecast``."""
    d = ForecastConfig(data="")
    parser.add_argument("--data", required=True, help="series file: .csv (header, optional 'date' column) "
                        "or header-less .txt/.txt.gz")
    parser.add_argument("--model", choices=MODELS, default=d.model, help="(default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help="look-back (default: %(default)s)")
    parser.add_argument("--pred-len", type=int, default=d.pred_len, help="horizon (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate, halved every epoch after "
                        "the first (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=d.patience, help="early stopping (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seeds random, numpy and torch "
                        "(default: %(default)s)")
    parser.add_argument("--d-model", type=int, default=d.d_model, help="(default: %(default)s)")
    parser.add_argument("--d-ff", type=int, default=d.d_ff, help="(default: %(default)s)")
    parser.add_argument("--layers", type=int, default=d.layers, help="(default: %(default)s)")
    parser.add_argument("--heads", type=int, default=d.heads, help="(default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=d.dropout, help="(default: %(default)s)")
    parser.add_argument("--split", choices=("auto", "ett_hour", "ett_minute", "ratio", "tgcn"), default=d.split,
                        help="auto: ETT 12/4/4 months by file name, else 70/10/20 (default: %(default)s)")
    parser.add_argument("--scale", choices=("standard", "max", "none"), default=d.scale,
                        help="fitted on training rows (default: %(default)s)")
    parser.add_argument("--freq", default=d.freq, help="time-feature frequency: h, t, d, b, w, m, or none "
                        "(default: %(default)s, as the reference code)")
    parser.add_argument("--fill", choices=("ffill", "bfill", "interpolate", "zero"), default=None,
                        help="fill missing values instead of failing")
    parser.add_argument("--layout", choices=("autoformer", "lstnet"), default=d.layout,
                        help="header-less files: column order and dates (default: %(default)s)")
    parser.add_argument("--limit-rows", type=int, default=None, help="use the first N rows only (quick runs)")
    parser.add_argument("--graph", default=None, help="--model graph: V x V adjacency (header-less csv or .npy)")
    parser.add_argument("--knn", type=int, default=d.knn, help="--model graph without --graph: neighbours by "
                        "training correlation (default: %(default)s)")
    parser.add_argument("--score", choices=("dot", "additive", "gcn"), default=d.score,
                        help="--model graph: attention score on the graph (default: %(default)s)")
    parser.add_argument("--mix-complete", action="store_true", help="--model graph: add complete-graph attention")
    parser.add_argument("--causal", action="store_true", help="--model temporal: causal graph over time steps")
    parser.add_argument("--patch-len", type=int, default=d.patch_len, help="--model patch (default: %(default)s)")
    parser.add_argument("--stride", type=int, default=d.stride, help="--model patch (default: %(default)s)")
    parser.add_argument("--cycle-len", type=int, default=None, help="--model cycle / tqnet: period in rows "
                        "(default: the data's, e.g. 24 for ETTh, 52 for ILI)")
    parser.add_argument("--label-len", type=int, default=None, help="--model autoformer: decoder start length "
                        "(default: seq_len // 2)")
    parser.add_argument("--original-units", action="store_true", help="also RMSE / MAE in the data's units")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="folder for best.pt, last.pt, metrics.json, forecast.png")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    parser.add_argument("--no-plot", action="store_true", help="skip forecast.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")


def config_from_args(args: argparse.Namespace) -> ForecastConfig:
    """The :class:`ForecastConfig` of parsed command-line options."""
    fields = ForecastConfig.__dataclass_fields__
    return ForecastConfig(**{k: v for k, v in vars(args).items() if k in fields and k != "extra"})


def run(args: argparse.Namespace) -> dict:
    """Run ``graphformer forecast``; the metrics dict is printed by the command as its last line."""
    cfg = config_from_args(args)
    metrics = train(cfg, args.out, resume=args.resume, progress=not args.quiet, plot=not args.no_plot)
    return {k: v for k, v in metrics.items() if k != "history"}
