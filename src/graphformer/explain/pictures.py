"""Pictures of a trace: for every head, the weight matrix beside the graph it lives on.

Tokens are drawn as their own text: a font that has their glyphs (a CJK font
for "我 爱 你", such as Debian's ``fonts-noto-cjk`` or ``fonts-wqy-zenhei``) is
looked up through matplotlib's font manager. Without one, a token is drawn as
its index beside its code points (``0: U+6211``), never as an empty box.
Needs matplotlib (``pip install graphformer[viz]``); no pyplot, no global
backend switch.

Legend: N nodes (tokens), H heads.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import networkx as nx
import numpy as np

from .. import encodings
from .files import atomic_write
from .inputs import graph_edges
from .record import Trace
from .text import describe_graph, weights_title

__all__ = ["cycle_spectrum_figure", "plot_labels", "trace_figure", "write_png"]

CMAP = "viridis_r"  # light = small weight, dark = large: thin pale edges fade into the white page
FALLBACK_FAMILY = "DejaVu Sans"  # matplotlib's own font
# font names / file names of fonts that carry CJK glyphs
_GLYPH_FONT_HINTS = (
    "cjk",
    "wqy",
    "wenquanyi",
    "zenhei",
    "microhei",
    "droidsansfallback",
    "simhei",
    "simsun",
    "yahei",
    "pingfang",
    "heiti",
    "sourcehan",
    "arialunicode",
    "unifont",
    "notosanssc",
    "notosanstc",
    "notosansjp",
    "notosanskr",
    "notoserifcjk",
)


def _figure(**kwargs):
    """A matplotlib Figure drawn off-screen (no pyplot, no global backend switch)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "pictures need matplotlib: pip install 'graphformer[viz]' (or pip install matplotlib)"
        ) from err
    return Figure(**kwargs)


def _save_png(fig, path: str | Path) -> str:
    """Write ``fig`` as PNG to exactly ``path`` (atomically; no extension added, no software tag)."""
    path = Path(path)
    if path.suffix and path.suffix.lower() != ".png":
        raise ValueError(f"--png writes a PNG picture: give a file name ending in .png, got {str(path)!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return atomic_write(path, buf.getvalue())


@functools.lru_cache(maxsize=64)
def _charmap(fname: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(fname).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _hinted(text: str) -> bool:
    key = text.lower().replace(" ", "").replace("-", "").replace("_", "")
    return any(h in key for h in _GLYPH_FONT_HINTS)


@functools.lru_cache(maxsize=64)
def glyph_font(chars: frozenset[str]) -> tuple[str, int | str] | None:
    """``(family name, weight)`` of an installed font that has a glyph for every one of ``chars``, or None.

    matplotlib's own font is tried first, then the fonts its font manager
    knows whose name marks them as CJK fonts, then such fonts among the
    system's font files (added to the font manager: its cache may predate
    their installation).
    """
    from matplotlib import font_manager

    codes = {ord(c) for c in chars if not c.isspace()}
    own = font_manager.findfont(font_manager.FontProperties(family=FALLBACK_FAMILY), fallback_to_default=True)
    if codes <= _charmap(own):
        return FALLBACK_FAMILY, "normal"

    def search() -> tuple[str, int | str] | None:
        seen = set()
        for entry in font_manager.fontManager.ttflist:
            if entry.fname in seen or not (_hinted(entry.name) or _hinted(Path(entry.fname).name)):
                continue
            seen.add(entry.fname)
            if codes <= _charmap(entry.fname):
                return entry.name, entry.weight
        return None

    found = search()
    if found is None:
        known = {e.fname for e in font_manager.fontManager.ttflist}
        added = False
        for fname in font_manager.findSystemFonts():
            if fname not in known and _hinted(Path(fname).name):
                try:
                    font_manager.fontManager.addfont(fname)
                    added = True
                except (OSError, RuntimeError, ValueError):
                    continue
        found = search() if added else None
    return found


def plot_labels(tokens: list[str]) -> tuple[list[str], dict]:
    """Labels to draw for ``tokens`` and the font keywords (for ``Axes.text``) to draw them with.

    With a font that has every glyph: the tokens themselves, and
    ``{"fontfamily": that font, "fontweight": its weight}``.
    Without one: ``"i: text"`` with every character matplotlib's font lacks
    written as its code point (``"0: U+6211"``), and ``{}`` (the default font).
    """
    chars = frozenset("".join(tokens))
    if all(c.isascii() for c in chars):
        return list(tokens), {}
    found = glyph_font(chars)
    if found is not None:
        family, weight = found
        font = {} if family == FALLBACK_FAMILY else {"fontfamily": family, "fontweight": weight}
        return list(tokens), font
    from matplotlib import font_manager

    own = _charmap(font_manager.findfont(font_manager.FontProperties(family=FALLBACK_FAMILY)))
    labels = []
    for i, tok in enumerate(tokens):
        if all(ord(c) in own for c in tok):
            labels.append(tok)
        else:
            labels.append(f"{i}: " + " ".join(c if ord(c) in own else f"U+{ord(c):04X}" for c in tok))
    return labels, {}


def _layout(t: Trace, graph: nx.DiGraph) -> dict:
    if t.edge_index is None:  # a sentence: tokens clockwise from the top, in reading order
        N = t.num_nodes  # noqa: N806
        return {i: (math.sin(2 * math.pi * i / N), math.cos(2 * math.pi * i / N)) for i in range(N)}
    und = graph.to_undirected()
    if t.num_nodes <= 300 and nx.is_connected(und):
        return nx.kamada_kawai_layout(und)
    return nx.spring_layout(und, seed=0)


def trace_figure(t: Trace, head: int | None = None):
    """The picture of a trace as a matplotlib Figure: one row per head (or only ``head``).

    Each row: the weight matrix a_ij (row i attends to column j; grey = no
    edge; the numbers written when N <= 10) and the graph, each edge j -> i
    coloured and as wide as its weight, each node coloured by its weight on
    itself a_ii. One colour bar serves both; the title carries the score's
    formula.
    """
    from matplotlib.lines import Line2D

    if head is not None and not (isinstance(head, int) and 0 <= head < t.num_heads):
        raise ValueError(f"head must be an int in [0, {t.num_heads}) or None for every head, got {head!r}")
    heads = list(range(t.num_heads)) if head is None else [head]
    N = t.num_nodes  # noqa: N806
    labels, font = plot_labels(t.tokens)
    w_all = t.weights.numpy()
    vmin, vmax = min(0.0, float(w_all.min())), max(1.0, float(w_all.max()))
    mask = t.mask.numpy()
    big = N > 10
    fig = _figure(figsize=(12.5, 0.9 + 5.2 * len(heads)), layout="constrained")
    axes = fig.subplots(len(heads), 2, squeeze=False, gridspec_kw={"width_ratios": [1, 1.15]})
    graph = nx.DiGraph()
    graph.add_nodes_from(range(N))
    dst, src = np.nonzero(mask)
    edges = [(int(j), int(i)) for i, j in zip(dst, src) if i != j]
    graph.add_edges_from(edges)
    pos = _layout(t, graph)
    import matplotlib as mpl

    cmap = mpl.colormaps[CMAP].with_extremes(bad="#eeeeee")
    norm = mpl.colors.Normalize(vmin=vmin, vmax=vmax)
    tick_size = 10 if N <= 10 else max(5, 11 - N // 6)
    for row, h in enumerate(heads):
        w = w_all[h]
        ax_map, ax_graph = axes[row]
        image = ax_map.imshow(np.ma.masked_where(~mask, w), cmap=cmap, norm=norm)
        ax_map.set_xticks(
            range(N), labels, rotation=90 if big or max(map(len, labels)) > 4 else 0, fontsize=tick_size, **font
        )
        ax_map.set_yticks(range(N), labels, fontsize=tick_size, **font)
        ax_map.set_xlabel("j: attended to")
        ax_map.set_ylabel("i: attends")
        if not big:
            for i in range(N):
                for j in range(N):
                    if mask[i, j]:
                        dark = norm(w[i, j]) > 0.55
                        ax_map.text(
                            j,
                            i,
                            f"{w[i, j]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=9,
                            color="white" if dark else "black",
                        )
        ax_map.set_title(f"head {h}: weights a_ij" + (" (grey = no edge)" if not mask.all() else ""))

        widths = [0.6 + (5.0 if not big else 2.5) * float(norm(w[i, j])) for j, i in edges]
        colours = [cmap(norm(w[i, j])) for j, i in edges]
        self_w = np.array([w[i, i] if mask[i, i] else np.nan for i in range(N)])
        node_colours = [cmap(norm(v)) if np.isfinite(v) else "white" for v in self_w]
        node_size = 900 if not big else 260
        nx.draw_networkx_edges(
            graph,
            pos,
            edgelist=edges,
            width=widths,
            edge_color=colours,
            ax=ax_graph,
            arrows=True,
            arrowstyle="-|>",
            arrowsize=12 if not big else 7,
            connectionstyle="arc3,rad=0.15",
            node_size=node_size,
        )
        nx.draw_networkx_nodes(
            graph, pos, ax=ax_graph, node_size=node_size, node_color=node_colours, edgecolors="#333333", linewidths=1.0
        )
        for i in range(N):
            dark = np.isfinite(self_w[i]) and norm(self_w[i]) > 0.55
            ax_graph.text(
                *pos[i],
                labels[i],
                ha="center",
                va="center",
                fontsize=12 if not big else 7,
                color="white" if dark else "black",
                **font,
            )
        ax_graph.set_title(f"head {h}: edge j -> i coloured and as wide as a_ij")
        ax_graph.axis("off")
        ax_graph.set_aspect("equal")
        ax_graph.margins(0.12)
        node_label = "node i coloured by a_ii" + ("" if mask.diagonal().all() else " (white: no self-loop)")
        handles = [
            Line2D([], [], color=cmap(0.85), lw=3, label="edge j -> i (arrow at i): a_ij"),
            Line2D([], [], marker="o", ls="", ms=10, mfc=cmap(0.85), mec="#333333", label=node_label),
        ]
        ax_graph.legend(
            handles=handles, loc="lower left", bbox_to_anchor=(0.0, -0.12), fontsize=8, frameon=False, ncol=2
        )
        bar = fig.colorbar(image, ax=[ax_map, ax_graph], fraction=0.03, pad=0.01)
        bar.set_label("attention weight a_ij")
    title = f"{describe_graph(t)}\nweights: {weights_title(t)}"
    if labels != list(t.tokens):
        title += (
            "\n(no installed font has these characters, e.g. apt install fonts-noto-cjk: tokens drawn as code points)"
        )
    fig.suptitle(title, fontsize=10)
    return fig


def write_png(t: Trace, path: str | Path, head: int | None = None) -> str:
    """Draw the trace (:func:`trace_figure`: every head, or only ``head``) and write it as PNG to ``path``.

    The file is written to exactly ``path`` (no extension is added; a name
    ending in another extension than ``.png`` is an error). Needs matplotlib
    (``pip install graphformer[viz]``). Returns the path written.
    """
    return _save_png(trace_figure(t, head), path)


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
    lap = encodings.laplacian(graph_edges(nx.cycle_graph(n))[1], n, normalized=False).toarray()
    vals, vecs = np.linalg.eigh(lap)
    i = np.arange(n)
    fine = np.linspace(0, n, 400)
    axes = fig.subplots(modes, 1, sharex=True, squeeze=False)
    worst = 0.0
    for m in range(1, modes + 1):
        block = vecs[:, 2 * m - 1 : 2 * m + 1]  # the eigenspace of 2 - 2cos(2 pi m / n)
        waves = np.stack([np.cos(2 * np.pi * m * i / n), np.sin(2 * np.pi * m * i / n)], 1) / math.sqrt(n / 2)
        coef = block.T @ waves  # the rotation taking the eigenvectors onto the waves
        worst = max(worst, float(np.abs(waves - block @ coef).max()))
        aligned = block @ coef
        ax = axes[m - 1, 0]
        for c, (name, fn) in enumerate((("cos", np.cos), ("sin", np.sin))):
            ax.plot(
                fine,
                fn(2 * np.pi * m * fine / n) / math.sqrt(n / 2),
                color=f"C{c}",
                lw=1,
                label=f"{name}(2 pi {m} i / {n})",
            )
            ax.plot(i, aligned[:, c], "o", color=f"C{c}", ms=4, label=f"eigenvector ({name} part)")
        ax.set_ylabel(f"m = {m}\nlambda = {vals[2 * m - 1]:.3f}")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    axes[-1, 0].set_xlabel("node i of the cycle (token position)")
    fig.suptitle(f"Laplacian eigenvectors of the cycle C_{n} are the sinusoidal encoding (max residual {worst:.1e})")
    fig.tight_layout()
    _save_png(fig, path)
    return worst
