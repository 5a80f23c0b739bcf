"""graphformer explain: attention by hand, every matrix of a small example.

The default reproduces the worked example: the sentence "我 爱 你" is the
complete graph of its three tokens, the tokens carry the values 1, 2, 3,
d_model = 1, one head and identity projections, so Q = K = V = X and

    scores  = X X^T / sqrt(1) = [[1, 2, 3], [2, 4, 6], [3, 6, 9]]
    weights = softmax of each row (row = the token that attends,
              column = the token attended to)
    outputs = weights @ V

Any short sentence (complete graph, or causal with ``--causal``) or small
graph (``--edges FILE``, ``--graph karate|path|cycle|...``), width, number of
heads, score, positional encoding, input values and weights can be chosen.
The numbers come from the real layer (:class:`~graphformer.GraphAttention`
with ``return_attention=True``), in float64; the trace re-derives the output
from them (``weights @ V W_o``) as a check. Each node's attention entropy,
:math:`H_i = -\\sum_j a_{ij} \\log_2 a_{ij}` bits, says how many neighbours it
effectively listens to (:math:`2^{H_i}`): 0 bits for one, :math:`\\log_2 |N(i)|`
for all of them equally.

Projections are written as right-multiplications, ``Q = X W_q`` with
``W_q`` of shape ``[d_model, H*C]`` (the transpose of ``nn.Linear.weight``).
Random inputs and weights (``--seed``) are rounded to two decimals so that
the printed tables hold the exact numbers and every step can be redone by hand.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch import Tensor

from . import encodings
from ._text import format_table
from .attention import GraphAttention
from .scores import available_scores, make_score
from .structure import add_self_loops, check_edge_index

__all__ = [
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
]

DEFAULT_SENTENCE = "我 爱 你"

NAMED_GRAPHS = {
    # name: (builder taking the --nodes count, uses the count)
    "karate": (lambda n: nx.karate_club_graph(), False),
    "florentine": (lambda n: nx.florentine_families_graph(), False),
    "petersen": (lambda n: nx.petersen_graph(), False),
    "house": (lambda n: nx.house_graph(), False),
    "kite": (lambda n: nx.krackhardt_kite_graph(), False),
    "path": (nx.path_graph, True),
    "cycle": (nx.cycle_graph, True),
    "star": (lambda n: nx.star_graph(n - 1), True),  # centre + n - 1 leaves
    "wheel": (nx.wheel_graph, True),
    "complete": (nx.complete_graph, True),
}

# scores the HTML page can recompute in the browser
_JS_SCORES = ("dot", "rotary", "additive", "gat", "gatv2", "gcn", "mean")


# ---------------------------------------------------------------- record
@dataclass
class Trace:
    """Every matrix of one attention layer on one small graph (float64).

    Attributes:
        tokens: node labels, in node order.
        edge_index: ``[2, E]`` edges j -> i the layer ran on, or None for the
            complete graph / causal DAG (dense path).
        causal: the dense graph was the causal DAG.
        score: the score's name.
        values: the input values ``[N, d]`` before any positional encoding.
        positional: the positional encoding added to them ``[N, d]``, or None.
        x: the layer input ``[N, d]`` (values + positional).
        w_q, w_k, w_v: projections ``[d, H*C]`` (None when the score does not
            use them: GAT's query and key are its values).
        w_o: output projection ``[H*C, d]``.
        q, k, v: ``[H, N, C]`` (q / k None when unused).
        score_params: the score's own parameters (GAT's attention vectors), by name.
        mask: ``[N, N]`` bool, True where node i (row) attends to node j (column).
        scores: ``[H, N, N]`` raw scores (``-inf`` where there is no edge).
        weights: ``[H, N, N]`` attention weights (0 where there is no edge).
        heads: ``[H, N, C]`` each head's aggregate ``sum_j a_ij v_j``.
        output: ``[N, d]`` the layer's output.
        entropy: ``[H, N]`` attention entropy of each node in bits.
        max_abs_error: ``max |output - concat_h(weights_h V_h) W_o|``, the
            check that the recorded weights are the ones the layer used.
    """

    tokens: list[str]
    edge_index: Tensor | None
    causal: bool
    score: str
    num_heads: int
    values: Tensor
    positional: Tensor | None
    x: Tensor
    w_q: Tensor | None
    w_k: Tensor | None
    w_v: Tensor
    w_o: Tensor
    q: Tensor | None
    k: Tensor | None
    v: Tensor
    mask: Tensor
    scores: Tensor
    weights: Tensor
    heads: Tensor
    output: Tensor
    entropy: Tensor
    max_abs_error: float
    score_params: dict[str, Tensor] = field(default_factory=dict)
    softmax: bool = True

    @property
    def num_nodes(self) -> int:
        return len(self.tokens)

    @property
    def head_dim(self) -> int:
        return self.v.size(-1)

    def matrices(self) -> dict[str, Tensor]:
        """Every 2-D matrix of the trace by file-friendly name (per-head ones suffixed ``_head{h}``)."""
        out: dict[str, Tensor] = {"values": self.values}
        if self.positional is not None:
            out["positional"] = self.positional
        out["x"] = self.x
        for name in ("w_q", "w_k", "w_v", "w_o"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name, p in self.score_params.items():
            out[name] = p.reshape(p.size(0), -1) if p.dim() > 1 else p.unsqueeze(0)
        for name in ("q", "k", "v"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t.transpose(0, 1).flatten(1)  # [H, N, C] -> [N, H*C]
        for h in range(self.num_heads):
            out[f"scores_head{h}"] = self.scores[h]
            out[f"weights_head{h}"] = self.weights[h]
        out["heads"] = self.heads.transpose(0, 1).flatten(1)
        out["output"] = self.output
        out["entropy"] = self.entropy.t()  # [N, H]
        return out


# ----------------------------------------------------------------- inputs
def parse_matrix(text: str, name: str = "matrix") -> Tensor:
    """A matrix written as rows separated by ``;`` and entries by ``,`` (``"1,0;0,1"``), float64.

    A single row ``"1,2,3"`` is returned as ``[1, 3]``.
    """
    rows = [r for r in str(text).replace("\n", ";").split(";") if r.strip()]
    if not rows:
        raise ValueError(f"{name} is empty; write rows separated by ';' and entries by ',' (e.g. \"1,0;0,1\")")
    try:
        data = [[float(v) for v in r.replace(" ", ",").split(",") if v.strip()] for r in rows]
    except ValueError as err:
        raise ValueError(f"{name}: could not read {text!r} as numbers ({err}); "
                         "write rows separated by ';' and entries by ','") from None
    if len({len(r) for r in data}) != 1:
        raise ValueError(f"{name}: every row needs the same number of entries, got {[len(r) for r in data]}")
    return torch.tensor(data, dtype=torch.float64)


def _read_csv_matrix(path: str | Path, name: str) -> Tensor:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no such file {str(path)!r}")
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line in csv.reader(fh):
            cells = [c.strip() for c in line if c.strip()]
            if not cells or cells[0].startswith("#"):
                continue
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                if rows:
                    raise ValueError(f"{name}: {str(path)!r} has a non-numeric row {line}") from None
                # a header line
    if not rows:
        raise ValueError(f"{name}: {str(path)!r} holds no numbers")
    return parse_matrix(";".join(",".join(str(v) for v in r) for r in rows), name)


def _read_edges(path: str | Path, directed: bool) -> tuple[list[str], Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--edges: no such file {str(path)!r}")
    graph = nx.DiGraph() if directed else nx.Graph()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].replace(",", " ").split()
            if not line:
                continue
            if len(line) != 2:
                raise ValueError(f"--edges: line {number} of {str(path)!r} should be 'source target', got {line}")
            graph.add_edge(*line)
    if graph.number_of_nodes() == 0:
        raise ValueError(f"--edges: {str(path)!r} lists no edges")
    return _graph_edges(graph)


def _graph_edges(graph: nx.Graph) -> tuple[list[str], Tensor]:
    """Node labels and edges j -> i of a networkx graph (both directions when undirected)."""
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    pairs = [(index[u], index[v]) for u, v in graph.edges]
    if not graph.is_directed():
        pairs += [(v, u) for u, v in pairs if u != v]
    ei = torch.tensor(sorted(set(pairs)), dtype=torch.long).reshape(-1, 2).t()
    return [str(n) for n in nodes], ei


def _rounded(t: Tensor, decimals: int = 2) -> Tensor:
    return torch.round(t * 10**decimals) / 10**decimals


def _weight(spec, shape: tuple[int, int], name: str, generator: torch.Generator) -> Tensor:
    """A projection from ``"identity"``, ``"random"``, a ``"a,b;c,d"`` string or a tensor, ``[in, out]``."""
    if isinstance(spec, Tensor):
        w = spec.to(torch.float64)
    elif spec == "identity":
        if shape[0] != shape[1]:
            raise ValueError(f"{name}=identity needs a square matrix, but the shape is {shape} "
                             "(d_model x heads*head_dim); give the matrix or 'random'")
        return torch.eye(shape[0], dtype=torch.float64)
    elif spec == "random":
        bound = math.sqrt(6.0 / (shape[0] + shape[1]))  # Xavier uniform, as the layer's own init
        return _rounded((torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
    elif isinstance(spec, str):
        w = parse_matrix(spec, name)
    else:
        w = torch.as_tensor(spec, dtype=torch.float64)
    if w.dim() == 1:
        w = w.unsqueeze(0)
    if tuple(w.shape) != shape:
        raise ValueError(f"{name} must be a {shape[0]} x {shape[1]} matrix (d_model x heads*head_dim for W_q/W_k/W_v, "
                         f"the transpose for W_o), got {tuple(w.shape)}")
    return w


# ------------------------------------------------------------------ trace
def trace(
    tokens_or_graph,
    *,
    values=None,
    d_model: int | None = None,
    num_heads: int = 1,
    score: str = "dot",
    causal: bool = False,
    positional: str = "none",
    w_q="auto",
    w_k="auto",
    w_v="auto",
    w_o="identity",
    seed: int = 0,
    self_loops: bool = True,
    num_nodes: int | None = None,
) -> Trace:
    """Run one :class:`~graphformer.GraphAttention` layer on a small example and record every matrix.

    Args:
        tokens_or_graph: a sentence (split on whitespace) or a list of tokens
            -- the complete graph of the tokens (the causal DAG with
            ``causal=True``); or a networkx graph (undirected graphs use both
            directions of each edge); or an ``edge_index`` ``[2, E]`` tensor
            with ``num_nodes``.
        values: node inputs ``[N, d]`` (or ``[N]`` for d = 1), a ``"1,2,3"`` /
            ``"1,0;2,1"`` string, or None: 1, 2, ..., N when d = 1, random
            (seeded, two decimals) otherwise.
        d_model: width d (default: the width of ``values``, else 1).
        num_heads: H; d must be divisible by it.
        score: any registered score name.
        causal: attend only to earlier tokens (sentences only).
        positional: ``"none"`` or ``"sinusoidal"`` (added to the values).
        w_q, w_k, w_v: ``[d, H*C]`` projections: ``"identity"``, ``"random"``,
            a ``"a,b;c,d"`` string or a tensor; ``"auto"`` is identity for
            d = 1 and random otherwise.
        w_o: ``[H*C, d]`` output projection (identity by default).
        seed: seeds random values, weights and the score's parameters.
        self_loops: for graphs, give every node an edge to itself (as every
            token of a sentence attends to itself).
        num_nodes: node count when an ``edge_index`` is given.
    """
    generator = torch.Generator().manual_seed(seed)
    tokens, edge_index = _nodes(tokens_or_graph, num_nodes)
    N = len(tokens)  # noqa: N806
    if causal and edge_index is not None:
        raise ValueError("causal applies to a sentence (the causal DAG of its tokens); for a graph "
                         "list the directed edges you want instead")
    if positional not in ("none", "sinusoidal"):
        raise ValueError(f"positional must be 'none' or 'sinusoidal', got {positional!r}")
    if score not in available_scores():
        raise ValueError(f"unknown score {score!r}; choose one of {available_scores()}")
    if not isinstance(num_heads, int) or num_heads <= 0:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")

    # inputs
    if values is not None:
        vals = parse_matrix(values, "values") if isinstance(values, str) else torch.as_tensor(values).double()
        if vals.dim() == 1:
            vals = vals.unsqueeze(-1)
        if isinstance(values, str) and vals.size(0) == 1 and N > 1:
            vals = vals.t()  # "1,2,3": one value per token
        if vals.size(0) != N:
            raise ValueError(f"values: got {vals.size(0)} rows for {N} tokens/nodes ({' '.join(tokens[:10])}"
                             f"{' ...' if N > 10 else ''}); give one value (or row) per token")
        if d_model is not None and vals.size(1) != d_model:
            raise ValueError(f"values have {vals.size(1)} columns but d_model is {d_model}")
        d = vals.size(1)
    else:
        d = 1 if d_model is None else d_model
        if not isinstance(d, int) or d <= 0:
            raise ValueError(f"d_model must be a positive int, got {d!r}")
        if d == 1:
            vals = torch.arange(1, N + 1, dtype=torch.float64).unsqueeze(-1)
        else:
            vals = _rounded(torch.randn(N, d, generator=generator, dtype=torch.float64))
    if d % num_heads:
        raise ValueError(f"d_model={d} is not divisible by heads={num_heads}; choose heads dividing d_model")
    pe = encodings.sinusoidal(N, d).double() if positional == "sinusoidal" else None
    x = vals if pe is None else vals + pe

    # the layer, with the chosen weights
    layer = GraphAttention(d, num_heads, score=score, bias=False).double().eval()
    HC = num_heads * (d // num_heads)  # noqa: N806
    auto = "identity" if d == 1 else "random"
    chosen = {}
    for name, lin, spec in (("w_q", layer.q_proj, w_q), ("w_k", layer.k_proj, w_k), ("w_v", layer.v_proj, w_v)):
        if lin is None:
            if spec not in ("auto", None):
                raise ValueError(f"the {score!r} score has no {name} projection (it reads the values); leave it out")
            chosen[name] = None
            continue
        chosen[name] = _weight(auto if spec in ("auto", None) else spec, (d, HC), name, generator)
    chosen["w_o"] = _weight("identity" if w_o in ("auto", None) else w_o, (HC, d), "w_o", generator)
    params = {}
    with torch.no_grad():
        for name, lin in (("w_q", layer.q_proj), ("w_k", layer.k_proj), ("w_v", layer.v_proj), ("w_o", layer.out_proj)):
            if lin is not None:
                lin.weight.copy_(chosen[name].t())
        for name, p in layer.score.named_parameters():
            p.copy_(_rounded(torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1))
            params[name] = p.detach().clone()

    # run the real layer and read its record
    graph_ei = None
    with torch.no_grad():
        if edge_index is None:
            out, att = layer(x, causal=causal, return_attention=True)
            scores, weights = att.scores, att.weights  # [H, N, N]
            mask = torch.ones(N, N, dtype=torch.bool)
            if causal:
                mask = mask.tril()
        else:
            graph_ei = add_self_loops(edge_index, N, mode="remaining")[0] if self_loops else edge_index
            out, att = layer(x, graph_ei, return_attention=True)
            rec = att.edge_index  # the edges the weights belong to
            dst, src = rec[1], rec[0]
            mask = torch.zeros(N, N, dtype=torch.bool)
            mask[dst, src] = True
            scores = torch.full((num_heads, N, N), -math.inf, dtype=torch.float64)
            weights = torch.zeros(num_heads, N, N, dtype=torch.float64)
            scores[:, dst, src] = att.scores.t()
            weights[:, dst, src] = att.weights.t()
            graph_ei = rec
        if not layer.score.softmax:
            scores = torch.where(mask, scores, torch.zeros_like(scores))
        q, k, v = layer._project(x, x, False)  # [H, N, C] each (q / k may be None or the values)
        heads = weights @ v  # [H, N, C]
        explicit = heads.transpose(0, 1).flatten(1) @ chosen["w_o"]
        error = float((explicit - out).abs().max()) if N else 0.0
    return Trace(
        tokens=tokens, edge_index=graph_ei, causal=causal, score=score, num_heads=num_heads,
        values=vals, positional=pe, x=x, w_q=chosen["w_q"], w_k=chosen["w_k"], w_v=chosen["w_v"],
        w_o=chosen["w_o"], q=q if layer.q_proj is not None else None, k=k if layer.k_proj is not None else None,
        v=v, mask=mask, scores=scores, weights=weights, heads=heads, output=out, entropy=entropy_bits(weights),
        max_abs_error=error, score_params=params, softmax=layer.score.softmax)


def entropy_bits(weights: Tensor) -> Tensor:
    r"""Entropy of each row of attention weights in bits, :math:`-\sum_j p_j \log_2 p_j` (``0 log 0 = 0``).

    Rows that do not sum to one (fixed ``"gcn"`` weights) are normalised first.
    Shapes: ``[..., N, N] -> [..., N]``.
    """
    total = weights.sum(-1, keepdim=True)
    p = torch.where(total > 0, weights / total.clamp(min=torch.finfo(weights.dtype).tiny), torch.zeros_like(weights))
    terms = torch.where(p > 0, -p * torch.log2(p.clamp(min=torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    return terms.sum(-1)


def _nodes(tokens_or_graph, num_nodes: int | None) -> tuple[list[str], Tensor | None]:
    if isinstance(tokens_or_graph, str):
        tokens = tokens_or_graph.split()
        if not tokens:
            raise ValueError("the sentence is empty; give at least one token (tokens are separated by spaces)")
        return tokens, None
    if isinstance(tokens_or_graph, nx.Graph):
        if tokens_or_graph.number_of_nodes() == 0:
            raise ValueError("the graph has no nodes")
        return _graph_edges(tokens_or_graph)
    if isinstance(tokens_or_graph, Tensor):
        if num_nodes is None:
            raise ValueError("with an edge_index tensor, pass num_nodes")
        check_edge_index(tokens_or_graph, num_nodes, num_nodes)
        return [str(i) for i in range(num_nodes)], tokens_or_graph.long()
    if isinstance(tokens_or_graph, (list, tuple)) and tokens_or_graph:
        return [str(t) for t in tokens_or_graph], None
    raise TypeError("give a sentence (str), a list of tokens, a networkx graph or an edge_index tensor, "
                    f"got {type(tokens_or_graph).__name__}")


# --------------------------------------------------------------- printing
_SCORE_FORMULA = {
    "dot": "s_ij = q_i . k_j / sqrt(C)",
    "rotary": "s_ij = (R_i q_i) . (R_j k_j) / sqrt(C)   (R_p rotates channel pairs by position p)",
    "additive": "s_ij = LeakyReLU(a_dst . v_i + a_src . v_j)   (GAT)",
    "gat": "s_ij = LeakyReLU(a_dst . v_i + a_src . v_j)   (GAT)",
    "gatv2": "s_ij = a . LeakyReLU(q_i + v_j)   (GATv2)",
    "gcn": "a_ij = 1 / sqrt(d_i d_j)   (fixed GCN weights, no softmax)",
    "mean": "a_ij = 1 / d_i   (fixed mean weights, no softmax)",
}


def _channel_labels(prefix: str, heads: int, width: int) -> list[str]:
    per = width // heads
    if heads == 1:
        return [f"{prefix}{c}" for c in range(width)]
    return [f"{prefix}{h}.{c}" for h in range(heads) for c in range(per)]


def _describe_graph(t: Trace) -> str:
    N = t.num_nodes  # noqa: N806
    if t.edge_index is None:
        if t.causal:
            return (f"graph: the causal DAG on {N} tokens -- token i attends to tokens j <= i "
                    f"({N * (N + 1) // 2} edges j -> i)")
        return f"graph: the complete graph on {N} tokens -- every token attends to every token, itself included " \
               f"({N * N} edges)"
    return f"graph: {N} nodes, {t.edge_index.size(1)} edges j -> i (node i attends to its in-neighbours j)"


def format_trace(t: Trace, digits: int = 4) -> str:
    """The trace as labelled text tables (row = the token that attends, column = the token attended to)."""
    tok, H, d = t.tokens, t.num_heads, t.x.size(1)  # noqa: N806
    HC = t.v.size(0) * t.v.size(-1)  # noqa: N806
    blocks = [_describe_graph(t)]
    cols_d = [f"x{c}" for c in range(d)]
    if t.positional is not None:
        blocks.append(format_table(t.values, tok, cols_d, "input values", digits))
        blocks.append(format_table(t.positional, tok, cols_d, "sinusoidal positional encoding", digits))
        blocks.append(format_table(t.x, tok, cols_d, "X = values + positions", digits))
    else:
        blocks.append(format_table(t.x, tok, cols_d, "X (one row per token)", digits))
    for name, letter in (("w_q", "q"), ("w_k", "k"), ("w_v", "v")):
        w = getattr(t, name)
        if w is not None:
            blocks.append(format_table(w, cols_d, _channel_labels(letter, H, HC),
                                       f"W_{letter}  ({letter.upper()} = X W_{letter})", digits))
    for name, p in t.score_params.items():
        p2 = p.reshape(p.size(0), -1) if p.dim() > 1 else p.unsqueeze(0)
        blocks.append(format_table(p2, [f"head {h}" for h in range(p2.size(0))], None,
                                   f"score parameter {name}", digits))
    for name in ("q", "k", "v"):
        m = getattr(t, name)
        if m is not None:
            blocks.append(format_table(m.transpose(0, 1).flatten(1), tok, _channel_labels(name, H, HC),
                                       name.upper(), digits))
    formula = _SCORE_FORMULA.get(t.score, f"s_ij = {t.score}(q_i, k_j)")
    for h in range(H):
        tag = f" [head {h}]" if H > 1 else ""
        if t.softmax:
            blocks.append(format_table(t.scores[h], tok, tok, f"scores{tag}: {formula}   (row i attends to column j; "
                                       "-inf = no edge)", digits))
            blocks.append(format_table(t.weights[h], tok, tok, f"weights{tag}: a_ij = softmax_j(s_ij) "
                                       "(each row sums to 1)", digits))
        else:
            blocks.append(format_table(t.weights[h], tok, tok, f"weights{tag}: {formula}", digits))
        blocks.append(format_table(t.heads[h], tok, _channel_labels("o", 1, t.head_dim),
                                   f"head output{tag}: sum_j a_ij v_j", digits))
    blocks.append(format_table(t.w_o, _channel_labels("o", H, HC), [f"y{c}" for c in range(d)],
                               "W_o (output projection)", digits))
    blocks.append(format_table(t.output, tok, [f"y{c}" for c in range(d)],
                               "outputs: each token's view of its neighbours (heads concatenated, times W_o)", digits))
    ceiling = torch.log2(t.mask.sum(1).clamp(min=1).double()).unsqueeze(-1)
    ent_cols = [f"H head {h}" if H > 1 else "H (bits)" for h in range(H)] + ["log2 |N(i)|"]
    blocks.append(format_table(torch.cat([t.entropy.t(), ceiling], 1), tok, ent_cols,
                               "attention entropy in bits: 0 = listens to one token, log2 |N(i)| = to all equally"
                               + ("" if t.softmax else " (weights normalised to sum 1)"), digits))
    blocks.append(f"check: max |layer output - weights @ V @ W_o| = {t.max_abs_error:.2e}")
    return "\n\n".join(blocks)


# ------------------------------------------------------------------ files
def _csv_number(v: float) -> str:
    return repr(float(v))


def write_csv(t: Trace, directory: str | Path) -> list[str]:
    """Write every matrix of the trace as ``DIR/<name>.csv`` (header row + row labels, full precision).

    Read one back with ``pandas.read_csv(path, index_col=0)``. Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    tok, H = t.tokens, t.num_heads  # noqa: N806
    HC = t.v.size(0) * t.v.size(-1)  # noqa: N806
    d = t.x.size(1)
    labels = {
        "values": (tok, [f"x{c}" for c in range(d)]), "positional": (tok, [f"x{c}" for c in range(d)]),
        "x": (tok, [f"x{c}" for c in range(d)]),
        "w_q": ([f"x{c}" for c in range(d)], _channel_labels("q", H, HC)),
        "w_k": ([f"x{c}" for c in range(d)], _channel_labels("k", H, HC)),
        "w_v": ([f"x{c}" for c in range(d)], _channel_labels("v", H, HC)),
        "w_o": (_channel_labels("o", H, HC), [f"y{c}" for c in range(d)]),
        "q": (tok, _channel_labels("q", H, HC)), "k": (tok, _channel_labels("k", H, HC)),
        "v": (tok, _channel_labels("v", H, HC)), "heads": (tok, _channel_labels("o", H, HC)),
        "output": (tok, [f"y{c}" for c in range(d)]), "entropy": (tok, [f"head{h}" for h in range(H)]),
    }
    for name, m in t.matrices().items():
        rows, cols = labels.get(name, (tok, tok) if name.startswith(("scores", "weights")) else (None, None))
        m = m.detach().double()
        rows = rows if rows is not None else [f"head{h}" for h in range(m.size(0))]
        cols = cols if cols is not None else [str(c) for c in range(m.size(1))]
        path = directory / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([""] + list(cols))
            for label, row in zip(rows, m.tolist()):
                writer.writerow([label] + [_csv_number(v) for v in row])
        written.append(str(path))
    return written


def _figure(**kwargs):
    """A matplotlib Figure drawn off-screen (no pyplot, no global backend switch)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("pictures need matplotlib: pip install 'graphformer[viz]' (or pip install matplotlib)") \
            from err
    return Figure(**kwargs)


def _plot_labels(tokens: list[str]) -> list[str]:
    """Tokens as plot labels; numbered when they need glyphs (CJK) the installed fonts lack."""
    from matplotlib import font_manager

    if all(t.isascii() for t in tokens):
        return tokens
    cjk = {"Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei",
           "Microsoft YaHei", "PingFang SC", "Heiti SC", "Arial Unicode MS", "Droid Sans Fallback"}
    if any(f.name in cjk for f in font_manager.fontManager.ttflist):
        return tokens
    return [t if t.isascii() else f"#{i}" for i, t in enumerate(tokens)]


def write_png(t: Trace, path: str | Path, head: int = 0) -> str:
    """Draw the attention weights of one head: a heatmap beside the graph with edge widths = weights.

    Needs matplotlib (``pip install graphformer[viz]``). Returns the path written.
    """
    if not 0 <= head < t.num_heads:
        raise ValueError(f"head must lie in [0, {t.num_heads}), got {head}")
    fig = _figure(figsize=(11, 5))
    labels = _plot_labels(t.tokens)
    w = t.weights[head].numpy()
    N = t.num_nodes  # noqa: N806
    ax_map, ax_graph = fig.subplots(1, 2)
    image = ax_map.imshow(w, cmap="viridis", vmin=0.0, vmax=max(float(w.max()), 1e-12))
    ax_map.set_xticks(range(N), labels, rotation=90 if N > 8 else 0)
    ax_map.set_yticks(range(N), labels)
    ax_map.set_xlabel("attended to (j)")
    ax_map.set_ylabel("attends (i)")
    if N <= 8:
        for i in range(N):
            for j in range(N):
                ax_map.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center",
                            color="white" if w[i, j] < 0.6 * w.max() else "black", fontsize=9)
    fig.colorbar(image, ax=ax_map, fraction=0.046, pad=0.04)
    ax_map.set_title(f"attention weights a_ij (head {head})")

    graph = nx.DiGraph()
    graph.add_nodes_from(range(N))
    dst, src = np.nonzero(t.mask.numpy())
    edges = [(int(j), int(i)) for i, j in zip(dst, src) if i != j]
    graph.add_edges_from(edges)
    pos = nx.circular_layout(graph) if t.edge_index is None else nx.spring_layout(graph, seed=0)
    widths = [0.5 + 6.0 * float(w[i, j]) for j, i in edges]
    loops = np.array([w[i, i] for i in range(N)])
    nx.draw_networkx_nodes(graph, pos, ax=ax_graph, node_size=300 + 1500 * loops, node_color="#9ecae1")
    nx.draw_networkx_labels(graph, pos, {i: labels[i] for i in range(N)}, ax=ax_graph, font_size=10)
    nx.draw_networkx_edges(graph, pos, edgelist=edges, width=widths, ax=ax_graph, arrows=True,
                           connectionstyle="arc3,rad=0.12", arrowsize=12, edge_color="#555555")
    ax_graph.set_title("edges j -> i, width = a_ij (node size = self-attention)")
    ax_graph.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def cycle_spectrum_figure(n: int, path: str | Path, modes: int = 3) -> float:
    """Draw the claim that the positional encoding of a sentence is the spectrum of its graph.

    For the cycle C_n, the Laplacian eigenvectors of each eigenvalue
    2 - 2cos(2 pi m / n) (m = 1..``modes``) are plotted (dots) over the waves
    cos(2 pi m i / n) and sin(2 pi m i / n) (lines) after the rotation within
    the eigenspace that best matches them. Needs matplotlib. Returns the
    largest projection residual of the waves onto the eigenvectors (~1e-15).
    """
    if not isinstance(n, int) or n < 3:
        raise ValueError(f"n must be an int >= 3 (a cycle), got {n!r}")
    if not 1 <= modes < n / 2:
        raise ValueError(f"modes must lie in [1, n/2), got {modes}")
    fig = _figure(figsize=(10, 2.2 * modes))
    lap = encodings.laplacian(_graph_edges(nx.cycle_graph(n))[1], n, normalized=False).toarray()
    vals, vecs = np.linalg.eigh(lap)
    i = np.arange(n)
    fine = np.linspace(0, n, 400)
    axes = fig.subplots(modes, 1, sharex=True, squeeze=False)
    worst = 0.0
    for m in range(1, modes + 1):
        block = vecs[:, 2 * m - 1:2 * m + 1]  # the eigenspace of 2 - 2cos(2 pi m / n)
        waves = np.stack([np.cos(2 * np.pi * m * i / n), np.sin(2 * np.pi * m * i / n)], 1) / math.sqrt(n / 2)
        coef = block.T @ waves  # the rotation taking the eigenvectors onto the waves
        worst = max(worst, float(np.abs(waves - block @ coef).max()))
        aligned = block @ coef
        ax = axes[m - 1, 0]
        for c, (name, fn) in enumerate((("cos", np.cos), ("sin", np.sin))):
            ax.plot(fine, fn(2 * np.pi * m * fine / n) / math.sqrt(n / 2), color=f"C{c}", lw=1,
                    label=f"{name}(2 pi {m} i / {n})")
            ax.plot(i, aligned[:, c], "o", color=f"C{c}", ms=4, label=f"eigenvector ({name} part)")
        ax.set_ylabel(f"m = {m}\nlambda = {vals[2 * m - 1]:.3f}")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    axes[-1, 0].set_xlabel("node i of the cycle (token position)")
    fig.suptitle(f"Laplacian eigenvectors of the cycle C_{n} are the sinusoidal encoding "
                 f"(max residual {worst:.1e})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return worst


def _json_matrix(m: Tensor) -> list:
    return [[None if not math.isfinite(v) else v for v in row] for row in m.double().tolist()]


def _html_table(m: Tensor, rows: list[str], cols: list[str], key: str, editable: bool = False,
                shade: bool = False) -> str:
    out = ['<table class="m"><tr><th></th>' + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for i, (label, row) in enumerate(zip(rows, m.double().tolist())):
        cells = []
        for j, v in enumerate(row):
            cell_id = f'{key}-{i}-{j}'
            if editable:
                cells.append(f'<td><input id="{cell_id}" data-m="{key}" data-i="{i}" data-j="{j}" '
                             f'type="number" step="any" value="{v!r}"></td>')
            else:
                text = "-inf" if v == -math.inf else f"{v:.4f}"
                style = f' style="background: rgba(49,130,189,{min(max(v, 0.0), 1.0):.3f})"' if shade else ""
                cells.append(f'<td id="{cell_id}"{style}>{text}</td>')
        out.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
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
  const res = {V: V, Q: d.w_q ? Q : null, K: d.w_k ? K : null, scores: [], weights: [], heads: [], entropy: []};
  const cat = Array.from({length: N}, () => []);
  for (let h = 0; h < H; h++) {
    const q = headOf(Q, h, C), k = headOf(K, h, C), v = headOf(V, h, C);
    const deg = mask.map(row => row.reduce((s, m) => s + m, 0));
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
// END COMPUTE
function maxDiff(a, b) {
  if (a === null || b === null || typeof a === "number" || typeof b === "number") {
    if (a === null || b === null) return (a === b) ? 0 : Infinity;
    return Math.abs(a - b);
  }
  return a.reduce((m, x, i) => Math.max(m, maxDiff(x, b[i])), 0);
}
function fmt(v) { return v === null ? "-inf" : v.toFixed(4); }
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
function readInputs() {
  const d = JSON.parse(JSON.stringify(DATA));
  document.querySelectorAll("input[data-m]").forEach(inp => {
    const v = parseFloat(inp.value);
    d[inp.dataset.m][+inp.dataset.i][+inp.dataset.j] = isNaN(v) ? 0 : v;
  });
  return d;
}
function update() { render(compute(readInputs())); document.getElementById("status").textContent =
  "recomputed in the browser from the numbers above"; }
window.addEventListener("DOMContentLoaded", () => {
  const r = compute(DATA);
  render(r);
  const diff = Math.max(maxDiff(r.scores, DATA.python.scores), maxDiff(r.weights, DATA.python.weights),
                        maxDiff(r.output, DATA.python.output), maxDiff(r.entropy, DATA.python.entropy));
  const status = document.getElementById("status");
  status.dataset.maxdiff = String(diff);
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
h2 { font-size: 1.1em; margin-top: 1.5em; } .note { color: #555; } #status { font-weight: bold; }
"""


def write_html(t: Trace, path: str | Path) -> str:
    """Write one self-contained page where X and the weights are editable and every matrix recomputes.

    The page embeds the numbers Python computed and, on load, recomputes
    them in JavaScript (inline, no network) and reports the largest
    difference. Works for the scores ``dot``, ``rotary``, ``additive``,
    ``gatv2``, ``gcn`` and ``mean``. Returns the path written.
    """
    if t.score not in _JS_SCORES:
        raise ValueError(f"the HTML page recomputes the scores {list(_JS_SCORES)} in the browser; "
                         f"{t.score!r} is not one of them (use --csv or the tables instead)")
    tok, H = t.tokens, t.num_heads  # noqa: N806
    d = t.x.size(1)
    HC = t.v.size(0) * t.v.size(-1)  # noqa: N806
    score_module = make_score(t.score, H, t.head_dim)  # for its constants
    data = {
        "tokens": tok, "heads": H, "head_dim": t.head_dim, "score": t.score, "softmax": t.softmax,
        "mask": t.mask.int().tolist(), "X": t.x.tolist(),
        "w_q": None if t.w_q is None else t.w_q.tolist(), "w_k": None if t.w_k is None else t.w_k.tolist(),
        "w_v": t.w_v.tolist(), "w_o": t.w_o.tolist(),
        "params": {k: v.reshape(v.size(0), -1).tolist() for k, v in t.score_params.items()},
        "base": float(getattr(getattr(score_module, "rotary", None), "base", 10000.0)),
        "negative_slope": float(getattr(score_module, "negative_slope", 0.2)),
        "python": {"scores": [_json_matrix(s) for s in t.scores], "weights": [_json_matrix(w) for w in t.weights],
                   "output": _json_matrix(t.output), "entropy": t.entropy.tolist()},
    }
    blob = json.dumps(data, ensure_ascii=True, allow_nan=False).replace("</", "<\\/")
    cols_d = [f"x{c}" for c in range(d)]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>graphformer explain: {html.escape(' '.join(tok[:12]))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Attention by hand: {html.escape(' '.join(tok[:12]))}{' ...' if len(tok) > 12 else ''}</h1>",
        f"<p class='note'>{html.escape(_describe_graph(t))}. Score: {html.escape(_SCORE_FORMULA.get(t.score, ''))}. "
        "Rows are the token that attends, columns the token attended to. Edit any number in X or in the "
        "weights: every matrix below recomputes in this page.</p>",
        "<p id='status'>JavaScript is off: the numbers below are the ones Python computed.</p>",
        "<h2>X (input, editable)</h2>", _html_table(t.x, tok, cols_d, "X", editable=True),
    ]
    for name, letter in (("w_q", "q"), ("w_k", "k"), ("w_v", "v")):
        w = getattr(t, name)
        if w is not None:
            parts += [f"<h2>W_{letter} (editable; {letter.upper()} = X W_{letter})</h2>",
                      _html_table(w, cols_d, _channel_labels(letter, H, HC), name, editable=True)]
    parts += ["<h2>W_o (editable)</h2>", _html_table(t.w_o, _channel_labels("o", H, HC),
                                                      [f"y{c}" for c in range(d)], "w_o", editable=True)]
    for name in ("q", "k", "v"):
        m = getattr(t, name)
        if m is not None:
            parts += [f"<h2>{name.upper()}</h2>", _html_table(m.transpose(0, 1).flatten(1), tok,
                                                              _channel_labels(name, H, HC), name)]
    for h in range(H):
        tag = f" (head {h})" if H > 1 else ""
        if t.softmax:
            parts += [f"<h2>scores{tag}</h2>", _html_table(t.scores[h], tok, tok, f"scores{h}")]
        parts += [f"<h2>weights{tag}</h2>", _html_table(t.weights[h], tok, tok, f"weights{h}", shade=True),
                  f"<h2>head output{tag}: sum_j a_ij v_j</h2>",
                  _html_table(t.heads[h], tok, _channel_labels("o", 1, t.head_dim), f"heads{h}")]
    parts += ["<h2>outputs</h2>", _html_table(t.output, tok, [f"y{c}" for c in range(d)], "output"),
              "<h2>attention entropy (bits)</h2>",
              _html_table(t.entropy.t(), tok, [f"head {h}" for h in range(H)], "entropy"),
              "<pre id='result' hidden></pre>",
              f"<script>const DATA = {blob};\n{_JS}</script></body></html>"]
    Path(path).write_text("\n".join(parts), encoding="utf-8")
    return str(path)


# -------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer explain``."""
    parser.add_argument("sentence", nargs="?", default=None,
                        help=f"space-separated tokens, the complete graph of them (default: {DEFAULT_SENTENCE!r})")
    g = parser.add_argument_group("graph (default: the complete graph of the sentence)")
    g.add_argument("--causal", action="store_true",
                   help="the causal DAG: each token attends to itself and earlier ones")
    g.add_argument("--edges", metavar="FILE", help="edge list, one 'source target' pair per line")
    g.add_argument("--directed", action="store_true", help="with --edges: 'a b' means a -> b only (b attends to a)")
    g.add_argument("--graph", choices=sorted(NAMED_GRAPHS), help="a small named networkx graph")
    g.add_argument("--nodes", type=int, default=5, help="size of path/cycle/star/wheel/complete (default: 5)")
    g.add_argument("--self-loops", action=argparse.BooleanOptionalAction, default=True,
                   help="for graphs: every node also attends to itself (default: on)")
    m = parser.add_argument_group("layer and numbers")
    m.add_argument("--d-model", type=int, default=None, help="width d (default: 1, or the width of --values/--x)")
    m.add_argument("--heads", type=int, default=1, help="number of heads (default: 1)")
    m.add_argument("--score", default="dot", help=f"any registered score: {', '.join(available_scores())}")
    m.add_argument("--positional", choices=["none", "sinusoidal"], default="none",
                   help="add a sinusoidal positional encoding to the values (default: none)")
    m.add_argument("--seed", type=int, default=0, help="seed of random values and weights (default: 0)")
    m.add_argument("--values", help="inputs: '1,2,3' (one per token, d = 1) or rows '1,0;2,1;3,1'")
    m.add_argument("--x", metavar="FILE.csv", help="inputs as a CSV file, one row per token")
    for name in ("wq", "wk", "wv"):
        m.add_argument(f"--{name}", default="auto",
                       help=f"W_{name[1]} [d, d]: 'identity', 'random' or rows 'a,b;c,d' "
                            "(default: identity when d = 1, else random)")
    m.add_argument("--wo", default="identity", help="output projection W_o: 'identity' (default), 'random' or rows")
    o = parser.add_argument_group("output")
    o.add_argument("--digits", type=int, default=4, help="decimals in the tables (default: 4)")
    o.add_argument("--csv", metavar="DIR", help="write every matrix as DIR/<name>.csv")
    o.add_argument("--png", metavar="FILE", help="write a picture: weight heatmap beside the graph (needs matplotlib)")
    o.add_argument("--html", metavar="FILE", help="write one self-contained interactive page")


def run(args: argparse.Namespace) -> dict:
    """Print the trace as tables, write the requested files, return outputs and entropies as metrics."""
    if sum(v is not None for v in (args.sentence, args.edges, args.graph)) > 1:
        raise ValueError("give one of: a sentence, --edges FILE or --graph NAME")
    if args.values is not None and args.x is not None:
        raise ValueError("give the inputs with --values or --x, not both")
    if args.nodes < 1:
        raise ValueError(f"--nodes must be >= 1, got {args.nodes}")
    if args.graph is not None:
        build, _ = NAMED_GRAPHS[args.graph]
        source = build(args.nodes)
    elif args.edges is not None:
        tokens, ei = _read_edges(args.edges, args.directed)
        source = nx.DiGraph()
        source.add_nodes_from(tokens)
        source.add_edges_from((tokens[j], tokens[i]) for j, i in ei.t().tolist())
    else:
        source = args.sentence if args.sentence is not None else DEFAULT_SENTENCE
    values = args.values
    if args.x is not None:
        values = _read_csv_matrix(args.x, "--x")
    t = trace(source, values=values, d_model=args.d_model, num_heads=args.heads, score=args.score,
              causal=args.causal, positional=args.positional, w_q=args.wq, w_k=args.wk, w_v=args.wv,
              w_o=args.wo, seed=args.seed, self_loops=args.self_loops)
    print(format_trace(t, args.digits))
    metrics: dict = {
        "tokens": t.tokens,
        "outputs": t.output.tolist(),
        "weights": t.weights.tolist(),
        "entropy_bits": t.entropy.tolist(),
        "max_abs_error": t.max_abs_error,
    }
    if args.csv:
        metrics["csv"] = write_csv(t, args.csv)
    if args.png:
        try:
            metrics["png"] = write_png(t, args.png)
        except ImportError as err:
            raise ValueError(f"--png: {err}") from err
    if args.html:
        metrics["html"] = write_html(t, args.html)
    return metrics
