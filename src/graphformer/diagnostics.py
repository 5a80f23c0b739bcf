r"""Rank collapse and oversmoothing, measured layer by layer with one tool.

A deep stack of pure self-attention loses rank doubly exponentially: every
token's vector tends to the same vector (Dong, Cordonnier & Loukas, ICML
2021). A deep GCN oversmooths: the Dirichlet energy of the node features
decays to zero (Rusch, Bronstein & Mishra, 2023). On a complete graph the
two are one quantity:

.. math::
    E(X) = \frac{1}{N} \sum_{i, j} \lVert x_i - x_j \rVert^2
         = 2\, \lVert X - \mathbf{1}\bar x^\top \rVert_F^2,

so the Dirichlet energy of the complete graph is twice the squared
Frobenius residual from the nearest rank-one matrix with equal rows, and
:func:`rank_one_distance` is :math:`\sqrt{E(X) / (2 \lVert X \rVert_F^2)}`.

Measures (each takes ``[N, d]`` and returns a 0-dim tensor, ``[B, N, d]`` and
returns ``[B]``, or ``[N, d]`` with a PyG-style ``batch=`` vector and returns one
value per graph; a zero matrix gives 0, never NaN):

* :func:`dirichlet_energy` — :math:`\frac1N \sum_{(j \to i) \in E} \lVert x_i - x_j \rVert^2`
  (no ``edge_index``: the complete graph, in closed form, ``O(N d)``).
* :func:`rank_one_distance` — :math:`\lVert X - \mathbf 1 \bar x^\top \rVert_F / \lVert X \rVert_F`.
* :func:`numerical_rank` — :math:`\lVert X \rVert_F^2 / \lVert X \rVert_2^2` (stable rank).
* :func:`effective_rank` — :math:`\exp H(p)`, :math:`p_k = \sigma_k / \sum \sigma`
  (Roy & Vetterli, 2007).
* :func:`attention_entropy` — :math:`-\sum_j a_{ij} \log_2 a_{ij}` in bits per target
  node, from an :class:`~graphformer.AttentionWeights` record.

:class:`Recorder` (or :func:`record`) hooks chosen submodules of any model and
collects every measure after each of them in one forward pass.

Legend: B batch, N nodes, E edges, H heads, d features, M targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .attention import AttentionWeights, GraphAttention

__all__ = [
    "MEASURES",
    "LayerRecord",
    "Recorder",
    "attention_entropy",
    "dirichlet_energy",
    "effective_rank",
    "numerical_rank",
    "rank_one_distance",
    "record",
]


def _features(x, name: str = "x") -> Tensor:
    """``x`` as a floating tensor ``[N, d]`` or ``[B, N, d]`` (numpy arrays accepted; 1-D = one feature)."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{name} must be a tensor or array of node features [N, d], got {type(x).__name__}"
            ) from err
    if not x.is_floating_point():
        x = x.double()
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() not in (2, 3):
        raise ValueError(
            f"{name} must be [N, d] (one graph) or [B, N, d] (a batch of graphs with the same "
            f"nodes), got shape {tuple(x.shape)}"
        )
    return x


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """num / den, 0 where den == 0."""
    zero = den == 0
    return torch.where(zero, torch.zeros_like(num), num / torch.where(zero, torch.ones_like(den), den))


def _edges(edge_index) -> Tensor:
    """A ``[2, E]`` long tensor from an edge_index, a SparseGraph or any structure with ``.edge_index``."""
    if not isinstance(edge_index, Tensor) and hasattr(edge_index, "edge_index"):
        edge_index = edge_index.edge_index
    if (
        not isinstance(edge_index, Tensor)
        or edge_index.dim() != 2
        or edge_index.size(0) != 2
        or edge_index.is_floating_point()
    ):
        raise ValueError(
            "edge_index must be an integer tensor [2, E] (row 0 sources j, row 1 targets i), "
            "a SparseGraph, or None for the complete graph"
        )
    return edge_index.long()


def _check_batch(x: Tensor, batch) -> int:
    """Number of graphs of a PyG-style ``batch`` vector (graph id per row of ``x`` ``[N, d]``)."""
    if x.dim() != 2:
        raise ValueError(f"with batch, x must be [N, d] (the nodes of all graphs stacked), got {tuple(x.shape)}")
    if not isinstance(batch, Tensor) or batch.is_floating_point() or batch.dim() != 1 or batch.numel() != x.size(0):
        raise ValueError(f"batch must be an integer tensor [{x.size(0)}] giving each node's graph id")
    if batch.numel() and int(batch.min()) < 0:
        raise ValueError("batch holds a negative graph id")
    return int(batch.max()) + 1 if batch.numel() else 0


def _per_graph(fn, x: Tensor, batch: Tensor) -> Tensor:
    """``fn`` on the rows of each graph id: ``[N, d]`` -> ``[B]`` (a graph id with no node gets 0)."""
    num_graphs = _check_batch(x, batch)
    batch = batch.to(x.device)
    return torch.stack([fn(x[batch == g]) for g in range(num_graphs)]) if num_graphs else x.new_zeros(0)


def dirichlet_energy(x, edge_index=None, *, batch=None) -> Tensor:
    r"""Dirichlet energy :math:`E(X) = \frac{1}{N} \sum_{(j \to i) \in E} \lVert x_i - x_j \rVert_2^2`.

    The measure of oversmoothing of Rusch et al. (2023): it is 0 exactly when
    every edge joins equal vectors, and a deep GCN drives it to 0
    exponentially. Each listed edge counts once (an undirected graph stored
    with both directions counts each pair twice); self-loops add nothing.
    Without ``edge_index`` the graph is complete (every ordered pair), and
    :math:`E = 2 \lVert X - \mathbf 1 \bar x^\top \rVert_F^2` is computed in
    ``O(N d)`` without the N² edges. Nodes with no edge contribute nothing;
    an empty node set gives 0.

    Args:
        x: node features ``[N, d]``, or ``[B, N, d]`` (the same graph for each of B inputs).
        edge_index: ``[2, E]`` edges j -> i (or a SparseGraph / structure), None for the complete graph.
        batch: ``[N]`` graph id of each node (a PyG batch of graphs): one energy per graph, each
            with its own node count (without edges: each graph's complete graph).

    Returns:
        a 0-dim tensor (``[N, d]`` input), or ``[B]`` (batched input or ``batch``).
    """
    x = _features(x)
    if batch is not None:
        if edge_index is None:
            return _per_graph(dirichlet_energy, x, batch)
        num_graphs = _check_batch(x, batch)
        ei = _edges(edge_index).to(x.device)
        batch = batch.to(x.device).long()
        if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= x.size(0)):
            raise ValueError(f"edge_index refers to nodes outside the {x.size(0)} rows of x")
        if ei.numel() and bool((batch[ei[0]] != batch[ei[1]]).any()):
            raise ValueError("an edge joins two graphs of the batch; edges must stay within their graph")
        per_edge = (x[ei[1]] - x[ei[0]]).pow(2).sum(-1)  # [E]
        total = x.new_zeros(num_graphs).index_add_(0, batch[ei[1]], per_edge)
        count = torch.bincount(batch, minlength=num_graphs).to(x.dtype)
        return _safe_div(total, count)
    n = x.size(-2)
    if n == 0:
        return x.new_zeros(x.shape[:-2])
    if edge_index is None:
        centred = x - x.mean(-2, keepdim=True)
        return 2.0 * centred.pow(2).sum((-2, -1))
    ei = _edges(edge_index).to(x.device)
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise ValueError(
            f"edge_index refers to node {int(ei.max()) if int(ei.max()) >= n else int(ei.min())}, but x has {n} nodes"
        )
    diff = x.index_select(-2, ei[1]) - x.index_select(-2, ei[0])  # [.., E, d]
    return diff.pow(2).sum((-2, -1)) / n


def rank_one_distance(x, *, batch=None) -> Tensor:
    r"""Relative distance from the nearest matrix with equal rows.

    .. math:: \lVert X - \mathbf 1 \bar x^\top \rVert_F / \lVert X \rVert_F

    :math:`\bar x` is the mean row, the minimiser of the Frobenius residual
    :math:`\lVert X - \mathbf 1 x^\top \rVert_F` that Dong et al. (2021) show
    pure self-attention drives to zero. Scale-free, in [0, 1]; 0 for a zero matrix.

    Shapes: ``[N, d]`` -> 0-dim, ``[B, N, d]`` -> ``[B]``; ``[N, d]`` with ``batch`` ``[N]`` -> one value per graph.
    """
    x = _features(x)
    if batch is not None:
        return _per_graph(rank_one_distance, x, batch)
    if x.size(-2) == 0:
        return x.new_zeros(x.shape[:-2])
    residual = torch.linalg.vector_norm(x - x.mean(-2, keepdim=True), dim=(-2, -1))
    return _safe_div(residual, torch.linalg.vector_norm(x, dim=(-2, -1)))


def _singular_values(x: Tensor) -> Tensor:
    if x.size(-2) == 0 or x.size(-1) == 0:
        return x.new_zeros(x.shape[:-2] + (0,))
    return torch.linalg.svdvals(x)


def numerical_rank(x, *, batch=None) -> Tensor:
    r"""Numerical (stable) rank :math:`\lVert X \rVert_F^2 / \lVert X \rVert_2^2 = \sum_k \sigma_k^2 / \sigma_1^2`.

    Between 1 (rank one) and ``rank(X)``; insensitive to tiny singular
    values, unlike the rank itself. 0 for a zero matrix.

    Shapes: ``[N, d]`` -> 0-dim, ``[B, N, d]`` -> ``[B]``; ``[N, d]`` with ``batch`` ``[N]`` -> one value per graph.
    """
    if batch is not None:
        return _per_graph(numerical_rank, _features(x), batch)
    s = _singular_values(_features(x))
    if s.size(-1) == 0:
        return s.new_zeros(s.shape[:-1])
    return _safe_div(s.pow(2).sum(-1), s[..., 0].pow(2))


def effective_rank(x, *, batch=None) -> Tensor:
    r"""Effective rank (Roy & Vetterli, 2007).

    .. math:: \exp\big(-\textstyle\sum_k p_k \log p_k\big), \qquad p_k = \sigma_k / \textstyle\sum_l \sigma_l

    The exponential of the Shannon entropy (in nats) of the normalised singular
    values: 1 for a rank-one matrix, ``min(N, d)`` when all singular values are
    equal; :math:`0 \log 0 = 0`. 0 for a zero matrix.

    Shapes: ``[N, d]`` -> 0-dim, ``[B, N, d]`` -> ``[B]``; ``[N, d]`` with ``batch`` ``[N]`` -> one value per graph.
    """
    if batch is not None:
        return _per_graph(effective_rank, _features(x), batch)
    s = _singular_values(_features(x))
    if s.size(-1) == 0:
        return s.new_zeros(s.shape[:-1])
    total = s.sum(-1, keepdim=True)
    p = _safe_div(s, total.expand_as(s))
    plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))
    entropy = -plogp.sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy))


def _plogp_bits(w: Tensor) -> Tensor:
    pos = w > 0
    return torch.where(pos, w * torch.log2(torch.where(pos, w, torch.ones_like(w))), torch.zeros_like(w))


def attention_entropy(attention, edge_index=None, *, num_nodes: int | None = None, reduction: str = "mean") -> Tensor:
    r"""Shannon entropy of each target node's attention, in bits: :math:`H_i = -\sum_{j} a_{ij} \log_2 a_{ij}`.

    ``log2(deg_i)`` for uniform attention over ``deg_i`` sources (a GCN-like
    average, and what a collapsing stack tends to), 0 when a node listens to
    one source. Heads are averaged. The weights of each target are first
    scaled to sum 1, so fixed-weight scores (``"gcn"``) are read as
    distributions too; a target with no incoming weight (an isolated node, a
    padded position) has entropy 0 and is left out of the mean.

    Args:
        attention: an :class:`~graphformer.AttentionWeights` record
            (``return_attention=True``), or its ``weights``: ``[E, H]`` / ``[E]``
            (sparse, with ``edge_index``) or ``[B, H, M, N]`` / ``[H, M, N]`` (dense).
        edge_index: ``[2, E]`` for sparse weights (taken from the record when it has one).
        num_nodes: targets M on the sparse path (default: largest target id + 1).
        reduction: ``"mean"`` (over targets that receive attention) or ``"none"``.

    Returns:
        ``"mean"``: 0-dim (sparse, unbatched dense) or ``[B]`` (batched dense);
        ``"none"``: ``[M]`` or ``[B, M]``.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if isinstance(attention, AttentionWeights):
        weights = attention.weights
        if edge_index is None:
            edge_index = attention.edge_index
    else:
        weights = attention
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        raise TypeError("attention must be an AttentionWeights record or a floating tensor of weights")
    weights = weights.detach()
    if edge_index is not None:  # sparse: one row per edge
        ei = _edges(edge_index).to(weights.device)
        if weights.dim() == 1:
            weights = weights.unsqueeze(-1)
        if weights.dim() != 2 or weights.size(0) != ei.size(1):
            raise ValueError(
                f"sparse attention weights must be [E] or [E, H] with E = {ei.size(1)} edges, "
                f"got {tuple(weights.shape)}"
            )
        m = num_nodes if num_nodes is not None else (int(ei[1].max()) + 1 if ei.numel() else 0)
        target = ei[1]
        total = weights.new_zeros(m, weights.size(1)).index_add_(0, target, weights)  # [M, H]
        p = _safe_div(weights, total.index_select(0, target))
        ent = -weights.new_zeros(m, weights.size(1)).index_add_(0, target, _plogp_bits(p))  # [M, H]
        receives = total > 0
        per_node = _safe_div((ent * receives).sum(-1), receives.sum(-1).to(ent.dtype))  # [M]
        has = receives.any(-1)
    else:
        if weights.dim() not in (3, 4):
            raise ValueError(
                "dense attention weights must be [H, M, N] or [B, H, M, N]; sparse weights [E, H] need their edge_index"
            )
        total = weights.sum(-1, keepdim=True)
        p = _safe_div(weights, total.expand_as(weights))
        ent = -_plogp_bits(p).sum(-1)  # [.., H, M]
        receives = total.squeeze(-1) > 0
        per_node = _safe_div((ent * receives).sum(-2), receives.sum(-2).to(ent.dtype))  # [.., M]
        has = receives.any(-2)
    if reduction == "none":
        return per_node
    return _safe_div((per_node * has).sum(-1), has.sum(-1).to(per_node.dtype))


# ------------------------------------------------------------------ recorder
MEASURES = ("dirichlet_energy", "rank_one_distance", "numerical_rank", "effective_rank")


@dataclass
class LayerRecord:
    """The measures of one hooked call (one layer) of a forward pass.

    ``index`` 0 is the input of the first hooked module (when recorded);
    values are means over the B inputs of a batched ``[B, N, d]`` call.
    With a ``batch=`` vector in the call (many graphs in one PyG batch) they are means over its graphs.
    ``dirichlet_energy_normalized`` is :math:`E(X) / \\lVert X \\rVert_F^2`, scale-free.
    ``attention_entropy`` is None where the layer has no attention.
    """

    index: int
    name: str
    dirichlet_energy: float
    dirichlet_energy_normalized: float
    rank_one_distance: float
    numerical_rank: float
    effective_rank: float
    attention_entropy: float | None = None


def _first_tensor(obj) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (tuple, list)) and obj:
        return _first_tensor(obj[0])
    return None


def _find_record(obj) -> AttentionWeights | None:
    if isinstance(obj, AttentionWeights):
        return obj
    if isinstance(obj, (tuple, list)):
        for item in obj:
            found = _find_record(item)
            if found is not None:
                return found
    return None


def _graph_arg(args, kwargs):
    """The graph a layer was called with: the second positional argument or ``edge_index=``."""
    g = args[1] if len(args) > 1 else kwargs.get("edge_index")
    if g is None or isinstance(g, Tensor) and (g.dim() != 2 or g.size(0) != 2 or g.is_floating_point()):
        return None
    if not isinstance(g, Tensor) and not hasattr(g, "edge_index"):
        return None
    return g


class Recorder:
    r"""Collect the diagnostics after each chosen submodule in one forward pass.

    Forward hooks (``nn.Module.register_forward_hook``) on the chosen modules
    read each output (the first tensor of a tuple), and the input of the first
    one, and compute every measure of :data:`MEASURES` on it, without
    gradients, in float64. The Dirichlet energy uses ``edge_index`` when
    given, else the graph the layer was called with (its second argument or
    ``edge_index=``; a SparseGraph's edges, self-loops adding nothing), else the
    complete graph of the nodes. With ``attention=True`` the attention of each
    hooked :class:`~graphformer.GraphAttention` (or of the first one inside a
    hooked block, e.g. a :class:`~graphformer.GraphformerLayer`'s
    ``self_attn``) is recomputed with ``return_attention=True`` — unless the
    call already returned a record — and its :func:`attention_entropy` stored.

    Example::

        with Recorder(model, modules=GraphformerLayer) as rec:
            model(x)
        rec.curves()["rank_one_distance"]      # one value per layer, input first

    Args:
        model: any ``nn.Module``.
        modules: what to hook: None (every GraphformerLayer / GPSLayer / GAT-sep block in the
            model, or if there is none every GraphAttention), a module class or tuple of classes,
            or a sequence of modules or of names (as in ``model.named_modules()``).
            Hooked modules nested inside other hooked modules are dropped.
        edge_index: the graph for the Dirichlet energy (``[2, E]`` or SparseGraph); see above.
        attention: record attention entropies.
        include_input: record the input of the first hooked call as layer 0.

    After the pass, :attr:`records` holds one :class:`LayerRecord` per hooked call, in call order.
    """

    def __init__(
        self, model: nn.Module, modules=None, *, edge_index=None, attention: bool = True, include_input: bool = True
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model, self.edge_index = model, edge_index
        self.attention, self.include_input = attention, include_input
        self.modules = self._select(model, modules)
        if not self.modules:
            raise ValueError("no module to hook: pass modules= (a class, modules or names from model.named_modules())")
        self.records: list[LayerRecord] = []
        self._handles: list = []
        self._pending_entropy: dict[int, float] = {}
        self._recomputing = False

    # ---------------------------------------------------------- selection
    @staticmethod
    def _select(model: nn.Module, modules) -> list[tuple[str, nn.Module]]:
        named = list(model.named_modules())
        if modules is None:
            from .layers import GraphformerLayer
            from .models.graph import GPSLayer, _SepAttentionBlock

            blocks = (GraphformerLayer, GPSLayer, _SepAttentionBlock)
            chosen = [(n, m) for n, m in named if isinstance(m, blocks)]
            if not chosen:
                chosen = [(n, m) for n, m in named if isinstance(m, GraphAttention)]
        elif isinstance(modules, type) or (
            isinstance(modules, tuple) and modules and all(isinstance(t, type) for t in modules)
        ):
            chosen = [(n, m) for n, m in named if isinstance(m, modules)]
        elif isinstance(modules, nn.Module):
            chosen = [(n, m) for n, m in named if m is modules]
        elif isinstance(modules, Iterable):
            by_name, chosen = dict(named), []
            for item in modules:
                if isinstance(item, str):
                    if item not in by_name:
                        raise ValueError(
                            f"model has no submodule named {item!r}; names are those of model.named_modules()"
                        )
                    chosen.append((item, by_name[item]))
                elif isinstance(item, nn.Module):
                    match = [n for n, m in named if m is item]
                    if not match:
                        raise ValueError(f"{type(item).__name__} is not a submodule of the model")
                    chosen.append((match[0], item))
                else:
                    raise TypeError(f"modules must hold submodules or their names, got {type(item).__name__}")
        else:
            raise TypeError(
                "modules must be None, a module class (or tuple of classes), or a sequence of "
                f"submodules or names, got {type(modules).__name__}"
            )
        # drop modules nested inside another chosen module (their calls are part of the outer layer)
        names = [n for n, _ in chosen]
        return [(n, m) for n, m in chosen if not any(o != n and (o == "" or n.startswith(o + ".")) for o in names)]

    # -------------------------------------------------------------- hooks
    def __enter__(self) -> Recorder:
        self.records.clear()
        for name, module in self.modules:
            if self.attention:  # registered first: on a hooked GraphAttention it must run before the layer hook
                attn = (
                    module
                    if isinstance(module, GraphAttention)
                    else next((m for m in module.modules() if isinstance(m, GraphAttention)), None)
                )
                if attn is not None:
                    self._handles.append(attn.register_forward_hook(self._attention_hook(module), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._hook(name), with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks (done on leaving the ``with`` block)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._pending_entropy.clear()

    def _attention_hook(self, owner: nn.Module):
        def hook(module, args, kwargs, output):
            if self._recomputing:
                return None
            att = _find_record(output)
            if att is None:
                self._recomputing = True
                try:
                    with torch.no_grad():
                        _, att = module(*args, **{**kwargs, "return_attention": True})
                finally:
                    self._recomputing = False
            if att is not None:
                self._pending_entropy[id(owner)] = self._entropy(att, args, kwargs)
            return None

        return hook

    @staticmethod
    def _entropy(att: AttentionWeights, args, kwargs) -> float | None:
        if att.weights is None:
            return None
        if att.edge_index is None and att.weights.dim() < 3:
            return None
        x = args[0] if args else kwargs.get("x")
        target = x[1] if isinstance(x, (tuple, list)) else x
        num = target.size(0) if att.edge_index is not None and isinstance(target, Tensor) else None
        return float(attention_entropy(att, num_nodes=num).double().mean())

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            if self._recomputing:
                return None
            out = _first_tensor(output)
            if out is None:
                return None
            graph = self.edge_index if self.edge_index is not None else _graph_arg(args, kwargs)
            batch = kwargs.get("batch")
            if not isinstance(batch, Tensor) or batch.dim() != 1 or out.dim() != 2 or batch.numel() != out.size(0):
                batch = None  # a pair of batch vectors (bipartite) or none: the call's rows as one matrix
            if self.include_input and not self.records:
                inp = _first_tensor(args[0] if args else kwargs.get("x"))
                if isinstance(inp, Tensor) and inp.shape[:-1] == out.shape[:-1]:
                    self.records.append(self._measure(0, "input", inp, graph, None, batch))
            entropy = self._pending_entropy.pop(id(module), None)
            index = sum(r.name != "input" or r.index != 0 for r in self.records) + 1
            self.records.append(self._measure(index, name, out, graph, entropy, batch))
            return None

        return hook

    @staticmethod
    def _measure(
        index: int, name: str, x: Tensor, graph, entropy: float | None, batch: Tensor | None = None
    ) -> LayerRecord:
        with torch.no_grad():
            x = x.detach().double()
            if batch is not None and x.size(0) != batch.numel():
                batch = None
            energy = dirichlet_energy(x, graph, batch=batch)
            norm2 = (
                x.pow(2).sum((-2, -1))
                if batch is None
                else x.new_zeros(energy.numel()).index_add_(0, batch.to(x.device).long(), x.pow(2).sum(-1))
            )
            values = {
                "dirichlet_energy": energy,
                "dirichlet_energy_normalized": _safe_div(energy, norm2),
                "rank_one_distance": rank_one_distance(x, batch=batch),
                "numerical_rank": numerical_rank(x, batch=batch),
                "effective_rank": effective_rank(x, batch=batch),
            }
        return LayerRecord(index, name, **{k: float(v.mean()) for k, v in values.items()}, attention_entropy=entropy)

    # ------------------------------------------------------------ results
    def curves(self) -> dict[str, list[float | None]]:
        """Each measure as a list over the records (layer 0 = input first)."""
        fields = [f for f in asdict(self.records[0]) if f not in ("index", "name")] if self.records else []
        return {f: [getattr(r, f) for r in self.records] for f in fields}

    def table(self, digits: int = 4) -> str:
        """The records as an aligned text table, one row per layer."""
        head = ["layer", "module", "energy", "energy/|X|^2", "rank1 dist", "num. rank", "eff. rank", "entropy"]
        rows = [
            [
                str(r.index),
                r.name or "(model)",
                *(
                    _fmt(v, digits)
                    for v in (
                        r.dirichlet_energy,
                        r.dirichlet_energy_normalized,
                        r.rank_one_distance,
                        r.numerical_rank,
                        r.effective_rank,
                        r.attention_entropy,
                    )
                ),
            ]
            for r in self.records
        ]
        widths = [max(len(h), *(len(row[k]) for row in rows)) if rows else len(h) for k, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(line.rstrip() for line in lines)


def _fmt(v: float | None, digits: int) -> str:
    if v is None:
        return "-"
    if v != 0 and (abs(v) < 10**-digits or abs(v) >= 1e6) and math.isfinite(v):
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}f}"


def record(model: nn.Module, modules=None, **kwargs) -> Recorder:
    """A :class:`Recorder` to use as a context manager: ``with record(model) as rec: model(x)``."""
    return Recorder(model, modules, **kwargs)
