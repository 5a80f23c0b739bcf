import html
import json
import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch

from graphformer import cli, explain

TOKENS = ["我", "爱", "你"]
NODE = shutil.which("node")
CHROMIUM = Path("/usr/bin/chromium")


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
    for line in lines[start + 2:]:
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
        np.testing.assert_allclose(w[i, :i + 1], _softmax_rows((x[i] * x[:i + 1])[None])[0], atol=1e-12)
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
    torch.testing.assert_close(explain.trace("the cat sat on the mat", d_model=4, num_heads=2, seed=3).output,
                               t.output)
    assert not torch.allclose(explain.trace("the cat sat on the mat", d_model=4, num_heads=2, seed=4).output,
                              t.output)


def test_values_and_weights_by_hand(capsys):
    code, out, _ = _run_cli(["a b", "--values", "1,0;0,2", "--wq", "identity", "--wk", "0,1;1,0",
                             "--wv", "2,0;0,1", "--wo", "1,1;0,1"], capsys)
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


def test_png_is_written(tmp_path, capsys):
    path = tmp_path / "trace.png"
    code, out, _ = _run_cli(["--png", str(path)], capsys)
    assert code == 0
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert json.loads(out.strip().splitlines()[-1])["png"] == str(path)
    graph_png = tmp_path / "graph.png"
    explain.write_png(explain.trace(nx.star_graph(4), d_model=2, num_heads=2), graph_png, head=1)
    assert graph_png.read_bytes()[:4] == b"\x89PNG"


def test_png_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install"):
        explain.write_png(explain.trace("a b"), tmp_path / "x.png")
    code, _, err = _run_cli(["--png", str(tmp_path / "x.png")], capsys)
    assert code == 1 and "matplotlib" in err


def test_cycle_spectrum_figure(tmp_path):
    path = tmp_path / "cycle.png"
    residual = explain.cycle_spectrum_figure(12, path)
    assert residual < 1e-10
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="n must"):
        explain.cycle_spectrum_figure(2, path)


# -------------------------------------------------------------------- HTML
def _page_parts(page: str) -> tuple[dict, str]:
    data = json.loads(re.search(r"const DATA = (\{.*?\});\n", page, re.S).group(1).replace("<\\/", "</"))
    return data, page[page.index("// BEGIN COMPUTE"):page.index("// END COMPUTE")]


def test_html_contains_the_matrices(tmp_path, capsys):
    path = tmp_path / "trace.html"
    code, _, _ = _run_cli(["--html", str(path)], capsys)
    assert code == 0
    page = path.read_text(encoding="utf-8")
    t = explain.trace("我 爱 你")
    for token in TOKENS:
        assert f"<th>{token}</th>" in page
    for i in range(3):
        for j in range(3):
            assert f'id="weights0-{i}-{j}" style="background: rgba(49,130,189,' in page
            assert f">{t.weights[0, i, j].item():.4f}</td>" in page
            assert f'id="scores0-{i}-{j}">{t.scores[0, i, j].item():.4f}</td>' in page
    data, _ = _page_parts(page)
    np.testing.assert_array_equal(data["python"]["weights"], t.weights.tolist())
    np.testing.assert_array_equal(data["python"]["output"], t.output.tolist())
    # self-contained: no external resources
    assert "http://" not in page and "https://" not in page and "src=" not in page


def test_html_refuses_scores_it_cannot_recompute(tmp_path):
    from graphformer import registered_score

    with registered_score("explain_test_l1", lambda q, k: -(q - k).abs().sum(-1)):
        t = explain.trace("a b", score="explain_test_l1")
        with pytest.raises(ValueError, match="recomputes"):
            explain.write_html(t, tmp_path / "x.html")


@pytest.mark.skipif(NODE is None, reason="node (JavaScript) not installed")
@pytest.mark.parametrize("kwargs", [
    {"tokens_or_graph": "我 爱 你"},
    {"tokens_or_graph": "the cat sat on the mat", "d_model": 4, "num_heads": 2, "causal": True},
    {"tokens_or_graph": "a b c d e", "d_model": 4, "num_heads": 2, "score": "rotary", "positional": "sinusoidal"},
    {"tokens_or_graph": nx.karate_club_graph(), "d_model": 4, "num_heads": 2, "score": "additive"},
    {"tokens_or_graph": nx.house_graph(), "d_model": 2, "score": "gatv2"},
    {"tokens_or_graph": nx.path_graph(5), "score": "gcn"},
    {"tokens_or_graph": nx.star_graph(4), "score": "mean", "self_loops": False},
])
def test_html_javascript_reproduces_python(tmp_path, kwargs):
    t = explain.trace(**kwargs)
    page = explain.write_html(t, tmp_path / "t.html")
    data, js = _page_parts(Path(page).read_text(encoding="utf-8"))
    script = tmp_path / "compute.js"
    script.write_text(f"const DATA = {json.dumps(data)};\n{js}\nconsole.log(JSON.stringify(compute(DATA)));\n",
                      encoding="utf-8")
    res = json.loads(subprocess.run([NODE, str(script)], capture_output=True, text=True, check=True,
                                    timeout=60).stdout)
    scores = np.array([[[-np.inf if v is None else v for v in row] for row in m] for m in res["scores"]])
    expected_scores = t.scores.numpy() if t.softmax else t.weights.numpy()
    np.testing.assert_allclose(scores, expected_scores, atol=1e-12)
    np.testing.assert_allclose(res["weights"], t.weights.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["output"], t.output.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["entropy"], t.entropy.numpy(), atol=1e-12)


class _Elements(HTMLParser):
    """Every element with an id: its tag and attributes."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.found.append({"tag": tag, "attrs": attrs})


_FAKE_DOM = """
const listeners = {}, loaders = [], elements = {};
for (const e of FOUND) {
  const dataset = {};
  for (const [k, v] of Object.entries(e.attrs)) if (k.startsWith("data-")) dataset[k.slice(5)] = v;
  elements[e.attrs.id] = {tag: e.tag, id: e.attrs.id, value: e.attrs.value, dataset, style: {}, textContent: "",
    handlers: [], addEventListener(ev, fn) { this.handlers.push(fn); }};
}
const document = {
  getElementById: id => elements[id] || null,
  querySelectorAll: sel => Object.values(elements).filter(e => e.tag === "input" && "m" in e.dataset),
};
const window = {addEventListener: (ev, fn) => { if (ev === "DOMContentLoaded") loaders.push(fn); }};
"""

_FAKE_DRIVER = """
loaders.forEach(f => f());
const snap = () => Object.fromEntries(Object.values(elements).map(e => [e.id, e.textContent]));
const first = {cells: snap(), maxdiff: elements.status.dataset.maxdiff, result: elements.result.textContent};
elements["X-0-0"].value = "5";
elements["X-0-0"].handlers.forEach(f => f());
console.log(JSON.stringify({first, second: {cells: snap(), result: elements.result.textContent}}));
"""


@pytest.mark.skipif(NODE is None, reason="node (JavaScript) not installed")
def test_html_page_recomputes_after_an_edit(tmp_path):
    """The page's own script, run against a minimal stand-in for the DOM: load, then edit X[0, 0]."""
    t = explain.trace("我 爱 你")
    page = Path(explain.write_html(t, tmp_path / "t.html")).read_text(encoding="utf-8")
    parser = _Elements()
    parser.feed(page)
    body = page[page.index("<script>") + len("<script>"):page.rindex("</script>")]
    script = tmp_path / "page.js"
    script.write_text(f"const FOUND = {json.dumps(parser.found)};\n{_FAKE_DOM}\n{body}\n{_FAKE_DRIVER}",
                      encoding="utf-8")
    res = json.loads(subprocess.run([NODE, str(script)], capture_output=True, text=True, check=True,
                                    timeout=60).stdout)
    assert float(res["first"]["maxdiff"]) < 1e-12
    for i in range(3):
        for j in range(3):
            assert res["first"]["cells"][f"weights0-{i}-{j}"] == f"{t.weights[0, i, j].item():.4f}"
        assert res["first"]["cells"][f"output-{i}-0"] == f"{t.output[i, 0].item():.4f}"
    edited = explain.trace("我 爱 你", values="5,2,3")
    after = json.loads(res["second"]["result"])
    np.testing.assert_allclose(after["weights"], edited.weights.numpy(), atol=1e-12)
    np.testing.assert_allclose(after["output"], edited.output.numpy(), atol=1e-12)
    np.testing.assert_allclose(after["entropy"], edited.entropy.numpy(), atol=1e-12)
    assert res["second"]["cells"]["output-0-0"] == f"{edited.output[0, 0].item():.4f}"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed")
def test_html_in_headless_chromium(tmp_path):
    t = explain.trace("the cat sat on the mat", d_model=4, num_heads=2, causal=True)
    page = Path(explain.write_html(t, tmp_path / "t.html")).resolve()
    dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    result = re.search(r'<pre id="result"[^>]*>(.*?)</pre>', dom, re.S)
    assert result is not None, "the page's script did not run"
    res = json.loads(html.unescape(result.group(1)))
    np.testing.assert_allclose(res["weights"], t.weights.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["output"], t.output.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["entropy"], t.entropy.numpy(), atol=1e-12)
    maxdiff = re.search(r'data-maxdiff="([^"]+)"', dom)
    assert maxdiff is not None and float(maxdiff.group(1)) < 1e-12
    for h in range(2):
        cell = re.search(rf'id="weights{h}-5-2"[^>]*>([^<]*)<', dom)
        assert cell is not None and cell.group(1) == f"{t.weights[h, 5, 2].item():.4f}"


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, message", [
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
])
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
