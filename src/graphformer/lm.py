"""graphformer lm: train a character-level GPT (a Transformer on the causal graph of the characters).

The protocol is nanoGPT's ``shakespeare_char``: the vocabulary is the sorted
set of characters of the file, the first 90 % of the text trains and the last
10 % validates; a batch is ``batch_size`` random windows of ``block_size + 1``
characters (inputs and next-character targets). AdamW (betas 0.9 / 0.99,
weight decay 0.1 on matrices only), a linear warm-up then a cosine decay of the
learning rate to ``min_lr`` at ``max_iters``, gradient clipping at 1.0. The
defaults are nanoGPT's CPU recipe (block 64, batch 12, 4 layers, 4 heads,
width 128, no dropout, 2,000 iterations, lr 1e-3 -> 1e-4).

Training runs on the shared engine (:mod:`graphformer.train`): ``--device``,
``--precision``, ``torchrun --nproc-per-node P -m graphformer lm ...`` (the
batch is global), exact ``--resume``, a progress bar, strict JSON. Train and
validation loss are estimated every ``--eval-interval`` iterations and at the
end on ``--eval-iters`` batches of each split (nanoGPT's estimate), drawn from
their own random stream, so the training path does not depend on how often it
is evaluated. At the end the loss over the whole validation split
(``val_loss_full``, no sampling noise) is reported as well.

Files written to ``--out`` (each one atomically: a temporary file, then
``os.replace``, so an interrupted run leaves the last complete version):

* ``best.pt``: the weights with the lowest validation loss, with the model
  config and the vocabulary (``graphformer sample`` reads it), loadable with
  ``torch.load(path, weights_only=True)``;
* ``last.pt``: everything ``--resume`` needs (model, optimizer, random state);
* ``metrics.json``: the final losses, the loss history and timings;
* ``loss.png``: train and validation loss against iteration (needs matplotlib).

``graphformer sample --out DIR --prompt "ROMEO:"`` prints text from a trained run.

Legend: B batch, T block size (tokens), V vocabulary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from . import train as engine
from .models.gpt import GPT, GPTConfig
from .train import TrainConfig, option

__all__ = [
    "CharData",
    "LMConfig",
    "add_arguments",
    "add_sample_arguments",
    "estimate_loss",
    "load_checkpoint",
    "lr_at",
    "run",
    "run_sample",
    "sample",
    "split_loss",
    "train",
]


_FIXED = dict(epochs=None, optimizer="adamw", schedule="cosine", patience=None)  # nanoGPT's choices
_ENGINE_NAMES = {"steps": "max_iters", "eval_every": "eval_interval", "warmup_steps": "warmup_iters"}


def _window_given(cfg) -> bool:
    return cfg.attention == "window"


@dataclass(kw_only=True)
class LMConfig(TrainConfig):
    """Everything that defines a run of ``graphformer lm`` (defaults: nanoGPT's CPU recipe).

    nanoGPT's names ``max_iters``, ``warmup_iters``, ``eval_interval`` set the
    engine's ``steps``, ``warmup_steps``, ``eval_every``; the optimizer is AdamW
    with weight decay on matrices only and the schedule a cosine to ``min_lr``.
    """

    data: str = option("", "a plain text file (e.g. tiny Shakespeare's input.txt)", metavar="FILE")
    block_size: int = option(64, "context length in characters")
    batch_size: int = option(12, "windows per iteration (global: the sum over processes under torchrun)")
    layers: int = option(4, "GPT blocks")
    heads: int = option(4, "attention heads")
    d_model: int = option(128, "width")
    dropout: float = option(0.0, "dropout")
    bias: bool = option(False, "biases in linear maps and LayerNorms")
    attention: str = option(
        "full", "full causal graph, or a causal sliding window of --window W", choices=("full", "window")
    )
    window: int | None = option(
        None, "W: edges from the W previous characters", applies=(_window_given, "--attention window")
    )
    max_iters: int = option(2000, "training iterations")
    lr: float = option(1e-3, "peak AdamW learning rate")
    min_lr: float = option(1e-4, "learning rate at the end of the cosine decay (about lr / 10)")
    warmup_iters: int = option(100, "linear warm-up iterations")
    weight_decay: float = option(0.1, "AdamW weight decay on matrices (not on biases and norms)")
    beta2: float = option(0.99, "AdamW beta2 (a little larger than 0.95: few tokens per iteration)")
    grad_clip: float | None = option(1.0, "clip the gradient norm (none = off)")
    eval_interval: int = option(250, "estimate the losses every N iterations")
    eval_iters: int = option(20, "batches per loss estimate")
    seed: int = option(1337, "seeds the initialisation and the batches")
    # the engine's names for the same settings: set from nanoGPT's above, not flags
    epochs: int | None = option(None, flag=False)
    steps: int | None = option(None, flag=False)
    eval_every: int | None = option(None, flag=False)
    warmup_steps: int = option(0, flag=False)
    optimizer: str = option("adamw", flag=False)
    schedule: str = option("cosine", flag=False)
    patience: int | None = option(None, flag=False)

    def __post_init__(self):
        self.steps, self.eval_every, self.warmup_steps = self.max_iters, self.eval_interval, self.warmup_iters
        for name, value in _FIXED.items():
            setattr(self, name, value)

    def check(self) -> None:
        """Raise ``ValueError`` naming the flag of the first invalid setting."""
        if not self.data:
            raise ValueError("--data FILE is required (a plain text file)")
        for name in (
            "block_size",
            "batch_size",
            "layers",
            "heads",
            "d_model",
            "max_iters",
            "eval_interval",
            "eval_iters",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value!r}")
        if self.warmup_iters < 0:
            raise ValueError(f"--warmup-iters must be >= 0, got {self.warmup_iters}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < --min-lr <= --lr, got --min-lr {self.min_lr} and --lr {self.lr}")
        if self.d_model % self.heads:
            raise ValueError(f"--d-model {self.d_model} is not divisible by --heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if self.attention == "window" and (self.window is None or self.window < 0):
            raise ValueError("--attention window needs --window W >= 0 (edges from the W previous characters)")
        super().check()

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The :class:`GPTConfig` of this run."""
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.layers,
            n_head=self.heads,
            n_embd=self.d_model,
            dropout=self.dropout,
            bias=self.bias,
            attention=self.attention,
            window=self.window if self.attention == "window" else None,
        )


# ------------------------------------------------------------------ data
@dataclass
class CharData:
    """A text as character ids: the vocabulary and the 90 / 10 train / validation split.

    Attributes:
        chars: the vocabulary, the sorted distinct characters of the text.
        train, val: ``[n]`` int64 ids of the first 90 % and the last 10 %.
    """

    chars: str
    train: Tensor
    val: Tensor

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CharData:
        """Read a UTF-8 text file and split it (nanoGPT's ``prepare.py``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"--data {path}: no such file (give a plain text file, e.g. "
                "../shared/data/text/tinyshakespeare/input.txt)"
            )
        text = path.read_text(encoding="utf-8")
        return cls.from_text(text)

    @classmethod
    def from_text(cls, text: str) -> CharData:
        """Split ``text``: vocabulary, first 90 % to train, last 10 % to validate."""
        chars = "".join(sorted(set(text)))
        ids = encode(text, chars)
        n = int(0.9 * len(ids))
        return cls(chars, ids[:n], ids[n:])

    def check(self, block_size: int) -> None:
        """Each split must hold at least one window of ``block_size + 1`` characters."""
        for name, split in (("training", self.train), ("validation", self.val)):
            if split.numel() <= block_size:
                raise ValueError(
                    f"the {name} split has {split.numel()} characters, fewer than --block-size "
                    f"{block_size} + 1; use a longer text or a smaller --block-size"
                )

    def windows(
        self, split: str, start: Tensor, block_size: int, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor]:
        """The windows starting at ``start`` ``[B]``: inputs ``[B, T]`` and next-character targets ``[B, T]``."""
        data = self.train if split == "train" else self.val
        chunk = data[start.unsqueeze(1) + torch.arange(block_size + 1)]  # [B, T+1]
        return chunk[:, :-1].to(device), chunk[:, 1:].to(device)

    def batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """``batch_size`` windows at random offsets (nanoGPT's ``get_batch``)."""
        data = self.train if split == "train" else self.val
        start = torch.randint(data.numel() - block_size, (batch_size,), generator=generator)
        return self.windows(split, start, block_size, device)


def encode(text: str, chars: str) -> Tensor:
    """Character ids ``[len(text)]`` in the vocabulary ``chars``; ``ValueError`` for unknown characters."""
    stoi = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(text) - stoi.keys())
    if unknown:
        raise ValueError(
            f"characters {''.join(unknown)!r} are not in the model's vocabulary; use only these: {chars!r}"
        )
    return torch.tensor([stoi[c] for c in text], dtype=torch.long)


def decode(ids, chars: str) -> str:
    """The text of character ids."""
    return "".join(chars[i] for i in ids)


# -------------------------------------------------------------- training
def lr_at(cfg: LMConfig, it: int) -> float:
    """nanoGPT's schedule: linear warm-up, cosine decay from ``lr`` to ``min_lr`` at ``max_iters``."""
    return engine.lr_at(cfg, it, cfg.max_iters)


@torch.no_grad()
def estimate_loss(model: GPT, data: CharData, cfg: LMConfig, device) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split, the same batches at every call."""
    was_training = model.training
    model.eval()
    out = {}
    for k, split in enumerate(("train", "val")):
        gen = torch.Generator().manual_seed(cfg.seed * 2 + 1 + k)  # a stream of its own per split
        losses = [
            model(*data.batch(split, cfg.batch_size, cfg.block_size, gen, device))[1].item()
            for _ in range(cfg.eval_iters)
        ]
        out[split] = sum(losses) / len(losses)
    model.train(was_training)
    return out


@torch.no_grad()
def split_loss(model, data: CharData, split: str, block_size: int, device="cpu", batch_size: int = 256) -> float:
    """Mean next-character loss over the whole split, in consecutive windows of ``block_size`` (no sampling).

    The windows start at ``0, T, 2T, ...``; each position is predicted from
    the earlier positions of its window, as in a random training window.
    ``model(x, y)`` must return ``(logits, mean loss)``.
    """
    ids = data.train if split == "train" else data.val
    starts = torch.arange(0, ids.numel() - block_size, block_size)
    was_training = model.training
    model.eval()
    total = 0.0
    for chunk in starts.split(batch_size):
        total += model(*data.windows(split, chunk, block_size, device))[1].item() * chunk.numel()
    model.train(was_training)
    return total / starts.numel()


def _steps_done(optimizer: torch.optim.Optimizer) -> int:
    return max((int(state["step"]) for state in optimizer.state.values() if "step" in state), default=0)


def train(
    cfg: LMConfig,
    out: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    plot: bool = True,
) -> dict:
    """Train a :class:`GPT` on ``cfg.data`` with the engine; return the metrics (also ``out/metrics.json``).

    ``resume`` continues the interrupted run in ``out`` (it ends as the
    uninterrupted run would); ``overwrite`` replaces a finished one.
    """
    cfg.check()
    with engine.distributed(cfg.device) as ctx:
        run = engine.RunDir(out, resume=resume, overwrite=overwrite, is_main=ctx.is_main)
        run.prepare(ctx)  # before any work
        data = CharData.from_file(cfg.data)
        data.check(cfg.block_size)
        engine.seed_everything(cfg.seed)
        model = GPT(cfg.model_config(len(data.chars))).to(ctx.device)
        optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), ctx.device.type)

        def get_batch(start: Tensor):
            return data.windows("train", start, cfg.block_size, ctx.device)

        def evaluate(m):
            losses = estimate_loss(m, data, cfg, ctx.device)
            metrics = {"val_loss": losses["val"], "eval_train_loss": losses["train"]}
            if _steps_done(optimizer) >= cfg.max_iters:  # the last evaluation: also the whole split
                metrics["val_loss_full"] = split_loss(m, data, "val", cfg.block_size, ctx.device)
            return metrics

        tic = time.perf_counter()
        result = engine.fit(
            model,
            cfg,
            ctx,
            loss_fn=lambda net, batch: net(*batch)[1],
            train_size=data.train.numel() - cfg.block_size,  # window offsets, drawn at random (nanoGPT)
            get_batch=get_batch,
            replacement=True,
            evaluate=evaluate,
            monitor="val_loss",
            run=run,
            optimizer=optimizer,
            meta={"model_config": dataclasses.asdict(model.config), "chars": data.chars},
            resume_ignore=("max_iters",),
            progress=progress,
            desc="lm",
        )
        wall = time.perf_counter() - tic
        history = [
            {
                "iter": h["step"],
                "train_loss": h["eval_train_loss"],
                "val_loss": h["val_loss"],
                "running_train_loss": h["train_loss"],
                "lr": h["lr"],
                "seconds": h["seconds"],
            }
            for h in result.history
        ]
        last = history[-1]
        train_seconds = sum(h["seconds"] for h in history)
        metrics = {
            "val_loss": last["val_loss"],
            "train_loss": last["train_loss"],
            "iter": last["iter"],
            "val_loss_full": result.history[-1].get("val_loss_full"),
            "best_val_loss": result.best.get("val_loss"),
            "best_iter": result.best_step,
            "seed": cfg.seed,
            "params": model.num_params(),
            "vocab_size": len(data.chars),
            "wall_time_s": round(wall, 2) if not resume else None,
            "train_tokens_per_s": round(cfg.max_iters * cfg.batch_size * cfg.block_size / train_seconds, 1)
            if train_seconds > 0 and not resume
            else None,
            "device": str(ctx.device),
            "processes": ctx.world_size,
            "threads": result.threads,
            "config": cfg.to_dict(),
            "history": history,
        }
        metrics = json.loads(engine.dumps(metrics))
        if run and ctx.is_main:
            metrics["plot"] = "loss.png" if plot and _plot(history, run) else None
            run.save_json("metrics.json", metrics)
    return metrics


def load_checkpoint(path: str | os.PathLike, device="cpu") -> tuple[GPT, str]:
    """The trained model (in eval mode) and its vocabulary from a run folder (its ``best.pt``) or a ``.pt`` file."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with graphformer lm --out DIR")
    ckpt = torch.load(path, weights_only=True, map_location=device)
    model = GPT(GPTConfig(**ckpt["model_config"])).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt["chars"]


def sample(
    model: GPT,
    chars: str,
    prompt: str,
    tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int = 1337,
    device="cpu",
) -> str:
    """``prompt`` followed by ``tokens`` generated characters (cached decoding)."""
    if not prompt:
        raise ValueError("--prompt must hold at least one character, e.g. --prompt 'ROMEO:' or --prompt $'\\n'")
    idx = encode(prompt, chars).unsqueeze(0).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = model.generate(idx, tokens, temperature=temperature, top_k=top_k, generator=gen)
    return decode(ids[0].tolist(), chars)


# ----------------------------------------------------------------- files
def _plot(history: list[dict], run: engine.RunDir) -> bool:
    """Train and validation loss against iteration; False without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        warnings.warn("matplotlib is not installed: no loss.png written", stacklevel=2)
        return False
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    iters = [h["iter"] for h in history]
    ax.plot(iters, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(iters, [h["val_loss"] for h in history], marker="o", label="validation")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    run.write("loss.png", lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return True


# ---------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer lm`` (defaults: nanoGPT's CPU recipe), from :class:`LMConfig`."""
    engine.add_config_arguments(parser, LMConfig, required=("data",))
    engine.add_run_arguments(parser, "best.pt, last.pt, metrics.json, loss.png", plot="loss.png")


def run(args: argparse.Namespace) -> dict:
    """Run ``graphformer lm``; the metrics (without the history) are the last stdout line."""
    cfg, given = engine.config_from_args(LMConfig, args)
    engine.check_applicable(cfg, given)
    metrics = train(
        cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, plot=not args.no_plot
    )
    return {k: v for k, v in metrics.items() if k != "history"}


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer sample``."""
    parser.add_argument("--out", required=True, help="the --out folder of a graphformer lm run")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--tokens", type=int, default=500, help="characters to generate (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=200, help="sample among the k likeliest (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1337, help="(default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the free cores)")


def run_sample(args: argparse.Namespace) -> dict:
    """Run ``graphformer sample``: print the text, return its record."""
    if args.tokens < 0:
        raise ValueError(f"--tokens must be >= 0, got {args.tokens}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads or engine.default_threads())
    device = engine.resolve_device(args.device)
    model, chars = load_checkpoint(args.out, device)
    tic = time.perf_counter()
    text = sample(model, chars, args.prompt, args.tokens, args.temperature, args.top_k, args.seed, device)
    seconds = time.perf_counter() - tic
    print(text)
    return {
        "prompt": args.prompt,
        "tokens": args.tokens,
        "seed": args.seed,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(args.tokens / seconds, 1) if seconds > 0 else None,
        "text": text,
    }
