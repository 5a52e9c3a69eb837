"""The core apart from the experiments: it imports without the `load` extra, and never imports an
experiment (only the CLI does, inside the command that runs it)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import harness

HARNESS = Path(harness.__file__).parent
EXTRA = ("locust", "matplotlib")  # the `load` extra (pyproject.toml)

# In a fresh interpreter where the extra's modules cannot be imported (`sys.modules[name] = None`
# makes `import name` raise ImportError): import every core module, then run `testbed load`.
NO_EXTRA = """
import contextlib, importlib, io, json, pathlib, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
import harness
root = pathlib.Path(harness.__file__).parent
core = sorted(".".join(("harness", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
              for p in root.rglob("*.py") if "experiments" not in p.parts)
for name in core:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.startswith("harness.experiments"))
from harness import cli
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = cli.main(["load", "--profile", "ci"])
print(json.dumps({"core": core, "experiments_loaded": loaded, "load": [code, err.getvalue()]}))
"""


def test_the_core_imports_without_the_load_extra() -> None:
    paths = [str(HARNESS.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-c", NO_EXTRA, ",".join(EXTRA)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    assert {"harness.cli", "harness.testbed", "harness.pytest_plugin", "harness.single"} <= set(
        report["core"]
    )
    assert report["experiments_loaded"] == [], "a core module imports an experiment"
    code, stderr = report["load"]
    assert code == 1
    assert "testbed load needs the load extra: pip install 'codex-testbed[load]'" in stderr
    assert "locust, matplotlib not installed" in stderr


# The import graph docs/architecture.md shows: one line per package, `name -> deps[; lazily: deps]`
# (lazily: inside a function), leaving out the foundation (errors, labels, parallel, paths, waits)
# but on its own lines.
FOUNDATION = {"errors", "labels", "parallel", "paths", "waits"}
ARCHITECTURE = HARNESS.parent / "docs" / "architecture.md"


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import of the harness in a module, and whether it runs at import time (top level);
    those under `if TYPE_CHECKING:` never run, so they are not dependencies."""

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, top
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, top and not nested)

    yield from walk(tree, True)


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.module == "harness":
        return [f"harness.{alias.name}" for alias in node.names]
    return [node.module or ""]


def _package(module: str) -> str:
    return module.split(".")[1]


def actual_graph() -> dict[str, tuple[set[str], set[str]]]:
    """Package -> (what it imports at import time, what only inside functions)."""
    graph: dict[str, tuple[set[str], set[str]]] = {}
    for path in HARNESS.rglob("*.py"):
        parts = path.relative_to(HARNESS).with_suffix("").parts
        if parts == ("__init__",):
            continue
        package = parts[0]
        top, lazy = graph.setdefault(package, (set(), set()))
        for node, at_import in _imports(ast.parse(path.read_text())):
            for target in _targets(node):
                if target.startswith("harness.") and _package(target) != package:
                    (top if at_import else lazy).add(_package(target))
    for top, lazy in graph.values():
        lazy -= top
    return graph


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the path that closes it (`a b a`), or None if it is a DAG."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if cycle := visit(target):
                return cycle
        path.pop()
        done.add(node)
        return None

    return next(filter(None, map(visit, sorted(graph))), None)


def documented_graph() -> dict[str, tuple[set[str], set[str]]]:
    text = ARCHITECTURE.read_text()
    block = text.split("## Import graph of the core", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    graph = {}
    for line in block.splitlines():
        name, _, rest = line.partition("->")
        top, _, lazy = rest.partition("; lazily:")
        graph[name.strip()] = (set(top.split()), set(lazy.split()))
    return graph


def test_the_documented_import_graph_is_the_code_s() -> None:
    shown = {
        package: (top if package in FOUNDATION else top - FOUNDATION, lazy)
        for package, (top, lazy) in actual_graph().items()
    }
    lines = [
        f"{package} -> {' '.join(sorted(top))}".rstrip()
        + (f"; lazily: {' '.join(sorted(lazy))}" if lazy else "")
        for package, (top, lazy) in sorted(shown.items())
    ]
    assert documented_graph() == shown, "docs/architecture.md's import graph is now:\n" + "\n".join(lines)
    # Listed top down: each line imports only packages on the lines below it.
    listed = list(documented_graph().items())
    below = [{package for package, _ in listed[at + 1 :]} for at in range(len(listed))]
    upward = {package: sorted((top | lazy) - below[at]) for at, (package, (top, lazy)) in enumerate(listed)}
    assert not any(upward.values()), "lines import packages listed above them: " + str(
        {package: above for package, above in upward.items() if above}
    )


def test_the_core_imports_no_experiment_and_experiments_no_private_name() -> None:
    for package, (top, lazy) in actual_graph().items():
        if package != "experiments":
            assert "experiments" not in top, f"{package} imports an experiment at import time"
            assert "experiments" not in lazy or package == "cli", f"{package} runs an experiment"
    for path in (HARNESS / "experiments").rglob("*.py"):
        for node, _ in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} reaches into {node.module}: {private}"


def test_the_packages_form_a_dag() -> None:
    """No package imports, through others, one that imports it (an import inside a function too)."""
    graph = {package: top | lazy for package, (top, lazy) in actual_graph().items()}
    cycle = _a_cycle(graph)
    assert cycle is None, "the packages have a cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_names_the_cycle() -> None:
    assert _a_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _a_cycle({"x": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _a_cycle({"a": {"a"}}) == ["a", "a"]
