"""The training engine behind every ``graphformer`` command: one fit loop, any device, many processes.

A command is data + model + config; this module does the rest. The pieces,
each usable on its own:

* :class:`TrainConfig` -- the settings every training run shares (epochs or
  steps, batch size, optimizer, learning-rate schedule, clipping, early
  stopping, seed, device, precision, threads). A command's config subclasses
  it (``@dataclass(kw_only=True) class ForecastConfig(TrainConfig): ...``) and
  re-declares the fields whose defaults differ.
* :func:`add_config_arguments` / :func:`config_from_args` -- the command-line
  flags of a config dataclass (one source of truth): ``--batch-size`` from
  ``batch_size: int``, help and choices from ``field(metadata=...)`` (see
  :func:`option`), and the set of flags the user actually gave, so that
  :func:`check_applicable` can refuse a flag that does nothing.
* :func:`resolve_device`, :func:`autocast`, :func:`grad_scaler` --
  ``--device auto|cpu|cuda|cuda:N`` and ``--precision fp32|bf16|fp16``
  (``torch.autocast``; a ``GradScaler`` for fp16).
* :func:`distributed` -- a context manager that joins the process group when
  started by ``torchrun`` (gloo on CPU, NCCL on CUDA) and leaves it on exit;
  it yields a :class:`Context` (rank, world size, device, ``is_main``).
  Helpers for sharded evaluation: :func:`shard`, :func:`all_reduce_sum`,
  :func:`all_gather_cat`.
* :class:`GlobalBatchSampler` -- the global batch order, drawn from an
  explicit generator seeded by ``(seed, epoch)`` (so neither a progress bar
  nor anything else that touches torch's global random state moves it), cut
  into one contiguous shard per process: the union of the processes' shards is
  the batch one process would see, in the same order.
* :class:`RunDir` -- the ``--out`` folder: checked before any work (a
  non-empty run folder needs ``resume`` or ``overwrite``), only the main
  process writes, every file atomically (temporary file + ``os.replace``).
* :func:`fit` -- the loop: epochs or steps, evaluation and early stopping on a
  monitored metric, learning-rate schedules with warm-up, gradient clipping,
  autocast + gradient scaling, ``DistributedDataParallel``, a progress bar,
  ``best.pt`` / ``last.pt`` checkpoints (``torch.load(..., weights_only=True)``)
  and exact resume; a non-finite loss stops the run with
  :class:`NonFiniteLossError`.
* :func:`dumps` / :func:`write_json` -- strict JSON (non-finite numbers become
  ``null``; never ``NaN``).

A minimal use::

    from graphformer import train as engine

    cfg = engine.TrainConfig(epochs=5, batch_size=32, lr=1e-3, schedule="cosine", warmup_steps=10)
    with engine.distributed(cfg.device) as ctx:
        run = engine.RunDir("runs/a", resume=False, overwrite=False, is_main=ctx.is_main)
        run.prepare(ctx)                           # before any work
        engine.seed_everything(cfg.seed)
        model = Net().to(ctx.device)
        result = engine.fit(
            model, cfg, ctx,
            train_size=len(xs),                    # samples 0 .. n-1
            get_batch=lambda idx: (xs[idx], ys[idx]),  # idx: LongTensor of this process's share
            loss_fn=lambda m, b: F.mse_loss(m(b[0].to(ctx.device)), b[1].to(ctx.device)),
            evaluate=lambda m: {"loss": my_sharded_val_loss(m)},   # same value on every process
            monitor="loss", run=run)
        result.best            # the evaluation at the best step; the model holds its weights

``loss_fn(model, batch)`` must return the *mean* loss over the samples in
``batch``: the engine weighs each process's share so that the gradient is the
mean over the whole global batch, whatever the number of processes. With
``train_size=None`` each epoch is one full-batch step, ``loss_fn(model, None)``
(node classification on one graph).

Legend: B global batch, W processes (world size), n training samples.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import random
import shutil
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Context",
    "FitResult",
    "GlobalBatchSampler",
    "NonFiniteLossError",
    "RunDir",
    "TrainConfig",
    "add_config_arguments",
    "all_gather_cat",
    "all_reduce_sum",
    "atomic_write",
    "autocast",
    "check_applicable",
    "config_from_args",
    "default_threads",
    "distributed",
    "dumps",
    "fit",
    "grad_scaler",
    "lr_at",
    "option",
    "resolve_device",
    "save_torch",
    "seed_everything",
    "settings_diff",
    "shard",
    "write_json",
]

PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("constant", "cosine", "halve", "linear")
OPTIMIZERS = ("adam", "adamw")
RUN_FILES = ("metrics.json", "last.pt", "best.pt", "forecast.png", "runs.json")  # any of these marks a run folder


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: tuple | None = None,  # noqa: A002
    applies: tuple[Callable[[Any], bool], str] | None = None,
    flag: bool = True,
    metavar: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass ``field`` that carries its command-line help.

    Args:
        default: the default value.
        help: the flag's help text (``(default: ...)`` is appended).
        choices: allowed values (argparse ``choices``).
        applies: ``(predicate(cfg) -> bool, "--model graph")``: the flag is an
            error when given while ``predicate`` is false (see :func:`check_applicable`).
        flag: False keeps the field off the command line.
        metavar: argparse ``metavar``.
        default_factory: as ``dataclasses.field``.
    """
    meta = {"help": help, "choices": choices, "applies": applies, "flag": flag, "metavar": metavar}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------ configuration
@dataclass(kw_only=True)
class TrainConfig:
    """The settings every training run shares; a command's config subclasses it.

    Exactly one of ``epochs`` / ``steps`` sets the length: with ``steps`` the
    run evaluates every ``eval_every`` steps; with ``epochs`` after every epoch.
    The learning rate of step ``s`` is :func:`lr_at`. ``patience`` counts
    evaluations without a better monitored value (None: no early stopping).
    ``threads=None`` takes :func:`default_threads`.
    """

    epochs: int | None = option(10, "training epochs (an epoch: every training sample once)")
    steps: int | None = option(None, "train for this many optimizer steps instead of --epochs")
    eval_every: int | None = option(
        None, "with --steps: evaluate (and checkpoint) every N steps (default: once, at the end)"
    )
    batch_size: int = option(32, "global batch size: the sum over all processes under torchrun")
    lr: float = option(1e-3, "peak learning rate")
    weight_decay: float = option(0.0, "weight decay (L2 for adam, decoupled for adamw)")
    optimizer: str = option("adam", "optimizer", choices=OPTIMIZERS)
    beta1: float = option(0.9, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")
    schedule: str = option(
        "constant",
        "learning-rate schedule after the warm-up: constant, cosine (to "
        "--min-lr at the last step), linear (to --min-lr), halve (lr / 2 every epoch after "
        "the first)",
        choices=SCHEDULES,
    )
    warmup_steps: int = option(0, "linear warm-up over the first N steps")
    min_lr: float = option(0.0, "final learning rate of the cosine and linear schedules")
    grad_clip: float | None = option(None, "clip the gradient norm to this value (default: no clipping)")
    patience: int | None = option(None, "stop after N evaluations without improvement (default: never)")
    seed: int = option(0, "seeds random, numpy, torch and the data order")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N", metavar="DEVICE")
    precision: str = option("fp32", "fp32, bf16 (autocast) or fp16 (autocast + gradient scaler)", choices=PRECISIONS)
    threads: int | None = option(
        None,
        "torch CPU threads per process (default: the free cores, at most the cores per process; see docs/training.md)",
    )

    def check(self) -> None:
        """Raise ``ValueError`` on an impossible setting (before anything is loaded or written)."""
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of --epochs and --steps")
        for name in ("epochs", "steps", "eval_every", "batch_size", "patience", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"--{_flag(name)} must be a positive integer, got {value!r}")
        if self.eval_every is not None and self.steps is None:
            raise ValueError("--eval-every applies with --steps; with --epochs the run evaluates every epoch")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a finite number > 0, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"--min-lr must lie in [0, --lr], got {self.min_lr!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"--grad-clip must be > 0, got {self.grad_clip!r}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.schedule == "halve" and self.epochs is None:
            raise ValueError("--schedule halve halves the rate every epoch; it needs --epochs, not --steps")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"--{name} must lie in [0, 1), got {getattr(self, name)!r}")
        _parse_device(self.device)

    def to_dict(self) -> dict:
        """The config as a plain dict (for checkpoints and metrics.json)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _field_type(cls, f: dataclasses.Field) -> tuple[type, bool]:
    """``(base type, optional)`` of a dataclass field (``int | None`` -> ``(int, True)``)."""
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _parse_optional(base: type):
    def parse(text: str):
        if text.lower() == "none":
            return None
        return base(text)

    parse.__name__ = base.__name__
    return parse


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, exclude: tuple[str, ...] = (), required: tuple[str, ...] = ()
) -> None:
    """Add one flag per field of the dataclass ``cls`` (``batch_size`` -> ``--batch-size``).

    Types come from the annotations (``int``, ``float``, ``str``, ``bool``,
    ``X | None``; an optional flag also takes ``none``), help and choices from
    :func:`option` metadata. Flags are added with ``argparse.SUPPRESS``
    defaults, so the parsed namespace holds only the flags the user gave;
    :func:`config_from_args` fills in the dataclass defaults.
    A ``bool`` field becomes ``--name`` / ``--no-name``.
    """
    base_names = {f.name for f in dataclasses.fields(TrainConfig)}
    own = parser.add_argument_group(f"{cls.__name__} settings") if cls is not TrainConfig else parser
    training = parser.add_argument_group("training (graphformer.train: devices, precision, schedule, processes)")
    fields = sorted(dataclasses.fields(cls), key=lambda f: f.name in base_names)  # the command's own first
    for f in fields:
        group = training if f.name in base_names else own
        meta = f.metadata
        if f.name in exclude or not meta.get("flag", True) or f.name.startswith("_"):
            continue
        base, optional = _field_type(cls, f)
        default = f.default if f.default is not dataclasses.MISSING else None
        text = meta.get("help", "")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if f.name in required:
            kwargs["required"] = True
        elif default is not None or base is not bool:
            text += f" (default: {default})" if default is not None and f.default is not dataclasses.MISSING else ""
        if base is bool:
            group.add_argument(
                f"--{_flag(f.name)}", action=argparse.BooleanOptionalAction, help=text.replace("%", "%%"), **kwargs
            )
            continue
        kwargs["type"] = _parse_optional(base) if optional else base
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        group.add_argument(f"--{_flag(f.name)}", help=text.replace("%", "%%"), **kwargs)


def add_run_arguments(
    parser: argparse.ArgumentParser, files: str, *, resume: bool = True, plot: str | None = None
) -> None:
    """The flags of a run folder, the same in every training command.

    ``--out DIR`` (holding ``files``), ``--resume`` (when the command can
    continue a run), ``--overwrite``, ``--no-plot`` (when it draws ``plot``) and
    ``--quiet`` (alias ``--no-progress``: no progress bars or log lines; the
    results are the same).
    """
    parser.add_argument(
        "--out",
        default=None,
        help=f"folder for {files} (an existing run needs " + ("--resume or --overwrite)" if resume else "--overwrite)"),
    )
    if resume:
        parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    if plot is not None:
        parser.add_argument("--no-plot", action="store_true", help=f"skip {plot}")
    parser.add_argument(
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress bars or log lines (results are the same)",
    )


def config_from_args(cls: type, args: argparse.Namespace, **fixed):
    """``(config, given)``: the dataclass ``cls`` from parsed flags, and the names of the flags given.

    Fields absent from ``args`` keep their dataclass defaults (``--steps``
    without ``--epochs`` clears the default epochs); ``fixed`` overrides both.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k for k in vars(args) if k in names}
    values = {k: getattr(args, k) for k in given}
    if "steps" in given and "epochs" not in given and values["steps"] is not None:
        values["epochs"] = None  # --steps N replaces the default number of epochs
    values.update(fixed)
    return cls(**values), given


def check_applicable(cfg, given: set[str] | None = None) -> None:
    """Refuse a setting that does nothing for the chosen model / dataset.

    ``given`` are the names of the settings the user chose (the CLI passes
    the flags given; by default: every field that differs from its default).
    A field whose :func:`option` has ``applies=(predicate, what)`` is an error
    when given while ``predicate(cfg)`` is false.
    """
    for f in dataclasses.fields(cfg):
        rule = f.metadata.get("applies")
        if rule is None:
            continue
        if given is None:
            default = f.default if f.default is not dataclasses.MISSING else None
            chosen = getattr(cfg, f.name) != default
        else:
            chosen = f.name in given
        predicate, what = rule
        if chosen and not predicate(cfg):
            raise ValueError(f"--{_flag(f.name)} applies to {what} only; drop it or change the setting it depends on")


# ------------------------------------------------------------------ devices, precision, threads
def _parse_device(spec: str) -> None:
    if spec == "auto" or spec == "cpu" or spec == "cuda":
        return
    if spec.startswith("cuda:") and spec[5:].isdigit():
        return
    raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` of ``--device`` (``auto``: CUDA when present, else CPU).

    Under torchrun with CUDA, ``auto`` / ``cuda`` take GPU ``local_rank``.

    Raises:
        ValueError: an unknown spec, or CUDA asked for where there is none.
    """
    _parse_device(spec)
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device {spec}: CUDA is not available here (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}); use --device cpu or auto"
        )
    if spec in ("auto", "cuda"):
        return torch.device("cuda", local_rank or 0)
    index = int(spec[5:])
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", index)


def autocast(device: torch.device, precision: str = "fp32"):
    """``torch.autocast`` for ``precision`` on ``device`` (a no-op context for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str = "fp32") -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (bf16 keeps fp32's exponent range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_threads(local_processes: int = 1) -> int:
    """Threads per process that do not oversubscribe the CPU.

    The cores this process may use, shared among the ``local_processes`` of
    this machine, less the cores other programs keep busy (the 1-minute load
    average, without this run), and at least 1. A busy core makes torch's
    threads wait for each other at every operation (on a loaded 2-core
    machine an epoch ran 30x slower with 2 threads than with 1); pass
    ``--threads`` to pin the number (it is recorded in ``metrics.json``).
    """
    cores = max(1, _cpu_count() // max(1, local_processes))
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        busy = 0.0
    free = int(_cpu_count() - busy + 0.5) // max(1, local_processes)
    return max(1, min(cores, free))


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, ``numpy`` and ``torch`` (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------ processes
@dataclass
class Context:
    """Where this process runs: ``rank`` of ``world_size`` processes, its ``device``, ``is_main`` (rank 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that prints and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every process (no-op on one process)."""
        if self.distributed:
            torch.distributed.barrier()


@contextlib.contextmanager
def distributed(device: str = "auto", *, timeout_s: float = 600.0) -> Iterator[Context]:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1); leave it on exit.

    gloo on CPU, NCCL on CUDA (each process takes GPU ``LOCAL_RANK``). A
    collective that waits longer than ``timeout_s`` (a process died) raises
    instead of hanging. Without torchrun this yields a one-process
    :class:`Context` and touches nothing.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = resolve_device(device, local_rank if world > 1 else None)
    if world <= 1:
        yield Context(device=dev)
        return
    import torch.distributed as dist

    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    started_here = not dist.is_initialized()
    if started_here:
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s), **kwargs
        )
    try:
        yield Context(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world, device=dev)
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()


def shard(n: int, ctx: Context) -> range:
    """This process's contiguous share of ``range(n)`` (the shares cover it exactly once)."""
    lo, hi = (n * ctx.rank) // ctx.world_size, (n * (ctx.rank + 1)) // ctx.world_size
    return range(lo, hi)


def all_reduce_sum(value: Tensor, ctx: Context) -> Tensor:
    """The sum of ``value`` over all processes (``value`` itself on one process)."""
    if not ctx.distributed:
        return value
    out = value.detach().clone()
    torch.distributed.all_reduce(out)
    return out


def all_gather_cat(value: Tensor, ctx: Context) -> Tensor:
    """The processes' ``value`` tensors concatenated along dim 0 in rank order (sizes may differ)."""
    if not ctx.distributed:
        return value
    import torch.distributed as dist

    size = torch.tensor([value.size(0)], device=value.device)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = value.new_zeros((longest, *value.shape[1:]))
    padded[: value.size(0)] = value
    parts = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


# ------------------------------------------------------------------ data order
class GlobalBatchSampler:
    """The global batches of an epoch, and this process's share of each.

    Epoch ``e``'s order is ``randperm(n)`` drawn from a generator seeded by
    ``(seed, e)`` (or ``range(n)`` without shuffling); global batch ``b`` is
    positions ``b*B .. b*B + B - 1`` of it. Process ``r`` of ``W`` gets a
    contiguous slice of the batch (``torch.tensor_split``) and the weight
    ``len(slice) * W / len(batch)``; a process whose slice is empty (a last
    batch smaller than ``W``) gets one sample with weight 0. Weighted this way
    and averaged by DDP, the gradient is the mean over the global batch.

    With ``replacement=True`` every batch draws ``B`` indices uniformly at
    random (nanoGPT's random offsets), seeded by ``(seed, e)``.

    Args:
        n: number of training samples (> 0).
        batch_size: global batch size B.
        seed: data-order seed.
        shuffle, drop_last, replacement: as above; ``drop_last`` drops a last
            batch smaller than B.
        rank, world_size: this process and the number of processes.
        batches_per_epoch: with ``replacement``, batches in an epoch (default n // B, at least 1).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        replacement: bool = False,
        rank: int = 0,
        world_size: int = 1,
        batches_per_epoch: int | None = None,
    ):
        if n < 1:
            raise ValueError("no training samples")
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.shuffle, self.drop_last, self.replacement = shuffle, drop_last, replacement
        self.rank, self.world_size = rank, world_size
        if replacement:
            self._len = batches_per_epoch or max(1, n // batch_size)
        else:
            self._len = n // batch_size if drop_last else -(-n // batch_size)
        if self._len == 0:
            raise ValueError(
                f"{n} training samples are fewer than one batch of --batch-size {batch_size}; "
                "lower --batch-size or use more data"
            )

    def __len__(self) -> int:
        return self._len

    def _generator(self, epoch: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed % 2**63, epoch]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def global_batches(self, epoch: int) -> list[Tensor]:
        """The global batches of ``epoch`` (index tensors)."""
        gen = self._generator(epoch)
        if self.replacement:
            return list(torch.randint(self.n, (self._len, self.batch_size), generator=gen).unbind(0))
        order = torch.randperm(self.n, generator=gen) if self.shuffle else torch.arange(self.n)
        return [order[b * self.batch_size : (b + 1) * self.batch_size] for b in range(self._len)]

    def local(self, batch: Tensor) -> tuple[Tensor, float]:
        """``(indices, weight)``: this process's share of a global batch."""
        part = torch.tensor_split(batch, self.world_size)[self.rank]
        if part.numel() == 0:
            return batch[:1], 0.0
        return part, part.numel() * self.world_size / batch.numel()

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, float]]:
        """This process's ``(indices, weight)`` for the batches of ``epoch``, from batch ``start`` on."""
        for batch in self.global_batches(epoch)[start:]:
            yield self.local(batch)


# ------------------------------------------------------------------ files
def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Write through ``write(tmp_path)`` to a temporary file next to ``path``, then ``os.replace``.

    An interrupted write leaves the previous version of ``path`` (or nothing).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _strict(obj):
    if isinstance(obj, float) or isinstance(obj, np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, Tensor):
        return _strict(obj.tolist())
    if isinstance(obj, np.ndarray):
        return _strict(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj, **kwargs) -> str:
    """Strict JSON of ``obj``: NaN and infinities become ``null`` (``json.dumps(..., allow_nan=False)``)."""
    return json.dumps(_strict(obj), allow_nan=False, ensure_ascii=False, **kwargs)


def write_json(obj, path: str | os.PathLike) -> None:
    """Write :func:`dumps` of ``obj`` (indented) atomically."""
    text = dumps(obj, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def settings_diff(saved: dict, now: dict, free=()) -> dict:
    """``{name: (saved value, current value)}`` for the settings that differ, leaving out ``free`` names.

    What ``--resume`` checks: an interrupted run continues only with the settings it started with.
    """
    keys = (set(saved) | set(now)) - set(free)
    return {k: (saved.get(k), now.get(k)) for k in sorted(keys) if saved.get(k) != now.get(k)}


class RunDir:
    """The ``--out`` folder of a run.

    :meth:`prepare` checks it before any work: a file is an error; a folder
    holding a run (any of :data:`RUN_FILES`) needs ``resume`` (continue from
    its ``last.pt``) or ``overwrite`` (which empties it first, so that no
    stale file of the old run stays behind). A folder without a run's files
    (new, empty, or holding only other files such as a log) is used as it is:
    nothing in it is deleted, so a mistyped path never loses unrelated files.
    Only the main process writes; every write is atomic.

    Args:
        path: the folder, or None for a run that writes nothing.
        resume, overwrite: as above (not both).
        is_main: False on every process but rank 0.
        resume_file: the file an interrupted run leaves to continue from
            (``last.pt``; ``runs.json`` for the finished runs of ``classify --runs``).
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        is_main: bool = True,
        resume_file: str = "last.pt",
    ):
        self.path = None if path is None else Path(path)
        self.resume, self.overwrite, self.is_main = resume, overwrite, is_main
        self.resume_file = resume_file
        self._prepared = False

    def __bool__(self) -> bool:
        return self.path is not None

    def check(self) -> None:
        """The checks of :meth:`prepare`, reading only (every process may run them)."""
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out and --overwrite starts it again; not both")
        if self.path is None:
            if self.resume:
                raise ValueError("--resume needs --out, the folder of the interrupted run")
            if self.overwrite:
                raise ValueError("--overwrite applies with --out")
            return
        p = self.path
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {p} is a file; give a folder (it will hold the run's files)")
        if self.resume:
            if not (p / self.resume_file).is_file():
                raise FileNotFoundError(
                    f"nothing to resume: {p / self.resume_file} does not exist (drop --resume to start a new run)"
                )
        elif self.is_run_folder() and not self.overwrite:
            raise ValueError(
                f"--out {p} already holds a run; add --resume to continue it, --overwrite to "
                "replace it, or choose another folder"
            )

    def is_run_folder(self) -> bool:
        """True when the folder holds a run's files (any of :data:`RUN_FILES`)."""
        return self.path is not None and self.path.is_dir() and any((self.path / n).exists() for n in RUN_FILES)

    def prepare(self, ctx: Context | None = None) -> None:
        """:meth:`check`, then (``overwrite``, main process) empty the folder; every process waits for it."""
        ctx = ctx or Context()
        self.check()
        ctx.barrier()
        if self.overwrite and self.is_main and self.is_run_folder():
            for child in self.path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        ctx.barrier()
        self._prepared = True

    def file(self, name: str) -> Path:
        """The path of ``name`` in the folder."""
        if self.path is None:
            raise ValueError("this run has no --out folder")
        return self.path / name

    def _ready(self) -> bool:
        if self.path is None or not self.is_main:
            return False
        if not self._prepared:
            raise RuntimeError("RunDir.prepare() must be called before writing")
        self.path.mkdir(parents=True, exist_ok=True)
        return True

    def save_torch(self, name: str, obj) -> None:
        """Atomic ``torch.save`` of ``obj`` as ``name`` (main process only)."""
        if self._ready():
            save_torch(obj, self.file(name))

    def save_json(self, name: str, obj) -> None:
        """Atomic strict JSON of ``obj`` as ``name`` (main process only)."""
        if self._ready():
            write_json(obj, self.file(name))

    def write(self, name: str, write: Callable[[Path], Any]) -> None:
        """Atomic ``write(tmp_path)`` as ``name`` (main process only), e.g. a figure's ``savefig``."""
        if self._ready():
            atomic_write(self.file(name), write)

    def load(self, name: str):
        """``torch.load(name, weights_only=True)`` on the CPU."""
        return torch.load(self.file(name), map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ schedule
def lr_at(cfg: TrainConfig, step: int, total_steps: int, epoch: int = 0) -> float:
    """Learning rate of 0-based optimizer ``step`` of ``total_steps`` (in 0-based ``epoch``).

    Warm-up: ``lr * (step + 1) / (warmup_steps + 1)`` for ``step < warmup_steps``
    (nanoGPT's). Then, with ``p = (step - warmup) / (total - warmup)`` in [0, 1]:
    ``constant`` lr; ``cosine`` ``min_lr + (lr - min_lr) * (1 + cos(pi p)) / 2``;
    ``linear`` ``lr + (min_lr - lr) p``; ``halve`` ``lr * 0.5 ** max(0, epoch - 1)``
    (Time-Series-Library's "type1": lr, lr, lr/2, lr/4, ...).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "halve":
        return cfg.lr * 0.5 ** max(0, epoch - 1)
    span = max(1, total_steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "cosine":
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    return cfg.lr + (cfg.min_lr - cfg.lr) * p


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters, with ``cfg``'s rate, betas and weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # fused: one kernel per parameter group and step instead of ~25 small ones (small models: mostly overhead)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay, fused=fused or None)


# ------------------------------------------------------------------ the loop
class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; the run stops (a ``ValueError``: the CLI exits 1)."""


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one record per evaluation (``step``, ``epoch``, ``lr``,
            ``train_loss``, ``seconds`` and the evaluation's metrics).
        best: the evaluation with the best monitored value (``{}`` without evaluation).
        best_step, best_epoch: when it was reached (1-based epoch; 0 without evaluation).
        steps, epochs: optimizer steps and (started) epochs run in total.
        stopped_early: early stopping ended the run.
        seconds_per_epoch: mean training seconds per epoch (None when none ran here).
    """

    history: list[dict]
    best: dict
    best_step: int
    best_epoch: int
    steps: int
    epochs: int
    stopped_early: bool
    seconds_per_epoch: float | None
    threads: int


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": [int(v) for v in random.getstate()[1]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _key(metrics: dict, monitor: tuple[str, ...], mode: tuple[str, ...]) -> list[float]:
    """The monitored values, signed so that larger is better (compared in order: ties go to the next)."""
    return [float(metrics[m]) if d == "max" else -float(metrics[m]) for m, d in zip(monitor, mode)]


def _better(key: list[float], best: list[float] | None) -> bool:
    if not all(math.isfinite(v) for v in key[:1]):
        return False
    if best is None:
        return True
    return key > best


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, mininterval=0.5, file=sys.stderr
    )


def fit(
    model: nn.Module,
    cfg: TrainConfig,
    ctx: Context | None = None,
    *,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    train_size: int | None = None,
    get_batch: Callable[[Tensor], Any] | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    monitor: str | tuple[str, ...] = "loss",
    mode: str | tuple[str, ...] = "min",
    run: RunDir | None = None,
    meta: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    drop_last: bool = False,
    replacement: bool = False,
    batches_per_epoch: int | None = None,
    resume_ignore: tuple[str, ...] = (),
    progress: bool = True,
    desc: str = "train",
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``model`` with ``cfg``; keep the best weights by ``evaluate()[monitor]``.

    Args:
        model: on ``ctx.device`` already; wrapped in ``DistributedDataParallel``
            for training when ``ctx.world_size > 1`` (``loss_fn`` gets the wrapper).
        cfg: the :class:`TrainConfig` (or a subclass); checked here.
        ctx: from :func:`distributed` (default: one process on ``cfg.device``).
        loss_fn: ``loss_fn(model, batch) -> scalar`` mean loss over the batch's samples.
        train_size: number of training samples; ``get_batch(indices)`` builds a
            batch from this process's share of a global batch (a LongTensor of
            sample indices). ``None``: one full-batch step per epoch,
            ``loss_fn(model, None)``.
        evaluate: ``evaluate(model) -> {name: float}``, called in eval mode under
            ``torch.no_grad()`` and autocast on every process (it must return the
            same numbers on all; see :func:`shard` and :func:`all_reduce_sum`);
            after every epoch (``epochs``) or every ``eval_every`` steps (``steps``).
        monitor, mode: the metric of ``evaluate`` that picks the best weights
            and drives early stopping; ``"min"`` or ``"max"``. A tuple of
            names (and of modes) compares in order, ties going to the next
            (``("val_acc", "val_loss"), ("max", "min")``). Without ``evaluate``
            the last weights are kept.
        run: the :class:`RunDir` (prepared). It gets ``best.pt`` (``{"model":
            state_dict, **meta, "step", "epoch", "metrics"}``) and ``last.pt``
            (everything needed to resume) after each evaluation. With
            ``run.resume`` the loop continues from ``last.pt`` and ends exactly
            as the uninterrupted run would.
        meta: extra entries for both checkpoints (config, scaler, sizes: plain
            tensors, numbers, strings, lists and dicts, so that
            ``weights_only=True`` loads them).
        optimizer: default :func:`build_optimizer`; the schedule sets each
            group's ``lr`` to ``lr_at(...) * group.get("lr_scale", 1)``.
        drop_last, replacement, batches_per_epoch: see :class:`GlobalBatchSampler`.
        resume_ignore: config fields that may differ on ``--resume``
            (``epochs``, ``steps``, ``patience``, ``device``, ``threads`` always may).
        progress: a progress bar on the main process (results never depend on it).
        desc: the progress bar's label.
        log: called with one line per evaluation on the main process (default:
            print to stderr when ``progress``).

    Returns:
        :class:`FitResult`; ``model`` holds the best weights (or the last ones
        without ``evaluate``).

    Raises:
        NonFiniteLossError: the loss (mean over the global batch) is NaN or infinite.
        ValueError: ``resume`` with different settings than the saved run.
    """
    cfg.check()
    ctx = ctx or Context(device=resolve_device(cfg.device))
    monitor = (monitor,) if isinstance(monitor, str) else tuple(monitor)
    mode = (mode,) * len(monitor) if isinstance(mode, str) else tuple(mode)
    if len(mode) != len(monitor) or any(m not in ("min", "max") for m in mode):
        raise ValueError(f"mode must be 'min' or 'max' (one per monitored metric), got {mode!r}")
    if cfg.threads is not None:  # None: the caller's setting (the commands resolve it with default_threads)
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()
    if log is None:

        def log(line: str) -> None:
            if progress:
                print(line, file=sys.stderr, flush=True)

    say = log if ctx.is_main else (lambda line: None)
    run = run if run is not None else RunDir(None)
    meta = dict(meta or {})

    if train_size is None:
        sampler = None
        steps_per_epoch = 1
        if ctx.distributed:
            raise ValueError("full-batch training (one graph) runs on one process; start it without torchrun")
    else:
        if get_batch is None:
            raise ValueError("fit: train_size needs get_batch(indices)")
        sampler = GlobalBatchSampler(
            train_size,
            cfg.batch_size,
            seed=cfg.seed,
            drop_last=drop_last,
            replacement=replacement,
            rank=ctx.rank,
            world_size=ctx.world_size,
            batches_per_epoch=batches_per_epoch,
        )
        steps_per_epoch = len(sampler)
    total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    eval_every = (cfg.eval_every or total_steps) if cfg.steps is not None else steps_per_epoch

    optimizer = optimizer or build_optimizer(model, cfg)
    scaler = grad_scaler(ctx.device, cfg.precision)
    net = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    history: list[dict] = []
    best: dict = {}
    best_value: list[float] | None = None
    best_step = best_epoch = bad = step = 0
    stopped = False
    best_state = None
    saved_cfg = cfg.to_dict()
    if run.resume:
        state = run.load("last.pt")
        if not {"step", "config", "best_value", "rng"} <= set(state):
            raise ValueError(
                f"{run.file('last.pt')} was not written by this version's training engine; start the "
                "run again with --overwrite"
            )
        free = {"epochs", "steps", "patience", "device", "threads", *resume_ignore}
        diff = settings_diff(state["config"], saved_cfg, free)
        if diff:
            raise ValueError(f"--resume with different settings than the interrupted run (saved, now): {diff}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best = list(state["history"]), dict(state["best"])
        best_value = None if state["best_value"] is None else [float(v) for v in state["best_value"]]
        best_step, best_epoch, bad = int(state["best_step"]), int(state["best_epoch"]), int(state["bad"])
        step, stopped = int(state["step"]), bool(state["stopped"])
        _set_rng_state(state["rng"])
        if best_value is not None and (run.file("best.pt")).is_file():
            best_state = run.load("best.pt")["model"]

    def lr_of(s: int) -> float:
        return lr_at(cfg, s, total_steps, s // steps_per_epoch)

    def evaluation() -> dict:
        if evaluate is None:
            return {}
        model.eval()
        with torch.no_grad(), autocast(ctx.device, cfg.precision):
            metrics = evaluate(model)
        model.train()
        return {
            k: (float(v) if isinstance(v, (int, float, Tensor)) and not isinstance(v, bool) else v)
            for k, v in metrics.items()
        }

    def stream(first: int):
        """This process's ``(indices, weight)`` for every step from ``first`` on."""
        s = first
        while True:
            if sampler is None:
                yield None, 1.0
                s += 1
                continue
            e, within = divmod(s, steps_per_epoch)
            yield from sampler.epoch(e, within)
            s = (e + 1) * steps_per_epoch

    epoch_seconds: list[float] = []
    batches = stream(step)
    model.train()
    while step < total_steps and not stopped:
        seg_end = min(total_steps, (step // eval_every + 1) * eval_every)
        epoch = step // steps_per_epoch
        label = (
            f"{desc} epoch {epoch + 1}/{cfg.epochs}"
            if cfg.epochs is not None
            else f"{desc} steps {step + 1}-{seg_end}/{total_steps}"
        )
        bar = _progress(seg_end - step, label, progress and ctx.is_main)
        started = time.perf_counter()
        running, count = 0.0, 0
        while step < seg_end:
            indices, weight = next(batches)
            lr = lr_of(step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            batch = get_batch(indices) if indices is not None else None
            with autocast(ctx.device, cfg.precision):
                loss = loss_fn(net, batch)
            if loss.dim() != 0:
                bar.close()
                raise ValueError(f"loss_fn must return a scalar (the mean loss), got shape {tuple(loss.shape)}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss * weight).backward()
            value = float(all_reduce_sum((loss.detach().float() * weight / ctx.world_size).reshape(1), ctx))
            if not math.isfinite(value):
                bar.close()
                raise NonFiniteLossError(
                    f"the training loss is {value} at step {step + 1} (epoch {step // steps_per_epoch + 1}); the "
                    f"run stops. Lower --lr (now {cfg.lr:g}), add --grad-clip, or use --precision fp32"
                )
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            running, count = running + value, count + 1
            bar.update()
            if count % 10 == 0 or step == seg_end:
                bar.set_postfix(loss=f"{running / count:.4f}", lr=f"{lr:.2e}")
        bar.close()
        seconds = time.perf_counter() - started
        if cfg.epochs is not None:
            epoch_seconds.append(seconds)
        record = {
            "step": step,
            "epoch": (step - 1) // steps_per_epoch + 1,
            "lr": lr,
            "train_loss": running / count,
            "seconds": seconds,
        }
        metrics = evaluation()
        record.update(metrics)
        history.append(record)
        improved = False
        missing = [m for m in monitor if m not in metrics]
        if evaluate is not None and missing:
            raise ValueError(f"evaluate() returned {sorted(metrics)}, without the monitored {missing}")
        value = _key(metrics, monitor, mode) if evaluate is not None else [float(step)]
        if _better(value, best_value):
            improved = True
            best_value, best, best_step, best_epoch, bad = value, metrics, step, record["epoch"], 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            run.save_torch(
                "best.pt",
                {**meta, "model": best_state, "step": step, "epoch": record["epoch"], "metrics": _strict(metrics)},
            )
        else:
            bad += 1
            stopped = cfg.patience is not None and bad >= cfg.patience
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        where = f"epoch {record['epoch']}" if cfg.epochs is not None else f"step {step}"
        say(
            f"{desc} {where}: train loss {record['train_loss']:.4f}  {shown}  ({seconds:.1f} s)"
            f"{'  best' if improved else ''}{'  early stop' if stopped else ''}"
        )
        run.save_torch(
            "last.pt",
            {
                **meta,
                "config": saved_cfg,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "step": step,
                "stopped": stopped,
                "history": _strict(history),
                "best": _strict(best),
                "best_value": best_value,
                "best_step": best_step,
                "best_epoch": best_epoch,
                "bad": bad,
                "rng": _rng_state(),
            },
        )
    ctx.barrier()  # every process has finished writing before anyone reads the run folder
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(
        history=history,
        best=best,
        best_step=best_step,
        best_epoch=best_epoch,
        steps=step,
        epochs=-(-step // steps_per_epoch),
        stopped_early=stopped,
        seconds_per_epoch=(sum(epoch_seconds) / len(epoch_seconds)) if epoch_seconds else None,
        threads=threads,
    )
