"""Models built from the graphformer layer: forecasters (and graph models where present)."""

from .forecasting import (
    GraphPriorForecaster,
    InstanceStats,
    ITransformer,
    PatchTransformer,
    TemporalTransformer,
    normalize,
)

__all__ = [
    "GraphPriorForecaster",
    "ITransformer",
    "InstanceStats",
    "PatchTransformer",
    "TemporalTransformer",
    "normalize",
]

try:
    from . import graph as _graph
except ModuleNotFoundError as err:  # the graph models are optional here
    if err.name != f"{__name__}.graph":
        raise
else:
    from .graph import *  # noqa: F403

    __all__ += list(getattr(_graph, "__all__", []))
