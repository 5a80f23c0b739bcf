"""Data for graphformer models.

* :mod:`graphformer.data.timeseries`: multivariate series, standard splits,
  scaling and sliding windows (exported here);
* :mod:`graphformer.data.variable_graph`: graphs over the variables of a
  series (exported here);
* :mod:`graphformer.data.graphs`: graph datasets (Planetoid, karate club,
  synthetic structures); import it as a submodule, it pulls in PyG.
"""

from .timeseries import (
    PROTOCOLS,
    ForecastData,
    ForecastProtocol,
    Scaler,
    TimeSeries,
    WindowDataset,
    cycle_phase,
    load_series,
    prepare_forecast_data,
    protocol_for,
    read_csv_series,
    read_exchange_rate,
    read_illness,
    read_weather,
    split_borders,
    split_scheme_for,
)
from .variable_graph import adjacency_to_edges, correlation_knn_edges, read_adjacency

__all__ = [
    "PROTOCOLS",
    "ForecastData",
    "ForecastProtocol",
    "Scaler",
    "TimeSeries",
    "WindowDataset",
    "adjacency_to_edges",
    "correlation_knn_edges",
    "cycle_phase",
    "load_series",
    "prepare_forecast_data",
    "protocol_for",
    "read_adjacency",
    "read_csv_series",
    "read_exchange_rate",
    "read_illness",
    "read_weather",
    "split_borders",
    "split_scheme_for",
]
