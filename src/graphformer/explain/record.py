"""The record of one attention layer on a small graph: every matrix, in float64.

Legend: N nodes (tokens), d model width, H heads, C channels per head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Trace", "entropy_bits"]


@dataclass
class Trace:
    """Every matrix of one attention layer on one small graph (float64).

    Attributes:
        tokens: node labels, in node order.
        edge_index: ``[2, E]`` edges j -> i the layer ran on, or None for the
            complete graph / causal DAG (dense path).
        causal: the dense graph was the causal DAG.
        score: the score's name.
        values: the input values ``[N, d]`` before any positional encoding.
        positional: the positional encoding added to them ``[N, d]``, or None.
        x: the layer input ``[N, d]`` (values + positional).
        w_q, w_k, w_v: projections ``[d, H*C]`` (None when the score does not
            use them: GAT's query and key are its values).
        w_o: output projection ``[H*C, d]``.
        q, k, v: ``[H, N, C]`` (q / k None when unused).
        score_params: the score's own parameters (GAT's attention vectors), by name.
        mask: ``[N, N]`` bool, True where node i (row) attends to node j (column).
        scores: ``[H, N, N]`` raw scores (``-inf`` where there is no edge).
        weights: ``[H, N, N]`` attention weights (0 where there is no edge).
        heads: ``[H, N, C]`` each head's aggregate ``sum_j a_ij v_j``.
        output: ``[N, d]`` the layer's output.
        entropy: ``[H, N]`` attention entropy of each node in bits.
        max_abs_error: ``max |output - concat_h(weights_h V_h) W_o|``, the
            check that the recorded weights are the ones the layer used.
        softmax: the weights are a softmax of the scores (False for fixed
            weights such as ``"gcn"``, whose ``scores`` are the weights).
        formula: the score's formula in plain text (``Score.formula``), as
            the tables, the picture and the page show it.
    """

    tokens: list[str]
    edge_index: Tensor | None
    causal: bool
    score: str
    num_heads: int
    values: Tensor
    positional: Tensor | None
    x: Tensor
    w_q: Tensor | None
    w_k: Tensor | None
    w_v: Tensor
    w_o: Tensor
    q: Tensor | None
    k: Tensor | None
    v: Tensor
    mask: Tensor
    scores: Tensor
    weights: Tensor
    heads: Tensor
    output: Tensor
    entropy: Tensor
    max_abs_error: float
    score_params: dict[str, Tensor] = field(default_factory=dict)
    softmax: bool = True
    formula: str = ""

    @property
    def num_nodes(self) -> int:
        """N, the number of nodes (tokens)."""
        return len(self.tokens)

    @property
    def head_dim(self) -> int:
        """C, the channels per head."""
        return self.v.size(-1)

    def matrices(self) -> dict[str, Tensor]:
        """Every 2-D matrix of the trace by file-friendly name (per-head ones suffixed ``_head{h}``)."""
        out: dict[str, Tensor] = {"values": self.values}
        if self.positional is not None:
            out["positional"] = self.positional
        out["x"] = self.x
        for name in ("w_q", "w_k", "w_v", "w_o"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        for name, p in self.score_params.items():
            out[name] = p.reshape(p.size(0), -1) if p.dim() > 1 else p.unsqueeze(0)
        for name in ("q", "k", "v"):
            t = getattr(self, name)
            if t is not None:
                out[name] = t.transpose(0, 1).flatten(1)  # [H, N, C] -> [N, H*C]
        for h in range(self.num_heads):
            out[f"scores_head{h}"] = self.scores[h]
            out[f"weights_head{h}"] = self.weights[h]
        out["heads"] = self.heads.transpose(0, 1).flatten(1)
        out["output"] = self.output
        out["entropy"] = self.entropy.t()  # [N, H]
        return out


def entropy_bits(weights: Tensor) -> Tensor:
    r"""Entropy of each row of attention weights in bits, :math:`-\sum_j p_j \log_2 p_j` (``0 log 0 = 0``).

    Rows that do not sum to one (fixed ``"gcn"`` weights) are normalised first.
    Shapes: ``[..., N, N] -> [..., N]``.
    """
    total = weights.sum(-1, keepdim=True)
    p = torch.where(total > 0, weights / total.clamp(min=torch.finfo(weights.dtype).tiny), torch.zeros_like(weights))
    terms = torch.where(p > 0, -p * torch.log2(p.clamp(min=torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    return terms.sum(-1)
