"""Data for graphformer models.

* :mod:`graphformer.data.timeseries`: multivariate series, standard splits,
  scaling and sliding windows (exported here);
* :mod:`graphformer.data.variable_graph`: graphs over the variables of a
  series (exported here);
* :mod:`graphformer.data.graphs`: graph datasets (Planetoid, karate club,
  synthetic structures); import it as a submodule, it pulls in PyG.
"""

from .timeseries import (
    ForecastData,
    Scaler,
    TimeSeries,
    WindowDataset,
    load_series,
    prepare_forecast_data,
    read_csv_series,
    read_exchange_rate,
    split_borders,
    split_scheme_for,
)
from .variable_graph import adjacency_to_edges, correlation_knn_edges, read_adjacency

__all__ = [
    "ForecastData",
    "Scaler",
    "TimeSeries",
    "WindowDataset",
    "adjacency_to_edges",
    "correlation_knn_edges",
    "load_series",
    "prepare_forecast_data",
    "read_adjacency",
    "read_csv_series",
    "read_exchange_rate",
    "split_borders",
    "split_scheme_for",
]
