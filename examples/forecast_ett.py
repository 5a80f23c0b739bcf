"""Forecast ETTh1 with iTransformer: the 7 variables are the nodes of a complete graph.

Full protocol (about 10 epochs of a few seconds each on a laptop CPU)::

    python examples/forecast_ett.py --data path/to/ETTh1.csv --out runs/etth1

A quick look on the first rows of the file::

    python examples/forecast_ett.py --data path/to/ETTh1.csv --limit-rows 1500 --epochs 2

The same run from the command line::

    graphformer forecast --data path/to/ETTh1.csv --model itransformer --seq-len 96 --pred-len 96 \\
        --d-model 256 --d-ff 256 --layers 2 --out runs/etth1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from graphformer.forecast import ForecastConfig, train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ett" / "ETTh1.csv"


def main(argv: list[str] | None = None) -> dict:
    """Train, early-stop and test; print the test MSE / MAE and return the metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="ETTh1.csv (default: %(default)s)")
    parser.add_argument("--pred-len", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--limit-rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    cfg = ForecastConfig(data=args.data, model="itransformer", seq_len=96, pred_len=args.pred_len,
                         epochs=args.epochs, d_model=args.d_model, d_ff=args.d_model, layers=2,
                         limit_rows=args.limit_rows, seed=args.seed)
    metrics = train(cfg, args.out, progress=args.out is not None)
    print(f"{Path(args.data).stem}  look-back {cfg.seq_len}  horizon {cfg.pred_len}  "
          f"test windows {metrics['test_windows']}:  MSE {metrics['mse']:.3f}  MAE {metrics['mae']:.3f}")
    print("error by horizon step (MSE):  first {:.3f}  middle {:.3f}  last {:.3f}".format(
        metrics["mse_per_step"][0], metrics["mse_per_step"][len(metrics["mse_per_step"]) // 2],
        metrics["mse_per_step"][-1]))
    return metrics


if __name__ == "__main__":
    main()
