"""Duplicates under timing: do downloaders receive the same block twice when the seeders' timing
is off?

Three seeders, each RTT away with jitter (a testbed per condition), hold the same 8 MiB dataset
(uploaded to one, fetched by the other two); then one downloader fetches a fresh dataset alone,
and three fetch another at once. From each downloader's own counters (either era's prefix):
duplicate blocks (delivered again after it had the block) and spurious ones (never asked of that
peer), over the blocks it received.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.experiments.bx.common import counters, link, md_table, stream_all, up, upload
from harness.parallel import all_of
from harness.selection import BuildUnderTest
from harness.testbed import Testbed

CONDITIONS = ((0, 0), (40, 10), (120, 40), (300, 100))  # (RTT ms, jitter ms) between seeders and downloaders
SEEDERS = ("seeder-1", "seeder-2", "seeder-3")
DOWNLOADERS = ("downloader-1", "downloader-2", "downloader-3")
DATASET_BYTES = 8 * 1024 * 1024


def seeded(testbed: Testbed, rng: random.Random) -> str:
    """A dataset every seeder holds whole."""
    cid = upload(testbed, SEEDERS[0], DATASET_BYTES, rng)
    all_of([lambda s=s: stream_all(testbed, s, cid) for s in SEEDERS[1:]])
    return cid


def fetched_by(testbed: Testbed, downloaders: tuple[str, ...], cid: str) -> dict:
    """The downloaders fetch `cid` at once; their counters' growth, summed."""
    before = {d: counters(testbed, d) for d in downloaders}
    all_of([lambda d=d: stream_all(testbed, d, cid) for d in downloaders])
    after = {d: counters(testbed, d) for d in downloaders}
    grown = {key: sum(after[d][key] - before[d][key] for d in downloaders) for key in after[downloaders[0]]}
    received = grown["received"] or 1
    return {
        **grown,
        "duplicate_ratio": grown["duplicate"] / received,
        "spurious_ratio": grown["spurious"] / received,
    }


def run(build: BuildUnderTest, echo: Callable[[str], None]) -> dict:
    rng = random.Random(3)
    rows = []
    for rtt, jitter in CONDITIONS:
        nodes = {
            **{name: {"kind": "codex", **link(rtt, jitter)} for name in SEEDERS},
            **{name: {"kind": "codex"} for name in DOWNLOADERS},
        }
        with up(f"bx-duplicates-{rtt}-{jitter}", nodes, build, seed=rtt + jitter) as testbed:
            alone = fetched_by(testbed, DOWNLOADERS[:1], seeded(testbed, rng))
            together = fetched_by(testbed, DOWNLOADERS, seeded(testbed, rng))
        for downloaders, grown in ((1, alone), (len(DOWNLOADERS), together)):
            rows.append({"rtt_ms": rtt, "jitter_ms": jitter, "downloaders": downloaders, **grown})
        echo(f"  RTT {rtt} ms, jitter {jitter} ms: duplicate ratio {alone['duplicate_ratio']:.4f} alone, "
             f"{together['duplicate_ratio']:.4f} with {len(DOWNLOADERS)} downloaders")  # fmt: skip
    return {"rows": rows}


def table(results: dict[str, dict]) -> list[str]:
    headers = ["build", "RTT ms", "jitter ms", "downloaders", "blocks received", "duplicate", "spurious"]
    rows = [
        [build, str(r["rtt_ms"]), str(r["jitter_ms"]), str(r["downloaders"]), f"{r['received']:.0f}",
         f"{r['duplicate']:.0f} ({r['duplicate_ratio']:.2%})",
         f"{r['spurious']:.0f} ({r['spurious_ratio']:.2%})"]
        for build, result in results.items()
        for r in result["rows"]
    ]  # fmt: skip
    return md_table(headers, rows)


def plot(results: dict[str, dict], axes) -> None:
    highest = 0.0
    for build, result in results.items():
        for downloaders, style in ((1, "o-"), (len(DOWNLOADERS), "s--")):
            rows = [r for r in result["rows"] if r["downloaders"] == downloaders]
            ratios = [r["duplicate_ratio"] + r["spurious_ratio"] for r in rows]
            highest = max([highest, *ratios])
            labels = [f"{r['rtt_ms']}±{r['jitter_ms']}" for r in rows]
            axes.plot(labels, ratios, style, label=f"{build}, {downloaders} downloader(s)")
    axes.set_ylim(0, max(0.05, highest * 1.2))  # zero at the bottom, even when all are zero
    axes.set_xlabel("RTT ± jitter (ms) to the seeders")
    axes.set_ylabel("(duplicate + spurious) / received")
    axes.set_title("duplicate deliveries by timing")
    axes.legend(fontsize="small")
