"""The examples run, at small settings, and compute what they claim (the tutorial: tests/test_tutorial.py).

Each example is imported from ``examples/`` and its ``main(argv)`` called;
the tests assert on the returned numbers, checked against independent
computations. Full training runs are marked ``slow``.
"""

from __future__ import annotations

import re
import sys
from fractions import Fraction

import pytest
import torch

from conftest import load_script as load  # load(name, folder): import examples/<name>.py


@pytest.fixture(scope="module")
def sentence():
    return load("sentence_as_graph")


# ------------------------------------------------------------ sentence_as_graph
def test_sentence_numbers_match_softmax_by_hand(sentence, capsys):
    result = sentence.main([])
    v = torch.tensor(result["values"], dtype=torch.float64)
    scores = v[:, None] * v[None, :]  # d_model = 1: q_i k_j / sqrt(1)
    weights = torch.softmax(scores, dim=-1)
    torch.testing.assert_close(torch.tensor(result["scores"], dtype=torch.float64), scores)
    torch.testing.assert_close(torch.tensor(result["weights"], dtype=torch.float64), weights)
    torch.testing.assert_close(torch.tensor(result["outputs"], dtype=torch.float64), weights @ v)
    assert result["tokens"] == ["我", "爱", "你"]
    printed = capsys.readouterr().out
    # the printed weights table is the one format_table makes of the layer's weights
    from graphformer._text import format_table

    assert format_table(weights, result["tokens"], result["tokens"]).split("\n")[1] in printed


def test_sentence_illustrative_weights_exact(sentence, capsys):
    result = sentence.main([])
    a = torch.tensor(result["illustrative_weights"], dtype=torch.float64)
    by_float = a @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    exact = [float(Fraction(s)) for s in result["illustrative_outputs"]]
    assert exact == pytest.approx(by_float.tolist(), abs=1e-12)
    assert result["illustrative_layer_error"] < 1e-12
    assert result["illustrative_terms"][0].startswith("我: 0.6×1 + 0.2×2 + 0.2×3 = ")
    printed = capsys.readouterr().out
    assert all(line in printed for line in result["illustrative_terms"])


def test_sentence_order_needs_positions(sentence, capsys):
    result = sentence.main([])
    assert result["same_up_to_permutation"] and result["permutation_error"] < 1e-12
    assert result["positions_differ"] and result["position_difference"] > 1e-3
    assert result["added_plain_difference"] < 1e-10 < 1e-3 < result["added_position_difference"]
    # with positions, each sentence's weights are still a softmax: rows sum to one
    for key in ("positional_weights", "positional_weights_reversed"):
        rows = torch.tensor(result[key], dtype=torch.float64).sum(-1)
        torch.testing.assert_close(rows, torch.ones(3, dtype=torch.float64))


def test_sentence_decimal(sentence):
    mod = sentence
    assert mod.decimal(Fraction(8, 5)) == "1.6"
    assert mod.decimal(Fraction(2)) == "2"
    assert mod.decimal(Fraction(1, 3)) == "1/3"
    assert mod.decimal(Fraction(1, 8)) == "0.125"


def test_sentence_rejects_one_token(sentence):
    with pytest.raises(ValueError, match="--sentence"):
        sentence.main(["--sentence", "我"])


def test_sentence_png(sentence, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "s.png"
    result = sentence.main(["--png", str(path)])
    assert result["png"] == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000


def test_sentence_png_without_matplotlib(sentence, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = sentence.main(["--png", str(tmp_path / "s.png")])
    assert result["png"] is None and not (tmp_path / "s.png").exists()
    assert "graphformer[viz]" in capsys.readouterr().err


# -------------------------------------------------------------- cross_attention
def test_cross_attention_retrieves_and_dense_equals_sparse(capsys):
    mod = load("cross_attention")
    result = mod.main(["--steps", "300", "--test-size", "200"])
    assert result["retrieval_accuracy"] > max(0.9, 5 * result["chance"])
    assert result["accuracy"] > 0.9
    assert result["dense_sparse_max_diff"] < 1e-5
    assert result["dense_sparse_weight_diff"] < 1e-5


def test_cross_attention_batch_edges_stay_in_their_image():
    mod = load("cross_attention")
    B, P, W = 3, 9, 2  # noqa: N806
    ei = mod.sparse_batch(torch.zeros(B, P, 1), torch.zeros(B, W, dtype=torch.long))
    assert ei.shape == (2, B * P * W)
    assert torch.equal(ei[0] // P, ei[1] // W)  # source and target from the same image
    assert len({tuple(e) for e in ei.t().tolist()}) == B * P * W  # no duplicates


# -------------------------------------------------------------- encoder_decoder
def test_encoder_decoder_beats_chance(capsys):
    mod = load("encoder_decoder")
    result = mod.main(
        [
            "--length",
            "6",
            "--d-model",
            "32",
            "--layers",
            "1",
            "--steps",
            "200",
            "--batch-size",
            "64",
            "--test-size",
            "200",
        ]
    )
    assert result["token_accuracy"] > max(0.6, 5 * result["chance"])


def test_encoder_decoder_greedy_matches_teacher_forcing_when_right():
    mod = load("encoder_decoder")
    torch.manual_seed(0)
    model = mod.Seq2Seq(mod.Seq2SeqConfig(length=5, d_model=16, num_heads=2, dim_feedforward=32)).eval()
    src = torch.randint(0, 10, (4, 5))
    pred = model.greedy(src)
    assert pred.shape == (4, 5) and int(pred.max()) < 10
    # feeding the greedy output back with teacher forcing reproduces it (the decoder is causal)
    with torch.no_grad():
        again = model(src, mod.teacher_input(pred)).argmax(-1)
    assert torch.equal(again, pred)


@pytest.mark.slow
def test_encoder_decoder_full_settings_reach_99_percent(capsys):
    mod = load("encoder_decoder")
    result = mod.main([])
    assert result["token_accuracy"] >= 0.99
    assert result["train_cpu_seconds"] < 60


# ------------------------------------------------------------- patches_as_graph
def test_patches_helpers():
    mod = load("patches_as_graph")
    images = torch.arange(2 * 64, dtype=torch.float32).view(2, 8, 8)
    p = mod.patchify(images, 2)  # [2, 16, 4]
    assert p.shape == (2, 16, 4)
    torch.testing.assert_close(p[0, 5], images[0, 2:4, 2:4].flatten())  # patch (1, 1)
    pe = mod.sinusoidal_2d(4, 4, 8)
    assert not torch.allclose(pe[1, :4], pe[13, :4])  # rows 0 and 3 differ in the row half
    torch.testing.assert_close(pe[1, :4], pe[2, :4])  # same row (0), same row half
    torch.testing.assert_close(pe[1, 4:], pe[13, 4:])  # same column (1), same column half
    ei = mod.grid_edge_index(4)
    assert ei.size(1) == 2 * 2 * 4 * 3 + 16
    deg = torch.bincount(ei[1], minlength=16)
    assert int(deg.min()) == 3 and int(deg.max()) == 5  # corner: 2 + self, inside: 4 + self


@pytest.mark.parametrize("graph", ["complete", "grid"])
def test_patches_conv_feedforward_stays_inside_each_image(graph):
    mod = load("patches_as_graph")
    torch.manual_seed(0)
    model = mod.PatchGraphformer(
        2, 16, num_heads=2, dim_feedforward=16, num_layers=1, graph=graph, feedforward="conv"
    ).eval()
    images = torch.rand(3, 8, 8)
    with torch.no_grad():
        together = model(images)
        alone = torch.cat([model(images[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_patches_classifier_beats_chance(capsys):
    mod = load("patches_as_graph")
    result = mod.main(["--patch", "4", "--epochs", "10", "--limit", "500", "--d-model", "16", "--layers", "1"])
    assert result["num_nodes"] == 4 and result["edges_per_image"] == 16
    assert result["test_accuracy"] > max(0.4, 3 * result["chance"])


def test_patches_grid_conv_lowers_the_training_loss(capsys):
    mod = load("patches_as_graph")
    result = mod.main(
        [
            "--graph",
            "grid",
            "--feedforward",
            "conv",
            "--epochs",
            "5",
            "--limit",
            "100",
            "--d-model",
            "16",
            "--layers",
            "1",
        ]
    )
    assert result["edges_per_image"] == 48 + 16 and result["num_test"] == 20
    correct = result["test_accuracy"] * result["num_test"]
    assert abs(correct - round(correct)) < 1e-4  # a fraction of the 20 held-out images
    losses = [float(v) for v in re.findall(r"training loss ([0-9.]+)", capsys.readouterr().out)]
    assert len(losses) == 5 and losses[-1] < losses[0]


@pytest.mark.slow
@pytest.mark.parametrize("graph", ["complete", "grid"])
def test_patches_full_settings(graph, capsys):
    mod = load("patches_as_graph")
    result = mod.main(["--graph", graph])
    assert result["test_accuracy"] >= 0.95
