"""Property: whatever a topology file holds, loading it ends in a Plan that renders (without docker)
or in a TopologyError with a bounded message; never another exception, a hang, or a rendered file
that says more than the plan (a service replaced, a line injected into an env file).

Documents are built from the loader's own key sets and mutated: wrong types, huge and negative
numbers, newlines and NULs, reserved names, deep nesting, aliases, duplicate and complex keys.
Deterministic (derandomize): CI runs the same examples every time.
"""

from __future__ import annotations

import ipaddress
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.errors import TopologyError
from harness.render.compose import render
from harness.topology import loader
from harness.topology.model import (
    NAT_PROFILES,
    PEERING_MODES,
    PORT_MAPPING,
    RELAY_PROFILES,
    REPO_KINDS,
    STATUS_ROLES,
    Topology,
)
from harness.topology.plan import make_plan

IMAGES = {name: f"testbed/{name}:fuzz" for name in ("codex-ref", "status-ref", "relay", "router", "stun")}
MESSAGE_LIMIT = 800  # characters besides the file name
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml reads a rendered file 20x faster

names = st.builds(str.__add__, st.sampled_from("abcdsw"), st.text("abcnrtu0-", max_size=5))
env_names = st.builds(
    str.__add__, st.sampled_from(["CODEX_", "STATUS_", "RELAY_"]), st.text("ABXY_", min_size=1)
)
env_values = st.one_of(st.integers(0, 70_000), st.booleans(), st.text("abc19-:/ ", max_size=8))
envs = st.dictionaries(env_names, env_values, max_size=3)
LINK_VALUES = {
    "rate": st.sampled_from(["8mbit", "1.5gbit", "64kbit"]),
    "delay_ms": st.integers(0, 100),
    "jitter_ms": st.integers(0, 10),
    "loss_pct": st.floats(0, 5),
    "reorder_pct": st.floats(0, 25),
}
shapings = st.fixed_dictionaries(
    {"rate": LINK_VALUES["rate"]}, optional={k: v for k, v in LINK_VALUES.items() if k != "rate"}
).map(lambda link: {"delay_ms": 5, **link} if "jitter_ms" in link else link)  # jitter needs a delay
# both directions from the top keys, one direction's own under up/down
links = st.builds(lambda both, up, down: {**both, "up": up, "down": down}, shapings, shapings, shapings)
images = st.sampled_from(
    ["codexstorage/nim-codex:0.2.5", "localhost:5000/a/b_c@sha256:" + "0" * 64, "statusgo-local:latest"]
)
# A valid value for each key a node's own mapping holds; `kind`, `network`, `peers` and `relay`
# depend on the rest of the document.
NODE_VALUES = {
    "impl": st.sampled_from(["reference", "codex", "logos-storage"]),
    "image": images,
    "storage_quota": st.sampled_from(["2MiB", "1073741824", "512 MiB", 4096, "20GiB"]),
    "block_ttl": st.sampled_from(["30d", "90m", 3600, "10s"]),
    "log_level": st.sampled_from(["debug", "INFO;TRACE:blockexcengine", "warn"]),
    "repo_kind": st.sampled_from(REPO_KINDS),
    "env": envs,
    "flags": st.dictionaries(
        st.sampled_from(["block-retries", "max-peers", "log-format"]), st.integers(1, 9)
    ),
    "link": links,
}
STATUS_VALUES = {"impl": st.just("reference"), "image": images, "env": envs}  # besides role, codex
storage_values = st.one_of(
    st.text(max_size=8), st.integers(0, 10**6), st.booleans(), st.lists(st.text(max_size=8))
)
STORAGE_CONFIG = st.dictionaries(
    st.sampled_from(["block-retries", "log-level", "nat", "bootstrap-node"]), storage_values
)
RELAY_VALUES = {"profile": st.sampled_from(RELAY_PROFILES), "env": envs}
NETWORK_VALUES = {
    "nat": st.sampled_from(NAT_PROFILES),
    "hairpin": st.booleans(),
    "udp_timeout": st.integers(1, 600),
    "tcp_timeout": st.integers(1, 600),
    "pcap": st.booleans(),
    "port_mapping": st.sampled_from(PORT_MAPPING),
}
TOP_VALUES = {
    "description": st.text(max_size=30),
    "peering": st.sampled_from(PEERING_MODES),
    "healthcheck_interval": st.integers(1, 3600),
    "seed": st.integers(0, 2**32 - 1),
    "tcp_congestion": st.sampled_from(["reno", "cubic", "bbr"]),
}
HOSTILE = st.one_of(
    st.sampled_from(
        [None, True, [], {}, [[1]], {"a": {"b": 1}}, -1, 0, 2**40, 10**12, 2**70, 1.5, float("nan"), "", " "]
    ),
    st.sampled_from(
        ["x\n", "a\x00b", "a\rb", "../../x", "/x", "stun", "router-home", "wan-carrier", "$HOME"]
    ),
    st.sampled_from(["a" * 300, "8080", "65536", "8070", "1000gbit", "99999999999d", "10" * 20 + "TiB"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.integers(),
    st.recursive(
        st.none() | st.integers(-5, 5) | st.text("ab\n", max_size=3),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    ),
)
YAML_PIECES = [":", "- ", "&a ", "*a", "!!", "{", "[", "\n", "\t", "\x00", "%", "|", "#", "? "]
ALL_KEYS = sorted(
    loader.TOP_KEYS | loader.NETWORK_KEYS | loader.NODE_KEYS | loader.STATUS_KEYS | loader.LINK_KEYS
)


def _some(draw: st.DrawFn, values: dict) -> dict:
    keys = draw(st.sets(st.sampled_from(sorted(values)), max_size=3))
    return {key: draw(values[key]) for key in sorted(keys)}


def _codex_node(draw: st.DrawFn, network: str, others: list[str], relays: list[str]) -> dict:
    node = {"kind": "codex", "network": network, **_some(draw, NODE_VALUES)}
    if others and draw(st.booleans()):
        node["peers"] = draw(st.lists(st.sampled_from(others), unique=True, max_size=2))
    if relays and draw(st.booleans()):
        node["relay"] = draw(st.sampled_from(relays))
    return node


@st.composite
def documents(draw: st.DrawFn) -> dict:
    """A topology as the grammar allows it: mostly valid, some combinations refused (impl and image,
    hairpin on a profile that does not forward, a node called `stun`)."""
    lans = draw(st.lists(names.filter(lambda n: n != "wan"), max_size=3, unique=True))
    networks = {"wan": {"kind": "wan"}} | {
        lan: {"kind": "lan", **_some(draw, NETWORK_VALUES)} for lan in lans
    }
    for lan in lans:
        networks[lan].setdefault("nat", draw(NETWORK_VALUES["nat"]))
    node_names = draw(st.lists(names, min_size=max(1, len(lans)), max_size=6, unique=True))
    codex, relays = node_names[: max(1, len(lans)) + 1], node_names[max(1, len(lans)) + 1 :]
    shared_env = draw(envs)  # the same object twice: safe_dump writes an anchor and an alias
    nodes = {}
    for i, name in enumerate(codex):
        network = lans[i] if i < len(lans) else draw(st.sampled_from(["wan", *lans]))
        nodes[name] = _codex_node(draw, network, [n for n in codex if n != name], relays)
        if draw(st.booleans()):
            nodes[name]["env"] = shared_env
    for name in relays:
        nodes[name] = {"kind": "relay", **_some(draw, RELAY_VALUES)}
    wan_codex = [n for n in codex if nodes[n]["network"] == "wan"]
    partners = draw(st.lists(st.sampled_from(wan_codex), unique=True, max_size=2)) if wan_codex else []
    for i, partner in enumerate(partners):
        role = draw(st.sampled_from(STATUS_ROLES))
        nodes[f"peer-{i}"] = {"kind": "status", "role": role, "codex": partner, **_some(draw, STATUS_VALUES)}
    for i in range(draw(st.integers(0, 2))):  # embedded storage: on any network, maybe a relay
        peer = {"kind": "status", "role": draw(st.sampled_from(STATUS_ROLES)), **_some(draw, STATUS_VALUES)}
        peer["network"] = draw(st.sampled_from(["wan", *lans]))
        if draw(st.booleans()):
            peer["storage"] = draw(STORAGE_CONFIG)
        if relays and draw(st.booleans()):
            peer["relay"] = draw(st.sampled_from(relays))
        nodes[f"embedded-{i}"] = peer
    return {"name": draw(names), **_some(draw, TOP_VALUES), "networks": networks, "nodes": nodes}


def _slots(value: object, found: list) -> list:
    """Every (container, key) in a document, depth first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in list(items):
        found.append((value, key))
        _slots(child, found)
    return found


@st.composite
def mutated(draw: st.DrawFn, document: dict) -> dict:
    """The document with a value replaced, a key dropped or an unknown-or-misplaced key added."""
    slots = _slots(document, [])
    container, key = slots[draw(st.integers(0, len(slots) - 1))]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "replace" or isinstance(container, list):
        container[key] = draw(HOSTILE)
    elif action == "drop":
        del container[key]
    else:
        target = container[key] if isinstance(container[key], dict) else container
        target[draw(st.sampled_from([*ALL_KEYS, "stun", "x-extra", "CODEX_API_PORT"]))] = draw(HOSTILE)
    return document


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    """`levels` anchors, each `fanout` aliases of the one before: fanout ** levels strings expanded."""
    levels, fanout = draw(st.integers(1, 9)), draw(st.integers(2, 10))
    anchors = [f"&l0 [{', '.join(['lol'] * fanout)}]"]
    anchors += [f"&l{i} [{', '.join([f'*l{i - 1}'] * fanout)}]" for i in range(1, levels)]
    return f"[{', '.join(anchors)}]"


def _insert(text: str, at: int, piece: str) -> str:
    return text[:at] + piece + text[at:]


def _duplicate_line(text: str, at: int) -> str:
    lines = text.splitlines(keepends=True)
    return "".join([*lines[: at + 1], *lines[at:]])


@st.composite
def texts(draw: st.DrawFn) -> str:
    document = draw(documents())
    if draw(st.integers(0, 2)) > 0:
        document = draw(mutated(document))
    text = yaml.safe_dump(document, sort_keys=False)
    at = draw(st.integers(0, len(text)))
    edits = {
        "none": lambda: text,
        "duplicate key": lambda: text + text.splitlines(keepends=True)[0],  # `name:` again
        "alias bomb": lambda: f"description: {draw(alias_bombs())}\n" + text,
        "deep nesting": lambda: "description: " + "[" * draw(st.integers(10, 200)) + "\n" + text,
        "complex key": lambda: "? [a, b]\n: 1\n" + text,
        "recursive alias": lambda: "description: &d [*d]\n" + text,
        "duplicate line": lambda: _duplicate_line(text, at % (text.count("\n") or 1)),
        "cut": lambda: text[:at],
        "insert": lambda: _insert(text, at, draw(st.sampled_from(YAML_PIECES))),
    }
    name = draw(st.sampled_from([*["none"] * 4, *edits]))  # most documents stay as dumped
    event(f"edit: {name}")
    return edits[name]()


def _check_plan_renders(topology: Topology, out: Path) -> None:
    kinds = topology.network_kinds()
    nets = [ipaddress.IPv4Network(f"10.{i}.0.0/24") for i in range(len(kinds))]
    plan = make_plan(topology, nets, IMAGES, project="tb-fuzz", created="2026-01-01T00:00:00Z")
    shutil.rmtree(out, ignore_errors=True)
    compose = yaml.load(render(plan, out).read_text(), Loader=FAST_LOADER)
    assert sorted(compose["services"]) == sorted(plan.containers), "a service replaced another"
    for service in [*plan.nodes.values(), *plan.status.values()]:
        lines = (out / "nodes" / f"{service.name}.env").read_text().splitlines()[1:]  # after a comment
        assert sorted(lines) == sorted(f"{key}={value}" for key, value in service.env.items()), service.name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=texts())
def test_a_topology_file_becomes_a_plan_or_a_bounded_topology_error(text: str, workdir: Path) -> None:
    file = workdir / "fuzz.yaml"
    file.write_text(text)
    try:
        topology = loader.load(file)
    except TopologyError as exc:
        event("TopologyError")
        assert len(str(exc)) - len(str(file)) < MESSAGE_LIMIT, str(exc)
        return
    event("plan")
    _check_plan_renders(topology, workdir / "out")


def test_the_fuzz_grammar_covers_every_key_the_loader_knows() -> None:
    assert {*NODE_VALUES, "kind", "network", "peers", "relay"} == loader.NODE_KEYS
    assert {*STATUS_VALUES, "kind", "role", "codex", "network", "storage", "relay"} == loader.STATUS_KEYS
    assert {*RELAY_VALUES, "kind"} == loader.RELAY_KEYS
    assert {*NETWORK_VALUES, "kind"} == loader.NETWORK_KEYS
    assert {*TOP_VALUES, "name", "networks", "nodes"} == loader.TOP_KEYS
    assert {*LINK_VALUES, "up", "down"} == loader.LINK_KEYS
