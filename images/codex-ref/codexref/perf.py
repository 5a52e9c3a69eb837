"""Throughput ceilings between two containers, for `make bench`:

    python -m codexref.perf libp2p-serve --listen /ip4/0.0.0.0/tcp/9000 --bytes N
    python -m codexref.perf libp2p-push --target /ip4/<ip>/tcp/9000/p2p/<id> --bytes N
    python -m codexref.perf tcp-serve --port 9001 --bytes N
    python -m codexref.perf tcp-push --target <ip>:9001 --bytes N

The libp2p pair uses the node's own stack (secp256k1 identity, Noise, Yamux) over one stream:
the most any BlockExchange transfer could reach. The server acknowledges once it has every byte;
the pusher times first write to acknowledgement and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr

from codexref import identity, p2p

PROTOCOL = TProtocol("/testbed/perf/1.0.0")
CHUNK = 256 * 1024


def _host():
    key = identity.load_or_create(Path(tempfile.mkdtemp()) / "key")
    return p2p.build_host(key, [])


async def libp2p_serve(listen: str, total: int) -> None:
    host = _host()
    done = trio.Event()

    async def handler(stream) -> None:
        got = 0
        while got < total:
            data = await stream.read(1 << 20)
            if not data:
                break
            got += len(data)
        await stream.write(b"k")
        await stream.close()
        done.set()

    host.set_stream_handler(PROTOCOL, handler)
    async with host.run([multiaddr.Multiaddr(listen)]):
        print(json.dumps({"ready": str(host.get_addrs()[0])}), flush=True)
        await done.wait()
        await trio.sleep(0.5)


async def libp2p_push(target: str, total: int) -> None:
    host = _host()
    async with host.run([multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(target))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [PROTOCOL])
        chunk = b"\xab" * CHUNK
        start = time.monotonic()
        for _ in range(total // CHUNK):
            await stream.write(chunk)
        await stream.read(1)
        _report("libp2p", total, time.monotonic() - start)


def tcp_serve(port: int, total: int) -> None:
    with socket.create_server(("0.0.0.0", port)) as server:
        print(json.dumps({"ready": port}), flush=True)
        conn, _ = server.accept()
        with conn:
            got = 0
            while got < total and (data := conn.recv(1 << 20)):
                got += len(data)
            conn.sendall(b"k")


def tcp_push(target: str, total: int) -> None:
    host, port = target.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as conn:
        chunk = b"\xab" * CHUNK
        start = time.monotonic()
        for _ in range(total // CHUNK):
            conn.sendall(chunk)
        conn.recv(1)
        _report("tcp", total, time.monotonic() - start)


def _report(kind: str, total: int, seconds: float) -> None:
    print(
        json.dumps({"kind": kind, "bytes": total, "seconds": seconds, "mb_s": total / seconds / 1e6}),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="codexref.perf")
    parser.add_argument("mode", choices=["libp2p-serve", "libp2p-push", "tcp-serve", "tcp-push"])
    parser.add_argument("--listen", default="/ip4/0.0.0.0/tcp/9000")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--target")
    parser.add_argument("--bytes", type=int, default=100 * 1024 * 1024)
    args = parser.parse_args()
    if args.mode == "libp2p-serve":
        trio.run(libp2p_serve, args.listen, args.bytes)
    elif args.mode == "libp2p-push":
        trio.run(libp2p_push, args.target, args.bytes)
    elif args.mode == "tcp-serve":
        tcp_serve(args.port, args.bytes)
    else:
        tcp_push(args.target, args.bytes)


if __name__ == "__main__":
    main()
