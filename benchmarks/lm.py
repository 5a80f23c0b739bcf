"""Speed of graphformer's GPT against the same model written plainly with torch.nn.

Training step: forward, backward, clipping and an AdamW step of
``graphformer.models.GPT`` against a nanoGPT-style model built from
``nn.Linear``, ``nn.LayerNorm`` and ``F.scaled_dot_product_attention(is_causal=True)``
with the same configuration and the same weights (checked: equal logits). The
two are timed in one process in alternation (A B A B ...); the time ratio is
the median of the paired ratios. Tokens per second = batch x block / step time.
Each model is first stepped by the optimiser its own code builds (ours: fused
AdamW on CPU and CUDA; nanoGPT's ``configure_optimizers``: fused on CUDA only),
then both by the same fused AdamW, which compares the models alone.

Generation: ``--new-tokens`` characters from a one-character prompt, batch 1,
greedy, with the key/value cache (one new node per token) and without it
(the whole context recomputed every step, as nanoGPT's ``generate``), paired
in the same way; the two must produce the same tokens. The cache pays while
the context fits ``block_size``, so generation is timed with a block size of
``--gen-block-size`` (default 512 >= 1 + 256) as well as the training recipe's.

    python benchmarks/lm.py                    # nanoGPT's CPU recipe: B 12, T 64, 4 x 4 x 128
    python benchmarks/lm.py --threads 1 --reps 30
    python benchmarks/lm.py --device cuda --batch-size 64 --block-size 256 --layers 6 --heads 6 --d-model 384
    python benchmarks/lm.py --threads 1 --train-reference ../shared/data/text/tinyshakespeare/input.txt --seed 1337
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from graphformer.models import GPT, GPTConfig


class PlainBlock(nn.Module):
    """nanoGPT's Block: pre-norm causal self-attention (one qkv matrix, SDPA) and a GELU MLP, with its dropouts."""

    def __init__(self, d: int, heads: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.mlp_dropout = nn.Dropout(dropout)
        self.ln_1 = nn.LayerNorm(d, bias=bias)
        self.c_attn = nn.Linear(d, 3 * d, bias=bias)
        self.c_proj = nn.Linear(d, d, bias=bias)
        self.ln_2 = nn.LayerNorm(d, bias=bias)
        self.c_fc = nn.Linear(d, 4 * d, bias=bias)
        self.mlp_proj = nn.Linear(4 * d, d, bias=bias)

    def forward(self, x):
        B, T, C = x.shape  # noqa: N806
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.mlp_dropout(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class PlainGPT(nn.Module):
    """nanoGPT's GPT in plain torch.nn, tied head."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([PlainBlock(cfg.n_embd, cfg.n_head, cfg.bias, cfg.dropout) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx, targets=None):
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device)))
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.cfg.block_size :])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return idx

    @torch.no_grad()
    def copy_from(self, gpt: GPT) -> PlainGPT:
        """Take the weights of a graphformer GPT (same function)."""
        self.wte.weight.copy_(gpt.wte.weight)
        self.wpe.weight.copy_(gpt.wpe.weight)
        self.ln_f.load_state_dict(gpt.ln_f.state_dict())
        for mine, blk in zip(self.h, gpt.blocks):
            a, ff = blk.self_attn, blk.feedforward
            mine.ln_1.load_state_dict(blk.norm1.state_dict())
            mine.ln_2.load_state_dict(blk.norm2.state_dict())
            mine.c_attn.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            mine.c_proj.weight.copy_(a.out_proj.weight)
            mine.c_fc.weight.copy_(ff.linear1.weight)
            mine.mlp_proj.weight.copy_(ff.linear2.weight)
            if self.cfg.bias:
                mine.c_attn.bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
                mine.c_proj.bias.copy_(a.out_proj.bias)
                mine.c_fc.bias.copy_(ff.linear1.bias)
                mine.mlp_proj.bias.copy_(ff.linear2.bias)
        return self


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    _sync(device)
    tic, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - tic, time.process_time() - cpu


def paired(run_ref, run_ours, reps: int, warmup: int, device) -> dict:
    """Median times and the median of paired ratios ours / reference, alternating the order.

    Besides wall time, the process's CPU time: on a shared machine it leaves out
    the time spent waiting for a core (with one thread it is the work done).
    """
    for _ in range(warmup):
        run_ref(), run_ours()
    t_ref, t_ours = [], []
    for r in range(reps):
        if r % 2:
            t_ours.append(_timed(run_ours, device))
            t_ref.append(_timed(run_ref, device))
        else:
            t_ref.append(_timed(run_ref, device))
            t_ours.append(_timed(run_ours, device))
    out = {}
    for k, name in ((0, ""), (1, "cpu_")):
        out[f"{name}ref_ms"] = 1e3 * statistics.median(t[k] for t in t_ref)
        out[f"{name}ours_ms"] = 1e3 * statistics.median(t[k] for t in t_ours)
        out[f"{name}ratio"] = statistics.median(o[k] / max(r[k], 1e-9) for o, r in zip(t_ours, t_ref))
    return out


def nanogpt_adamw(model: nn.Module, device_type: str, fused: bool | None = None, lr: float = 1e-4) -> torch.optim.AdamW:
    """nanoGPT's ``configure_optimizers``: decay on >= 2-D parameters, betas (0.9, 0.99), fused on CUDA only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": 0.1},
            {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.99),
        fused=device_type == "cuda" if fused is None else fused,
    )


def train_step_case(cfg: GPTConfig, batch: int, reps: int, device) -> dict:
    torch.manual_seed(0)
    ours = GPT(cfg).to(device)
    ref = PlainGPT(cfg).to(device).copy_from(ours)
    idx = torch.randint(cfg.vocab_size, (batch, cfg.block_size), device=device)
    tgt = torch.randint(cfg.vocab_size, (batch, cfg.block_size), device=device)
    with torch.no_grad():
        diff = (ours(idx, tgt)[0] - ref(idx, tgt)[0]).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"the plain model does not compute the same function (max diff {diff})")

    def step(model, opt):
        def run():
            _, loss = model(idx, tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        return run

    opt_ours = ours.configure_optimizers(0.1, 1e-4, (0.9, 0.99), device.type)
    # each model with the optimiser its own code builds: ours fused on CPU and CUDA, nanoGPT's fused on CUDA only
    res = paired(step(ref, nanogpt_adamw(ref, device.type)), step(ours, opt_ours), reps, 3, device)
    # the models alone: the same optimiser for both
    same_opt = nanogpt_adamw(ref, device.type, fused=bool(opt_ours.defaults.get("fused")))
    same = paired(step(ref, same_opt), step(ours, opt_ours), reps, 3, device)
    res.update({f"same_optimizer_{k}": v for k, v in same.items()})
    tokens = batch * cfg.block_size
    res.update(
        ref_tokens_per_s=tokens / res["ref_ms"] * 1e3,
        ours_tokens_per_s=tokens / res["ours_ms"] * 1e3,
        max_logit_diff=diff,
    )
    return res


def generation_case(cfg: GPTConfig, new_tokens: int, reps: int, device) -> dict:
    torch.manual_seed(0)
    ours = GPT(cfg).to(device).eval()
    plain = PlainGPT(cfg).to(device).copy_from(ours).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)
    cached = ours.generate(prompt, new_tokens, temperature=0)
    uncached = ours.generate(prompt, new_tokens, temperature=0, use_cache=False)
    same = bool(torch.equal(cached, uncached)) and bool(torch.equal(cached, plain.generate(prompt, new_tokens)))
    res = paired(
        lambda: ours.generate(prompt, new_tokens, temperature=0, use_cache=False),
        lambda: ours.generate(prompt, new_tokens, temperature=0),
        reps,
        1,
        device,
    )
    plain_res = paired(
        lambda: plain.generate(prompt, new_tokens),
        lambda: ours.generate(prompt, new_tokens, temperature=0, use_cache=False),
        reps,
        0,
        device,
    )
    return {
        "block_size": cfg.block_size,
        "uncached_ms": res["ref_ms"],
        "cached_ms": res["ours_ms"],
        "speedup": 1.0 / res["ratio"],
        "cpu_speedup": 1.0 / res["cpu_ratio"],
        "plain_ms": plain_res["ref_ms"],
        "uncached_vs_plain": plain_res["ratio"],
        "same_tokens": same,
        "cached_tokens_per_s": new_tokens / res["ours_ms"] * 1e3,
        "uncached_tokens_per_s": new_tokens / res["ref_ms"] * 1e3,
        "plain_tokens_per_s": new_tokens / plain_res["ref_ms"] * 1e3,
    }


def window_case(cfg: GPTConfig, lengths: list[int], window: int, reps: int, device) -> list[dict]:
    """Forward + backward of one sequence: the causal sliding window (W) against the full causal graph."""
    rows = []
    for n in lengths:
        base = {**vars(cfg), "block_size": n}
        torch.manual_seed(0)
        full = GPT(GPTConfig(**base)).to(device)
        win = GPT(GPTConfig(**{**base, "attention": "window", "window": window})).to(device)
        win.load_state_dict(full.state_dict())
        idx = torch.randint(cfg.vocab_size, (1, n), device=device)
        res = paired(
            lambda f=full, i=idx: f(i, i)[1].backward(), lambda w=win, i=idx: w(i, i)[1].backward(), reps, 1, device
        )
        rows.append(
            {
                "tokens": n,
                "window": window,
                "full_ms": res["ref_ms"],
                "window_ms": res["ours_ms"],
                "ratio": res["ratio"],
                "cpu_ratio": res["cpu_ratio"],
            }
        )
        print(
            f"T {n}, window {window}: full causal {res['ref_ms']:.0f} ms, window {res['ours_ms']:.0f} ms "
            f"(ratio {res['ratio']:.2f}x, CPU time {res['cpu_ratio']:.2f}x)"
        )
    return rows


def init_like_nanogpt(model: PlainGPT) -> PlainGPT:
    """nanoGPT's ``_init_weights``: N(0, 0.02), zero biases, residual projections N(0, 0.02 / sqrt(2 L))."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    for block in model.h:
        for lin in (block.c_proj, block.mlp_proj):
            nn.init.normal_(lin.weight, 0.0, 0.02 / math.sqrt(2 * model.cfg.n_layer))
    return model


def train_reference(
    data_path: str, seed: int, max_iters: int = 2000, eval_interval: int = 250, eval_iters: int = 20
) -> dict:
    """nanoGPT's ``train.py`` loop on its CPU recipe with the plain model (its global random stream).

    Batches and evaluation batches come from ``torch.randint`` on the global
    generator, evaluation at iterations 0, 250, ..., as nanoGPT does. Returns
    the history and, at the end, the loss over the whole validation split.
    """
    from graphformer.lm import CharData, split_loss

    data = CharData.from_file(data_path)
    cfg = GPTConfig(vocab_size=len(data.chars), block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
    B, T = 12, 64  # noqa: N806
    torch.manual_seed(seed)
    model = init_like_nanogpt(PlainGPT(cfg))
    opt = nanogpt_adamw(model, "cpu", lr=1e-3)

    def get_batch(split):
        d = data.train if split == "train" else data.val
        ix = torch.randint(len(d) - T, (B,))
        return data.windows(split, ix, T)

    def lr_of(it):
        if it < 100:
            return 1e-3 * (it + 1) / 101
        ratio = (it - 100) / (max_iters - 100)
        return 1e-4 + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)

    history = []
    tic = time.perf_counter()
    for it in range(max_iters + 1):
        if it % eval_interval == 0:
            model.eval()
            with torch.no_grad():
                est = {
                    s: statistics.mean(model(*get_batch(s))[1].item() for _ in range(eval_iters))
                    for s in ("train", "val")
                }
            model.train()
            history.append({"iter": it, "train_loss": est["train"], "val_loss": est["val"]})
            print(f"iter {it}: train loss {est['train']:.4f}, val loss {est['val']:.4f}", flush=True)
        if it == max_iters:
            break
        for group in opt.param_groups:
            group["lr"] = lr_of(it)
        _, loss = model(*get_batch("train"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return {
        "seed": seed,
        "val_loss": history[-1]["val_loss"],
        "train_loss": history[-1]["train_loss"],
        "val_loss_full": split_loss(model, data, "val", T),
        "wall_time_s": time.perf_counter() - tic,
        "history": history,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=65)
    p.add_argument("--bias", action="store_true")
    p.add_argument("--reps", type=int, default=30, help="paired training steps")
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--gen-block-size", type=int, default=512)
    p.add_argument("--gen-reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="also time attention='window' with this W against the full causal graph on --window-lengths tokens",
    )
    p.add_argument("--window-lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument(
        "--train-reference",
        metavar="FILE",
        default=None,
        help="instead: train the plain model with nanoGPT's loop on FILE (CPU recipe) and print "
        "its losses, including the whole validation split",
    )
    p.add_argument("--seed", type=int, default=1337, help="with --train-reference")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.train_reference:
        print(json.dumps(train_reference(args.train_reference, args.seed)))
        return
    device = torch.device(args.device)
    cfg = GPTConfig(
        vocab_size=args.vocab_size,
        block_size=args.block_size,
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.d_model,
        dropout=0.0,
        bias=args.bias,
    )
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    result = {"machine": machine, "torch": torch.__version__, "config": vars(args)}
    if not args.skip_training:
        tr = train_step_case(cfg, args.batch_size, args.reps, device)
        result["train_step"] = tr
        print(
            f"training step B{args.batch_size} T{args.block_size} {args.layers}x{args.heads}x{args.d_model}: "
            f"plain {tr['ref_ms']:.2f} ms, GPT {tr['ours_ms']:.2f} ms, ratio {tr['ratio']:.3f}x "
            f"({tr['ours_tokens_per_s']:,.0f} vs {tr['ref_tokens_per_s']:,.0f} tokens/s); CPU time "
            f"{tr['cpu_ref_ms']:.2f} vs {tr['cpu_ours_ms']:.2f} ms, ratio {tr['cpu_ratio']:.3f}x; "
            f"same fused AdamW for both: ratio {tr['same_optimizer_ratio']:.3f}x "
            f"(CPU time {tr['same_optimizer_cpu_ratio']:.3f}x)"
        )
    if not args.skip_generation:
        result["generation"] = []
        for block in sorted({args.block_size, args.gen_block_size}):
            g = generation_case(GPTConfig(**{**vars(cfg), "block_size": block}), args.new_tokens, args.gen_reps, device)
            result["generation"].append(g)
            print(
                f"generate {args.new_tokens} tokens, block {block}: cached {g['cached_ms']:.0f} ms "
                f"({g['cached_tokens_per_s']:,.0f} tok/s), uncached {g['uncached_ms']:.0f} ms "
                f"({g['uncached_tokens_per_s']:,.0f} tok/s), speedup {g['speedup']:.2f}x (CPU time "
                f"{g['cpu_speedup']:.2f}x), plain nanoGPT "
                f"{g['plain_ms']:.0f} ms; same tokens: {g['same_tokens']}"
            )
    if args.window is not None:
        result["window"] = window_case(cfg, args.window_lengths, args.window, max(3, args.gen_reps), device)
    print(json.dumps(result, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))


if __name__ == "__main__":
    main()
