"""The README's code runs as written and its quick start names real commands."""

import re
from pathlib import Path

import torch

import graphformer as gf
from graphformer.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    before = set(gf.available_scores())
    try:
        for block in blocks:
            exec(block, namespace)  # noqa: S102
    finally:  # the README registers a score: leave the registry as it was
        for name in set(gf.available_scores()) - before:
            gf.unregister_score(name)
    # the blocks leave real results behind
    assert namespace["out"].shape == (1000, 64)
    assert namespace["att"].weights.shape == (5000, 4)
    att = namespace["att"]  # softmax over each target's incoming edges: the weights into a node sum to one
    totals = torch.zeros(1000, 4).index_add_(0, att.edge_index[1], att.weights)
    has_edges = torch.bincount(att.edge_index[1], minlength=1000) > 0
    torch.testing.assert_close(totals[has_edges], torch.ones(int(has_edges.sum()), 4))
    assert not totals[~has_edges].any()
    # a structure computes what its explicit edges compute
    window, local = namespace["window"], namespace["local"]  # (a later block rebinds attn to another score)
    dot = gf.GraphAttention(d_model=64, num_heads=4)
    x = torch.randn(8, 32, 64)
    torch.testing.assert_close(dot(x, window)[3], dot(x[3], window.edge_index), atol=1e-5, rtol=1e-5)
    assert local.shape == (8, 32, 64)
    # the GPT: a loss near log(65) at initialisation, and 8 new tokens after the prompt
    assert abs(namespace["loss"].item() - torch.log(torch.tensor(65.0)).item()) < 0.5
    assert namespace["text"].shape == (1, 9)


def test_readme_commands_exist():
    text = README.read_text(encoding="utf-8")
    quick = re.search(r"## Quick start\s+```bash\n(.*?)```", text, re.S).group(1)
    assert "pip install torch==2.13.0" in quick and "graphformer demo" in quick and "pytest" in quick
    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name in re.findall(r"`graphformer (\w+)", text):
        assert name in subcommands, name
