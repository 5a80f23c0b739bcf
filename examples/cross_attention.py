"""Cross-attention is attention on a bipartite graph between two modalities.

A synthetic "where is it?" task. An image is a 3 x 3 grid of coloured
patches (nine distinct colours out of twelve); a patch is seen as a noisy
appearance vector of its colour plus its row and column. A caption holds
colour words naming some of the patches. Each word must retrieve the patch
of its colour and report where it is.

The graph: patches are source nodes, words are target nodes, and every
patch -> word edge exists (the complete bipartite graph). One
:class:`graphformer.GraphAttention` with ``kdim`` = patch width does the
retrieval: ``attn((patches, words))``. The example trains it, prints which
patch each word attends to, and checks that the dense call equals the sparse
path on the explicit edges of :func:`graphformer.structure.bipartite_edge_index`.

Run::

    python examples/cross_attention.py

Legend: B images, P patches per image (sources), W words per caption
(targets), d word width, k patch width.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphformer as gf
from graphformer._text import format_table
from graphformer.structure import bipartite_edge_index

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "brown", "grey", "black", "white", "cyan"]
GRID = 3  # patches per side
APPEARANCE_DIM = 16


class WordsAndPatches:
    """Random images of coloured patches and captions of colour words.

    Each colour has a fixed random appearance vector (drawn once from
    ``seed``); a patch's features are its colour's appearance plus Gaussian
    noise, then a one-hot row and a one-hot column: width
    ``k = APPEARANCE_DIM + 2 * GRID``.
    """

    def __init__(self, num_words: int = 3, noise: float = 0.3, seed: int = 0):
        if not 1 <= num_words <= GRID * GRID:
            raise ValueError(f"num_words must lie in [1, {GRID * GRID}], got {num_words}")
        self.num_words, self.noise = num_words, noise
        self.gen = torch.Generator().manual_seed(seed)
        self.appearance = torch.randn(len(COLOURS), APPEARANCE_DIM, generator=self.gen)  # [colours, 16]
        cells = torch.arange(GRID * GRID)
        self.where = torch.cat([F.one_hot(cells // GRID, GRID), F.one_hot(cells % GRID, GRID)], 1).float()  # [P, 6]

    @property
    def patch_dim(self) -> int:
        return APPEARANCE_DIM + 2 * GRID

    def sample(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Draw ``batch_size`` images.

        Returns:
            patches ``[B, P, k]``, colour of each patch ``[B, P]``,
            words (colour ids) ``[B, W]`` and the answer, the patch each word
            names ``[B, W]``.
        """
        P = GRID * GRID  # noqa: N806
        colour = torch.rand(batch_size, len(COLOURS), generator=self.gen).argsort(1)[:, :P]  # [B, P], distinct
        look = self.appearance[colour] + self.noise * torch.randn(batch_size, P, APPEARANCE_DIM, generator=self.gen)
        patches = torch.cat([look, self.where.expand(batch_size, -1, -1)], dim=-1)  # [B, P, k]
        target = torch.rand(batch_size, P, generator=self.gen).argsort(1)[:, : self.num_words]  # [B, W]
        words = colour.gather(1, target)  # [B, W]
        return patches, colour, words, target


class Retriever(nn.Module):
    """Word embedding -> cross-attention over the patches -> which cell (of P) the word names.

    ``logits = head(attn((patches, embed(words))))``, shapes
    ``[B, P, k], [B, W] -> [B, W, P]``.
    """

    def __init__(self, patch_dim: int, d_model: int = 32, num_heads: int = 1):
        super().__init__()
        self.embed = nn.Embedding(len(COLOURS), d_model)
        self.attn = gf.GraphAttention(d_model, num_heads, kdim=patch_dim)
        self.head = nn.Linear(d_model, GRID * GRID)

    def forward(self, patches: Tensor, words: Tensor, return_attention: bool = False):
        out = self.attn((patches, self.embed(words)), return_attention=return_attention)
        if return_attention:
            out, att = out
            return self.head(out), att
        return self.head(out)


def train(model: Retriever, data: WordsAndPatches, steps: int, batch_size: int, lr: float) -> float:
    """Adam on the cross-entropy of the named cell; returns the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        patches, _, words, target = data.sample(batch_size)
        loss = F.cross_entropy(model(patches, words).flatten(0, 1), target.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def sparse_batch(patches: Tensor, words: Tensor) -> Tensor:
    """Edges of B complete bipartite graphs P -> W stacked into one graph, ``[2, B*P*W]``.

    Image b's patches are nodes ``b*P ... b*P + P - 1`` of the source side,
    its words ``b*W ...`` of the target side (a PyG-style batch).
    """
    B, P, W = patches.size(0), patches.size(1), words.size(1)  # noqa: N806
    one = bipartite_edge_index(P, W)  # [2, P*W]
    offset = torch.arange(B).repeat_interleave(one.size(1))  # [B*P*W]
    return one.repeat(1, B) + offset * torch.tensor([[P], [W]])


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default: %(default)s)")
    parser.add_argument("--words", type=int, default=3, help="words per caption (default: %(default)s)")
    parser.add_argument("--d-model", type=int, default=32, help="word width (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--noise", type=float, default=0.3, help="patch appearance noise (default: %(default)s)")
    parser.add_argument("--test-size", type=int, default=1000, help="test images (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and weights (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Train the retriever, show its bipartite attention and check dense == sparse."""
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = WordsAndPatches(args.words, args.noise, seed=args.seed)
    model = Retriever(data.patch_dim, args.d_model)
    P, W = GRID * GRID, args.words  # noqa: N806
    print(
        f"patches ({P} source nodes, width {data.patch_dim}) -> words ({W} target nodes, width {args.d_model}): "
        f"a complete bipartite graph of {P * W} edges per image"
    )

    start, cpu_start = time.perf_counter(), time.process_time()
    loss = train(model, data, args.steps, args.batch_size, args.lr)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"trained {args.steps} steps in {seconds:.1f} s ({cpu_seconds:.1f} s of CPU time), last loss {loss:.4f}")

    model.eval()
    patches, colour, words, target = data.sample(args.test_size)
    with torch.no_grad():
        logits, att = model(patches, words, return_attention=True)  # att.weights [B, H, W, P]
    weights = att.weights.mean(1)  # [B, W, P], averaged over heads
    attended = weights.argmax(-1)  # [B, W]
    accuracy = float((logits.argmax(-1) == target).float().mean())
    retrieval = float((attended == target).float().mean())
    on_target = float(weights.gather(-1, target.unsqueeze(-1)).mean())
    print(
        f"test ({args.test_size} images): the word names the right cell {accuracy:.1%}, "
        f"its strongest edge comes from the right patch {retrieval:.1%}, "
        f"mean weight on that edge {on_target:.3f} (chance {1 / P:.3f})"
    )

    # one image, edge by edge
    names = [COLOURS[c] for c in colour[0].tolist()]
    print("\nimage 0, patch colours by grid cell:")
    for r in range(GRID):
        print("  " + "  ".join(f"{names[r * GRID + c]:>6}" for c in range(GRID)))
    cells = [f"{i // GRID},{i % GRID}" for i in range(P)]
    wnames = [COLOURS[w] for w in words[0].tolist()]
    print(
        format_table(
            weights[0],
            wnames,
            cells,
            digits=2,
            title="attention weights, row = word (target), column = patch at row,col (source)",
        )
    )
    for i, name in enumerate(wnames):
        j = int(attended[0, i])
        guess = int(logits[0, i].argmax())
        print(
            f"  '{name}' attends to patch {cells[j]} ({names[j]}) with weight {float(weights[0, i, j]):.2f}; "
            f"answer: cell {cells[guess]}"
        )

    # the same layer on the explicit bipartite edges: the sparse path
    edge_index = sparse_batch(patches, words)
    with torch.no_grad():
        x_src = model.embed(words)  # the word features, target side
        dense, dense_att = model.attn((patches, x_src), return_attention=True)  # [B, W, d]
        sparse, sparse_att = model.attn(
            (patches.flatten(0, 1), x_src.flatten(0, 1)), edge_index, return_attention=True
        )  # [B*W, d]
    out_error = float((dense.flatten(0, 1) - sparse).abs().max())
    # sparse weights [B*W*P, H] in edge order (image, word, patch) -> [B, H, W, P]
    sparse_w = sparse_att.weights.view(args.test_size, W, P, -1).permute(0, 3, 1, 2)
    weight_error = float((dense_att.weights - sparse_w).abs().max())
    print(
        f"\ndense attn((patches, words)) vs sparse attn(..., bipartite_edge_index) on {edge_index.size(1)} edges: "
        f"largest difference {out_error:.1e} (outputs), {weight_error:.1e} (weights)"
    )
    return {
        "accuracy": accuracy,
        "retrieval_accuracy": retrieval,
        "weight_on_target": on_target,
        "chance": 1 / P,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "final_loss": loss,
        "dense_sparse_max_diff": out_error,
        "dense_sparse_weight_diff": weight_error,
        "attended": attended[0].tolist(),
        "target": target[0].tolist(),
    }


if __name__ == "__main__":
    main()
