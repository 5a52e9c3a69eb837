"""Did the field failure reproduce? Each expectation judged on the recorded events alone.

One pure function per expectation kind reads the timeline's events (vocabulary in timeline.py)
and returns whether the expectation held and why, with times, so a verdict can be checked
against the timeline by eye. What was never observed (no sample of a node, a download that never
ended) never counts as reproduced: a run that saw nothing proves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from harness.experiments.repro.scenario import Expectation
from harness.experiments.repro.timeline import Event


@dataclass(frozen=True)
class Verdict:
    expectation: Expectation
    reproduced: bool
    because: str  # the decision, with times from the timeline


Outcome = tuple[bool, str]  # (reproduced, because)


def _within(within_s: float | None) -> str:
    return f" (within {within_s:g} s)" if within_s is not None else ""


def _download_ended(args: dict, events: Sequence[Event], ok: bool) -> Outcome:
    """download_fails (ok False) and download_completes (ok True)."""
    name, within_s = args["download"], args["within_s"]
    phases = {e.detail.get("phase"): e for e in events if e.kind == "download" and e.subject == name}
    begin, end = phases.get("begin"), phases.get("end")
    if end is None:
        began = f"it began at {begin.t_s:.1f} s" if begin else "it never began either"
        return False, f"download {name} never ended ({began})"
    started = begin.t_s if begin else 0.0
    took = end.t_s - started
    succeeded = bool(end.detail.get("ok"))
    ended = "completed" if succeeded else "ended failed"
    error = "" if succeeded or not end.detail.get("error") else f": {end.detail['error']!r}"
    since = "after it began" if begin else "after the start, as no begin was recorded"
    told = f"download {name} {ended} at {end.t_s:.1f} s, {took:.1f} s {since}"
    if succeeded != ok:
        return False, told + error
    if within_s is not None and took > within_s:
        return False, f"{told}, later than {within_s:g} s{error}"
    return True, f"{told}{_within(within_s)}{error}"


def _download_slow(args: dict, events: Sequence[Event]) -> Outcome:
    """Not whole within `slower_than_s` of its begin: it failed, or it completed later."""
    name, limit = args["download"], args["slower_than_s"]
    completed, because = _download_ended({"download": name, "within_s": limit}, events, ok=True)
    if completed:
        return False, because
    ended = any(e.kind == "download" and e.subject == name and e.detail.get("phase") == "end" for e in events)
    return ended, because


def _samples(events: Sequence[Event], *nodes: str) -> list[Event]:
    return [e for e in events if e.kind == "sample" and e.subject in nodes]


def _first_direct(samples: list[Event], node: str, peer: str) -> Event | None:
    """The first sample in which either node lists the other as a direct peer."""
    other = {node: peer, peer: node}
    return next((e for e in samples if other[e.subject] in e.detail.get("direct_peers", ())), None)


def _never_observed(*nodes: str) -> Outcome:
    return False, f"never observed: no sample of {' or '.join(nodes)} was recorded"


def _span(samples: list[Event]) -> str:
    return f"{len(samples)} samples, {samples[0].t_s:.1f} s to {samples[-1].t_s:.1f} s"


def _stays_relayed(args: dict, events: Sequence[Event]) -> Outcome:
    node, peer = args["node"], args["peer"]
    samples = _samples(events, node, peer)
    if not samples:
        return _never_observed(node, peer)
    direct = _first_direct(samples, node, peer)
    if direct is not None:
        return False, f"{node} and {peer} went direct at {direct.t_s:.1f} s"
    return True, f"{node} and {peer} never went direct ({_span(samples)})"


def _goes_direct(args: dict, events: Sequence[Event]) -> Outcome:
    node, peer, within_s = args["node"], args["peer"], args["within_s"]
    samples = _samples(events, node, peer)
    if not samples:
        return _never_observed(node, peer)
    direct = _first_direct(samples, node, peer)
    if direct is None:
        return False, f"{node} and {peer} never went direct ({_span(samples)})"
    if within_s is not None and direct.t_s > within_s:
        return False, f"{node} and {peer} went direct only at {direct.t_s:.1f} s, later than {within_s:g} s"
    return True, f"{node} and {peer} went direct at {direct.t_s:.1f} s{_within(within_s)}"


def _known_reservations(events: Sequence[Event], node: str) -> list[Event]:
    """The node's samples that saw its reservation (reserved None: unknown, not counted)."""
    return [e for e in _samples(events, node) if e.detail.get("reserved") is not None]


def _reservation_lost(args: dict, events: Sequence[Event]) -> Outcome:
    node, within_s, step = args["node"], args["within_s"], args["after"]
    reference, since = 0.0, "the start"
    if step is not None:
        begins = (
            e for e in events if e.kind == "step" and e.subject == step and e.detail.get("phase") == "begin"
        )
        begin = next(begins, None)
        if begin is None:
            return False, f"step {step} never began"
        reference, since = begin.t_s, f"step {step} began at {begin.t_s:.1f} s"
    samples = [e for e in _known_reservations(events, node) if e.t_s >= reference]
    if not samples:
        return False, f"never observed: no sample of {node} saw its reservation after {since}"
    lost = next((e for e in samples if e.detail["reserved"] is False), None)
    if lost is None:
        return False, f"{node} kept its reservation after {since} ({_span(samples)})"
    after = lost.t_s - reference
    told = f"{node} had no reservation at {lost.t_s:.1f} s, {after:.1f} s after {since}"
    if within_s is not None and after > within_s:
        return False, f"{told}, later than {within_s:g} s"
    return True, told + _within(within_s)


def _reservation_kept(args: dict, events: Sequence[Event]) -> Outcome:
    node = args["node"]
    samples = _known_reservations(events, node)
    if not samples:
        return False, f"never observed: no sample of {node} saw its reservation"
    lost = next((e for e in samples if e.detail["reserved"] is False), None)
    if lost is not None:
        return False, f"{node} had no reservation at {lost.t_s:.1f} s"
    return True, f"{node} kept its reservation ({_span(samples)})"


JUDGES: dict[str, Callable[[dict, Sequence[Event]], Outcome]] = {
    "download_fails": lambda args, events: _download_ended(args, events, ok=False),
    "download_completes": lambda args, events: _download_ended(args, events, ok=True),
    "download_slow": _download_slow,
    "stays_relayed": _stays_relayed,
    "goes_direct": _goes_direct,
    "reservation_lost": _reservation_lost,
    "reservation_kept": _reservation_kept,
}


def judge(expectations: Iterable[Expectation], events: Sequence[Event]) -> list[Verdict]:
    """One verdict per expectation, in order."""
    return [Verdict(e, *JUDGES[e.kind](e.args, events)) for e in expectations]


def rate(runs: Sequence[Sequence[Verdict]]) -> dict[int, tuple[int, int]]:
    """Expectation index -> (the runs it reproduced in, the runs)."""
    counts: dict[int, int] = {}
    for verdicts in runs:
        for verdict in verdicts:
            index = verdict.expectation.index
            counts[index] = counts.get(index, 0) + verdict.reproduced
    return {index: (count, len(runs)) for index, count in counts.items()}


def exit_code(runs: Sequence[Sequence[Verdict]]) -> int:
    """0 when every expectation reproduced in every run (and there was a run), else 1."""
    reproduced = bool(runs) and all(v.reproduced for verdicts in runs for v in verdicts)
    return 0 if reproduced else 1


def format_verdicts(runs: Sequence[Sequence[Verdict]]) -> str:
    """A table, one row per expectation: what the field saw, whether it reproduced (with several
    runs: in how many), and why: the first run that did not reproduce it, else the last run."""
    if not runs:
        return "no runs"
    rates = rate(runs)
    rows = [("EXPECTED", "VERDICT", "BECAUSE")]
    for at, last in enumerate(runs[-1]):
        count, total = rates[last.expectation.index]
        verdict = "REPRODUCED" if count == total else "not reproduced"
        run = next((n for n, verdicts in enumerate(runs) if not verdicts[at].reproduced), total - 1)
        because = runs[run][at].because
        if total > 1:
            verdict += f" {count}/{total}"
            because = f"run {run + 1}: {because}"
        rows.append((last.expectation.says, verdict, because))
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    return "\n".join(
        f"{says:<{widths[0]}}  {verdict:<{widths[1]}}  {because}" for says, verdict, because in rows
    )
