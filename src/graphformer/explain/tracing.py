"""Run the real :class:`~graphformer.GraphAttention` on a small example and record every matrix.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

import math

import torch

from .. import encodings
from ..attention import GraphAttention
from ..scores import available_scores
from ..structure import add_self_loops
from .inputs import input_values, nodes_of, rounded, weight
from .record import Trace, entropy_bits

__all__ = ["score_formula", "trace"]


def score_formula(score_module, name: str) -> str:
    """The plain-text formula of a score module: its class's ``formula``, else a generic one from its name."""
    formula = getattr(score_module, "formula", None)
    if formula:
        return formula
    return f"s_ij = {name}(q_i, k_j)" if getattr(score_module, "softmax", True) else f"a_ij = {name}(q_i, k_j)"


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
            (seeded, two decimals) otherwise. Must be finite.
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

    Raises:
        ValueError: for invalid options, non-finite inputs, or numbers so
            large that the layer overflows float64 (never a NaN in the record).
    """
    generator = torch.Generator().manual_seed(seed)
    tokens, edge_index = nodes_of(tokens_or_graph, num_nodes)
    N = len(tokens)  # noqa: N806
    if causal and edge_index is not None:
        raise ValueError(
            "causal applies to a sentence (the causal DAG of its tokens); for a graph "
            "list the directed edges you want instead"
        )
    if positional not in ("none", "sinusoidal"):
        raise ValueError(f"positional must be 'none' or 'sinusoidal', got {positional!r}")
    if score not in available_scores():
        raise ValueError(f"unknown score {score!r}; choose one of {available_scores()}")
    if not isinstance(num_heads, int) or num_heads <= 0:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")

    vals = input_values(values, tokens, d_model, generator)
    d = vals.size(1)
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
        chosen[name] = weight(auto if spec in ("auto", None) else spec, (d, HC), name, generator)
    chosen["w_o"] = weight("identity" if w_o in ("auto", None) else w_o, (HC, d), "w_o", generator)
    params = {}
    with torch.no_grad():
        for name, lin in (("w_q", layer.q_proj), ("w_k", layer.k_proj), ("w_v", layer.v_proj), ("w_o", layer.out_proj)):
            if lin is not None:
                lin.weight.copy_(chosen[name].t())
        for name, p in layer.score.named_parameters():
            p.copy_(rounded(torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1))
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
        _check_no_overflow(
            {
                "Q": q,
                "K": k,
                "V": v,
                "scores": torch.where(mask, scores, torch.zeros_like(scores)),
                "weights": weights,
                "outputs": out,
            }
        )
        error = float((explicit - out).abs().max()) if N else 0.0
    return Trace(
        tokens=tokens,
        edge_index=graph_ei,
        causal=causal,
        score=score,
        num_heads=num_heads,
        values=vals,
        positional=pe,
        x=x,
        w_q=chosen["w_q"],
        w_k=chosen["w_k"],
        w_v=chosen["w_v"],
        w_o=chosen["w_o"],
        q=q if layer.q_proj is not None else None,
        k=k if layer.k_proj is not None else None,
        v=v,
        mask=mask,
        scores=scores,
        weights=weights,
        heads=heads,
        output=out,
        entropy=entropy_bits(weights),
        max_abs_error=error,
        score_params=params,
        softmax=layer.score.softmax,
        formula=score_formula(layer.score, score),
    )


def _check_no_overflow(matrices: dict) -> None:
    for name, m in matrices.items():
        if m is not None and not bool(torch.isfinite(m).all()):
            raise ValueError(
                f"the {name} overflow float64 (they reach inf or NaN) with these inputs; "
                "give smaller values (--values / --x) or weights (--wq/--wk/--wv/--wo)"
            )
