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
"""

from __future__ import annotations

import sys

import torch

import graphformer as gf
from graphformer.structure import complete_edge_index

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
                    pad[1, n // 2:] = True
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
            check(f"fused SDPA kernel: {str(dtype):14s} {label:8s}", bool(fused) and not math,
                  f"-> {kernel} ({fused[0][:60] if fused else names[:3]})")
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
    check("sparse path memory is O(E)", extra < dense_bytes / 100,
          f"{extra / 2**20:.0f} MiB for N={n:,}, E={e:,} (N x N floats: {dense_bytes / 2**30:.0f} GiB)")


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


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}")
    for step in (cpu_vs_cuda, sdpa_kernels, sparse_memory, compiled):
        try:
            step()
        except Exception as err:  # report and go on to the next check
            check(step.__name__, False, f"raised {type(err).__name__}: {err}")
    print(f"# {len(FAILED)} failed: {FAILED}" if FAILED else "# all checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
