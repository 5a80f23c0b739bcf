"""Regenerate every figure of docs/tutorial.md (and the worked example's printed output).

Run from anywhere::

    python scripts/make_figures.py            # writes docs/figures/*.png and sentence_as_graph.txt
    python scripts/make_figures.py --out DIR  # somewhere else

Every number is computed with the library; the output is deterministic (no
random state without a seed, no timestamps in the PNGs). Needs matplotlib
(the ``viz`` extra); the time-series figure reads ETTh1 from the shared data
folder (``GRAPHFORMER_DATA`` or ``../shared/data``) and falls back to a
synthetic series without it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

import graphformer as gf
from graphformer.structure import bipartite_edge_index, causal_edge_index, complete_edge_index

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "docs" / "figures"
DATA = Path(os.environ.get("GRAPHFORMER_DATA", REPO.parent / "shared" / "data"))

SOURCE = ["wǒ", "ài", "nǐ"]  # 我 爱 你, romanised: the figures need no CJK font
TARGET = ["I", "love", "you"]
BLUE, GOLD, EDGE = "#1f5fa8", "#f6d78b", "#7a5b00"


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def save(fig, path: Path) -> Path:
    """Write a PNG without the (version-dependent) software tag."""
    fig.savefig(path, metadata={"Software": None})
    return path


def edge_matrix(edge_index: torch.Tensor, num_dst: int, num_src: int, values=None) -> np.ndarray:
    """Dense ``[num_dst, num_src]`` matrix with 1 (or ``values``) at every edge j -> i (row i, column j)."""
    m = np.zeros((num_dst, num_src))
    vals = np.ones(edge_index.size(1)) if values is None else np.asarray(values, dtype=float)
    m[edge_index[1].numpy(), edge_index[0].numpy()] = vals
    return m


# ------------------------------------------------------------------ figures
def sentence(out: Path) -> list[Path]:
    """The worked example's printed output and its sentence graph."""
    example = load_example("sentence_as_graph")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        result = example.main([])
    text = out / "sentence_as_graph.txt"
    text.write_text(buf.getvalue(), encoding="utf-8")
    png = example.draw_attention_graph(
        result["tokens"],
        result["weights"],
        out / "sentence_graph.png",
        labels=SOURCE,
        title="wǒ ài nǐ: edge j → i as wide as its weight a_ij",
    )
    return [text, Path(png)]


def _nodes_on_line(ax, xs, y, labels):
    from matplotlib.patches import Circle

    for x, label in zip(xs, labels):
        ax.add_patch(Circle((x, y), 0.28, fc=GOLD, ec=EDGE, lw=1.2, zorder=3))
        ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=4)


def _arrow(ax, p, q, rad=0.0, lw=1.2, color=BLUE, alpha=0.8):
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(
        FancyArrowPatch(
            p,
            q,
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=9,
            lw=lw,
            color=color,
            alpha=alpha,
            shrinkA=11,
            shrinkB=11,
            zorder=2,
        )
    )


def _self_loop(ax, x, y, below=False):
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y - 0.42 if below else y + 0.42), 0.15, fill=False, lw=1.0, color=BLUE, alpha=0.8))


def structures(out: Path) -> list[Path]:
    """Complete graph, causal DAG and bipartite graph, drawn and as adjacency matrices."""
    from matplotlib.figure import Figure

    n = 3
    graphs = [
        ("complete graph\nself-attention: attn(x)", complete_edge_index(n), SOURCE, SOURCE),
        ("causal DAG\ndecoder: attn(x, causal=True)", causal_edge_index(n), TARGET, TARGET),
        ("bipartite graph\ncross-attention: attn((x_src, x_dst))", bipartite_edge_index(n, n), SOURCE, TARGET),
    ]
    fig = Figure(figsize=(9.0, 4.9), dpi=100)
    axes = fig.subplots(2, 3, gridspec_kw={"height_ratios": [1.0, 1.0]})
    xs = [0.0, 1.2, 2.4]
    for col, (title, ei, src, dst) in enumerate(graphs):
        ax = axes[0, col]
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_xlim(-0.6, 3.0)
        ax.set_ylim(-0.75, 1.75)
        bipartite = col == 2
        if bipartite:
            _nodes_on_line(ax, xs, 1.2, src)
            _nodes_on_line(ax, xs, 0.0, dst)
            for j, i in ei.t().tolist():
                _arrow(ax, (xs[j], 1.2), (xs[i], 0.0), lw=1.0)
            ax.text(-0.55, 1.2, "src", fontsize=8, va="center", color="0.4")
            ax.text(-0.55, 0.0, "dst", fontsize=8, va="center", color="0.4")
            ax.text(1.2, -0.6, f"{ei.size(1)} edges", ha="center", fontsize=8, color="0.3")
            continue
        y = 0.45
        _nodes_on_line(ax, xs, y, src)
        for j, i in ei.t().tolist():
            if i == j:
                _self_loop(ax, xs[i], y, below=True)
            else:  # arc3 bends to the left of travel: forward edges (j < i) above the line, backward ones below
                _arrow(ax, (xs[j], y), (xs[i], y), rad=-0.5)
        ax.text(1.2, 1.5, f"{ei.size(1)} edges, self-loops included", ha="center", fontsize=8, color="0.3")
    for col, (_, ei, src, dst) in enumerate(graphs):
        ax = axes[1, col]
        m = edge_matrix(ei, len(dst), len(src))
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1.4)
        ax.set_xticks(range(len(src)), src, fontsize=9)
        ax.set_yticks(range(len(dst)), dst, fontsize=9)
        ax.set_xlabel("source j (attended to)", fontsize=8)
        ax.set_ylabel("target i (attends)", fontsize=8)
        ax.tick_params(length=0)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, "✓" if m[i, j] else "", ha="center", va="center", fontsize=10, color="white")
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.09, wspace=0.3, hspace=0.2)
    return [save(fig, out / "graphs.png")]


def gcn(out: Path) -> list[Path]:
    """The same layer on one small graph: fixed GCN weights next to softmax dot-product weights."""
    from matplotlib.figure import Figure

    und = torch.tensor([[0, 0, 0, 1, 3, 4], [1, 2, 3, 2, 4, 5]])
    edge_index = torch.cat([und, und.flip(0)], dim=1)  # both directions
    n = 6
    torch.manual_seed(0)
    x = torch.randn(n, 8)
    gcn_layer = gf.GraphAttention(8, score="gcn", self_loops="remaining")
    dot_layer = gf.GraphAttention(8, score="dot", self_loops="remaining")
    with torch.no_grad():
        _, att_gcn = gcn_layer(x, edge_index, return_attention=True)
        _, att_dot = dot_layer(x, edge_index, return_attention=True)
    mats = [
        ("score='gcn': a_ij = 1/√(d_i d_j)\n(fixed by the degrees)", att_gcn),
        ("score='dot': softmax of q_i·k_j/√C\n(depends on the features)", att_dot),
    ]
    fig = Figure(figsize=(9.0, 3.3), dpi=100)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [0.9, 1, 1]})
    ax = axes[0]
    angle = [math.pi / 2 + 2 * math.pi * i / n for i in range(n)]
    pos = [(math.cos(a), math.sin(a)) for a in angle]
    for j, i in und.t().tolist():
        ax.plot([pos[j][0], pos[i][0]], [pos[j][1], pos[i][1]], color=BLUE, lw=1.5, zorder=1)
    deg = torch.bincount(edge_index[1], minlength=n) + 1  # + self-loop
    from matplotlib.patches import Circle

    for k, (px, py) in enumerate(pos):
        ax.add_patch(Circle((px, py), 0.2, fc=GOLD, ec=EDGE, zorder=2))
        ax.text(px, py, str(k), ha="center", va="center", fontsize=9, zorder=3)
        ax.text(px * 1.42, py * 1.42, f"d={int(deg[k])}", ha="center", va="center", fontsize=8, color="0.3")
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_title("graph (+ self-loops)", fontsize=10)
    for ax, (title, att) in zip(axes[1:], mats):
        m = edge_matrix(att.edge_index, n, n, att.weights[:, 0].numpy())
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if m[i, j] > 0.5 else "black",
                    )
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xlabel("source j", fontsize=8)
        ax.set_ylabel("target i", fontsize=8)
        ax.tick_params(length=0, labelsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.83, bottom=0.14, wspace=0.3)
    return [save(fig, out / "gcn_weights.png")]


def _laplacian_vectors(edge_index: torch.Tensor, n: int, k: int) -> np.ndarray:
    """The k lowest non-trivial eigenvectors of L = D - A, via the library when it has ``laplacian_pe``."""
    try:
        from graphformer.encodings import laplacian_pe
    except ImportError:
        laplacian_pe = None
    if laplacian_pe is not None:
        return laplacian_pe(edge_index, n, k, normalized=False).double().numpy()
    adj = edge_matrix(edge_index, n, n)
    adj = np.maximum(adj, adj.T)
    _, vecs = np.linalg.eigh(np.diag(adj.sum(1)) - adj)
    return vecs[:, 1 : k + 1]


def spectrum(out: Path) -> list[Path]:
    """Laplacian eigenvectors of the path and the cycle graph are sines and cosines of the position."""
    from matplotlib.figure import Figure

    n = 24
    path = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    cycle = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    k = 3
    pe_path = _laplacian_vectors(path, n, k)  # [n, k]
    pe_cycle = _laplacian_vectors(cycle, n, 4)  # [n, 4]: two pairs

    fig = Figure(figsize=(9.0, 3.4), dpi=100)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    ax = axes[0]
    p = np.arange(n)
    fine = np.linspace(0, n - 1, 300)
    colours = ["#1f5fa8", "#d1495b", "#2e933c"]
    for m in range(k):
        ref = np.cos(math.pi * (m + 1) * (p + 0.5) / n)
        scale = np.linalg.norm(ref)
        sign = np.sign(pe_path[:, m] @ ref) or 1.0
        curve = sign * np.cos(math.pi * (m + 1) * (fine + 0.5) / n) / scale
        ax.plot(fine, curve, color=colours[m], lw=1.2, alpha=0.7)
        ax.plot(p, pe_path[:, m], "o", color=colours[m], ms=3.5, label=f"eigenvector {m + 1}  ~ cos(π·{m + 1}·(p+½)/N)")
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.set_ylim(-0.33, 0.58)
    ax.set_xlabel("position p (node of the path graph)", fontsize=9)
    ax.set_title(
        f"path graph of N = {n} tokens: Laplacian eigenvectors (dots)\nand cosines of the position (lines)", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper center", ncol=2, frameon=False)
    ax.tick_params(labelsize=8)

    ax = axes[1]
    for pair, (marker, name) in enumerate([("o", "eigenvectors 1, 2"), ("s", "eigenvectors 3, 4")]):
        u, v = pe_cycle[:, 2 * pair], pe_cycle[:, 2 * pair + 1]
        sc = ax.scatter(
            u * (1 + 0.35 * pair), v * (1 + 0.35 * pair), c=p, cmap="viridis", marker=marker, s=18, zorder=2, label=name
        )
        ax.plot(
            np.append(u, u[0]) * (1 + 0.35 * pair),
            np.append(v, v[0]) * (1 + 0.35 * pair),
            color="0.75",
            lw=0.8,
            zorder=1,
        )
    cbar = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("position p", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    ax.set_aspect("equal")
    ax.set_title("cycle graph: each eigenvector pair is\n(cos, sin) of 2πmp/N: once (m=1), twice (m=2)", fontsize=9)
    ax.legend(fontsize=7, loc="center", frameon=False)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.06, right=0.95, top=0.83, bottom=0.15, wspace=0.25)
    return [save(fig, out / "spectrum.png")]


def _ett_window(length: int = 96):
    """Seven variables of ETTh1 over ``length`` hours (standardised), or a synthetic stand-in."""
    csv = DATA / "ett" / "ETTh1.csv"
    if csv.is_file():
        import pandas as pd

        frame = pd.read_csv(csv, nrows=length)
        names = [c for c in frame.columns if c != "date"]
        values = torch.tensor(frame[names].to_numpy(), dtype=torch.float64)
        label = f"ETTh1, first {length} hours"
    else:
        t = torch.arange(length, dtype=torch.float64)
        names = ["a", "a + noise", "-a", "b", "b shifted", "trend", "a + b"]
        gen = torch.Generator().manual_seed(0)
        a, b = torch.sin(2 * math.pi * t / 24), torch.sin(2 * math.pi * t / 48)
        values = torch.stack(
            [
                a,
                a + 0.3 * torch.randn(length, generator=gen, dtype=torch.float64),
                -a,
                b,
                torch.roll(b, 6),
                t / length,
                a + b,
            ],
            dim=1,
        )
        label = "synthetic series (ETTh1 not found)"
    values = (values - values.mean(0)) / values.std(0).clamp(min=1e-8)
    return values.T.contiguous(), names, label  # [C, T]


def variables(out: Path) -> list[Path]:
    """iTransformer's graph: each variable's whole window is one node; attention runs between variables."""
    from matplotlib.figure import Figure

    series, names, label = _ett_window()
    C, T = series.shape  # noqa: N806
    example = load_example("sentence_as_graph")
    layer = example.identity_layer(T)  # Q = K = V = the standardised window: the score is sqrt(T) x correlation
    with torch.no_grad():
        _, att = layer(series, return_attention=True)
    w = att.weights[0].numpy()
    fig = Figure(figsize=(9.0, 3.6), dpi=100)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1]})
    ax = axes[0]
    for c in range(C):
        ax.plot(series[c].numpy() - 3.2 * c, lw=0.9)
        ax.text(T + 1, -3.2 * c, names[c], fontsize=8, va="center")
    ax.set_xlim(0, T + 12)
    ax.set_yticks([])
    ax.set_xlabel("hour", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_title(f"{label}: one node per variable,\nits feature is its whole window (T = {T})", fontsize=9)
    ax = axes[1]
    ax.imshow(w, cmap="Blues", vmin=0, vmax=1)
    for i in range(C):
        for j in range(C):
            ax.text(
                j,
                i,
                f"{w[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if w[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(C), names, rotation=45, fontsize=7)
    ax.set_yticks(range(C), names, fontsize=7)
    ax.tick_params(length=0)
    ax.set_title("attention between variables (Q = K = V):\nsoftmax(≈ √T · correlation)", fontsize=9)
    fig.subplots_adjust(left=0.03, right=0.98, top=0.84, bottom=0.17, wspace=0.15)
    return [save(fig, out / "variables.png")]


def patches(out: Path) -> list[Path]:
    """An 8 x 8 digit cut into 2 x 2 patches, the 4-neighbour grid graph on top."""
    from matplotlib.figure import Figure

    example = load_example("patches_as_graph")
    images, labels, source = example.load_images()
    image = images[0].numpy()
    patch = 2
    side = 8 // patch
    ei = example.grid_edge_index(side, self_loops=False)
    centre = [((k % side) * patch + patch / 2 - 0.5, (k // side) * patch + patch / 2 - 0.5) for k in range(side**2)]
    fig = Figure(figsize=(6.4, 3.3), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, graph in zip(axes, ["grid", "complete"]):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1.6)
        for b in range(1, side):
            ax.axhline(b * patch - 0.5, color="#e08a00", lw=1.0, ls="--")
            ax.axvline(b * patch - 0.5, color="#e08a00", lw=1.0, ls="--")
        pairs = ei.t().tolist() if graph == "grid" else [(j, i) for i in range(side**2) for j in range(i)]
        for j, i in pairs:
            ax.plot(
                [centre[j][0], centre[i][0]],
                [centre[j][1], centre[i][1]],
                color=BLUE,
                lw=1.2 if graph == "grid" else 0.4,
                alpha=0.8 if graph == "grid" else 0.35,
            )
        ax.scatter([c[0] for c in centre], [c[1] for c in centre], s=30, color="#d1495b", zorder=3)
        ax.set_xticks([])
        ax.set_yticks([])
        n_edges = ei.size(1) if graph == "grid" else side**2 * (side**2 - 1)
        ax.set_title(f"{graph} graph: {n_edges} edges\n(+ {side**2} self-loops)", fontsize=9)
    fig.suptitle(
        f"a digit ({source}, label {int(labels[0])}) as {side * side} patches of {patch}x{patch} pixels "
        "(dashed), one node each",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.02, right=0.98, top=0.8, bottom=0.02, wspace=0.1)
    return [save(fig, out / "patches.png")]


def explain_pictures(out: Path) -> list[Path]:
    """What ``graphformer explain --png`` draws: the worked example, and the karate club with two heads."""
    from graphformer import explain
    from graphformer.cli import build_parser

    written = []
    for name, argv in (("explain_sentence.png", []), ("explain_karate.png", ["--graph", "karate", "--heads", "2"])):
        args = build_parser().parse_args(["explain", *argv, "--png", str(out / name)])  # the command itself
        with contextlib.redirect_stdout(io.StringIO()):
            written.append(Path(explain.run(args)["png"]))
    return written


def collapse(out: Path) -> list[Path]:
    """Rank collapse and oversmoothing (``graphformer inspect``): a sentence's attention stacks, Cora's GCN stacks,
    and both on the same axes. Cora is read from the shared data folder (a temporary copy)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from graphformer import inspect_cli as ic

    tokens = ic.DEFAULT_SENTENCE.split()
    sentence = ic.inspect_curves(
        None,
        None,
        ic.SENTENCE_VARIANTS,
        layers=24,
        width=64,
        heads=4,
        seeds=3,
        features=lambda s: ic.sentence_features(tokens, 64, s),
    )
    written = [
        ic.plot_curves(
            sentence,
            out / "inspect_sentence.png",
            f"a {len(tokens)}-token sentence, 24 layers, random weights (graphformer inspect)",
        )
    ]
    root = DATA / "planetoid"
    name = "Cora" if (root / "Cora" / "raw").is_dir() else "karate"
    data = ic.load_graph(name, root)
    graph = ic.inspect_curves(data.x.float(), data.edge_index, ic.GRAPH_VARIANTS, layers=24, width=64, heads=4, seeds=3)
    written.append(
        ic.plot_curves(
            graph,
            out / "inspect_cora.png",
            f"{name} ({data.num_nodes} nodes), 24 layers, random weights (graphformer inspect)",
        )
    )
    lines = [
        ("sentence: attention", sentence["attn"], "#d1495b", "-"),
        ("sentence: Transformer layer", sentence["attn+res+ff+ln"], "#d1495b", "--"),
        (f"{name}: GCN", graph["gcn"], BLUE, "-"),
        (f"{name}: GCN + residual", graph["gcn+res"], BLUE, "--"),
    ]
    fig = Figure(figsize=(9.6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = [
        (
            "Dirichlet energy / layer 0",
            lambda c: [max(v / c["dirichlet_energy"][0], 1e-32) for v in c["dirichlet_energy"]],
            True,
        ),
        ("numerical rank - 1", lambda c: [max(v - 1.0, 1e-16) for v in c["numerical_rank"]], True),
        ("effective rank", lambda c: c["effective_rank"], True),
    ]
    for ax, (title, values, log) in zip(axes, panels):
        for label, c, colour, style in lines:
            ax.plot(
                range(len(c["effective_rank"])),
                values(c),
                color=colour,
                ls=style,
                marker=".",
                ms=3,
                lw=1.2,
                label=label,
            )
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("one lens: attention on a sentence (complete graph) and a GCN on a citation graph", fontsize=9)
    fig.tight_layout()
    written.append(save(fig, out / "collapse_vs_oversmoothing.png"))
    return written


FIGURES_BY_NAME = {
    "sentence": sentence,
    "graphs": structures,
    "gcn": gcn,
    "spectrum": spectrum,
    "variables": variables,
    "patches": patches,
    "collapse": collapse,
    "explain": explain_pictures,
}


def main(argv: list[str] | None = None) -> list[Path]:
    """Write the requested figures (all by default) and return their paths."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--out", type=Path, default=FIGURES, help="output folder (default: docs/figures)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES_BY_NAME), help="make only these figures")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        raise SystemExit("make_figures.py needs matplotlib: pip install 'graphformer[viz]'") from None
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in args.only or FIGURES_BY_NAME:
        written += FIGURES_BY_NAME[name](args.out)
    for path in written:
        print(f"{path}  ({path.stat().st_size / 1024:.0f} KB)")
    return written


if __name__ == "__main__":
    main()
