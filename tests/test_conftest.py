"""The shared fixtures' helpers: data tests fail in CI, scores registered in a test do not leak."""

import os

import pytest
import torch

import graphformer as gf
from conftest import require_data, restored_scores
from graphformer import scores


def test_missing_data_skips_locally_and_fails_in_ci(tmp_path, monkeypatch):
    present = tmp_path / "here"
    present.mkdir()
    monkeypatch.setenv("CI", "1")
    assert require_data(present) == present
    with pytest.raises(pytest.fail.Exception, match="CI must provide it"):
        require_data(tmp_path / "missing")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="GRAPHFORMER_DATA"):
        require_data(tmp_path / "missing")


def test_a_score_registered_inside_the_block_is_gone_after_it():
    before = scores.available_scores()
    with restored_scores():
        gf.register_score("conftest_probe", lambda q, k: (q * k).sum(-1))
        assert "conftest_probe" in scores.available_scores()
        gf.GraphAttention(4, 1, score="conftest_probe")(torch.randn(3, 4))  # usable inside
    assert scores.available_scores() == before
    with pytest.raises(ValueError, match="unknown score 'conftest_probe'"):
        gf.GraphAttention(4, 1, score="conftest_probe")


def test_each_test_starts_on_one_thread_from_seed_zero():
    assert torch.get_num_threads() == 1
    first = torch.rand(3)  # the first draw of the test
    torch.manual_seed(0)
    assert torch.equal(first, torch.rand(3))


def test_property_tests_are_derandomized_exactly_in_ci():
    from hypothesis import settings

    assert settings.default.derandomize == bool(os.environ.get("CI"))
