"""graphformer forecast: train, early-stop and test a forecaster on a multivariate time series.

The protocol is the long-term forecasting protocol of iTransformer /
Time-Series-Library: the standard split (12/4/4 months for ETT, 70/10/20
otherwise), a StandardScaler fitted on the training rows, Adam on the MSE,
the learning rate halved every epoch after the first ("type1"), early
stopping on the validation loss, and MSE / MAE on the scaled test windows --
every test window, none dropped, on any number of processes.

Training runs on :mod:`graphformer.train` (``--device``, ``--precision``,
``torchrun`` data parallel with a global ``--batch-size``); the flags are the
fields of :class:`ForecastConfig`. A flag that does not apply to the chosen
model or file is an error.

Files written to ``--out`` (each one atomically: a temporary file, then
``os.replace``, so an interrupted run leaves the last complete version; an
existing run folder needs ``--resume`` or ``--overwrite``):

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
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import train as engine
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
from .train import option

__all__ = [
    "MODELS",
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

CHECKPOINT_FORMAT = "graphformer-forecast/1"
PERIODIC = ("cycle", "tqnet")  # models that read the cycle phase (last mark column)
seed_everything = engine.seed_everything
_atomic_write = engine.atomic_write
_save = engine.save_torch


def _common(cfg: ForecastConfig) -> dict:
    return dict(d_model=cfg.d_model, num_heads=cfg.heads, d_ff=cfg.d_ff, num_layers=cfg.layers, dropout=cfg.dropout)


# ------------------------------------------------------------ models: one line each
# name -> builder(cfg, V variables, F time features, edges (graph model) or None)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "itransformer": lambda cfg, v, f, e: ITransformer(cfg.seq_len, cfg.pred_len, **_common(cfg)),
    "temporal": lambda cfg, v, f, e: TemporalTransformer(
        cfg.seq_len, cfg.pred_len, v, f, causal=cfg.causal, **_common(cfg)
    ),
    "patch": lambda cfg, v, f, e: PatchTransformer(
        cfg.seq_len, cfg.pred_len, cfg.patch_len, cfg.stride, **_common(cfg)
    ),
    "graph": lambda cfg, v, f, e: GraphPriorForecaster(
        cfg.seq_len, cfg.pred_len, e[0], v, e[1], score=cfg.score, mix_complete=cfg.mix_complete, **_common(cfg)
    ),
    # factor 3: Autoformer's scripts
    "autoformer": lambda cfg, v, f, e: Autoformer(
        cfg.seq_len,
        _label_len(cfg),
        cfg.pred_len,
        v,
        f,
        cfg.d_model,
        cfg.heads,
        cfg.d_ff,
        cfg.layers,
        1,
        cfg.dropout,
        factor=3.0,
    ),
    "cycle": lambda cfg, v, f, e: CycleForecaster(
        ITransformer(cfg.seq_len, cfg.pred_len, use_norm=False, **_common(cfg)),
        cfg.seq_len,
        cfg.pred_len,
        v,
        _cycle_len(cfg),
    ),
    "tqnet": lambda cfg, v, f, e: TemporalQueryForecaster(
        cfg.seq_len, cfg.pred_len, v, _cycle_len(cfg), cfg.d_model, dropout=cfg.dropout
    ),
}
GRAPH_MODELS = ("graph",)  # models built on a graph over the variables (``edges``)


def _cycle_len(cfg) -> int:
    """The period W of ``cycle`` / ``tqnet``: ``--cycle-len``, else the data's protocol (24 for ETTh, 52 for ILI)."""
    return cfg.cycle_len or protocol_for(os.path.basename(cfg.data).removesuffix(".csv")).cycle_len


def _label_len(cfg) -> int:
    """Autoformer's decoder start length: ``--label-len``, else half the look-back."""
    return cfg.label_len if cfg.label_len is not None else cfg.seq_len // 2


def _model_is(*names: str):
    return (lambda cfg: cfg.model in names), "--model " + " / ".join(names)


def _csv(cfg) -> bool:
    return str(cfg.data).endswith(".csv")


# ------------------------------------------------------------ configuration
@dataclass(kw_only=True)
class ForecastConfig(engine.TrainConfig):
    """Everything one forecasting run depends on (the defaults are iTransformer's ETTh1 setting).

    The training fields (``epochs``, ``batch_size``, ``lr``, ``schedule``,
    ``patience``, ``seed``, ``device``, ``precision``, ``threads``, ...) are
    :class:`graphformer.train.TrainConfig`'s; the defaults here are the
    reference code's: Adam at 1e-4, halved every epoch after the first,
    10 epochs, early stopping after 3 epochs without a lower validation loss.
    Each field is one ``graphformer forecast`` flag (``seq_len`` ->
    ``--seq-len``); see its help there.
    """

    data: str = option(help="series file: .csv (header row, optional date column) or header-less .txt/.txt.gz")
    model: str = option("itransformer", "the forecaster", choices=tuple(MODELS))
    seq_len: int = option(96, "look-back L")
    pred_len: int = option(96, "horizon H")
    epochs: int | None = option(10, "training epochs")
    batch_size: int = option(32, "global batch size (the sum over processes under torchrun)")
    lr: float = option(1e-4, "Adam learning rate, halved every epoch after the first with --schedule halve")
    schedule: str = option(
        "halve", "learning-rate schedule (halve: the reference code's 'type1')", choices=engine.SCHEDULES
    )
    patience: int | None = option(3, "early stopping: epochs without a lower validation loss")
    seed: int = option(2021, "seeds random, numpy, torch and the data order")
    d_model: int = option(256, "model width")
    d_ff: int = option(256, "feed-forward width")
    layers: int = option(2, "encoder layers")
    heads: int = option(8, "attention heads")
    dropout: float = option(0.1, "dropout")
    split: str = option(
        "auto",
        "auto: ETT 12/4/4 months by file name, else 70/10/20; tgcn: 80/20, no validation",
        choices=("auto", "ett_hour", "ett_minute", "ratio", "tgcn"),
    )
    scale: str = option("standard", "scaling fitted on the training rows", choices=("standard", "max", "none"))
    freq: str = option("h", "time-feature frequency: h, t, d, b, w, m, or none (h as the reference code)")
    fill: str | None = option(
        None, "fill missing values instead of failing", choices=("ffill", "bfill", "interpolate", "zero")
    )
    layout: str = option(
        "autoformer",
        "header-less .txt files: column order and dates",
        choices=("autoformer", "lstnet"),
        applies=(lambda c: not _csv(c), "header-less .txt data"),
    )
    date_column: str | None = option(
        None, "name of the CSV's timestamp column (default: 'date' if present)", applies=(_csv, ".csv data")
    )
    date_format: str | None = option(
        None,
        "strftime format of the timestamps, e.g. '%d.%m.%Y %H:%M' (default: inferred)",
        applies=(_csv, ".csv data"),
    )
    sep: str = option(",", "CSV column separator (\\t for tabs)", applies=(_csv, ".csv data"))
    limit_rows: int | None = option(
        None,
        "use the first N rows only (quick runs; the split falls back to 70/10/20 when the standard one does not fit)",
    )
    graph: str | None = option(
        None, "V x V adjacency (header-less csv or .npy) of the variables", applies=_model_is(*GRAPH_MODELS)
    )
    knn: int = option(3, "without --graph: neighbours by training correlation", applies=_model_is(*GRAPH_MODELS))
    score: str = option(
        "dot", "attention score on the graph", choices=("dot", "additive", "gcn"), applies=_model_is(*GRAPH_MODELS)
    )
    mix_complete: bool = option(False, "add complete-graph attention", applies=_model_is(*GRAPH_MODELS))
    causal: bool = option(False, "causal graph over time steps", applies=_model_is("temporal"))
    patch_len: int = option(16, "patch length", applies=_model_is("patch"))
    stride: int = option(8, "patch stride", applies=_model_is("patch"))
    cycle_len: int | None = option(
        None,
        "period W in rows (default: the data's protocol, e.g. 24 for ETTh, 52 for ILI)",
        applies=_model_is(*PERIODIC),
    )
    label_len: int | None = option(
        None, "decoder start length (default: seq_len // 2)", applies=_model_is("autoformer")
    )
    original_units: bool = option(False, "also report RMSE / MAE in the data's units")
    extra: dict = option(help="free-form settings of a model added by a script", flag=False, default_factory=dict)

    def check(self) -> None:
        """Raise ``ValueError`` on an impossible setting (before anything is loaded or written)."""
        super().check()
        if self.model not in MODELS:
            raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in ("seq_len", "pred_len", "d_model", "d_ff", "layers", "heads", "knn", "patch_len", "stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if self.d_model % self.heads:
            raise ValueError(f"--d-model {self.d_model} must be divisible by --heads {self.heads}")
        for name in ("cycle_len", "label_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.limit_rows is not None and self.limit_rows < 2:
            raise ValueError(f"--limit-rows must be >= 2, got {self.limit_rows}")

    def model_kwargs(self) -> dict:
        """The settings that define the network."""
        keys = ["model", "seq_len", "pred_len", "d_model", "d_ff", "layers", "heads", "dropout"]
        keys += [
            f.name
            for f in _fields()
            if f.metadata.get("applies")
            and f.metadata["applies"][1].startswith("--model")
            and f.metadata["applies"][0](self)
        ]
        return {k: getattr(self, k) for k in keys}


def _fields():
    import dataclasses

    return dataclasses.fields(ForecastConfig)


# ------------------------------------------------------------ data and model
def load_data(cfg: ForecastConfig) -> ForecastData:
    """Read, split, scale and window the series of ``cfg``."""
    series = load_series(
        cfg.data,
        fill=cfg.fill,
        layout=cfg.layout,
        date_column=cfg.date_column,
        date_format=cfg.date_format,
        sep=cfg.sep,
    )
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


def build_model(
    cfg: ForecastConfig, num_variables: int, num_time_features: int, edges: tuple[Tensor, Tensor] | None = None
) -> nn.Module:
    """The network of ``cfg`` for V variables and F time features (see :data:`MODELS`)."""
    if cfg.model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {cfg.model!r}")
    if cfg.model in GRAPH_MODELS and edges is None:
        raise ValueError("the graph model needs its edges")
    return MODELS[cfg.model](cfg, num_variables, num_time_features, edges)


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, ForecastConfig, Scaler]:
    """Rebuild the model of a ``best.pt`` written by :func:`train` (loaded with ``weights_only=True``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a graphformer forecast checkpoint")
    known = {f.name for f in _fields()}
    cfg = ForecastConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
    state = ckpt["model"]
    edges = (state["edge_index"], state["edge_weight"]) if cfg.model in GRAPH_MODELS else None
    model = build_model(cfg, ckpt["num_variables"], ckpt["num_time_features"], edges)
    model.load_state_dict(state)
    return model.eval(), cfg, Scaler.from_state_dict(ckpt["scaler"])


# ------------------------------------------------------------ evaluation
def window_batches(dataset, indices: Iterable[int], batch_size: int):
    """Batches ``(x, y, x_mark, y_mark)`` of the windows ``indices`` of a ``WindowDataset``, in order."""
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    for k in range(0, idx.numel(), batch_size):
        yield dataset[idx[k : k + batch_size]]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    scaler: Scaler | None = None,
    keep: int = 0,
    *,
    ctx: engine.Context | None = None,
    device: torch.device | str | None = None,
) -> dict:
    """MSE and MAE over every window of ``loader``, overall and per horizon step.

    Args:
        model: the forecaster (put in eval mode here).
        loader: batches ``(x, y, x_mark, y_mark)``; under torchrun each
            process's share of the windows (:func:`graphformer.train.shard`).
        scaler: if given, also RMSE / MAE after ``scaler.inverse_transform``.
        keep: keep the first ``keep`` windows' inputs, truths and forecasts.
        ctx: the process group: the sums are added over the processes, so
            every window counts exactly once.
        device: where the model runs (default: where its parameters are).

    Returns:
        ``{"mse", "mae", "mse_per_step", "mae_per_step", "windows"}`` (plus
        ``"rmse_original"``, ``"mae_original"`` and per-step lists with a
        scaler, and ``"examples"`` with ``keep``).
    """
    model.eval()
    ctx = ctx or engine.Context()
    if device is None:
        device = next(model.parameters()).device if any(True for _ in model.parameters()) else torch.device("cpu")
    sq = ab = sq_orig = ab_orig = None
    windows, num_vars, horizon = 0, 1, 0
    examples = []
    for x, y, x_mark, y_mark in loader:
        pred = model(x.to(device), x_mark.to(device), y_mark.to(device)).float().cpu()
        err = (pred - y).double()
        sq = err.square().sum((0, 2)) + (0 if sq is None else sq)  # [H]
        ab = err.abs().sum((0, 2)) + (0 if ab is None else ab)
        if scaler is not None:
            err = scaler.inverse_transform(pred.double()) - scaler.inverse_transform(y.double())
            sq_orig = err.square().sum((0, 2)) + (0 if sq_orig is None else sq_orig)
            ab_orig = err.abs().sum((0, 2)) + (0 if ab_orig is None else ab_orig)
        if len(examples) < keep:
            examples.extend(zip(x[: keep - len(examples)], y, pred))
        windows += x.size(0)
        num_vars = y.size(-1)
        horizon = y.size(1)
    if ctx.distributed:  # add up the processes' sums; a process may hold no window
        import torch.distributed as dist

        shape = torch.tensor([horizon, num_vars] if windows else [0, 0])
        dist.all_reduce(shape, op=dist.ReduceOp.MAX)
        horizon, num_vars = int(shape[0]), int(shape[1])
        zero = torch.zeros(horizon, dtype=torch.float64)
        flat = torch.cat(
            [
                torch.tensor([float(windows)], dtype=torch.float64),
                *[t if t is not None else zero for t in (sq, ab, sq_orig, ab_orig)],
            ]
        )
        flat = engine.all_reduce_sum(flat, ctx)
        windows = int(flat[0])
        sq, ab, sq_orig, ab_orig = flat[1:].split(horizon)
    if windows == 0:
        raise ValueError("no windows to evaluate")
    count = windows * num_vars
    out = {
        "mse": float(sq.sum() / (count * sq.numel())),
        "mae": float(ab.sum() / (count * ab.numel())),
        "mse_per_step": (sq / count).tolist(),
        "mae_per_step": (ab / count).tolist(),
        "windows": windows,
    }
    if scaler is not None:
        out["rmse_original"] = math.sqrt(float(sq_orig.sum() / (count * sq_orig.numel())))
        out["mae_original"] = float(ab_orig.sum() / (count * ab_orig.numel()))
        out["rmse_original_per_step"] = (sq_orig / count).sqrt().tolist()
        out["mae_original_per_step"] = (ab_orig / count).tolist()
    if keep:
        out["examples"] = examples
    return out


# ------------------------------------------------------------ files
def _plot(examples, scaler: Scaler, columns: list[str], run: engine.RunDir, max_vars: int = 4) -> bool:
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
    run.write("forecast.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return True


# ------------------------------------------------------------ training
def train(
    cfg: ForecastConfig,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    plot: bool = True,
    given: set[str] | None = None,
) -> dict:
    """Train, early-stop and test one forecaster; returns the metrics (also written to ``out/metrics.json``).

    Everything is checked (settings, ``out``, data, graph, resume state)
    before anything is written. Under ``torchrun`` every process trains on its
    share of each global batch; only rank 0 writes. ``given``: the settings the
    user chose (the CLI's flags), checked by :func:`graphformer.train.check_applicable`.
    """
    cfg.check()
    engine.check_applicable(cfg, given)
    with engine.distributed(cfg.device) as ctx:
        run = engine.RunDir(out, resume=resume, overwrite=overwrite, is_main=ctx.is_main)
        run.check()
        threads = cfg.threads or engine.default_threads(ctx.local_world_size)
        torch.set_num_threads(threads)
        data = load_data(cfg)
        edges = variable_graph(cfg, data) if cfg.model in GRAPH_MODELS else None
        if len(data.train) < cfg.batch_size:
            raise ValueError(
                f"the training block has {len(data.train)} windows, fewer than one batch of "
                f"{cfg.batch_size}; lower --batch-size or use more rows"
            )
        run.prepare(ctx)
        engine.seed_everything(cfg.seed)
        model = build_model(cfg, data.num_variables, data.num_time_features, edges).to(ctx.device)
        dev = ctx.device

        def loss_fn(net, batch):
            x, y, x_mark, y_mark = (t.to(dev, non_blocking=True) for t in batch)
            return F.mse_loss(net(x, x_mark, y_mark).float(), y)

        def batches(block):
            return window_batches(block, engine.shard(len(block), ctx), cfg.batch_size)

        def validate(net):
            return {"val_loss": evaluate(net, batches(data.val), ctx=ctx, device=dev)["mse"]}

        saved_cfg = cfg.to_dict()
        meta = {
            "format": CHECKPOINT_FORMAT,
            "config": saved_cfg,
            "num_variables": data.num_variables,
            "num_time_features": data.num_time_features,
            "scaler": data.scaler.state_dict(),
        }
        result = engine.fit(
            model,
            cfg,
            ctx,
            loss_fn=loss_fn,
            train_size=len(data.train),
            get_batch=lambda idx: data.train[idx],
            evaluate=validate if data.val is not None else None,
            monitor="val_loss",
            run=run,
            meta=meta,
            drop_last=True,
            resume_ignore=("original_units", "extra"),
            progress=progress,
            desc=cfg.model,
        )
        keep = 1 if plot and run and ctx.is_main else 0
        model.eval()
        with torch.no_grad(), engine.autocast(dev, cfg.precision):
            test = evaluate(
                model, batches(data.test), data.scaler if cfg.original_units else None, keep=keep, ctx=ctx, device=dev
            )
        examples = test.pop("examples", None)
        best_val = result.best.get("val_loss")
        metrics = {
            "data": os.path.basename(cfg.data),
            "model": cfg.model,
            "seq_len": cfg.seq_len,
            "pred_len": cfg.pred_len,
            "seed": cfg.seed,
            "split": data.scheme,
            "num_variables": data.num_variables,
            "mse": test["mse"],
            "mae": test["mae"],
            **{k: v for k, v in test.items() if k not in ("mse", "mae", "windows")},
            "test_windows": test["windows"],
            "train_windows": len(data.train),
            "val_windows": 0 if data.val is None else len(data.val),
            "best_epoch": result.best_epoch,
            "best_val_loss": best_val,
            "epochs_run": result.epochs,
            "early_stopped": result.stopped_early,
            "seconds_per_epoch": result.seconds_per_epoch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "device": str(dev),
            "precision": cfg.precision,
            "processes": ctx.world_size,
            "threads": threads,
            "history": result.history,
        }
        if run and ctx.is_main:
            if examples and plot:
                metrics["plot"] = "forecast.png" if _plot(examples, data.scaler, data.series.columns, run) else None
            run.save_json("metrics.json", metrics)
        ctx.barrier()
    return metrics


# ------------------------------------------------------------ command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer forecast``: the fields of :class:`ForecastConfig`, then the run's."""
    engine.add_config_arguments(parser, ForecastConfig, required=("data",))
    engine.add_run_arguments(parser, "best.pt, last.pt, metrics.json, forecast.png", plot="forecast.png")


def config_from_args(args: argparse.Namespace) -> ForecastConfig:
    """The :class:`ForecastConfig` of parsed command-line options."""
    return engine.config_from_args(ForecastConfig, args)[0]


def run(args: argparse.Namespace) -> dict:
    """Run ``graphformer forecast``; the metrics dict is printed by the command as its last line."""
    cfg, given = engine.config_from_args(ForecastConfig, args)
    if args.no_plot and args.out is None:
        raise ValueError("--no-plot applies with --out (without --out nothing is written)")
    metrics = train(
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        plot=not args.no_plot,
        given=given,
    )
    return {k: v for k, v in metrics.items() if k != "history"}
