"""A GPT is a Transformer on the causal graph of its tokens.

Each character (token) is a node; its features are a token embedding plus a
learned position embedding. Node i receives a message from every node j <= i
(the causal DAG, ``attention="full"``) or only from the last ``W`` nodes
before it (``attention="window"``: a sparse causal graph, cost N·W instead of
N²). The blocks are :class:`~graphformer.GraphformerLayer` in pre-norm form
with a GELU feed-forward part, then a final LayerNorm and an output head tied
to the token embedding. Names follow nanoGPT (karpathy/nanoGPT) so that its
users find their way: ``GPTConfig(vocab_size, block_size, n_layer, n_head,
n_embd, dropout, bias)``, ``model(idx, targets) -> (logits, loss)``,
``model.generate(idx, max_new_tokens, temperature, top_k)``.

Generation with the key/value cache grows the graph by one node per token:
the new node gets an edge from every earlier node, whose keys and values are
already in the cache.

Legend: B batch, T tokens (nodes), V vocabulary, d = n_embd, H heads,
C channels per head, L cached nodes, W window.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import structure
from ..layers import FeedForward, GraphformerLayer

__all__ = ["GPT", "GPTConfig", "KVCache", "LayerCache"]


class LayerCache:
    """The keys and values of one block in preallocated buffers ``[B, H, capacity, C]``.

    :meth:`extend` writes the new nodes' keys and values after the earlier
    ones (no copy of the earlier ones) and returns views of all of them.
    Iterating gives ``(keys, values)``, each ``[B, H, L, C]``.
    """

    def __init__(self, k: Tensor, v: Tensor, capacity: int):
        B, H, L, C = k.shape  # noqa: N806
        self._k = k.new_empty(B, H, max(capacity, L), C)
        self._v = v.new_empty(B, H, max(capacity, L), C)
        self.length = 0
        self.extend(k, v)

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v`` ``[B, H, T, C]``; return all keys and values ``[B, H, L + T, C]``."""
        end = self.length + k.size(-2)
        if end > self._k.size(-2):
            raise ValueError(f"the cache holds at most {self._k.size(-2)} nodes (block_size), got {end}")
        self._k[..., self.length : end, :] = k
        self._v[..., self.length : end, :] = v
        self.length = end
        return self.keys, self.values

    @property
    def keys(self) -> Tensor:
        return self._k[..., : self.length, :]

    @property
    def values(self) -> Tensor:
        return self._v[..., : self.length, :]

    def __iter__(self):
        return iter((self.keys, self.values))


@dataclass
class KVCache:
    """The keys and values of the nodes generated so far, a record returned by :meth:`GPT.forward_cached`.

    Attributes:
        layers: one entry per block that unpacks to ``(k, v)``, each ``[B, H, L, C]``
            (L = all tokens so far, in a :class:`LayerCache`; or the last
            ``window`` with ``attention="window"``, as a pair of tensors).
        length: how many tokens the graph has, i.e. the position of the next one.
    """

    layers: list
    length: int


@dataclass
class GPTConfig:
    """The configuration of a :class:`GPT` (nanoGPT's names).

    Attributes:
        vocab_size: number of distinct tokens (65 characters for tiny Shakespeare).
        block_size: the longest context, i.e. how many learned positions exist.
        n_layer: number of blocks.
        n_head: attention heads per block.
        n_embd: model width d (divisible by ``n_head``).
        dropout: dropout on embeddings, attention weights and residual branches
            (0 for small data sets and for fine-tuning, as in nanoGPT).
        bias: biases in the linear maps and LayerNorms (False is a little
            better and faster, as in nanoGPT).
        attention: ``"full"`` — each token attends to every earlier token (the
            causal DAG) — or ``"window"`` — only to the ``window`` tokens before it.
        window: W for ``attention="window"``: edges j -> i for ``0 <= i - j <= W``.
    """

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    attention: str = "full"
    window: int | None = None

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd={self.n_embd} is not divisible by n_head={self.n_head}; pick n_head dividing n_embd"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must lie in [0, 1), got {self.dropout}")
        if self.attention not in ("full", "window"):
            raise ValueError(f"GPTConfig.attention must be 'full' or 'window', got {self.attention!r}")
        if self.attention == "window":
            if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 0:
                raise ValueError(
                    "GPTConfig(attention='window') needs window=W, an int >= 0 "
                    f"(edges from the W previous tokens), got {self.window!r}"
                )
        elif self.window is not None:
            raise ValueError(
                "GPTConfig.window is only used with attention='window'; set attention='window' or leave window=None"
            )


class GPT(nn.Module):
    r"""A decoder-only Transformer: :class:`~graphformer.GraphformerLayer` blocks on the causal graph.

    .. math::
        h^0_i = E_{t_i} + P_i, \qquad
        h^{l+1} = \mathrm{Block}_l(h^l) \text{ on the edges } j \to i,\ j \le i, \qquad
        \mathrm{logits}_i = \mathrm{LN}(h^L_i)\, E^\top

    with pre-norm blocks ``x + Attn(LN x)``, ``h + MLP(LN h)`` (GELU, width
    ``4 d``), the output head tied to the token embedding ``E``. On the
    complete causal graph (``attention="full"``) this is nanoGPT's ``GPT``
    exactly (same parameters, same function).

    Initialisation as nanoGPT: every weight ~ N(0, 0.02), biases zero, and the
    projections that write into the residual stream (attention output and
    second MLP layer) ~ N(0, 0.02 / sqrt(2 n_layer)).

    Shapes: idx ``[B, T]`` (``T <= block_size``) -> logits ``[B, T, V]`` with
    targets, ``[B, 1, V]`` (last position only) without, as nanoGPT.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT takes a GPTConfig, got {type(config).__name__}")
        self.config = config
        d = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, d)  # token -> node features
        self.wpe = nn.Embedding(config.block_size, d)  # position -> node features
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            [
                GraphformerLayer(
                    d,
                    config.n_head,
                    4 * d,
                    config.dropout,
                    activation="gelu",
                    norm_first=True,
                    bias=config.bias,
                    # dropout after the MLP only (nanoGPT), none between its two layers
                    feedforward=FeedForward(d, 4 * d, 0.0, "gelu", bias=config.bias),
                )
                for _ in range(config.n_layer)
            ]
        )
        self.ln_f = nn.LayerNorm(d, bias=config.bias)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: the head reads tokens off the embedding
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nanoGPT's initialisation (see the class docstring)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.self_attn.out_proj.weight, mean=0.0, std=std)
            nn.init.normal_(block.feedforward.linear2.weight, mean=0.0, std=std)

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters; the position embedding is left out by default (nanoGPT's count).

        The token embedding is counted: it is also the output head.
        """
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    # ------------------------------------------------------------ forward
    def _embed(self, idx: Tensor, start: int = 0) -> Tensor:
        if not isinstance(idx, Tensor) or idx.dtype not in (torch.long, torch.int) or idx.dim() != 2:
            raise TypeError(
                "idx must be an integer tensor of token ids [B, T], got "
                f"{getattr(idx, 'dtype', type(idx).__name__)} {tuple(getattr(idx, 'shape', ()))}"
            )
        T = idx.size(1)  # noqa: N806
        if start + T > self.config.block_size:
            raise ValueError(
                f"cannot take {start + T} tokens, block_size is only {self.config.block_size}; "
                "crop the context to the last block_size tokens"
            )
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # [B, T, d]
        return self.drop(x) if self.training and self.drop.p > 0 else x

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Next-token logits and, with ``targets`` ``[B, T]``, the mean cross-entropy (-1 = ignored).

        Without targets only the last position's logits are computed, ``[B, 1, V]``.
        """
        x = self._embed(idx)  # [B, T, d]
        if self.config.attention == "full":
            for block in self.blocks:
                x = block(x, causal=True)  # the causal DAG: SDPA, N^2 edges never built
        else:  # the causal sliding window: dense tiles, O(T W)
            graph = structure.sliding_window(idx.size(1), self.config.window, causal=True, device=x.device)
            for block in self.blocks:
                x = block(x, graph)
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, -1:, :]), None
        logits = self.lm_head(x)  # [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-1)
        return logits, loss

    def forward_cached(
        self, idx: Tensor, cache: KVCache | None = None, *, last_only: bool = False
    ) -> tuple[Tensor, KVCache]:
        """Logits ``[B, T, V]`` of ``T`` new tokens (new nodes) that follow the cached ones.

        (``[B, 1, V]``, the last token's, with ``last_only``.)

        ``cache`` is the :class:`KVCache` returned by the previous call, or None
        to start; it is extended in place (its buffers grow), so pass each one
        only once. The new tokens take positions ``cache.length ..
        cache.length + T - 1``; each receives edges from every earlier token
        (or, with ``attention="window"``, from the ``window`` before it, the
        only keys and values the cache keeps).
        """
        start = 0 if cache is None else cache.length
        x = self._embed(idx, start)
        window = self.config.window if self.config.attention == "window" else None
        layers = []
        for b, block in enumerate(self.blocks):
            past = None if cache is None else cache.layers[b]
            x, (k, v) = block.step(x, past, window=window)
            if window is not None:  # the next node needs only the last W keys
                keep = k.size(-2) - min(window, k.size(-2))
                layers.append((k[..., keep:, :], v[..., keep:, :]))
            else:  # the graph grows up to block_size nodes: preallocate them
                layers.append(past if past is not None else LayerCache(k, v, self.config.block_size))
        if last_only:
            x = x[:, -1:, :]
        return self.lm_head(self.ln_f(x)), KVCache(layers, start + idx.size(1))

    # ---------------------------------------------------------- generate
    @torch.inference_mode()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        *,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` ``[B, T]`` and return ``[B, T + max_new_tokens]``.

        Each step samples from ``softmax(logits / temperature)`` restricted to
        the ``top_k`` most likely tokens; ``temperature=0`` picks the most
        likely token (greedy). Call ``model.eval()`` first.

        With ``use_cache`` (default) each new token is one new node: only its
        query, key and value are computed and it attends to the cached keys
        and values of the earlier tokens. The result equals ``use_cache=False``
        (nanoGPT's recomputation of the whole context every step). Once the
        context outgrows ``block_size``, the learned positions shift at every
        step, so each step recomputes the last ``block_size`` tokens, as
        without the cache.
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"idx must be [B, T] with at least one token (a prompt), got {tuple(idx.shape)}")
        block = self.config.block_size
        cache = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = self(idx[:, -block:])
            elif cache is not None and idx.size(1) <= block:
                logits, cache = self.forward_cached(idx[:, cache.length :], cache, last_only=True)
            else:  # first step, or the context no longer fits: (re)fill the cache from the last block
                logits, cache = self.forward_cached(idx[:, -block:], None, last_only=True)
            idx = torch.cat([idx, self._sample(logits[:, -1, :], temperature, top_k, generator)], dim=1)
        return idx

    @staticmethod
    def _sample(logits: Tensor, temperature: float, top_k: int | None, generator) -> Tensor:
        """One token per row [B, 1] from the last position's logits [B, V]."""
        if temperature == 0:
            return logits.argmax(-1, keepdim=True)
        logits = logits / temperature
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits = logits.masked_fill(logits < v[:, [-1]], float("-inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)

    # -------------------------------------------------------- optimiser
    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str = "cpu"
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on the matrices (>= 2-D: linear maps, embeddings) only.

        Biases and LayerNorm gains are not decayed (nanoGPT's groups). The
        fused kernel (one kernel per parameter and step, the same update rule)
        is used on CPU and CUDA; nanoGPT fuses on CUDA only, and on this
        model's CPU recipe the unfused loop is about 6 % of a training step.
        """
        return torch.optim.AdamW(
            self.param_groups(weight_decay), lr=learning_rate, betas=betas, **self._fused(device_type)
        )

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Two groups: ``>= 2-D`` parameters with ``weight_decay``, the rest with 0 (tied weights once)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]

    @staticmethod
    def _fused(device_type: str) -> dict:
        fused = device_type in ("cpu", "cuda") and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return {"fused": True} if fused else {}
