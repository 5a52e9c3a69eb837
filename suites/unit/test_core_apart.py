"""The core apart from the experiments: it imports without the `load` extra, and never imports an
experiment (only the CLI does, inside the command that runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    assert {"harness.cli", "harness.testbed", "harness.pytest_plugin", "harness.engine.single"} <= set(
        report["core"]
    )
    assert report["experiments_loaded"] == [], "a core module imports an experiment"
    code, stderr = report["load"]
    assert code == 1
    assert "testbed load needs the load extra: pip install 'codex-testbed[load]'" in stderr
    assert "locust, matplotlib not installed" in stderr
