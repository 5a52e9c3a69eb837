"""`make bench` (link conditions part): how true the declared delay is, and what a conditioned
link sustains. On a kernel without netem the conditions are the link stage's (NFQUEUE, user
space), which is what this measures there; with netem, netem's.

Per declared one-way delay (both directions, so the round trip is twice it): the RTT of 200 TCP
handshakes from the conditioned node to an unconditioned one (a SYN and its SYN-ACK: one round
trip, nothing else), p50/p99 against the declared round trip; then one TCP stream of 64 MB
between them, the throughput. Writes bench-results/linkstage.json.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path

from harness.net.plumbing import netem_available, run_in_netns
from harness.paths import REPO_ROOT
from harness.testbed import Testbed

DELAYS_MS = (1, 10, 40, 100)
JITTER_MS = {100: 10}
HANDSHAKES = 200
STREAM_BYTES = 64_000_000
PORT = 9555
RESULTS = REPO_ROOT / "bench-results"

HANDSHAKE_RTTS = f"""
import socket, time
rtts = []
for _ in range({HANDSHAKES}):
    start = time.perf_counter()
    socket.create_connection((TARGET, {PORT}), timeout=5).close()
    rtts.append((time.perf_counter() - start) * 1000)
rtts.sort()
print(rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.99)])
"""
SINK = f"""
import socket
server = socket.create_server(("0.0.0.0", {PORT}), backlog=256)
server.settimeout(120)
while True:
    conn, _ = server.accept()
    total = 0
    while data := conn.recv(1 << 20):
        total += len(data)
    conn.close()
    if total:
        print(total)
        break
"""
SOURCE = f"""
import socket, time
conn = socket.create_connection((TARGET, {PORT}), timeout=30)
chunk, sent, start = b"x" * (1 << 20), 0, time.perf_counter()
while sent < {STREAM_BYTES}:
    conn.sendall(chunk)
    sent += len(chunk)
conn.shutdown(socket.SHUT_WR)
conn.recv(1)
print(sent / (time.perf_counter() - start) / 1e6)
"""


def topology(folder: Path) -> Path:
    nodes = ["  sink: {kind: codex}"]
    for delay in DELAYS_MS:
        jitter = f", jitter_ms: {JITTER_MS[delay]}" if delay in JITTER_MS else ""
        nodes.append(f"  d{delay}: {{kind: codex, link: {{delay_ms: {delay}{jitter}}}}}")
    path = folder / "linkstage-bench.yaml"
    path.write_text("name: linkstage-bench\npeering: none\nnodes:\n" + "\n".join(nodes) + "\n")
    return path


def measure(testbed: Testbed, node: str) -> dict:
    project, sink = testbed.plan.project, testbed.container("sink")
    target = testbed.plan.nodes["sink"].ip
    listener = threading.Thread(target=run_in_netns, args=(sink, ["python3", "-c", SINK], project))
    listener.start()
    try:
        p50, p99 = map(
            float,
            run_in_netns(
                testbed.container(node), ["python3", "-c", f"TARGET={target!r}" + HANDSHAKE_RTTS], project
            ).split(),
        )
        throughput = float(
            run_in_netns(testbed.container(node), ["python3", "-c", f"TARGET={target!r}" + SOURCE], project)
        )
    finally:
        listener.join(timeout=150)
    return {"rtt_p50_ms": round(p50, 2), "rtt_p99_ms": round(p99, 2), "stream_mb_s": round(throughput, 1)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Testbed.up(topology(Path(tmp))) as testbed:
        netem = netem_available(testbed.container("sink"), testbed.plan.project)
        rows = []
        for delay in DELAYS_MS:
            row = {"declared_rtt_ms": 2 * delay, "jitter_ms": JITTER_MS.get(delay, 0)}
            row |= measure(testbed, f"d{delay}")
            row["p50_error_ms"] = round(row["rtt_p50_ms"] - row["declared_rtt_ms"], 2)
            rows.append(row)
            print(
                f"declared RTT {row['declared_rtt_ms']:>4} ms (jitter ±{row['jitter_ms']} each way): "
                f"p50 {row['rtt_p50_ms']:7.2f} ms, p99 {row['rtt_p99_ms']:7.2f} ms, "
                f"one TCP stream {row['stream_mb_s']:6.1f} MB/s"
            )
    RESULTS.mkdir(exist_ok=True)
    report = {"conditions_by": "netem" if netem else "link stage", "handshakes": HANDSHAKES, "rows": rows}
    (RESULTS / "linkstage.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
