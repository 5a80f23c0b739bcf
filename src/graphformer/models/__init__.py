"""Models built from the graphformer layer: forecasters, graph models and a GPT."""

from .forecasting import (
    GraphPriorForecaster,
    InstanceStats,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)
from .gpt import GPT, GPTConfig, KVCache
from .graph import GAT, GCN, GPS, GPSLayer, GraphTransformer, mean_pool

__all__ = [
    "GAT",
    "GCN",
    "GPS",
    "GPSLayer",
    "GPT",
    "GPTConfig",
    "GraphPriorForecaster",
    "GraphTransformer",
    "ITransformer",
    "InstanceStats",
    "KVCache",
    "PatchTransformer",
    "TemporalTransformer",
    "mean_pool",
    "normalize",
]

