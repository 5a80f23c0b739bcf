"""Seconds per training step of the ETTh1 forecaster by thread count: torch's default, 1, and the engine's default.

Paired: the settings alternate in one process, ``--repeats`` times; medians
and the median ratio to one thread are printed (one JSON line at the end).

    python benchmarks/threads.py --data ../shared/data/ett/ETTh1.csv --steps 20 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from graphformer import train as engine
from graphformer.forecast import ForecastConfig, build_model, load_data


def main(argv: list[str] | None = None) -> dict:
    """Run the paired comparison; print and return the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ETTh1.csv")
    parser.add_argument("--rows", type=int, default=3000, help="first rows of the file (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    cfg = ForecastConfig(data=args.data, limit_rows=args.rows)
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data.num_variables, data.num_time_features)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = data.train[torch.arange(cfg.batch_size)]
    torch_default = os.cpu_count() or 1
    settings = {"torch default": torch_default, "1": 1, "engine default": engine.default_threads()}

    def measure(threads: int) -> float:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        for _ in range(args.steps):
            optimizer.zero_grad()
            F.mse_loss(model(batch[0], batch[2], batch[3]), batch[1]).backward()
            optimizer.step()
        return (time.perf_counter() - start) / args.steps

    times: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.repeats):
        for name, threads in settings.items():
            times[name].append(measure(threads))
    out = {
        "seconds_per_step": {k: statistics.median(v) for k, v in times.items()},
        "ratio_to_one_thread": {k: statistics.median(a / b for a, b in zip(v, times["1"])) for k, v in times.items()},
        "threads": settings,
        "load_average": os.getloadavg()[0],
        "steps": args.steps,
        "repeats": args.repeats,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
