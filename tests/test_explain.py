import json
import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from graphformer import cli, explain, scores
from graphformer.explain import inputs

TOKENS = ["我", "爱", "你"]


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _bits(p: np.ndarray) -> np.ndarray:
    return np.array([-sum(v * math.log2(v) for v in row if v > 0) for row in p])


def _table(text: str, title: str) -> tuple[list[str], np.ndarray]:
    """Row labels and numbers of the printed table whose title starts with ``title``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    labels, rows = [], []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        parts = line.split()
        labels.append(parts[0])
        rows.append([float(v) for v in parts[1:]])
    return labels, np.array(rows)


def _run_cli(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(["explain", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------- the worked example
def test_worked_example_by_hand():
    t = explain.trace("我 爱 你")
    x = np.array([1.0, 2.0, 3.0])
    scores = np.outer(x, x)  # Q = K = V = X, d = 1: [[1, 2, 3], [2, 4, 6], [3, 6, 9]]
    weights = _softmax_rows(scores)
    assert t.tokens == TOKENS
    np.testing.assert_allclose(t.x.numpy().ravel(), x)
    for m in (t.q, t.k, t.v):
        np.testing.assert_allclose(m[0].numpy().ravel(), x)
    np.testing.assert_allclose(t.scores[0].numpy(), scores, atol=1e-12)
    np.testing.assert_allclose(t.weights[0].numpy(), weights, atol=1e-12)
    np.testing.assert_allclose(t.output.numpy().ravel(), weights @ x, atol=1e-12)
    np.testing.assert_allclose(t.entropy[0].numpy(), _bits(weights), atol=1e-12)
    assert t.max_abs_error < 1e-12


def test_cli_prints_the_worked_example(capsys):
    code, out, _ = _run_cli([], capsys)
    assert code == 0
    weights = _softmax_rows(np.outer([1.0, 2, 3], [1.0, 2, 3]))
    labels, printed = _table(out, "weights")
    assert labels == TOKENS
    np.testing.assert_allclose(printed, weights, atol=5e-5)
    _, scores = _table(out, "scores")
    np.testing.assert_allclose(scores, [[1, 2, 3], [2, 4, 6], [3, 6, 9]])
    _, outputs = _table(out, "outputs")
    np.testing.assert_allclose(outputs.ravel(), weights @ [1.0, 2, 3], atol=5e-5)
    _, ent = _table(out, "attention entropy")
    np.testing.assert_allclose(ent[:, 0], _bits(weights), atol=5e-5)
    np.testing.assert_allclose(ent[:, 1], math.log2(3), atol=5e-5)
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["tokens"] == TOKENS
    np.testing.assert_allclose(metrics["weights"][0], weights, atol=1e-12)
    np.testing.assert_allclose(metrics["entropy_bits"][0], _bits(weights), atol=1e-12)


def test_causal_sentence():
    t = explain.trace("a b c d", causal=True)
    x = np.arange(1.0, 5.0)
    w = t.weights[0].numpy()
    assert np.all(np.triu(w, 1) == 0)
    assert np.all(np.isneginf(np.triu(t.scores[0].numpy(), 1)[np.triu_indices(4, 1)]))
    for i in range(4):
        np.testing.assert_allclose(w[i, : i + 1], _softmax_rows((x[i] * x[: i + 1])[None])[0], atol=1e-12)
    assert t.entropy[0, 0] == 0.0  # the first token can only read itself
    np.testing.assert_allclose(t.output.numpy().ravel(), w @ x, atol=1e-12)


def test_random_multi_head_matches_an_independent_computation():
    t = explain.trace("the cat sat on the mat", d_model=4, num_heads=2, seed=3)
    x = t.x.numpy()
    assert np.allclose(x * 100, np.round(x * 100))  # random numbers have two decimals: exact in the tables
    q, k, v = x @ t.w_q.numpy(), x @ t.w_k.numpy(), x @ t.w_v.numpy()
    heads = []
    for h in range(2):
        sl = slice(2 * h, 2 * h + 2)
        s = q[:, sl] @ k[:, sl].T / math.sqrt(2)
        a = _softmax_rows(s)
        np.testing.assert_allclose(t.scores[h].numpy(), s, atol=1e-12)
        np.testing.assert_allclose(t.weights[h].numpy(), a, atol=1e-12)
        np.testing.assert_allclose(t.entropy[h].numpy(), _bits(a), atol=1e-12)
        heads.append(a @ v[:, sl])
    np.testing.assert_allclose(t.output.numpy(), np.concatenate(heads, 1) @ t.w_o.numpy(), atol=1e-12)
    # the same seed gives the same trace, another seed another one
    torch.testing.assert_close(explain.trace("the cat sat on the mat", d_model=4, num_heads=2, seed=3).output, t.output)
    assert not torch.allclose(explain.trace("the cat sat on the mat", d_model=4, num_heads=2, seed=4).output, t.output)


def test_values_and_weights_by_hand(capsys):
    code, out, _ = _run_cli(
        ["a b", "--values", "1,0;0,2", "--wq", "identity", "--wk", "0,1;1,0", "--wv", "2,0;0,1", "--wo", "1,1;0,1"],
        capsys,
    )
    assert code == 0
    x = np.array([[1.0, 0], [0, 2]])
    q, k, v = x, x @ np.array([[0.0, 1], [1, 0]]), x @ np.array([[2.0, 0], [0, 1]])
    a = _softmax_rows(q @ k.T / math.sqrt(2))
    _, printed = _table(out, "weights")
    np.testing.assert_allclose(printed, a, atol=5e-5)
    metrics = json.loads(out.strip().splitlines()[-1])
    np.testing.assert_allclose(metrics["outputs"], a @ v @ np.array([[1.0, 1], [0, 1]]), atol=1e-12)


def test_positional_encoding_is_added():
    t = explain.trace("a b c", d_model=2, positional="sinusoidal", values=[[1.0, 0], [0, 1], [1, 1]])
    expected = torch.tensor([[1.0, 0], [0, 1], [1, 1]], dtype=torch.float64) + explain.encodings.sinusoidal(3, 2)
    torch.testing.assert_close(t.x, expected.double(), atol=1e-7, rtol=0)


# ------------------------------------------------------------------ graphs
def test_named_graph_with_additive_score():
    t = explain.trace(nx.karate_club_graph(), d_model=4, num_heads=2, score="additive", seed=1)
    graph = nx.karate_club_graph()
    mask = nx.to_numpy_array(graph) > 0
    np.fill_diagonal(mask, True)  # self-loops added
    np.testing.assert_array_equal(t.mask.numpy(), mask)
    v = t.x.numpy() @ t.w_v.numpy()
    for h in range(2):
        sl = slice(2 * h, 2 * h + 2)
        a_src, a_dst = t.score_params["att_src"][h].numpy(), t.score_params["att_dst"][h].numpy()
        s = (v[:, sl] @ a_dst)[:, None] + (v[:, sl] @ a_src)[None, :]
        s = np.where(s > 0, s, 0.2 * s)
        s = np.where(mask, s, -np.inf)
        a = _softmax_rows(s)
        np.testing.assert_allclose(t.weights[h].numpy(), a, atol=1e-12)
        np.testing.assert_allclose(t.entropy[h].numpy(), _bits(a), atol=1e-12)
    assert t.q is None and t.k is None


def test_gcn_score_on_a_path_graph():
    t = explain.trace(nx.path_graph(5), score="gcn")
    adj = nx.to_numpy_array(nx.path_graph(5)) + np.eye(5)
    dinv = 1 / np.sqrt(adj.sum(1))
    expected = dinv[:, None] * adj * dinv[None, :]
    np.testing.assert_allclose(t.weights[0].numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(t.output.numpy().ravel(), expected @ np.arange(1.0, 6.0), atol=1e-12)


def test_edges_file_directed_and_no_self_loops(tmp_path, capsys):
    edges = tmp_path / "edges.txt"
    edges.write_text("# a small directed graph\na b\nb c\nc, a\nc d\n", encoding="utf-8")
    code, out, _ = _run_cli(["--edges", str(edges), "--directed", "--no-self-loops", "--values", "1,2,3,4"], capsys)
    assert code == 0
    labels, w = _table(out, "weights")
    assert labels == ["a", "b", "c", "d"]
    # each node attends to its single in-neighbour: weight 1 (a <- c, b <- a, c <- b, d <- c)
    np.testing.assert_allclose(w, [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], atol=1e-12)
    metrics = json.loads(out.strip().splitlines()[-1])
    np.testing.assert_allclose(np.ravel(metrics["outputs"]), [3, 1, 2, 3], atol=1e-12)
    np.testing.assert_allclose(metrics["entropy_bits"][0], 0.0, atol=1e-12)


def test_named_graph_cli_and_rotary(capsys):
    code, out, _ = _run_cli(["--graph", "cycle", "--nodes", "6", "--d-model", "2", "--score", "rotary"], capsys)
    assert code == 0
    labels, w = _table(out, "weights")
    assert labels == [str(i) for i in range(6)]
    assert np.allclose(w.sum(1), 1.0, atol=1e-3)
    assert np.all(w[0, 2:5] == 0)  # not neighbours of node 0 on the ring (self-loops are)


def test_x_from_csv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("f0,f1\n1,2\n3,4\n5,6\n", encoding="utf-8")
    args = cli.build_parser().parse_args(["explain", "--x", str(path)])
    metrics = args._run(args)
    assert len(metrics["outputs"]) == 3 and len(metrics["outputs"][0]) == 2
    args = cli.build_parser().parse_args(
        ["explain", "--x", str(path), "--wq", "identity", "--wk", "identity", "--wv", "identity"]
    )
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=torch.float64)  # the CSV's rows, read as written
    expected = torch.softmax(x @ x.T / 2**0.5, dim=-1) @ x
    torch.testing.assert_close(torch.tensor(args._run(args)["outputs"], dtype=torch.float64), expected)


# ----------------------------------------------------------------- entropy
def test_entropy_bits_matches_the_formula():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    expected = [-sum(v * math.log2(v) for v in row if v > 0) for row in p.tolist()]
    torch.testing.assert_close(explain.entropy_bits(p), torch.tensor(expected, dtype=torch.float64))
    assert explain.entropy_bits(torch.full((1, 8), 1 / 8, dtype=torch.float64)).item() == pytest.approx(3.0)


# ------------------------------------------------------------------- files
def test_csv_files_load_back(tmp_path, capsys):
    code, _, _ = _run_cli(["--d-model", "2", "--heads", "2", "--causal", "--csv", str(tmp_path)], capsys)
    assert code == 0
    t = explain.trace("我 爱 你", d_model=2, num_heads=2, causal=True)
    matrices = t.matrices()
    assert {p.stem for p in tmp_path.glob("*.csv")} == set(matrices)
    for name, m in matrices.items():
        back = pd.read_csv(tmp_path / f"{name}.csv", index_col=0)
        np.testing.assert_array_equal(back.to_numpy(), m.numpy())  # -inf scores included, full precision
    assert list(pd.read_csv(tmp_path / "weights_head0.csv", index_col=0).index) == TOKENS


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--values", "1,2"], "2 rows for 3 tokens"),
        (["--score", "nope"], "unknown score"),
        (["a b", "--graph", "karate"], "one of"),
        (["--graph", "path", "--causal"], "causal"),
        (["--d-model", "3", "--heads", "2"], "not divisible"),
        (["--wq", "1,2"], "1 x 1"),
        (["--wq", "one"], "could not read"),
        (["--values", "1,2;3"], "same number"),
        (["--x", "/nonexistent/x.csv"], "no such file"),
        (["--graph", "karate", "--score", "additive", "--wq", "identity"], "no w_q projection"),
        (["--d-model", "2", "--wq", "identity", "--heads", "2", "--values", "1,2,3"], "columns but d_model"),
        (["--edges", "/nonexistent/edges.txt"], "no such file"),
        (["--values", "1,2,3", "--x", "x.csv"], "not both"),
    ],
)
def test_bad_options_give_clear_errors(argv, message, capsys):
    code, out, err = _run_cli(argv, capsys)
    assert code == 1
    assert message in err and err.startswith("graphformer explain: error:")


def test_bad_edges_file(tmp_path, capsys):
    path = tmp_path / "edges.txt"
    path.write_text("a b c\n", encoding="utf-8")
    code, _, err = _run_cli(["--edges", str(path)], capsys)
    assert code == 1 and "line 1" in err


def test_trace_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        explain.trace("   ")
    with pytest.raises(TypeError, match="sentence"):
        explain.trace(42)
    with pytest.raises(ValueError, match="num_nodes"):
        explain.trace(torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="positional"):
        explain.trace("a b", positional="learned")


# ------------------------------------------------- strict JSON, flags that must act
def _last_json(out: str) -> dict:
    """The command's metrics line, parsed strictly (NaN / Infinity are not JSON)."""

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(out.strip().splitlines()[-1], parse_constant=refuse)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--values", "1,nan,3"], "not a finite number"),
        (["--values", "1,inf,3"], "not a finite number"),
        (["--values", "1;-inf;3"], "not a finite number"),
        (["a b", "--values", "1,0;0,2", "--wq", "1,nan;0,1"], "not a finite number"),
        (["--values", "1e200,2,3"], "overflow"),
        (["--wo", "1e308", "--values", "1e10,2,3"], "overflow"),
    ],
)
def test_non_finite_numbers_are_an_error_never_nan_json(argv, message, capsys):
    code, out, err = _run_cli(argv, capsys)
    assert code == 1 and message in err
    assert "NaN" not in out and "Infinity" not in out  # nothing half-printed either


def test_non_finite_csv_inputs_are_an_error(tmp_path, capsys):
    path = tmp_path / "x.csv"
    path.write_text("f0\n1\nnan\n3\n", encoding="utf-8")
    code, _, err = _run_cli(["--x", str(path)], capsys)
    assert code == 1 and "--x" in err and "not a finite number" in err
    with pytest.raises(ValueError, match="values: entry"):
        explain.trace("a b", values=torch.tensor([1.0, float("nan")]))


def test_metrics_line_is_strict_json(capsys):
    code, out, _ = _run_cli(["--graph", "path", "--score", "gcn"], capsys)
    assert code == 0
    metrics = _last_json(out)
    assert metrics["formula"] == scores.GCNScore.formula


@pytest.mark.parametrize("digits", ["-1", "16", "100"])
def test_digits_out_of_range_is_a_clear_error(digits, capsys):
    code, _, err = _run_cli(["--digits", digits], capsys)
    assert code == 1 and "--digits must be an int from 0 to 15" in err
    with pytest.raises(ValueError, match="--digits"):
        explain.format_trace(explain.trace("a b"), int(digits))


def test_digits_sets_the_decimals(capsys):
    code, out, _ = _run_cli(["--digits", "0"], capsys)
    assert code == 0
    lines = out.splitlines()
    row = lines[lines.index(next(line for line in lines if line.startswith("scores"))) + 2]
    assert row.split() == ["我", "1", "2", "3"]


@pytest.mark.parametrize("graph", ["karate", "petersen", "house", "kite", "florentine"])
def test_nodes_on_a_fixed_size_graph_is_an_error(graph, capsys):
    code, _, err = _run_cli(["--graph", graph, "--nodes", "7"], capsys)
    assert code == 1 and "fixed size" in err and graph in err


def test_nodes_sizes_the_sized_graphs(capsys):
    for graph, nodes in (("path", 7), ("cycle", 4), ("star", 6), ("wheel", 5), ("complete", 3)):
        code, out, _ = _run_cli(["--graph", graph, "--nodes", str(nodes)], capsys)
        assert code == 0
        assert len(_last_json(out)["tokens"]) == nodes
    code, _, err = _run_cli(["--nodes", "3"], capsys)  # no graph to size
    assert code == 1 and "--nodes" in err


def test_flags_that_would_do_nothing_are_errors(capsys):
    code, _, err = _run_cli(["--directed"], capsys)
    assert code == 1 and "--edges" in err
    code, _, err = _run_cli(["a b", "--no-self-loops"], capsys)
    assert code == 1 and "sentence" in err


# ------------------------------------------------------------- formulas
def test_every_score_carries_its_formula_once():
    classes = {
        "dot": scores.DotScore,
        "additive": scores.AdditiveScore,
        "gat": scores.AdditiveScore,
        "gatv2": scores.GATv2Score,
        "gcn": scores.GCNScore,
        "mean": scores.MeanScore,
        "sum": scores.SumScore,
        "rotary": explain.encodings.RotaryScore,
    }
    seen = set()
    for name, cls in classes.items():
        assert isinstance(cls.formula, str) and cls.formula, name
        t = explain.trace("a b c", score=name)
        assert t.formula == cls.formula
        seen.add(cls.formula)
    assert len(seen) == len(set(classes.values()))  # no two classes share a formula
    assert "sum" not in scores.SumScore.formula  # the old text printed "s_ij = sum(q_i, k_j)"


@pytest.mark.parametrize("score", ["sum", "gcn", "mean", "dot", "gatv2"])
def test_cli_prints_the_scores_own_formula(score, capsys):
    code, out, _ = _run_cli(["--graph", "path", "--score", score], capsys)
    assert code == 0
    formula = scores.make_score(score, 1, 4).formula
    weight_titles = [line for line in out.splitlines() if line.startswith(("weights", "scores"))]
    assert any(formula in line for line in weight_titles)
    assert f"{score}(q_i, k_j)" not in out


def test_sum_score_weights_are_ones_on_edges(capsys):
    code, out, _ = _run_cli(["--graph", "path", "--nodes", "4", "--score", "sum", "--values", "1,2,3,4"], capsys)
    assert code == 0
    title = next(line for line in out.splitlines() if line.startswith("weights"))
    assert title.startswith("weights: a_ij = 1")
    adj = nx.to_numpy_array(nx.path_graph(4)) + np.eye(4)
    metrics = _last_json(out)
    np.testing.assert_array_equal(metrics["weights"][0], adj)
    np.testing.assert_allclose(np.ravel(metrics["outputs"]), adj @ [1.0, 2, 3, 4])


def test_function_score_gets_a_generic_formula(monkeypatch):
    monkeypatch.setitem(
        scores._REGISTRY,
        "explain_test_l1",
        lambda num_heads, head_dim, edge_dim=None: scores.FunctionScore(lambda q, k: -(q - k).abs().sum(-1)),
    )
    assert explain.trace("a b", score="explain_test_l1").formula == "s_ij = explain_test_l1(q_i, k_j)"


# ---------------------------------------------------- named graph defaults
def test_named_graph_defaults_to_seeded_random_features(capsys):
    code, out, _ = _run_cli(["--graph", "karate"], capsys)
    assert code == 0
    metrics = _last_json(out)
    weights = np.array(metrics["weights"][0])
    assert np.array(metrics["outputs"]).shape == (34, 4)  # four random features, not 1, 2, ..., 34
    assert weights.max(1).mean() < 0.6  # spread over the neighbours, not one-hot
    ceiling = np.log2((weights > 0).sum(1))
    assert np.mean(np.array(metrics["entropy_bits"][0]) / ceiling) > 0.5
    t = explain.trace(nx.karate_club_graph(), d_model=4, seed=0)
    np.testing.assert_allclose(metrics["weights"][0], t.weights[0].numpy(), atol=0)  # = the API with d_model=4
    code, out2, _ = _run_cli(["--graph", "karate", "--seed", "1"], capsys)
    assert _last_json(out2)["weights"] != metrics["weights"]


def test_graph_default_keeps_given_values(capsys):
    code, out, _ = _run_cli(["--graph", "path", "--nodes", "3", "--values", "1,2,3"], capsys)
    assert code == 0
    assert np.array(_last_json(out)["outputs"]).shape == (3, 1)


def test_named_graph_helper():
    assert inputs.named_graph("path", 7).number_of_nodes() == 7
    assert inputs.named_graph("path").number_of_nodes() == inputs.DEFAULT_NODES
    with pytest.raises(ValueError, match="fixed size"):
        inputs.named_graph("karate", 5)
    with pytest.raises(ValueError, match="unknown graph"):
        inputs.named_graph("nope")


# ----------------------------------------------------------- public API
def test_public_names_unchanged():
    old = {
        "NAMED_GRAPHS",
        "Trace",
        "add_arguments",
        "cycle_spectrum_figure",
        "format_trace",
        "parse_matrix",
        "run",
        "trace",
        "write_csv",
        "write_html",
        "write_png",
        "entropy_bits",
    }
    assert old <= set(explain.__all__)
    for name in explain.__all__:
        assert getattr(explain, name).__doc__ if callable(getattr(explain, name)) else True, name
    assert callable(explain.trace) and isinstance(explain.trace("a"), explain.Trace)


def test_files_are_written_atomically(tmp_path, monkeypatch):
    from graphformer.explain import files

    target = tmp_path / "page.txt"
    target.write_text("old", encoding="utf-8")

    def broken_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, "new")
    assert target.read_text(encoding="utf-8") == "old"  # untouched, no temporary left behind
    assert [p.name for p in tmp_path.iterdir()] == ["page.txt"]
