"""Models built from the graphformer layer: forecasters and graph models."""

from .autoformer import AutoCorrelation, Autoformer, SeriesDecomposition, autocorrelation
from .forecasting import (
    GraphPriorForecaster,
    InstanceStats,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)
from .graph import GAT, GCN, GPS, GPSLayer, GraphTransformer, mean_pool
from .periodic import CycleForecaster, RecurrentCycle, TemporalQueryForecaster

__all__ = [
    "GAT",
    "AutoCorrelation",
    "Autoformer",
    "CycleForecaster",
    "GCN",
    "GPS",
    "GPSLayer",
    "GraphPriorForecaster",
    "GraphTransformer",
    "ITransformer",
    "InstanceStats",
    "PatchTransformer",
    "RecurrentCycle",
    "SeriesDecomposition",
    "TemporalQueryForecaster",
    "TemporalTransformer",
    "autocorrelation",
    "mean_pool",
    "normalize",
]

