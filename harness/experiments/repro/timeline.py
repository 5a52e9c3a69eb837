"""What happened during a repro run: events in time order, the record the verdicts are judged on.

The runner records events; verdict.py reads them and nothing else, so a saved timeline
(`to_json`) can be judged again. The event kinds, the vocabulary both sides share (times `t_s`
are seconds since `start()`; node names are the topology's):

- `step`      subject: the step's name; detail: index, action, phase ("begin" | "end"), ...
- `upload`    subject: the dataset; detail: node, bytes, cid, seconds
- `download`  subject: the download id; detail: node, dataset, phase ("begin" | "end"), and at
              the end: ok (bool), error (str | None), bytes, seconds
- `fault`     subject: its target (node, relay or LAN); detail: fault (the action's name),
              phase ("begin" | "end"), and the action's arguments
- `sample`    subject: a codex node; detail: reserved (bool, None when unknown or it has no
              relay; with a relay also what it is made of: announced, relay_connected),
              direct_peers (node names): an observation made every 2 s
- `capture`   subject: the LAN whose router captured; detail: file
- `note`      subject: anything; detail: text
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import TestbedError

KINDS = ("step", "upload", "download", "fault", "sample", "capture", "note")
# Detail keys a line shows before the subject (`router_reboot home`), and the phase after it.
_LEADS = {"step": "action", "fault": "fault"}


@dataclass(frozen=True)
class Event:
    t_s: float  # seconds since the timeline started
    kind: str  # one of KINDS
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, str) and (not value or " " in value):
        return repr(value)
    return str(value)


class Timeline:
    """A recorder: `start()`, then `record(kind, subject, **detail)` as things happen. `echo`, if
    given, gets each event's line (`format`) as it is recorded: `Timeline(echo=print)`."""

    def __init__(
        self, echo: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._echo = echo
        self._clock = clock
        self._t0: float | None = None
        self._events: list[Event] = []
        self._lock = threading.Lock()  # the sampler, downloads and capture windows record too

    def start(self) -> None:
        self._t0 = self._clock()

    def record(self, kind: str, subject: str, **detail: Any) -> Event:
        if self._t0 is None:
            raise RuntimeError("Timeline.record before Timeline.start")
        if kind not in KINDS:
            raise ValueError(f"event kind {kind!r} is not one of {', '.join(KINDS)}")
        with self._lock:
            event = Event(round(self._clock() - self._t0, 3), kind, subject, detail)
            self._events.append(event)
            if self._echo is not None:
                self._echo(self.format(event))
        return event

    def elapsed(self) -> float:
        """Seconds since start()."""
        if self._t0 is None:
            raise RuntimeError("Timeline.elapsed before Timeline.start")
        return self._clock() - self._t0

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    @staticmethod
    def format(event: Event) -> str:
        """One line: `  12.4 s  fault      router_reboot home  down_s=10`."""
        detail = dict(event.detail)
        lead = detail.pop(_LEADS.get(event.kind, ""), None)
        phase = detail.pop("phase", None)
        head = " ".join(str(part) for part in (lead, event.subject) if part is not None)
        if phase == "end":  # a begin is how an event reads by default
            head += " end"
        rest = "  ".join(f"{key}={_shown(value)}" for key, value in detail.items())
        return f"{event.t_s:6.1f} s  {event.kind:<10} {head}  {rest}".rstrip()

    def to_json(self) -> str:
        return json.dumps([asdict(event) for event in self._events], indent=1)

    @classmethod
    def from_json(cls, text: str) -> Timeline:
        """A saved timeline, to judge or plot again; it records no more (it was not started)."""
        timeline = cls()
        try:
            items = json.loads(text)
            if not isinstance(items, list):
                raise TypeError(f"a {type(items).__name__}, not a list")
            timeline._events = [
                Event(float(item["t_s"]), str(item["kind"]), str(item["subject"]), dict(item["detail"]))
                for item in items
            ]
        except (ValueError, TypeError, KeyError) as exc:
            raise TestbedError(f"not a saved timeline (a JSON list of events): {exc!r}") from None
        return timeline
