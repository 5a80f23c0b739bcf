"""graphformer: a Transformer is a graph neural network on a complete graph.

Attention is message passing. One layer, :class:`GraphAttention`, runs
self-attention on a sentence (the complete graph of its tokens), a decoder
(the causal DAG), cross-attention (a bipartite graph), GCN and GAT (sparse
graphs with fixed or additive scores) and graph transformers.
"""

from . import encodings  # noqa: F401
from .attention import AttentionWeights, GraphAttention
from .layers import ConvFeedForward, FeedForward, GraphformerDecoderLayer, GraphformerEncoder, GraphformerLayer
from .scores import Score, available_scores, register_score, registered_score, unregister_score
from .structure import SparseGraph

__version__ = "0.2.0"  # the one version source: pyproject.toml reads it ([tool.setuptools.dynamic])

__all__ = [
    "AttentionWeights",
    "ConvFeedForward",
    "FeedForward",
    "GraphAttention",
    "GraphformerDecoderLayer",
    "GraphformerEncoder",
    "GraphformerLayer",
    "Score",
    "SparseGraph",
    "available_scores",
    "register_score",
    "registered_score",
    "unregister_score",
]
