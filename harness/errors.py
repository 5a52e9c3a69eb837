"""Errors the harness raises; each carries enough context to act on without reading code."""

from __future__ import annotations

from pathlib import Path


class TestbedError(Exception):
    """Base class: every harness failure a user can see."""

    __test__ = False  # not a pytest test class


class TopologyError(TestbedError):
    """A topology file is malformed. Names the file, the key path and what is wrong."""

    def __init__(self, file: Path | str, key_path: str, problem: str) -> None:
        self.file = str(file)
        self.key_path = key_path
        self.problem = problem
        super().__init__(f"{self.file}: {key_path or '<top level>'}: {problem}")


class EngineError(TestbedError):
    """The Docker engine or compose CLI is missing or failed."""


class ImageBuildError(TestbedError):
    """An image recipe failed to build."""


class PoolExhaustedError(TestbedError):
    """No free subnet is left in the configured address pool."""


class WaitTimeout(TestbedError):
    """A wait ran past its deadline. The message says what, how long, and the culprit's logs."""


class ContainerFailed(TestbedError):
    """A container exited or turned unhealthy while we were waiting for it."""


class NatMismatch(TestbedError):
    """A router does not behave like the NAT profile its topology declares."""
