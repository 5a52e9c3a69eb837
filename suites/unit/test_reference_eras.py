"""The reference node speaks either upstream era (issue 17): config, paths, listening, REST off.

In-process, as test_reference_api.py: requests through httpx's ASGI transport; the libp2p host
runs only where a test says so."""

from __future__ import annotations

import dataclasses
import logging
import socket
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import trio
from codexref import VERSION, config, debuginfo
from codexref.api import build_app
from codexref.era import CODEX, LOGOS, NAT_KEYS, Era
from codexref.lifecycle import serve_rest
from codexref.node import Node
from libp2p.connection_types import ConnectionType
from libp2p.peer.id import ID
from multiaddr import Multiaddr
from starlette.applications import Starlette
from testbed_toolkit import identity, p2p
from testbed_toolkit.nat import peer_connections

LOGOS_ENV = {"STORAGE_LOG_LEVEL": "info"}  # any STORAGE_* variable
RELAY = ("--relay-info-url", "http://127.0.0.1:9/info")  # a relay client that never reaches it
EVIDENCE = ("autonatServers", "observedIps")  # ours, in `nat`
LOCAL_NODE_KEYS = ["nodeId", "peerId", "record", "address", "seen"]
A_PEER_ID = "16Uiu2HAm6HZZr7aToTvEBPpiys4UxajCTU97zj5v7RNR2gbniy1D"
PEER_IDS = (
    A_PEER_ID,
    "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
)


def load(tmp_path: Path, *flags: str, environ: dict[str, str] | None = None) -> config.Config:
    return config.load(["--data-dir", str(tmp_path / "node"), *flags], environ or {})


def make_node(tmp_path: Path, *flags: str, environ: dict[str, str] | None = None) -> Node:
    return Node(load(tmp_path, *flags, environ=environ))


async def _get(app: Starlette, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
        return await client.get(path)


def get(app: Starlette, path: str) -> httpx.Response:
    return trio.run(_get, app, path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- choosing the era -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("environ", "flags", "era"),
    [
        ({}, [], CODEX),
        ({"CODEX_API_PORT": "1"}, [], CODEX),
        ({"STORAGE_API_PORT": "1"}, [], LOGOS),
        ({"CODEX_NAT": "any", "STORAGE_LOG_LEVEL": "info"}, [], LOGOS),  # any STORAGE_* wins
        ({"STORAGE_API_PORT": "1"}, ["--impl", "codex"], CODEX),  # the flag wins
        ({}, ["--impl", "logos-storage"], LOGOS),
    ],
)
def test_the_era_is_the_impl_flag_else_logos_if_any_storage_variable_is_set(
    tmp_path: Path, environ: dict[str, str], flags: list[str], era: Era
) -> None:
    assert load(tmp_path, *flags, environ=environ).era is era


def test_each_era_reads_its_own_variables_and_the_cli_still_wins(tmp_path: Path) -> None:
    both = {"CODEX_API_PORT": "9000", "STORAGE_API_PORT": "9100", "STORAGE_STORAGE_QUOTA": "1MiB"}
    logos = load(tmp_path, environ=both)
    assert (logos.api_port, logos.storage_quota) == (9100, 1 << 20)
    codex = load(tmp_path, "--impl", "codex", environ=both)
    assert (codex.api_port, codex.storage_quota) == (9000, 20 << 30)
    assert load(tmp_path, "--api-port", "9200", environ=both).api_port == 9200


def test_the_logos_era_listens_on_ip_and_port_a_random_one_by_default(tmp_path: Path) -> None:
    assert load(tmp_path, environ=LOGOS_ENV).listen_addrs == ("/ip4/0.0.0.0/tcp/0",)
    environ = {"STORAGE_LISTEN_IP": "127.0.0.1", "STORAGE_LISTEN_PORT": "8070"}
    assert load(tmp_path, environ=environ).listen_addrs == ("/ip4/127.0.0.1/tcp/8070",)
    assert load(tmp_path, "--listen-port", "8071", environ=environ).listen_addrs == (
        "/ip4/127.0.0.1/tcp/8071",
    )


@pytest.mark.parametrize(
    ("impl", "flag"),
    [
        ("logos-storage", "--listen-addrs=/ip4/0.0.0.0/tcp/8070"),
        ("logos-storage", "--disc-port=8090"),
        ("codex", "--listen-port=8070"),
        ("logos-storage", "--listen-port=65536"),
        ("logos-storage", "--listen-ip=::1"),
    ],
)
def test_a_flag_the_era_does_not_have_is_an_error(tmp_path: Path, impl: str, flag: str) -> None:
    with pytest.raises(SystemExit):
        load(tmp_path, "--impl", impl, flag)


def test_only_the_codex_era_has_a_discovery_port(tmp_path: Path) -> None:
    assert load(tmp_path).disc_port == 8090
    assert load(tmp_path, environ=LOGOS_ENV).disc_port is None


@pytest.mark.parametrize(
    ("environ", "bindaddr"),
    [
        ({}, "127.0.0.1"),
        (LOGOS_ENV, None),  # upstream: REST is off unless --api-bindaddr is given
        ({"STORAGE_API_BINDADDR": "0.0.0.0"}, "0.0.0.0"),
    ],
)
def test_the_rest_bind_address_defaults_per_era(
    tmp_path: Path, environ: dict[str, str], bindaddr: str | None
) -> None:
    assert load(tmp_path, environ=environ).api_bindaddr == bindaddr


def test_strict_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert load(tmp_path).strict is False and load(tmp_path, environ=LOGOS_ENV).strict is False
    assert load(tmp_path, environ={"CODEX_STRICT": "true"}).strict is True
    assert load(tmp_path, environ={"STORAGE_STRICT": "true"}).strict is True
    assert load(tmp_path, "--strict").strict is True


def test_without_a_bind_address_the_rest_api_is_off_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = make_node(tmp_path, environ=LOGOS_ENV)

    async def scenario() -> None:
        stop = trio.Event()
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_rest, node, stop)
                await trio.sleep(0.1)
                stop.set()

    with caplog.at_level(logging.WARNING):
        trio.run(scenario)
    assert "REST API is off: no --api-bindaddr / STORAGE_API_BINDADDR given" in caplog.text


# -- paths ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("impl", "other"), [("codex", LOGOS), ("logos-storage", CODEX)])
def test_each_era_serves_under_its_own_prefix_only(tmp_path: Path, impl: str, other: Era) -> None:
    node = make_node(tmp_path, "--impl", impl)
    app = build_app(node)
    own = get(app, f"{node.config.era.api_prefix}/peerid")
    assert (own.status_code, own.json()) == (200, {"id": node.identity.peer_id})
    assert get(app, f"{other.api_prefix}/peerid").status_code == 404


def test_only_the_codex_era_has_marketplace_routes(tmp_path: Path) -> None:
    codex = get(build_app(make_node(tmp_path)), f"{CODEX.api_prefix}/sales/slots")
    assert (codex.status_code, codex.text) == (503, "Persistence is not enabled")
    logos = build_app(make_node(tmp_path, environ=LOGOS_ENV))
    assert get(logos, f"{LOGOS.api_prefix}/sales/slots").status_code == 404


# -- listening --------------------------------------------------------------------------------------
def test_a_random_listen_port_is_the_one_announced_and_signed(tmp_path: Path) -> None:
    node = make_node(tmp_path, "--listen-ip", "127.0.0.1", "--nat", "extip:127.0.0.1", environ=LOGOS_ENV)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run_p2p)
            announced = [str(a).split("/p2p/")[0] for a in node.host.get_addrs()]
            nursery.cancel_scope.cancel()
        return node.announce_addresses, announced, p2p.decode_spr(node.spr)[1]

    announce, host_addrs, record = trio.run(scenario)
    assert len(announce) == 1 and announce[0].startswith("/ip4/127.0.0.1/tcp/")
    assert int(announce[0].rsplit("/", 1)[1]) > 0
    assert host_addrs == announce and record == announce  # no UDP discovery endpoint in this era


def test_the_codex_era_record_starts_with_the_discovery_endpoint(tmp_path: Path) -> None:
    listen = f"/ip4/127.0.0.1/tcp/{free_port()}"
    node = make_node(tmp_path, "--listen-addrs", listen, "--nat", "extip:127.0.0.1")
    assert p2p.decode_spr(node.spr)[1] == ["/ip4/127.0.0.1/udp/8090", listen]


# -- metrics ----------------------------------------------------------------------------------------
def metric_values(node: Node) -> dict[str, float]:
    """Sample name -> value of the node's /metrics text (no labels here)."""
    lines = node.metrics.render().decode().splitlines()
    samples = (line.split(" ") for line in lines if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def upstream_metric_names(prefix: str) -> set[str]:
    counters = (
        "api_uploads",
        "api_downloads",
        "block_exchange_blocks_sent",
        "block_exchange_requests_failed",
    )
    gauges = ("block_exchange_pending_block_requests", "repostore_blocks", "repostore_bytes_used")
    return {*(f"{prefix}{c}_total" for c in counters), *(prefix + g for g in gauges), "libp2p_peers"}


@pytest.mark.parametrize(("environ", "era"), [({}, CODEX), (LOGOS_ENV, LOGOS)])
def test_metric_names_carry_the_eras_prefix_and_libp2p_peers_none(
    tmp_path: Path, environ: dict[str, str], era: Era
) -> None:
    names = set(metric_values(make_node(tmp_path, environ=environ)))
    assert upstream_metric_names(era.metric_prefix) <= names
    other = CODEX if era is LOGOS else LOGOS
    assert not {name for name in names if name.startswith(other.metric_prefix)}
    assert f"{era.metric_prefix}block_exchange_duplicate_blocks_received_total" in names  # ours


def test_strict_mode_leaves_the_reference_only_metric_out(tmp_path: Path) -> None:
    node = make_node(tmp_path, "--strict")
    node.metrics.inc("duplicate_blocks_received")  # still counted where the engine counts it
    names = set(metric_values(node))
    assert upstream_metric_names("codex_") <= names
    assert not {name for name in names if "duplicate" in name}


async def _wait_until(condition, timeout_s: float = 10) -> None:
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.05)


def test_libp2p_peers_counts_distinct_connected_peers(tmp_path: Path) -> None:
    a, b = (make_node(tmp_path / name, "--listen-ip", "127.0.0.1", environ=LOGOS_ENV) for name in "ab")

    async def scenario() -> list[tuple[float, float]]:
        seen = []
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run_p2p)
            await nursery.start(b.run_p2p)
            seen.append((metric_values(a)["libp2p_peers"], metric_values(b)["libp2p_peers"]))
            assert await a.connect(b.identity.peer_id, b.announce_addresses)
            assert await a.connect(b.identity.peer_id, b.announce_addresses)  # the same peer again
            await _wait_until(lambda: metric_values(b)["libp2p_peers"] == 1)
            seen.append((metric_values(a)["libp2p_peers"], metric_values(b)["libp2p_peers"]))
            await a.host.disconnect(b.host.get_id())
            await _wait_until(lambda: metric_values(b)["libp2p_peers"] == 0)
            seen.append((metric_values(a)["libp2p_peers"], metric_values(b)["libp2p_peers"]))
            nursery.cancel_scope.cancel()
        return seen

    assert trio.run(scenario) == [(0, 0), (1, 1), (0, 0)]


# -- /debug/info and strict mode ----------------------------------------------------------------------
def debug_info(node: Node) -> dict:
    response = get(build_app(node), f"{node.config.era.api_prefix}/debug/info")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    ("environ", "keys"),
    [
        ({}, [*CODEX.debug_info_keys, "nat", "connections", "relay"]),
        (LOGOS_ENV, [*LOGOS.debug_info_keys, "relay"]),
    ],
)
def test_debug_info_keeps_the_extras_unless_strict(
    tmp_path: Path, environ: dict[str, str], keys: list[str]
) -> None:
    info = debug_info(make_node(tmp_path, *RELAY, environ=environ))
    assert list(info) == keys
    assert list(info["nat"]) == [*NAT_KEYS, *EVIDENCE]
    assert list(info["relay"]) == ["relay", "reserved", "circuitAddresses", "limits", "error"]


def test_strict_codex_era_debug_info_is_upstreams_with_an_empty_routing_table(tmp_path: Path) -> None:
    node = make_node(tmp_path, "--strict", "--nat", "extip:11.0.0.5", *RELAY)
    info = debug_info(node)
    assert list(info) == list(CODEX.debug_info_keys)
    assert list(info["table"]) == ["localNode", "nodes"] and info["table"]["nodes"] == []
    assert list(info["table"]["localNode"]) == LOCAL_NODE_KEYS
    assert info["table"]["localNode"]["address"] == "11.0.0.5:8090"
    assert info["codex"] == {"version": VERSION, "revision": "reference", "contracts": ""}


@pytest.mark.parametrize(
    ("nat", "client_mode"),
    [("extip:11.0.0.5", False), ("any", True)],
    ids=[
        "announced: a DHT server, no AutoNAT client",
        "not announced: a DHT client until AutoNAT finds it reachable",
    ],
)
def test_strict_logos_era_debug_info_is_upstreams(tmp_path: Path, nat: str, client_mode: bool) -> None:
    node = make_node(tmp_path, "--strict", "--nat", nat, *RELAY, environ=LOGOS_ENV)
    assert node.reachability.client is not node.config.nat.startswith("extip:")
    info = debug_info(node)
    assert list(info) == list(LOGOS.debug_info_keys)
    assert info["storage"] == {"version": VERSION, "revision": "reference"}
    assert info["nat"] == {
        "reachability": "Unknown",
        "clientMode": client_mode,
        "relayRunning": False,
        "portMapping": "none",
    }
    assert info["connections"] == []


def a_state(**changes) -> debuginfo.NodeState:
    peer = {"nodeId": "ab", "peerId": A_PEER_ID, "record": "", "address": "1.2.3.4:5", "seen": True}
    state = debuginfo.NodeState(
        peer_id="me",
        public_key_hex="02ab",
        addrs=["/ip4/1.2.3.4/tcp/1"],
        repo="/datadir",
        spr="spr:x",
        announce_addresses=["/ip4/1.2.3.4/tcp/1"],
        reachable_addresses=["/ip4/1.2.3.4/tcp/1"],
        version="v",
        revision="r",
        table={"localNode": {"peerId": "me"}, "nodes": [peer]},
        dht_nodes=[],
        nat={"reachability": "Reachable", "clientMode": False, "relayRunning": True, "portMapping": "direct"}
        | {"autonatServers": {A_PEER_ID: True}, "observedIps": ["1.2.3.4"]},
        connections=[{"peerId": A_PEER_ID, "direct": False}],
        relay={"relay": A_PEER_ID},
    )
    return dataclasses.replace(state, **changes)


def test_strict_drops_the_peers_we_list_in_the_routing_table_and_the_nat_evidence() -> None:
    loose = debuginfo.render(a_state(), CODEX, strict=False)
    assert loose["table"]["nodes"][0]["peerId"] == A_PEER_ID and "relay" in loose
    strict = debuginfo.render(a_state(), CODEX, strict=True)
    assert strict["table"] == {"localNode": {"peerId": "me"}, "nodes": []}
    logos = debuginfo.render(a_state(table=None), LOGOS, strict=True)
    assert list(logos["nat"]) == list(NAT_KEYS) and logos["connections"] == [
        {"peerId": A_PEER_ID, "direct": False}
    ]


@dataclasses.dataclass
class FakeTransport:
    """What a muxed connection reports of the transport that made it."""

    kind: ConnectionType
    addresses: list[str]

    def get_connection_type(self) -> ConnectionType:
        return self.kind

    def get_transport_addresses(self) -> list[Multiaddr]:
        return [Multiaddr(a) for a in self.addresses]


@dataclasses.dataclass
class FakeConn:
    muxed_conn: FakeTransport
    peerstore: list[str]  # what py-libp2p's SwarmConn.get_transport_addresses() may fall back to

    def get_transport_addresses(self) -> list[Multiaddr]:
        return [Multiaddr(a) for a in self.peerstore]


def test_connections_are_direct_unless_every_path_is_relayed() -> None:
    relay, relayed, both = (ID(identity.parse_peer_id(p)) for p in PEER_IDS)
    punched = ID(b"hole-punched")
    circuit_address = f"/ip4/10.0.0.1/tcp/4001/p2p/{relay.to_base58()}/p2p-circuit"
    circuit = FakeConn(FakeTransport(ConnectionType.RELAYED, [circuit_address]), [circuit_address])
    tcp = FakeConn(FakeTransport(ConnectionType.DIRECT, ["/ip4/10.0.0.2/tcp/4001"]), [])
    # a hole-punched connection to a peer we dialled through a circuit: the peerstore holds the
    # circuit address, the transport says direct
    hole_punched = FakeConn(FakeTransport(ConnectionType.DIRECT, []), [circuit_address])
    untyped_circuit = FakeConn(FakeTransport(ConnectionType.UNKNOWN, [circuit_address]), [])
    network = SimpleNamespace(
        connections={
            relay: [tcp],
            relayed: [circuit, untyped_circuit],
            both: [circuit, tcp],
            punched: [circuit, hole_punched],
            ID(b"x"): [],
        }
    )
    host = SimpleNamespace(get_network=lambda: network)
    assert peer_connections(host) == [
        {"peerId": relay.to_base58(), "direct": True},
        {"peerId": relayed.to_base58(), "direct": False},
        {"peerId": both.to_base58(), "direct": True},
        {"peerId": punched.to_base58(), "direct": True},
    ]


def test_a_connected_peer_is_listed_in_connections(tmp_path: Path) -> None:
    a, b = (make_node(tmp_path / n, "--listen-ip", "127.0.0.1", "--strict", environ=LOGOS_ENV) for n in "ab")

    async def scenario() -> tuple[dict, dict]:
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run_p2p)
            await nursery.start(b.run_p2p)
            assert await a.connect(b.identity.peer_id, b.announce_addresses)
            await _wait_until(lambda: bool(b.debug_info()["connections"]))
            infos = a.debug_info(), b.debug_info()
            nursery.cancel_scope.cancel()
        return infos

    info_a, info_b = trio.run(scenario)
    assert info_a["connections"] == [{"peerId": b.identity.peer_id, "direct": True}]
    assert info_b["connections"] == [{"peerId": a.identity.peer_id, "direct": True}]


@pytest.mark.parametrize("environ", [{}, LOGOS_ENV], ids=["codex", "logos"])
def test_strict_mode_has_no_debug_connection_route(tmp_path: Path, environ: dict[str, str]) -> None:
    path = f"/debug/connection/{A_PEER_ID}"
    loose = make_node(tmp_path / "loose", environ=environ)
    answer = get(build_app(loose), loose.config.era.api_prefix + path)
    assert (answer.status_code, answer.text) == (404, "Not connected to peer")  # the route is there
    strict = make_node(tmp_path / "strict", "--strict", environ=environ)
    answer = get(build_app(strict), strict.config.era.api_prefix + path)
    assert (answer.status_code, answer.content) == (404, b"")


@pytest.mark.parametrize("path", ["/nowhere", "/data/x/y/z", "/api/codex/v2/space"])
def test_a_path_without_a_route_is_404_with_no_body_like_upstream(tmp_path: Path, path: str) -> None:
    answer = get(build_app(make_node(tmp_path)), path)
    assert (answer.status_code, answer.content) == (404, b"")
    assert "content-type" not in answer.headers


def test_a_known_path_with_another_method_is_404_too(tmp_path: Path) -> None:
    """Upstream's router keys routes by method and path: no 405."""
    app = build_app(make_node(tmp_path))

    async def delete() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://node"
        ) as client:
            return await client.delete(f"{CODEX.api_prefix}/space")

    answer = trio.run(delete)
    assert (answer.status_code, answer.content) == (404, b"")
