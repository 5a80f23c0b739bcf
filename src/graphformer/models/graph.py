"""Graph models as settings of one layer: GCN, GAT, a graph transformer and GPS.

Each model is a thin composition of :class:`~graphformer.GraphAttention` /
:class:`~graphformer.GraphformerLayer`: which graph (the given edges, or the
complete graph of each input graph), which score (``"gcn"``, ``"additive"``,
``"dot"``) and which encodings (Laplacian or random-walk node features, a
shortest-path bias on the complete graph).

The edges are laid out once per forward pass (one :class:`~graphformer.SparseGraph`
shared by every layer, self-loops added once); for full-batch training on a
fixed graph, build it once with ``model.prepare(edge_index, num_nodes)`` and
pass the result in place of ``edge_index``.

Every model has one call, ``model(x, edge_index=None, *, batch=None, pe=None,
distance=None)`` (plus its own extras: GCN's ``edge_weight``, GAT's
``return_attention``), and one set of input options: ``pe_dim`` (a structural
encoding ``pe`` read with the features) and ``graph_level`` (mean-pool each
graph of ``batch``). An argument a model cannot use raises instead of being
dropped: ``pe`` without ``pe_dim``, ``distance`` without ``max_distance``.

Legend: N nodes (all graphs of a batch together), E edges, B graphs in a batch,
N_max nodes of the largest graph, H heads, C channels per head, F input
features, D hidden width, K outputs (classes), k encoding width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import GraphAttention
from ..encodings import ShortestPathBias, random_sign_flip
from ..layers import FeedForward, GraphformerLayer, LocalGlobalLayer
from ..structure import DenseBatch, SparseGraph, add_self_loops, check_edge_index

__all__ = [
    "GAT",
    "GATRes",
    "GATSep",
    "GCN",
    "GCNRes",
    "GPS",
    "GPSLayer",
    "GRAPH_MODELS",
    "GTRes",
    "GTSep",
    "GraphTransformer",
    "HETEROPHILY_RECIPE",
    "ResidualGraphModel",
    "build_graph_model",
    "mean_pool",
]


def mean_pool(x: Tensor, batch: Tensor | DenseBatch | None, num_graphs: int | None = None) -> Tensor:
    """Average node features per graph: ``[N, D]`` -> ``[B, D]`` (``[1, D]`` without ``batch``).

    A graph id with no node gets zeros. With a :class:`~graphformer.structure.DenseBatch`
    (or ``num_graphs``) nothing is read back from the device.
    """
    if batch is None:
        return x.mean(0, keepdim=True)
    if isinstance(batch, DenseBatch):
        batch, num_graphs = batch.batch, batch.num_graphs
    num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
    total = x.new_zeros(num_graphs, x.size(-1)).index_add_(0, batch, x)
    count = x.new_zeros(num_graphs).index_add_(0, batch, x.new_ones(batch.numel())).clamp(min=1)
    return total / count.unsqueeze(-1)


def _dense_layout(batch: Tensor | DenseBatch | None) -> DenseBatch | None:
    """The padded layout of the graphs in ``batch``: built here (one read) unless prepared by the caller."""
    return batch if batch is None or isinstance(batch, DenseBatch) else DenseBatch.from_batch(batch)


def _layout(
    edge_index: Tensor | SparseGraph, num_nodes: int, self_loops: str | None, edge_attr: Tensor | None = None
) -> tuple[SparseGraph, Tensor | None]:
    """One SparseGraph (self-loops added once) for every layer of a forward pass.

    A SparseGraph given by the caller is taken as it is (its self-loops already in place).
    """
    if isinstance(edge_index, SparseGraph):
        if edge_index.num_src != num_nodes:
            raise ValueError(
                f"the SparseGraph was built for {edge_index.num_src} nodes but x has {num_nodes} rows; "
                "build it with model.prepare(edge_index, num_nodes=x.size(0))"
            )
        return edge_index, edge_attr
    if self_loops is None:
        return SparseGraph.from_edge_index(edge_index, num_nodes), edge_attr  # one read: range and order together
    check_edge_index(edge_index, num_nodes, num_nodes)
    edge_index, edge_attr = add_self_loops(edge_index, num_nodes, edge_attr, mode=self_loops)
    return SparseGraph.from_edge_index(edge_index, num_nodes, check=False, sort=True), edge_attr  # loops appended


def _check_x(x: Tensor, in_channels: int) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor of node features [N, F]")
    if x.dim() != 2 or x.size(1) != in_channels:
        raise ValueError(f"x must have shape [N, {in_channels}] (in_channels), got {tuple(x.shape)}")


def _check_pe(x: Tensor, pe: Tensor | None, pe_dim: int, name: str) -> None:
    if pe_dim == 0:
        if pe is not None:
            raise ValueError(f"pe was given but the {name} was built with pe_dim=0; pass pe_dim=pe.size(1)")
        return
    if pe is None or pe.dim() != 2 or pe.shape != (x.size(0), pe_dim):
        raise ValueError(
            f"the {name} was built with pe_dim={pe_dim}: pass pe of shape "
            f"[{x.size(0)}, {pe_dim}], got {None if pe is None else tuple(pe.shape)}"
        )


def _node_input(x: Tensor, pe: Tensor | None, in_channels: int, pe_dim: int, name: str) -> Tensor:
    """``[x, pe]`` (the encoding read as extra features) for the message-passing models."""
    _check_x(x, in_channels)
    _check_pe(x, pe, pe_dim, name)
    return x if pe is None else torch.cat([x, pe], dim=-1)


def _edges_needed(edge_index, name: str):
    if edge_index is None:
        raise ValueError(f"the {name} passes messages along edges: pass edge_index [2, E] (or a prepared SparseGraph)")
    return edge_index


def _no_distance(distance: Tensor | None, name: str) -> None:
    if distance is not None:
        raise ValueError(
            f"the {name} has no shortest-path bias, so distance must be None; the bias is "
            "GraphTransformer(attention='complete', max_distance=...) or GPS(max_distance=...)"
        )


def _readout(h: Tensor, batch: Tensor | DenseBatch | None, graph_level: bool) -> Tensor:
    """Node outputs, or their mean per graph of ``batch`` with ``graph_level``."""
    return mean_pool(h, batch) if graph_level else h


class GCN(nn.Module):
    r"""Graph convolutional network (Kipf & Welling, ICLR 2017).

    .. math::
        H^{(l+1)} = \sigma\big(\hat A\, \mathrm{drop}(H^{(l)})\, W^{(l)} + b^{(l)}\big), \qquad
        \hat A = D^{-1/2} (A + I) D^{-1/2}

    with ReLU between layers and none after the last. Every layer is
    ``GraphAttention(d_in, 1, score="gcn", head_dim=d_out, out_proj=False,
    self_loops="remaining")``, i.e. exactly PyG's ``GCNConv``: a message
    passing layer whose weights are fixed by the degrees instead of learned.
    On the complete graph (with self-loops) every weight is 1/N, so one layer
    replaces each node by the mean of all nodes: attention with all scores equal.

    Args:
        in_channels: input features F.
        hidden_channels: hidden width (16 in the paper).
        out_channels: outputs K.
        num_layers: number of graph convolutions (2 in the paper).
        dropout: dropout on the input of every layer (0.5 in the paper).
        pe_dim: width k of a node encoding ``pe`` concatenated to ``x`` (0: none).
        graph_level: mean-pool the nodes of each graph of ``batch`` at the end.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]`` (or a SparseGraph from :meth:`prepare`),
        edge_weight ``[E]``, batch ``[N]``, pe ``[N, k]`` -> ``[N, K]`` or ``[B, K]``.
    """

    self_loops = "remaining"

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 16,
        out_channels: int = 2,
        num_layers: int = 2,
        dropout: float = 0.5,
        *,
        pe_dim: int = 0,
        graph_level: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_channels, self.dropout = in_channels, dropout
        self.pe_dim, self.graph_level = pe_dim, graph_level
        widths = [in_channels + pe_dim] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList(
            [
                GraphAttention(d_in, 1, score="gcn", head_dim=d_out, out_proj=False, self_loops=self.self_loops)
                for d_in, d_out in zip(widths[:-1], widths[1:])
            ]
        )

    def prepare(self, edge_index: Tensor, num_nodes: int) -> SparseGraph:
        """Add self-loops and lay the edges out once, for reuse across forward passes."""
        return _layout(edge_index, num_nodes, self.self_loops)[0]

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph | None = None,
        edge_weight: Tensor | None = None,
        *,
        batch: Tensor | None = None,
        pe: Tensor | None = None,
        distance: Tensor | None = None,
    ) -> Tensor:
        """Class scores of every node, or of every graph with ``graph_level`` (see the class docstring).

        With a prepared SparseGraph, ``edge_weight`` must follow its edges (self-loops included).
        """
        x = _node_input(x, pe, self.in_channels, self.pe_dim, "GCN")
        _no_distance(distance, "GCN")
        graph, weight = _layout(_edges_needed(edge_index, "GCN"), x.size(0), self.self_loops, edge_weight)
        for i, conv in enumerate(self.convs):
            x = F.dropout(x, self.dropout, self.training)
            x = conv(x, graph, edge_attr=weight)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return _readout(x, batch, self.graph_level)


class GAT(nn.Module):
    r"""Graph attention network (Veličković et al., ICLR 2018).

    .. math::
        \alpha_{ij} = \mathrm{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}
            \big(\mathrm{LeakyReLU}(a_{dst}^\top W h_i + a_{src}^\top W h_j)\big), \qquad
        h_i' = \big\Vert_{h=1}^{H} \mathrm{ELU}\Big(\sum_j \alpha^h_{ij} W^h h_j\Big)

    The last layer averages its heads and has no activation. Every layer is
    ``GraphAttention(d_in, H, score="additive", head_dim=C, out_proj=False,
    self_loops="add", dropout=p)`` (PyG's ``GATConv``), with dropout ``p`` on
    the layer input and on the attention weights. On the complete graph it is
    self-attention with GAT's additive score in place of the dot product.

    Args:
        in_channels: input features F.
        hidden_channels: channels per head in the hidden layers (8 in the paper).
        out_channels: outputs K.
        heads: heads of the hidden layers (8).
        out_heads: heads of the last layer, averaged (1 for Cora and CiteSeer, 8 for PubMed).
        num_layers: number of attention layers (2).
        dropout: dropout on inputs and attention weights (0.6).
        pe_dim: width k of a node encoding ``pe`` concatenated to ``x`` (0: none).
        graph_level: mean-pool the nodes of each graph of ``batch`` at the end.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]`` (or a SparseGraph from :meth:`prepare`), batch ``[N]``,
        pe ``[N, k]`` -> ``[N, K]`` or ``[B, K]``.
    """

    self_loops = "add"

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 8,
        out_channels: int = 2,
        heads: int = 8,
        out_heads: int = 1,
        num_layers: int = 2,
        dropout: float = 0.6,
        *,
        pe_dim: int = 0,
        graph_level: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_channels, self.dropout = in_channels, dropout
        self.pe_dim, self.graph_level = pe_dim, graph_level
        self.convs = nn.ModuleList()
        d_in = in_channels + pe_dim
        for _ in range(num_layers - 1):
            self.convs.append(
                GraphAttention(
                    d_in,
                    heads,
                    score="additive",
                    head_dim=hidden_channels,
                    dropout=dropout,
                    out_proj=False,
                    self_loops=self.self_loops,
                )
            )
            d_in = heads * hidden_channels
        self.convs.append(
            GraphAttention(
                d_in,
                out_heads,
                score="additive",
                head_dim=out_channels,
                dropout=dropout,
                concat=False,
                out_proj=False,
                self_loops=self.self_loops,
            )
        )

    def prepare(self, edge_index: Tensor, num_nodes: int) -> SparseGraph:
        """Replace self-loops by one per node and lay the edges out once."""
        return _layout(edge_index, num_nodes, self.self_loops)[0]

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph | None = None,
        return_attention: bool = False,
        *,
        batch: Tensor | None = None,
        pe: Tensor | None = None,
        distance: Tensor | None = None,
    ):
        """Class scores of every node (every graph with ``graph_level``); with ``return_attention``
        also one :class:`~graphformer.AttentionWeights` record per layer."""
        x = _node_input(x, pe, self.in_channels, self.pe_dim, "GAT")
        _no_distance(distance, "GAT")
        graph, _ = _layout(_edges_needed(edge_index, "GAT"), x.size(0), self.self_loops)
        records = []
        for i, conv in enumerate(self.convs):
            x = F.dropout(x, self.dropout, self.training)
            x = conv(x, graph, return_attention=return_attention)
            if return_attention:
                x, att = x
                records.append(att)
            if i < len(self.convs) - 1:
                x = F.elu(x)
        x = _readout(x, batch, self.graph_level)
        return (x, records) if return_attention else x


class _Encoder(nn.Module):
    """Input map shared by the transformer models: ``h = W_in drop(x) + W_pe p``."""

    def __init__(self, in_channels: int, hidden: int, pe_dim: int, dropout: float, sign_flip: bool):
        super().__init__()
        self.in_channels, self.pe_dim, self.sign_flip = in_channels, pe_dim, sign_flip
        self.dropout = dropout
        self.lin = nn.Linear(in_channels, hidden)
        self.pe_lin = nn.Linear(pe_dim, hidden) if pe_dim else None

    def forward(self, x: Tensor, pe: Tensor | None) -> Tensor:
        _check_x(x, self.in_channels)
        h = self.lin(F.dropout(x, self.dropout, self.training))
        _check_pe(x, pe, self.pe_dim, "model")
        if self.pe_lin is None:
            return h
        if self.sign_flip and self.training:
            pe = random_sign_flip(pe)  # Laplacian eigenvectors are defined up to sign
        return h + self.pe_lin(pe)


class GraphTransformer(nn.Module):
    r"""Graph transformer: Transformer layers with dot-product attention on a graph.

    .. math::
        h^{(0)}_i = W_{in} x_i + W_{pe} p_i, \qquad
        h^{(l+1)} = \mathrm{GraphformerLayer}(h^{(l)}), \qquad
        y = W_{out}\, h^{(L)}_i \ \text{(nodes)} \ \text{or}\ W_{out} \tfrac{1}{|G|}\textstyle\sum_{i \in G} h^{(L)}_i
        \ \text{(graphs)}

    where the attention of each layer runs

    * ``attention="edges"``: over the given edges plus a self-loop per node
      (Dwivedi & Bresson 2021), sparse path, ``O(E)``;
    * ``attention="complete"``: over the complete graph of each input graph
      (Graphormer-style), dense path with padding masks, with an optional
      learned shortest-path bias :math:`s_{ij} \mathrel{+}= b_h(\mathrm{spd}(i, j))`
      (Ying et al. 2021).

    ``p`` is a structural node encoding computed beforehand
    (:func:`graphformer.encodings.laplacian_pe` or ``random_walk_pe``). With
    constant node features and no encoding, softmax attention can only average
    identical vectors: the encodings are what let the model see structure.
    On a complete graph without encodings or bias this is a plain Transformer
    encoder (``nn.TransformerEncoder``) over the nodes.

    Args:
        in_channels: input features F.
        hidden_channels: model width D.
        out_channels: outputs K.
        num_layers: Transformer layers.
        num_heads: heads H (must divide D).
        dropout: dropout on the input features, attention weights and residual branches.
        pe_dim: width k of the node encoding given as ``pe`` (0: none).
        sign_flip: flip the encoding's columns at random in training (for Laplacian eigenvectors).
        attention: ``"edges"`` or ``"complete"``.
        max_distance: with ``attention="complete"``, learn a bias per head for
            shortest-path distances 0..max_distance, plus one for unreachable pairs
            (:class:`~graphformer.encodings.ShortestPathBias`); None: no bias.
        graph_level: mean-pool the nodes of each graph before the output layer.
        dim_feedforward: width of the feed-forward part (default 2 D).
        norm_first: pre-norm layers (default) or post-norm.
        attn_dropout: dropout on the attention weights, if different from ``dropout``
            (on the complete graph, any attention dropout leaves the fused CPU kernels
            for an explicit ``[B, H, N, N]`` path, several times slower).

    Prepared inputs: ``model.prepare(edge_index, num_nodes)`` (a
    :class:`~graphformer.SparseGraph`) in place of ``edge_index`` and
    ``DenseBatch.from_batch(batch)`` (:mod:`graphformer.structure`) in place of
    ``batch`` lay the graph out once; a step then reads nothing back from the
    device (the distances of the bias are checked once per distances tensor).

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]``, batch ``[N]`` (graph id of each node),
        pe ``[N, k]``, distance ``[B, N_max, N_max]`` hops clipped to ``max_distance``
        (``max_distance + 1`` = unreachable; :func:`~graphformer.encodings.shortest_path_distances`
        with ``batch``), ``[N, N]`` without ``batch`` -> ``[N, K]`` (nodes) or ``[B, K]`` (graphs).
    """

    self_loops = "add"

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 64,
        out_channels: int = 2,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        *,
        pe_dim: int = 0,
        sign_flip: bool = False,
        attention: str = "edges",
        max_distance: int | None = None,
        graph_level: bool = False,
        dim_feedforward: int | None = None,
        norm_first: bool = True,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        if attention not in ("edges", "complete"):
            raise ValueError(f"attention must be 'edges' or 'complete', got {attention!r}")
        if max_distance is not None and attention != "complete":
            raise ValueError("a shortest-path bias needs attention='complete' (on the edges every distance is 1)")
        if max_distance is not None and max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, got {max_distance}")
        self.attention, self.max_distance, self.graph_level = attention, max_distance, graph_level
        self.encoder = _Encoder(in_channels, hidden_channels, pe_dim, dropout, sign_flip)
        self.layers = nn.ModuleList(
            [
                GraphformerLayer(
                    hidden_channels,
                    num_heads,
                    dim_feedforward or 2 * hidden_channels,
                    dropout,
                    norm_first=norm_first,
                    score="dot",
                    attn_dropout=attn_dropout,
                )
                for _ in range(num_layers)
            ]
        )
        # one bias table shared by the layers, as Graphormer does
        self.distance_bias = ShortestPathBias(num_heads, max_distance) if max_distance is not None else None
        self.norm = nn.LayerNorm(hidden_channels) if norm_first else None
        self.head = nn.Linear(hidden_channels, out_channels)

    def prepare(self, edge_index: Tensor, num_nodes: int) -> SparseGraph:
        """Add one self-loop per node and lay the edges out once."""
        return _layout(edge_index, num_nodes, self.self_loops)[0]

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph | None = None,
        *,
        batch: Tensor | None = None,
        pe: Tensor | None = None,
        distance: Tensor | None = None,
    ) -> Tensor:
        """Node or graph outputs (see the class docstring for shapes)."""
        h = self.encoder(x, pe)
        if self.distance_bias is None:
            _no_distance(distance, "GraphTransformer built without max_distance")
        kwargs = {}
        layout = None
        if self.attention == "edges":
            if edge_index is None:
                raise ValueError("attention='edges' needs edge_index")
            graph = _layout(edge_index, x.size(0), self.self_loops)[0]
        else:
            graph = None
            layout = _dense_layout(batch)
            if layout is not None:  # every graph's complete graph on the dense path, packed once for all layers
                h = layout.pack(h)  # [B, N_max, D]
                kwargs["key_padding_mask"] = layout.pad
            if self.distance_bias is not None:
                if distance is None:
                    raise ValueError(
                        "the model was built with max_distance: pass distance [B, N_max, N_max] "
                        "(e.g. from graphformer.data.graphs.collate)"
                    )
                kwargs["attn_bias"] = self.distance_bias(distance)
        for layer in self.layers:
            h = layer(h, graph, **kwargs)
        if layout is not None:
            h = layout.unpack(h)  # [N, D]
        if self.norm is not None:
            h = self.norm(h)
        return self.head(_readout(h, batch if layout is None else layout, self.graph_level))


class GPSLayer(LocalGlobalLayer):
    r"""One GPS layer (Rampášek et al., NeurIPS 2022): local message passing plus global attention.

    :class:`~graphformer.layers.LocalGlobalLayer` with ``norm="branch"``:

    .. math::
        h^L = \mathrm{LN}\big(x + \mathrm{drop}(\mathrm{Local}(x, A))\big), \quad
        h^G = \mathrm{LN}\big(x + \mathrm{drop}(\mathrm{Global}(x))\big), \quad
        y = \mathrm{LN}\big(h + \mathrm{drop}(\mathrm{FF}(h))\big),\ h = h^L + h^G

    ``Local`` is a :class:`~graphformer.GraphAttention` on the given edges
    (sparse path; ``local_score`` ``"dot"``, ``"additive"``, ``"gcn"``, ...),
    ``Global`` the same layer on the complete graph of each input graph
    (dense path, one padded block per graph id in ``batch``). On a complete
    graph both parts attend over the same edges, and the layer is a Transformer
    layer whose attention is the sum of two attention modules.

    Args:
        d_model: width D.
        num_heads: heads of both attention parts.
        dim_feedforward: width of the feed-forward part (default 2 D).
        dropout: dropout on the residual branches and inside the feed-forward part.
        local_score: score of the local part.
        activation: of the feed-forward part.
        attn_dropout: dropout on the attention weights (default ``dropout``).

    Shapes:
        x ``[N, D]``, edge_index ``[2, E]`` or SparseGraph, batch ``[N]`` -> ``[N, D]``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int = 4,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        local_score: str = "dot",
        activation: str = "relu",
        attn_dropout: float | None = None,
    ):
        super().__init__(
            d_model, num_heads, dim_feedforward, dropout, local_score, activation, attn_dropout, norm="branch"
        )

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph,
        batch: Tensor | DenseBatch | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Apply the layer; ``attn_bias`` ``[B, H, N_max, N_max]`` goes to the global part.

        ``batch`` may be a prepared :class:`~graphformer.structure.DenseBatch` (no device read).
        """
        return super().forward(x, edge_index, batch=batch, attn_bias=attn_bias)


class GPS(nn.Module):
    r"""GPS graph transformer: :class:`GPSLayer` blocks between an input encoder and an output layer.

    .. math::
        h^{(0)}_i = W_{in} x_i + W_{pe} p_i, \qquad h^{(l+1)} = \mathrm{GPSLayer}(h^{(l)}, A), \qquad
        y = W_{out} h^{(L)}_i \ \text{or}\ W_{out} \mathrm{meanpool}_G(h^{(L)})

    The local part runs on the given edges plus a self-loop per node; the
    global part on the complete graph of each graph in ``batch`` (the whole
    node set when ``batch`` is None). On a complete input graph local and
    global attention coincide in structure and GPS is a Transformer encoder
    with doubled attention.

    Args: as :class:`GraphTransformer` (without ``attention`` and ``norm_first``), plus
    ``local_score`` (score of the local part).

    Prepared inputs (``model.prepare(edge_index, num_nodes)``,
    ``DenseBatch.from_batch(batch)``) work as in :class:`GraphTransformer`.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]``, batch ``[N]``, pe ``[N, k]``,
        distance ``[B, N_max, N_max]`` -> ``[N, K]`` or ``[B, K]``.
    """

    self_loops = "add"

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 64,
        out_channels: int = 2,
        num_layers: int = 2,
        num_heads: int = 4,
        dropout: float = 0.1,
        *,
        pe_dim: int = 0,
        sign_flip: bool = False,
        local_score: str = "dot",
        max_distance: int | None = None,
        graph_level: bool = False,
        dim_feedforward: int | None = None,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        if max_distance is not None and max_distance < 1:
            raise ValueError(f"max_distance must be >= 1, got {max_distance}")
        self.max_distance, self.graph_level = max_distance, graph_level
        self.encoder = _Encoder(in_channels, hidden_channels, pe_dim, dropout, sign_flip)
        self.layers = nn.ModuleList(
            [
                GPSLayer(hidden_channels, num_heads, dim_feedforward, dropout, local_score, attn_dropout=attn_dropout)
                for _ in range(num_layers)
            ]
        )
        self.distance_bias = ShortestPathBias(num_heads, max_distance) if max_distance is not None else None
        self.head = nn.Linear(hidden_channels, out_channels)

    def prepare(self, edge_index: Tensor, num_nodes: int) -> SparseGraph:
        """Add one self-loop per node and lay the edges out once."""
        return _layout(edge_index, num_nodes, self.self_loops)[0]

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph | None = None,
        *,
        batch: Tensor | None = None,
        pe: Tensor | None = None,
        distance: Tensor | None = None,
    ) -> Tensor:
        """Node or graph outputs (see the class docstring for shapes)."""
        h = self.encoder(x, pe)
        graph = _layout(_edges_needed(edge_index, "GPS"), x.size(0), self.self_loops)[0]
        batch = _dense_layout(batch)  # laid out once for every layer
        if self.distance_bias is None:
            _no_distance(distance, "GPS built without max_distance")
        bias = None
        if self.distance_bias is not None:
            if distance is None:
                raise ValueError("the model was built with max_distance: pass distance [B, N_max, N_max]")
            bias = self.distance_bias(distance)
        for layer in self.layers:
            h = layer(h, graph, batch=batch, attn_bias=bias)
        return self.head(_readout(h, batch, self.graph_level))


# ------------------------------------------------------- heterophilous graphs
#: The recipe of Platonov et al. (ICLR 2023), ``train.py`` of yandex-research/heterophilous-graphs:
#: residual + LayerNorm around every block, GELU, hidden 512, 8 heads, dropout 0.2, Adam (AdamW with weight
#: decay 0) at a constant lr 3e-5, 1000 full-batch steps, 1 to 5 layers chosen on validation, ten fixed splits.
HETEROPHILY_RECIPE = {
    "hidden": 512,
    "heads": 8,
    "dropout": 0.2,
    "lr": 3e-5,
    "weight_decay": 0.0,
    "steps": 1000,
    "layers": (1, 2, 3, 4, 5),
    "feedforward_multiplier": 1.0,
    "normalization": "layernorm",
}


class _SepAttentionBlock(nn.Module):
    r"""A GAT(-sep) or GCN block of Platonov et al.: :math:`y = x + \mathrm{drop}(\mathrm{FF}(A(\mathrm{LN}(x))))`.

    ``A`` is the attention (GAT) or the fixed-weight aggregation (GCN).

    ``GAT`` is ``GraphAttention(D, H, score="additive", out_proj=False)``;
    with ``sep`` it has ``root_weight=True`` and no self-loops, so it returns
    :math:`W_r h_i + \Vert_h \sum_{j \in \mathcal N(i)} \alpha^h_{ij} W^h h_j + b`: the node
    and its neighbours through separate weights (the paper concatenates the two
    and applies the feed-forward part's first linear map, the same family of functions).
    With ``score="gcn"`` the weights are GCN's fixed :math:`1/\sqrt{d_i d_j}` (one head).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float,
        sep: bool,
        residual: bool,
        norm: bool,
        feedforward_multiplier: float,
        score: str = "additive",
    ):
        super().__init__()
        if score == "gcn":  # fixed weights: every head would be the same, so one head of width D
            num_heads = 1
        if d_model % num_heads:
            raise ValueError(f"hidden_channels={d_model} must be divisible by num_heads={num_heads}")
        self.residual = residual
        self.norm = nn.LayerNorm(d_model) if norm else nn.Identity()
        self.attn = GraphAttention(
            d_model,
            num_heads,
            score=score,
            head_dim=d_model // num_heads,
            out_proj=False,
            root_weight=sep,
            self_loops=None,
        )
        self.feedforward = FeedForward(d_model, max(1, int(d_model * feedforward_multiplier)), dropout, "gelu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, graph: SparseGraph) -> Tensor:
        out = self.dropout(self.feedforward(self.attn(self.norm(x), graph)))
        return x + out if self.residual else out


class ResidualGraphModel(nn.Module):
    r"""The residual graph networks of Platonov et al. (ICLR 2023) for heterophilous graphs.

    .. math::
        h^{(0)} = \mathrm{GELU}(\mathrm{drop}(W_{in} x)), \qquad
        h^{(l+1)} = h^{(l)} + \mathrm{Block}(\mathrm{LN}(h^{(l)}), A), \qquad
        y = W_{out}\, \mathrm{LN}(h^{(L)})

    Base class of :class:`GATSep`, :class:`GTSep` and the paper's plain rows
    :class:`GCNRes`, :class:`GATRes`, :class:`GTRes`; ``block`` picks the
    layer: ``"gat"`` (additive score, then a GELU feed-forward part, in one
    residual block), ``"gcn"`` (the same block with GCN's fixed degree
    weights, one head) or ``"transformer"`` (a pre-norm
    :class:`~graphformer.GraphformerLayer` with the dot score: attention and
    feed-forward parts, each in its own residual block, no dropout on the
    attention weights). With ``sep`` ("-sep" models) the attention runs over
    the neighbours only (no self-loops) and the node's own features enter
    through a separate linear map (``root_weight=True`` on the layer);
    without it a self-loop per node is added and there is no root map (the
    paper's GAT and GT rows).

    Args:
        in_channels: input features F.
        hidden_channels: width D (512 in the paper).
        out_channels: outputs K (1 logit for a binary ROC-AUC task, or the classes).
        num_layers: blocks L (1 to 5 in the paper, chosen on validation).
        num_heads: heads H (8); must divide D.
        dropout: after the input map, inside and after the feed-forward part and after the attention
            output (0.2).
        sep: separate self and neighbour weights (no self-loops); default: the class's
            ``sep_default`` (True for the -sep models, False for the -res ones).
        residual: residual connections around the blocks.
        norm: LayerNorm at the input of each block and before the output map.
        feedforward_multiplier: feed-forward width as a multiple of D (1).
        pe_dim: width k of a node encoding ``pe`` concatenated to ``x`` (0: none).
        graph_level: mean-pool the nodes of each graph of ``batch`` before the output map.

    Shapes:
        x ``[N, F]``, edge_index ``[2, E]`` (or a SparseGraph from :meth:`prepare`), batch ``[N]``,
        pe ``[N, k]`` -> ``[N, K]`` or ``[B, K]``.
    """

    block = "gat"
    sep_default = True

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 512,
        out_channels: int = 2,
        num_layers: int = 2,
        num_heads: int = 8,
        dropout: float = 0.2,
        *,
        sep: bool | None = None,
        residual: bool = True,
        norm: bool = True,
        feedforward_multiplier: float = 1.0,
        pe_dim: int = 0,
        graph_level: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if feedforward_multiplier <= 0:
            raise ValueError(f"feedforward_multiplier must be > 0, got {feedforward_multiplier}")
        sep = self.sep_default if sep is None else sep
        self.in_channels, self.sep = in_channels, sep
        self.pe_dim, self.graph_level = pe_dim, graph_level
        self.self_loops = None if sep else "add"
        self.input = nn.Linear(in_channels + pe_dim, hidden_channels)
        self.dropout = nn.Dropout(dropout)
        if self.block in ("gat", "gcn"):
            score = "additive" if self.block == "gat" else "gcn"
            self.layers = nn.ModuleList(
                [
                    _SepAttentionBlock(
                        hidden_channels, num_heads, dropout, sep, residual, norm, feedforward_multiplier, score
                    )
                    for _ in range(num_layers)
                ]
            )
        else:
            if not (residual and norm):
                raise ValueError(
                    "GTSep is built of pre-norm GraphformerLayers, which always have residual "
                    "connections and LayerNorm; keep residual=True and norm=True"
                )
            width = max(1, int(hidden_channels * feedforward_multiplier))
            # attn_dropout=0: the paper drops the attention output, not the weights
            self.layers = nn.ModuleList(
                [
                    GraphformerLayer(
                        hidden_channels,
                        num_heads,
                        width,
                        dropout,
                        activation="gelu",
                        norm_first=True,
                        score="dot",
                        root_weight=sep,
                        attn_dropout=0.0,
                    )
                    for _ in range(num_layers)
                ]
            )
        self.norm = nn.LayerNorm(hidden_channels) if norm else nn.Identity()
        self.head = nn.Linear(hidden_channels, out_channels)

    def prepare(self, edge_index: Tensor, num_nodes: int) -> SparseGraph:
        """Lay the edges out once (a self-loop per node added only without ``sep``)."""
        return _layout(edge_index, num_nodes, self.self_loops)[0]

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | SparseGraph | None = None,
        *,
        batch: Tensor | None = None,
        pe: Tensor | None = None,
        distance: Tensor | None = None,
    ) -> Tensor:
        """Node outputs ``[N, K]``, or graph outputs ``[B, K]`` with ``graph_level``."""
        name = type(self).__name__
        x = _node_input(x, pe, self.in_channels, self.pe_dim, name)
        _no_distance(distance, name)
        graph = _layout(_edges_needed(edge_index, name), x.size(0), self.self_loops)[0]
        h = F.gelu(self.dropout(self.input(x)))
        for layer in self.layers:
            h = layer(h, graph)
        return self.head(_readout(self.norm(h), batch, self.graph_level))


class GATSep(ResidualGraphModel):
    r"""GAT-sep (Platonov et al., ICLR 2023): :class:`ResidualGraphModel` with GAT blocks.

    Each block is :math:`h \leftarrow h + \mathrm{drop}\big(\mathrm{FF}\big(W_r \tilde h_i +
    \Vert_h \sum_{j \in \mathcal N(i)} \alpha^h_{ij} W^h \tilde h_j + b\big)\big)`,
    :math:`\tilde h = \mathrm{LN}(h)`, with GAT's additive score over the neighbours
    (no self-loop) and a GELU feed-forward part. On a complete graph the
    attention part is GAT-style attention over all other nodes.
    ``sep=False`` gives the paper's GAT row (self-loops, no root map).
    One difference from the paper's code: there each head's score reads the
    whole transformed vector (``Linear(D, H)``), here GAT's per-head vectors
    ``a_src``, ``a_dst`` read the head's own C channels, as ``GATConv``.
    Arguments and shapes as :class:`ResidualGraphModel`.
    """

    block = "gat"


class GTSep(ResidualGraphModel):
    r"""GT-sep (Platonov et al., ICLR 2023): :class:`ResidualGraphModel` with Transformer blocks.

    Each block is a pre-norm :class:`~graphformer.GraphformerLayer` (GELU)
    whose attention has the dot score over the neighbours (no self-loop) and
    ``root_weight=True``: :math:`W_o\big(\Vert_h \sum_{j \in \mathcal N(i)} a^h_{ij} W_v^h \tilde h_j
    + W_r \tilde h_i\big)`. On a complete graph with ``sep=False`` it is a
    pre-norm Transformer encoder over the nodes. Arguments and shapes as
    :class:`ResidualGraphModel`.
    """

    block = "transformer"


class GCNRes(ResidualGraphModel):
    r"""The paper's GCN row (Platonov et al., ICLR 2023): GCN blocks with residuals and LayerNorm.

    Each block is :math:`h \leftarrow h + \mathrm{drop}\big(\mathrm{FF}\big(\sum_{j \in \mathcal N(i)
    \cup \{i\}} \frac{1}{\sqrt{d_i d_j}} W \tilde h_j + b\big)\big)`, :math:`\tilde h = \mathrm{LN}(h)`,
    :math:`d` the degree with the self-loop (PyG's ``GCNConv`` inside the block). On a
    complete graph every weight is :math:`1/N`: each block adds the mean of all nodes.
    ``num_heads`` is ignored (the weights are fixed). Arguments and shapes as
    :class:`ResidualGraphModel`.
    """

    block = "gcn"
    sep_default = False


class GATRes(GATSep):
    """The paper's GAT row: :class:`GATSep` with ``sep=False`` (a self-loop per node, no root map)."""

    sep_default = False


class GTRes(GTSep):
    """The paper's GT row: :class:`GTSep` with ``sep=False`` (a self-loop per node, no root map)."""

    sep_default = False


#: model name -> class, for the command line and :func:`build_graph_model`
GRAPH_MODELS = {
    "gcn": GCN,
    "gat": GAT,
    "transformer": GraphTransformer,
    "gps": GPS,
    "gat-sep": GATSep,
    "gt-sep": GTSep,
    "gcn-res": GCNRes,
    "gat-res": GATRes,
    "gt-res": GTRes,
}


def build_graph_model(name: str, in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    """A model of :data:`GRAPH_MODELS` by name, ``kwargs`` passed to its constructor.

    The residual models (``"gat-sep"``, ``"gt-sep"``, ``"gcn-res"``, ``"gat-res"``,
    ``"gt-res"``) default to the published recipe's sizes
    (:data:`HETEROPHILY_RECIPE`: hidden 512, 8 heads, dropout 0.2).
    """
    key = name.lower()
    if key not in GRAPH_MODELS:
        raise ValueError(f"unknown graph model {name!r}; choose one of {sorted(GRAPH_MODELS)}")
    return GRAPH_MODELS[key](in_channels, out_channels=out_channels, **kwargs)
