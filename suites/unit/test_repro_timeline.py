"""The repro timeline: events timed from start(), one line each, saved and read back whole."""

from __future__ import annotations

import pytest

from harness.errors import TestbedError
from harness.experiments.repro.timeline import Event, Timeline


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_events_are_timed_from_the_start_and_echoed_as_lines() -> None:
    clock, lines = Clock(), []
    timeline = Timeline(echo=lines.append, clock=clock)
    timeline.start()
    clock.now += 12.42
    fault = timeline.record("fault", "home", fault="router_reboot", phase="begin", down_s=10)
    clock.now += 10
    timeline.record("fault", "home", fault="router_reboot", phase="end", down_s=10)

    assert fault == Event(12.42, "fault", "home", {"fault": "router_reboot", "phase": "begin", "down_s": 10})
    assert [event.t_s for event in timeline.events] == [12.42, 22.42]
    assert lines == [
        "  12.4 s  fault      router_reboot home  down_s=10",
        "  22.4 s  fault      router_reboot home end  down_s=10",
    ]


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            Event(1.0, "step", "fetch", {"index": 1, "action": "download", "phase": "begin"}),
            "   1.0 s  step       download fetch  index=1",
        ),
        (
            Event(
                83.25,
                "download",
                "fetch",
                {"phase": "end", "ok": False, "error": "stream reset", "seconds": 81.5},
            ),
            "  83.2 s  download   fetch end  ok=False  error='stream reset'  seconds=81.5",
        ),
        (
            Event(5.0, "sample", "codex-1", {"reserved": None, "direct_peers": ["codex-2"]}),
            "   5.0 s  sample     codex-1  reserved=None  direct_peers=codex-2",
        ),
        (Event(0.0, "note", "run", {}), "   0.0 s  note       run"),
    ],
)
def test_each_kind_formats_as_one_line(event: Event, line: str) -> None:
    assert Timeline.format(event) == line


def test_a_saved_timeline_reads_back_whole() -> None:
    clock = Clock()
    timeline = Timeline(clock=clock)
    timeline.start()
    timeline.record("upload", "archive", node="codex-1", bytes=1024, cid="zDv", seconds=0.5)
    clock.now += 3
    timeline.record("sample", "codex-1", reserved=True, direct_peers=[])

    assert Timeline.from_json(timeline.to_json()).events == timeline.events


@pytest.mark.parametrize("text", ["{", "{}", "[1]", '[{"t_s": 1, "kind": "note"}]'])
def test_a_file_that_is_no_timeline_is_refused(text: str) -> None:
    with pytest.raises(TestbedError, match="not a saved timeline"):
        Timeline.from_json(text)


def test_recording_needs_a_start_and_a_known_kind() -> None:
    timeline = Timeline()
    with pytest.raises(RuntimeError, match=r"before Timeline\.start"):
        timeline.record("note", "x", text="early")
    timeline.start()
    with pytest.raises(ValueError, match="event kind 'oops' is not one of step, upload"):
        timeline.record("oops", "x")
