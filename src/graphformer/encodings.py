"""Positions, times and graph structure as node features or attention biases.

Attention alone is blind to order: "我爱你" and "你爱我" hold the same tokens,
and a complete graph has no first node. Everything that tells nodes apart
comes in from outside the layer, as a node feature (added or concatenated)
or as a bias on edges (``attn_bias``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["sinusoidal", "time_features"]


def sinusoidal(num_positions: int, dim: int, base: float = 10000.0) -> Tensor:
    r"""Sinusoidal positional encoding (Vaswani et al. 2017), ``[num_positions, dim]``.

    .. math::
        PE_{p, 2i} = \sin(p / base^{2i/dim}), \quad PE_{p, 2i+1} = \cos(p / base^{2i/dim})
    """
    if num_positions < 0 or dim <= 0:
        raise ValueError(f"need num_positions >= 0 and dim > 0, got {num_positions} and {dim}")
    pos = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(base) / dim))
    pe = torch.zeros(num_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.float()


_FREQ_FEATURES = {
    # the "timeF" features of Informer / Autoformer / iTransformer, finest first
    "t": ["minute", "hour", "weekday", "day", "dayofyear"],
    "min": ["minute", "hour", "weekday", "day", "dayofyear"],
    "h": ["hour", "weekday", "day", "dayofyear"],
    "d": ["weekday", "day", "dayofyear"],
    "b": ["weekday", "day", "dayofyear"],
    "w": ["day", "weekofyear"],
    "m": ["month"],
}


def time_features(dates, freq: str = "h") -> Tensor:
    """Calendar features of timestamps, each scaled to [-0.5, 0.5], ``[T, F]``.

    minute/59, hour/23, weekday/6, (day-1)/30, (dayofyear-1)/365,
    (month-1)/11, (weekofyear-1)/52, each minus 0.5; which ones depends on
    ``freq`` (``"t"``/``"min"`` 15-minute data adds the minute; ``"h"`` hourly:
    hour, weekday, day, day of year; ``"d"`` daily; ``"w"``; ``"m"``).

    Args:
        dates: anything ``numpy.asarray(..., dtype="datetime64[m]")`` accepts
            (strings like ``"2016-07-01 00:00:00"``, datetime64, pandas).
        freq: the sampling frequency code.
    """
    if freq not in _FREQ_FEATURES:
        raise ValueError(f"freq must be one of {sorted(_FREQ_FEATURES)}, got {freq!r}")
    stamps = np.asarray(dates, dtype="datetime64[m]")
    minutes = stamps.astype("datetime64[m]").astype(np.int64)
    days = stamps.astype("datetime64[D]")
    year_start = stamps.astype("datetime64[Y]").astype("datetime64[D]")
    month_start = stamps.astype("datetime64[M]").astype("datetime64[D]")
    values = {
        "minute": (minutes % 60) / 59.0,
        "hour": ((minutes // 60) % 24) / 23.0,
        "weekday": ((days.astype(np.int64) + 3) % 7) / 6.0,  # 1970-01-01 was a Thursday (weekday 3)
        "day": (days - month_start).astype(np.int64) / 30.0,
        "dayofyear": (days - year_start).astype(np.int64) / 365.0,
        "month": (stamps.astype("datetime64[M]").astype(np.int64) % 12) / 11.0,
        "weekofyear": ((days - year_start).astype(np.int64) // 7) / 52.0,
    }
    cols = [values[name] - 0.5 for name in _FREQ_FEATURES[freq]]
    return torch.tensor(np.stack(cols, axis=1), dtype=torch.float32)
