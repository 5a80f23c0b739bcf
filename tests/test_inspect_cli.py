"""graphformer inspect: curves, CSV, picture, and the numbers against a direct computation."""

import csv
import json

import pytest
import torch

from graphformer import diagnostics as dg
from graphformer.cli import main
from graphformer.inspect_cli import InspectStack, inspect_curves, parse_variant, sentence_features


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_parse_variant():
    assert parse_variant("attn+res+ff+ln") == {"mix": "attn", "res": True, "ff": True, "ln": True}
    assert parse_variant("gcn") == {"mix": "gcn", "res": False, "ff": False, "ln": False}
    for bad in ("res", "attn+res+res", "attn+norm", ""):
        with pytest.raises(ValueError, match="variant"):
            parse_variant(bad)


def test_sentence_curves_equal_a_direct_forward_pass():
    tokens = "one two three four five six".split()
    curves = inspect_curves(
        None,
        None,
        ["attn+res"],
        layers=3,
        width=8,
        heads=2,
        seeds=1,
        seed=5,
        features=lambda s: sentence_features(tokens, 8, s),
    )
    torch.manual_seed(5)
    x = sentence_features(tokens, 8, 5).double()
    stack = InspectStack("attn+res", 8, 2, 3).double().eval()
    hs = [x]
    with torch.no_grad():
        for block in stack.blocks:
            hs.append(block(hs[-1]))
    expected = [float(dg.rank_one_distance(h)) for h in hs]
    assert curves["attn+res"]["rank_one_distance"] == pytest.approx(expected, rel=1e-10)
    energy = [float(dg.dirichlet_energy(h)) for h in hs]  # the complete graph of the tokens
    assert curves["attn+res"]["dirichlet_energy"] == pytest.approx(energy, rel=1e-10)


def test_cli_sentence_collapse_csv_and_png(tmp_path, capsys):
    csv_path, png_path = tmp_path / "curves.csv", tmp_path / "curves.png"
    argv = [
        "inspect",
        "--layers",
        "6",
        "--seeds",
        "2",
        "--width",
        "16",
        "--heads",
        "2",
        "--variants",
        "attn,attn+res",
        "--csv",
        str(csv_path),
    ]
    try:
        import matplotlib  # noqa: F401

        argv += ["--png", str(png_path)]
    except ModuleNotFoundError:
        png_path = None
    assert main(argv) == 0
    out = capsys.readouterr().out
    metrics = _last_json(out)
    attn = metrics["curves"]["attn"]
    assert len(attn["rank_one_distance"]) == 7 and attn["attention_entropy"][0] is None
    # pure attention collapses to rank one; the residual stream keeps its rows apart
    assert attn["rank_one_distance"][-1] < 1e-8 * attn["rank_one_distance"][0]
    assert metrics["curves"]["attn+res"]["rank_one_distance"][-1] > 0.1
    assert attn["numerical_rank"][-1] == pytest.approx(1.0, abs=1e-6)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 7
    assert float(rows[6]["rank_one_distance"]) == attn["rank_one_distance"][6]
    if png_path is not None:
        assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_cli_gcn_on_karate_and_errors(capsys):
    assert main(["inspect", "--graph", "karate", "--layers", "8", "--seeds", "1", "--variants", "gcn"]) == 0
    energy = _last_json(capsys.readouterr().out)["curves"]["gcn"]["dirichlet_energy"]
    assert energy[-1] < 1e-2 * energy[0]  # oversmoothing: the energy of a deep GCN decays
    assert main(["inspect", "--variants", "gcn"]) == 1
    assert "need a graph" in capsys.readouterr().err
    assert main(["inspect", "--graph", "Cora"]) == 1
    assert "--root" in capsys.readouterr().err
    assert main(["inspect", "--width", "10", "--heads", "4"]) == 1
    assert "divisible" in capsys.readouterr().err


def test_cli_cora_reads_a_read_only_copy(capsys, shared_data):
    raw = shared_data / "planetoid" / "Cora" / "raw"
    assert raw.is_dir(), f"Cora raw files missing under {raw}"
    before = sorted(p.name for p in raw.parent.iterdir())
    assert (
        main(
            [
                "inspect",
                "--graph",
                "Cora",
                "--root",
                str(shared_data / "planetoid"),
                "--layers",
                "2",
                "--seeds",
                "1",
                "--variants",
                "gcn",
            ]
        )
        == 0
    )
    metrics = _last_json(capsys.readouterr().out)
    assert metrics["num_nodes"] == 2708 and len(metrics["curves"]["gcn"]["effective_rank"]) == 3
    assert sorted(p.name for p in raw.parent.iterdir()) == before  # nothing written next to raw/
