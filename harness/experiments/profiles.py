"""Load profiles (suites/load/profiles.yaml): the load a gate runs, its absolute thresholds, and
how an A/B run of it compares two builds."""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from harness.errors import TestbedError
from harness.paths import REPO_ROOT

PROFILES = REPO_ROOT / "suites" / "load" / "profiles.yaml"
HIGHER_IS_BETTER, LOWER_IS_BETTER = 1, -1
# results key -> (what it is, unit, direction)
RATIO_METRICS = {
    "download_mb_s": ("download throughput", "MB/s", HIGHER_IS_BETTER),
    "p50_ttfb_ms": ("time to first byte p50", "ms", LOWER_IS_BETTER),
    "p95_ttfb_ms": ("time to first byte p95", "ms", LOWER_IS_BETTER),
    "bx_want_block_p95_ms": ("want-block latency p95", "ms", LOWER_IS_BETTER),
}
# results key -> (what it is, numerator key, denominator key)
COUNT_METRICS = {
    "error_ratio": ("error ratio", "failures", "requests"),
    "duplicate_ratio": ("duplicate-block ratio", "duplicate_blocks", "blocks_received"),
}


@dataclass(frozen=True)
class ABPlan:
    """A profile's `ab:` section."""

    rounds: int
    round_time_s: int
    tolerances: dict[str, float]  # ratio metric -> the regression accepted (0.10: 10 % worse)
    allowances: dict[str, float]  # count metric -> the increase accepted (absolute)
    confidence: float = 0.9

    @classmethod
    def parse(cls, raw: object, where: str) -> ABPlan:
        """`where` names the file and key path in the error."""
        if not isinstance(raw, dict):
            raise TestbedError(f"{where}: a mapping (rounds, round_time_s, tolerances, allowances)")
        required, known = {"rounds", "round_time_s", "tolerances", "allowances"}, {"confidence"}
        if unknown := set(raw) - required - known:
            raise TestbedError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        if missing := required - set(raw):
            raise TestbedError(f"{where}: missing {', '.join(sorted(missing))}")
        plan = cls(**raw)
        if not isinstance(plan.rounds, int) or plan.rounds < 2:
            raise TestbedError(f"{where}.rounds: at least 2 (pairs of runs make the interval)")
        if not isinstance(plan.round_time_s, int) or plan.round_time_s < 5:
            raise TestbedError(f"{where}.round_time_s: whole seconds, at least 5")
        if not 0.5 <= plan.confidence < 1:
            raise TestbedError(f"{where}.confidence: between 0.5 and 1")
        for key, known in (("tolerances", RATIO_METRICS), ("allowances", COUNT_METRICS)):
            limits = getattr(plan, key)
            if not isinstance(limits, dict) or set(limits) != set(known):
                raise TestbedError(f"{where}.{key}: one limit for each of {', '.join(known)}")
            if bad := [name for name, limit in limits.items() if not 0 <= limit < 1]:
                raise TestbedError(f"{where}.{key}.{bad[0]}: a fraction in [0, 1)")
        return plan


@dataclass(frozen=True)
class Profile:
    name: str
    topology: str
    users: int
    spawn_rate: float
    run_time_s: int
    mix: dict[str, int]
    sizes: list[list[int]]
    thresholds: dict[str, float]
    downloaders_on: list[str] | None = None
    workers: int = 0  # 0: Locust runs on the host; N: a master and N workers as containers
    ab: ABPlan | None = None  # how an A/B run (--baseline-image) of this profile goes


def load_profile(name: str, overrides: dict[str, float] | None = None, workers: int | None = None) -> Profile:
    """A profile of suites/load/profiles.yaml, with thresholds and the worker count overridden."""
    profiles = {
        key: value for key, value in yaml.safe_load(PROFILES.read_text()).items() if not key.startswith("x-")
    }
    if name not in profiles:
        raise TestbedError(f"{PROFILES}: no load profile {name!r} (profiles: {', '.join(profiles)})")
    raw = dict(profiles[name])
    raw["thresholds"] = {**raw["thresholds"], **(overrides or {})}
    if workers is not None:
        raw["workers"] = workers
    if "ab" in raw:
        raw["ab"] = ABPlan.parse(raw["ab"], f"{PROFILES}: {name}.ab")
    return Profile(name=name, **raw)
