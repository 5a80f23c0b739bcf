"""Sparse kernels of the message-passing path, as custom operators.

Legend: H heads, M target nodes (rows), N source nodes (columns), E edges,
C channels per head. Per-edge tensors are ``[H, E]`` in CSR order (edges
sorted by target, then source) as laid out by :class:`~graphformer.structure.SparseGraph`.

Two products do all the work, and each is the other's gradient:

* ``sddmm``: sampled dense-dense product, ``out[h, e] = a[h, i(e)] . b[h, j(e)]``
  -- the dot score of every edge, computed without gathering per-edge
  ``[E, C]`` copies of the node features;
* ``spmm``: sparse-dense product, ``out[h, i] = sum_e values[h, e] b[h, j(e)]``
  -- the aggregation of messages.

Only ``[H, E]`` numbers per layer are kept for the backward pass. Both are
registered with ``torch.library`` so that ``torch.compile`` traces through them
without graph breaks. On CPU and CUDA they run on ``torch.sparse`` CSR kernels;
small graphs use a gather/scatter fallback.

Precision: float16 / bfloat16 inputs are computed in float32: dot products,
the softmax maxima and normalisers and the aggregation sums all accumulate in
float32. Scores (``sddmm`` of half inputs) are returned in float32 -- a score
of size 20 rounded to bfloat16 is off by 0.06, which moves its softmax weight
by 6% -- while weights and aggregated messages are stored in the input dtype.
On CPU the float32 copies are made one head at a time, so the extra
memory is ``[E]`` and ``[N, C]`` numbers, never ``[H, E, C]``; per-edge
tensors kept for the backward pass stay ``[H, E]`` in the input dtype.
The kernels run with autocast disabled (they choose their own precision).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch
from torch import Tensor

__all__ = ["sddmm", "segment_softmax", "segment_sum", "spmm"]

_SPARSE_DTYPES = (torch.float32, torch.float64)
# Below this many per-edge multiply-adds (E * C) gathering is cheaper than setting up a CSR kernel.
_SMALL = 1 << 16


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta" is not news to the user
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _rows(crow: Tensor, num_edges: int) -> Tensor:
    return torch.repeat_interleave(
        torch.arange(crow.numel() - 1, device=crow.device), crow.diff(), output_size=num_edges
    )


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a kernel computes in: float32 for float16 / bfloat16."""
    return dtype if dtype in _SPARSE_DTYPES else torch.float32


def _no_autocast(t: Tensor):
    """Autocast would send the float32 work of a half-precision kernel back to half."""
    if torch.is_autocast_enabled(t.device.type):
        return torch.autocast(t.device.type, enabled=False)
    return nullcontext()


def _per_head(fn, out: Tensor, work: torch.dtype, *tensors: Tensor) -> Tensor:
    """``out[h] = fn(*(t[h:h+1] in work dtype))[0]`` one head at a time: float32 copies of a single head only."""
    for h in range(out.size(0)):
        out[h] = fn(*(t[h : h + 1].to(work) for t in tensors))[0]
    return out


def _sddmm(crow: Tensor, col: Tensor, a: Tensor, b: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``[H, E]`` dot products; ``dtype`` of the result defaults to float32 for half inputs."""
    H, M, _ = a.shape  # noqa: N806
    E, N = col.numel(), b.size(1)  # noqa: N806
    work = _work_dtype(torch.promote_types(a.dtype, b.dtype))
    dtype = work if dtype is None else dtype  # scores of half inputs stay float32
    if E == 0 or a.size(-1) == 0:
        return a.new_zeros(H, E, dtype=dtype)
    if a.dtype != work or b.dtype != work or dtype != work:  # half precision (or mixed): float32 arithmetic
        if a.is_cuda:
            return _sddmm(crow, col, a.to(work), b.to(work)).to(dtype)
        return _per_head(lambda a1, b1: _sddmm(crow, col, a1, b1), a.new_empty(H, E, dtype=dtype), work, a, b)
    # sampled_addmm fails with more (duplicate) edges than M * N
    if E * a.size(-1) < _SMALL or E > M * N:
        row = _rows(crow, E)
        return (a[:, row] * b[:, col]).sum(-1)
    if a.is_cuda:  # one batched cuSPARSE call
        pattern = _csr(crow.expand(H, -1).contiguous(), col.expand(H, -1).contiguous(), a.new_zeros(H, E), (H, M, N))
        return torch.sparse.sampled_addmm(pattern, a, b.transpose(1, 2), beta=0.0).values()
    pattern = _csr(crow, col, a.new_zeros(E), (M, N))
    if H == 1:
        return torch.sparse.sampled_addmm(pattern, a[0], b[0].t(), beta=0.0).values().unsqueeze(0)
    return torch.stack([torch.sparse.sampled_addmm(pattern, a[h], b[h].t(), beta=0.0).values() for h in range(H)])


def _spmm(
    crow: Tensor,
    col: Tensor,
    values: Tensor,
    dense: Tensor,
    perm: Tensor | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """``[H, M, C]`` aggregation of ``values[:, perm]`` (``perm`` applied one head at a time)."""
    H, N, C = dense.shape  # noqa: N806
    M, E = crow.numel() - 1, col.numel()  # noqa: N806
    if dtype is None:
        # messages take the node features' dtype: float32 weights (a score gradient) on half features give half
        dtype = dense.dtype if dense.dtype not in _SPARSE_DTYPES else torch.promote_types(values.dtype, dense.dtype)
    if E == 0:
        return dense.new_zeros(H, M, C, dtype=dtype)
    work = _work_dtype(torch.promote_types(values.dtype, dense.dtype))
    if values.dtype != work or dense.dtype != work or dtype != work:  # half precision (or mixed): float32 sums
        if dense.is_cuda:
            return _spmm(crow, col, values.to(work), dense.to(work), perm).to(dtype)
        return _per_head(
            lambda v1, d1: _spmm(crow, col, v1, d1, perm),
            dense.new_empty(H, M, C, dtype=dtype),
            work,
            values.expand(H, -1),
            dense,
        )
    if E * C < _SMALL:
        row = _rows(crow, E)
        msg = dense[:, col] * (values if perm is None else values[:, perm]).unsqueeze(-1)
        return dense.new_zeros(H, M, C).index_add_(1, row, msg)
    if perm is not None and dense.is_cuda:
        values = values[:, perm]
        perm = None

    def head(h):
        return _csr(crow, col, values[h] if perm is None else values[h][perm], (M, N)) @ dense[h]

    return head(0).unsqueeze(0) if H == 1 else torch.stack([head(h) for h in range(H)])


# Each product is registered twice with the same backward formulas: as a torch.library custom
# operator, which torch.compile traces without graph breaks, and as an autograd.Function, which
# eager mode calls with less per-call overhead.


def _inverse(perm: Tensor) -> Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def _backward_formulas(sddmm_fn, spmm_fn, lean: bool = False):
    """Backward of both products, written with the given (differentiable) products.

    With ``lean`` and grad mode off (a plain ``backward()``, no double backward) the kernels are called
    directly: permutations are applied one head at a time and gradients come out in their inputs' dtypes,
    so no full ``[H, E]`` copy or float32 gradient of half-precision inputs is made.
    """

    def sddmm_backward(ctx, grad):
        crow, col, t_crow, t_col, t_perm, a, b = ctx.saved_tensors
        grad = grad.contiguous()
        grad_a = grad_b = None
        if lean and not torch.is_grad_enabled():
            with _no_autocast(grad):
                if ctx.needs_input_grad[5]:
                    grad_a = _spmm(crow, col, grad, b.contiguous(), dtype=a.dtype)
                if ctx.needs_input_grad[6]:
                    grad_b = _spmm(t_crow, t_col, grad, a.contiguous(), perm=t_perm, dtype=b.dtype)
            return None, None, None, None, None, grad_a, grad_b
        if ctx.needs_input_grad[5]:
            grad_a = spmm_fn(crow, col, t_crow, t_col, t_perm, grad, b)
        if ctx.needs_input_grad[6]:
            grad_b = spmm_fn(t_crow, t_col, crow, col, _inverse(t_perm), grad[:, t_perm], a)
        return None, None, None, None, None, grad_a, grad_b

    def spmm_backward(ctx, grad):
        crow, col, t_crow, t_col, t_perm, values, dense = ctx.saved_tensors
        grad = grad.contiguous()
        grad_values = grad_dense = None
        if lean and not torch.is_grad_enabled():
            with _no_autocast(grad):
                if ctx.needs_input_grad[5]:
                    grad_values = _sddmm(crow, col, grad, dense.contiguous(), dtype=values.dtype)
                if ctx.needs_input_grad[6]:
                    grad_dense = _spmm(t_crow, t_col, values.contiguous(), grad, perm=t_perm, dtype=dense.dtype)
            return None, None, None, None, None, grad_values, grad_dense
        if ctx.needs_input_grad[5]:
            grad_values = sddmm_fn(crow, col, t_crow, t_col, t_perm, grad, dense)
        if ctx.needs_input_grad[6]:
            grad_dense = spmm_fn(t_crow, t_col, crow, col, _inverse(t_perm), values[:, t_perm], grad)
        return None, None, None, None, None, grad_values, grad_dense

    return sddmm_backward, spmm_backward


def _save_inputs(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


@torch.library.custom_op("graphformer::sddmm", mutates_args=())
def _sddmm_op(crow: Tensor, col: Tensor, t_crow: Tensor, t_col: Tensor, t_perm: Tensor, a: Tensor, b: Tensor) -> Tensor:
    with _no_autocast(a):
        return _sddmm(crow, col, a.contiguous(), b.contiguous())


@_sddmm_op.register_fake
def _(crow, col, t_crow, t_col, t_perm, a, b):
    return a.new_empty(a.size(0), col.size(0))


@torch.library.custom_op("graphformer::spmm", mutates_args=())
def _spmm_op(
    crow: Tensor, col: Tensor, t_crow: Tensor, t_col: Tensor, t_perm: Tensor, values: Tensor, dense: Tensor
) -> Tensor:
    with _no_autocast(dense):
        return _spmm(crow, col, values.contiguous(), dense.contiguous())


@_spmm_op.register_fake
def _(crow, col, t_crow, t_col, t_perm, values, dense):
    return dense.new_empty(dense.size(0), crow.size(0) - 1, dense.size(2))


_op_sddmm_backward, _op_spmm_backward = _backward_formulas(_sddmm_op, _spmm_op)
torch.library.register_autograd("graphformer::sddmm", _op_sddmm_backward, setup_context=_save_inputs)
torch.library.register_autograd("graphformer::spmm", _op_spmm_backward, setup_context=_save_inputs)


class _SDDMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, crow, col, t_crow, t_col, t_perm, a, b):
        ctx.save_for_backward(crow, col, t_crow, t_col, t_perm, a, b)
        with _no_autocast(a):
            return _sddmm(crow, col, a.contiguous(), b.contiguous())

    @staticmethod
    def backward(ctx, grad):
        return _eager_sddmm_backward(ctx, grad)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, crow, col, t_crow, t_col, t_perm, values, dense):
        ctx.save_for_backward(crow, col, t_crow, t_col, t_perm, values, dense)
        with _no_autocast(dense):
            return _spmm(crow, col, values.contiguous(), dense.contiguous())

    @staticmethod
    def backward(ctx, grad):
        return _eager_spmm_backward(ctx, grad)


_eager_sddmm_backward, _eager_spmm_backward = _backward_formulas(_SDDMM.apply, _SpMM.apply, lean=True)


def sddmm(graph, a: Tensor, b: Tensor) -> Tensor:
    """Per-edge dot products ``out[h, e] = a[h, i] . b[h, j]`` for every edge j -> i.

    Args:
        graph: a :class:`~graphformer.structure.SparseGraph`.
        a: target-side features ``[H, M, C]``.
        b: source-side features ``[H, N, C]``.

    Returns:
        ``[H, E]`` in CSR order; float32 for float16 / bfloat16 inputs (the
        products accumulate, and are kept, in float32).
    """
    fn = _sddmm_op if torch.compiler.is_compiling() else _SDDMM.apply
    return fn(graph.crow, graph.col, graph.t_crow, graph.t_col, graph.t_perm, a, b)


def spmm(graph, values: Tensor, dense: Tensor) -> Tensor:
    """Aggregate ``out[h, i] = sum_{j -> i} values[h, e] dense[h, j]``.

    Args:
        graph: a :class:`~graphformer.structure.SparseGraph`.
        values: per-edge weights ``[H, E]`` in CSR order.
        dense: source-node features ``[H, N, C]``.

    Returns:
        ``[H, M, C]``; a target with no incoming edge gets zeros. With
        half-precision ``dense`` the sums run in float32 and the result takes
        ``dense``'s dtype.
    """
    fn = _spmm_op if torch.compiler.is_compiling() else _SpMM.apply
    return fn(graph.crow, graph.col, graph.t_crow, graph.t_col, graph.t_perm, values, dense)


def _segment_sum(values: Tensor, crow: Tensor) -> Tensor:
    """Sum of ``values`` ``[H, E]`` over each CSR row, ``[H, M]``."""
    return torch.segment_reduce(values, "sum", offsets=crow.expand(values.size(0), -1), axis=1, unsafe=True)


def _segment_softmax(scores: Tensor, crow: Tensor, row: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    dtype = scores.dtype if dtype is None else dtype
    if scores.size(1) == 0:
        return scores.to(dtype, copy=True)
    work = _work_dtype(torch.promote_types(scores.dtype, dtype))
    if scores.dtype != work or dtype != work:  # maxima, exponentials and normalisers in float32, one head at a time
        return _per_head(
            lambda s1: _segment_softmax(s1, crow, row), torch.empty_like(scores, dtype=dtype), work, scores
        )
    offsets = crow.expand(scores.size(0), -1)
    top = torch.segment_reduce(scores, "max", offsets=offsets, axis=1, unsafe=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    ex = torch.exp(scores - top.index_select(1, row))
    total = _segment_sum(ex, crow)
    return ex / total.clamp(min=torch.finfo(total.dtype).tiny).index_select(1, row)


def _segment_softmax_grad(
    weights: Tensor, grad: Tensor, crow: Tensor, row: Tensor, dtype: torch.dtype | None = None
) -> Tensor:
    """d softmax: a_e (g_e - sum_{e' into the same target} a_e' g_e'), the sums in float32; result in ``dtype``."""
    dtype = weights.dtype if dtype is None else dtype
    work = _work_dtype(torch.promote_types(weights.dtype, grad.dtype))
    if weights.dtype != work or grad.dtype != work or dtype != work:
        return _per_head(
            lambda w1, g1: _segment_softmax_grad(w1, g1, crow, row),
            torch.empty_like(weights, dtype=dtype),
            work,
            weights,
            grad,
        )
    gw = grad * weights
    return gw - weights * _segment_sum(gw, crow).index_select(1, row)


@torch.library.custom_op("graphformer::segment_softmax", mutates_args=())
def _segment_softmax_op(scores: Tensor, crow: Tensor, row: Tensor, dtype: torch.dtype) -> Tensor:
    return _segment_softmax(scores, crow, row, dtype)


@_segment_softmax_op.register_fake
def _(scores, crow, row, dtype):
    return torch.empty_like(scores, dtype=dtype)


def _segment_softmax_setup(ctx, inputs, output):
    scores, crow, row, _ = inputs
    ctx.scores_dtype = scores.dtype
    ctx.save_for_backward(output, crow, row)


def _segment_softmax_backward(ctx, grad):
    weights, crow, row = ctx.saved_tensors
    if weights.size(1) == 0:
        return grad.to(ctx.scores_dtype), None, None, None
    return _segment_softmax_grad(weights, grad.contiguous(), crow, row, ctx.scores_dtype), None, None, None


torch.library.register_autograd(
    "graphformer::segment_softmax", _segment_softmax_backward, setup_context=_segment_softmax_setup
)


class _SegmentSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, crow, row, dtype):
        weights = _segment_softmax(scores, crow, row, dtype)
        ctx.scores_dtype = scores.dtype
        ctx.save_for_backward(weights, crow, row)
        return weights

    @staticmethod
    def backward(ctx, grad):
        return _segment_softmax_backward(ctx, grad)


def segment_sum(values: Tensor, graph) -> Tensor:
    """Sum per-edge ``values`` ``[H, E, ...]`` (CSR order) into their targets, ``[H, M, ...]``.

    Half-precision values are summed in float32, one head at a time.
    """
    work = _work_dtype(values.dtype)
    if values.dtype != work:
        out = values.new_empty(values.size(0), graph.num_dst, *values.shape[2:])
        return _per_head(lambda v1: segment_sum(v1, graph), out, work, values)
    offsets = graph.crow.expand(values.size(0), -1)
    return torch.segment_reduce(values, "sum", offsets=offsets, axis=1, unsafe=True)


def segment_softmax(scores: Tensor, graph, dtype: torch.dtype | None = None) -> Tensor:
    """Softmax of ``scores`` ``[H, E]`` (CSR order) over the incoming edges of each target.

    Scores of ``-inf`` get weight 0; a target whose every score is ``-inf``
    gets all-zero weights (never NaN). The backward pass keeps only the
    ``[H, E]`` weights. Maxima, exponentials and normalisers are computed in
    float32 (or float64) whatever the dtypes; the weights are returned in
    ``dtype`` (default: the scores' dtype), e.g. float32 scores of a
    half-precision layer give half-precision weights.
    """
    fn = _segment_softmax_op if torch.compiler.is_compiling() else _SegmentSoftmax.apply
    return fn(scores.contiguous(), graph.crow, graph.row, scores.dtype if dtype is None else dtype)
