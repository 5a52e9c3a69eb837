"""Unit tests run without docker: anything that would reach the engine fails the test loudly."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every attempt to touch the engine, build images or allocate subnets."""
    calls: list[str] = []

    def refuse(name: str):
        def _refuse(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called: a broken topology must create nothing")

        return _refuse

    monkeypatch.setattr("harness.testbed.ensure_engine", refuse("ensure_engine"))
    monkeypatch.setattr("harness.testbed.images.ensure_images", refuse("ensure_images"))
    monkeypatch.setattr("harness.testbed.subnets.reserve", refuse("subnets.reserve"))
    monkeypatch.setattr("harness.testbed.render", refuse("render"))
    return calls
