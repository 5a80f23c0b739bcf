import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from graphformer import cli, forecast
from graphformer.forecast import ForecastConfig, evaluate, load_checkpoint, train

REPO = Path(__file__).resolve().parents[1]


def _quick(shared_data, out, *extra):
    return ["forecast", "--data", str(shared_data / "ett" / "ETTh1.csv"), "--limit-rows", "500",
            "--seq-len", "24", "--pred-len", "12", "--d-model", "16", "--d-ff", "16", "--heads", "2",
            "--batch-size", "16", "--quiet", "--threads", "1", "--out", str(out), *extra]


def _cfg(shared_data, **kw):
    base = dict(data=str(shared_data / "ett" / "ETTh1.csv"), limit_rows=500, seq_len=24, pred_len=12, d_model=16,
                d_ff=16, heads=2, batch_size=16, epochs=2, threads=1)
    return ForecastConfig(**{**base, **kw})


def test_cli_end_to_end(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_quick(shared_data, out, "--epochs", "2", "--original-units")) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = json.loads((out / "metrics.json").read_text())
    for key in ("mse", "mae", "mse_per_step", "mae_per_step", "rmse_original", "mae_original", "test_windows",
                "best_epoch"):
        assert key in printed and key in written
    assert len(printed["mse_per_step"]) == 12 and len(printed["mae_per_step"]) == 12
    assert printed["mse"] == pytest.approx(np.mean(printed["mse_per_step"]))
    assert printed["mse"] == written["mse"] and printed["mae"] == written["mae"]
    assert printed["test_windows"] == 100 + 24 - 24 - 12 + 1  # int(0.2 * 500) test rows plus look-back
    assert printed["split"] == "ratio"
    assert (out / "forecast.png").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "forecast.png", "last.pt", "metrics.json"]


def test_checkpoint_loads_weights_only_and_reproduces_test_metrics(shared_data, tmp_path):
    metrics = train(_cfg(shared_data), tmp_path, progress=False, plot=False)
    ckpt = torch.load(tmp_path / "best.pt", weights_only=True)
    assert ckpt["config"]["model"] == "itransformer" and ckpt["epoch"] == metrics["best_epoch"]
    torch.load(tmp_path / "last.pt", weights_only=True)
    model, cfg, scaler = load_checkpoint(tmp_path / "best.pt")
    data = forecast.load_data(cfg)
    np.testing.assert_allclose(scaler.mean, data.scaler.mean)
    again = evaluate(model, data.test.loader(7))
    assert again["mse"] == pytest.approx(metrics["mse"], rel=1e-5)
    assert again["mae"] == pytest.approx(metrics["mae"], rel=1e-5)


def test_resume_gives_the_uninterrupted_result(shared_data, tmp_path):
    straight = train(_cfg(shared_data, epochs=2), tmp_path / "a", progress=False, plot=False)
    train(_cfg(shared_data, epochs=1), tmp_path / "b", progress=False, plot=False)
    resumed = train(_cfg(shared_data, epochs=2), tmp_path / "b", resume=True, progress=False, plot=False)
    assert resumed["epochs_run"] == 2
    for key in ("mse", "mae", "best_epoch", "best_val_loss"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-6, abs=1e-9), key
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


def test_interrupt_keeps_last_complete_checkpoint(shared_data, tmp_path, monkeypatch):
    straight = train(_cfg(shared_data, epochs=2), tmp_path / "a", progress=False, plot=False)
    out = tmp_path / "b"
    real_save = forecast._save
    calls = []

    def interrupt_on_second_epoch(obj, path):
        calls.append(path.name)
        if len(calls) > 2:  # epoch 1 wrote best.pt and last.pt; stop inside epoch 2's write
            path.with_name(f".{path.name}.partial").write_bytes(b"half")
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(forecast, "_save", interrupt_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(shared_data, epochs=2), out, progress=False, plot=False)
    monkeypatch.setattr(forecast, "_save", real_save)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1
    resumed = train(_cfg(shared_data, epochs=2), out, resume=True, progress=False, plot=False)
    assert resumed["mse"] == pytest.approx(straight["mse"], rel=1e-6)


def test_plot_is_skipped_with_a_warning_without_matplotlib(shared_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import now fails
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        metrics = train(_cfg(shared_data, epochs=1), tmp_path, progress=False)
    assert metrics["plot"] is None and not (tmp_path / "forecast.png").exists()
    assert (tmp_path / "metrics.json").is_file()


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "x.pt"
    forecast._save({"a": torch.ones(2)}, target)

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        forecast._atomic_write(target, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    torch.testing.assert_close(torch.load(target, weights_only=True)["a"], torch.ones(2))


def test_seed_makes_runs_repeatable(shared_data):
    a = train(_cfg(shared_data, epochs=1, seed=3), None, progress=False)
    b = train(_cfg(shared_data, epochs=1, seed=3), None, progress=False)
    c = train(_cfg(shared_data, epochs=1, seed=4), None, progress=False)
    assert a["mse"] == b["mse"] and a["mse"] != c["mse"]


@pytest.mark.parametrize("model", ["temporal", "patch", "graph"])
def test_other_models_through_the_cli(shared_data, tmp_path, capsys, model):
    assert cli.main(_quick(shared_data, tmp_path / model, "--epochs", "1", "--model", model, "--no-plot")) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["model"] == model and np.isfinite(printed["mse"])
    model_back, cfg, _ = load_checkpoint(tmp_path / model / "best.pt")
    assert cfg.model == model


def test_graph_file_size_mismatch_is_an_error_and_writes_nothing(shared_data, tmp_path, capsys):
    out = tmp_path / "never"
    code = cli.main(_quick(shared_data, out, "--model", "graph", "--graph",
                           str(shared_data / "traffic" / "los_loop" / "los_adj.csv")))
    assert code == 1
    assert "207 nodes but the series has 7 variables" in capsys.readouterr().err
    assert not out.exists()


def test_graph_file_drives_the_graph_model(shared_data, tmp_path):
    adj = np.eye(7)
    adj[0, 6] = adj[6, 0] = 1.0
    path = tmp_path / "adj.csv"
    np.savetxt(path, adj, delimiter=",")
    train(_cfg(shared_data, model="graph", graph=str(path), score="gcn", epochs=1), tmp_path / "g",
          progress=False, plot=False)
    state = torch.load(tmp_path / "g" / "best.pt", weights_only=True)["model"]
    assert state["edge_index"].size(1) == 9


def test_bad_data_is_an_error_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,oops\n")
    out = tmp_path / "never"
    assert cli.main(["forecast", "--data", str(bad), "--out", str(out), "--quiet"]) == 1
    assert "non-numeric value 'oops' in column 'a' at data row 1" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["forecast", "--data", str(tmp_path / "missing.csv"), "--quiet"]) == 1


def test_resume_checks(shared_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_cfg(shared_data), tmp_path / "empty", resume=True, progress=False)
    train(_cfg(shared_data, epochs=1), tmp_path / "r", progress=False, plot=False)
    with pytest.raises(ValueError, match="different settings.*lr"):
        train(_cfg(shared_data, epochs=2, lr=1e-3), tmp_path / "r", resume=True, progress=False)


def test_bad_settings_are_explained(shared_data):
    with pytest.raises(ValueError, match="divisible by heads"):
        train(_cfg(shared_data, d_model=10, heads=4), None)
    with pytest.raises(ValueError, match="--graph is used by --model graph"):
        train(_cfg(shared_data, graph="x.csv"), None)
    with pytest.raises(ValueError, match="look-back \\+ horizon"):
        train(_cfg(shared_data, seq_len=400), None)


def test_example_runs(shared_data, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["forecast_ett.py", "--data", str(shared_data / "ett" / "ETTh1.csv"),
                                      "--limit-rows", "600", "--pred-len", "24", "--epochs", "1", "--d-model", "16"])
    runpy.run_path(str(REPO / "examples" / "forecast_ett.py"), run_name="__main__")
    assert "MSE" in capsys.readouterr().out


@pytest.mark.slow
def test_etth1_itransformer_full_protocol(shared_data, tmp_path):
    cfg = ForecastConfig(data=str(shared_data / "ett" / "ETTh1.csv"), model="itransformer", seq_len=96, pred_len=96,
                         d_model=256, d_ff=256, layers=2, lr=1e-4, batch_size=32, epochs=10, patience=3, seed=2021)
    metrics = train(cfg, tmp_path, progress=False)
    assert metrics["test_windows"] == 2785
    assert metrics["mse"] <= 0.395 and metrics["mae"] <= 0.415  # published 0.386 / 0.405


def _results_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_forecast_results", REPO / "scripts" / "forecast_results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_results_script_commands_match_its_configs(tmp_path):
    script = _results_script()
    parser = cli.build_parser()
    for cell in script.cells():
        if cell.baseline:
            continue
        cfg = cell.config(2021, Path("../shared/data"))
        cfg.check()
        argv = script.cli_command(cell, 2021, "out").split()[1:]  # drop the program name
        args = parser.parse_args(argv)
        assert forecast.config_from_args(args) == cfg, cell.name
    text = script.write_page(script.cells(), tmp_path, tmp_path / "page.md")
    assert text.count("| not run") == len(script.cells())


def test_last_value_baseline_repeats_the_last_step():
    script = _results_script()
    x = torch.randn(2, 12, 3)
    y = script.LastValue(4)(x)
    assert y.shape == (2, 4, 3)
    torch.testing.assert_close(y, x[:, -1:].expand(-1, 4, -1))
