"""graphformer inspect: rank collapse and oversmoothing, layer by layer, with one set of measures.

Builds deep stacks of one block (untrained, random weights, eval mode) and
records :mod:`graphformer.diagnostics` after every block in one forward pass:

* on a **sentence** (``--sentence``, the default): token embeddings plus
  sinusoidal positions, attention over the complete graph of the tokens;
* on a **graph** (``--graph Cora|CiteSeer|PubMed|karate``): node features
  mapped to ``--width`` by a random linear map, GCN layers (or attention
  along the edges, self-loops added) on its edges.

A variant is a ``+``-joined list of parts: a mixing step, ``attn``
(dot-product attention, :class:`~graphformer.GraphAttention`) or ``gcn``
(``D^-1/2 (A+I) D^-1/2 H W`` then ReLU), and any of ``res`` (residual
connection), ``ff`` (a feed-forward part, ReLU, width 2 d) and ``ln``
(LayerNorm after each part, post-norm). ``attn+res+ff+ln`` is the
Transformer encoder layer; ``attn`` alone is Dong et al.'s pure attention
stack, ``gcn`` a deep GCN (Rusch et al.). The Dirichlet energy is taken on
the complete graph for a sentence and on the graph's own edges for a graph;
curves are means over ``--seeds`` random initialisations.

Prints one table per variant and, as the last line, the curves as JSON;
``--png FILE`` draws them, ``--csv FILE`` writes them (one row per variant
and layer).

Legend: N nodes (tokens), d width, L layers.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from . import diagnostics
from .attention import GraphAttention
from .encodings import sinusoidal
from .layers import FeedForward

__all__ = [
    "DEFAULT_SENTENCE",
    "MEASURES",
    "InspectBlock",
    "InspectStack",
    "add_arguments",
    "inspect_curves",
    "load_graph",
    "parse_variant",
    "plot_curves",
    "run",
    "sentence_features",
]

DEFAULT_SENTENCE = (
    "a transformer is a graph neural network on the complete graph of its tokens and every "
    "layer of attention averages what the tokens hear"
)
SENTENCE_VARIANTS = ("attn", "attn+res", "attn+ff", "attn+ln", "attn+res+ff", "attn+res+ff+ln")
GRAPH_VARIANTS = ("gcn", "gcn+res", "attn", "attn+res")
MEASURES = (
    "rank_one_distance",
    "dirichlet_energy_normalized",
    "dirichlet_energy",
    "numerical_rank",
    "effective_rank",
    "attention_entropy",
)
_LABELS = {
    "rank_one_distance": "rank1 dist",
    "dirichlet_energy_normalized": "E/|X|^2",
    "dirichlet_energy": "energy",
    "numerical_rank": "num. rank",
    "effective_rank": "eff. rank",
    "attention_entropy": "entropy (bits)",
}
_PARTS = ("res", "ff", "ln")
_LOG = ("rank_one_distance", "dirichlet_energy", "dirichlet_energy_normalized")


def parse_variant(name: str) -> dict:
    """``"attn+res+ff"`` -> ``{"mix": "attn", "res": True, "ff": True, "ln": False}``.

    Raises ``ValueError`` naming the allowed parts.
    """
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    if not parts or parts[0] not in ("attn", "gcn"):
        raise ValueError(f"variant {name!r} must start with attn or gcn, e.g. attn+res+ff+ln")
    bad = [p for p in parts[1:] if p not in _PARTS]
    if bad or len(set(parts[1:])) != len(parts[1:]):
        raise ValueError(
            f"variant {name!r}: after attn/gcn use each of {', '.join(_PARTS)} at most once "
            f"(got {', '.join(parts[1:])})"
        )
    return {"mix": parts[0], **{p: p in parts[1:] for p in _PARTS}}


class InspectBlock(nn.Module):
    r"""One block of a variant: :math:`h = \mathrm{LN}(x + \mathrm{Mix}(x))`, then
    :math:`y = \mathrm{LN}(h + \mathrm{FF}(h))`, each part optional.

    ``Mix`` is dot-product attention (complete graph without edges; along
    the edges plus self-loops with them) or a GCN convolution followed by
    ReLU. Without ``res`` the sums lose their first term; without ``ln`` the
    norms are identities; without ``ff`` the second step is skipped.

    Shapes: x ``[N, d]`` (``[B, N, d]`` for attention on complete graphs), edge_index ``[2, E]`` or None
    -> same as x.
    """

    def __init__(
        self, width: int, heads: int, mix: str = "attn", res: bool = False, ff: bool = False, ln: bool = False
    ):
        super().__init__()
        self.mix_kind, self.res, self.use_ff, self.use_ln = mix, res, ff, ln
        if mix == "attn":
            self.mix = GraphAttention(width, heads, self_loops="add")
        else:
            self.mix = GraphAttention(width, 1, score="gcn", head_dim=width, out_proj=False, self_loops="remaining")
        self.feedforward = FeedForward(width, 2 * width, 0.0) if ff else None
        self.norm1 = nn.LayerNorm(width) if ln else nn.Identity()
        self.norm2 = nn.LayerNorm(width) if ln and ff else nn.Identity()

    def forward(self, x: Tensor, edge_index: Tensor | None = None) -> Tensor:
        if self.mix_kind == "gcn":
            if edge_index is None:
                raise ValueError("a gcn block needs the graph's edges; on a sentence use attn")
            h = torch.relu(self.mix(x, edge_index))
        else:
            h = self.mix(x, edge_index)
        h = self.norm1(x + h if self.res else h)
        if self.feedforward is not None:
            f = self.feedforward(h)
            h = self.norm2(h + f if self.res else f)
        return h


class InspectStack(nn.Module):
    """``num_layers`` independent :class:`InspectBlock` of one variant (see :func:`parse_variant`)."""

    def __init__(self, variant: str, width: int, heads: int, num_layers: int):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"--layers must be >= 1, got {num_layers}")
        spec = parse_variant(variant)
        self.blocks = nn.ModuleList([InspectBlock(width, heads, **spec) for _ in range(num_layers)])

    def forward(self, x: Tensor, edge_index: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, edge_index)
        return x


def sentence_features(tokens: list[str], width: int, seed: int = 0) -> Tensor:
    """Token embeddings (one random vector per distinct token, seeded) plus sinusoidal positions: ``[N, d]``."""
    if len(tokens) < 2:
        raise ValueError(
            "--sentence needs at least two space-separated tokens (rank collapse is about many tokens becoming one)"
        )
    vocab = {t: k for k, t in enumerate(dict.fromkeys(tokens))}
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(len(vocab), width, generator=gen)
    ids = torch.tensor([vocab[t] for t in tokens])
    return table[ids] + sinusoidal(len(tokens), width)


def load_graph(name: str, root: str | os.PathLike | None = None):
    """``karate`` or a Planetoid graph (``Cora``, ``CiteSeer``, ``PubMed``) as a PyG ``Data``.

    Planetoid raw files are read from ``<root>/<Name>/raw``; they are copied to a
    temporary folder first, so nothing is ever written under ``root``.
    """
    from .data import graphs

    key = name.lower()
    if key in ("karate", "karate-club"):
        return graphs.karate_club()
    if key not in graphs.PLANETOID:
        raise ValueError(f"unknown graph {name!r}; --graph takes karate, Cora, CiteSeer or PubMed")
    if root is None:
        raise ValueError(
            f"--graph {name} needs --root DIR holding {graphs.PLANETOID[key]}/raw/ (the Planetoid "
            "raw files; nothing is downloaded)"
        )
    files = graphs.planetoid_raw_files(root, key)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{graphs.PLANETOID[key]} raw files not found under {files[0].parent}: missing "
            f"{', '.join(missing)} (nothing is downloaded)"
        )
    with tempfile.TemporaryDirectory(prefix="graphformer-inspect-") as tmp:
        raw = Path(tmp) / graphs.PLANETOID[key] / "raw"
        raw.mkdir(parents=True)
        for f in files:
            shutil.copy(f, raw / f.name)
        return graphs.load_planetoid(tmp, key)


def inspect_curves(
    x: Tensor,
    edge_index: Tensor | None,
    variants,
    *,
    layers: int = 24,
    width: int = 64,
    heads: int = 4,
    seeds: int = 3,
    seed: int = 0,
    features=None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, dict[str, list]]:
    """Per-layer curves of every variant, averaged over ``seeds`` random initialisations.

    Args:
        x: input features ``[N, F]``; projected to ``width`` by a random linear map without bias when
            ``F != width`` (layer 0 is the projected input).
        edge_index: the graph ``[2, E]`` (its edges also define the Dirichlet energy), or None: the complete graph.
        variants: variant names (see :func:`parse_variant`).
        features: optional ``seed -> [N, F]`` callable giving fresh inputs per seed (e.g. new embeddings).
        dtype: of the stacks (float64 by default, so that a collapse is not cut off at float32 round-off).

    Returns:
        ``{variant: {measure: [L + 1 values]}}`` (``attention_entropy`` is None at layer 0 and for gcn layers).
    """
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    out = {}
    for variant in variants:
        parse_variant(variant)
        runs = []
        for s in range(seed, seed + seeds):
            torch.manual_seed(s)
            xs = (features(s) if features is not None else x).to(dtype)
            with torch.no_grad():
                if xs.size(-1) != width:
                    xs = nn.Linear(xs.size(-1), width, bias=False).to(dtype)(xs)  # no bias: no common row
                stack = InspectStack(variant, width, heads, layers).to(dtype).eval()
                with diagnostics.record(stack, list(stack.blocks), edge_index=edge_index) as rec:
                    stack(xs, edge_index)
            runs.append(rec.curves())
        out[variant] = {m: _mean([r[m] for r in runs]) for m in MEASURES}
    return out


def _mean(curves: list[list]) -> list:
    """Mean over seeds per layer; None where a value is missing or not finite (the output stays strict JSON)."""
    out = []
    for vals in zip(*curves):
        mean = None if any(v is None for v in vals) else sum(vals) / len(vals)
        out.append(mean if mean is not None and math.isfinite(mean) else None)
    return out


def _rate(curve: list) -> float | None:
    """Geometric mean factor per layer of a positive curve (first to last value)."""
    first, last = curve[0], curve[-1]
    if first is None or last is None or first <= 0 or last <= 0 or len(curve) < 2:
        return None
    return math.exp(math.log(last / first) / (len(curve) - 1))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4f}"


def format_curves(curves: dict[str, dict[str, list]], every: int = 1) -> str:
    """One table per variant: a row per layer (every ``every``-th, and the last), a column per measure."""
    lines = []
    for variant, c in curves.items():
        n = len(c[MEASURES[0]])
        rows = sorted(set(range(0, n, every)) | {n - 1})
        head = ["layer"] + [_LABELS[m] for m in MEASURES]
        cells = [[str(k)] + [_fmt(c[m][k]) for m in MEASURES] for k in rows]
        widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(head)]
        lines.append(f"{variant}")
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        rate = _rate(c["rank_one_distance"])
        if rate is not None:
            lines.append(f"rank-one distance x{rate:.3f} per layer")
        lines.append("")
    return "\n".join(lines).rstrip()


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_csv(curves: dict[str, dict[str, list]], path: str | os.PathLike, source: str = "") -> Path:
    """One row per variant and layer, a column per measure (written atomically)."""
    path = Path(path)

    def write(tmp: Path):
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["input", "variant", "layer", *MEASURES])
            for variant, c in curves.items():
                for k in range(len(c[MEASURES[0]])):
                    w.writerow([source, variant, k, *("" if c[m][k] is None else repr(c[m][k]) for m in MEASURES)])

    _atomic(path, write)
    return path


def plot_curves(
    curves: dict[str, dict[str, list]],
    path: str | os.PathLike,
    title: str = "",
    measures=(
        "rank_one_distance",
        "dirichlet_energy",
        "dirichlet_energy_normalized",
        "effective_rank",
        "attention_entropy",
    ),
) -> Path:
    """Draw each measure against depth, one line per variant (written atomically).

    The Dirichlet energy is drawn relative to layer 0; it and the other two decaying measures on a log scale.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("--png needs matplotlib: pip install 'graphformer[viz]'") from err
    path = Path(path)
    fig = Figure(figsize=(3.2 * len(measures), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(measures))
    for ax, m in zip(axes, measures):
        for variant, c in curves.items():
            pts = [(k, v) for k, v in enumerate(c[m]) if v is not None]
            if not pts:
                continue
            ks, vs = zip(*pts)
            if m == "dirichlet_energy" and vs[0] > 0:
                vs = [v / vs[0] for v in vs]
            if m in _LOG:
                vs = [max(v, 1e-32) for v in vs]
            ax.plot(ks, vs, marker=".", ms=3, lw=1.2, label=variant)
        if m in _LOG:
            ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title("energy / layer 0" if m == "dirichlet_energy" else _LABELS[m], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _atomic(
        path,
        lambda tmp: fig.savefig(
            tmp,
            format=path.suffix.lstrip(".") or "png",
            metadata={"Software": None} if path.suffix in ("", ".png") else None,
        ),
    )
    return path


# ------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer inspect``."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument(
        "--sentence",
        help="space-separated tokens; attention over their complete graph "
        f"(default: a {len(DEFAULT_SENTENCE.split())}-token sentence)",
    )
    src.add_argument("--graph", metavar="NAME", help="karate, Cora, CiteSeer or PubMed (with --root)")
    parser.add_argument(
        "--root", help="folder holding <Name>/raw/ for Planetoid graphs (read only; copied to a temporary folder)"
    )
    parser.add_argument(
        "--variants",
        help="comma-separated variants, parts joined by '+': attn|gcn, then any "
        f"of res, ff, ln (default: {','.join(SENTENCE_VARIANTS)} for a "
        f"sentence, {','.join(GRAPH_VARIANTS)} for a graph)",
    )
    parser.add_argument("--layers", type=int, default=24, help="blocks per stack (default: %(default)s)")
    parser.add_argument("--width", type=int, default=64, help="feature width d (default: %(default)s)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="random initialisations averaged (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default: %(default)s)")
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="precision of the stacks (default: %(default)s; float32 stops a collapse at ~1e-7)",
    )
    parser.add_argument("--every", type=int, default=1, help="print every k-th layer (default: %(default)s)")
    parser.add_argument("--png", metavar="FILE", help="draw the curves (needs matplotlib)")
    parser.add_argument("--csv", metavar="FILE", help="write the curves, one row per variant and layer")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def run(args: argparse.Namespace) -> dict:
    """Build the stacks, record them, print and return the curves."""
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    for flag in ("layers", "width", "heads", "seeds", "every"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.width % args.heads:
        raise ValueError(f"--width {args.width} must be divisible by --heads {args.heads}")
    if args.graph is not None:
        data = load_graph(args.graph, args.root)
        variants = _variants(args.variants, GRAPH_VARIANTS)
        x, edge_index, source, features = data.x.float(), data.edge_index, args.graph, None
        num_nodes = data.num_nodes
    else:
        tokens = (args.sentence if args.sentence is not None else DEFAULT_SENTENCE).split()
        variants = _variants(args.variants, SENTENCE_VARIANTS)
        if any(parse_variant(v)["mix"] == "gcn" for v in variants):
            raise ValueError("gcn variants need a graph (--graph NAME); a sentence is a complete graph: use attn")
        x, edge_index, source = sentence_features(tokens, args.width, args.seed), None, "sentence"
        num_nodes = len(tokens)

        def features(s):
            return sentence_features(tokens, args.width, s)

    curves = inspect_curves(
        x,
        edge_index,
        variants,
        layers=args.layers,
        width=args.width,
        heads=args.heads,
        seeds=args.seeds,
        seed=args.seed,
        features=features,
        dtype=getattr(torch, args.dtype),
    )
    print(
        f"{source}: {num_nodes} nodes, {args.layers} layers, width {args.width}, {args.heads} heads, random "
        f"weights, {args.dtype}, mean of {args.seeds} seed(s)\n"
    )
    print(format_curves(curves, args.every))
    if args.csv:
        print(f"wrote {write_csv(curves, args.csv, source)}")
    if args.png:
        print(f"wrote {plot_curves(curves, args.png, f'{source}: {args.layers} layers, random weights')}")
    return {
        "input": source,
        "num_nodes": num_nodes,
        "layers": args.layers,
        "width": args.width,
        "heads": args.heads,
        "seeds": args.seeds,
        "dtype": args.dtype,
        "curves": curves,
        "rank_one_distance_final": {v: c["rank_one_distance"][-1] for v, c in curves.items()},
        "rank_one_rate_per_layer": {v: _rate(c["rank_one_distance"]) for v, c in curves.items()},
    }


def _variants(given: str | None, default: tuple[str, ...]) -> list[str]:
    if given is None:
        return list(default)
    names = [v.strip() for v in given.split(",") if v.strip()]
    if not names:
        raise ValueError("--variants is empty; give e.g. attn,attn+res")
    for v in names:
        parse_variant(v)
    return names
