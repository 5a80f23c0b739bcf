"""``graphformer explain``: options and the run that prints the tables and writes the files.

Every number in the JSON it returns is finite (the trace refuses NaN inputs
and overflow), so the last line of the command is strict JSON.
"""

from __future__ import annotations

import argparse
import math

import networkx as nx

from ..scores import available_scores
from .files import write_csv
from .inputs import (
    DEFAULT_NODES,
    DEFAULT_SENTENCE,
    NAMED_GRAPHS,
    SIZED_GRAPHS,
    named_graph,
    read_csv_matrix,
    read_edges,
)
from .page import write_html
from .pictures import write_png
from .text import MAX_DIGITS, check_digits, format_trace
from .tracing import trace

__all__ = ["GRAPH_D_MODEL", "add_arguments", "run"]

GRAPH_D_MODEL = 4  # graphs default to 4 seeded random features (and random weights), not 1, 2, ..., N


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphformer explain``."""
    parser.add_argument(
        "sentence",
        nargs="?",
        default=None,
        help=f"space-separated tokens, the complete graph of them (default: {DEFAULT_SENTENCE!r})",
    )
    g = parser.add_argument_group("graph (default: the complete graph of the sentence)")
    g.add_argument(
        "--causal", action="store_true", help="the causal DAG: each token attends to itself and earlier ones"
    )
    g.add_argument("--edges", metavar="FILE", help="edge list, one 'source target' pair per line")
    g.add_argument("--directed", action="store_true", help="with --edges: 'a b' means a -> b only (b attends to a)")
    g.add_argument("--graph", choices=sorted(NAMED_GRAPHS), help="a small named networkx graph")
    g.add_argument(
        "--nodes",
        type=int,
        default=None,
        help=f"size of {'/'.join(SIZED_GRAPHS)} (default: {DEFAULT_NODES}); the other graphs have a fixed size",
    )
    g.add_argument(
        "--self-loops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="for graphs: every node also attends to itself (default: on)",
    )
    m = parser.add_argument_group("layer and numbers")
    m.add_argument(
        "--d-model",
        type=int,
        default=None,
        help=f"width d (default: the width of --values/--x, else 1 for a sentence and {GRAPH_D_MODEL} "
        "seeded random features for a graph)",
    )
    m.add_argument("--heads", type=int, default=1, help="number of heads (default: 1)")
    m.add_argument("--score", default="dot", help=f"any registered score: {', '.join(available_scores())}")
    m.add_argument(
        "--positional",
        choices=["none", "sinusoidal"],
        default="none",
        help="add a sinusoidal positional encoding to the values (default: none)",
    )
    m.add_argument("--seed", type=int, default=0, help="seed of random values and weights (default: 0)")
    m.add_argument("--values", help="inputs: '1,2,3' (one per token, d = 1) or rows '1,0;2,1;3,1'")
    m.add_argument("--x", metavar="FILE.csv", help="inputs as a CSV file, one row per token")
    for name in ("wq", "wk", "wv"):
        m.add_argument(
            f"--{name}",
            default="auto",
            help=f"W_{name[1]} [d, d]: 'identity', 'random' or rows 'a,b;c,d' "
            "(default: identity when d = 1, else random)",
        )
    m.add_argument("--wo", default="identity", help="output projection W_o: 'identity' (default), 'random' or rows")
    o = parser.add_argument_group("output")
    o.add_argument("--digits", type=int, default=4, help=f"decimals in the tables, 0 to {MAX_DIGITS} (default: 4)")
    o.add_argument("--csv", metavar="DIR", help="write every matrix as DIR/<name>.csv")
    o.add_argument(
        "--png",
        metavar="FILE.png",
        help="write a picture: for every head the weight matrix beside the graph (needs matplotlib)",
    )
    o.add_argument("--html", metavar="FILE", help="write one self-contained interactive page")


def _source(args: argparse.Namespace):
    """The sentence or graph the options name."""
    if args.nodes is not None and args.graph is None:
        raise ValueError(f"--nodes sets the size of --graph {'/'.join(SIZED_GRAPHS)}; leave it out or add --graph")
    if args.graph is not None:
        return named_graph(args.graph, args.nodes)
    if args.edges is not None:
        tokens, ei = read_edges(args.edges, args.directed)
        source = nx.DiGraph()
        source.add_nodes_from(tokens)
        source.add_edges_from((tokens[j], tokens[i]) for j, i in ei.t().tolist())
        return source
    if args.directed:
        raise ValueError("--directed applies to --edges FILE; leave it out")
    if not args.self_loops:
        raise ValueError("--no-self-loops applies to graphs; every token of a sentence attends to itself")
    return args.sentence if args.sentence is not None else DEFAULT_SENTENCE


def _check_strict_json(value, where: str = "metrics") -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}: the numbers overflow float64; give smaller inputs or weights")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_strict_json(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_strict_json(v, where)


def run(args: argparse.Namespace) -> dict:
    """Print the trace as tables, write the requested files, return outputs and entropies as metrics."""
    if sum(v is not None for v in (args.sentence, args.edges, args.graph)) > 1:
        raise ValueError("give one of: a sentence, --edges FILE or --graph NAME")
    if args.values is not None and args.x is not None:
        raise ValueError("give the inputs with --values or --x, not both")
    check_digits(args.digits)
    source = _source(args)
    values = args.values
    if args.x is not None:
        values = read_csv_matrix(args.x, "--x")
    d_model = args.d_model
    if d_model is None and values is None and isinstance(source, nx.Graph):
        d_model = GRAPH_D_MODEL
    t = trace(
        source,
        values=values,
        d_model=d_model,
        num_heads=args.heads,
        score=args.score,
        causal=args.causal,
        positional=args.positional,
        w_q=args.wq,
        w_k=args.wk,
        w_v=args.wv,
        w_o=args.wo,
        seed=args.seed,
        self_loops=args.self_loops,
    )
    metrics: dict = {
        "tokens": t.tokens,
        "formula": t.formula,
        "outputs": t.output.tolist(),
        "weights": t.weights.tolist(),
        "entropy_bits": t.entropy.tolist(),
        "max_abs_error": t.max_abs_error,
    }
    _check_strict_json(metrics)
    print(format_trace(t, args.digits))
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
