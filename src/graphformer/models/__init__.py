"""Models built from the graphformer layer: forecasters, graph models and a GPT."""

from .autoformer import AutoCorrelation, Autoformer, SeriesDecomposition, autocorrelation
from .forecasting import (
    GraphPriorForecaster,
    InstanceStats,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)
from .gpt import GPT, GPTConfig, KVCache
from .graph import (
    GAT,
    GCN,
    GPS,
    GRAPH_MODELS,
    GATRes,
    GATSep,
    GCNRes,
    GPSLayer,
    GraphTransformer,
    GTRes,
    GTSep,
    ResidualGraphModel,
    build_graph_model,
    mean_pool,
)
from .periodic import CycleForecaster, RecurrentCycle, TemporalQueryForecaster

__all__ = [
    "GAT",
    "GATRes",
    "GATSep",
    "AutoCorrelation",
    "Autoformer",
    "CycleForecaster",
    "GCN",
    "GCNRes",
    "GPS",
    "GPSLayer",
    "GPT",
    "GPTConfig",
    "GRAPH_MODELS",
    "GTRes",
    "GTSep",
    "GraphPriorForecaster",
    "GraphTransformer",
    "ITransformer",
    "InstanceStats",
    "KVCache",
    "PatchTransformer",
    "ResidualGraphModel",
    "TemporalTransformer",
    "build_graph_model",
    "RecurrentCycle",
    "SeriesDecomposition",
    "TemporalQueryForecaster",
    "autocorrelation",
    "mean_pool",
    "normalize",
]
