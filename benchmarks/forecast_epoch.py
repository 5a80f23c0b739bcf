"""Seconds per training epoch of iTransformer: ours against the reference code, timed side by side.

One epoch is the training loop only (no validation): every batch of the
shuffled training windows (batch 32, the last incomplete batch dropped),
forward, MSE, backward and an Adam step, with the results table's settings
(look-back 96, horizon 96, d_model = d_ff = 256, 8 heads, 2 layers,
dropout 0.1; ETTh1: 7 variables + 4 time-feature tokens = 11 tokens).

The contenders run **alternately in one process**, one epoch each per
round, the order flipping every round, so a change of load on a shared
machine hits all of them; the report is the median seconds per epoch and
the median of the per-round (paired) ratios against the reference.

* ``graphformer``: :class:`graphformer.models.ITransformer` fed by
  ``WindowDataset.loader``, stepped as ``graphformer forecast`` steps it
  (``torch.optim.Adam`` with its defaults);
* ``graphformer+fused-adam``: the same model and batches with
  ``torch.optim.Adam(..., fused=True)`` (one kernel per parameter and step
  instead of about ten), the per-step overhead this benchmark found;
* ``graphformer+fused-adam+bf16`` (with ``--bf16``): the same under
  ``torch.autocast("cpu", torch.bfloat16)``, as ``--precision bf16`` trains
  (matrix products in bfloat16, on AMX / AVX-512-BF16 units where the CPU
  has them);
* ``rebuilt reference``: the reference model's structure rebuilt from plain
  torch modules (``scripts/forecast_results.py``), fed the reference way
  (float64 numpy windows collated per item); always available;
* ``reference code``: the iTransformer repository itself
  (https://github.com/thuml/iTransformer, its ``model/iTransformer.py`` and
  ``data_provider``), trained with its own loop, when ``--reference DIR``
  points at a checkout. It is not shipped here.

Usage::

    python benchmarks/forecast_epoch.py --rounds 3 --threads 2
    python benchmarks/forecast_epoch.py --reference ~/src/iTransformer --rounds 3 --threads 2
    python benchmarks/forecast_epoch.py --data ../shared/data/weather/weather.csv --max-steps 200

The last line on stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from forecast_results import _RefITransformer, _RefWindows  # noqa: E402

from graphformer.forecast import ForecastConfig, load_data  # noqa: E402
from graphformer.models import ITransformer  # noqa: E402


def _limit(loader, max_steps: int | None):
    for i, batch in enumerate(loader):
        if max_steps is not None and i >= max_steps:
            return
        yield batch


def our_epoch(model: nn.Module, optimizer, loader, max_steps: int | None, bf16: bool = False) -> tuple[float, int]:
    """The training loop of ``graphformer forecast`` (one epoch; ``bf16``: ``--precision bf16``): seconds and steps."""
    loss_fn = nn.MSELoss()
    model.train()
    steps = 0
    start = time.perf_counter()
    for x, y, x_mark, y_mark in _limit(loader, max_steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(x, x_mark, y_mark)
        loss = loss_fn(pred.float(), y)
        loss.backward()
        optimizer.step()
        loss.item()
        steps += 1
    return time.perf_counter() - start, steps


def rebuilt_epoch(model: nn.Module, optimizer, loader, max_steps: int | None) -> tuple[float, int]:
    """The rebuilt reference structure, fed float64 numpy windows collated by a ``DataLoader``."""
    loss_fn = nn.MSELoss()
    model.train()
    steps = 0
    start = time.perf_counter()
    for x, y, x_mark, y_mark in _limit(loader, max_steps):
        x, y, x_mark = x.float(), y.float(), x_mark.float()
        optimizer.zero_grad()
        loss = loss_fn(model(x, x_mark, y_mark), y)
        loss.backward()
        optimizer.step()
        loss.item()
        steps += 1
    return time.perf_counter() - start, steps


def reference_contender(root: Path, data_path: Path, args) -> tuple[nn.Module, object, object]:
    """The iTransformer repository's own model, data provider and optimizer (``--reference DIR``)."""
    if not (root / "model" / "iTransformer.py").is_file():
        raise SystemExit(
            f"--reference {root}: no model/iTransformer.py there; give a checkout of "
            "https://github.com/thuml/iTransformer"
        )
    sys.path.insert(0, str(root))
    from data_provider.data_factory import data_provider  # the reference code
    from model.iTransformer import Model

    name = data_path.stem
    kind = name if name in ("ETTh1", "ETTh2", "ETTm1", "ETTm2") else "custom"
    cfg = SimpleNamespace(
        data=kind,
        root_path=str(data_path.parent) + "/",
        data_path=data_path.name,
        features="M",
        target="OT",
        freq="h",
        embed="timeF",
        seq_len=args.seq_len,
        label_len=48,
        pred_len=args.pred_len,
        batch_size=32,
        num_workers=args.reference_workers,
        d_model=args.d_model,
        d_ff=args.d_model,
        n_heads=8,
        e_layers=2,
        dropout=0.1,
        activation="gelu",
        factor=1,
        output_attention=False,
        use_norm=True,
        class_strategy="projection",
        enc_in=None,
        dec_in=None,
        c_out=None,
        distil=True,
        moving_avg=25,
        task_name="long_term_forecast",
        seasonal_patterns="Monthly",
        inverse=False,
        cols=None,
        augmentation_ratio=0,
    )
    _, loader = data_provider(cfg, "train")
    model = Model(cfg).float()
    return model, torch.optim.Adam(model.parameters(), lr=1e-4), loader


def reference_epoch(
    model: nn.Module, optimizer, loader, max_steps: int | None, pred_len: int, label_len: int = 48
) -> tuple[float, int]:
    """The reference repository's training loop (``exp_long_term_forecasting.train``), one epoch."""
    loss_fn = nn.MSELoss()
    model.train()
    steps = 0
    start = time.perf_counter()
    for batch_x, batch_y, batch_x_mark, batch_y_mark in _limit(loader, max_steps):
        optimizer.zero_grad()
        batch_x, batch_y = batch_x.float(), batch_y.float()
        batch_x_mark, batch_y_mark = batch_x_mark.float(), batch_y_mark.float()
        dec_inp = torch.zeros_like(batch_y[:, -pred_len:, :]).float()
        dec_inp = torch.cat([batch_y[:, :label_len, :], dec_inp], dim=1).float()
        outputs = model(batch_x, batch_x_mark, dec_inp, batch_y_mark)[:, -pred_len:, 0:]
        loss = loss_fn(outputs, batch_y[:, -pred_len:, 0:])
        loss.backward()
        optimizer.step()
        loss.item()
        steps += 1
    return time.perf_counter() - start, steps


def main(argv: list[str] | None = None) -> dict:
    """Time the contenders alternately and print the paired medians (last stdout line: JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ett" / "ETTh1.csv")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a checkout of thuml/iTransformer; without it the rebuilt structure is the reference",
    )
    parser.add_argument(
        "--reference-workers",
        type=int,
        default=0,
        help="DataLoader workers of the reference code (its default is 10; 0 here, as ours)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None, help="cut every epoch to this many steps")
    parser.add_argument("--seq-len", type=int, default=96)
    parser.add_argument("--pred-len", type=int, default=96)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time ours under bfloat16 autocast on the CPU (`graphformer forecast --precision bf16`)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        raise SystemExit("--rounds and --threads must be >= 1")
    torch.set_num_threads(args.threads)

    cfg = ForecastConfig(data=str(args.data), seq_len=args.seq_len, pred_len=args.pred_len)
    data = load_data(cfg)
    torch.manual_seed(0)
    contenders = {}
    ours = [("graphformer", False, False), ("graphformer+fused-adam", True, False)]
    if args.bf16:
        ours.append(("graphformer+fused-adam+bf16", True, True))
    for name, fused, bf16 in ours:
        model = ITransformer(args.seq_len, args.pred_len, d_model=args.d_model, num_heads=8, d_ff=args.d_model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused or None)
        gen = torch.Generator().manual_seed(0)
        contenders[name] = lambda m=model, o=optimizer, g=gen, b=bf16: our_epoch(
            m, o, data.train.loader(32, True, True, g), args.max_steps, b
        )
    ref_model = _RefITransformer(args.seq_len, args.pred_len, args.d_model, 8, args.d_model, 2)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-4)
    windows = _RefWindows(
        data.train.values.double().numpy(), data.train.marks.double().numpy(), args.seq_len, args.pred_len
    )
    contenders["rebuilt reference"] = lambda: rebuilt_epoch(
        ref_model,
        ref_opt,
        torch.utils.data.DataLoader(windows, batch_size=32, shuffle=True, drop_last=True),
        args.max_steps,
    )
    baseline = "rebuilt reference"
    if args.reference is not None:
        model, optimizer, loader = reference_contender(args.reference.expanduser().resolve(), args.data, args)
        contenders["reference code"] = lambda: reference_epoch(model, optimizer, loader, args.max_steps, args.pred_len)
        baseline = "reference code"

    times = {name: [] for name in contenders}
    steps = {}
    names = list(contenders)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds, steps[name] = contenders[name]()
            times[name].append(seconds)
            print(f"round {r + 1}: {name}: {seconds:.2f} s ({steps[name]} steps)", file=sys.stderr, flush=True)
    out = {
        "data": args.data.name,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "baseline": baseline,
        "steps": steps,
        "seconds": times,
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "paired_ratio_vs_baseline": {
            k: statistics.median(a / b for a, b in zip(v, times[baseline])) for k, v in times.items()
        },
        "paired_ratio_fused_vs_default": statistics.median(
            a / b for a, b in zip(times["graphformer+fused-adam"], times["graphformer"])
        ),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
