"""CUDA checks: the dense path runs on fused SDPA kernels, the sparse path runs on
the GPU, and both give what the CPU gives.

    python benchmarks/cuda_checks.py            # prints a report; exit 1 on a failed check

Checks:
1. CPU vs CUDA: outputs and gradients of every score on both paths (float32,
   2e-5 relative to max(1, largest entry)).
2. Which SDPA kernel the dense path launches (read from the profiler's CUDA
   kernel names) for float16 / bfloat16 / float32, with and without a padding
   mask and causal: flash or memory-efficient, never the math fallback; and it
   still runs when only those two backends are allowed.
3. The sparse path on a large random graph allocates O(E) memory, not O(N^2).
4. ``torch.compile`` of both paths on CUDA matches eager.
5. Half precision on CUDA: float16 / bfloat16 weights and inputs, and float32
   weights under ``torch.autocast`` (float16 and bfloat16), against a float64
   CPU run of the same rounded weights and inputs, on a graph where every
   target has 10,000 incoming edges: the sparse path's output and input
   gradients stay within 1.5x the dense (SDPA) path's own error (+ 4 eps of
   the output's size), and softmax weights sum to 1 within 4 eps.
6. The sparse path with a prepared ``SparseGraph`` against PyG's GATConv and
   GCNConv (converted with ``from_pyg``, same weights, same outputs) on a
   random graph of 20,000 nodes / 320,000 edges, d_model 128 (GAT: 4 heads):
   median of paired forward + backward time ratios <= 0.9, and peak memory.

    python benchmarks/cuda_checks.py --only half_precision,versus_pyg   # some checks
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

import graphformer as gf
from graphformer.structure import add_self_loops, bipartite_edge_index, complete_edge_index

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"[{'ok' if ok else 'FAIL'}] {name} {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def max_diff(a, b) -> float:
    return float((a.detach().cpu().double() - b.detach().cpu().double()).abs().max())


def rel_diff(a, b) -> float:
    """max |a - b| relative to max(1, max |b|): float32 sums differ in order between devices, and some
    gradients are zero in exact arithmetic (a key bias under softmax), so they hold only rounding noise."""
    return max_diff(a, b) / max(float(b.detach().abs().max()), 1.0)


def cpu_vs_cuda() -> None:
    torch.manual_seed(0)
    n, d, h = 64, 32, 4
    x = torch.randn(3, n, d)
    edge_index = torch.randint(0, n, (2, 900))
    for score in ["dot", "additive", "gatv2", "gcn", "mean"]:
        for path in ["dense", "sparse", "causal", "padded"]:
            torch.manual_seed(1)
            layer = gf.GraphAttention(d, h, score=score)
            results = []
            for device in ["cpu", "cuda"]:
                m = layer.to(device)
                m.zero_grad()
                xi = x.to(device).detach().clone().requires_grad_(True)
                if path == "dense":
                    out = m(xi)
                elif path == "causal":
                    out = m(xi, causal=True)
                elif path == "padded":
                    pad = torch.zeros(3, n, dtype=torch.bool, device=device)
                    pad[1, n // 2 :] = True
                    out = m(xi, key_padding_mask=pad)
                else:
                    out = m(xi[0], edge_index.to(device))
                out.pow(2).sum().backward()
                grads = [xi.grad] + [p.grad for p in m.parameters() if p.grad is not None]
                results.append((out, grads))
            (o1, g1), (o2, g2) = results
            err = max([rel_diff(o2, o1)] + [rel_diff(b, a) for a, b in zip(g1, g2)])
            check(f"cpu == cuda: {score:8s} {path:6s}", err < 2e-5, f"max relative diff {err:.1e}")


def sdpa_kernels() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    b, n, d, h = 4, 1024, 256, 4
    for dtype in [torch.float16, torch.bfloat16, torch.float32]:
        layer = gf.GraphAttention(d, h).cuda().to(dtype)
        x = torch.randn(b, n, d, device="cuda", dtype=dtype, requires_grad=True)
        pad = torch.zeros(b, n, dtype=torch.bool, device="cuda")
        pad[:, -100:] = True
        for label, kwargs in [("no mask", {}), ("causal", {"causal": True}), ("padding", {"key_padding_mask": pad})]:
            layer(x, **kwargs).sum().backward()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                layer(x, **kwargs).sum().backward()
                torch.cuda.synchronize()
            names = [e.key.lower() for e in prof.key_averages()]
            fused = [k for k in names if "flash" in k or "efficient" in k or "fmha" in k or "cudnn" in k]
            math = [k for k in names if "softmax" in k and "flash" not in k and "efficient" not in k]
            kernel = "flash" if any("flash" in k for k in fused) else ("efficient/cudnn" if fused else "none")
            check(
                f"fused SDPA kernel: {str(dtype):14s} {label:8s}",
                bool(fused) and not math,
                f"-> {kernel} ({fused[0][:60] if fused else names[:3]})",
            )
            try:
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
                    layer(x, **kwargs).sum().backward()
                ok = True
            except RuntimeError as err:
                ok, kernel = False, str(err)[:80]
            check(f"runs with only flash/efficient allowed: {str(dtype):14s} {label:8s}", ok)


def sparse_memory() -> None:
    torch.manual_seed(0)
    n, e, d, h = 200_000, 3_200_000, 128, 4
    layer = gf.GraphAttention(d, h).cuda()
    x = torch.randn(n, d, device="cuda", requires_grad=True)
    edge_index = torch.randint(0, n, (2, e), device="cuda")
    layer(x, edge_index).sum().backward()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    layer(x, edge_index).sum().backward()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    dense_bytes = n * n * 4
    check(
        "sparse path memory is O(E)",
        extra < dense_bytes / 100,
        f"{extra / 2**20:.0f} MiB for N={n:,}, E={e:,} (N x N floats: {dense_bytes / 2**30:.0f} GiB)",
    )


def compiled() -> None:
    torch.manual_seed(0)
    layer = gf.GraphAttention(64, 4).cuda()
    x = torch.randn(2, 128, 64, device="cuda")
    edge_index = complete_edge_index(128, device="cuda")
    compiled_layer = torch.compile(layer)
    err_dense = max_diff(compiled_layer(x), layer(x))
    err_sparse = max_diff(compiled_layer(x[0], edge_index), layer(x[0], edge_index))
    check("torch.compile dense == eager", err_dense < 1e-4, f"{err_dense:.2e}")
    check("torch.compile sparse == eager", err_sparse < 1e-4, f"{err_sparse:.2e}")


def _half_errors(layer, exact, x_src, x_dst, edge_index, autocast_dtype=None):
    """Max abs errors (output, grad x_src, grad x_dst) of both paths on CUDA against float64 on CPU."""
    xs64, xd64 = x_src.double().cpu().requires_grad_(), x_dst.double().cpu().requires_grad_()
    ref = exact((xs64, xd64), edge_index.cpu())
    w = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref_grads = torch.autograd.grad((ref * w).sum(), (xs64, xd64))
    errors = {}
    for path, graph in (("sparse", edge_index), ("dense", None)):
        xs, xd = x_src.clone().requires_grad_(), x_dst.clone().requires_grad_()
        with torch.autocast("cuda", dtype=autocast_dtype or torch.float16, enabled=autocast_dtype is not None):
            out = layer((xs, xd), graph)
        grads = torch.autograd.grad((out.double() * w.cuda()).sum(), (xs, xd))
        errors[path] = [max_diff(out, ref)] + [max_diff(g, r) for g, r in zip(grads, ref_grads)]
    return errors, float(ref.detach().abs().max())


def half_precision() -> None:
    num_src, num_dst, d, h = 10_000, 4, 64, 4
    edge_index = bipartite_edge_index(num_src, num_dst, device="cuda")  # in-degree 10,000
    gen = torch.Generator().manual_seed(2)
    x_src, x_dst = 2 * torch.randn(num_src, d, generator=gen), 2 * torch.randn(num_dst, d, generator=gen)
    cases = [(dtype, None) for dtype in (torch.float16, torch.bfloat16)]
    cases += [(torch.float32, dtype) for dtype in (torch.float16, torch.bfloat16)]  # autocast
    for score in ("dot", "additive"):
        for dtype, autocast_dtype in cases:
            torch.manual_seed(3)
            layer = gf.GraphAttention(d, h, score=score).to(dtype).cuda().eval()
            exact = copy.deepcopy(layer).double().cpu()
            xs, xd = x_src.to(dtype).cuda(), x_dst.to(dtype).cuda()
            errors, scale = _half_errors(layer, exact, xs, xd, edge_index, autocast_dtype)
            eps = torch.finfo(autocast_dtype or dtype).eps
            ok = all(sp <= 1.5 * de + 4 * eps * scale for sp, de in zip(errors["sparse"], errors["dense"]))
            label = f"autocast {autocast_dtype}" if autocast_dtype else str(dtype)
            check(
                f"half precision vs float64: {score:8s} {label:24s}",
                ok,
                "sparse/dense max errors (out, grad src, grad dst): "
                + ", ".join(f"{sp:.1e}/{de:.1e}" for sp, de in zip(errors["sparse"], errors["dense"])),
            )
            if autocast_dtype is None:
                _, att = layer((xs, xd), edge_index, return_attention=True)
                sums = att.weights.double().view(num_dst, num_src, h).sum(1)
                err = float((sums - 1).abs().max())
                check(f"softmax weights sum to 1: {score:8s} {label:24s}", err <= 4 * eps, f"max |sum - 1| {err:.1e}")


def _paired(run_ref, run_ours, repeats: int = 20):
    for fn in (run_ref, run_ours, run_ref, run_ours):  # warm-up
        fn()
    t_ref, t_ours = [], []
    for _ in range(repeats):
        for fn, store in ((run_ref, t_ref), (run_ours, t_ours)):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            store.append((time.perf_counter() - start) * 1e3)
    return statistics.median(t_ref), statistics.median(t_ours), statistics.median(o / r for o, r in zip(t_ours, t_ref))


def _peak(fn) -> int:
    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def versus_pyg() -> None:
    from torch_geometric import nn as pyg_nn

    from graphformer.interop import from_pyg

    n, e, d, heads = 20_000, 320_000, 128, 4
    torch.manual_seed(4)
    edge_index = torch.randint(0, n, (2, e), device="cuda")
    x = torch.randn(n, d, device="cuda", requires_grad=True)
    for name, conv in (("GATConv", pyg_nn.GATConv(d, d // heads, heads=heads)), ("GCNConv", pyg_nn.GCNConv(d, d))):
        conv = conv.cuda()
        ours = from_pyg(conv).cuda()
        loops, _ = add_self_loops(edge_index, n, mode=ours.self_loops) if ours.self_loops else (edge_index, None)
        graph = gf.SparseGraph.from_edge_index(loops, n)  # prepared once, as a training loop would
        ours.self_loops = None  # the prepared graph has its self-loops already
        err = rel_diff(ours(x, graph), conv(x, edge_index))
        check(f"prepared graph == PyG {name}", err < 1e-4, f"max relative diff {err:.1e}")

        def run_ref(conv=conv):
            conv(x, edge_index).sum().backward()

        def run_ours(ours=ours, graph=graph):
            ours(x, graph).sum().backward()

        t_ref, t_ours, ratio = _paired(run_ref, run_ours)
        mem_ref, mem_ours = _peak(run_ref), _peak(run_ours)
        check(
            f"sparse 20k/320k vs PyG {name}: time ratio <= 0.9",
            ratio <= 0.9,
            f"{t_ours:.2f} ms vs {t_ref:.2f} ms (median paired ratio {ratio:.2f}x); "
            f"peak {mem_ours / 2**20:.0f} vs {mem_ref / 2**20:.0f} MiB ({mem_ours / max(mem_ref, 1):.2f}x)",
        )


STEPS = ("cpu_vs_cuda", "sdpa_kernels", "sparse_memory", "compiled", "half_precision", "versus_pyg")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated checks among {', '.join(STEPS)}")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown:
        parser.error(f"--only: unknown checks {unknown}; choose among {', '.join(STEPS)}")
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}")
    for step in (globals()[name] for name in chosen):
        try:
            step()
        except Exception as err:  # report and go on to the next check
            check(step.__name__, False, f"raised {type(err).__name__}: {err}")
    print(f"# {len(FAILED)} failed: {FAILED}" if FAILED else "# all checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
