"""Packaging: one version source, the typing marker ships, the test tools are declared."""

import ast
import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from setuptools.config.pyprojecttoml import read_configuration

import graphformer
from conftest import REPO

PYPROJECT = REPO / "pyproject.toml"
SRC = Path(graphformer.__file__).resolve().parent


def test_the_version_is_written_once_and_pyproject_reads_it():
    project = read_configuration(PYPROJECT, expand=False)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    expanded = read_configuration(PYPROJECT, expand=True)  # what setuptools puts in the wheel's metadata
    assert expanded["project"]["version"] == graphformer.__version__
    literal = [
        n.value.value
        for n in ast.parse((SRC / "__init__.py").read_text(encoding="utf-8")).body
        if isinstance(n, ast.Assign) and [t.id for t in n.targets] == ["__version__"]
    ]
    assert literal == [graphformer.__version__]  # a plain string setuptools reads without importing torch
    assert all(part.isdigit() for part in graphformer.__version__.split(".")[:2])


def test_an_installed_copy_reports_the_same_version():
    try:
        installed = importlib.metadata.version("graphformer")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("graphformer is not installed (pip install -e .)")
    assert installed == graphformer.__version__


def test_py_typed_ships_with_the_package():
    assert (SRC / "py.typed").is_file()
    expanded = read_configuration(PYPROJECT, expand=True)
    assert "py.typed" in expanded["tool"]["setuptools"]["package-data"]["graphformer"]


def test_ruff_is_a_test_tool_and_formats_at_the_lint_line_length():
    config = read_configuration(PYPROJECT, expand=False)
    test_extra = config["project"]["optional-dependencies"]["test"]
    assert "ruff" in {Requirement(dep).name for dep in test_extra}
    ruff = config["tool"]["ruff"]
    assert ruff["line-length"] == 120 and "format" in ruff
    assert ruff["format"].get("line-length", ruff["line-length"]) == 120
