"""`status-backend`: serve the reference status peer until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import trio
from hypercorn.trio import serve
from testbed_toolkit.serving import hypercorn_config, stop_on_signals

from statusref.api import SignalHub, build_app
from statusref.embedded import EmbeddedStorage
from statusref.messenger import Messenger
from statusref.storage import RestStorage, Storage, StorageError

log = logging.getLogger("status-backend")


def storage_from_env(data_dir: Path) -> Storage:
    """The storage node in this process, configured by `STATUS_STORAGE_CONFIG` (a libstorage
    config: the node's CLI option names as keys); a separate node over REST only when
    `CODEX_API_URL` names one (status-go's first proof of concept)."""
    if url := os.environ.get("CODEX_API_URL"):
        return RestStorage(url)
    config = json.loads(os.environ.get("STATUS_STORAGE_CONFIG") or "{}")
    if not isinstance(config, dict):
        raise StorageError("STATUS_STORAGE_CONFIG: not a JSON object")
    return EmbeddedStorage({"data-dir": str(data_dir / "storage"), **config})


async def run(address: str, storage: Storage, data_dir: Path) -> None:
    hub = SignalHub()
    messenger = Messenger(
        data_dir=data_dir,
        storage=storage,
        emit=hub.emit,
        chat_port=int(os.environ.get("STATUS_CHAT_PORT", "30303")),
        announce_ip=os.environ.get("STATUS_ANNOUNCE_IP", "127.0.0.1"),
    )
    stop = trio.Event()
    config = hypercorn_config(address, graceful_timeout_s=2)
    async with trio.open_nursery() as system:
        system.start_soon(stop_on_signals, stop)
        print(f"status-backend (reference peer) listening on {address}", flush=True)
        await serve(build_app(messenger, hub, system), config, shutdown_trigger=stop.wait)
        system.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="status-backend")
    parser.add_argument("--address", default="0.0.0.0:3333")
    parser.add_argument("--pprof", default="false")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("libp2p", "multiaddr", "hypercorn", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    data_dir = Path(os.environ.get("STATUS_DATA_DIR", "/usr/status-user"))
    try:
        storage = storage_from_env(data_dir)
    except (StorageError, ValueError) as exc:
        print(f"status-backend: {exc}", file=sys.stderr)
        return 1
    trio.run(run, args.address, storage, data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
