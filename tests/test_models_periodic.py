"""models/periodic.py: CycleNet's recurrent cycles and TQNet's periodic temporal queries."""

import pytest
import torch

from conftest import FORECAST_DIMS
from graphformer.attention import GraphAttention
from graphformer.data import cycle_phase, prepare_forecast_data
from graphformer.models import (
    CycleForecaster,
    ITransformer,
    RecurrentCycle,
    TemporalQueryForecaster,
    normalize,
)

B, L, H, V, F = FORECAST_DIMS


# ------------------------------------------------------------ periodic priors
def _phase_marks(start: torch.Tensor, length: int, cycle: int, features: int = F) -> torch.Tensor:
    rows = start.view(-1, 1) + torch.arange(length)
    return torch.cat([torch.rand(start.numel(), length, features) - 0.5, (rows % cycle).float().unsqueeze(-1)], -1)


def test_recurrent_cycle_rolls_to_the_phase():
    cycle = RecurrentCycle(5, 2)
    with torch.no_grad():
        cycle.data.copy_(torch.arange(10.0).view(5, 2))
    out = cycle(torch.tensor([0, 3]), 7)
    assert out.shape == (2, 7, 2)
    torch.testing.assert_close(out[1, :, 0], torch.tensor([6.0, 8, 0, 2, 4, 6, 8]))
    torch.testing.assert_close(out[0], cycle.data[torch.arange(7) % 5])


def test_cycle_forecaster_removes_and_restores_the_cycle():
    W = 6  # noqa: N806
    backbone = ITransformer(L, H, d_model=16, num_heads=2, d_ff=32, use_norm=False)
    model = CycleForecaster(backbone, L, H, V, W).eval()
    with torch.no_grad():
        model.cycle.data.normal_()
    start = torch.tensor([0, 1, 5, 13])
    x = torch.randn(B, L, V) * 2 + 1
    x_mark, y_mark = _phase_marks(start, L, W), _phase_marks(start + L, H, W)
    y = model(x, x_mark, y_mark)
    # by hand: normalise, subtract the cycle at the window's phases, backbone, add the cycle after the origin
    xn, stats = normalize(x)
    phase = start % W
    cyc_in = model.cycle.data[(phase.view(-1, 1) + torch.arange(L)) % W]
    cyc_out = model.cycle.data[(phase.view(-1, 1) + L + torch.arange(H)) % W]
    expected = stats.undo(backbone(xn - cyc_in, x_mark[..., :-1]) + cyc_out)
    torch.testing.assert_close(y, expected)
    # a window a whole period later gets the same cycle; half a period later, another one
    later = x_mark.clone()
    later[..., -1] = ((start + W).view(-1, 1) + torch.arange(L)) % W
    torch.testing.assert_close(model(x, later, None), y)
    later[..., -1] = ((start + W // 2).view(-1, 1) + torch.arange(L)) % W
    assert not torch.allclose(model(x, later, None), y)
    with pytest.raises(ValueError, match="cycle_phase"):
        model(x, None, None)


def test_temporal_queries_attend_over_the_bipartite_graph():
    W = 4  # noqa: N806
    model = TemporalQueryForecaster(L, H, V, W, d_model=16, num_heads=2, dropout=0.0).eval()
    start = torch.tensor([0, 1, 2, 7])
    x = torch.randn(B, L, V)
    x_mark = _phase_marks(start, L, W)
    y = model(x, x_mark, None)
    assert y.shape == (B, H, V)
    # by hand: query node v carries the periodic table at the window's phases; keys/values are the variables
    xn, stats = normalize(x)
    nodes = xn.transpose(1, 2)
    queries = model.queries.data[(start.view(-1, 1) % W + torch.arange(L)) % W].transpose(1, 2)  # [B, V, L]
    attn = model.cross_attn
    assert isinstance(attn, GraphAttention)
    msg = attn((nodes, queries))  # dense complete bipartite graph: V variable nodes -> V query nodes
    edges = torch.cartesian_prod(torch.arange(V), torch.arange(V)).T  # every source j -> every target i
    flat = attn(
        (nodes.reshape(B * V, L), queries.reshape(B * V, L)), torch.cat([edges + b * V for b in range(B)], dim=1)
    )  # the same graph, edge by edge
    torch.testing.assert_close(flat.view(B, V, L), msg, atol=1e-5, rtol=1e-5)
    # the sources are a set: permuting the variable nodes leaves every query node's message unchanged
    perm = torch.randperm(V)
    torch.testing.assert_close(attn((nodes[:, perm], queries)), msg, atol=1e-5, rtol=1e-5)
    h = model.input_proj(nodes + msg)
    torch.testing.assert_close(y, stats.undo(model.head(h + model.mlp(h)).transpose(1, 2)))
    # windows with equal phase mod W share their queries
    same = model(x, _phase_marks(start + W, L, W), None)
    torch.testing.assert_close(same, y)
    with pytest.raises(ValueError, match="divide"):
        TemporalQueryForecaster(L, H, V, W, num_heads=5)


def test_cycle_phase_column_follows_the_series_rows():
    import numpy as np

    from graphformer.data import TimeSeries

    dates = np.datetime64("2020-01-01T00:00", "s") + np.arange(200) * np.timedelta64(1, "h")
    ts = TimeSeries(np.random.default_rng(0).normal(size=(200, 2)), ["a", "b"], dates, "toy")
    data = prepare_forecast_data(ts, 24, 12)
    with_phase = cycle_phase(data, 24)
    for block in ("train", "val", "test"):
        plain, extended = getattr(data, block), getattr(with_phase, block)
        assert extended.marks.size(1) == plain.marks.size(1) + 1
        torch.testing.assert_close(extended.marks[:, :-1], plain.marks)
        rows = torch.arange(plain.offset, plain.offset + plain.values.size(0))
        torch.testing.assert_close(extended.marks[:, -1], (rows % 24).float())
        assert len(extended) == len(plain)
    x, y, x_mark, y_mark = with_phase.test[3]
    assert int(x_mark[0, -1]) == (with_phase.test.offset + 3) % 24
    assert int(y_mark[0, -1]) == with_phase.test.origin(3) % 24
    with pytest.raises(ValueError, match="cycle_len"):
        cycle_phase(data, 0)
