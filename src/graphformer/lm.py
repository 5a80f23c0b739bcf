"""graphformer lm: train a character-level GPT (a Transformer on the causal graph of the characters).

The protocol is nanoGPT's ``shakespeare_char``: the vocabulary is the sorted
set of characters of the file, the first 90 % of the text trains and the last
10 % validates; a batch is ``batch_size`` random windows of ``block_size + 1``
characters (inputs and next-character targets). AdamW (betas 0.9 / 0.99,
weight decay 0.1 on matrices only), a linear warm-up then a cosine decay of the
learning rate to ``min_lr`` at ``max_iters``, gradient clipping at 1.0. The
defaults are nanoGPT's CPU recipe (block 64, batch 12, 4 layers, 4 heads,
width 128, no dropout, 2,000 iterations, lr 1e-3 -> 1e-4).

Train and validation loss are estimated every ``eval_interval`` iterations
(and at the end) on ``eval_iters`` batches of each split, drawn from their own
random stream, so the training path does not depend on how often it is
evaluated.

Files written to ``--out`` (each one atomically: a temporary file, then
``os.replace``, so an interrupted run leaves the last complete version):

* ``ckpt.pt``: model, config, vocabulary, optimizer and random state at the
  last evaluation (``--resume`` continues from it; ``graphformer sample`` reads it),
  loadable with ``torch.load(path, weights_only=True)``;
* ``metrics.json``: the final losses, the loss history and timings;
* ``loss.png``: train and validation loss against iteration (needs matplotlib).

``graphformer sample --out DIR --prompt "ROMEO:"`` prints text from a trained run.

Legend: B batch, T block size (tokens), V vocabulary.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .models.gpt import GPT, GPTConfig

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
    "train",
]


@dataclass
class LMConfig:
    """Everything that defines a run of ``graphformer lm`` (defaults: nanoGPT's CPU recipe)."""

    data: str
    block_size: int = 64
    batch_size: int = 12
    layers: int = 4
    heads: int = 4
    d_model: int = 128
    dropout: float = 0.0
    bias: bool = False
    attention: str = "full"
    window: int | None = None
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4  # about lr / 10, per Chinchilla (nanoGPT's comment)
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99  # a little larger than 0.95: few tokens per iteration
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None

    def check(self) -> None:
        """Raise ``ValueError`` naming the flag of the first invalid setting."""
        for name in ("block_size", "batch_size", "layers", "heads", "d_model", "eval_interval", "eval_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < --min-lr <= --lr, got --min-lr {self.min_lr} and --lr {self.lr}")
        if self.d_model % self.heads:
            raise ValueError(f"--d-model {self.d_model} is not divisible by --heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.attention == "window" and self.window is None:
            raise ValueError("--attention window needs --window W (edges from the W previous characters)")

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The :class:`GPTConfig` of this run."""
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.layers,
                         n_head=self.heads, n_embd=self.d_model, dropout=self.dropout, bias=self.bias,
                         attention=self.attention, window=self.window if self.attention == "window" else None)


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
            raise FileNotFoundError(f"--data {path}: no such file (give a plain text file, e.g. "
                                    "../shared/data/text/tinyshakespeare/input.txt)")
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
                raise ValueError(f"the {name} split has {split.numel()} characters, fewer than --block-size "
                                 f"{block_size} + 1; use a longer text or a smaller --block-size")

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator,
              device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``batch_size`` random windows: inputs ``[B, T]`` and next-character targets ``[B, T]``."""
        data = self.train if split == "train" else self.val
        start = torch.randint(data.numel() - block_size, (batch_size,), generator=generator)
        chunk = data[start.unsqueeze(1) + torch.arange(block_size + 1)]  # [B, T+1]
        return chunk[:, :-1].to(device), chunk[:, 1:].to(device)


def encode(text: str, chars: str) -> Tensor:
    """Character ids ``[len(text)]`` in the vocabulary ``chars``; ``ValueError`` for unknown characters."""
    stoi = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(text) - stoi.keys())
    if unknown:
        raise ValueError(f"characters {''.join(unknown)!r} are not in the model's vocabulary; "
                         f"use only these: {chars!r}")
    return torch.tensor([stoi[c] for c in text], dtype=torch.long)


def decode(ids, chars: str) -> str:
    """The text of character ids."""
    return "".join(chars[i] for i in ids)


# -------------------------------------------------------------- training
def lr_at(cfg: LMConfig, it: int) -> float:
    """nanoGPT's schedule: linear warm-up, cosine decay from ``lr`` to ``min_lr`` at ``max_iters``."""
    if it < cfg.warmup_iters:
        return cfg.lr * (it + 1) / (cfg.warmup_iters + 1)
    if it >= cfg.max_iters:
        return cfg.min_lr
    ratio = (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


@torch.no_grad()
def estimate_loss(model: GPT, data: CharData, cfg: LMConfig, device) -> dict[str, float]:
    """Mean loss over ``eval_iters`` batches of each split, the same batches at every call."""
    was_training = model.training
    model.eval()
    out = {}
    for k, split in enumerate(("train", "val")):
        gen = torch.Generator().manual_seed(cfg.seed * 2 + 1 + k)  # a stream of its own per split
        losses = [model(*data.batch(split, cfg.batch_size, cfg.block_size, gen, device))[1].item()
                  for _ in range(cfg.eval_iters)]
        out[split] = sum(losses) / len(losses)
    model.train(was_training)
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def train(cfg: LMConfig, out: str | os.PathLike | None = None, *, resume: bool = False, progress: bool = True,
          plot: bool = True, stop_after: int | None = None) -> dict:
    """Train a :class:`GPT` on ``cfg.data``; return the metrics (also written to ``out/metrics.json``).

    ``resume`` continues the run saved in ``out/ckpt.pt`` (same result as an
    uninterrupted run). ``stop_after`` stops after that many iterations, as an
    interruption would (for tests).
    """
    cfg.check()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg.device)
    data = CharData.from_file(cfg.data)
    data.check(cfg.block_size)
    out = Path(out) if out is not None else None
    if resume and (out is None or not (out / "ckpt.pt").is_file()):
        raise FileNotFoundError(f"--resume: no checkpoint at {out}/ckpt.pt; run without --resume first")

    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model_config(len(data.chars))).to(device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type)
    gen = torch.Generator().manual_seed(cfg.seed)  # training batches
    history, start, elapsed = [], 0, 0.0
    if resume:
        ckpt = torch.load(out / "ckpt.pt", weights_only=True, map_location=device)
        saved = {k: v for k, v in ckpt["config"].items() if k not in ("device", "threads")}
        mine = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("device", "threads")}
        if saved != mine:
            changed = sorted(k for k in mine if saved.get(k) != mine[k])
            raise ValueError(f"--resume: the run in {out} was made with other settings ({', '.join(changed)}); "
                             "repeat its flags or use a new --out")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        history, start, elapsed = ckpt["history"], ckpt["iter"], ckpt["elapsed"]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    bar = _progress(cfg.max_iters, start, progress)
    model.train()
    tic = time.perf_counter()
    train_time = 0.0
    it = start
    while True:
        if it % cfg.eval_interval == 0 or it == cfg.max_iters:
            if not history or history[-1]["iter"] != it:
                losses = estimate_loss(model, data, cfg, device)
                history.append({"iter": it, "train_loss": losses["train"], "val_loss": losses["val"]})
                if bar is not None:
                    bar.set_postfix(train=f"{losses['train']:.4f}", val=f"{losses['val']:.4f}")
                    bar.write(f"iter {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
            if out is not None:
                _save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                       "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "iter": it,
                       "history": history, "elapsed": elapsed + time.perf_counter() - tic,
                       "config": dataclasses.asdict(cfg), "model_config": dataclasses.asdict(model.config),
                       "chars": data.chars}, out / "ckpt.pt")
        if it >= cfg.max_iters or (stop_after is not None and it - start >= stop_after):
            break
        lr = lr_at(cfg, it)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_tic = time.perf_counter()
        x, y = data.batch("train", cfg.batch_size, cfg.block_size, gen, device)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        train_time += time.perf_counter() - step_tic
        it += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wall = elapsed + time.perf_counter() - tic
    steps = it - start
    last = history[-1]
    metrics = {
        "val_loss": last["val_loss"], "train_loss": last["train_loss"], "iter": last["iter"],
        "best_val_loss": min(h["val_loss"] for h in history), "seed": cfg.seed,
        "params": model.num_params(), "vocab_size": len(data.chars), "wall_time_s": round(wall, 2),
        "train_tokens_per_s": round(steps * cfg.batch_size * cfg.block_size / train_time, 1) if steps else None,
        "device": str(device), "config": dataclasses.asdict(cfg), "history": history,
    }
    if out is not None:
        metrics["plot"] = "loss.png" if plot and _plot(history, out / "loss.png") else None
        _save_json(metrics, out / "metrics.json")
    return metrics


def load_checkpoint(path: str | os.PathLike, device="cpu") -> tuple[GPT, str]:
    """The trained model (in eval mode) and its vocabulary from a ``ckpt.pt`` of ``graphformer lm``."""
    path = Path(path)
    if path.is_dir():
        path = path / "ckpt.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with graphformer lm --out DIR")
    ckpt = torch.load(path, weights_only=True, map_location=device)
    model = GPT(GPTConfig(**ckpt["model_config"])).to(device)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt["chars"]


def sample(model: GPT, chars: str, prompt: str, tokens: int, temperature: float = 0.8, top_k: int | None = 200,
           seed: int = 1337, device="cpu") -> str:
    """``prompt`` followed by ``tokens`` generated characters (cached decoding)."""
    if not prompt:
        raise ValueError("--prompt must hold at least one character, e.g. --prompt 'ROMEO:' or --prompt $'\\n'")
    idx = encode(prompt, chars).unsqueeze(0).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = model.generate(idx, tokens, temperature=temperature, top_k=top_k, generator=gen)
    return decode(ids[0].tolist(), chars)


# ----------------------------------------------------------------- files
def _atomic_write(path: Path, write) -> None:
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


def _plot(history: list[dict], path: Path) -> bool:
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
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return True


def _progress(total: int, start: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="lm", unit="it", dynamic_ncols=True, file=sys.stderr)


# ---------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer lm`` (defaults: nanoGPT's CPU recipe)."""
    d = LMConfig(data="")
    parser.add_argument("--data", required=True, help="a plain text file (e.g. tiny Shakespeare's input.txt)")
    parser.add_argument("--out", default=None, help="folder for ckpt.pt, metrics.json, loss.png")
    for flag, kind, help_text in (
            ("block-size", int, "context length in characters"),
            ("batch-size", int, "windows per iteration"),
            ("layers", int, "GPT blocks"),
            ("heads", int, "attention heads"),
            ("d-model", int, "width"),
            ("dropout", float, "dropout"),
            ("max-iters", int, "training iterations"),
            ("lr", float, "peak AdamW learning rate"),
            ("min-lr", float, "learning rate at the end of the cosine decay"),
            ("warmup-iters", int, "linear warm-up iterations"),
            ("weight-decay", float, "AdamW weight decay on matrices"),
            ("grad-clip", float, "clip the gradient norm (0 = off)"),
            ("eval-interval", int, "estimate the losses every N iterations"),
            ("eval-iters", int, "batches per loss estimate"),
            ("seed", int, "seeds the initialisation and the batches")):
        name = flag.replace("-", "_")
        parser.add_argument(f"--{flag}", type=kind, default=getattr(d, name),
                            help=f"{help_text} (default: %(default)s)")
    parser.add_argument("--bias", action="store_true", help="biases in linear maps and LayerNorms")
    parser.add_argument("--attention", choices=("full", "window"), default=d.attention,
                        help="full causal graph, or a causal sliding window of --window W (default: %(default)s)")
    parser.add_argument("--window", type=int, default=None, help="W for --attention window")
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--no-plot", action="store_true", help="skip loss.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or loss lines")


def run(args: argparse.Namespace) -> dict:
    """Run ``graphformer lm``; the metrics (without the history) are the last stdout line."""
    fields = LMConfig.__dataclass_fields__
    cfg = LMConfig(**{k: v for k, v in vars(args).items() if k in fields})
    metrics = train(cfg, args.out, resume=args.resume, progress=not args.quiet, plot=not args.no_plot)
    return {k: v for k, v in metrics.items() if k != "history"}


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer sample``."""
    parser.add_argument("--out", required=True, help="the --out folder of a graphformer lm run")
    parser.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    parser.add_argument("--tokens", type=int, default=500, help="characters to generate (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: %(default)s)")
    parser.add_argument("--top-k", type=int, default=200, help="sample among the k likeliest (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1337, help="(default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: %(default)s)")


def run_sample(args: argparse.Namespace) -> dict:
    """Run ``graphformer sample``: print the text, return its record."""
    if args.tokens < 0:
        raise ValueError(f"--tokens must be >= 0, got {args.tokens}")
    if args.temperature < 0:
        raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    device = _device(args.device)
    model, chars = load_checkpoint(args.out, device)
    tic = time.perf_counter()
    text = sample(model, chars, args.prompt, args.tokens, args.temperature, args.top_k, args.seed, device)
    seconds = time.perf_counter() - tic
    print(text)
    return {"prompt": args.prompt, "tokens": args.tokens, "seed": args.seed, "seconds": round(seconds, 3),
            "tokens_per_s": round(args.tokens / seconds, 1) if seconds > 0 else None, "text": text}
