"""A million nodes on one CPU: full-batch training of a 2-layer GAT, ours against PyG's GATConv.

The graph: ``--nodes`` nodes (default 1,000,000) and ``--edges`` random
directed edges (default 16,000,000, sources and targets uniform, seed 0),
64 random input features, 10 random classes. The model: two graph-attention
layers of width 64 with 4 heads (16 channels each), ELU between them, the
second averaging its heads into the 10 class scores, self-loops added as GAT
does, no dropout. One step = forward on the whole graph + cross-entropy on
every node + backward + an Adam step.

* ours: :class:`graphformer.models.GAT` (``score="additive"``), the edge
  layout prepared once with ``model.prepare`` (timed separately);
* PyG: ``GATConv(64, 16, heads=4)`` -> ELU -> ``GATConv(64, 10, heads=4, concat=False)``,
  which adds self-loops in every forward (its default).

Each runs in its own process under a memory cap (``--mem-cap-gb``, default
14): the parent polls the child's resident set and stops it when it passes
the cap (reported as out of memory), and the address space is limited to the
cap plus 4 GiB as a backstop. Printed: seconds per step (median of the steps
after the first), peak RSS of the process (graph and features included).

    python benchmarks/scale.py                       # 1M nodes / 16M edges, 3 steps each
    python benchmarks/scale.py --nodes 100000 --edges 1600000 --steps 2   # a quick check
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

D_MODEL, HEADS, CLASSES = 64, 4, 10


class PygGAT(nn.Module):
    """Two PyG GATConv layers of the same size as ours."""

    def __init__(self):
        super().__init__()
        from torch_geometric.nn import GATConv

        self.conv1 = GATConv(D_MODEL, D_MODEL // HEADS, heads=HEADS, dropout=0.0)
        self.conv2 = GATConv(D_MODEL, CLASSES, heads=HEADS, concat=False, dropout=0.0)

    def forward(self, x, edge_index):
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


def make_graph(num_nodes: int, num_edges: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(num_nodes, (2, num_edges), generator=gen)
    x = torch.randn(num_nodes, D_MODEL, generator=gen)
    y = torch.randint(CLASSES, (num_nodes,), generator=gen)
    return x, edge_index, y


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(which: str, num_nodes: int, num_edges: int, steps: int) -> dict:
    """Train ``which`` ("ours" or "pyg") for ``steps`` steps; returns times and peak RSS."""
    from tqdm import tqdm

    torch.manual_seed(0)
    x, edge_index, y = make_graph(num_nodes, num_edges)
    prepare_s = None
    if which == "ours":
        from graphformer.models import GAT

        model = GAT(D_MODEL, D_MODEL // HEADS, CLASSES, heads=HEADS, out_heads=HEADS, num_layers=2, dropout=0.0)
        start = time.perf_counter()
        graph = model.prepare(edge_index, num_nodes)
        prepare_s = time.perf_counter() - start
    else:
        model = PygGAT()
        graph = edge_index
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    times, losses = [], []
    for _ in tqdm(range(steps), desc=which, file=sys.stderr):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x, graph), y)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    return dict(which=which, step_s=times, prepare_s=prepare_s, peak_rss=_peak_rss(), losses=losses)


def run_capped(which: str, args) -> dict:
    """Run one worker in a subprocess; stop it when its RSS passes the cap."""
    cap = int(args.mem_cap_gb * 2**30)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        which,
        "--nodes",
        str(args.nodes),
        "--edges",
        str(args.edges),
        "--steps",
        str(args.steps),
        "--mem-cap-gb",
        str(args.mem_cap_gb),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak, status = 0, f"/proc/{proc.pid}/status"
    start = time.perf_counter()
    while proc.poll() is None:
        try:
            with open(status) as f:
                rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            peak = max(peak, rss)
        except (OSError, StopIteration):
            pass
        if peak > cap:
            proc.kill()
            proc.wait()
            return dict(
                which=which,
                oom=True,
                peak_rss=peak,
                wall_s=time.perf_counter() - start,
                note=f"stopped at {peak / 2**30:.1f} GiB resident (cap {args.mem_cap_gb} GiB)",
            )
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode != 0:
        return dict(
            which=which,
            oom=True,
            peak_rss=peak,
            wall_s=time.perf_counter() - start,
            note=f"exited with status {proc.returncode} (out of memory under the "
            f"{args.mem_cap_gb} GiB address-space cap, or another error; see stderr)",
        )
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=16_000_000)
    parser.add_argument("--steps", type=int, default=3, help="training steps per model (the first is warm-up)")
    parser.add_argument("--mem-cap-gb", type=float, default=14.0, help="memory cap per process, GiB")
    parser.add_argument("--only", choices=["ours", "pyg"], help="run one model only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--worker", choices=["ours", "pyg"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        limit = int((args.mem_cap_gb + 4) * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        print(json.dumps(worker(args.worker, args.nodes, args.edges, args.steps)))
        return None
    print(
        f"# 2-layer GAT (d_model {D_MODEL}, {HEADS} heads), full batch, {args.nodes:,} nodes, "
        f"{args.edges:,} random edges (+ self-loops); {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, cap {args.mem_cap_gb} GiB per process"
    )
    print("| model | s / step | peak RSS GiB | note |")
    print("| --- | ---: | ---: | --- |")
    results = []
    for which in [args.only] if args.only else ["ours", "pyg"]:
        r = run_capped(which, args)
        results.append(r)
        label = "graphformer GAT" if which == "ours" else "PyG GATConv"
        if r.get("oom"):
            print(f"| {label} | - | > {r['peak_rss'] / 2**30:.1f} | out of memory: {r['note']} |", flush=True)
            continue
        steps = r["step_s"][1:] or r["step_s"]
        note = (
            f"steps {', '.join(f'{t:.1f}' for t in r['step_s'])} s; loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}"
        )
        if r["prepare_s"] is not None:
            note += f"; edge layout built once in {r['prepare_s']:.1f} s"
        print(f"| {label} | {statistics.median(steps):.2f} | {r['peak_rss'] / 2**30:.2f} | {note} |", flush=True)
    return results


if __name__ == "__main__":
    main()
