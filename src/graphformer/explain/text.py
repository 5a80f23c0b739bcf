"""The trace as text tables, the form ``graphformer explain`` prints.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

import torch

from .._text import format_table
from .record import Trace

__all__ = ["channel_labels", "check_digits", "describe_graph", "format_trace", "weights_title"]

MAX_DIGITS = 15


def check_digits(digits) -> int:
    """``digits`` if it is an int in [0, 15], else a ValueError that names ``--digits``."""
    if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= MAX_DIGITS:
        raise ValueError(f"--digits must be an int from 0 to {MAX_DIGITS} (decimals in the tables), got {digits!r}")
    return digits


def weights_title(t: Trace) -> str:
    """What the weights are, in one line: ``a_ij = softmax_j(s_ij), s_ij = ...`` or the fixed formula."""
    if t.softmax:
        return f"a_ij = softmax_j(s_ij),  {t.formula}"
    return f"{t.formula}   (fixed weights, no softmax)"


def channel_labels(prefix: str, heads: int, width: int) -> list[str]:
    """Column labels of a ``[N, H*C]`` matrix: ``q0, q1, ...`` for one head, ``q0.0, q0.1, q1.0, ...`` for more."""
    per = width // heads
    if heads == 1:
        return [f"{prefix}{c}" for c in range(width)]
    return [f"{prefix}{h}.{c}" for h in range(heads) for c in range(per)]


def describe_graph(t: Trace) -> str:
    """One line saying which graph the trace ran on and how many edges it has."""
    N = t.num_nodes  # noqa: N806
    if t.edge_index is None:
        if t.causal:
            return (
                f"graph: the causal DAG on {N} tokens -- token i attends to tokens j <= i "
                f"({N * (N + 1) // 2} edges j -> i)"
            )
        return (
            f"graph: the complete graph on {N} tokens -- every token attends to every token, itself included "
            f"({N * N} edges)"
        )
    return f"graph: {N} nodes, {t.edge_index.size(1)} edges j -> i (node i attends to its in-neighbours j)"


def format_trace(t: Trace, digits: int = 4) -> str:
    """The trace as labelled text tables (row = the token that attends, column = the token attended to).

    ``digits`` (0 to 15) decimals per number.
    """
    check_digits(digits)
    tok, H, d = t.tokens, t.num_heads, t.x.size(1)  # noqa: N806
    HC = t.v.size(0) * t.v.size(-1)  # noqa: N806
    blocks = [describe_graph(t)]
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
            blocks.append(
                format_table(
                    w, cols_d, channel_labels(letter, H, HC), f"W_{letter}  ({letter.upper()} = X W_{letter})", digits
                )
            )
    for name, p in t.score_params.items():
        p2 = p.reshape(p.size(0), -1) if p.dim() > 1 else p.unsqueeze(0)
        blocks.append(
            format_table(p2, [f"head {h}" for h in range(p2.size(0))], None, f"score parameter {name}", digits)
        )
    for name in ("q", "k", "v"):
        m = getattr(t, name)
        if m is not None:
            blocks.append(
                format_table(m.transpose(0, 1).flatten(1), tok, channel_labels(name, H, HC), name.upper(), digits)
            )
    formula = t.formula
    for h in range(H):
        tag = f" [head {h}]" if H > 1 else ""
        if t.softmax:
            blocks.append(
                format_table(
                    t.scores[h],
                    tok,
                    tok,
                    f"scores{tag}: {formula}   (row i attends to column j; -inf = no edge)",
                    digits,
                )
            )
            blocks.append(
                format_table(
                    t.weights[h], tok, tok, f"weights{tag}: a_ij = softmax_j(s_ij) (each row sums to 1)", digits
                )
            )
        else:
            blocks.append(
                format_table(t.weights[h], tok, tok, f"weights{tag}: {formula}   (fixed weights, no softmax)", digits)
            )
        blocks.append(
            format_table(
                t.heads[h], tok, channel_labels("o", 1, t.head_dim), f"head output{tag}: sum_j a_ij v_j", digits
            )
        )
    blocks.append(
        format_table(t.w_o, channel_labels("o", H, HC), [f"y{c}" for c in range(d)], "W_o (output projection)", digits)
    )
    blocks.append(
        format_table(
            t.output,
            tok,
            [f"y{c}" for c in range(d)],
            "outputs: each token's view of its neighbours (heads concatenated, times W_o)",
            digits,
        )
    )
    ceiling = torch.log2(t.mask.sum(1).clamp(min=1).double()).unsqueeze(-1)
    ent_cols = [f"H head {h}" if H > 1 else "H (bits)" for h in range(H)] + ["log2 |N(i)|"]
    blocks.append(
        format_table(
            torch.cat([t.entropy.t(), ceiling], 1),
            tok,
            ent_cols,
            "attention entropy in bits: 0 = listens to one token, log2 |N(i)| = to all equally"
            + ("" if t.softmax else " (weights normalised to sum 1)"),
            digits,
        )
    )
    blocks.append(f"check: max |layer output - weights @ V @ W_o| = {t.max_abs_error:.2e}")
    return "\n\n".join(blocks)
