"""Load and check a repro scenario file: the topology it runs on, its timeline and expectations.

Like a topology, a scenario is checked whole before any testbed exists, with the topology loader's
accessors and bounded YAML reader: every error names the file, the key path
(`steps[3].download.node`) and what is wrong. Each name a step or an expectation uses must exist:
in the topology (codex nodes, relays, LANs for routers) or earlier in the timeline (a dataset is
uploaded before it is downloaded, a download starts before it is awaited).

Steps and expectations are tables (ACTIONS, EXPECTATIONS): an action's or expectation's arguments,
each with the reader that checks and normalises its value, and its default when it is optional.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import ScenarioError, excerpt
from harness.paths import SCENARIOS_DIR, TOPOLOGIES_DIR
from harness.topology import loader
from harness.topology.loader import CONTROL_RE, SEED_RANGE, UDP_TIMEOUT_RANGE_S
from harness.topology.model import Topology

TOP_KEYS = {"name", "description", "field", "topology", "seed", "links", "routers", "steps", "expect"}
STEP_KEYS = {"at", "after", "name"}  # besides its one action
ROUTER_KEYS = {"udp_timeout", "tcp_timeout", "pcap", "hairpin"}  # the LAN settings a scenario may change
MAX_STEPS = 500
MAX_EXPECT = 50
MAX_FIELD = 20  # upstream references
DURATION_MAX_S = 3600  # every duration, wait and timeout
START_MAX_S = 86_400  # `at` and `after`
UPLOAD_RANGE_BYTES = (1, 2**40)
DOWNLOAD_TIMEOUT_S = 300
WAIT_DIRECT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Step:
    """One step of the timeline: an action with its checked arguments (sizes in bytes, defaults
    filled), not before `at` s after the scenario start or `after` s after the previous step."""

    index: int
    name: str  # its label in the timeline; unless the file names it, `<action>-<index>` (dashed)
    action: str
    args: dict[str, Any]
    at: float | None = None
    after: float | None = None


@dataclass(frozen=True)
class Expectation:
    """The failure as the field saw it, one observation: `says` in words, `kind` and `args` for
    the verdict to check against the recorded events."""

    index: int
    says: str
    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    source: Path
    description: str
    field: tuple[str, ...]  # upstream references: issues, pull requests, reports
    topology: Topology  # with the scenario's links, router settings and seed applied
    seed: int
    steps: tuple[Step, ...]
    expect: tuple[Expectation, ...]

    def with_seed(self, seed: int) -> Scenario:
        """The scenario under another seed (`--seed`), its topology's too: every draw follows it."""
        low, high = SEED_RANGE
        if isinstance(seed, bool) or not isinstance(seed, int) or not low <= seed <= high:
            raise ValueError(f"a seed is a whole number from {low} to {high}, not {seed!r}")
        return replace(self, seed=seed, topology=replace(self.topology, seed=seed))


class _Check(loader.Checker):
    """The topology loader's accessors, raising ScenarioError; `prefix` is where in the scenario
    the checked part sits (`topology` for an inline topology)."""

    def __init__(self, file: Path, prefix: str = "") -> None:
        super().__init__(file)
        self.prefix = prefix

    def fail(self, path: str, problem: str) -> ScenarioError:
        return ScenarioError(self.file, ".".join(part for part in (self.prefix, path) if part), problem)


def _unknown(check: _Check, value: str, known: Collection[str], what: str, path: str) -> ScenarioError:
    """`value` is not one of `known`: the closest name, else the names there are."""
    hint = difflib.get_close_matches(value[:64], sorted(known), n=1)
    if hint:
        extra = f"did you mean {hint[0]!r}?"
    else:
        extra = f"known: {', '.join(sorted(known))}" if known else "there is none"
    return check.fail(path, f"{value!r} is not {what} ({extra})")


def _member(check: _Check, value: Any, known: Collection[str], what: str, path: str) -> str:
    name = check.name(value, path)
    if name not in known:
        raise _unknown(check, name, known, what, path)
    return name


def _seconds(check: _Check, value: Any, path: str, low: float, high: float, above: bool = False) -> float:
    """A number of seconds from `low` (or, `above`, more than `low`) to `high`; ints stay ints."""
    number = not isinstance(value, bool) and isinstance(value, int | float)
    if not (number and (low < value if above else low <= value) and value <= high):
        bounds = f"more than {low} and at most {high}" if above else f"from {low} to {high}"
        raise check.fail(path, f"must be a number of seconds {bounds}; got {excerpt(value)}")
    return value


def _text(check: _Check, value: Any, path: str) -> str:
    """A non-empty string, as one line: a folded block's breaks and indents become single spaces."""
    if not isinstance(value, str) or not value.strip():
        raise check.fail(path, f"must be a non-empty string, got {excerpt(value)}")
    text = " ".join(value.split())
    if CONTROL_RE.search(text):
        raise check.fail(path, "has a control character (say, NUL)")
    return text


def _the_one(check: _Check, data: dict, options: Collection[str], what: str, path: str) -> str:
    """The one key of `data` that is among `options` (a step's action, an expectation's kind)."""
    given = [key for key in data if key in options]
    if not given:
        raise check.fail(path, f"names no {what} (one of {', '.join(options)})")
    if len(given) > 1:
        raise check.fail(path, f"names {len(given)} {what}s ({', '.join(given)}): give one")
    return given[0]


Read = Callable[["_Reader", Any, str], Any]  # (reader, value, key path) -> the value, normalised


@dataclass(frozen=True)
class _Arg:
    read: Read
    optional: bool = False
    default: Any = None


class _Reader:
    """Reads steps, in timeline order, then expectations. Checks names against the topology and the
    names the steps read so far introduced: datasets, download ids, step names."""

    def __init__(self, check: _Check, topology: Topology, raw_steps: list) -> None:
        self.check = check
        self.topology = topology
        self.raw_steps = raw_steps
        self.index = 0  # the step being read
        self.datasets: dict[str, int] = {}  # dataset -> the step that uploads it
        self.downloads: dict[str, Step] = {}  # download id -> its step
        self.steps: dict[str, int] = {}  # step name -> its index

    def step(self, index: int, raw: Any) -> Step:
        self.index, path, check = index, f"steps[{index}]", self.check
        data = check.mapping(raw, path)
        check.keys(data, set(ACTIONS) | STEP_KEYS, path)
        action = _the_one(check, data, ACTIONS, "action", path)
        if "at" in data and "after" in data:
            raise check.fail(path, "give at (since the start) or after (since the previous step), not both")
        default = f"{action.replace('_', '-')}-{index}"  # a name: dashes, no underscores
        name = check.name(data.get("name", default), f"{path}.name")
        if name in self.steps:
            raise check.fail(f"{path}.name", f"{name!r} is the name of steps[{self.steps[name]}] too")
        args = self.args(ACTIONS[action], data[action], f"{path}.{action}")
        if action == "download" and args["id"] is None:
            args["id"] = name
        if action == "mapping_timeout" and args["tcp_s"] is None and args["udp_s"] is None:
            raise check.fail(f"{path}.{action}", "give tcp_s, udp_s or both: the new idle lifetimes")
        step = Step(
            index, name, action, args, self._start(data, "at", path), self._start(data, "after", path)
        )
        self._introduce(step, f"{path}.{action}")
        return step

    def expectation(self, index: int, raw: Any) -> Expectation:
        path, check = f"expect[{index}]", self.check
        data = check.mapping(raw, path)
        check.keys(data, set(EXPECTATIONS) | {"says"}, path)
        kind = _the_one(check, data, EXPECTATIONS, "expectation", path)
        if "says" not in data:
            raise check.fail(f"{path}.says", "is required: the failure as the field saw it, in words")
        says = _text(check, data["says"], f"{path}.says")
        return Expectation(index, says, kind, self.args(EXPECTATIONS[kind], data[kind], f"{path}.{kind}"))

    def args(self, spec: dict[str, _Arg], raw: Any, path: str) -> dict[str, Any]:
        data = self.check.mapping({} if raw is None else raw, path)
        if not spec and data:
            raise self.check.fail(path, "takes no arguments: give {}")
        self.check.keys(data, set(spec), path)
        args = {}
        for key, arg in spec.items():
            if key in data:
                args[key] = arg.read(self, data[key], f"{path}.{key}")
            elif arg.optional:
                args[key] = arg.default
            else:
                raise self.check.fail(f"{path}.{key}", "is required")
        if "peer" in args and args["peer"] == args["node"]:
            raise self.check.fail(f"{path}.peer", "is the node itself: name another codex node")
        return args

    def _start(self, data: dict, key: str, path: str) -> float | None:
        if key not in data:
            return None
        return float(_seconds(self.check, data[key], f"{path}.{key}", 0, START_MAX_S))

    def _introduce(self, step: Step, path: str) -> None:
        """The names a step gives the steps after it: its own, an upload's dataset, a download's id."""
        self.steps[step.name] = step.index
        if step.action == "upload":
            dataset = step.args["as"]
            if dataset in self.datasets:
                where = f"steps[{self.datasets[dataset]}]"
                raise self.check.fail(f"{path}.as", f"dataset {dataset!r} is uploaded by {where} already")
            self.datasets[dataset] = step.index
        if step.action == "download":
            known = self.downloads.get(step.args["id"])
            if known is not None:
                where = f"steps[{known.index}]"
                raise self.check.fail(f"{path}.id", f"download id {step.args['id']!r} is {where}'s too")
            self.downloads[step.args["id"]] = step

    def _later(self, action: str, name: str) -> int | None:
        """A later step that would introduce `name` (an upload's dataset, a download's id): for a
        clearer error than "unknown" when the timeline is out of order."""
        for index in range(self.index + 1, len(self.raw_steps)):
            raw = self.raw_steps[index]
            args = raw.get(action) if isinstance(raw, dict) else None
            if isinstance(args, dict):
                default = raw.get("name", f"download-{index}")
                if name == (args.get("as") if action == "upload" else args.get("id", default)):
                    return index
        return None

    # Readers of argument values, each (value, key path) -> the value, checked and normalised.

    def codex(self, value: Any, path: str) -> str:
        return _member(self.check, value, self.topology.nodes, "a codex node of the topology", path)

    def target(self, value: Any, path: str) -> str:
        known = [*self.topology.nodes, *self.topology.relays]
        return _member(self.check, value, known, "a codex node or relay of the topology", path)

    def router(self, value: Any, path: str) -> str:
        lans = [lan.name for lan in self.topology.lans]
        return _member(
            self.check, value, lans, "a LAN of the topology: a router goes by its LAN's name", path
        )

    def name(self, value: Any, path: str) -> str:
        return self.check.name(value, path)

    def flag(self, value: Any, path: str) -> bool:
        return self.check.flag(value, path)

    def size(self, value: Any, path: str) -> int:
        example = "31457280, 30MiB, 512KiB or 1GiB"
        return self.check.byte_size(value, UPLOAD_RANGE_BYTES, example, "1 byte to 1 TiB", path)[0]

    def duration(self, value: Any, path: str) -> float:
        return _seconds(self.check, value, path, 0, DURATION_MAX_S, above=True)

    def timeout(self, value: Any, path: str) -> float:
        return _seconds(self.check, value, path, 1, DURATION_MAX_S)

    def mapping_seconds(self, value: Any, path: str) -> int:
        """A mapping's idle lifetime: whole seconds, as the LAN's own tcp_timeout and udp_timeout."""
        return self.check.whole(value, UDP_TIMEOUT_RANGE_S, "a whole number of seconds", path)

    def dataset(self, value: Any, path: str) -> str:
        name = self.check.name(value, path)
        if name not in self.datasets:
            later = self._later("upload", name)
            if later is not None:
                raise self.check.fail(path, f"dataset {name!r} is uploaded only later, by steps[{later}]")
            raise _unknown(self.check, name, self.datasets, "a dataset an earlier step uploads", path)
        return name

    def background_download(self, value: Any, path: str) -> str:
        name = self.check.name(value, path)
        step = self.downloads.get(name)
        if step is None:
            later = self._later("download", name)
            if later is not None:
                raise self.check.fail(path, f"download {name!r} starts only later, at steps[{later}]")
            raise _unknown(self.check, name, self.downloads, "a download an earlier step starts", path)
        if not step.args["background"]:
            raise self.check.fail(
                path,
                f"download {name!r} (steps[{step.index}]) is not in the background: it ends before the "
                "next step begins (give it background: true)",
            )
        return name

    def download(self, value: Any, path: str) -> str:
        return _member(self.check, value, self.downloads, "a download of the steps", path)

    def step_name(self, value: Any, path: str) -> str:
        return _member(self.check, value, self.steps, "the name of a step", path)

    def groups(self, value: Any, path: str) -> list[list[str]]:
        """Two disjoint, non-empty lists of codex nodes or relays."""
        if not isinstance(value, list) or len(value) != 2:
            raise self.check.fail(path, "must be two lists of codex nodes or relays, like [[a], [b, relay]]")
        seen: dict[str, str] = {}
        for side_index, side in enumerate(value):
            side_path = f"{path}[{side_index}]"
            if not isinstance(side, list) or not side:
                raise self.check.fail(side_path, "must be a non-empty list of codex nodes or relays")
            for index, item in enumerate(side):
                item_path = f"{side_path}[{index}]"
                name = self.target(item, item_path)
                if name in seen:
                    raise self.check.fail(item_path, f"names {name!r} again (as {seen[name]}): one side each")
                seen[name] = item_path
        return [list(side) for side in value]


_CODEX = _Arg(_Reader.codex)
_TARGET = _Arg(_Reader.target)
_ROUTER = _Arg(_Reader.router)
_DURATION = _Arg(_Reader.duration)
_WITHIN = _Arg(_Reader.duration, optional=True)  # seconds; None: any time during the run
_DOWNLOAD_OUTCOME = {"download": _Arg(_Reader.download), "within_s": _WITHIN}

# Actions a step can take, with their arguments. conntrack_full without for_s: until the run ends.
ACTIONS: dict[str, dict[str, _Arg]] = {
    "upload": {"node": _CODEX, "size": _Arg(_Reader.size), "as": _Arg(_Reader.name)},
    "download": {
        "node": _CODEX,
        "dataset": _Arg(_Reader.dataset),
        "id": _Arg(_Reader.name, optional=True),  # None here: the step's name
        "background": _Arg(_Reader.flag, optional=True, default=False),
        "timeout_s": _Arg(_Reader.timeout, optional=True, default=DOWNLOAD_TIMEOUT_S),
    },
    "await": {"download": _Arg(_Reader.background_download)},
    "connect": {"node": _CODEX, "peer": _CODEX},
    "wait_direct": {
        "node": _CODEX,
        "peer": _CODEX,
        "timeout_s": _Arg(_Reader.timeout, optional=True, default=WAIT_DIRECT_TIMEOUT_S),
    },
    "wait": {"seconds": _Arg(_Reader.timeout)},
    "partition": {"between": _Arg(_Reader.groups)},
    "heal": {},
    "link_flap": {"node": _CODEX, "down_s": _DURATION},
    "nat_flush": {"router": _ROUTER},
    "router_reboot": {"router": _ROUTER, "down_s": _DURATION},
    "nat_rebind": {"router": _ROUTER},
    "conntrack_full": {"router": _ROUTER, "for_s": _Arg(_Reader.duration, optional=True)},
    "mapping_timeout": {  # at least one of the two
        "router": _ROUTER,
        "tcp_s": _Arg(_Reader.mapping_seconds, optional=True),
        "udp_s": _Arg(_Reader.mapping_seconds, optional=True),
    },
    "address_change": {"router": _ROUTER},
    "kill": {"target": _TARGET},
    "pause": {"target": _TARGET, "for_s": _DURATION},
    "restart": {"target": _TARGET},
    "capture": {"router": _ROUTER, "seconds": _DURATION},
}

# What the field saw, each judged by harness/experiments/repro/verdict.py.
EXPECTATIONS: dict[str, dict[str, _Arg]] = {
    "download_fails": _DOWNLOAD_OUTCOME,
    "download_completes": _DOWNLOAD_OUTCOME,
    "download_slow": {"download": _Arg(_Reader.download), "slower_than_s": _DURATION},
    "stays_relayed": {"node": _CODEX, "peer": _CODEX},
    "goes_direct": {"node": _CODEX, "peer": _CODEX, "within_s": _WITHIN},
    "reservation_lost": {
        "node": _CODEX,
        "within_s": _WITHIN,
        "after": _Arg(_Reader.step_name, optional=True),
    },
    "reservation_kept": {"node": _CODEX},
}


def _load_topology(check: _Check, raw: Any) -> Topology:
    """A built-in topology by name, or an inline mapping with the topology schema."""
    if isinstance(raw, dict):
        return loader.parse_data(_Check(check.file, "topology"), raw)
    if not isinstance(raw, str):
        kind = type(raw).__name__
        raise check.fail("topology", f"must be a built-in topology's name or a topology mapping, got {kind}")
    built_in = [path.stem for path in TOPOLOGIES_DIR.glob("*.yaml")]
    name = _member(check, raw, built_in, "a built-in topology", "topology")
    return loader.load(TOPOLOGIES_DIR / f"{name}.yaml")


def _apply_links(check: _Check, topology: Topology, raw: Any) -> Topology:
    """Each named node's link replaced by the scenario's, read by the topology's rules."""
    nodes = dict(topology.nodes)
    for name, link in check.mapping(raw, "links").items():
        path = f"links.{name}"
        node = _member(check, name, topology.nodes, "a codex node of the topology", path)
        nodes[node] = replace(nodes[node], link=loader.parse_link(check, link, path))
    return replace(topology, nodes=nodes)


def _apply_routers(check: _Check, topology: Topology, raw: Any) -> Topology:
    """Each named LAN's router settings changed, key by key."""
    lans = {lan.name: lan for lan in topology.lans}
    networks = dict(topology.networks)
    for name, settings in check.mapping(raw, "routers").items():
        path = f"routers.{name}"
        lan = lans[_member(check, name, lans, "a LAN of the topology", path)]
        data = check.mapping(settings, path)
        check.keys(data, ROUTER_KEYS, path)
        changes: dict[str, Any] = {
            key: check.flag(data[key], f"{path}.{key}") for key in ("pcap", "hairpin") if key in data
        }
        for key in ("udp_timeout", "tcp_timeout"):
            if key in data:
                seconds = "a whole number of seconds"
                changes[key] = check.whole(data[key], UDP_TIMEOUT_RANGE_S, seconds, f"{path}.{key}")
        if changes.get("hairpin") and (problem := loader.hairpin_problem(lan.nat)):
            raise check.fail(f"{path}.hairpin", problem)
        networks[name] = replace(lan, **changes)
    return replace(topology, networks=networks)


def _entries(check: _Check, data: dict, key: str, limit: int, what: str) -> list:
    """A required, non-empty list: the steps or the expectations."""
    if key not in data:
        raise check.fail(key, f"is required: {what}")
    entries = data[key]
    if not isinstance(entries, list) or not entries:
        raise check.fail(key, f"must be a non-empty list: {what}; got {excerpt(entries)}")
    check.count(len(entries), limit, key, key)
    return entries


def _load_field(check: _Check, data: dict) -> tuple[str, ...]:
    raw = data.get("field", [])
    if not isinstance(raw, list):
        raise check.fail("field", f"must be a list of upstream references (strings), got {excerpt(raw)}")
    check.count(len(raw), MAX_FIELD, "references", "field")
    return tuple(_text(check, item, f"field[{index}]") for index, item in enumerate(raw))


def _parse(check: _Check, document: Any) -> Scenario:
    data = check.mapping(document, "")
    check.keys(data, TOP_KEYS, "")
    name = check.name(data.get("name", check.file.stem), "name")
    if "topology" not in data:
        raise check.fail("topology", "is required: a built-in topology's name or a topology mapping")
    topology = _load_topology(check, data["topology"])
    topology = _apply_links(check, topology, data.get("links", {}))
    topology = _apply_routers(check, topology, data.get("routers", {}))
    seed = check.whole(data.get("seed", 0), SEED_RANGE, "a whole number", "seed")
    raw_steps = _entries(check, data, "steps", MAX_STEPS, "the timeline, steps executed in order")
    raw_expect = _entries(check, data, "expect", MAX_EXPECT, "the failure as the field saw it")
    reader = _Reader(check, topology, raw_steps)
    steps = tuple(reader.step(index, raw) for index, raw in enumerate(raw_steps))
    return Scenario(
        name=name,
        source=check.file,
        description=loader.load_description(check, data),
        field=_load_field(check, data),
        topology=replace(topology, seed=seed),
        seed=seed,
        steps=steps,
        expect=tuple(reader.expectation(index, raw) for index, raw in enumerate(raw_expect)),
    )


def available() -> list[str]:
    """The scenarios in compose/scenarios, by name."""
    return sorted(path.stem for path in SCENARIOS_DIR.glob("*.yaml"))


def load(name_or_path: str | Path) -> Scenario:
    """`symmetric-relay-limit` means compose/scenarios/symmetric-relay-limit.yaml; else a path."""
    check = _Check(loader.resolve_path(name_or_path, SCENARIOS_DIR))

    def missing() -> str:
        names = available()
        return f"no such scenario file (scenarios: {', '.join(names) if names else 'none yet'})"

    return _parse(check, loader.read_document(check, missing))
