"""Models built from the graphformer layer: forecasters and graph models."""

from .forecasting import (
    GraphPriorForecaster,
    InstanceStats,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)
from .graph import GAT, GCN, GPS, GPSLayer, GraphTransformer, mean_pool

__all__ = [
    "GAT",
    "GCN",
    "GPS",
    "GPSLayer",
    "GraphPriorForecaster",
    "GraphTransformer",
    "ITransformer",
    "InstanceStats",
    "PatchTransformer",
    "TemporalTransformer",
    "mean_pool",
    "normalize",
]

