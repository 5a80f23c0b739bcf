import argparse
import json
import math
import runpy
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graphformer import train as engine
from graphformer.train import GlobalBatchSampler, RunDir, TrainConfig, option

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddp import launch  # noqa: E402


def _problem(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    return x, y


def _fit(cfg, run=None, progress=False, dropout=0.0, evaluate=True):
    x, y = _problem()
    engine.seed_everything(cfg.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(dropout), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    )
    result = engine.fit(
        model,
        cfg,
        loss_fn=lambda m, b: F.mse_loss(m(b[0]).squeeze(-1), b[1]),
        train_size=len(x),
        get_batch=lambda i: (x[i], y[i]),
        evaluate=(lambda m: {"loss": F.mse_loss(m(x[:30]).squeeze(-1), y[:30])}) if evaluate else None,
        run=run,
        progress=progress,
    )
    return model, result


# ----------------------------------------------------------------- data order
@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n,batch,drop_last", [(10, 4, False), (10, 4, True), (7, 3, False), (5, 8, False)])
def test_process_shares_make_up_the_one_process_batches(world, n, batch, drop_last):
    one = GlobalBatchSampler(n, batch, seed=3, drop_last=drop_last)
    parts = [GlobalBatchSampler(n, batch, seed=3, drop_last=drop_last, rank=r, world_size=world) for r in range(world)]
    for epoch in range(3):
        ref = list(one.epoch(epoch))
        shares = [list(p.epoch(epoch)) for p in parts]
        assert all(len(s) == len(ref) for s in shares)
        for b, (indices, weight) in enumerate(ref):
            assert weight == 1.0
            got = torch.cat([shares[r][b][0] for r in range(world) if shares[r][b][1] > 0])
            assert got.tolist() == indices.tolist()
            # DDP averages the W weighted share means: weights / W must add up to 1 (shares of the batch)
            assert sum(shares[r][b][1] for r in range(world)) / world == pytest.approx(1.0)
            for r in range(world):
                share, w = shares[r][b]
                assert w == pytest.approx(len(share) * world / len(indices)) if w > 0 else len(share) == 1


def test_data_order_comes_from_seed_and_epoch_only():
    s = GlobalBatchSampler(20, 5, seed=1)
    first = [b.tolist() for b in s.global_batches(0)]
    torch.manual_seed(123)
    torch.rand(10)  # whatever touches the global random state
    assert [b.tolist() for b in s.global_batches(0)] == first
    assert [b.tolist() for b in s.global_batches(1)] != first
    assert sorted(sum(first, [])) == list(range(20))
    assert [b.tolist() for b in GlobalBatchSampler(20, 5, seed=2).global_batches(0)] != first


def test_sampling_with_replacement_is_seeded_and_shared():
    one = GlobalBatchSampler(50, 6, seed=4, replacement=True, batches_per_epoch=7)
    two = [
        GlobalBatchSampler(50, 6, seed=4, replacement=True, batches_per_epoch=7, rank=r, world_size=2) for r in range(2)
    ]
    ref = list(one.epoch(2))
    assert len(ref) == 7 and all(b.numel() == 6 and int(b.max()) < 50 for b, _ in ref)
    got = [torch.cat([two[0].local(b)[0], two[1].local(b)[0]]) for b in two[0].global_batches(2)]
    assert [g.tolist() for g in got] == [b.tolist() for b, _ in ref]
    assert [b.tolist() for b, _ in one.epoch(2, start=3)] == [b.tolist() for b, _ in ref[3:]]


def test_too_few_samples_for_one_batch_is_explained():
    with pytest.raises(ValueError, match="--batch-size"):
        GlobalBatchSampler(3, 4, drop_last=True)


# ----------------------------------------------------------------- schedules
def test_learning_rate_schedules_follow_their_formulas():
    cos = TrainConfig(steps=110, lr=1.0, min_lr=0.1, warmup_steps=10, schedule="cosine")
    assert engine.lr_at(cos, 0, 110) == pytest.approx(1 / 11)
    assert engine.lr_at(cos, 9, 110) == pytest.approx(10 / 11)
    assert engine.lr_at(cos, 10, 110) == pytest.approx(1.0)
    assert engine.lr_at(cos, 60, 110) == pytest.approx(0.1 + 0.9 * 0.5)
    assert engine.lr_at(cos, 110, 110) == pytest.approx(0.1)
    lin = TrainConfig(steps=10, lr=1.0, min_lr=0.0, schedule="linear")
    assert engine.lr_at(lin, 5, 10) == pytest.approx(0.5)
    halve = TrainConfig(epochs=5, lr=1.0, schedule="halve")
    assert [engine.lr_at(halve, 0, 50, e) for e in range(4)] == [1.0, 1.0, 0.5, 0.25]


def test_fit_applies_the_schedule_to_the_optimizer():
    cfg = TrainConfig(epochs=3, batch_size=30, lr=0.1, schedule="halve", seed=0)
    _, result = _fit(cfg)
    assert [h["lr"] for h in result.history] == [0.1, 0.1, 0.05]
    assert [h["step"] for h in result.history] == [3, 6, 9]


# ----------------------------------------------------------------- trust
def test_results_do_not_depend_on_the_progress_bar():
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.01, seed=0)
    a, ra = _fit(cfg, progress=True, dropout=0.3)
    b, rb = _fit(cfg, progress=False, dropout=0.3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert ra.history[0]["train_loss"] == rb.history[0]["train_loss"]


def test_non_finite_loss_stops_the_run():
    with pytest.raises(engine.NonFiniteLossError, match="--lr"):
        _fit(TrainConfig(epochs=5, batch_size=16, lr=1e30, seed=0))


def test_strict_json_has_no_nan():
    text = engine.dumps({"a": float("nan"), "b": [1.0, float("inf")], "c": torch.tensor([0.5])})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": [0.5]}
    assert "NaN" not in text and "Infinity" not in text


def test_run_folder_is_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        RunDir(tmp_path / "file").prepare()
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    (run / "stale.png").write_text("old")
    with pytest.raises(ValueError, match="--resume.*--overwrite"):
        RunDir(run).prepare()
    with pytest.raises(FileNotFoundError, match="last.pt"):
        RunDir(run, resume=True).prepare()
    RunDir(run, overwrite=True).prepare()
    assert list(run.iterdir()) == []  # the old run's files, stale ones included, are gone
    other = tmp_path / "notes"
    other.mkdir()
    (other / "log.txt").write_text("precious")
    for overwrite in (False, True):  # not a run: used as it is, nothing deleted
        RunDir(other, overwrite=overwrite).prepare()
        assert (other / "log.txt").read_text() == "precious"
    RunDir(tmp_path / "new").prepare()  # a new folder is fine


def test_resume_ends_as_the_uninterrupted_run(tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.01, seed=0)
    straight, rs = _fit(cfg, dropout=0.2)
    first = RunDir(tmp_path / "r")
    first.prepare()
    _fit(TrainConfig(epochs=2, batch_size=16, lr=0.01, seed=0), run=first, dropout=0.2)
    again = RunDir(tmp_path / "r", resume=True)
    again.prepare()
    resumed, rr = _fit(cfg, run=again, dropout=0.2)
    assert [h["train_loss"] for h in rr.history] == [h["train_loss"] for h in rs.history]
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    ckpt = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    assert ckpt["step"] == rs.best_step
    with pytest.raises(ValueError, match="different settings"):
        _fit(TrainConfig(epochs=4, batch_size=8, lr=0.01, seed=0), run=RunDir(tmp_path / "r", resume=True))


def test_steps_with_periodic_evaluation_and_early_stopping():
    cfg = TrainConfig(epochs=None, steps=40, eval_every=5, batch_size=16, lr=1e-9, patience=2, seed=0)
    _, result = _fit(cfg)
    assert [h["step"] for h in result.history][:2] == [5, 10]
    assert result.stopped_early and len(result.history) <= 8


def test_gradient_clipping_bounds_the_update():
    x, y = _problem()
    cfg = TrainConfig(epochs=1, batch_size=90, lr=1.0, optimizer="adam", grad_clip=1e-3, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    seen = []

    def loss_fn(m, b):
        loss = F.mse_loss(m(b[0]).squeeze(-1), b[1])
        return loss

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())
            return super().step(closure)

    engine.fit(
        model,
        cfg,
        loss_fn=loss_fn,
        train_size=90,
        get_batch=lambda i: (x[i], y[i]),
        optimizer=Spy(model.parameters(), lr=1.0),
        progress=False,
    )
    assert seen and seen[0] <= 1e-3 * (1 + 1e-5)


def test_bf16_autocast_trains_on_cpu():
    cfg = TrainConfig(epochs=2, batch_size=30, lr=0.01, precision="bf16", seed=0)
    _, result = _fit(cfg)
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    with engine.autocast(torch.device("cpu"), "bf16"):
        assert torch.nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.bfloat16


def test_device_spec_errors_name_the_flag():
    assert engine.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device"):
        engine.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            engine.resolve_device("cuda:0")
        assert engine.resolve_device("auto") == torch.device("cpu")


def test_default_threads_never_oversubscribe(monkeypatch):
    monkeypatch.setattr(engine, "_cpu_count", lambda: 8)
    monkeypatch.setattr(engine.os, "getloadavg", lambda: (7.2, 0, 0))
    assert engine.default_threads() == 1
    monkeypatch.setattr(engine.os, "getloadavg", lambda: (0.0, 0, 0))
    assert engine.default_threads() == 8
    assert engine.default_threads(local_processes=4) == 2
    monkeypatch.setattr(engine.os, "getloadavg", lambda: (4.0, 0, 0))
    assert engine.default_threads() == 4


# ----------------------------------------------------------------- flags from the config
@dataclass(kw_only=True)
class _Cfg(TrainConfig):
    model: str = option("a", "the model", choices=("a", "b"))
    width: int | None = option(None, "model b only", applies=(lambda c: c.model == "b", "--model b"))
    causal: bool = option(False, "a switch")


def test_flags_come_from_the_config_dataclass():
    parser = argparse.ArgumentParser()
    engine.add_config_arguments(parser, _Cfg)
    cfg, given = engine.config_from_args(
        _Cfg,
        parser.parse_args(["--batch-size", "7", "--causal", "--model", "b", "--width", "3", "--grad-clip", "none"]),
    )
    assert (cfg.batch_size, cfg.causal, cfg.model, cfg.width, cfg.grad_clip, cfg.lr) == (7, True, "b", 3, None, 1e-3)
    assert given == {"batch_size", "causal", "model", "width", "grad_clip"}
    engine.check_applicable(cfg, given)
    cfg, given = engine.config_from_args(_Cfg, parser.parse_args(["--width", "3"]))
    with pytest.raises(ValueError, match="--width applies to --model b"):
        engine.check_applicable(cfg, given)
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp8"])
    cfg, _ = engine.config_from_args(_Cfg, parser.parse_args(["--steps", "50"]))
    assert (cfg.epochs, cfg.steps) == (None, 50)
    cfg.check()


def test_impossible_settings_name_the_flag():
    for kwargs, flag in [
        ({"lr": float("nan")}, "--lr"),
        ({"batch_size": 0}, "--batch-size"),
        ({"steps": 5}, "exactly one"),
        ({"epochs": None, "steps": 5, "schedule": "halve"}, "halve"),
        ({"eval_every": 3}, "--eval-every"),
        ({"device": "tpu"}, "--device"),
    ]:
        with pytest.raises(ValueError, match=flag):
            TrainConfig(**kwargs).check()


# ----------------------------------------------------------------- many processes
WORKER = textwrap.dedent("""
    import json, sys
    import torch, torch.nn.functional as F
    from graphformer import train as engine

    out, fail_rank, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
    cfg = engine.TrainConfig(epochs=3, batch_size=8, lr=0.01, seed=0, device="cpu", threads=1)
    with engine.distributed("cpu", timeout_s=60) as ctx:
        run = engine.RunDir(out, is_main=ctx.is_main)
        run.prepare()
        engine.seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        seen = []

        def evaluate(m):
            part = torch.tensor(list(engine.shard(len(x), ctx)), dtype=torch.long)
            seen.append(engine.all_gather_cat(part, ctx))
            err = (m(x[part]).squeeze(-1) - y[part]).square().sum().reshape(1)
            count = torch.tensor([float(len(part))])
            total = engine.all_reduce_sum(torch.cat([err, count]), ctx)
            return {"loss": float(total[0] / total[1]), "count": float(total[1])}

        def loss_fn(m, b):
            if ctx.rank == fail_rank:
                raise ValueError("rank %d fails on purpose" % ctx.rank)
            return F.mse_loss(m(b[0]).squeeze(-1), b[1])

        result = engine.fit(model, cfg, ctx, loss_fn=loss_fn, train_size=n, get_batch=lambda i: (x[i], y[i]),
                            evaluate=evaluate, run=run, progress=False)
        if ctx.is_main:
            torch.save({k: v for k, v in model.state_dict().items()}, out + "/weights.pt")
            json.dump({"best": result.best, "seen": [s.tolist() for s in seen]}, open(out + "/result.json", "w"))
""")


def _worker(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return str(path)


def test_two_processes_end_with_the_one_process_weights(tmp_path, monkeypatch):
    worker = _worker(tmp_path)
    n = 45  # 6 batches of 8, the last one holds 5: uneven shares
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sys, "argv", [worker, str(tmp_path / "one"), "-1", str(n)])
    runpy.run_path(worker, run_name="__main__")  # the one-process run, here
    two = launch([worker, str(tmp_path / "two"), "-1", str(n)], 2, timeout_s=120)
    assert [r[0] for r in two] == [0, 0], [r[2][-2000:] for r in two]
    a = torch.load(tmp_path / "one" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "weights.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)
    ra = json.loads((tmp_path / "one" / "result.json").read_text())
    rb = json.loads((tmp_path / "two" / "result.json").read_text())
    assert rb["best"]["loss"] == pytest.approx(ra["best"]["loss"], rel=1e-4)
    # evaluation saw every sample exactly once, on each number of processes
    assert rb["best"]["count"] == ra["best"]["count"] == n
    assert all(sorted(s) == list(range(n)) for s in rb["seen"])
    # only rank 0 wrote: one set of files, no temporary leftovers
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "last.pt", "result.json", "weights.pt"]


@pytest.mark.slow
def test_a_failure_on_one_process_ends_the_run_with_its_error(tmp_path):
    worker = _worker(tmp_path)
    logs = launch([worker, str(tmp_path / "f"), "1", "45"], 2, timeout_s=100, grace_s=60)
    codes = [r[0] for r in logs]
    assert all(c not in (0, -9) for c in codes), (codes, [r[2][-1500:] for r in logs])  # nobody hung
    assert "rank 1 fails on purpose" in logs[1][2]
