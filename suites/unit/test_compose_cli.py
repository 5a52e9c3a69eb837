"""The compose CLI's environment: v1's parallel limit raised so that `up` cannot deadlock, and its
per-request timeout at the command's deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.engine.compose import V1_PARALLEL_LIMIT, http_timeout_env, parallel_limit_env, service_count
from harness.errors import EngineError

pytestmark = pytest.mark.unit


def test_the_limit_leaves_v1s_default_slots_to_container_creation() -> None:
    env = parallel_limit_env(128, {"PATH": "/usr/bin"})

    assert env == {"PATH": "/usr/bin", "COMPOSE_PARALLEL_LIMIT": str(128 + V1_PARALLEL_LIMIT)}


def test_a_users_limit_is_kept_for_container_creation() -> None:
    assert parallel_limit_env(100, {"COMPOSE_PARALLEL_LIMIT": "8"})["COMPOSE_PARALLEL_LIMIT"] == "108"


@pytest.mark.parametrize("value", ["eight", "0", "-4", ""])
def test_a_limit_that_is_not_a_positive_integer_is_named(value: str) -> None:
    with pytest.raises(
        EngineError, match=f"COMPOSE_PARALLEL_LIMIT must be a positive integer, not '{value}'"
    ):
        parallel_limit_env(3, {"COMPOSE_PARALLEL_LIMIT": value})


def test_services_are_counted_from_the_rendered_file(tmp_path: Path) -> None:
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text("services:\n  a: {image: x}\n  b: {image: x}\nnetworks:\n  wan: {}\n")

    assert service_count(compose_file) == 2


def test_one_engine_request_may_take_as_long_as_the_whole_command() -> None:
    assert http_timeout_env(299.5, {"PATH": "/usr/bin"}) == {
        "PATH": "/usr/bin",
        "COMPOSE_HTTP_TIMEOUT": "300",
    }


def test_a_users_http_timeout_wins() -> None:
    assert http_timeout_env(300, {"COMPOSE_HTTP_TIMEOUT": "20"}) == {"COMPOSE_HTTP_TIMEOUT": "20"}
