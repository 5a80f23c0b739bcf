"""benchmarks/hetero_step.py times like for like: its PyG GAT-sep computes our GAT-sep's function."""

import importlib.util
from pathlib import Path

import torch

from graphformer.models.graph import GATSep

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("hetero_step", ROOT / "benchmarks" / "hetero_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pyg_gat_sep_matches_ours_with_copied_weights():
    bench = _bench()
    torch.manual_seed(0)
    n, f, d, h, k = 30, 5, 16, 4, 3
    x = torch.randn(n, f)
    edge_index = torch.randint(0, n, (2, 120))
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    edge_index = torch.cat([edge_index, edge_index.flip(0)], 1).unique(dim=1)
    ours, ref = GATSep(f, d, k, num_layers=2, num_heads=h, dropout=0.2), bench.PygGATSep(f, d, k, h, 2, 0.2)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    bench.copy_sep_weights(ours, ref)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(x, edge_index), ref(x, edge_index), rtol=1e-5, atol=1e-5)


def test_sep_models_take_the_chosen_heterophilous_defaults_and_flags_override_them():
    from graphformer.classify import HETERO_DEFAULTS, ClassifyConfig

    for model in ("gat-sep", "gt-sep", "gat-res", "gt-res", "gcn-res"):
        cfg = ClassifyConfig(dataset="minesweeper", model=model).resolved()
        heads = 1 if model == "gcn-res" else 4
        assert (cfg.hidden, cfg.heads, cfg.layers, cfg.lr, cfg.epochs, cfg.dropout) == (64, heads, 5, 1e-3, 300, 0.2)
        cfg = ClassifyConfig(dataset="tolokers", model=model, layers=2, lr=3e-5, hidden=512, heads=8).resolved()
        assert (cfg.hidden, cfg.heads, cfg.layers, cfg.lr, cfg.epochs) == (512, 8, 2, 3e-5, 300)
    # the other models keep theirs
    assert ClassifyConfig(dataset="minesweeper", model="gat").resolved().layers == HETERO_DEFAULTS["gat"]["layers"] == 2
