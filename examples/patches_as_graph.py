"""An image is a graph of patches: classify 8 x 8 digits with a Graphformer.

Each image (scikit-learn's bundled 8 x 8 digits, 1,797 of them; a synthetic
set when scikit-learn is missing) is cut into square patches; each patch is
a node whose feature is a linear map of its pixels plus a 2-D sinusoidal
position (half the channels encode the row, half the column). Attention runs
on one of two graphs:

* ``--graph complete``: every patch attends to every patch (a Vision
  Transformer; the dense path);
* ``--graph grid``: each patch attends to itself and its 4 neighbours (the
  sparse path on an explicit ``edge_index``, a local, CNN-like receptive field).

``--feedforward conv`` swaps the node-wise MLP for
:class:`graphformer.ConvFeedForward`, a 1-D convolution along the patches in
raster order. Mean pooling over the nodes and a linear layer give the class.

Run::

    python examples/patches_as_graph.py --graph grid --patch 2

Legend: B images, N = G*G patches per image, G patches per side, p patch side
in pixels, d model width.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import graphformer as gf
from graphformer.encodings import sinusoidal

IMAGE = 8  # pixels per side
CLASSES = 10


def load_images(seed: int = 0) -> tuple[Tensor, Tensor, str]:
    """Images ``[n, 8, 8]`` scaled to [0, 1], labels ``[n]`` and the data set's name.

    scikit-learn's digits (offline, bundled); without scikit-learn, a
    synthetic stand-in: ten fixed random stroke patterns with pixel noise.
    """
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        gen = torch.Generator().manual_seed(seed)
        templates = (torch.rand(CLASSES, IMAGE, IMAGE, generator=gen) > 0.6).float()  # [10, 8, 8]
        labels = torch.arange(1500) % CLASSES
        noise = 0.35 * torch.randn(1500, IMAGE, IMAGE, generator=gen)
        return (templates[labels] + noise).clamp(0, 1), labels, "synthetic 8x8 patterns (scikit-learn not installed)"
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    return images, torch.tensor(digits.target, dtype=torch.long), "scikit-learn digits"


def patchify(images: Tensor, patch: int) -> Tensor:
    """``[B, 8, 8]`` -> ``[B, N, p*p]``, patches in raster order (row by row)."""
    G = IMAGE // patch  # noqa: N806
    x = images.reshape(-1, G, patch, G, patch)  # [B, G, p, G, p]
    return x.permute(0, 1, 3, 2, 4).reshape(-1, G * G, patch * patch)


def sinusoidal_2d(rows: int, cols: int, dim: int) -> Tensor:
    """2-D sinusoidal positions ``[rows*cols, dim]``: ``dim/2`` channels for the row, ``dim/2`` for the column."""
    if dim % 2:
        raise ValueError(f"dim must be even to split between rows and columns, got {dim}")
    row = sinusoidal(rows, dim // 2)  # [rows, dim/2]
    col = sinusoidal(cols, dim // 2)  # [cols, dim/2]
    return torch.cat([row.repeat_interleave(cols, 0), col.repeat(rows, 1)], dim=1)


def grid_edge_index(side: int, self_loops: bool = True) -> Tensor:
    """The 4-neighbour grid graph on ``side x side`` nodes (raster order), both directions, ``[2, E]``."""
    idx = torch.arange(side * side).view(side, side)
    pairs = [
        torch.stack([idx[:, :-1].flatten(), idx[:, 1:].flatten()]),  # left - right
        torch.stack([idx[:-1, :].flatten(), idx[1:, :].flatten()]),
    ]  # up - down
    und = torch.cat(pairs, dim=1)
    parts = [und, und.flip(0)] + ([torch.stack([idx.flatten(), idx.flatten()])] if self_loops else [])
    return torch.cat(parts, dim=1)


class PerImage(nn.Module):
    """Apply a sequence module to each image's nodes: ``[B*N, d]`` (a PyG-style batch) -> ``[B, N, d]`` and back.

    A convolution along the node order must not run across the border
    between two images stacked in one batch.
    """

    def __init__(self, module: nn.Module, nodes_per_image: int):
        super().__init__()
        self.module, self.nodes = module, nodes_per_image

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            return self.module(x)
        return self.module(x.view(-1, self.nodes, x.size(-1))).reshape(x.shape)


class PatchGraphformer(nn.Module):
    r"""Patches -> nodes, a Graphformer encoder on the complete or grid graph, mean pool, linear classifier.

    :math:`h^0_n = W p_n + PE_{2D}(r_n, c_n)`, ``num_layers`` Graphformer
    layers, :math:`y = W_c \,\mathrm{LN}(\tfrac{1}{N}\sum_n h^L_n)`.

    Shapes: images ``[B, 8, 8]`` -> logits ``[B, 10]``.
    """

    def __init__(
        self,
        patch: int = 2,
        d_model: int = 32,
        num_heads: int = 4,
        dim_feedforward: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
        graph: str = "complete",
        feedforward: str = "mlp",
    ):
        super().__init__()
        if IMAGE % patch:
            raise ValueError(f"patch must divide {IMAGE}, got {patch}")
        if graph not in ("complete", "grid"):
            raise ValueError(f"graph must be 'complete' or 'grid', got {graph!r}")
        if feedforward not in ("mlp", "conv"):
            raise ValueError(f"feedforward must be 'mlp' or 'conv', got {feedforward!r}")
        self.patch, self.graph = patch, graph
        side = IMAGE // patch
        self.num_nodes = side * side
        self.embed = nn.Linear(patch * patch, d_model)
        self.register_buffer("pe", sinusoidal_2d(side, side, d_model), persistent=False)  # [N, d]
        self.register_buffer("edge_index", grid_edge_index(side), persistent=False)  # [2, E] of one image
        ff = None
        if feedforward == "conv":
            ff = PerImage(gf.ConvFeedForward(d_model, dim_feedforward, kernel_size=3, dropout=dropout), self.num_nodes)
        layer = gf.GraphformerLayer(d_model, num_heads, dim_feedforward, dropout, norm_first=True, feedforward=ff)
        self.encoder = gf.GraphformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.classifier = nn.Linear(d_model, CLASSES)

    def batch_edge_index(self, num_images: int) -> Tensor:
        """The grid graph of every image in one ``[2, B*E]`` index (image b's nodes are ``b*N ...``)."""
        E = self.edge_index.size(1)  # noqa: N806
        offset = torch.arange(num_images, device=self.edge_index.device).repeat_interleave(E) * self.num_nodes
        return self.edge_index.repeat(1, num_images) + offset

    def forward(self, images: Tensor) -> Tensor:
        h = self.embed(patchify(images, self.patch)) + self.pe  # [B, N, d]
        if self.graph == "complete":
            h = self.encoder(h)  # each image a complete graph (dense path)
        else:
            B = h.size(0)  # noqa: N806
            h = self.encoder(h.flatten(0, 1), self.batch_edge_index(B)).view(B, self.num_nodes, -1)  # sparse path
        return self.classifier(h.mean(1))


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--graph", choices=["complete", "grid"], default="complete", help="(default: %(default)s)")
    parser.add_argument(
        "--patch", type=int, choices=[2, 4], default=2, help="patch side in pixels (default: %(default)s)"
    )
    parser.add_argument("--feedforward", choices=["mlp", "conv"], default="mlp", help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=40, help="(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--d-model", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--layers", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default: %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first LIMIT images (quick runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and weights (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Train on a random split, report held-out accuracy and time."""
    args = build_parser().parse_args(argv)
    if not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must lie in (0, 1), got {args.test_fraction}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    images, labels, source = load_images(args.seed)
    perm = torch.randperm(images.size(0), generator=torch.Generator().manual_seed(args.seed))
    if args.limit is not None:
        perm = perm[: args.limit]
    n_test = max(1, int(round(args.test_fraction * perm.numel())))
    test, train = perm[:n_test], perm[n_test:]

    model = PatchGraphformer(
        args.patch, args.d_model, num_layers=args.layers, graph=args.graph, feedforward=args.feedforward
    )
    N = model.num_nodes  # noqa: N806
    edges = N * N if args.graph == "complete" else model.edge_index.size(1)
    print(f"{source}: {train.numel()} training / {test.numel()} held-out images")
    print(
        f"each image: {N} patches of {args.patch}x{args.patch} pixels, {args.graph} graph with {edges} edges "
        f"(self-loops included), {args.feedforward} feed-forward, "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )

    steps_per_epoch = -(-train.numel() // args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(1, args.epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(args.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    for epoch in range(args.epochs):
        model.train()
        order = train[torch.randperm(train.numel(), generator=gen)]
        total = 0.0
        for batch in order.split(args.batch_size):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * batch.numel()
        if (epoch + 1) % max(1, args.epochs // 5) == 0:
            print(f"  epoch {epoch + 1:3d}  training loss {total / train.numel():.4f}")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

    model.eval()
    with torch.no_grad():
        test_acc = float((model(images[test]).argmax(-1) == labels[test]).float().mean())
        train_acc = float((model(images[train]).argmax(-1) == labels[train]).float().mean())
    print(
        f"held-out accuracy {test_acc:.2%} (training {train_acc:.2%}, chance {1 / CLASSES:.0%}); "
        f"trained {args.epochs} epochs in {seconds:.1f} s ({cpu_seconds:.1f} s of CPU time)"
    )
    return {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "chance": 1 / CLASSES,
        "graph": args.graph,
        "patch": args.patch,
        "feedforward": args.feedforward,
        "num_nodes": N,
        "edges_per_image": edges,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "data": source,
        "num_test": int(test.numel()),
    }


if __name__ == "__main__":
    main()
