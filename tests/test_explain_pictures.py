"""graphformer.explain.pictures: every head drawn, tokens as their own text, a colour bar, exact file names."""

import json
import os
import sys

import networkx as nx
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from graphformer import cli, explain  # noqa: E402
from graphformer.explain import pictures  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
TOKENS = ["我", "爱", "你"]


def _run_cli(argv, capsys):
    code = cli.main(["explain", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _heatmaps(fig):
    return [ax for ax in fig.axes if ax.images and ax.get_title().endswith(("a_ij", "(grey = no edge)"))]


def test_every_head_is_drawn_with_its_weights():
    t = explain.trace("the cat sat on the mat", d_model=4, num_heads=2, seed=1)
    fig = explain.trace_figure(t)
    maps = _heatmaps(fig)
    assert [ax.get_title().split(":")[0] for ax in maps] == ["head 0", "head 1"]
    for h, ax in enumerate(maps):
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), t.weights[h].numpy())
        assert [tick.get_text() for tick in ax.get_yticklabels()] == t.tokens
    only = _heatmaps(explain.trace_figure(t, head=1))
    assert len(only) == 1 and only[0].get_title().startswith("head 1")
    with pytest.raises(ValueError, match="head must"):
        explain.trace_figure(t, head=2)


def test_picture_has_a_colour_bar_a_legend_and_the_formula():
    t = explain.trace("a b c", score="gcn")
    fig = explain.trace_figure(t)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "attention weight a_ij"]
    assert len(bars) == 1
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends and any("a_ij" in text.get_text() for text in legends[0].get_texts())
    assert t.formula in fig._suptitle.get_text()


def test_non_edges_are_masked_in_the_heatmap():
    t = explain.trace(nx.path_graph(4), d_model=2, seed=0)
    image = _heatmaps(explain.trace_figure(t))[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(image), ~t.mask.numpy())


def test_tokens_are_drawn_as_their_own_text_with_a_font_that_has_them():
    labels, font = explain.plot_labels(TOKENS)
    family = pictures.glyph_font(frozenset("".join(TOKENS)))
    if family is None:
        if os.environ.get("CI"):
            pytest.fail("no CJK font found: .ci/run installs fonts-wqy-zenhei")
        pytest.skip("no font with CJK glyphs installed (apt install fonts-wqy-zenhei or fonts-noto-cjk)")
    assert labels == TOKENS
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family=font["fontfamily"], weight=font["fontweight"]))
    assert {ord(c) for c in "我爱你"} <= pictures._charmap(path)
    fig = explain.trace_figure(explain.trace("我 爱 你"))
    ticks = _heatmaps(fig)[0].get_xticklabels()
    assert [tick.get_text() for tick in ticks] == TOKENS
    assert ticks[0].get_fontname() == font["fontfamily"]


def test_without_a_font_tokens_are_their_index_beside_their_code_points(monkeypatch):
    monkeypatch.setattr(pictures, "glyph_font", lambda chars: None)
    labels, font = explain.plot_labels(["我", "爱", "you", "é"])
    assert labels == ["0: U+6211", "1: U+7231", "you", "é"] and font == {}
    assert not any(label.startswith("#") for label in labels)
    fig = explain.trace_figure(explain.trace("我 爱 你"))
    assert [t.get_text() for t in _heatmaps(fig)[0].get_xticklabels()] == ["0: U+6211", "1: U+7231", "2: U+4F60"]
    assert "code points" in fig._suptitle.get_text()


def test_ascii_tokens_need_no_font_lookup(monkeypatch):
    def fail(chars):
        raise AssertionError("looked up a font for ASCII tokens")

    monkeypatch.setattr(pictures, "glyph_font", fail)
    assert explain.plot_labels(["the", "cat"]) == (["the", "cat"], {})


def test_png_is_written_where_asked(tmp_path, capsys):
    path = tmp_path / "trace.png"
    code, out, _ = _run_cli(["--png", str(path), "--d-model", "2", "--heads", "2"], capsys)
    assert code == 0
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000
    assert json.loads(out.strip().splitlines()[-1])["png"] == str(path)


def test_png_without_extension_writes_exactly_that_file(tmp_path, capsys):
    path = tmp_path / "noext"
    code, out, _ = _run_cli(["--png", str(path)], capsys)
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["png"] == str(path)
    assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noext"]  # no noext.png beside it


def test_png_with_another_extension_is_a_clear_error(tmp_path, capsys):
    code, _, err = _run_cli(["--png", str(tmp_path / "x.jpg")], capsys)
    assert code == 1 and ".png" in err
    assert list(tmp_path.iterdir()) == []


def test_named_graph_picture(tmp_path):
    t = explain.trace(nx.karate_club_graph(), d_model=4, num_heads=2, seed=0)
    path = explain.write_png(t, tmp_path / "karate.png")
    assert open(path, "rb").read(8) == PNG
    fig = explain.trace_figure(t)
    assert len(_heatmaps(fig)) == 2


def test_png_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install"):
        explain.write_png(explain.trace("a b"), tmp_path / "x.png")
    code, _, err = _run_cli(["--png", str(tmp_path / "x.png")], capsys)
    assert code == 1 and "matplotlib" in err


def test_cycle_spectrum_figure(tmp_path):
    path = tmp_path / "cycle.png"
    residual = explain.cycle_spectrum_figure(12, path)
    assert residual < 1e-10
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="n must"):
        explain.cycle_spectrum_figure(2, path)
