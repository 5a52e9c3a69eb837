"""Running the chosen experiments on one or two builds, and their report: results.json,
report.md (one table per experiment, builds side by side) and blockexchange.png."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

from harness.experiments.bx import duplicates, interference, latency
from harness.paths import artifacts_dir
from harness.selection import BuildUnderTest

EXPERIMENTS: dict[str, ModuleType] = {
    "interference": interference,
    "duplicates": duplicates,
    "latency": latency,
}
TAKES_SAMPLES = {"interference", "latency"}


def label(build: BuildUnderTest) -> str:
    return build.image or "reference"


def headline(module: ModuleType) -> str:
    """An experiment's question: the first paragraph of its module docstring."""
    return " ".join((module.__doc__ or "").split("\n\n")[0].split())


def run(
    names: list[str],
    builds: list[BuildUnderTest],
    samples: int,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Each experiment on each build; returns the report folder."""
    folder = out or artifacts_dir("experiments") / f"blockexchange-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict]] = {}
    for name in names:
        module = EXPERIMENTS[name]
        experiment = partial(module.run, samples=samples) if name in TAKES_SAMPLES else module.run
        for build in builds:
            echo(f"{name} on {label(build)}")
            results.setdefault(name, {})[label(build)] = experiment(build, echo)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    (folder / "report.md").write_text(markdown(results, builds))
    plot(results, folder / "blockexchange.png")
    return folder


def markdown(results: dict[str, dict[str, dict]], builds: list[BuildUnderTest]) -> str:
    contracts = {build.impl or "each node's own" for build in builds}
    lines = [
        "# BlockExchange experiments",
        "",
        f"Builds: {', '.join(f'`{label(b)}`' for b in builds)}; contract: {', '.join(sorted(contracts))}.",
    ]
    for name, by_build in results.items():
        module = EXPERIMENTS[name]
        lines += ["", f"## {name}", "", headline(module), "", *module.table(by_build)]
    lines += ["", "Plot: blockexchange.png."]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, dict]], file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (name, by_build) in zip(axes[0], results.items(), strict=True):
        EXPERIMENTS[name].plot(by_build, ax)
    figure.tight_layout()
    figure.savefig(file)
    plt.close(figure)
