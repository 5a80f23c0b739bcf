"""graphformer classify, the graph datasets behind it, and the karate club example."""

import json
import math
import runpy
import shutil
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

from graphformer import cli
from graphformer.classify import load_dataset, train_graph_classifier, train_node_classifier
from graphformer.data.graphs import (
    STRUCTURE_CLASSES,
    karate_club,
    load_planetoid,
    planetoid_raw_files,
    synthetic_structures,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cora_root(shared_data, tmp_path) -> Path:
    """A writable root holding Cora/raw (PyG writes Cora/processed next to it)."""
    shutil.copytree(shared_data / "planetoid" / "Cora" / "raw", tmp_path / "Cora" / "raw")
    return tmp_path


# ------------------------------------------------------------------ datasets
def test_planetoid_public_split(cora_root):
    data = load_planetoid(cora_root, "cora")
    assert data.x.shape == (2708, 1433) and data.edge_index.shape == (2, 10556)
    assert (int(data.train_mask.sum()), int(data.val_mask.sum()), int(data.test_mask.sum())) == (140, 500, 1000)
    assert torch.bincount(data.y[data.train_mask]).tolist() == [20] * 7
    torch.testing.assert_close(data.x.sum(1), torch.ones(2708))  # rows scaled to sum 1


def test_read_only_root_is_parsed_without_writing(shared_data, tmp_path):
    raw = tmp_path / "Cora" / "raw"
    shutil.copytree(shared_data / "planetoid" / "Cora" / "raw", raw)
    (tmp_path / "Cora").chmod(0o555)
    try:
        data = load_planetoid(tmp_path, "Cora")
    finally:
        (tmp_path / "Cora").chmod(0o755)
    assert data.num_nodes == 2708
    assert not (tmp_path / "Cora" / "processed").exists()


def test_missing_raw_files_name_them_and_download_nothing(tmp_path, monkeypatch):
    from torch_geometric.datasets import Planetoid

    def no_network(self):
        raise AssertionError("Planetoid tried to download")

    monkeypatch.setattr(Planetoid, "download", no_network)
    with pytest.raises(FileNotFoundError, match=r"nothing is downloaded.*missing ind\.cora\.x, "):
        load_planetoid(tmp_path, "Cora")
    (tmp_path / "Cora" / "raw").mkdir(parents=True)
    for f in planetoid_raw_files(tmp_path, "Cora")[:7]:
        f.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"missing ind\.cora\.test\.index\. "):
        load_planetoid(tmp_path, "Cora")
    assert not (tmp_path / "Cora" / "processed").exists()


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="Cora"):
        load_dataset("Pubmedd")
    with pytest.raises(ValueError, match="unknown Planetoid"):
        planetoid_raw_files(".", "Reddit")


def test_karate_club_split():
    data = karate_club()
    assert data.num_nodes == 34 and data.edge_index.size(1) == 156
    assert data.train_mask.nonzero().flatten().tolist() == [0, 33]
    assert data.y[0] != data.y[33]
    masks = data.train_mask.int() + data.val_mask.int() + data.test_mask.int()
    assert masks.eq(1).all() and int(data.val_mask.sum()) == 8


def test_synthetic_structures_are_reproducible_and_balanced():
    a = synthetic_structures(num_per_class=3, seed=5)
    b = synthetic_structures(num_per_class=3, seed=5)
    c = synthetic_structures(num_per_class=3, seed=6)
    assert all(torch.equal(g.edge_index, h.edge_index) for g, h in zip(a, b))
    assert not all(
        g.edge_index.shape == h.edge_index.shape and torch.equal(g.edge_index, h.edge_index) for g, h in zip(a, c)
    )
    labels = torch.cat([g.y for g in a])
    assert torch.bincount(labels).tolist() == [3] * len(STRUCTURE_CLASSES)
    for g in a:
        assert torch.equal(g.x, torch.ones(g.num_nodes, 1))  # structure is the only signal
        assert 9 <= g.num_nodes <= 40
        assert int(g.edge_index.max()) < g.num_nodes


def test_encoding_names_parse_and_attach():
    from graphformer.data.graphs import add_encodings, parse_encoding

    assert parse_encoding("none") == (None, False)
    assert parse_encoding("degree+shortest-path") == ("degree", True)
    assert parse_encoding("shortest-path+random-walk") == ("random-walk", True)
    for bad in ("spd", "degree+laplacian", "none+degree", ""):
        with pytest.raises(ValueError, match="unknown encoding"):
            parse_encoding(bad)
    graphs = synthetic_structures(num_per_class=1)[:3]
    encoded = add_encodings(graphs, "degree+shortest-path", dim=5, max_distance=4)
    for g, e in zip(graphs, encoded):
        assert "pe" not in g and "distance" not in g  # inputs untouched
        degree = torch.bincount(g.edge_index[1], minlength=g.num_nodes).clamp(max=4)
        assert torch.equal(e.pe.argmax(1), degree) and e.pe.shape == (g.num_nodes, 5)
        assert e.distance.shape == (g.num_nodes, g.num_nodes) and int(e.distance.max()) <= 5
    assert "distance" not in add_encodings(encoded, "random-walk", dim=5)[0]


# ------------------------------------------------------------------- training
def test_cli_end_to_end_on_cora(cora_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(
        [
            "classify",
            "--dataset",
            "Cora",
            "--root",
            str(cora_root),
            "--model",
            "gcn",
            "--runs",
            "1",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((out / "metrics.json").read_text())
    for m in (last, saved):
        assert {"accuracy_mean", "accuracy_std", "runs", "config"} <= set(m)
        assert len(m["runs"]) == 1 and m["accuracy_mean"] == m["runs"][0]["test_accuracy"] and m["accuracy_std"] == 0
        assert m["accuracy_mean"] > 0.32  # three epochs of GCN beat the largest class (31.9% of the 1000 test nodes)
        assert abs(1000 * m["accuracy_mean"] - round(1000 * m["accuracy_mean"])) < 1e-3  # a fraction of 1000 nodes
        assert 1 <= m["runs"][0]["best_epoch"] <= 3
    assert saved["accuracy_mean"] == last["accuracy_mean"]
    assert saved["config"]["lr"] == 0.01 and saved["config"]["hidden"] == 16  # published GCN settings


def test_cli_reports_bad_input_cleanly(tmp_path, capsys):
    assert cli.main(["classify", "--dataset", "NoSuchGraph", "--no-progress"]) == 1
    assert "unknown dataset 'NoSuchGraph'" in capsys.readouterr().err
    assert cli.main(["classify", "--dataset", "CiteSeer", "--root", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "ind.citeseer.x" in err and "nothing is downloaded" in err


def test_missing_labels_and_masks_are_clear_errors():
    data = karate_club()
    with pytest.raises(ValueError, match="no labels"):
        train_node_classifier(
            Data(
                x=data.x,
                edge_index=data.edge_index,
                train_mask=data.train_mask,
                val_mask=data.val_mask,
                test_mask=data.test_mask,
            ),
            epochs=1,
        )
    with pytest.raises(ValueError, match="train_mask"):
        train_node_classifier(Data(x=data.x, edge_index=data.edge_index, y=data.y), epochs=1)
    graphs = synthetic_structures(num_per_class=1)
    del graphs[2].y
    with pytest.raises(ValueError, match="no label"):
        train_graph_classifier(graphs, epochs=1)
    with pytest.raises(ValueError, match="unknown model"):
        train_node_classifier(data, "mlp", epochs=1)
    with pytest.raises(ValueError, match="shortest-path"):
        train_node_classifier(data, "gcn", encoding="shortest-path", epochs=1)


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_karate_club_learns_from_two_labels(model):
    m = train_node_classifier(karate_club(), model, epochs=60, hidden=8, heads=2, dropout=0.0, lr=0.05)
    assert m["accuracy_mean"] >= 0.75  # two labelled members; chance is 0.5


@pytest.mark.parametrize("model", ["transformer", "gps"])
def test_transformer_runs_follow_their_settings(model):
    m = train_node_classifier(karate_club(), model, runs=2, epochs=4, seed=7, hidden=8, heads=2, encoding="laplacian")
    assert [r["seed"] for r in m["runs"]] == [7, 8]
    assert all(1 <= r["best_epoch"] <= 4 for r in m["runs"])
    test_nodes = int(karate_club().test_mask.sum())
    assert all(abs(r["test_accuracy"] * test_nodes - round(r["test_accuracy"] * test_nodes)) < 1e-4 for r in m["runs"])
    assert m["accuracy_mean"] == pytest.approx(sum(r["test_accuracy"] for r in m["runs"]) / 2)
    assert (m["config"]["hidden"], m["config"]["heads"], m["config"]["encoding"]) == (8, 2, "laplacian")
    assert m["config"]["lr"] == 0.005  # the model's default where none is given


def _regular_pair(num_per_class=25, seed=0):
    """Circular ladders (label 0) and random 3-regular graphs (label 1): same degrees everywhere."""
    names = [name for name, _ in STRUCTURE_CLASSES.values()]
    pair = names.index("circular ladder"), names.index("random 3-regular")
    graphs = [g for g in synthetic_structures(num_per_class=num_per_class, seed=seed) if int(g.y) in pair]
    for g in graphs:
        g.y = torch.tensor([pair.index(int(g.y))])
    return graphs


def test_message_passing_cannot_tell_regular_graphs_apart():
    from graphformer.classify import build_model
    from graphformer.data.graphs import add_encodings, collate

    ladder, regular = _regular_pair(num_per_class=1)
    regular = synthetic_structures(num_per_class=1, min_nodes=ladder.num_nodes, max_nodes=ladder.num_nodes)[6]
    assert regular.num_nodes == ladder.num_nodes
    b = collate(add_encodings([ladder, regular], "random-walk", dim=8))
    gcn = build_model("gcn", 1, 2, hidden=8, layers=3, dropout=0.0, graph_level=True).eval()
    out = gcn(b.x, b.edge_index, batch=b.batch)
    torch.testing.assert_close(out[0], out[1])  # 1-WL: constant features stay constant on a regular graph
    rw = build_model(
        "transformer", 1, 2, hidden=8, heads=2, dropout=0.0, graph_level=True, encoding="random-walk"
    ).eval()
    out = rw(b.x, b.edge_index, batch=b.batch, pe=b.pe)
    assert (out[0] - out[1]).abs().max() > 1e-4  # return probabilities see the 4-cycles of the ladder


def test_random_walk_transformer_learns_what_message_passing_cannot():
    m = train_graph_classifier(
        _regular_pair(), "transformer", encoding="random-walk", epochs=30, hidden=16, layers=1, lr=0.01, batch_size=10
    )
    assert m["accuracy_mean"] >= 0.8  # chance is 0.5
    assert {"accuracy_mean", "accuracy_std", "runs"} <= set(m)


def test_karate_example_runs_and_draws(tmp_path):
    pytest.importorskip("matplotlib")
    module = runpy.run_path(str(REPO / "examples" / "karate_club.py"))
    png = tmp_path / "karate.png"
    accuracy = module["main"](["--model", "gat", "--epochs", "60", "--png", str(png)])
    assert accuracy >= 0.75
    assert png.stat().st_size > 10_000


# ------------------------------------------------------------ full protocol
@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset,model,target",
    [("Cora", "gcn", 0.805), ("Cora", "gat", 0.815), ("CiteSeer", "gcn", 0.695), ("CiteSeer", "gat", 0.705)],
)
def test_ten_seeds_reach_the_published_accuracy(shared_data, tmp_path, dataset, model, target):
    shutil.copytree(shared_data / "planetoid" / dataset / "raw", tmp_path / dataset / "raw")
    m = train_node_classifier(load_planetoid(tmp_path, dataset), model, runs=10)
    assert m["accuracy_mean"] >= target  # published 81.5 / 83.0 / 70.3 / 72.5, one point of slack


# ------------------------------------------------------------ the engine, flags, heterophilous graphs
def test_flags_that_do_nothing_are_errors(capsys):
    for argv, message in [
        (["--model", "gcn", "--attention", "complete"], "--attention applies to --model transformer"),
        (["--model", "gat", "--attention", "edges"], "--attention applies to --model transformer"),
        (["--batch-size", "32"], "--batch-size applies to graph-level datasets"),
        (["--model", "gcn", "--heads", "4"], "--heads applies to models with attention heads"),
        (["--model", "gcn", "--out-heads", "4"], "--out-heads applies to --model gat"),
    ]:
        assert (
            cli.main(["classify", "--dataset", "karate", "--runs", "1", "--epochs", "2", "--no-progress", *argv]) == 1
        ), argv
        assert message in capsys.readouterr().err


def test_out_that_is_a_file_fails_before_training(tmp_path, capsys, monkeypatch):
    target = tmp_path / "metrics"
    target.write_text("not a folder")
    import graphformer.classify as classify

    monkeypatch.setattr(classify, "_train_nodes", lambda *a, **k: pytest.fail("trained before checking --out"))
    assert (
        cli.main(
            ["classify", "--dataset", "karate", "--runs", "1", "--epochs", "2", "--no-progress", "--out", str(target)]
        )
        == 1
    )
    assert "is a file" in capsys.readouterr().err


def test_existing_run_needs_overwrite_and_metrics_are_written_atomically(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = [
        "classify",
        "--dataset",
        "karate",
        "--runs",
        "2",
        "--epochs",
        "3",
        "--no-progress",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert len(first["runs"]) == 2
    assert cli.main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    real_write_text = Path.write_text

    def half_then_interrupt(self, text, *args, **kwargs):  # Ctrl-C in the middle of writing metrics.json
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half_then_interrupt)
    assert cli.main([*argv, "--overwrite", "--seed", "5"]) == 130
    monkeypatch.undo()
    assert list(out.iterdir()) == []  # no half-written metrics.json, no temporary file
    assert cli.main([*argv, "--overwrite", "--seed", "5"]) == 0
    assert [r["seed"] for r in json.loads((out / "metrics.json").read_text())["runs"]] == [5, 6]


def test_interrupted_runs_resume_to_the_uninterrupted_result(tmp_path, capsys, monkeypatch):
    """runs.json keeps each finished run; --resume trains only the rest and ends as the uninterrupted command."""
    import graphformer.classify as classify

    base = ["classify", "--dataset", "karate", "--epochs", "3", "--no-progress", "--threads", "1"]
    assert cli.main([*base, "--runs", "3", "--out", str(tmp_path / "whole")]) == 0
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    real_fit, calls = classify.engine.fit, []

    def fit_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C during the third run
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    out = tmp_path / "cut"
    monkeypatch.setattr(classify.engine, "fit", fit_then_interrupt)
    assert cli.main([*base, "--runs", "3", "--out", str(out)]) == 130
    monkeypatch.undo()
    assert not (out / "metrics.json").exists()
    assert len(json.loads((out / "runs.json").read_text())["runs"]) == 2
    assert cli.main([*base, "--runs", "3", "--out", str(out)]) == 1  # an existing run needs --resume or --overwrite
    assert "--resume" in capsys.readouterr().err

    trained = []
    monkeypatch.setattr(classify.engine, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    assert cli.main([*base, "--runs", "3", "--out", str(out), "--resume"]) == 0
    assert len(trained) == 1  # only the third run
    resumed = json.loads((out / "metrics.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in whole["runs"]]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed["runs"]] == strip
    assert resumed["accuracy_mean"] == pytest.approx(whole["accuracy_mean"], abs=1e-12)

    assert cli.main([*base, "--runs", "4", "--out", str(out), "--resume"]) == 0  # a larger --runs adds a run
    assert [r["seed"] for r in json.loads((out / "metrics.json").read_text())["runs"]] == [0, 1, 2, 3]
    assert cli.main([*base, "--runs", "4", "--out", str(out), "--resume", "--lr", "0.5"]) == 1
    assert "other settings" in capsys.readouterr().err
    assert cli.main([*base, "--out", str(tmp_path / "new"), "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_roc_auc_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    from graphformer.classify import roc_auc

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (300,), generator=g)
    s = torch.randn(300, generator=g) + y
    s[:40] = torch.round(s[:40])  # ties
    assert roc_auc(s, y) == pytest.approx(metrics.roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert roc_auc(torch.tensor([0.1, 0.9]), torch.tensor([0, 1])) == 1.0
    assert math.isnan(roc_auc(torch.ones(3), torch.ones(3)))


def _fake_npz(path, n=60, classes=2, splits=10, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.normal(size=(n, 3)) + y[:, None]).astype(np.float32)
    edges = np.array([(i, (i + 1) % n) for i in range(n)] + [(i, (i + 7) % n) for i in range(n)])
    masks = np.zeros((3, splits, n), dtype=bool)
    for s in range(splits):
        order = rng.permutation(n)
        masks[0, s, order[: n // 2]], masks[1, s, order[n // 2 : 3 * n // 4]] = True, True
        masks[2, s, order[3 * n // 4 :]] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, node_features=x, node_labels=y, edges=edges, train_masks=masks[0], val_masks=masks[1], test_masks=masks[2]
    )
    return edges


def test_heterophilous_from_a_read_only_copy_with_bidirectional_edges(tmp_path, monkeypatch):
    from graphformer.data.heterophilous import load_heterophilous

    src = tmp_path / "shared"
    edges = _fake_npz(src / "minesweeper.npz")
    src.chmod(0o555)
    monkeypatch.setenv("GRAPHFORMER_CACHE", str(tmp_path / "cache"))
    try:
        data = load_heterophilous(src, "minesweeper")
    finally:
        src.chmod(0o755)
    assert sorted(p.name for p in src.iterdir()) == ["minesweeper.npz"]  # nothing written next to the source
    assert data.edge_index.size(1) == 2 * len(edges)
    pairs = set(map(tuple, data.edge_index.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    assert data.train_mask.shape == (60, 10)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_heterophilous(tmp_path / "empty", "tolokers")


def test_heterophilous_runs_take_the_first_splits_and_score_roc_auc(tmp_path, capsys, monkeypatch):
    _fake_npz(tmp_path / "minesweeper" / "raw" / "minesweeper.npz")
    _fake_npz(tmp_path / "chameleon_filtered" / "raw" / "chameleon_filtered.npz", classes=5)
    argv = [
        "classify",
        "--root",
        str(tmp_path),
        "--runs",
        "3",
        "--epochs",
        "5",
        "--no-progress",
        "--threads",
        "1",
        "--hidden",
        "8",
    ]
    assert cli.main([*argv, "--dataset", "minesweeper"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["metric"] == "roc_auc" and [r["split"] for r in m["runs"]] == [0, 1, 2]
    assert 0.0 <= m["roc_auc_mean"] <= 1.0 and "accuracy_mean" not in m
    # model selection on validation: the reported test score is the one of the best validation epoch
    assert all(1 <= r["best_epoch"] <= 5 for r in m["runs"])
    assert cli.main([*argv, "--dataset", "chameleon_filtered"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metric"] == "accuracy"
    assert cli.main([*argv[:4], "11", *argv[5:], "--dataset", "minesweeper"]) == 1
    assert "10 fixed splits" in capsys.readouterr().err


def test_each_split_is_its_own_run():
    from graphformer.classify import train_node_classifier

    data = karate_club()
    n = data.num_nodes
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(3, n, 2, dtype=torch.bool)
    for s in range(2):
        order = torch.randperm(n, generator=g)
        masks[0, order[:12], s], masks[1, order[12:22], s], masks[2, order[22:], s] = True, True, True
    data.train_mask, data.val_mask, data.test_mask = masks
    both = train_node_classifier(data, "gcn", runs=2, epochs=5, seed=3)
    data_one = karate_club()
    data_one.train_mask, data_one.val_mask, data_one.test_mask = (m[:, 1] for m in masks)
    second = train_node_classifier(data_one, "gcn", runs=1, epochs=5, seed=4)
    assert both["runs"][1]["test_accuracy"] == second["runs"][0]["test_accuracy"]
    assert both["runs"][1]["best_epoch"] == second["runs"][0]["best_epoch"]


def test_heterophilous_shared_files_load(shared_data, tmp_path, monkeypatch):
    from graphformer.data.heterophilous import load_heterophilous

    monkeypatch.setenv("GRAPHFORMER_CACHE", str(tmp_path))
    sizes = {
        "minesweeper": (10_000, 39_402, 2),
        "chameleon_filtered": (890, 8_854, 5),
        "squirrel_filtered": (2_223, 46_998, 5),
    }
    for name, (nodes, undirected, classes) in sizes.items():
        data = load_heterophilous(shared_data / "heterophilous", name)
        assert data.num_nodes == nodes and data.edge_index.size(1) == 2 * undirected
        assert int(data.y.max()) + 1 == classes and data.train_mask.shape == (nodes, 10)


@pytest.mark.slow
def test_two_processes_classify_graphs_as_one(tmp_path):
    from ddp import launch

    args = [
        "-m",
        "graphformer",
        "classify",
        "--dataset",
        "synthetic-structures",
        "--model",
        "gcn",
        "--runs",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--hidden",
        "16",
        "--threads",
        "1",
        "--no-progress",
        "--device",
        "cpu",
    ]
    found = {}
    for world in (1, 2):
        logs = launch([*args, "--out", str(tmp_path / f"w{world}")], world, timeout_s=240)
        assert [r[0] for r in logs] == [0] * world, [r[2][-2000:] for r in logs]
        found[world] = json.loads((tmp_path / f"w{world}" / "metrics.json").read_text())
    assert found[2]["config"]["processes"] == 2
    for key in ("val_accuracy", "test_accuracy", "best_epoch"):
        assert found[2]["runs"][0][key] == pytest.approx(found[1]["runs"][0][key], abs=1e-6)
    node = launch(
        [
            "-m",
            "graphformer",
            "classify",
            "--dataset",
            "karate",
            "--runs",
            "1",
            "--epochs",
            "2",
            "--no-progress",
            "--device",
            "cpu",
        ],
        2,
        timeout_s=120,
    )
    assert all(r[0] == 1 for r in node) and "without torchrun" in node[0][2]
