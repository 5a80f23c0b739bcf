r"""Autoformer (Wu et al., NeurIPS 2021) as a setting of the graphformer layer.

Autoformer keeps the Transformer block and changes two of its parts:

* the **normalisation** becomes a *series decomposition*: a moving average
  along time is the trend, the rest is the seasonal part, and a block keeps
  only the seasonal part (:class:`SeriesDecomposition`, :class:`SeasonalPart`);
* the **attention** becomes *auto-correlation* (:class:`AutoCorrelation`):
  the time steps are the nodes, and every node listens to the nodes
  ``tau_1, ..., tau_k`` steps ahead of it (cyclically). All edges of one
  delay share one score, the auto-correlation of queries and keys at that
  lag, computed for every lag at once with the FFT.

Why this is message passing on a circulant graph: on L time steps, the
edges ``(i + tau) mod L -> i`` for a fixed delay ``tau`` form a cyclic
permutation, and the union over the k chosen delays is the circulant graph
:math:`C_L(\tau_1, \dots, \tau_k)` -- every node has the same k in-neighbours
at the same offsets. The score of an edge depends only on its offset,

.. math::
    s_{i, (i+\tau) \bmod L} = R_{qk}(\tau)
        = \frac{1}{H C} \sum_{h, c} \sum_{t=0}^{L-1} q_{t,h,c}\, k_{(t-\tau) \bmod L, h, c},

so the softmax over a node's incoming edges is the same softmax over the k
lags for every node, and the aggregation

.. math::
    o_i = \sum_{m=1}^{k} a_m\, v_{(i + \tau_m) \bmod L}, \qquad
    a = \mathrm{softmax}(R_{qk}(\tau_1), \dots, R_{qk}(\tau_k)),

is the sum of the value sequence rolled by each chosen delay. Dot-product
attention on the complete graph :math:`K_L` scores each of the L^2 edges
separately; auto-correlation restricts the graph to k delays chosen by the
data (k = ``factor * ln L``) and ties the scores along each diagonal, which
the FFT computes in :math:`O(L \log L)` (:func:`autocorrelation`).

Legend: B batch, L time steps (look-back), S source steps (cross-attention),
H heads, C channels per head, d model width, V variables, F time features,
k chosen delays.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import FeedForward, GraphformerLayer, _activation
from .forecasting import _check_input, normalize

__all__ = [
    "AutoCorrelation",
    "Autoformer",
    "AutoformerDecoderLayer",
    "SeasonalLayerNorm",
    "SeasonalPart",
    "SeriesDecomposition",
    "autocorrelation",
    "autoformer_layer",
    "circulant_edge_index",
]


# ------------------------------------------------------------ decomposition
class SeriesDecomposition(nn.Module):
    r"""Moving-average trend and seasonal remainder along time.

    .. math::
        x^{\mathrm{trend}} = \mathrm{AvgPool}_{\kappa}(\mathrm{Pad}(x)), \qquad
        x^{\mathrm{seasonal}} = x - x^{\mathrm{trend}}

    with the first and last rows repeated ``(kernel_size - 1) // 2`` times at
    the two ends (Autoformer's padding), so the trend has the input's length.

    Shapes: ``[B, L, C] -> ([B, L, C], [B, L, C])`` (seasonal, trend).
    """

    def __init__(self, kernel_size: int = 25):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pad = (self.kernel_size - 1) // 2
        padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], dim=1)  # [B, L+2p, C]
        trend = F.avg_pool1d(padded.transpose(1, 2), self.kernel_size, stride=1).transpose(1, 2)  # [B, L, C]
        return x - trend, trend


class SeasonalPart(nn.Module):
    """The seasonal output of a :class:`SeriesDecomposition`: Autoformer's "normalisation" inside a block.

    Shapes: ``[B, L, C] -> [B, L, C]``.
    """

    def __init__(self, kernel_size: int = 25):
        super().__init__()
        self.decomposition = SeriesDecomposition(kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decomposition(x)[0]


class SeasonalLayerNorm(nn.Module):
    r"""LayerNorm over channels, minus its mean over time (Autoformer's ``my_Layernorm``).

    .. math:: y_t = \mathrm{LN}(x_t) - \tfrac1L \textstyle\sum_s \mathrm{LN}(x_s)

    Shapes: ``[B, L, d] -> [B, L, d]``.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        return h - h.mean(dim=1, keepdim=True)


# ------------------------------------------------------------ auto-correlation
def autocorrelation(q: Tensor, k: Tensor, dim: int = -1) -> Tensor:
    r"""Circular cross-correlation of ``q`` and ``k`` at every lag, by the FFT.

    .. math::
        R(\tau) = \sum_{t=0}^{L-1} q_t\, k_{(t - \tau) \bmod L}
                = \mathcal F^{-1}\big(\mathcal F(q) \odot \overline{\mathcal F(k)}\big)_\tau,
        \quad \tau = 0, \dots, L-1

    (the Wiener-Khinchin theorem), in :math:`O(L \log L)` instead of the
    direct :math:`O(L^2)` sum.

    Args:
        q, k: tensors of the same shape; ``dim`` is the time axis (length L).

    Returns:
        R of the same shape, lag ``tau`` at position ``tau`` along ``dim``.
    """
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    n = q.size(dim)
    spectrum = torch.fft.rfft(q, dim=dim) * torch.conj(torch.fft.rfft(k, dim=dim))
    return torch.fft.irfft(spectrum, n=n, dim=dim)


def circulant_edge_index(num_nodes: int, delays: Tensor | list[int]) -> Tensor:
    """The circulant graph of :class:`AutoCorrelation`: edges ``(i + tau) mod L -> i`` for every delay.

    Returns ``[2, L * k]`` (source, target), delay-major: the first L edges
    belong to the first delay.
    """
    delays = torch.as_tensor(delays, dtype=torch.long).view(-1, 1)  # [k, 1]
    target = torch.arange(num_nodes).view(1, -1).expand(delays.size(0), -1)  # [k, L]
    source = (target + delays) % num_nodes
    return torch.stack([source.reshape(-1), target.reshape(-1)])


class AutoCorrelation(nn.Module):
    r"""Auto-correlation attention: message passing on a circulant graph of time delays.

    With :math:`q = x W_q`, :math:`k = x_{\mathrm{src}} W_k`,
    :math:`v = x_{\mathrm{src}} W_v` split into H heads of C channels:

    .. math::
        R(\tau) = \frac{1}{H C} \sum_{h,c} \mathrm{autocorrelation}(q_{:,h,c}, k_{:,h,c})(\tau), \quad
        \{\tau_1..\tau_k\} = \mathrm{top}_k R, \quad
        a = \mathrm{softmax}(R(\tau_1), \dots, R(\tau_k)), \\
        o_i = W_o \big( \textstyle\sum_{m} a_m\, v_{(i + \tau_m) \bmod L} \big)

    with :math:`k = \lfloor \mathrm{factor} \cdot \ln L \rfloor`. In training
    the k delays are chosen from the batch mean of R and shared by the batch,
    in evaluation per window (both as the reference code). Node i's
    in-neighbours are the nodes :math:`i + \tau_m`: the circulant graph
    :func:`circulant_edge_index`, with one softmax over the k lags that every
    node shares. On the complete graph (k = L, every lag) it is attention
    whose scores are tied along the diagonals of the L x L score matrix.

    Cross-attention takes a pair ``(x_src, x_dst)``: keys and values of the S
    source steps are cut to the L target steps, or padded with zeros to them.

    Args:
        d_model: width d.
        num_heads: H.
        factor: k = ``factor * ln L`` delays (Autoformer: 1 to 3).
        dropout: unused by the reference; kept for the layer's signature.

    Shapes: x ``[B, L, d]`` (or ``([B, S, d], [B, L, d])``) -> ``[B, L, d]``.
    """

    def __init__(self, d_model: int, num_heads: int = 8, factor: float = 1.0, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self.num_heads, self.factor = num_heads, factor
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model) for _ in range(4))
        self.self_loops = None  # GraphformerEncoder checks this attribute of its attention

    def num_delays(self, length: int) -> int:
        """k for a sequence of ``length`` steps (at least 1, at most ``length``)."""
        return max(1, min(length, int(self.factor * math.log(length))))

    def lag_scores(self, x: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``R(tau)`` for every lag ``[B, L]`` (mean over heads and channels) and the values ``[B, H, C, L]``."""
        x_src, x_dst = x if isinstance(x, (tuple, list)) else (x, x)
        B, L, d = x_dst.shape  # noqa: N806
        S = x_src.size(1)  # noqa: N806
        q = self.q_proj(x_dst).view(B, L, self.num_heads, -1)  # [B, L, H, C]
        k = self.k_proj(x_src).view(B, S, self.num_heads, -1)  # [B, S, H, C]
        v = self.v_proj(x_src).view(B, S, self.num_heads, -1)
        if S < L:
            k = torch.cat([k, k.new_zeros(B, L - S, *k.shape[2:])], dim=1)
            v = torch.cat([v, v.new_zeros(B, L - S, *v.shape[2:])], dim=1)
        else:
            k, v = k[:, :L], v[:, :L]
        corr = autocorrelation(q.permute(0, 2, 3, 1), k.permute(0, 2, 3, 1))  # [B, H, C, L]
        return corr.mean(dim=(1, 2)), v.permute(0, 2, 3, 1).contiguous()  # [B, L], [B, H, C, L]

    def forward(self, x: Tensor | tuple[Tensor, Tensor], edge_index=None, **kwargs) -> Tensor:
        """Aggregate the values rolled by the k strongest delays (see the class docstring)."""
        if edge_index is not None or kwargs.get("return_attention") or kwargs.get("causal"):
            raise ValueError(
                "AutoCorrelation builds its own circulant graph: call it without edge_index, causal or return_attention"
            )
        x_dst = x[1] if isinstance(x, (tuple, list)) else x
        B, L, d = x_dst.shape  # noqa: N806
        scores, v = self.lag_scores(x)  # [B, L], [B, H, C, L]
        top = self.num_delays(L)
        if self.training:  # one set of delays for the batch
            delays = torch.topk(scores.mean(0), top, dim=-1).indices  # [k]
            weights = torch.softmax(scores[:, delays], dim=-1)  # [B, k]
            out = torch.zeros_like(v)
            for m in range(top):
                out = out + torch.roll(v, -int(delays[m]), dims=-1) * weights[:, m].view(B, 1, 1, 1)
        else:  # delays per window
            w, delays = torch.topk(scores, top, dim=-1)  # [B, k]
            weights = torch.softmax(w, dim=-1)
            doubled = torch.cat([v, v], dim=-1)  # [B, H, C, 2L]
            steps = torch.arange(L, device=v.device)
            out = torch.zeros_like(v)
            for m in range(top):
                index = (delays[:, m].view(B, 1, 1, 1) + steps).expand_as(v)  # [B, H, C, L]
                out = out + torch.gather(doubled, -1, index) * weights[:, m].view(B, 1, 1, 1)
        return self.out_proj(out.permute(0, 3, 1, 2).reshape(B, L, d))  # [B, L, d]


def autoformer_layer(
    d_model: int,
    num_heads: int = 8,
    d_ff: int = 2048,
    dropout: float = 0.05,
    activation: str = "gelu",
    moving_avg: int = 25,
    factor: float = 1.0,
) -> GraphformerLayer:
    r"""Autoformer's encoder block: a post-norm :class:`~graphformer.GraphformerLayer` with two parts swapped.

    .. math::
        h = \mathrm{Seasonal}(x + \mathrm{drop}(\mathrm{AutoCorrelation}(x))), \quad
        y = \mathrm{Seasonal}(h + \mathrm{drop}(\mathrm{FF}(h)))

    The attention is :class:`AutoCorrelation`, both LayerNorms are
    :class:`SeasonalPart`, the feed-forward part has no biases (Autoformer's
    1x1 convolutions). Nothing inside the layer changes.
    """
    layer = GraphformerLayer(
        d_model,
        num_heads,
        d_ff,
        dropout,
        activation,
        feedforward=FeedForward(d_model, d_ff, dropout, activation, bias=False),
    )
    layer.self_attn = AutoCorrelation(d_model, num_heads, factor, dropout)
    layer.norm1, layer.norm2 = SeasonalPart(moving_avg), SeasonalPart(moving_avg)
    return layer


class AutoformerDecoderLayer(nn.Module):
    r"""Autoformer's decoder block: self and cross auto-correlation, feed-forward, three decompositions.

    .. math::
        x_1, t_1 = \mathrm{Decomp}(x + \mathrm{AC}(x)), \;
        x_2, t_2 = \mathrm{Decomp}(x_1 + \mathrm{AC}(m \to x_1)), \;
        x_3, t_3 = \mathrm{Decomp}(x_2 + \mathrm{FF}(x_2)), \;
        \Delta T = \mathrm{Conv}_3(t_1 + t_2 + t_3)

    The cross auto-correlation is the circulant graph from the memory's
    steps to the decoder's (a bipartite graph with tied delay scores).

    Shapes: x ``[B, L, d]``, memory ``[B, S, d]`` -> (seasonal ``[B, L, d]``, trend ``[B, L, c_out]``).
    """

    def __init__(
        self,
        d_model: int,
        c_out: int,
        num_heads: int = 8,
        d_ff: int = 2048,
        dropout: float = 0.05,
        activation: str = "gelu",
        moving_avg: int = 25,
        factor: float = 1.0,
    ):
        super().__init__()
        self.self_attn = AutoCorrelation(d_model, num_heads, factor, dropout)
        self.cross_attn = AutoCorrelation(d_model, num_heads, factor, dropout)
        self.feedforward = FeedForward(d_model, d_ff, dropout, _activation(activation), bias=False)
        self.decomp1, self.decomp2, self.decomp3 = (SeriesDecomposition(moving_avg) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        self.trend_projection = nn.Conv1d(d_model, c_out, 3, padding=1, padding_mode="circular", bias=False)

    def forward(self, x: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        x, t1 = self.decomp1(x + self.dropout(self.self_attn(x)))
        x, t2 = self.decomp2(x + self.dropout(self.cross_attn((memory, x))))
        x, t3 = self.decomp3(x + self.dropout(self.feedforward(x)))
        trend = self.trend_projection((t1 + t2 + t3).transpose(1, 2)).transpose(1, 2)  # [B, L, c_out]
        return x, trend


class _Embedding(nn.Module):
    """Autoformer's embedding without positions: a circular 3-tap convolution of the values plus time features."""

    def __init__(self, num_variables: int, num_time_features: int, d_model: int, dropout: float):
        super().__init__()
        self.value = nn.Conv1d(num_variables, d_model, 3, padding=1, padding_mode="circular", bias=False)
        nn.init.kaiming_normal_(self.value.weight, mode="fan_in", nonlinearity="leaky_relu")
        self.time = nn.Linear(num_time_features, d_model, bias=False) if num_time_features else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mark: Tensor | None) -> Tensor:
        h = self.value(x.transpose(1, 2)).transpose(1, 2)  # [B, L, d]
        if self.time is not None:
            if mark is None:
                raise ValueError("this Autoformer was built with time features: pass x_mark and y_mark")
            h = h + self.time(mark)
        return self.dropout(h)


class Autoformer(nn.Module):
    r"""Autoformer: decomposition blocks and auto-correlation over time steps, encoder and decoder.

    The look-back is decomposed; the decoder starts from the last
    ``label_len`` steps of its seasonal part followed by zeros, and the trend
    from the last ``label_len`` steps of its trend followed by the look-back
    mean. The encoder (:func:`autoformer_layer` blocks on the time steps)
    reads the look-back; each decoder block adds a trend increment; the
    forecast is the accumulated trend plus the projected seasonal part:

    .. math::
        \hat y = T^{(0)} + \sum_l \Delta T^{(l)} + W_p\, \mathrm{SLN}(s^{(n_d)})

    Args:
        seq_len, label_len, pred_len: L, the decoder's start length and H.
        num_variables: V.
        num_time_features: F (0 for none).
        d_model, num_heads, d_ff, dropout, activation: blocks (Autoformer:
            512, 8, 2048, 0.05, GELU).
        encoder_layers, decoder_layers: 2 and 1 in Autoformer.
        moving_avg: the decomposition's window (25).
        factor: k = ``factor * ln L`` delays.
        use_norm: per-window instance normalisation (off in Autoformer).

    Shapes: x ``[B, L, V]``, x_mark ``[B, L, F]``, y_mark ``[B, H, F]`` -> ``[B, H, V]``.
    """

    def __init__(
        self,
        seq_len: int,
        label_len: int,
        pred_len: int,
        num_variables: int,
        num_time_features: int = 0,
        d_model: int = 512,
        num_heads: int = 8,
        d_ff: int = 2048,
        encoder_layers: int = 2,
        decoder_layers: int = 1,
        dropout: float = 0.05,
        activation: str = "gelu",
        moving_avg: int = 25,
        factor: float = 1.0,
        use_norm: bool = False,
    ):
        super().__init__()
        if not 0 <= label_len <= seq_len:
            raise ValueError(f"label_len must lie in [0, seq_len={seq_len}], got {label_len}")
        if encoder_layers < 1 or decoder_layers < 1:
            raise ValueError(
                f"need at least one encoder and one decoder layer, got {encoder_layers} and {decoder_layers}"
            )
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.num_variables, self.use_norm = num_variables, use_norm
        self.decomposition = SeriesDecomposition(moving_avg)
        self.encoder_embedding = _Embedding(num_variables, num_time_features, d_model, dropout)
        self.decoder_embedding = _Embedding(num_variables, num_time_features, d_model, dropout)
        self.encoder = nn.ModuleList(
            autoformer_layer(d_model, num_heads, d_ff, dropout, activation, moving_avg, factor)
            for _ in range(encoder_layers)
        )
        self.encoder_norm = SeasonalLayerNorm(d_model)
        self.decoder = nn.ModuleList(
            AutoformerDecoderLayer(d_model, num_variables, num_heads, d_ff, dropout, activation, moving_avg, factor)
            for _ in range(decoder_layers)
        )
        self.decoder_norm = SeasonalLayerNorm(d_model)
        self.projection = nn.Linear(d_model, num_variables)

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]``; the time features of look-back and horizon are used when given."""
        _check_input(x, self.seq_len, self.num_variables)
        if self.use_norm:
            x, stats = normalize(x)
        B, H, V = x.size(0), self.pred_len, self.num_variables  # noqa: N806
        seasonal, trend = self.decomposition(x)  # [B, L, V] each
        mean = x.mean(dim=1, keepdim=True).expand(-1, H, -1)  # [B, H, V]
        trend_init = torch.cat([trend[:, self.seq_len - self.label_len :], mean], dim=1)  # [B, label+H, V]
        seasonal_init = torch.cat([seasonal[:, self.seq_len - self.label_len :], x.new_zeros(B, H, V)], dim=1)
        dec_mark = None
        if x_mark is not None and x_mark.size(-1) and y_mark is not None:
            dec_mark = torch.cat([x_mark[:, self.seq_len - self.label_len :], y_mark], dim=1)  # [B, label+H, F]
        memory = self.encoder_embedding(x, x_mark if x_mark is not None and x_mark.size(-1) else None)
        for layer in self.encoder:  # time steps as nodes, circulant graph of delays
            memory = layer(memory)
        memory = self.encoder_norm(memory)
        h = self.decoder_embedding(seasonal_init, dec_mark)  # [B, label+H, d]
        for layer in self.decoder:
            h, increment = layer(h, memory)
            trend_init = trend_init + increment
        y = (trend_init + self.projection(self.decoder_norm(h)))[:, -H:]  # [B, H, V]
        return stats.undo(y) if self.use_norm else y
