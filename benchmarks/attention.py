"""Speed and memory of GraphAttention against torch.nn and PyTorch Geometric.

Forward + backward of one layer, the reference and ours holding the same
weights (converted with ``graphformer.interop``), timed in one process in
alternation (A B A B ...); the time ratio is the median of the paired ratios.
Peak memory is the extra memory one forward + backward needs: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the growth of the peak resident
set (VmHWM, reset just before the step) of a fresh worker process (large
blocks are returned to the system at once, ``MALLOC_MMAP_THRESHOLD_=65536``),
each implementation in its own process.

    python benchmarks/attention.py                  # every case, CPU
    python benchmarks/attention.py --quick          # the smaller cases
    python benchmarks/attention.py --device cuda
    python benchmarks/attention.py --only precision # bfloat16 against float32, sparse path

The precision cases run the same layer (``score="dot"``, a prepared
``SparseGraph``) in float32 (the reference) and in bfloat16 -- weights and
inputs cast (``bf16``) or float32 weights under ``torch.autocast`` (``autocast
bf16``) -- and report the bfloat16 peak memory as a fraction of the float32 one.
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
from graphformer.interop import from_pyg, from_torch

D_MODEL, HEADS = 128, 4

DENSE_CASES = [(8, 256), (2, 1024), (1, 4096)]
SPARSE_CASES = [(20_000, 320_000), (100_000, 1_600_000)]
SPARSE_CONVS = ["TransformerConv", "GATConv", "GCNConv"]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_dense(batch: int, n: int, device, seed: int = 0):
    """``nn.MultiheadAttention`` and its conversion, and a function running fwd+bwd of each."""
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True).to(device)
    ours = from_torch(ref).to(device)
    x = torch.randn(batch, n, D_MODEL, device=device, requires_grad=True)

    def run_ref():
        ref(x, x, x, need_weights=False)[0].sum().backward()

    def run_ours():
        ours(x).sum().backward()

    return run_ref, run_ours


def make_sparse(conv_name: str, num_nodes: int, num_edges: int, device, seed: int = 0):
    """A PyG conv and its conversion on a random graph, and fwd+bwd runners."""
    from torch_geometric import nn as pyg_nn

    torch.manual_seed(seed)
    if conv_name == "TransformerConv":
        ref = pyg_nn.TransformerConv(D_MODEL, D_MODEL // HEADS, heads=HEADS)
    elif conv_name == "GATConv":
        ref = pyg_nn.GATConv(D_MODEL, D_MODEL // HEADS, heads=HEADS)
    else:
        ref = pyg_nn.GCNConv(D_MODEL, D_MODEL)
    ref = ref.to(device)
    ours = from_pyg(ref).to(device)
    x = torch.randn(num_nodes, D_MODEL, device=device, requires_grad=True)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), device=device)

    def run_ref():
        ref(x, edge_index).sum().backward()

    def run_ours():
        ours(x, edge_index).sum().backward()

    return run_ref, run_ours


def make_precision(mode: str, num_nodes: int, num_edges: int, device, seed: int = 0):
    """One GraphAttention on a prepared random graph: float32 (reference) and bfloat16 runners."""
    torch.manual_seed(seed)
    layer = gf.GraphAttention(D_MODEL, HEADS).to(device)
    x = torch.randn(num_nodes, D_MODEL, device=device)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), device=device)
    graph = gf.SparseGraph.from_edge_index(edge_index, num_nodes)
    x32 = x.clone().requires_grad_()

    def run_ref():
        layer(x32, graph).sum().backward()

    if mode == "autocast":

        def run_ours():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = layer(x32, graph)
            out.sum().backward()
    else:
        half = gf.GraphAttention(D_MODEL, HEADS).to(device)
        half.load_state_dict(layer.state_dict())
        half = half.to(torch.bfloat16)
        x16 = x.to(torch.bfloat16).requires_grad_()

        def run_ours():
            half(x16, graph).sum().backward()

    return run_ref, run_ours


def build(case: dict, device):
    if case["kind"] == "dense":
        return make_dense(case["batch"], case["n"], device)
    if case["kind"] == "precision":
        return make_precision(case["mode"], case["n"], case["e"], device)
    return make_sparse(case["conv"], case["n"], case["e"], device)


def paired_times(run_ref, run_ours, device, repeats: int):
    """Median times (ms) and the median of paired ratios ours / reference."""
    run_ref()
    run_ours()  # warm-up
    t_ref, t_ours = [], []
    for _ in range(repeats):
        for fn, store in ((run_ref, t_ref), (run_ours, t_ours)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            store.append((time.perf_counter() - start) * 1e3)
    ratios = [o / r for o, r in zip(t_ours, t_ref)]
    return statistics.median(t_ref), statistics.median(t_ours), statistics.median(ratios)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def peak_memory(case: dict, which: str, device) -> int:
    """Extra bytes one forward + backward of ``which`` ("ref" or "ours") needs."""
    if device.type == "cuda":
        run_ref, run_ours = build(case, device)
        fn = run_ref if which == "ref" else run_ours
        fn()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(case), which],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _worker(case_json: str, which: str) -> None:
    case = json.loads(case_json)
    device = torch.device("cpu")
    run_ref, run_ours = build(case, device)
    fn = run_ref if which == "ref" else run_ours
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status_bytes("VmRSS")
    fn()
    print(max(_status_bytes("VmHWM") - before, 0))


def cases(quick: bool, only: str | None = None) -> list[dict]:
    out = [
        {"kind": "dense", "batch": b, "n": n, "label": f"complete {b}x{n}", "ref": "nn.MultiheadAttention"}
        for b, n in (DENSE_CASES[:2] if quick else DENSE_CASES)
    ]
    for n, e in SPARSE_CASES[:1] if quick else SPARSE_CASES:
        for conv in SPARSE_CONVS:
            out.append({"kind": "sparse", "conv": conv, "n": n, "e": e, "label": f"sparse {n:,} / {e:,}", "ref": conv})
    for n, e in SPARSE_CASES[:1] if quick else SPARSE_CASES:
        for mode in ("bf16", "autocast"):
            out.append(
                {
                    "kind": "precision",
                    "mode": mode,
                    "n": n,
                    "e": e,
                    "label": f"sparse {n:,} / {e:,}, {'autocast ' if mode == 'autocast' else ''}bf16",
                    "ref": "ours, float32",
                }
            )
    return [c for c in out if only is None or c["kind"] == only]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only the smaller cases")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--only", choices=["dense", "sparse", "precision"], help="one kind of case")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return []
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"# GraphAttention vs reference, forward + backward, d_model {D_MODEL}, {HEADS} heads")
    print(
        f"# device: {device} ({name}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"graphformer {gf.__version__}, median of {args.repeats} paired runs"
    )
    print("| graph | reference | reference ms | ours ms | time ratio | reference MiB | ours MiB | memory ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for case in cases(args.quick, args.only):
        run_ref, run_ours = build(case, device)
        t_ref, t_ours, ratio = paired_times(run_ref, run_ours, device, args.repeats)
        del run_ref, run_ours
        mem_ref = mem_ours = None
        if not args.no_memory:
            mem_ref, mem_ours = peak_memory(case, "ref", device), peak_memory(case, "ours", device)
        row = dict(case, ref_ms=t_ref, ours_ms=t_ours, time_ratio=ratio, ref_bytes=mem_ref, ours_bytes=mem_ours)
        rows.append(row)
        mem = (
            "| - | - | - |"
            if mem_ref is None
            else f"| {mem_ref / 2**20:,.1f} | {mem_ours / 2**20:,.1f} | {mem_ours / max(mem_ref, 1):.2f}x |"
        )
        print(f"| {case['label']} | {case['ref']} | {t_ref:,.1f} | {t_ours:,.1f} | {ratio:.2f}x {mem}", flush=True)
    return rows


if __name__ == "__main__":
    main()
