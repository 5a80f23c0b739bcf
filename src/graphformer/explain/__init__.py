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
A graph defaults to four seeded random features per node and random
weights (a sentence to the values 1, 2, ..., N and identity projections).
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

The package, one job per module:

==============  ==============================================================
``record``      :class:`Trace`, the record of every matrix; :func:`entropy_bits`
``inputs``      sentences, named graphs, edge files, matrices typed or read
``tracing``     :func:`trace`: runs the real layer and fills the record
``text``        :func:`format_trace`: the tables ``graphformer explain`` prints
``files``       :func:`write_csv` and the atomic writes every file goes through
``pictures``    :func:`write_png`: every head's weights beside the graph
``page``        :func:`write_html`: a page that recomputes in the browser
``cli``         the options and the run of ``graphformer explain``
==============  ==============================================================

Each score's formula lives once, on its class (``Score.formula``); the
tables, the picture and the page all show that string.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

from .. import encodings  # noqa: F401  (kept as explain.encodings)
from .cli import add_arguments, run
from .files import write_csv
from .inputs import DEFAULT_SENTENCE, NAMED_GRAPHS, parse_matrix
from .page import write_html
from .pictures import cycle_spectrum_figure, plot_labels, trace_figure, write_png
from .record import Trace, entropy_bits
from .text import format_trace
from .tracing import trace

__all__ = [
    "DEFAULT_SENTENCE",
    "NAMED_GRAPHS",
    "Trace",
    "add_arguments",
    "cycle_spectrum_figure",
    "entropy_bits",
    "format_trace",
    "parse_matrix",
    "plot_labels",
    "run",
    "trace",
    "trace_figure",
    "write_csv",
    "write_html",
    "write_png",
]
