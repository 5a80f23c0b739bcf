"""Structured graphs on the blocked path against the sparse path, dense SDPA and the padded batch path.

Forward + backward of one ``GraphAttention`` (d_model 128, 4 heads, "dot"
score), all implementations holding the same weights, timed in one process
in rotation (A B C A B C ...); each ratio is the median of the per-round
ratios. Cases:

* ``window``: a sliding window ±W on N nodes (``structure.sliding_window``):
  the blocked path ``attn(x, g)``, the sparse path on the same edges
  ``attn(x, g.edge_index)``, and dense SDPA on the complete graph ``attn(x)``.
  Peak memory (growth of VmHWM in a fresh worker process per implementation,
  as in ``benchmarks/attention.py``) is measured for the three at N and for
  the blocked path at N/2, N and 2N (O(N w) means it doubles with N).
* ``batch``: G graphs of 10-40 nodes, each a complete graph, ``attn(x, batch=batch)``
  (the block-diagonal structure built from ``batch`` on every call), the same
  with the structure prepared once (``attn(x, batch=g)``), and the padded
  path the ``batch=`` call used before (pack to ``[G, N_max, d]`` and run the
  dense path with a padding mask; kept here as the reference).

    python benchmarks/structured.py                 # N 16,384, W 128; 256 graphs
    python benchmarks/structured.py --quick         # N 4,096
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import graphformer as gf
from graphformer import structure
from graphformer.attention import _check_batch
from graphformer.structure import to_dense_batch

D_MODEL, HEADS = 128, 4


def padded_reference(attn: gf.GraphAttention, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """The ``batch=`` path before the block-diagonal structure: pad every graph to the largest one."""
    _check_batch(batch, x.size(0), packed=True)
    num_graphs = int(batch.max()) + 1 if batch.numel() else 0
    dense, pad = to_dense_batch(x, batch, num_graphs)
    out, _ = attn._dense(dense, dense, False, False, pad, None, False)
    return out[~pad]


def _step(fn, x):
    def run():
        x.grad = None
        fn(x).sum().backward()

    return run


def window_runs(n: int, window: int, which=("blocked", "sparse", "dense"), seed: int = 0):
    torch.manual_seed(seed)
    attn = gf.GraphAttention(D_MODEL, HEADS)
    x = torch.randn(n, D_MODEL, requires_grad=True)
    g = structure.sliding_window(n, window)
    runs = {}
    if "blocked" in which:
        runs["blocked"] = _step(lambda t: attn(t, g), x)
    if "sparse" in which:
        edge_index = g.edge_index
        runs["sparse"] = _step(lambda t: attn(t, edge_index), x)
    if "dense" in which:
        runs["dense"] = _step(lambda t: attn(t), x)
    return runs, g.num_edges


def batch_runs(num_graphs: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(10, 41, (num_graphs,), generator=gen)
    batch = torch.repeat_interleave(torch.arange(num_graphs), sizes)
    torch.manual_seed(seed)
    attn = gf.GraphAttention(D_MODEL, HEADS)
    x = torch.randn(batch.numel(), D_MODEL, requires_grad=True)
    g = structure.block_diagonal(batch=batch)
    runs = {
        "padded": _step(lambda t: padded_reference(attn, t, batch), x),
        "batch=": _step(lambda t: attn(t, batch=batch), x),
        "prepared": _step(lambda t: attn(t, batch=g), x),
    }
    return runs, int(sizes.sum())


def rotation(runs: dict, repeats: int) -> dict:
    """Median time (ms) of each run, timed in rotation after one warm-up each."""
    for fn in runs.values():
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def ratio(times: dict, ours: str, ref: str) -> float:
    return statistics.median(o / r for o, r in zip(times[ours], times[ref]))


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def peak_memory(n: int, window: int, which: str) -> int:
    """Extra bytes one forward + backward of ``which`` needs, in a fresh process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            json.dumps([n, window, which]),
            "--threads",
            str(torch.get_num_threads()),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _worker(spec: str) -> None:
    n, window, which = json.loads(spec)
    runs, _ = window_runs(n, window, (which,))
    fn = runs[which]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status_bytes("VmRSS")
    fn()
    print(max(_status_bytes("VmHWM") - before, 0))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=16_384, help="window case: number of nodes N")
    parser.add_argument("--window", type=int, default=128, help="window case: half-width W")
    parser.add_argument("--graphs", type=int, default=256, help="batch case: number of graphs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="N 4,096 and 3 repeats")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        _worker(args.worker)
        return {}
    if args.quick:
        args.nodes, args.repeats = 4096, 3
    n, w = args.nodes, args.window
    print(
        f"# structured graphs, forward + backward, d_model {D_MODEL}, {HEADS} heads; "
        f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"graphformer {gf.__version__}, median of {args.repeats} rounds"
    )
    results = {}

    runs, edges = window_runs(n, w)
    times = rotation(runs, args.repeats)
    del runs
    med = {k: statistics.median(v) for k, v in times.items()}
    results["window"] = dict(
        nodes=n,
        window=w,
        edges=edges,
        ms=med,
        vs_dense=ratio(times, "blocked", "dense"),
        vs_sparse=ratio(times, "blocked", "sparse"),
    )
    print(f"\n## sliding window ±{w}, N {n:,}, {edges:,} edges")
    print("| path | ms | blocked / path |")
    print("| --- | ---: | ---: |")
    for name, label in (
        ("blocked", "blocked (attn(x, g))"),
        ("sparse", "sparse (attn(x, g.edge_index))"),
        ("dense", "dense SDPA, complete graph (attn(x))"),
    ):
        print(f"| {label} | {med[name]:,.1f} | {ratio(times, 'blocked', name):.3f}x |")
    print(
        f"targets: blocked / dense <= 0.10x: {results['window']['vs_dense']:.3f}x; "
        f"blocked / sparse <= 0.35x: {results['window']['vs_sparse']:.3f}x",
        flush=True,
    )

    if not args.no_memory:
        mem = {which: peak_memory(n, w, which) for which in ("blocked", "sparse", "dense")}
        scale = {m: peak_memory(m, w, "blocked") for m in (n // 2, 2 * n)}
        scale[n] = mem["blocked"]
        results["window"]["peak_bytes"], results["window"]["blocked_scaling_bytes"] = mem, scale
        print("\n| peak memory, forward + backward | MiB | blocked / path |")
        print("| --- | ---: | ---: |")
        for which in ("blocked", "sparse", "dense"):
            print(f"| {which}, N {n:,} | {mem[which] / 2**20:,.1f} | {mem['blocked'] / max(mem[which], 1):.3f}x |")
        for m in sorted(scale):
            print(
                f"| blocked, N {m:,} | {scale[m] / 2**20:,.1f} | bytes per edge "
                f"{scale[m] / structure.sliding_window(m, w).num_edges:,.0f} |",
                flush=True,
            )

    runs, nodes = batch_runs(args.graphs)
    times = rotation(runs, max(args.repeats, 11))
    med = {k: statistics.median(v) for k, v in times.items()}
    results["batch"] = dict(
        graphs=args.graphs,
        nodes=nodes,
        ms=med,
        vs_padded=ratio(times, "batch=", "padded"),
        prepared_vs_padded=ratio(times, "prepared", "padded"),
    )
    print(f"\n## {args.graphs} complete graphs of 10-40 nodes ({nodes:,} nodes), batch=")
    print("| path | ms | / padded |")
    print("| --- | ---: | ---: |")
    for name, label in (
        ("padded", "padded (previous batch= path)"),
        ("batch=", "attn(x, batch=batch)"),
        ("prepared", "attn(x, batch=block_diagonal(batch=batch))"),
    ):
        print(f"| {label} | {med[name]:,.2f} | {ratio(times, name, 'padded'):.3f}x |")
    print(
        f"target: batch= / padded <= 0.5x: {results['batch']['vs_padded']:.3f}x "
        f"(prepared: {results['batch']['prepared_vs_padded']:.3f}x)"
    )
    return results


if __name__ == "__main__":
    main()
