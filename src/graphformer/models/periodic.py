r"""Periodic priors as node features and as query nodes.

A periodic prior is a learned signal of period W rows (a day of hourly data:
W = 24; a year of weeks: W = 52) read at each window's phase. The phase of a
window is the last column of its marks, appended by
:func:`graphformer.data.cycle_phase` (row index mod W); both models here read
``x_mark[:, 0, -1]`` and hand the other marks on.

* :class:`CycleForecaster` (CycleNet, Lin et al., NeurIPS 2024, residual
  cycle forecasting): a learned cycle per variable is subtracted from the
  node features (the look-back of each variable) before the backbone and
  added back to the forecast. With an :class:`~graphformer.models.ITransformer`
  backbone the variables stay the nodes of a complete graph; the cycle only
  changes their features.
* :class:`TemporalQueryForecaster` (TQNet, Lin et al., 2025, periodic temporal
  queries): the W-periodic query table gives every variable a query node
  (its learned periodic signal at this window's phases); the query nodes
  attend to the V variable nodes over the complete bipartite graph
  K_{V,V}, and the message is added to each variable's look-back before an
  MLP maps it to the forecast.

Legend: B batch, L look-back, H horizon, V variables, F time features, W cycle length, d width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..attention import GraphAttention
from .forecasting import _check_input, normalize

__all__ = ["CycleForecaster", "RecurrentCycle", "TemporalQueryForecaster", "split_phase"]


def split_phase(x_mark: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(phase [B], other marks [B, L, F])`` from marks whose last column is the phase (see :func:`cycle_phase`)."""
    if x_mark is None or x_mark.dim() != 3 or x_mark.size(-1) < 1:
        raise ValueError(
            "periodic models need the cycle phase as the last mark column: build the data with "
            "graphformer.data.cycle_phase(data, cycle_len) and pass x_mark"
        )
    return x_mark[:, 0, -1].round().long(), x_mark[..., :-1]


class RecurrentCycle(nn.Module):
    r"""A learned cycle of W steps per variable, :math:`Q \in \mathbb R^{W \times V}` (zeros at start).

    ``cycle(phase, length)[b, t] = Q[(phase_b + t) mod W]``: the cycle rolled
    to each window's phase and repeated to ``length`` steps.

    Shapes: phase ``[B]`` -> ``[B, length, V]``.
    """

    def __init__(self, cycle_len: int, num_variables: int):
        super().__init__()
        if cycle_len < 1 or num_variables < 1:
            raise ValueError(f"cycle_len and num_variables must be >= 1, got {cycle_len} and {num_variables}")
        self.cycle_len = cycle_len
        self.data = nn.Parameter(torch.zeros(cycle_len, num_variables))

    def forward(self, phase: Tensor, length: int) -> Tensor:
        index = (phase.view(-1, 1) + torch.arange(length, device=phase.device)) % self.cycle_len  # [B, length]
        return self.data[index]


class CycleForecaster(nn.Module):
    r"""Residual cycle forecasting (CycleNet's RCF) around any forecaster of the library.

    .. math::
        \hat x = \mathrm{norm}(x), \quad
        r = \hat x - Q_{\phi : \phi + L}, \quad
        \hat y = \mathrm{backbone}(r) + Q_{\phi + L : \phi + L + H}, \quad
        y = \mathrm{denorm}(\hat y)

    with :math:`Q` a :class:`RecurrentCycle` and :math:`\phi` the phase of
    the window's first row. The backbone sees the time features without the
    phase column and should be built without its own instance
    normalisation (``use_norm=False``): it is done here, once.

    Args:
        backbone: a forecaster ``(x, x_mark, y_mark) -> [B, H, V]``.
        seq_len, pred_len: L and H.
        num_variables: V.
        cycle_len: W.
        use_norm: per-window instance normalisation around the cycle removal.

    Shapes: x ``[B, L, V]``, x_mark ``[B, L, F + 1]`` (phase last), y_mark ``[B, H, F + 1]`` -> ``[B, H, V]``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        seq_len: int,
        pred_len: int,
        num_variables: int,
        cycle_len: int,
        use_norm: bool = True,
    ):
        super().__init__()
        self.backbone, self.cycle = backbone, RecurrentCycle(cycle_len, num_variables)
        self.seq_len, self.pred_len, self.num_variables, self.use_norm = seq_len, pred_len, num_variables, use_norm

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]``; the last mark column must be the cycle phase."""
        _check_input(x, self.seq_len, self.num_variables)
        phase, x_mark = split_phase(x_mark)
        y_mark = None if y_mark is None else y_mark[..., :-1]
        if self.use_norm:
            x, stats = normalize(x)
        residual = x - self.cycle(phase, self.seq_len)  # [B, L, V]
        y = self.backbone(residual, x_mark, y_mark) + self.cycle(phase + self.seq_len, self.pred_len)  # [B, H, V]
        return stats.undo(y) if self.use_norm else y


class TemporalQueryForecaster(nn.Module):
    r"""TQNet's periodic temporal queries: query nodes from a W-periodic table attend to the variable nodes.

    Every variable v is a node with feature :math:`x_v \in \mathbb R^L` (its
    normalised look-back). A learned table :math:`T \in \mathbb R^{W \times V}`
    gives variable v a query node with feature
    :math:`u_v = T_{(\phi + 0..L-1) \bmod W,\, v}` (its periodic signal at this
    window's phases). The V query nodes attend to the V variable nodes over
    the complete bipartite graph (:class:`~graphformer.GraphAttention` on a pair):

    .. math::
        c_v = \sum_{w=1}^{V} a_{vw} W_v x_w, \quad
        a_{v\cdot} = \mathrm{softmax}_w(\langle W_q u_v, W_k x_w \rangle / \sqrt C), \\
        h_v = W_{\mathrm{in}} (x_v + c_v), \quad
        \hat y_v = W_{\mathrm{out}}\, \mathrm{drop}(h_v + \mathrm{MLP}(h_v))

    Args:
        seq_len, pred_len: L and H.
        num_variables: V.
        cycle_len: W.
        d_model: width of the MLP.
        num_heads: attention heads (must divide L).
        dropout: on the attention weights and before the output layer.
        use_norm: per-window instance normalisation.

    Shapes: x ``[B, L, V]``, x_mark ``[B, L, F + 1]`` (phase last) -> ``[B, H, V]``.
    """

    def __init__(
        self,
        seq_len: int,
        pred_len: int,
        num_variables: int,
        cycle_len: int,
        d_model: int = 512,
        num_heads: int = 4,
        dropout: float = 0.1,
        use_norm: bool = True,
    ):
        super().__init__()
        if seq_len % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide seq_len={seq_len} (the query width)")
        self.seq_len, self.pred_len, self.num_variables, self.use_norm = seq_len, pred_len, num_variables, use_norm
        self.queries = RecurrentCycle(cycle_len, num_variables)
        nn.init.normal_(self.queries.data, std=0.02)
        self.cross_attn = GraphAttention(seq_len, num_heads, dropout=dropout)
        self.input_proj = nn.Linear(seq_len, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, pred_len))

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """Forecast ``[B, H, V]``; the last mark column must be the cycle phase."""
        _check_input(x, self.seq_len, self.num_variables)
        phase, _ = split_phase(x_mark)
        if self.use_norm:
            x, stats = normalize(x)
        nodes = x.transpose(1, 2)  # [B, V, L]
        queries = self.queries(phase, self.seq_len).transpose(1, 2)  # [B, V, L]
        message = self.cross_attn((nodes, queries))  # complete bipartite graph: variables -> query nodes
        h = self.input_proj(nodes + message)  # [B, V, d]
        y = self.head(h + self.mlp(h)).transpose(1, 2)  # [B, H, V]
        return stats.undo(y) if self.use_norm else y
