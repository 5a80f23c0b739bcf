"""The trace as one self-contained HTML page that recomputes every matrix in the browser.

X, the projections and W_o are editable; on every edit the page's
JavaScript (inline, no network) recomputes Q, K, V, the scores, the
weights, each head's output, the outputs and the entropies. It carries the
numbers Python computed and, on load, reports the largest difference from
its own. An empty or invalid entry, or numbers that overflow float64
(``1e308``), are shown as an error; nothing is read as 0. The tests run the
page in headless Chromium and compare every matrix with Python's.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from torch import Tensor

from ..scores import make_score
from .files import atomic_write
from .record import Trace
from .text import channel_labels, describe_graph, weights_title

__all__ = ["JS_SCORES", "write_html"]

# scores the page can recompute in the browser
JS_SCORES = ("dot", "rotary", "additive", "gat", "gatv2", "gcn", "mean", "sum")


def _json_matrix(m: Tensor) -> list:
    return [[None if not math.isfinite(v) else v for v in row] for row in m.double().tolist()]


def _html_table(
    m: Tensor, rows: list[str], cols: list[str], key: str, editable: bool = False, shade: bool = False, label: str = ""
) -> str:
    out = ['<table class="m"><tr><th></th>' + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for i, (row_label, row) in enumerate(zip(rows, m.double().tolist())):
        cells = []
        for j, v in enumerate(row):
            cell_id = f"{key}-{i}-{j}"
            if editable:
                name = html.escape(f"{label}[{row_label}, {cols[j]}]", quote=True)
                cells.append(
                    f'<td><input id="{cell_id}" data-m="{key}" data-i="{i}" data-j="{j}" '
                    f'data-label="{name}" type="number" step="any" value="{v!r}"></td>'
                )
            else:
                text = "-inf" if v == -math.inf else f"{v:.4f}"
                style = f' style="background: rgba(49,130,189,{min(max(v, 0.0), 1.0):.3f})"' if shade else ""
                cells.append(f'<td id="{cell_id}" class="out"{style}>{text}</td>')
        out.append(f"<tr><th>{html.escape(row_label)}</th>{''.join(cells)}</tr>")
    out.append("</table>")
    return "".join(out)


_JS = r"""
// BEGIN COMPUTE -- a pure function of the page's numbers (no DOM), the same maths as GraphAttention
function matmul(a, b) {
  return a.map(row => b[0].map((_, c) => row.reduce((s, v, k) => s + v * b[k][c], 0)));
}
function leaky(v, slope) { return v >= 0 ? v : slope * v; }
function headOf(m, h, C) { return m.map(row => row.slice(h * C, (h + 1) * C)); }
function rotate(rows, base) {
  return rows.map((row, p) => {
    const C = row.length, out = row.slice();
    for (let i = 0; 2 * i + 1 < C; i++) {
      const angle = p * Math.exp(2 * i * (-Math.log(base) / C));
      const c = Math.cos(angle), s = Math.sin(angle), a = row[2 * i], b = row[2 * i + 1];
      out[2 * i] = a * c - b * s; out[2 * i + 1] = a * s + b * c;
    }
    return out;
  });
}
function compute(d) {
  const N = d.tokens.length, H = d.heads, C = d.head_dim, mask = d.mask;
  const V = matmul(d.X, d.w_v);
  const Q = d.w_q ? matmul(d.X, d.w_q) : V;
  const K = d.w_k ? matmul(d.X, d.w_k) : V;
  const res = {Q: d.w_q ? Q : null, K: d.w_k ? K : null, V: V, scores: [], weights: [], heads: [], entropy: []};
  const cat = Array.from({length: N}, () => []);
  const deg = mask.map(row => row.reduce((s, m) => s + m, 0));
  for (let h = 0; h < H; h++) {
    const q = headOf(Q, h, C), k = headOf(K, h, C), v = headOf(V, h, C);
    const S = [], A = [];
    const qr = d.score === "rotary" ? rotate(q, d.base) : q, kr = d.score === "rotary" ? rotate(k, d.base) : k;
    for (let i = 0; i < N; i++) {
      const s = [];
      for (let j = 0; j < N; j++) {
        if (!mask[i][j]) { s.push(d.softmax ? null : 0); continue; }
        let val;
        if (d.score === "dot" || d.score === "rotary") {
          val = qr[i].reduce((t, x, c) => t + x * kr[j][c], 0) / Math.sqrt(C);
        } else if (d.score === "additive" || d.score === "gat") {
          const aDst = q[i].reduce((t, x, c) => t + x * d.params.att_dst[h][c], 0);
          const aSrc = v[j].reduce((t, x, c) => t + x * d.params.att_src[h][c], 0);
          val = leaky(aDst + aSrc, d.negative_slope);
        } else if (d.score === "gatv2") {
          val = q[i].reduce((t, x, c) => t + d.params.att[h][c] * leaky(x + v[j][c], d.negative_slope), 0);
        } else if (d.score === "gcn") {
          val = 1 / Math.sqrt(deg[i] * deg[j]);
        } else if (d.score === "mean") {
          val = 1 / deg[i];
        } else if (d.score === "sum") {
          val = 1;
        } else {
          throw new Error("this page cannot compute the score " + d.score);
        }
        s.push(val);
      }
      S.push(s);
      if (d.softmax) {
        const live = s.filter(x => x !== null);
        const top = live.length ? Math.max(...live) : 0;
        const ex = s.map(x => x === null ? 0 : Math.exp(x - top));
        const tot = ex.reduce((t, x) => t + x, 0);
        A.push(ex.map(x => tot > 0 ? x / tot : 0));
      } else {
        A.push(s.slice());
      }
    }
    const O = A.map(row => v[0].map((_, c) => row.reduce((t, a, j) => t + a * v[j][c], 0)));
    O.forEach((row, i) => cat[i].push(...row));
    res.entropy.push(A.map(row => {
      const tot = row.reduce((t, x) => t + x, 0);
      return row.reduce((t, a) => { const p = tot > 0 ? a / tot : 0; return p > 0 ? t - p * Math.log2(p) : t; }, 0);
    }));
    res.scores.push(S); res.weights.push(A); res.heads.push(O);
  }
  res.output = matmul(cat, d.w_o);
  return res;
}
// the first non-finite number of a result (null = no edge is allowed in the scores only), or null
function firstNonFinite(res) {
  const walk = (m, name, nullOk) => {
    if (m === null) return nullOk ? null : name;
    if (typeof m === "number") return Number.isFinite(m) ? null : name;
    for (const x of m) { const bad = walk(x, name, nullOk); if (bad) return bad; }
    return null;
  };
  for (const [name, m] of Object.entries(res)) {
    if (m === null && (name === "Q" || name === "K")) continue;
    const bad = walk(m, name, name === "scores");
    if (bad) return bad;
  }
  return null;
}
// END COMPUTE
function maxDiff(a, b) {
  if (a === null || b === null || typeof a === "number" || typeof b === "number") {
    if (a === null || b === null) return (a === b) ? 0 : Infinity;
    return Math.abs(a - b);
  }
  return a.reduce((m, x, i) => Math.max(m, maxDiff(x, b[i])), 0);
}
function fmt(v) { return v === null ? "-inf" : v.toFixed(4); }
function cells() { return document.querySelectorAll("td.out"); }
function render(r) {
  const put = (key, m, shade) => m.forEach((row, i) => row.forEach((v, j) => {
    const cell = document.getElementById(key + "-" + i + "-" + j);
    if (!cell) return;
    cell.textContent = fmt(v);
    if (shade) cell.style.background = "rgba(49,130,189," + Math.min(Math.max(v, 0), 1).toFixed(3) + ")";
  }));
  if (r.Q) put("q", r.Q); if (r.K) put("k", r.K); put("v", r.V);
  r.scores.forEach((m, h) => put("scores" + h, m));
  r.weights.forEach((m, h) => put("weights" + h, m, true));
  r.heads.forEach((m, h) => put("heads" + h, m));
  put("output", r.output);
  put("entropy", r.entropy[0].map((_, i) => r.entropy.map(e => e[i])));
  document.getElementById("result").textContent = JSON.stringify(r);
}
function showError(message) {
  const status = document.getElementById("status");
  status.className = "error";
  status.textContent = "error: " + message;
  cells().forEach(cell => { cell.textContent = "\u2014"; cell.style.background = ""; });
  document.getElementById("result").textContent = JSON.stringify({error: message});
}
function readInputs() {
  const d = JSON.parse(JSON.stringify(DATA)), bad = [];
  document.querySelectorAll("input[data-m]").forEach(inp => {
    const text = inp.value.trim(), v = Number(text), ok = text !== "" && Number.isFinite(v);
    inp.classList.toggle("bad", !ok);
    inp.setAttribute("aria-invalid", String(!ok));
    if (ok) d[inp.dataset.m][+inp.dataset.i][+inp.dataset.j] = v;
    else bad.push(inp.dataset.label);
  });
  return {d, bad};
}
function update() {
  const {d, bad} = readInputs();
  if (bad.length) {
    showError(bad.join(", ") + (bad.length > 1 ? " are" : " is") + " empty or not a finite number; " +
              "type a number (e.g. 1.5 or -2e-3)");
    return;
  }
  const r = compute(d), overflow = firstNonFinite(r);
  if (overflow) {
    showError("the numbers overflow: " + overflow + " reach Infinity or NaN in float64; use smaller inputs or weights");
    return;
  }
  render(r);
  const status = document.getElementById("status");
  status.className = "ok";
  status.textContent = "recomputed in the browser from the numbers above";
}
window.addEventListener("DOMContentLoaded", () => {
  const r = compute(DATA);
  render(r);
  const P = DATA.python;
  const diff = Math.max(maxDiff(r.V, P.v), r.Q ? maxDiff(r.Q, P.q) : 0, r.K ? maxDiff(r.K, P.k) : 0,
                        maxDiff(r.scores, P.scores), maxDiff(r.weights, P.weights), maxDiff(r.heads, P.heads),
                        maxDiff(r.output, P.output), maxDiff(r.entropy, P.entropy));
  const status = document.getElementById("status");
  status.dataset.maxdiff = String(diff);
  status.className = diff < 1e-9 ? "ok" : "error";
  status.textContent = "computed in this page; max |browser - Python| = " + diff.toExponential(2);
  document.querySelectorAll("input[data-m]").forEach(inp => inp.addEventListener("input", update));
});
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
table.m { border-collapse: collapse; margin: 0.4em 0 1.2em; font-variant-numeric: tabular-nums; }
table.m th, table.m td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
table.m th { background: #f3f3f3; }
input[type=number] { width: 6em; text-align: right; }
input.bad { background: #fdd; outline: 2px solid #c00; }
h2 { font-size: 1.1em; margin-top: 1.5em; } .note { color: #555; } #status { font-weight: bold; }
#status.error { color: #b00; }
"""


def write_html(t: Trace, path: str | Path) -> str:
    """Write one self-contained page where X and the weights are editable and every matrix recomputes.

    The page embeds the numbers Python computed and, on load, recomputes
    them in JavaScript (inline, no network) and reports the largest
    difference. Works for the scores in :data:`JS_SCORES`. Invalid, empty
    or overflowing entries are reported as an error on the page. Written
    atomically; returns the path written.
    """
    if t.score not in JS_SCORES:
        raise ValueError(
            f"the HTML page recomputes the scores {list(JS_SCORES)} in the browser; "
            f"{t.score!r} is not one of them (use --csv or the tables instead)"
        )
    tok, H = t.tokens, t.num_heads  # noqa: N806
    d = t.x.size(1)
    HC = t.v.size(0) * t.v.size(-1)  # noqa: N806
    score_module = make_score(t.score, H, t.head_dim)  # for its constants
    flat = {
        name: None if getattr(t, name) is None else getattr(t, name).transpose(0, 1).flatten(1).tolist()
        for name in ("q", "k", "v")
    }
    data = {
        "tokens": tok,
        "heads": H,
        "head_dim": t.head_dim,
        "score": t.score,
        "softmax": t.softmax,
        "formula": t.formula,
        "mask": t.mask.int().tolist(),
        "X": t.x.tolist(),
        "w_q": None if t.w_q is None else t.w_q.tolist(),
        "w_k": None if t.w_k is None else t.w_k.tolist(),
        "w_v": t.w_v.tolist(),
        "w_o": t.w_o.tolist(),
        "params": {k: v.reshape(v.size(0), -1).tolist() for k, v in t.score_params.items()},
        "base": float(getattr(getattr(score_module, "rotary", None), "base", 10000.0)),
        "negative_slope": float(getattr(score_module, "negative_slope", 0.2)),
        "python": {
            **flat,
            "scores": [_json_matrix(s) for s in t.scores],
            "weights": [_json_matrix(w) for w in t.weights],
            "heads": t.heads.tolist(),
            "output": _json_matrix(t.output),
            "entropy": t.entropy.tolist(),
        },
    }
    blob = json.dumps(data, ensure_ascii=True, allow_nan=False).replace("</", "<\\/")
    cols_d = [f"x{c}" for c in range(d)]
    title = html.escape(" ".join(tok[:12]))
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>graphformer explain: {title}</title><style>{_CSS}</style></head><body>",
        f"<h1>Attention by hand: {title}{' ...' if len(tok) > 12 else ''}</h1>",
        f"<p class='note'>{html.escape(describe_graph(t))}.<br>Weights: "
        f"<code id='formula'>{html.escape(weights_title(t))}</code>.<br>"
        "Rows are the token that attends, columns the token attended to. Edit any number in X or in the "
        "weights: every matrix below recomputes in this page.</p>",
        "<p id='status'>JavaScript is off: the numbers below are the ones Python computed.</p>",
        "<h2>X (input, editable)</h2>",
        _html_table(t.x, tok, cols_d, "X", editable=True, label="X"),
    ]
    for name, letter in (("w_q", "q"), ("w_k", "k"), ("w_v", "v")):
        w = getattr(t, name)
        if w is not None:
            parts += [
                f"<h2>W_{letter} (editable; {letter.upper()} = X W_{letter})</h2>",
                _html_table(w, cols_d, channel_labels(letter, H, HC), name, editable=True, label=f"W_{letter}"),
            ]
    parts += [
        "<h2>W_o (editable)</h2>",
        _html_table(t.w_o, channel_labels("o", H, HC), [f"y{c}" for c in range(d)], "w_o", editable=True, label="W_o"),
    ]
    for name in ("q", "k", "v"):
        m = getattr(t, name)
        if m is not None:
            parts += [
                f"<h2>{name.upper()}</h2>",
                _html_table(m.transpose(0, 1).flatten(1), tok, channel_labels(name, H, HC), name),
            ]
    for h in range(H):
        tag = f" (head {h})" if H > 1 else ""
        if t.softmax:
            parts += [
                f"<h2>scores{tag}: {html.escape(t.formula)}</h2>",
                _html_table(t.scores[h], tok, tok, f"scores{h}"),
                f"<h2>weights{tag}: a_ij = softmax_j(s_ij)</h2>",
            ]
        else:
            parts += [f"<h2>weights{tag}: {html.escape(t.formula)}</h2>"]
        parts += [
            _html_table(t.weights[h], tok, tok, f"weights{h}", shade=True),
            f"<h2>head output{tag}: sum_j a_ij v_j</h2>",
            _html_table(t.heads[h], tok, channel_labels("o", 1, t.head_dim), f"heads{h}"),
        ]
    parts += [
        "<h2>outputs</h2>",
        _html_table(t.output, tok, [f"y{c}" for c in range(d)], "output"),
        "<h2>attention entropy (bits)</h2>",
        _html_table(t.entropy.t(), tok, [f"head {h}" for h in range(H)], "entropy"),
        "<pre id='result' hidden></pre>",
        f"<script>const DATA = {blob};\n{_JS}</script></body></html>",
    ]
    return atomic_write(path, "\n".join(parts))
