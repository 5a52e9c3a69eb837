"""harness.net.sockets: the kernel's view of a container's TCP connections, read from `ss -tniHO`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.net import sockets
from harness.net.sockets import TcpConnection, parse

# `ss -tniHO state established` as iproute2 6.x prints it: no header, no state column (the state
# filter drops it), the info on the same line (-O)
SS_OUTPUT = (
    "0      0      10.213.5.10:8070   11.200.0.16:8070 cubic wscale:7,7 rto:204 rtt:0.123/0.05 ato:40"
    " mss:1448\n"
    "0      0      10.213.5.10:41822   11.200.0.12:8070 cubic wscale:7,7 rto:244 rtt:40.5/20.25 mss:1448"
    " pmtu:1500 rcvmss:536 advmss:1448 cwnd:10 bytes_sent:1024 segs_out:12\n"
    "0      0      [::ffff:11.200.9.10]:8080   [::ffff:11.200.9.1]:51234 cubic wscale:7,7 rto:200 mss:32768\n"
    "\n"
)


def test_each_established_socket_is_its_addresses_and_smoothed_rtt() -> None:
    assert parse(SS_OUTPUT) == [
        TcpConnection("10.213.5.10:8070", "11.200.0.16:8070", 0.123),
        TcpConnection("10.213.5.10:41822", "11.200.0.12:8070", 40.5),
        TcpConnection("[::ffff:11.200.9.10]:8080", "[::ffff:11.200.9.1]:51234", None),
    ]


def test_a_v4_peer_of_a_dual_stack_socket_reads_as_v4() -> None:
    dual = parse(SS_OUTPUT)[2]
    assert (dual.remote_ip, dual.local_port) == ("11.200.9.1", 8080)


def test_a_v6_address_keeps_its_colons() -> None:
    [conn] = parse("0 0 [fd00::10]:8070 [fd00::16]:40000 cubic rtt:1.5/0.75\n")
    assert (conn.remote_ip, conn.local_port, conn.rtt_ms) == ("fd00::16", 8070, 1.5)


def test_the_port_and_peer_are_split_from_the_addresses() -> None:
    first = parse(SS_OUTPUT)[0]
    assert (first.remote_ip, first.local_port) == ("11.200.0.16", 8070)


@pytest.mark.parametrize("noise", ["", "\n\n", "0 0 10.0.0.1:1\n", "   \n"])
def test_lines_without_both_addresses_are_skipped(noise: str) -> None:
    assert parse(noise) == []


def test_rto_and_minrtt_are_not_mistaken_for_the_rtt() -> None:
    [conn] = parse("0 0 10.0.0.1:1 10.0.0.2:2 cubic rto:204 minrtt:0.05 mss:1448\n")
    assert conn.rtt_ms is None


def test_established_asks_ss_in_the_containers_netns(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def run_in_netns(target, command, project):
        calls.append((target.name, command, project))
        return SS_OUTPUT

    monkeypatch.setattr(sockets, "run_in_netns", run_in_netns)
    assert len(sockets.established(SimpleNamespace(name="alice"), "p")) == 3
    assert calls == [("alice", ["ss", "-tniHO", "state", "established"], "p")]
