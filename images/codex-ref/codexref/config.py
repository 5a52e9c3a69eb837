"""The `codex` command line: upstream's long flags, with the era's environment variables as
fallback (`CODEX_*` or `STORAGE_*`; CLI > env).

Only the upstream flags (nim-codex `codex/conf.nim` @ bd360322, logos-storage-nim `storage/conf.nim`)
that the reference node implements are accepted, each era's own; unknown flags are an error, as
with upstream's confutils.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from codexref import era as eras
from codexref.blocks import REPO_KINDS
from codexref.era import Era

UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "FATAL")


def parse_bytes(text: str) -> int:
    """`1073741824`, `20GiB`, `512MB`, `64k`: binary units, as upstream's NBytes parser."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgtKMGT]?)(i?[bB])?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a byte size: {text!r}")
    return int(match.group(1)) * UNITS[match.group(2).lower()]


def parse_seconds(text: str) -> int:
    """Integer seconds, or a number with s/m/h/d."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_timeout(text: str) -> float:
    """Seconds, fractions allowed (`0.5`); zero would fail every request it bounds."""
    if not re.fullmatch(r"\s*(\d+\.?\d*|\.\d+)\s*", text) or float(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return float(text)


def parse_bool(text: str) -> bool:
    """confutils' booleans: `--advertise-content=false`."""
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"not true or false: {text!r}")
    return value == "true"


def parse_port(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return int(text)


def parse_ipv4(text: str) -> str:
    """An IPv4 address: the reference node's multiaddrs and records are /ip4 only."""
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


@dataclass(frozen=True)
class Config:
    era: Era
    strict: bool
    data_dir: Path
    listen_addrs: tuple[str, ...]
    nat: str
    disc_port: int | None  # None: the era has no discv5
    bootstrap_nodes: tuple[str, ...]
    api_bindaddr: str | None  # None: REST is off
    api_port: int
    api_prefix: str
    api_body_timeout: float
    log_level: str
    storage_quota: int
    block_ttl: int
    block_maintenance_interval: int
    block_maintenance_count: int
    block_retries: int
    max_inflight_per_peer: int
    relay_info_url: str | None
    autonat: AutonatSettings
    autonat_server: bool  # answers AutoNAT requests
    repo_kind: str
    metrics: bool
    metrics_address: str
    metrics_port: int
    advertise_content: bool  # Logos era: announce stored manifests on the DHT
    advertise_interval: int  # seconds between re-announcements of every manifest

    @property
    def announce_ip(self) -> str | None:
        return self.nat.split(":", 1)[1] if self.nat.startswith("extip:") else None

    @property
    def autonat_client(self) -> bool:
        """Logos: the AutoNAT client runs only without `--nat=extip:` (logos-storage-nim
        `storage/storage.nim`: an announced address is not verified). The Codex era's AutoNAT is a
        testbed extension and always runs."""
        return self.era.discv5 or self.announce_ip is None


@dataclass(frozen=True)
class Env:
    """Upstream's environment fallback for the era's flags: `--api-port` reads `CODEX_API_PORT`
    or `STORAGE_API_PORT`."""

    era: Era
    environ: Mapping[str, str]

    def get(self, flag: str, default: str) -> str:
        return self.environ.get(self.era.env_name(flag), default)

    def items(self, flag: str) -> list[str]:
        return [item for item in re.split(r"[\s,]+", self.get(flag, "")) if item]

    def switch(self, flag: str) -> bool:
        return self.get(flag, "false").lower() == "true"


def _add_impl_flag(p: argparse.ArgumentParser) -> None:
    # not an upstream flag: the era, for tests (the harness sets one era's variables instead)
    p.add_argument("--impl", choices=sorted(eras.ERAS), default=None)


def choose_era(argv: list[str] | None, environ: Mapping[str, str]) -> Era:
    """`--impl` if given, else the era whose variables are set."""
    pre = argparse.ArgumentParser(add_help=False)
    _add_impl_flag(pre)
    impl = pre.parse_known_args(argv)[0].impl
    return eras.ERAS[impl] if impl else eras.from_environment(environ)


def _add_listen_flags(p: argparse.ArgumentParser, env: Env) -> None:
    if env.era.listen_by_port:
        p.add_argument(
            "--listen-ip", "-i", type=parse_ipv4, default=parse_ipv4(env.get("listen-ip", "0.0.0.0"))
        )
        # upstream's default 0: a port the OS picks (announced once bound)
        p.add_argument(
            "--listen-port", "-l", type=parse_port, default=parse_port(env.get("listen-port", "0"))
        )
    else:
        p.add_argument("--listen-addrs", "-i", action="append", default=None)
    if env.era.discv5:
        p.add_argument("--disc-port", "-u", type=int, default=int(env.get("disc-port", "8090")))


def parse_confidence(text: str) -> float:
    """A share in (0, 1], as `--nat-min-confidence`."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"not a confidence in (0, 1]: {text!r}")
    return value


def parse_positive(text: str) -> int:
    """An integer of at least 1, as upstream's validateAutonatConfig demands of queue and peers."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not an integer of at least 1: {text!r}")
    return int(text)


@dataclass(frozen=True)
class AutonatSettings:
    """The AutoNAT client's rounds (logos-storage-nim `storage/conf.nim` `nat-*` flags): every
    `schedule_interval_s`, ask peers until `peers_to_ask` answered; the last `max_queue_size`
    answers are kept, and a verdict holds once its share of the queue reaches `min_confidence`."""

    schedule_interval_s: int
    peers_to_ask: int
    max_queue_size: int
    min_confidence: float


# The Codex era has no AutoNAT upstream (the reference node's is a testbed extension): one answer
# decides, as the single relay of a testbed is often the only server a node can ask.
CODEX_ERA_AUTONAT = AutonatSettings(
    schedule_interval_s=120, peers_to_ask=1, max_queue_size=1, min_confidence=1.0
)


def _add_nat_flags(p: argparse.ArgumentParser, env: Env) -> None:
    """The Logos era's AutoNAT flags, with upstream's defaults: the client's, and the hidden
    `--autonat-server`."""
    if env.era.discv5:
        return
    p.add_argument("--autonat-server", action="store_true", default=env.switch("autonat-server"))
    p.add_argument(
        "--nat-schedule-interval",
        type=parse_seconds,
        default=parse_seconds(env.get("nat-schedule-interval", "2m")),
    )
    for flag, parse, default in (
        ("nat-num-peers-to-ask", parse_positive, "3"),
        ("nat-max-queue-size", parse_positive, "3"),
        ("nat-min-confidence", parse_confidence, "0.6"),
    ):
        p.add_argument(f"--{flag}", type=parse, default=parse(env.get(flag, default)))


def _serves_autonat(args: argparse.Namespace, env: Env) -> bool:
    """Logos: only with `--autonat-server`, which needs `--nat=extip:` (logos-storage-nim
    `storage/conf.nim`; its bootstrap nodes are started so). The Codex era's AutoNAT is a testbed
    extension: every node serves it."""
    if env.era.discv5:
        return True
    if args.autonat_server and not args.nat.startswith("extip:"):
        raise SystemExit(f"codex: --autonat-server needs --nat=extip:IP, not --nat={args.nat}")
    return args.autonat_server


def _autonat_settings(args: argparse.Namespace, env: Env) -> AutonatSettings:
    if env.era.discv5:
        return CODEX_ERA_AUTONAT
    return AutonatSettings(
        schedule_interval_s=args.nat_schedule_interval,
        peers_to_ask=args.nat_num_peers_to_ask,
        max_queue_size=args.nat_max_queue_size,
        min_confidence=args.nat_min_confidence,
    )


def _add_dht_flags(p: argparse.ArgumentParser, env: Env) -> None:
    """The Logos era's Kad-DHT (the Codex era's discv5 is not run by the reference node)."""
    if env.era.discv5:
        return
    p.add_argument(
        "--advertise-content", type=parse_bool, default=parse_bool(env.get("advertise-content", "true"))
    )
    # not an upstream flag (upstream: every 30 min, nim-libp2p republishing every 10 min): for
    # experiments that cannot wait half an hour per round
    p.add_argument(
        "--advertise-interval",
        type=parse_seconds,
        default=parse_seconds(env.get("advertise-interval", "30m")),
    )


def build_parser(env: Env) -> argparse.ArgumentParser:
    era = env.era
    p = argparse.ArgumentParser(prog="codex", description=f"Reference node (testbed), {era.name} era")
    _add_impl_flag(p)
    # not an upstream flag: serve only what upstream serves (no testbed extensions)
    p.add_argument("--strict", action="store_true", default=env.switch("strict"))
    p.add_argument("--data-dir", "-d", default=env.get("data-dir", os.path.expanduser(era.data_dir)))
    _add_listen_flags(p, env)
    _add_dht_flags(p, env)
    p.add_argument("--nat", default=env.get("nat", "any"))
    _add_nat_flags(p, env)
    p.add_argument("--bootstrap-node", "-b", action="append", default=None)
    # empty or unset where the era has no default: REST off
    p.add_argument("--api-bindaddr", default=env.get("api-bindaddr", era.api_bindaddr or "") or None)
    p.add_argument("--api-port", "-p", type=int, default=int(env.get("api-port", "8080")))
    # not an upstream flag
    p.add_argument("--api-prefix", default=env.get("api-prefix", era.api_prefix))
    # not an upstream flag: seconds a request body may send nothing before the upload is 408
    p.add_argument(
        "--api-body-timeout", type=parse_timeout, default=parse_timeout(env.get("api-body-timeout", "30"))
    )
    p.add_argument("--log-level", default=env.get("log-level", "info"))
    p.add_argument(
        "--storage-quota", "-q", type=parse_bytes, default=parse_bytes(env.get("storage-quota", "20GiB"))
    )
    p.add_argument(
        "--block-ttl", "-t", type=parse_seconds, default=parse_seconds(env.get("block-ttl", "30d"))
    )
    p.add_argument("--block-mi", type=parse_seconds, default=parse_seconds(env.get("block-mi", "10m")))
    p.add_argument("--block-mn", type=int, default=int(env.get("block-mn", "1000")))
    p.add_argument("--block-retries", type=int, default=int(env.get("block-retries", "3000")))
    p.add_argument("--repo-kind", choices=list(REPO_KINDS), default=env.get("repo-kind", "fs"))
    # not an upstream flag: the reference engine's per-peer cap on outstanding wantBlocks
    p.add_argument("--max-inflight-per-peer", type=int, default=int(env.get("max-inflight-per-peer", "128")))
    # not an upstream flag: reserve on the circuit relay v2 whose /info is here (testbed relay image)
    p.add_argument("--relay-info-url", default=env.get("relay-info-url", "") or None)
    p.add_argument("--metrics", action="store_true", default=env.switch("metrics"))
    p.add_argument("--metrics-address", default=env.get("metrics-address", "127.0.0.1"))
    p.add_argument("--metrics-port", type=int, default=int(env.get("metrics-port", "8008")))
    return p


def _listen_addrs(args: argparse.Namespace, env: Env) -> tuple[str, ...]:
    if env.era.listen_by_port:
        return (f"/ip4/{args.listen_ip}/tcp/{args.listen_port}",)
    return tuple(args.listen_addrs or env.items("listen-addrs") or ["/ip4/0.0.0.0/tcp/0"])


def load(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    env = Env(choose_era(argv, environ), environ)
    parser = build_parser(env)
    args = parser.parse_args(argv)
    if args.repo_kind not in REPO_KINDS:  # argparse checks choices of the command line, not of env
        choices = ", ".join(map(repr, REPO_KINDS))
        name = env.era.env_name("repo-kind")
        parser.error(f"{name}: invalid choice: {args.repo_kind!r} (choose from {choices})")
    level = args.log_level.split(";")[0].upper()
    if level not in LOG_LEVELS:
        raise SystemExit(f"codex: invalid --log-level {args.log_level!r}")
    return Config(
        era=env.era,
        strict=args.strict,
        data_dir=Path(args.data_dir),
        listen_addrs=_listen_addrs(args, env),
        nat=args.nat,
        disc_port=args.disc_port if env.era.discv5 else None,
        bootstrap_nodes=tuple(args.bootstrap_node or env.items("bootstrap-node")),
        api_bindaddr=args.api_bindaddr,
        api_port=args.api_port,
        api_prefix=args.api_prefix.rstrip("/"),
        api_body_timeout=args.api_body_timeout,
        log_level=args.log_level,
        storage_quota=args.storage_quota,
        block_ttl=args.block_ttl,
        block_maintenance_interval=args.block_mi,
        block_maintenance_count=args.block_mn,
        block_retries=args.block_retries,
        max_inflight_per_peer=args.max_inflight_per_peer,
        relay_info_url=args.relay_info_url,
        autonat=_autonat_settings(args, env),
        autonat_server=_serves_autonat(args, env),
        repo_kind=args.repo_kind,
        metrics=args.metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        advertise_content=getattr(args, "advertise_content", False),
        advertise_interval=getattr(args, "advertise_interval", 0),
    )
