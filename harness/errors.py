"""Errors the harness raises; each carries enough context to act on without reading code."""

from __future__ import annotations

from pathlib import Path

ECHO_LIMIT = 60  # characters of a user's value an error message repeats
KEY_PATH_LIMIT = 240
PROBLEM_LIMIT = 400


def excerpt(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)`, cut to about `limit` characters with the original length: an error message
    never repeats a whole hostile value (a 100,000-character name, a megabyte of YAML)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters as text)"


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _printable(text: str) -> str:
    """A key as one line: a newline or NUL in a name shows escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


class TestbedError(Exception):
    """Base class: every harness failure a user can see."""

    __test__ = False  # not a pytest test class


class TopologyError(TestbedError):
    """A topology file is malformed. Names the file, the key path and what is wrong, each bounded:
    the key path (and each of its parts) and the problem are cut to a few hundred characters."""

    def __init__(self, file: Path | str, key_path: str, problem: str) -> None:
        self.file = str(file)
        parts = (_printable(shorten(part, ECHO_LIMIT)) for part in key_path.split("."))
        self.key_path = shorten(".".join(parts), KEY_PATH_LIMIT)  # a name may hold many dots
        self.problem = shorten(problem, PROBLEM_LIMIT)
        super().__init__(f"{self.file}: {self.key_path or '<top level>'}: {self.problem}")


class ScenarioError(TopologyError):
    """A repro scenario file (harness/experiments/repro) is malformed; like a topology error, it
    names the file, the key path (`steps[3].download.node`) and what is wrong."""


class EngineError(TestbedError):
    """The Docker engine or compose CLI is missing or failed."""


class ImageBuildError(TestbedError):
    """An image recipe failed to build."""


class PoolExhaustedError(TestbedError):
    """No free subnet is left in the configured address pool (or no free address in a subnet)."""


class PoolConfigError(TestbedError):
    """An address pool variable (TESTBED_*_POOL) is malformed or names a range no testbed may use."""


class WaitTimeout(TestbedError):
    """A wait ran past its deadline. The message says what, how long, and the culprit's logs."""


class ContainerFailed(TestbedError):
    """A container exited or turned unhealthy while we were waiting for it."""


class NatMismatch(TestbedError):
    """A router does not behave like the NAT profile its topology declares."""
