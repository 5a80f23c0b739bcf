"""Models built from the graphformer layer: forecasters and graph models."""

from .forecasting import (
    GraphPriorForecaster,
    InstanceStats,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)
from .graph import (
    GAT,
    GCN,
    GPS,
    GRAPH_MODELS,
    GATSep,
    GPSLayer,
    GraphTransformer,
    GTSep,
    ResidualGraphModel,
    build_graph_model,
    mean_pool,
)

__all__ = [
    "GAT",
    "GATSep",
    "GCN",
    "GPS",
    "GPSLayer",
    "GRAPH_MODELS",
    "GTSep",
    "GraphPriorForecaster",
    "GraphTransformer",
    "ITransformer",
    "InstanceStats",
    "PatchTransformer",
    "ResidualGraphModel",
    "TemporalTransformer",
    "build_graph_model",
    "mean_pool",
    "normalize",
]

