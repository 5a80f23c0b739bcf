"""docs/tutorial.md: its code runs as written, its pasted output comes from the worked example, its figures exist."""

import re

import pytest
import torch

from conftest import REPO, load_script

TUTORIAL = REPO / "docs" / "tutorial.md"


@pytest.fixture(scope="module")
def sentence():
    return load_script("sentence_as_graph")


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), flags=re.S)


def test_tutorial_snippets_run():
    blocks = _blocks("python")
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "tutorial"}
    for number, code in enumerate(blocks):  # one namespace, in order, as a reader would run them
        exec(compile(code, str(TUTORIAL), "exec"), namespace)  # the blocks check their own claims
        if number == 0:  # the worked example: s_ij = x_i x_j, a = softmax over j, out_i = sum_j a_ij x_j
            x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
            weights = torch.softmax(x[:, None] * x[None, :], dim=-1)
            torch.testing.assert_close(namespace["att"].weights[0], weights)
            torch.testing.assert_close(namespace["out"], (weights @ x)[:, None])


def test_tutorial_numbers_come_from_the_example(sentence, capsys):
    sentence.main([])
    printed = capsys.readouterr().out.splitlines()
    blocks = _blocks("text")  # every text block of the tutorial is output of the worked example
    assert any("softmax weights" in block for block in blocks), "the tutorial should paste the example's weights"
    pasted = [line for block in blocks for line in block.splitlines()]
    missing = [line for line in pasted if line.strip() and line.rstrip() not in printed]
    assert not missing, f"lines in docs/tutorial.md not printed by examples/sentence_as_graph.py: {missing}"


def test_make_figures_writes_small_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    mod = load_script("make_figures", "scripts")
    written = mod.main(["--out", str(tmp_path), "--only", "graphs", "spectrum", "gcn"])
    assert {p.name for p in written} == {"graphs.png", "spectrum.png", "gcn_weights.png"}
    for path in written:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 200_000


def test_tutorial_figures_exist_and_are_small():
    names = re.findall(r"\]\((figures/[^)]+\.png)\)", TUTORIAL.read_text(encoding="utf-8"))
    assert len(names) >= 5
    for name in names:
        path = TUTORIAL.parent / name
        assert path.is_file(), f"{name} is missing: run python scripts/make_figures.py"
        assert path.stat().st_size < 200_000
