import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from graphformer import cli, forecast
from graphformer import train as engine
from graphformer.forecast import ForecastConfig, evaluate, load_checkpoint, train

REPO = Path(__file__).resolve().parents[1]


def _quick(shared_data, out, *extra):
    return [
        "forecast",
        "--data",
        str(shared_data / "ett" / "ETTh1.csv"),
        "--limit-rows",
        "500",
        "--seq-len",
        "24",
        "--pred-len",
        "12",
        "--d-model",
        "16",
        "--d-ff",
        "16",
        "--heads",
        "2",
        "--batch-size",
        "16",
        "--quiet",
        "--threads",
        "1",
        "--out",
        str(out),
        *extra,
    ]


def _cfg(shared_data, **kw):
    base = dict(
        data=str(shared_data / "ett" / "ETTh1.csv"),
        limit_rows=500,
        seq_len=24,
        pred_len=12,
        d_model=16,
        d_ff=16,
        heads=2,
        batch_size=16,
        epochs=2,
        threads=1,
    )
    return ForecastConfig(**{**base, **kw})


def test_cli_end_to_end(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_quick(shared_data, out, "--epochs", "2", "--original-units")) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    written = json.loads((out / "metrics.json").read_text())
    for key in (
        "mse",
        "mae",
        "mse_per_step",
        "mae_per_step",
        "rmse_original",
        "mae_original",
        "test_windows",
        "best_epoch",
    ):
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
    real_save = engine.save_torch
    calls = []

    def interrupt_on_second_epoch(obj, path):
        calls.append(path.name)
        if len(calls) > 2:  # epoch 1 wrote best.pt and last.pt; stop inside epoch 2's write
            path.with_name(f".{path.name}.partial").write_bytes(b"half")
            raise KeyboardInterrupt
        real_save(obj, path)

    monkeypatch.setattr(engine, "save_torch", interrupt_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(shared_data, epochs=2), out, progress=False, plot=False)
    monkeypatch.setattr(engine, "save_torch", real_save)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["history"][-1]["epoch"] == 1 and len(state["history"]) == 1
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
    code = cli.main(
        _quick(
            shared_data, out, "--model", "graph", "--graph", str(shared_data / "traffic" / "los_loop" / "los_adj.csv")
        )
    )
    assert code == 1
    assert "207 nodes but the series has 7 variables" in capsys.readouterr().err
    assert not out.exists()


def test_graph_file_drives_the_graph_model(shared_data, tmp_path):
    adj = np.eye(7)
    adj[0, 6] = adj[6, 0] = 1.0
    path = tmp_path / "adj.csv"
    np.savetxt(path, adj, delimiter=",")
    train(
        _cfg(shared_data, model="graph", graph=str(path), score="gcn", epochs=1),
        tmp_path / "g",
        progress=False,
        plot=False,
    )
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
    with pytest.raises(ValueError, match="divisible by --heads"):
        train(_cfg(shared_data, d_model=10, heads=4), None)
    with pytest.raises(ValueError, match="--graph applies to --model graph"):
        train(_cfg(shared_data, graph="x.csv"), None)
    with pytest.raises(ValueError, match="look-back \\+ horizon"):
        train(_cfg(shared_data, seq_len=400), None)


def test_example_runs(shared_data, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "forecast_ett.py",
            "--data",
            str(shared_data / "ett" / "ETTh1.csv"),
            "--limit-rows",
            "600",
            "--pred-len",
            "24",
            "--epochs",
            "1",
            "--d-model",
            "16",
        ],
    )
    runpy.run_path(str(REPO / "examples" / "forecast_ett.py"), run_name="__main__")
    assert "MSE" in capsys.readouterr().out


@pytest.mark.slow
def test_etth1_itransformer_full_protocol(shared_data, tmp_path):
    cfg = ForecastConfig(
        data=str(shared_data / "ett" / "ETTh1.csv"),
        model="itransformer",
        seq_len=96,
        pred_len=96,
        d_model=256,
        d_ff=256,
        layers=2,
        lr=1e-4,
        batch_size=32,
        epochs=10,
        patience=3,
        seed=2021,
    )
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


# ---------------------------------------------------------------- runs you can trust (engine)
def _synthetic_csv(path, rows=240, sep=",", date_column="date", date_format="%Y-%m-%d %H:%M"):
    t = np.arange(rows)
    values = np.stack([np.sin(t / 6), np.cos(t / 9), np.sin(t / 4) * 0.5 + 0.01 * t], axis=1)
    dates = np.datetime64("2020-01-01T00:00") + t * np.timedelta64(1, "h")
    with open(path, "w") as f:
        f.write(sep.join([date_column, "a", "b", "OT"]) + "\n")
        for d, row in zip(dates, values):
            stamp = d.astype(object).strftime(date_format)
            f.write(sep.join([stamp, *(f"{v:.6f}" for v in row)]) + "\n")
    return path


def _tiny(data, out=None, *extra):
    argv = [
        "forecast",
        "--data",
        str(data),
        "--seq-len",
        "12",
        "--pred-len",
        "4",
        "--d-model",
        "8",
        "--d-ff",
        "8",
        "--heads",
        "2",
        "--batch-size",
        "16",
        "--epochs",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
        *extra,
    ]
    return argv + (["--out", str(out)] if out is not None else [])


def _last_json(capsys):
    text = capsys.readouterr().out.strip().splitlines()[-1]
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_quiet_and_the_progress_bar_do_not_change_results(tmp_path, capsys):
    data = _synthetic_csv(tmp_path / "s.csv")
    assert cli.main(_tiny(data, None, "--quiet")) == 0
    quiet = _last_json(capsys)
    assert cli.main(_tiny(data, None)) == 0
    shown = _last_json(capsys)
    assert shown["mse"] == quiet["mse"] and shown["mae"] == quiet["mae"]


def test_a_diverging_run_stops_with_an_error_and_no_nan(tmp_path, capsys):
    data = _synthetic_csv(tmp_path / "s.csv")
    code = cli.main(_tiny(data, tmp_path / "run", "--lr", "1e6", "--quiet", "--no-plot"))
    captured = capsys.readouterr()
    assert code == 1
    assert "training loss is" in captured.err and "--lr" in captured.err
    assert "NaN" not in captured.out
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_metrics_json_is_strict(tmp_path, capsys):
    data = _synthetic_csv(tmp_path / "s.csv")
    assert cli.main(_tiny(data, tmp_path / "run", "--split", "tgcn", "--quiet", "--no-plot", "--patience", "none")) == 0
    printed = _last_json(capsys)
    assert printed["best_val_loss"] is None  # no validation block: null, not NaN
    text = (tmp_path / "run" / "metrics.json").read_text()
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(c))


def test_an_existing_run_folder_needs_resume_or_overwrite(tmp_path, capsys):
    data = _synthetic_csv(tmp_path / "s.csv")
    out = tmp_path / "run"
    assert cli.main(_tiny(data, out, "--quiet")) == 0
    assert (out / "forecast.png").is_file()
    before = (out / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(_tiny(data, out, "--quiet", "--no-plot")) == 1
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (out / "metrics.json").stat().st_mtime_ns == before  # nothing was touched
    assert cli.main(_tiny(data, out, "--quiet", "--no-plot", "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.json"]  # no stale plot
    (tmp_path / "file").write_text("x")
    assert cli.main(_tiny(data, tmp_path / "file", "--quiet")) == 1


def test_csv_date_column_format_and_separator(tmp_path, capsys):
    plain = _synthetic_csv(tmp_path / "plain.csv")
    odd = _synthetic_csv(tmp_path / "odd.csv", sep=";", date_column="time", date_format="%d.%m.%Y %H:%M")
    assert cli.main(_tiny(plain, None, "--quiet")) == 0
    ref = _last_json(capsys)
    assert (
        cli.main(_tiny(odd, None, "--quiet", "--sep", ";", "--date-column", "time", "--date-format", "%d.%m.%Y %H:%M"))
        == 0
    )
    got = _last_json(capsys)
    assert got["mse"] == pytest.approx(ref["mse"], rel=1e-6)
    assert cli.main(_tiny(odd, None, "--quiet")) == 1
    assert "--sep ';'" in capsys.readouterr().err
    assert cli.main(_tiny(odd, None, "--quiet", "--sep", ";", "--date-column", "when")) == 1
    assert "--date-column 'when' is not a column" in capsys.readouterr().err
    assert (
        cli.main(_tiny(odd, None, "--quiet", "--sep", ";", "--date-column", "time", "--date-format", "%Y-%m-%d")) == 1
    )
    assert "--date-format" in capsys.readouterr().err


def test_missing_value_hint_names_the_cli_flag(tmp_path, capsys):
    path = tmp_path / "gap.csv"
    path.write_text("date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,\n2020-01-01 02:00,3\n")
    assert cli.main(["forecast", "--data", str(path), "--quiet"]) == 1
    assert "--fill ffill" in capsys.readouterr().err


def test_flags_that_do_not_apply_are_errors(tmp_path, capsys):
    data = _synthetic_csv(tmp_path / "s.csv")
    for extra, flag in [
        (["--patch-len", "4"], "--patch-len applies to --model patch"),
        (["--knn", "2"], "--knn applies to --model graph"),
        (["--causal"], "--causal applies to --model temporal"),
        (["--layout", "lstnet"], "--layout applies to header-less .txt"),
        (["--no-plot"], "--no-plot applies with --out"),
    ]:
        assert cli.main(_tiny(data, None, "--quiet", *extra)) == 1, extra
        assert flag in capsys.readouterr().err


def test_example_without_data_explains_where_to_get_it(tmp_path, monkeypatch, capsys):
    # a fresh clone: no ../shared next to the repository, no GRAPHFORMER_DATA
    copy = tmp_path / "clone" / "examples" / "forecast_ett.py"
    copy.parent.mkdir(parents=True)
    copy.write_text((REPO / "examples" / "forecast_ett.py").read_text())
    monkeypatch.delenv("GRAPHFORMER_DATA", raising=False)
    monkeypatch.setattr(sys, "argv", [str(copy)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(copy), run_name="__main__")
    assert exit_info.value.code == 2
    assert "--data" in capsys.readouterr().err


def test_device_and_precision_flags(tmp_path, capsys):
    data = _synthetic_csv(tmp_path / "s.csv")
    assert cli.main(_tiny(data, None, "--quiet", "--precision", "bf16")) == 0
    got = _last_json(capsys)
    assert got["precision"] == "bf16" and got["device"] == "cpu" and np.isfinite(got["mse"])
    if not torch.cuda.is_available():
        assert cli.main(_tiny(data, None, "--quiet", "--device", "cuda")) == 1
        assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_forecast_as_one(tmp_path):
    from ddp import launch

    data = _synthetic_csv(tmp_path / "s.csv")
    args = ["-m", "graphformer", *_tiny(data, None, "--quiet", "--dropout", "0", "--no-plot")]
    runs = {}
    for world in (1, 2):
        out = tmp_path / f"w{world}"
        logs = launch([*args, "--out", str(out)], world, timeout_s=180)
        assert [r[0] for r in logs] == [0] * world, [r[2][-2000:] for r in logs]
        assert logs[0][1].strip() and all(not r[1].strip() for r in logs[1:])  # only rank 0 prints
        runs[world] = (
            json.loads((out / "metrics.json").read_text()),
            torch.load(out / "best.pt", weights_only=True)["model"],
        )
    (m1, w1), (m2, w2) = runs[1], runs[2]
    assert m2["processes"] == 2 and m2["test_windows"] == m1["test_windows"]
    assert m2["mse"] == pytest.approx(m1["mse"], rel=1e-4) and m2["mae"] == pytest.approx(m1["mae"], rel=1e-4)
    for k in w1:
        if k.endswith("k_proj.bias"):
            # softmax ignores a shift shared by all keys: this bias's exact gradient is 0, and Adam turns the
            # rounding noise of that 0 (which differs with the summation order) into steps of up to lr each
            steps = m1["epochs_run"] * m1["train_windows"] // 16
            assert (w1[k] - w2[k]).abs().max() <= 1e-4 * steps
            continue
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-5)
    # resume under two processes ends as the uninterrupted run
    out = tmp_path / "r"
    logs = launch([*args, "--out", str(out), "--epochs", "1"], 2, timeout_s=180)
    assert [r[0] for r in logs] == [0, 0]
    logs = launch([*args, "--out", str(out), "--resume"], 2, timeout_s=180)
    assert [r[0] for r in logs] == [0, 0], [r[2][-2000:] for r in logs]
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["mse"] == pytest.approx(m2["mse"], rel=1e-6)


# ------------------------------------------------------------ the forecasting models of the full table


def test_full_table_commands_match_their_configs(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    from graphformer import cli, forecast

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("_forecast_results_full", repo / "scripts" / "forecast_results.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    parser = cli.build_parser()
    cells = script.full_cells()
    assert {c.settings["model"] for c in cells} == {"cycle", "itransformer", "autoformer"}
    for cell in cells:
        cfg = cell.config(2021, Path("../shared/data"))
        cfg.check()
        args = parser.parse_args(script.cli_command(cell, 2021, "out").split()[1:])
        assert forecast.config_from_args(args) == cfg, cell.name
    # every dataset x horizon row is in the table; a row without runs says so and names its command
    page = tmp_path / "page.md"
    page.write_text("# Forecasting results\n\nkept\n")
    block = script.write_full_section(tmp_path, page)
    rows = [line for line in block.splitlines() if line.startswith("| ") and "not run" in line]
    assert len(rows) == sum(len(v[2]) for v in script.FULL.values()) == 24
    assert "kept" in page.read_text()
    script.write_full_section(tmp_path, page)  # replaced in place, not appended twice
    assert page.read_text().count(script.FULL_START) == 1


@pytest.mark.parametrize("model", ["autoformer", "cycle", "tqnet"])
def test_new_models_train_through_the_cli_and_reload(tmp_path, model):
    """The CLI's model choices: phase marks for the periodic models, a checkpoint that reproduces the test."""
    from conftest import DATA, require_data
    from graphformer import forecast

    path = require_data(DATA / "illness" / "national_illness.csv")
    extra = {"label_len": 18} if model == "autoformer" else {}  # --label-len is an autoformer setting
    cfg = forecast.ForecastConfig(
        data=str(path),
        model=model,
        seq_len=36,
        pred_len=24,
        epochs=1,
        d_model=16,
        d_ff=16,
        heads=4,
        layers=1,
        lr=1e-3,
        **extra,
    )
    metrics = forecast.train(cfg, tmp_path, progress=False, plot=False)
    data = forecast.load_data(cfg)
    expected_marks = 4 + (model != "autoformer")  # the periodic models get the phase column
    assert data.num_time_features == expected_marks
    if model != "autoformer":
        assert int(data.test.marks[0, -1]) == data.test.offset % 52  # ILI: a year of weeks
    net, saved, _ = forecast.load_checkpoint(tmp_path / "best.pt")
    assert saved.model == model and type(net) is type(forecast.build_model(cfg, 7, expected_marks))
    again = forecast.evaluate(net, data.test.loader(32))
    assert again["mse"] == pytest.approx(metrics["mse"], rel=1e-5)
