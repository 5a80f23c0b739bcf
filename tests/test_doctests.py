"""The ``>>>`` examples in the docstrings of every graphformer module run and print what they show."""

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch

import graphformer

SRC = Path(graphformer.__file__).resolve().parent
SKIP = {"graphformer.__main__"}  # importing it runs the command line
MODULES = sorted(m.name for m in pkgutil.walk_packages(graphformer.__path__, "graphformer.") if m.name not in SKIP) + [
    "graphformer"
]
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _tests(name):
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in _tests(name):
        torch.manual_seed(0)  # examples that draw random numbers print the same each run
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_the_doctest_run_finds_the_examples():
    counts = {name: sum(len(t.examples) for t in _tests(name)) for name in MODULES}
    # the modules known to carry examples; a finder that misses them would pass every test above vacuously
    for name in ("graphformer._text", "graphformer.data.timeseries", "graphformer.explain.inputs"):
        assert counts[name] >= 1, name
    assert len(MODULES) >= 20 and "graphformer.models.graph" in MODULES


def _module_level_imports(tree):
    """Import statements run when the module is imported: outside functions, including ``if``/``try`` blocks."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            statements = (ast.stmt, ast.excepthandler)
            todo.extend(child for child in ast.iter_child_nodes(node) if isinstance(child, statements))


def test_optional_dependencies_are_imported_lazily():
    """matplotlib and scikit-learn are extras: no module imports them at import time, so a plain install (and the
    collection of this suite) works without them."""
    optional = {"matplotlib", "sklearn"}
    eager = []
    for path in sorted(SRC.rglob("*.py")):
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            eager += [f"{path.relative_to(SRC)}:{node.lineno} {n}" for n in names if n.split(".")[0] in optional]
    assert not eager, eager
    blocked = ast.parse("import os\ntry:\n    import matplotlib\nexcept ImportError:\n    import sklearn\n")
    assert [n.lineno for n in _module_level_imports(blocked)] == [5, 3, 1]  # the scan sees inside try and except
