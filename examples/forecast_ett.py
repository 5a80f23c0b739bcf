"""Forecast ETTh1 with iTransformer: the 7 variables are the nodes of a complete graph.

Full protocol (10 epochs; about 2 s each with ``--threads 1`` on a loaded 2-core CPU for 3,000 rows, see
docs/training.md on threads)::

    python examples/forecast_ett.py --data path/to/ETTh1.csv --out runs/etth1

A quick look on the first rows of the file::

    python examples/forecast_ett.py --data path/to/ETTh1.csv --limit-rows 1500 --epochs 2

The same run from the command line::

    graphformer forecast --data path/to/ETTh1.csv --model itransformer --seq-len 96 --pred-len 96 \\
        --d-model 256 --d-ff 256 --layers 2 --out runs/etth1
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from graphformer.forecast import ForecastConfig, train


def _default_data() -> str | None:
    """``$GRAPHFORMER_DATA/ett/ETTh1.csv`` when that variable names a folder holding it, else None."""
    root = os.environ.get("GRAPHFORMER_DATA")
    path = Path(root) / "ett" / "ETTh1.csv" if root else None
    return str(path) if path is not None and path.is_file() else None


def main(argv: list[str] | None = None) -> dict:
    """Train, early-stop and test; print the test MSE / MAE and return the metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = _default_data()
    parser.add_argument(
        "--data",
        default=default,
        required=default is None,
        help="ETTh1.csv (https://github.com/zhouhaoyi/ETDataset, ETT-small/ETTh1.csv; default: "
        "$GRAPHFORMER_DATA/ett/ETTh1.csv when present)",
    )
    parser.add_argument("--pred-len", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--limit-rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    cfg = ForecastConfig(
        data=args.data,
        model="itransformer",
        seq_len=96,
        pred_len=args.pred_len,
        epochs=args.epochs,
        d_model=args.d_model,
        d_ff=args.d_model,
        layers=2,
        limit_rows=args.limit_rows,
        seed=args.seed,
    )
    metrics = train(cfg, args.out, progress=args.out is not None)
    print(
        f"{Path(args.data).stem}  look-back {cfg.seq_len}  horizon {cfg.pred_len}  "
        f"test windows {metrics['test_windows']}:  MSE {metrics['mse']:.3f}  MAE {metrics['mae']:.3f}"
    )
    print(
        "error by horizon step (MSE):  first {:.3f}  middle {:.3f}  last {:.3f}".format(
            metrics["mse_per_step"][0],
            metrics["mse_per_step"][len(metrics["mse_per_step"]) // 2],
            metrics["mse_per_step"][-1],
        )
    )
    return metrics


if __name__ == "__main__":
    main()
