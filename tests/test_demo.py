"""Tests of ``graphformer demo`` (demo.py).

The demo's printed metrics are checked against the same numbers computed
here independently (plain softmax arithmetic and numpy matrices).
"""

import json
import math

import networkx as nx
import numpy as np
import pytest

from graphformer.cli import main


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def attention_by_hand(values, causal=False):
    """d_model = 1, identity projections: s_ij = x_i x_j, softmax over j (j <= i if causal), out_i = sum_j a_ij x_j."""
    out = []
    for i, xi in enumerate(values):
        keys = values[: i + 1] if causal else values
        scores = [xi * xj for xj in keys]
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        total = sum(weights)
        out.append(sum(w / total * xj for w, xj in zip(weights, keys)))
    return out


@pytest.mark.parametrize("sentence", [None, "the cat sat on"])
def test_demo_prints_metrics_that_match_a_computation_by_hand(capsys, sentence):
    argv = ["demo"] + ([] if sentence is None else ["--sentence", sentence])
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    metrics = last_json_line(stdout)
    tokens = (sentence or "我 爱 你").split()
    assert metrics["tokens"] == tokens
    values = [float(t) for t in range(1, len(tokens) + 1)]
    np.testing.assert_allclose(metrics["complete_outputs"], attention_by_hand(values), rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics["causal_outputs"], attention_by_hand(values, causal=True), rtol=0, atol=1e-12)
    assert metrics["causal_outputs"][0] == 1.0  # the first token reads only itself
    assert metrics["causal_outputs"][-1] == pytest.approx(metrics["complete_outputs"][-1], abs=1e-12)

    # the GCN part: D^-1/2 (A + I) D^-1/2 x on the path graph 0 - 1 - 2 - 3 - 4
    a_hat = nx.to_numpy_array(nx.path_graph(5)) + np.eye(5)
    d = a_hat.sum(1) ** -0.5
    expected = (d[:, None] * a_hat * d[None, :]) @ np.arange(1.0, 6.0)
    np.testing.assert_allclose(metrics["gcn_outputs"], expected, rtol=0, atol=1e-12)
    assert 0.0 <= metrics["gcn_max_abs_error"] < 1e-12
    for token in tokens:  # the tables name the tokens
        assert token in stdout


def test_demo_softmax_table_shows_the_weights_of_the_worked_example(capsys):
    assert main(["demo"]) == 0
    stdout = capsys.readouterr().out
    # first row of the 3 x 3 weights for tokens 1, 2, 3: softmax(1, 2, 3)
    weights = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    assert " ".join(f"{w:.4f}" for w in weights) in " ".join(stdout.split())


def test_demo_rejects_an_empty_sentence(capsys):
    assert main(["demo", "--sentence", "   "]) == 1
    captured = capsys.readouterr()
    assert "--sentence" in captured.err and captured.out.strip() == ""
