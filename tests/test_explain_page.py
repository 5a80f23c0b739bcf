"""graphformer.explain.page: the page's JavaScript, run in headless Chromium, against Python, matrix by matrix.

Needs Debian's ``chromium`` (``.ci/run`` installs it). Skips without it,
except under CI (``CI`` set), where a missing browser is a failure.
"""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from graphformer import cli, explain, scores
from graphformer.explain import page as page_module

TOKENS = ["我", "爱", "你"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail(
            "headless Chromium is needed for the explain page tests: apt-get install -y chromium (.ci/run installs it)"
        )
    pytest.skip("chromium not installed (apt-get install -y chromium)")


_DRIVER = """
<script>
// test driver: after the page's own handlers ran, type each edit and record what the page shows
window.addEventListener("DOMContentLoaded", () => {
  const snap = () => {
    const status = document.getElementById("status");
    return {status: status.textContent, status_class: status.className, maxdiff: status.dataset.maxdiff || null,
            result: JSON.parse(document.getElementById("result").textContent),
            cells: Object.fromEntries([...document.querySelectorAll("td.out")].map(c => [c.id, c.textContent])),
            bad: [...document.querySelectorAll("input.bad")].map(i => i.id)};
  };
  const log = [snap()];
  for (const [id, value] of EDITS) {
    const inp = document.getElementById(id);
    inp.value = value;
    inp.dispatchEvent(new Event("input"));
    log.push(snap());
  }
  const pre = document.createElement("pre");
  pre.id = "driver";
  pre.textContent = JSON.stringify(log);
  document.body.appendChild(pre);
});
</script>
"""


def _driven(t, tmp_path: Path, name: str, edits) -> str:
    """The page of ``t`` with the test driver appended (the page itself unchanged)."""
    text = Path(explain.write_html(t, tmp_path / f"{name}.html")).read_text(encoding="utf-8")
    return text.replace("</body>", f"<script>const EDITS = {json.dumps(list(edits))};</script>{_DRIVER}</body>")


def _run_pages(pages: list, tmp_path: Path) -> list[list[dict]]:
    """Open every ``(trace, edits)`` page in one headless Chromium (one iframe each); their snapshots.

    Each page runs in its own document (``srcdoc``), gets ``edits``
    ``[(input id, text)]`` typed into it, and reports what it shows.
    """
    browser = _chromium()
    frames = "".join(
        f'<iframe srcdoc="{html.escape(_driven(t, tmp_path, f"p{k}", edits), quote=True)}"></iframe>'
        for k, (t, edits) in enumerate(pages)
    )
    harness = tmp_path / "harness.html"
    harness.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
        + frames
        + "<script>window.addEventListener('load', () => { const all = [...document.querySelectorAll('iframe')]"
        ".map(f => { const d = f.contentDocument.getElementById('driver'); return d ? d.textContent : null; });"
        "const pre = document.createElement('pre'); pre.id = 'all'; pre.textContent = JSON.stringify(all);"
        "document.body.appendChild(pre); });</script></body></html>",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            harness.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    found = re.search(r'<pre id="all">(.*?)</pre>', proc.stdout, re.S)
    assert found is not None, f"the harness did not run: {proc.stderr[-2000:]}"
    logs = json.loads(html.unescape(found.group(1)))
    assert None not in logs, "a page's script did not run"
    return [json.loads(log) for log in logs]


def _run_page(t, tmp_path: Path, edits=()) -> list[dict]:
    return _run_pages([(t, edits)], tmp_path)[0]


def _scores(m) -> np.ndarray:
    return np.array([[[-np.inf if v is None else v for v in row] for row in head] for head in m])


def _assert_page_matches(res: dict, t) -> None:
    """Every matrix the page computed equals Python's."""
    flat = lambda m: m.transpose(0, 1).flatten(1).numpy()  # noqa: E731  [H, N, C] -> [N, H*C]
    np.testing.assert_allclose(res["V"], flat(t.v), atol=1e-12)
    for name in ("q", "k"):
        if getattr(t, name) is None:
            assert res[name.upper()] is None
        else:
            np.testing.assert_allclose(res[name.upper()], flat(getattr(t, name)), atol=1e-12)
    expected_scores = t.scores.numpy() if t.softmax else t.weights.numpy()
    np.testing.assert_allclose(_scores(res["scores"]), expected_scores, atol=1e-12)
    np.testing.assert_allclose(res["weights"], t.weights.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["heads"], t.heads.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["output"], t.output.numpy(), atol=1e-12)
    np.testing.assert_allclose(res["entropy"], t.entropy.numpy(), atol=1e-12)


CASES = {
    "worked example": {"tokens_or_graph": "我 爱 你"},
    "causal, 2 heads": {"tokens_or_graph": "the cat sat on the mat", "d_model": 4, "num_heads": 2, "causal": True},
    "rotary + sinusoidal": {
        "tokens_or_graph": "a b c d e",
        "d_model": 4,
        "num_heads": 2,
        "score": "rotary",
        "positional": "sinusoidal",
    },
    "additive on karate": {
        "tokens_or_graph": nx.karate_club_graph(),
        "d_model": 4,
        "num_heads": 2,
        "score": "additive",
    },
    "gat": {"tokens_or_graph": nx.house_graph(), "d_model": 2, "score": "gat", "w_o": "random"},
    "gatv2": {"tokens_or_graph": nx.house_graph(), "d_model": 2, "score": "gatv2"},
    "gcn": {"tokens_or_graph": nx.path_graph(5), "score": "gcn"},
    "mean, no self-loops": {"tokens_or_graph": nx.star_graph(4), "score": "mean", "self_loops": False},
    "sum": {"tokens_or_graph": nx.cycle_graph(5), "score": "sum", "d_model": 2},
}


def test_cases_cover_every_score_the_page_computes():
    assert {case.get("score", "dot") for case in CASES.values()} == set(page_module.JS_SCORES)


def test_page_reproduces_every_matrix_in_chromium(tmp_path):
    traces = {case: explain.trace(**kwargs) for case, kwargs in CASES.items()}
    logs = _run_pages([(t, ()) for t in traces.values()], tmp_path)  # one browser for every case
    for (case, t), (first,) in zip(traces.items(), logs):
        _assert_page_matches(first["result"], t)
        assert float(first["maxdiff"]) < 1e-12 and first["status_class"] == "ok", case
        assert first["bad"] == []
        # the cells the learner reads are the browser's numbers, rounded to four decimals
        for h in range(t.num_heads):
            for i in range(t.num_nodes):
                for j in range(t.num_nodes):
                    assert first["cells"][f"weights{h}-{i}-{j}"] == f"{t.weights[h, i, j].item():.4f}", case
        for i in range(t.num_nodes):
            assert first["cells"][f"output-{i}-0"] == f"{t.output[i, 0].item():.4f}", case


def test_editing_x_recomputes_and_bad_input_is_an_error(tmp_path):
    t = explain.trace("我 爱 你")
    edits = [
        ("X-0-0", "5"),
        ("X-1-0", ""),
        ("X-1-0", "abc"),
        ("X-1-0", "2"),
        ("X-0-0", "1e308"),
        ("X-0-0", "1e200"),
        ("X-0-0", "1"),
    ]
    log = _run_page(t, tmp_path, edits)
    assert len(log) == len(edits) + 1
    _assert_page_matches(log[0]["result"], t)
    _assert_page_matches(log[1]["result"], explain.trace("我 爱 你", values="5,2,3"))
    assert (
        log[1]["status_class"] == "ok"
        and log[1]["cells"]["output-0-0"] == f"{explain.trace('我 爱 你', values='5,2,3').output[0, 0].item():.4f}"
    )
    for snap in (log[2], log[3]):  # empty, then not a number: an error naming the cell, never 0
        assert snap["status_class"] == "error" and "X[爱, x0]" in snap["status"]
        assert "not a finite number" in snap["result"]["error"]
        assert snap["bad"] == ["X-1-0"]
        assert set(snap["cells"].values()) == {"\u2014"}  # no stale numbers beside the error
    assert log[4]["status_class"] == "ok" and log[4]["bad"] == []
    _assert_page_matches(log[4]["result"], explain.trace("我 爱 你", values="5,2,3"))
    for snap in (log[5], log[6]):  # 1e308 and 1e200 overflow the scores: an error, not weights of 0.0000
        assert snap["status_class"] == "error" and "overflow" in snap["status"]
        assert "0.0000" not in snap["cells"].values()
    with pytest.raises(ValueError, match="overflow"):  # Python says the same
        explain.trace("我 爱 你", values="1e200,2,3")
    _assert_page_matches(log[7]["result"], t)  # back to the worked example
    assert log[7]["status_class"] == "ok"


def test_editing_weights_recomputes(tmp_path):
    t = explain.trace("a b c", d_model=2, num_heads=1, seed=2)
    wq = t.w_q.clone()
    wq[1, 0] = 0.5
    log = _run_page(t, tmp_path, [("w_q-1-0", "0.5")])
    _assert_page_matches(log[1]["result"], explain.trace("a b c", values=t.values, w_q=wq, w_k=t.w_k, w_v=t.w_v))


def test_page_shows_the_scores_formula(tmp_path):
    for score in ("dot", "sum", "gcn"):
        t = explain.trace(nx.path_graph(3), score=score)
        text = Path(explain.write_html(t, tmp_path / f"{score}.html")).read_text(encoding="utf-8")
        assert html.escape(scores.make_score(score, 1, 1).formula) in text


def test_html_contains_the_matrices(tmp_path, capsys):
    path = tmp_path / "trace.html"
    code = cli.main(["explain", "--html", str(path)])
    assert code == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["html"] == str(path)
    page = path.read_text(encoding="utf-8")
    t = explain.trace("我 爱 你")
    for token in TOKENS:
        assert f"<th>{token}</th>" in page
    for i in range(3):
        for j in range(3):
            assert f'id="weights0-{i}-{j}" class="out" style="background: rgba(49,130,189,' in page
            assert f">{t.weights[0, i, j].item():.4f}</td>" in page
            assert f'id="scores0-{i}-{j}" class="out">{t.scores[0, i, j].item():.4f}</td>' in page
    data = json.loads(re.search(r"const DATA = (\{.*?\});\n", page, re.S).group(1).replace("<\\/", "</"))
    np.testing.assert_array_equal(data["python"]["weights"], t.weights.tolist())
    np.testing.assert_array_equal(data["python"]["output"], t.output.tolist())
    assert data["formula"] == scores.DotScore.formula
    # self-contained: no external resources
    assert "http://" not in page and "https://" not in page and "src=" not in page


def test_html_refuses_scores_it_cannot_recompute(tmp_path, monkeypatch):
    monkeypatch.setitem(
        scores._REGISTRY,
        "explain_test_l1",
        lambda num_heads, head_dim, edge_dim=None: scores.FunctionScore(lambda q, k: -(q - k).abs().sum(-1)),
    )
    t = explain.trace("a b", score="explain_test_l1")
    with pytest.raises(ValueError, match="recomputes"):
        explain.write_html(t, tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_missing_chromium_fails_under_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        _chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _chromium()
