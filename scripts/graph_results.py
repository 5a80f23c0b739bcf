"""Reproduce the graph results tables (docs/results_graphs.md).

Each job is one ``graphformer classify`` command line (printed in the page),
run in its own process with one CPU thread; its ``metrics.json`` lands in
``--runs/<job>/``. Finished jobs are not run again, so the script can be
stopped and restarted, and jobs can be run a few at a time or in parallel::

    python scripts/graph_results.py --list
    python scripts/graph_results.py --only 'cora-*' --root data/planetoid
    python scripts/graph_results.py --only 'synthetic-*' --workers 2
    python scripts/graph_results.py --table-only      # rewrite the page from finished jobs

``--root`` must hold ``Cora/raw`` and ``CiteSeer/raw`` (the 8 Planetoid raw
files each) in a writable folder (PyG caches ``processed/`` next to ``raw/``).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "results_graphs.md"
START, END = "<!-- results:{} start -->", "<!-- results:{} end -->"

# published accuracies (test, %): Kipf & Welling 2017 Table 2; Velickovic et al. 2018 Table 2
PUBLISHED = {
    ("Cora", "gcn"): "81.5",
    ("CiteSeer", "gcn"): "70.3",
    ("Cora", "gat"): "83.0 ± 0.7",
    ("CiteSeer", "gat"): "72.5 ± 0.7",
}
# PyG's own GCNConv / GATConv models, same settings and protocol, 10 seeds, on a machine of the same kind
PYG_MEASURED = {
    ("Cora", "gcn"): "82.0 ± 0.7",
    ("Cora", "gat"): "82.7 ± 1.0",
    ("CiteSeer", "gcn"): "70.9 ± 1.2",
    ("CiteSeer", "gat"): "71.8 ± 0.9",
}  # CiteSeer GAT: scripts/citeseer_gat.py --pyg, seeds 0-9


def jobs() -> dict[str, dict]:
    """name -> {"table", "args"}: every job of the page."""
    out = {}
    for dataset in ("Cora", "CiteSeer"):
        for model, runs in (("gcn", 10), ("gat", 10), ("transformer", 10), ("gps", 5)):
            out[f"{dataset.lower()}-{model}"] = {
                "table": "nodes",
                "args": ["--dataset", dataset, "--root", "{root}", "--model", model, "--runs", str(runs)],
            }
    synthetic = [
        ("transformer", "none", "complete"),
        ("transformer", "laplacian", "complete"),
        ("transformer", "random-walk", "complete"),
        ("transformer", "shortest-path", "complete"),
        ("transformer", "degree", "complete"),
        ("transformer", "degree+shortest-path", "complete"),
        ("transformer", "random-walk", "edges"),
        ("gps", "random-walk", None),
        ("gcn", "none", None),
        ("gat", "none", None),
    ]
    synthetic.append(("transformer", "laplacian", "complete", 300))  # still improving at epoch 100
    for model, encoding, attention, *epochs in synthetic:
        name = f"synthetic-{model}-{encoding}" + (f"-{attention}" if attention else "")
        args = ["--dataset", "synthetic-structures", "--model", model, "--encoding", encoding, "--runs", "3"]
        if attention:
            args += ["--attention", attention]
        if epochs:
            name += f"-{epochs[0]}epochs"
            args += ["--epochs", str(epochs[0])]
        out[name] = {"table": "graphs", "args": args}
    return out


def command(job: dict, root: str | None = None) -> list[str]:
    """The ``graphformer classify`` arguments of a job (``{root}`` filled in when given)."""
    args = [a.replace("{root}", root) if root else a for a in job["args"]]
    return ["graphformer", "classify", *args, "--threads", "1", "--no-progress"]


def run_job(name: str, job: dict, root: str, runs_dir: Path, force: bool = False) -> None:
    """Run one job in a subprocess (``nice -n 10``), leaving ``metrics.json`` and ``log.txt`` in its folder.

    A job finished or running (a ``running`` marker in its folder, left by another invocation) is skipped
    unless ``force``.
    """
    out = runs_dir / name
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "running"
    if not force and ((out / "metrics.json").is_file() or marker.exists()):
        print(f"{name}: skipped ({'finished' if (out / 'metrics.json').is_file() else 'running elsewhere'})")
        return
    marker.touch()
    cmd = ["nice", "-n", "10", sys.executable, "-m", "graphformer", *command(job, root)[1:], "--out", str(out)]
    with open(out / "log.txt", "w") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        finally:
            marker.unlink(missing_ok=True)
    status = "done" if rc == 0 else f"failed (exit {rc}), see {out / 'log.txt'}"
    print(f"{name}: {status}", flush=True)


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(runs_dir: Path) -> dict[str, str]:
    """The markdown tables, by name, from the finished jobs."""
    rows = {"nodes": [], "graphs": []}
    for name, job in jobs().items():
        path = runs_dir / name / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        cfg = m["config"]
        per_run = sum(r["seconds"] for r in m["runs"]) / len(m["runs"])
        cmd = "`" + shlex.join(command(job, "data/planetoid")[:-1]) + "`"
        if job["table"] == "nodes":
            key = (m["dataset"], m["model"])
            rows["nodes"].append(
                f"| {m['dataset']} | {m['model']} | {_pct(m['accuracy_mean'], m['accuracy_std'])} | "
                f"{100 * m['val_accuracy_mean']:.1f} | {len(m['runs'])} | {PUBLISHED.get(key, '–')} | "
                f"{PYG_MEASURED.get(key, '–')} | {cfg['encoding']} | {per_run:.0f} | {cmd} |"
            )
        else:
            attention = cfg.get("attention") or (
                "complete" if m["model"] == "transformer" else "edges + complete" if m["model"] == "gps" else "edges"
            )
            rows["graphs"].append(
                f"| {m['model']} | {attention} | {cfg['encoding']} | {cfg['epochs']} | "
                f"{_pct(m['accuracy_mean'], m['accuracy_std'])} | {100 * m['val_accuracy_mean']:.1f} | "
                f"{len(m['runs'])} | {per_run:.0f} | {cmd} |"
            )
    head = {
        "nodes": [
            "| dataset | model | test accuracy (%) | val (%) | seeds | published | PyG, measured here "
            "| encoding | s / run | command |",
            "|" + " --- |" * 10,
        ],
        "graphs": [
            "| model | attention over | encoding | epochs | test accuracy (%) | val (%) | seeds | s / run | command |",
            "|" + " --- |" * 9,
        ],
    }
    return {k: "\n".join(head[k] + v) for k, v in rows.items()}


def write_page(runs_dir: Path) -> None:
    """Replace the blocks between the results markers of docs/results_graphs.md."""
    text = PAGE.read_text()
    for name, body in table(runs_dir).items():
        start, end = START.format(name), END.format(name)
        if start not in text or end not in text:
            raise ValueError(f"{PAGE} has no {start} ... {end} block")
        head, rest = text.split(start, 1)
        text = head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]
    PAGE.write_text(text)
    print(f"wrote {PAGE} ({platform.processor() or platform.machine()})")


def main(argv: list[str] | None = None) -> None:
    """Run the selected jobs, then rewrite the page."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(REPO / "data" / "planetoid"), help="folder with Cora/raw, CiteSeer/raw")
    parser.add_argument("--runs", default=str(REPO / "runs" / "graphs"), help="where each job's folder goes")
    parser.add_argument("--only", nargs="*", help="job names or glob patterns, run in this order (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="jobs run at the same time (one thread each)")
    parser.add_argument("--list", action="store_true", help="list the jobs and their commands")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the page from finished jobs")
    parser.add_argument("--force", action="store_true", help="run jobs again even when finished")
    args = parser.parse_args(argv)

    selected = {n: j for p in (args.only or ["*"]) for n, j in jobs().items() if fnmatch.fnmatch(n, p)}
    runs_dir = Path(args.runs)
    if args.list:
        for name, job in selected.items():
            done = "done" if (runs_dir / name / "metrics.json").is_file() else "    "
            print(f"{done}  {name:40s} {shlex.join(command(job, args.root))}")
        return
    if not args.table_only:
        todo = [(n, j) for n, j in selected.items() if args.force or not (runs_dir / n / "metrics.json").is_file()]
        with ThreadPoolExecutor(max(args.workers, 1)) as pool:
            list(pool.map(lambda item: run_job(item[0], item[1], args.root, runs_dir, args.force), todo))
    write_page(runs_dir)


if __name__ == "__main__":
    main()
