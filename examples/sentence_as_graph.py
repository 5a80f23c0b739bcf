"""A sentence is a graph: "我 爱 你" as a complete graph of three tokens.

The worked example of the tutorial, computed with the library's own layer
(:class:`graphformer.GraphAttention`), nothing typed in:

1. Self-attention with d_model = 1, token values 1, 2, 3 and identity
   projections (Q = K = V = X): the scores q_i k_j, the softmax weights (row =
   the token that attends, column = the token attended to) and the outputs,
   each token's view of the sentence.
2. The product with V by hand, in exact arithmetic, for the illustrative
   weights [[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]] -- and the
   same numbers from the layer.
3. Attention alone cannot see order: "我爱你" and "你爱我" give the same
   outputs, only permuted. Adding a sinusoidal position to each token's
   value breaks the tie (and so does the Transformer's embedding + encoding
   at width 8).
4. The sentence graph drawn with edge widths set by the attention weights
   (``--png``; needs matplotlib, the ``viz`` extra).

Run::

    python examples/sentence_as_graph.py --png sentence.png

Legend: N tokens, d features per token.
"""

from __future__ import annotations

import argparse
import math
import sys
from fractions import Fraction

import torch

import graphformer as gf
from graphformer._text import format_table
from graphformer.encodings import sinusoidal

ILLUSTRATIVE_WEIGHTS = [["0.6", "0.2", "0.2"], ["0.2", "0.6", "0.2"], ["0.2", "0.2", "0.6"]]

# readings of the default tokens, used in pictures when no CJK font is installed
ROMANISED = {"我": "wǒ (I)", "爱": "ài (love)", "你": "nǐ (you)"}


def identity_layer(d_model: int) -> gf.GraphAttention:
    """One-head attention whose four projections are the identity, so Q = K = V = X and out = A V.

    Its score is the layer's scaled dot product, ``q_i . k_j / sqrt(d_model)``
    (for d_model = 1 just ``x_i x_j``). Float64, eval mode.
    """
    layer = gf.GraphAttention(d_model, num_heads=1, bias=False).double()
    with torch.no_grad():
        for lin in (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj):
            lin.weight.copy_(torch.eye(d_model, dtype=torch.float64))
    return layer.eval()


def decimal(value: Fraction) -> str:
    """Write a fraction as a terminating decimal when it has one (``8/5`` -> ``1.6``), else ``p/q``."""
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return f"{float(value):.{digits}f}" if digits else str(value.numerator)


def weighted_sums(
    weights: list[list[Fraction]], values: list[Fraction], tokens: list[str]
) -> tuple[list[Fraction], list[str]]:
    """Exact ``out_i = sum_j a_ij v_j`` and one line per token showing every term."""
    outs, lines = [], []
    for token, row in zip(tokens, weights):
        out = sum((a * v for a, v in zip(row, values)), Fraction(0))
        terms = " + ".join(f"{decimal(a)}×{decimal(v)}" for a, v in zip(row, values))
        outs.append(out)
        lines.append(f"{token}: {terms} = {decimal(out)}")
    return outs, lines


# ------------------------------------------------------------------ picture
def _cjk_font():
    """A font that renders CJK characters, or None."""
    from matplotlib import font_manager

    for family in (
        "Noto Sans CJK SC",
        "Noto Sans CJK JP",
        "Noto Sans SC",
        "Source Han Sans SC",
        "WenQuanYi Zen Hei",
        "WenQuanYi Micro Hei",
        "SimHei",
        "Microsoft YaHei",
        "PingFang SC",
        "Heiti SC",
        "Arial Unicode MS",
    ):
        try:
            path = font_manager.findfont(family, fallback_to_default=False)
        except ValueError:
            continue
        return font_manager.FontProperties(fname=path)
    return None


def draw_attention_graph(tokens, weights, path, *, labels=None, title=None) -> str:
    """Draw the complete graph of ``tokens`` with edge j -> i as wide as the weight a_ij; save a PNG.

    Args:
        tokens: N token strings.
        weights: ``[N, N]`` attention weights (row i attends to column j).
        path: the PNG file to write.
        labels: node labels (default: the tokens, romanised when no CJK font
            is installed).
        title: figure title.

    Returns the path written. Raises ``ModuleNotFoundError`` without matplotlib.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, FancyArrowPatch

    w = torch.as_tensor(weights, dtype=torch.float64)
    n = len(tokens)
    if tuple(w.shape) != (n, n):
        raise ValueError(f"weights must be [{n}, {n}] for {n} tokens, got {tuple(w.shape)}")
    font = None
    if labels is None:
        labels = list(tokens)
        if any(ord(ch) >= 0x2E80 for t in tokens for ch in t):  # CJK: needs a font that has the glyphs
            font = _cjk_font()
            if font is None:
                labels = [ROMANISED.get(t, f"token {i}") for i, t in enumerate(tokens)]
    angle = [math.pi / 2 + 2 * math.pi * i / n for i in range(n)]  # first token on top, then anticlockwise
    pos = [(math.cos(a), math.sin(a)) for a in angle]
    radius = 0.27

    fig = Figure(figsize=(4.6, 4.0), dpi=110)
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.92 if title else 1.0))
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_xlim(-1.8, 1.8)
    ax.set_ylim(min(y for _, y in pos) - 0.7, 1.85)
    color = "#1f5fa8"
    for i in range(n):  # target i
        for j in range(n):  # source j
            a = float(w[i, j])
            width = 0.5 + 9.0 * a
            if i == j:  # self-loop, drawn outside the node
                ux, uy = pos[i]
                cx, cy = pos[i][0] + 0.40 * ux, pos[i][1] + 0.40 * uy
                ax.add_patch(Circle((cx, cy), 0.17, fill=False, lw=width, color=color, alpha=0.85, zorder=1))
                ax.text(pos[i][0] + 0.78 * ux, pos[i][1] + 0.78 * uy, f"{a:.2f}", ha="center", va="center", fontsize=9)
                continue
            (x1, y1), (x2, y2) = pos[j], pos[i]
            rad = 0.22
            ax.add_patch(
                FancyArrowPatch(
                    (x1, y1),
                    (x2, y2),
                    connectionstyle=f"arc3,rad={rad}",
                    arrowstyle="-|>",
                    mutation_scale=12 + 10 * a,
                    lw=width,
                    color=color,
                    alpha=0.85,
                    shrinkA=28,
                    shrinkB=30,
                    zorder=1,
                )
            )
            dx, dy = x2 - x1, y2 - y1
            mx, my = (x1 + x2) / 2 + 0.5 * rad * dy * 1.45, (y1 + y2) / 2 - 0.5 * rad * dx * 1.45
            ax.text(
                mx,
                my,
                f"{a:.2f}",
                ha="center",
                va="center",
                fontsize=9,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
            )
    for (x, y), label in zip(pos, labels):
        ax.add_patch(Circle((x, y), radius, fc="#f6d78b", ec="#7a5b00", lw=1.5, zorder=2))
        ax.text(
            x, y, label, ha="center", va="center", fontsize=11 if len(label) < 4 else 8, zorder=3, fontproperties=font
        )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    return str(path)


# --------------------------------------------------------------------- run
def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--sentence", default="我 爱 你", help="space-separated tokens (default: %(default)s)")
    parser.add_argument("--png", default=None, metavar="PATH", help="draw the sentence graph into this PNG file")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Run the worked example, print every table and return the key numbers."""
    args = build_parser().parse_args(argv)
    tokens = args.sentence.split()
    if len(tokens) < 2:
        raise ValueError("--sentence needs at least two space-separated tokens")
    n = len(tokens)
    values = torch.arange(1, n + 1, dtype=torch.float64)  # token values 1, 2, ..., N
    x = values.unsqueeze(-1)  # [N, 1]
    layer = identity_layer(1)
    result: dict = {"tokens": tokens}

    # 1. the sentence as a complete graph -----------------------------------
    print(f"1. '{' '.join(tokens)}' is a complete graph: every token attends to every token (d_model = 1)")
    with torch.no_grad():
        out, att = layer(x, return_attention=True)
    scores, weights = att.scores[0], att.weights[0]  # [N, N]: row i attends to column j
    print(format_table(x, tokens, ["x = q = k = v"], title="token values"))
    print(format_table(scores, tokens, tokens, title="scores q_i·k_j (row = the token that attends)"))
    print(format_table(weights, tokens, tokens, title="softmax weights a_ij (each row sums to 1)"))
    print(format_table(out, tokens, ["output"], title="outputs sum_j a_ij v_j: each token's view of the sentence"))
    result.update(
        values=values.tolist(), scores=scores.tolist(), weights=weights.tolist(), outputs=out.squeeze(-1).tolist()
    )

    # 2. the product with V by hand -----------------------------------------
    if n == 3:
        print("\n2. by hand, with the illustrative weights (exact arithmetic)")
        a = [[Fraction(s) for s in row] for row in ILLUSTRATIVE_WEIGHTS]
        v = [Fraction(int(t)) for t in values.tolist()]
        exact, lines = weighted_sums(a, v, tokens)
        print(format_table([[float(e) for e in row] for row in a], tokens, tokens, title="weights A"))
        print("A·V, one row per token:")
        print("\n".join("  " + line for line in lines))
        # the layer gives the same numbers when a bias turns its scores into log A: softmax(s + log A - s) = A
        bias = torch.tensor([[float(e) for e in row] for row in a], dtype=torch.float64).log() - scores
        with torch.no_grad():
            out_a, att_a = layer(x, attn_bias=bias, return_attention=True)
        layer_error = float(
            (out_a.squeeze(-1) - torch.tensor([float(e) for e in exact], dtype=torch.float64)).abs().max()
        )
        print(
            f"the layer with scores shifted to log A gives {[round(t, 6) for t in out_a.squeeze(-1).tolist()]} "
            f"(largest difference {layer_error:.1e})"
        )
        result.update(
            illustrative_weights=[[float(e) for e in row] for row in a],
            illustrative_outputs=[decimal(e) for e in exact],
            illustrative_terms=lines,
            illustrative_layer_error=layer_error,
        )

    # 3. order -----------------------------------------------------------------
    rev = tokens[::-1]
    print(f"\n3. without positions, '{''.join(tokens)}' and '{''.join(rev)}' are the same graph")
    perm = torch.arange(n - 1, -1, -1)  # token at position p of the reversed sentence = token n-1-p
    with torch.no_grad():
        out_rev = layer(x[perm])
    print(
        format_table(
            torch.cat([out, out_rev[perm]], 1),
            tokens,
            ["".join(tokens), "".join(rev)],
            title="each token's output in the two sentences",
        )
    )
    perm_error = float((out_rev - out[perm]).abs().max())
    same = perm_error < 1e-12
    if not same:
        raise RuntimeError(f"attention without positions should be permutation-equivariant (error {perm_error})")
    print(f"same numbers, only permuted: {same} (largest difference {perm_error:.1e})")

    print("\n   with positions: position p adds sin(p), the one-channel sinusoidal encoding, to each token's value")
    pe = sinusoidal(n, 1).double()  # [N, 1]: sin(p) for p = 0, 1, ...
    x_pos, x_pos_rev = x + pe, x[perm] + pe
    with torch.no_grad():
        out_p, att_p = layer(x_pos, return_attention=True)
        out_p_rev, att_p_rev = layer(x_pos_rev, return_attention=True)
    print(
        format_table(
            torch.cat([x_pos, x_pos_rev[perm]], 1),
            tokens,
            ["".join(tokens), "".join(rev)],
            title="each token's value + sin(p) in the two sentences",
        )
    )
    print(format_table(att_p.weights[0], tokens, tokens, title=f"'{''.join(tokens)}' softmax weights"))
    print(format_table(att_p_rev.weights[0], rev, rev, title=f"'{''.join(rev)}' softmax weights"))
    print(
        format_table(
            torch.cat([out_p, out_p_rev[perm]], 1),
            tokens,
            ["".join(tokens), "".join(rev)],
            title="each token's output in the two sentences",
        )
    )
    pos_diff = float((out_p_rev[perm] - out_p).abs().max())
    print(f"the outputs now differ (largest difference {pos_diff:.4f})")

    # the Transformer's own convention: a (seeded random) embedding plus the encoding, d = 8
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(n, 8, generator=gen, dtype=torch.float64)  # one row per token
    pe8 = sinusoidal(n, 8).double()
    add_layer = identity_layer(8)
    with torch.no_grad():
        add_plain = (add_layer(emb[perm])[perm] - add_layer(emb)).abs().max()
        add_pos = (add_layer(emb[perm] + pe8)[perm] - add_layer(emb + pe8)).abs().max()
    print(
        f"same with embedding + sinusoidal(N, 8) added: difference between the sentences "
        f"{float(add_plain):.1e} without, {float(add_pos):.4f} with positions"
    )
    result.update(
        same_up_to_permutation=same,
        permutation_error=perm_error,
        positional_weights=att_p.weights[0].tolist(),
        positional_weights_reversed=att_p_rev.weights[0].tolist(),
        positional_outputs=out_p.squeeze(-1).tolist(),
        positional_outputs_reversed=out_p_rev.squeeze(-1).tolist(),
        positions_differ=pos_diff > 1e-6,
        position_difference=pos_diff,
        added_position_difference=float(add_pos),
        added_plain_difference=float(add_plain),
    )

    # 4. the picture -------------------------------------------------------------
    result["png"] = None
    if args.png:
        try:
            result["png"] = draw_attention_graph(
                tokens, weights, args.png, title="edge j → i as wide as its attention weight a_ij"
            )
            print(f"\n4. the sentence graph, edge widths = attention weights: {args.png}")
        except ModuleNotFoundError:
            print("\n4. no picture: --png needs matplotlib (pip install 'graphformer[viz]')", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
