"""models/autoformer.py: series decomposition and auto-correlation on the circulant graph of time delays."""

import pytest
import torch

from conftest import FORECAST_DIMS, forecast_inputs
from graphformer.layers import GraphformerLayer
from graphformer.models import (
    AutoCorrelation,
    Autoformer,
    SeriesDecomposition,
    autocorrelation,
)
from graphformer.models.autoformer import (
    AutoformerDecoderLayer,
    SeasonalPart,
    circulant_edge_index,
)

B, L, H, V, F = FORECAST_DIMS


def test_fft_autocorrelation_equals_the_direct_sum():
    g = torch.Generator().manual_seed(1)
    for length in (1, 7, 24, 25):
        q = torch.randn(3, 2, length, generator=g, dtype=torch.float64)
        k = torch.randn(3, 2, length, generator=g, dtype=torch.float64)
        direct = torch.zeros_like(q)
        for tau in range(length):  # R(tau) = sum_t q_t k_{(t - tau) mod L}, O(L^2)
            for t in range(length):
                direct[..., tau] += q[..., t] * k[..., (t - tau) % length]
        torch.testing.assert_close(autocorrelation(q, k), direct)
    # along another axis, and the zero lag of a series with itself is its energy
    q = torch.randn(2, 16, 3, generator=g, dtype=torch.float64)
    r = autocorrelation(q, q, dim=1)
    torch.testing.assert_close(r[:, 0], q.square().sum(1))
    assert (r[:, 1:] <= r[:, :1] + 1e-12).all()  # |R(tau)| <= R(0) (Cauchy-Schwarz)
    with pytest.raises(ValueError, match="same shape"):
        autocorrelation(q, q[:, :5])


def test_series_decomposition_parts_sum_to_the_input_and_keep_constants():
    x = torch.randn(2, 30, 3)
    seasonal, trend = SeriesDecomposition(5)(x)
    torch.testing.assert_close(seasonal + trend, x)
    # an interior trend value is the centred moving average
    torch.testing.assert_close(trend[:, 10], x[:, 8:13].mean(1))
    const = torch.full((1, 12, 2), 3.5)
    s, t = SeriesDecomposition(25)(const)
    torch.testing.assert_close(t, const)
    torch.testing.assert_close(s, torch.zeros_like(const))
    with pytest.raises(ValueError, match="odd"):
        SeriesDecomposition(4)


def test_autocorrelation_is_message_passing_on_the_circulant_graph():
    """Rolled-value aggregation == explicit sum over circulant edges with one softmax over the lags."""
    torch.manual_seed(0)
    attn = AutoCorrelation(8, num_heads=2, factor=2.0).eval()
    x = torch.randn(3, 20, 8)
    out = attn(x)
    scores, v = attn.lag_scores(x)  # [B, L], [B, H, C, L]
    k = attn.num_delays(20)
    assert k == int(2.0 * torch.log(torch.tensor(20.0)))
    for b in range(3):
        w, delays = torch.topk(scores[b], k)
        a = torch.softmax(w, 0)
        edges = circulant_edge_index(20, delays)  # [2, L k], delay-major
        weight = a.repeat_interleave(20)  # the score of an edge depends only on its delay
        values = v[b].reshape(-1, 20).T  # [L, H*C]
        msg = torch.zeros_like(values).index_add_(0, edges[1], values[edges[0]] * weight[:, None])
        expected = attn.out_proj(msg.view(20, 2, 4).permute(0, 1, 2).reshape(20, 8))
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=1e-5)
        # every node has the same k in-neighbours, at offsets +tau
        deg = torch.bincount(edges[1], minlength=20)
        assert (deg == k).all()
        assert ((edges[0] - edges[1]) % 20).view(k, 20).unique(dim=1).size(1) == 1


def test_autocorrelation_training_shares_the_delays_of_the_batch():
    torch.manual_seed(0)
    attn = AutoCorrelation(8, num_heads=2, factor=1.0).train()
    x = torch.randn(4, 16, 8)
    scores, v = attn.lag_scores(x)
    k = attn.num_delays(16)
    delays = torch.topk(scores.mean(0), k).indices
    weights = torch.softmax(scores[:, delays], -1)
    expected = sum(torch.roll(v, -int(d), -1) * weights[:, m].view(-1, 1, 1, 1) for m, d in enumerate(delays))
    expected = attn.out_proj(expected.permute(0, 3, 1, 2).reshape(4, 16, 8))
    torch.testing.assert_close(attn(x), expected)
    # cross auto-correlation: longer memory is cut, shorter memory is zero-padded
    assert attn((torch.randn(4, 30, 8), x)).shape == (4, 16, 8)
    assert attn((torch.randn(4, 5, 8), x)).shape == (4, 16, 8)
    with pytest.raises(ValueError, match="circulant"):
        attn(x, torch.zeros(2, 1, dtype=torch.long))


def test_autoformer_structure():
    model = Autoformer(
        L, 12, H, V, F, d_model=16, num_heads=2, d_ff=32, encoder_layers=2, decoder_layers=1, moving_avg=5
    )
    # the encoder is the library's layer with the attention and the norms swapped, nothing else
    assert len(model.encoder) == 2
    for layer in model.encoder:
        assert type(layer) is GraphformerLayer
        assert isinstance(layer.self_attn, AutoCorrelation)
        assert isinstance(layer.norm1, SeasonalPart) and isinstance(layer.norm2, SeasonalPart)
        assert layer.feedforward.linear1.bias is None
    assert len(model.decoder) == 1 and isinstance(model.decoder[0], AutoformerDecoderLayer)
    x, x_mark, y_mark = forecast_inputs()
    y = model(x, x_mark, y_mark)
    assert y.shape == (B, H, V)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        # the forecast starts from the look-back's decomposition: a constant series gives a constant forecast
        # when the seasonal path is silenced (zero projection)
        model.projection.weight.zero_()
        model.projection.bias.zero_()
        for layer in model.decoder:
            layer.trend_projection.weight.zero_()
        const = torch.full((B, L, V), 2.5)
        torch.testing.assert_close(model(const, x_mark, y_mark), torch.full((B, H, V), 2.5))
    with pytest.raises(ValueError, match="label_len"):
        Autoformer(L, L + 1, H, V)
    with pytest.raises(ValueError, match="time features"):
        model(x, None, None)
