"""Checks of the training engine on CUDA: devices, precisions and (with two GPUs or more) NCCL data parallel.

Run on a machine with a GPU (a few minutes at most)::

    python benchmarks/cuda_train_checks.py

It trains the small forecaster of the test suite on a synthetic series with
``--device cuda`` in fp32, bf16 and fp16 (bf16 / fp16 must land within 20 %
of fp32's test MSE), classifies the karate club on the GPU, and with two
GPUs or more compares ``torchrun --nproc-per-node 2`` (NCCL) against one
process. One JSON line per check; exit status 1 if any check fails.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SRC = Path(__file__).resolve().parents[1] / "src"


def _series(path: Path, rows: int = 600) -> Path:
    t = np.arange(rows)
    dates = np.datetime64("2020-01-01T00:00") + t * np.timedelta64(1, "h")
    with open(path, "w") as f:
        f.write("date,a,b,OT\n")
        for i in t:
            stamp = str(dates[i]).replace("T", " ")
            f.write(f"{stamp},{np.sin(i / 6):.6f},{np.cos(i / 9):.6f},{np.sin(i / 4) * 0.5 + 0.001 * i:.6f}\n")
    return path


def _forecast_args(data: Path, *extra: str) -> list[str]:
    return [
        "forecast",
        "--data",
        str(data),
        "--seq-len",
        "24",
        "--pred-len",
        "8",
        "--d-model",
        "32",
        "--d-ff",
        "32",
        "--heads",
        "4",
        "--batch-size",
        "32",
        "--epochs",
        "3",
        "--dropout",
        "0",
        "--quiet",
        "--no-plot",
        *extra,
    ]


def _cli(args: list[str], nproc: int = 1) -> tuple[int, dict | None, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    head = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    proc = subprocess.run([*head, "-m", "graphformer", *args], env=env, capture_output=True, text=True, timeout=600)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if proc.returncode == 0 and lines else None, proc.stderr[-2000:]


def main() -> int:
    """Run every check; print one JSON line each; 0 when all pass."""
    if not torch.cuda.is_available():
        print(json.dumps({"check": "cuda", "ok": False, "why": "no CUDA device here"}))
        return 1
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        data = _series(Path(tmp) / "s.csv")
        results = {}
        for precision in ("fp32", "bf16", "fp16"):
            out = Path(tmp) / f"f_{precision}"
            rc, metrics, err = _cli(
                _forecast_args(data, "--device", "cuda", "--precision", precision, "--out", str(out))
            )
            good = (
                rc == 0
                and metrics is not None
                and math.isfinite(metrics["mse"])
                and metrics["device"].startswith("cuda")
            )
            if good:
                results[precision] = metrics["mse"]
                ckpt = torch.load(out / "best.pt", weights_only=True)["model"]
                good = all(v.dtype != torch.float16 and v.dtype != torch.bfloat16 for v in ckpt.values())
            if good and precision != "fp32":
                good = abs(metrics["mse"] - results["fp32"]) <= 0.2 * results["fp32"]
            ok &= good
            print(
                json.dumps(
                    {
                        "check": f"forecast cuda {precision}",
                        "ok": good,
                        "mse": None if metrics is None else metrics["mse"],
                        "stderr": "" if good else err,
                    }
                )
            )
        rc, metrics, err = _cli(
            [
                "classify",
                "--dataset",
                "karate",
                "--model",
                "gat",
                "--runs",
                "2",
                "--epochs",
                "50",
                "--device",
                "cuda",
                "--no-progress",
            ]
        )
        good = rc == 0 and metrics is not None and metrics["accuracy_mean"] >= 0.6
        ok &= good
        print(json.dumps({"check": "classify karate cuda", "ok": good, "stderr": "" if good else err}))
        if torch.cuda.device_count() >= 2:
            one = _cli(_forecast_args(data, "--device", "cuda", "--out", str(Path(tmp) / "one")))
            two = _cli(_forecast_args(data, "--device", "cuda", "--out", str(Path(tmp) / "two")), nproc=2)
            good = (
                one[0] == 0
                and two[0] == 0
                and two[1]["processes"] == 2
                and abs(one[1]["mse"] - two[1]["mse"]) <= 1e-4 * max(1.0, one[1]["mse"])
            )
            ok &= good
            print(
                json.dumps(
                    {
                        "check": "torchrun nccl 2 gpus == 1 gpu",
                        "ok": good,
                        "mse": [None if r[1] is None else r[1]["mse"] for r in (one, two)],
                        "stderr": "" if good else one[2] + two[2],
                    }
                )
            )
        else:
            print(json.dumps({"check": "torchrun nccl", "ok": None, "why": "needs two GPUs"}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
