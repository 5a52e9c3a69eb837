"""A machine without the testbed's images: setup reports what it will build and does not stop."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness import cli, imagerefs
from harness.engine import images
from harness.errors import ImageBuildError
from harness.topology import subnets


class FakeImages:
    def __init__(self, tags: list[str]) -> None:
        self.tags = tags

    def list(self, filters: dict) -> list[SimpleNamespace]:
        assert filters == {"label": "testbed.image=true"}, "only the testbed's own images are looked at"
        return [SimpleNamespace(tags=[tag]) for tag in self.tags]


def client_with(tags: list[str]) -> SimpleNamespace:
    return SimpleNamespace(images=FakeImages(tags))


def test_missing_images_are_todo_not_failures() -> None:
    checks = cli._image_checks(client_with([]))
    assert [(name, status) for name, status, _ in checks] == [
        ("base image", "todo"),
        ("service images", "todo"),
    ]
    assert "debootstrapped by `make images` or `testbed up`" in checks[0][2]
    assert checks[1][2].startswith(f"0 of {len(images.SERVICE_IMAGES)} built")


def test_present_images_are_ok() -> None:
    refs = images.image_refs(set(images.SERVICE_IMAGES))
    checks = cli._image_checks(client_with([imagerefs.base_image_ref(), *refs.values()]))
    assert [status for _, status, _ in checks] == ["ok", "ok"]


def test_doctor_fails_only_on_fail(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "_doctor_checks", lambda: [("engine", "ok", ""), ("base image", "todo", "")])
    assert cli.cmd_doctor(SimpleNamespace(fix=False)) == 0
    monkeypatch.setattr(cli, "_doctor_checks", lambda: [("engine", "FAIL", ""), ("base image", "todo", "")])
    assert cli.cmd_doctor(SimpleNamespace(fix=False)) == 1


def test_images_of_another_namespace_do_not_count(monkeypatch) -> None:
    present = [imagerefs.base_image_ref()]
    monkeypatch.setenv("TESTBED_IMAGE_NAMESPACE", "testbed-ci-1-2")
    assert imagerefs.base_image_ref().startswith("testbed-ci-1-2/base:bookworm-")
    assert images.image_refs({"codex-ref"})["codex-ref"].startswith("testbed-ci-1-2/codex-ref:")
    assert images.present_images(client_with(present)) == set()
    assert cli._image_checks(client_with(present))[0][1] == "todo"


@pytest.mark.parametrize("value", ["Upper", "a/b", "-x", "x-", "a b", "x" * 65])
def test_a_bad_namespace_is_refused_by_name(monkeypatch, value: str) -> None:
    monkeypatch.setenv("TESTBED_IMAGE_NAMESPACE", value)
    with pytest.raises(ImageBuildError, match="TESTBED_IMAGE_NAMESPACE"):
        imagerefs.namespace()


def test_an_unreadable_reservation_file_is_dropped_not_fatal(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TESTBED_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(subnets, "engine_subnets", lambda: [])
    monkeypatch.setattr(subnets, "host_routes", lambda: [])  # whatever this machine runs now
    (tmp_path / "subnet-reservations.json").write_text('{"11.200.0.0/24": {"proj')  # cut mid-write
    first = subnets.reserve("tb-a", ["wan"])
    assert subnets.reserve("tb-b", ["wan"]) != first, "the rewritten file holds tb-a's reservation"
    subnets.release("tb-a")
    assert "tb-a" not in (tmp_path / "subnet-reservations.json").read_text()
