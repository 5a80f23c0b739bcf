"""Print docs/results_graphs.md rows (section 4) from ``graphformer classify --out`` run folders.

A folder without ``metrics.json`` but with ``runs.json`` (an interrupted ``--runs``) gives the splits
finished so far.

    python scripts/hetero_rows.py /tmp/hx/gs_m_l5_r3 /tmp/hx/gt_m_l5_r2 ...

Each row: dataset, model, blocks, test score mean ± sample std over the splits run, mean validation
score, splits, the published score, best epochs, seconds per split, and the command that
reproduces the folder's ``metrics.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from graphformer.classify import HEADLESS_MODELS

# Platonov et al. (ICLR 2023) Table 4: test ROC AUC (%) over the ten splits. Its GCN, GAT and GT rows have
# residual connections and LayerNorm around each layer: our gcn-res, gat-res and gt-res (the plain two-layer
# gcn / gat / transformer have no published counterpart).
PUBLISHED = {
    ("minesweeper", "gcn-res"): "89.75 ± 0.52",
    ("minesweeper", "gat-res"): "92.01 ± 0.68",
    ("minesweeper", "gt-res"): "91.85 ± 0.76",
    ("tolokers", "gcn-res"): "83.64 ± 0.67",
    ("tolokers", "gat-res"): "83.70 ± 0.47",
    ("tolokers", "gt-res"): "83.23 ± 0.64",
    ("minesweeper", "gat-sep"): "93.91 ± 0.35",
    ("minesweeper", "gt-sep"): "92.29 ± 0.47",
    ("tolokers", "gat-sep"): "83.78 ± 0.43",
    ("tolokers", "gt-sep"): "82.52 ± 0.92",
}
HEADER = (
    "| dataset | model | blocks | test (%) | val (%) | splits | published | best epochs | s / split | command |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)
FLAGS = ("model", "hidden", "heads", "layers", "lr", "epochs")


def row(folder: Path) -> str:
    """One markdown row for the run in ``folder``."""
    if (folder / "metrics.json").is_file():
        m = json.loads((folder / "metrics.json").read_text())
    else:  # an interrupted command: the splits finished so far (continue it with --resume)
        m = json.loads((folder / "runs.json").read_text())
        m["dataset"] = m["config"]["dataset"]
        m["metric"] = "roc_auc" if "test_roc_auc" in m["runs"][0] else "accuracy"
    metric, cfg, runs = m["metric"], m["config"], m["runs"]
    test = [100 * r[f"test_{metric}"] for r in runs]
    spread = f" ± {statistics.stdev(test):.2f}" if len(test) > 1 else ""  # no spread from one split
    val = statistics.mean(100 * r[f"val_{metric}"] for r in runs)
    secs = statistics.mean(r["seconds"] for r in runs)
    flags = " ".join(f"--{k} {cfg[k]}" for k in FLAGS if not (k == "heads" and cfg["model"] in HEADLESS_MODELS))
    cmd = (
        f"graphformer classify --dataset {m['dataset']} --root ../shared/data/heterophilous {flags} "
        f"--runs {len(runs)} --threads 1"
    )
    best = ", ".join(str(r["best_epoch"]) for r in runs)
    published = PUBLISHED.get((m["dataset"], cfg["model"]), "–")
    return (
        f"| {m['dataset']} | {cfg['model']} | {cfg['layers']} | {statistics.mean(test):.2f}{spread} | "
        f"{val:.2f} | {len(runs)} | {published} | {best} | {secs:.0f} | `{cmd}` |"
    )


if __name__ == "__main__":
    print(HEADER)
    for arg in sys.argv[1:]:
        print(row(Path(arg)))
