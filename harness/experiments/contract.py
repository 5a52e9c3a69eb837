"""The REST contract of each implementation, as data: what upstream answers, request by request.

`testbed contract --codex-image IMAGE --impl codex|logos-storage` runs every case of the image's
era against one node (a single container of the image, harness/single.py, or with
`--project` a node of a running testbed) and prints a conformance table (case, expected,
observed) and writes it as JSON: the report an upstream developer attaches to a pull request.
`pytest -m contract` runs the same cases on single containers. Each case says where its
expectation comes from; only upstream's answers are here, none of the reference node's own
choices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from harness.clients.codex import CodexClient

# A dataset and its CID, byte-identical on upstream's node and ours (observed, 6765beee).
SAMPLE = b"some file contents"
SAMPLE_CID = "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy"
UNKNOWN_CID = "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXz"  # well formed, never uploaded
BOTH_ERAS = ("codex", "logos-storage")
OBSERVED = "observed on logos-storage-nim 6765beee (v0.2.5, Codex era)"
API_NIM = "logos-storage-nim storage/rest/api.nim @10bb4975"
JSON_NIM = "logos-storage-nim storage/rest/json.nim @309f5f68"


@dataclass(frozen=True)
class Case:
    """One request and upstream's answer to it. `path` follows the era's REST prefix; `{cid}`
    stands for SAMPLE_CID (uploaded by the first case), `{unknown}` for UNKNOWN_CID."""

    name: str
    method: str
    path: str
    status: int
    text: str | None = None  # the exact body
    text_prefix: str | None = None
    json: dict | None = None  # the exact JSON body (after substitution)
    json_keys: tuple[str, ...] | None = None  # exactly these top-level keys, in any order
    headers: dict[str, str] = field(default_factory=dict)  # sent
    body: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    eras: tuple[str, ...] = BOTH_ERAS
    source: str = OBSERVED

    def url_path(self) -> str:
        return self.path.format(cid=SAMPLE_CID, unknown=UNKNOWN_CID)

    def expected(self) -> str:
        if self.json is not None:
            shown = json.dumps(_substitute(self.json))
        elif self.json_keys is not None:
            shown = "keys " + ", ".join(sorted(self.json_keys))
        elif self.text_prefix is not None:
            shown = self.text_prefix + "..."
        else:
            shown = self.text
        return f"{self.status} {shown!r}" if shown is not None else str(self.status)


def _substitute(value: dict) -> dict:
    return {k.format(cid=SAMPLE_CID, unknown=UNKNOWN_CID): v for k, v in value.items()}


CASES: tuple[Case, ...] = (
    # no Content-Type: the manifest holds the mimetype, so it is part of the CID
    Case("upload returns the CID", "POST", "/data", 200, text=SAMPLE_CID, body=SAMPLE),
    Case("upload with an unknown MIME type", "POST", "/data", 422,
         text="The MIME type 'foo/bar' is not valid.", body=b"x", headers={"Content-Type": "foo/bar"}),
    Case("local download", "GET", "/data/{cid}", 200, text=SAMPLE.decode()),
    Case("malformed CID", "GET", "/data/not-a-cid", 400, text="Incorrect Cid"),
    Case("unknown CID, locally", "GET", "/data/{unknown}", 404,
         text="The requested CID could not be retrieved (Block not found in local store)."),
    Case("exists", "GET", "/data/{cid}/exists", 200, json={"{cid}": True}),
    Case("exists, unknown CID", "GET", "/data/{unknown}/exists", 200, json={"{unknown}": False}),
    Case("space", "GET", "/space", 200,
         json_keys=("totalBlocks", "quotaMaxBytes", "quotaUsedBytes", "quotaReservedBytes")),
    Case("spr as JSON", "GET", "/spr", 200, json_keys=("spr",)),
    Case("spr as text", "GET", "/spr", 200, text_prefix="spr:", headers={"Accept": "text/plain"}),
    Case("peer id as JSON", "GET", "/peerid", 200, json_keys=("id",)),
    Case("connect to a malformed peer id", "GET", "/connect/not-a-peer", 400,
         text="peerid: incorrect PeerId string"),
    Case("log level without a level", "POST", "/debug/chronicles/loglevel", 400, text="Missing log level"),
    Case("an unknown route", "GET", "/no/such/route", 404, text=""),
    Case("debug/info, Codex era", "GET", "/debug/info", 200, eras=("codex",),
         json_keys=("id", "addrs", "repo", "spr", "announceAddresses", "table", "codex")),
    Case("debug/info, Logos era", "GET", "/debug/info", 200, eras=("logos-storage",), source=JSON_NIM,
         json_keys=("id", "addrs", "spr", "libp2pPubKey", "mixPubKey", "table", "storage", "nat",
                    "connections", "privateQueries")),
    Case("marketplace without persistence", "GET", "/sales/slots", 503, text="Persistence is not enabled",
         eras=("codex",)),
    Case("marketplace, removed (PR #1362)", "GET", "/sales/slots", 404, text="", eras=("logos-storage",),
         source=API_NIM),
    Case("delete", "DELETE", "/data/{cid}", 204, text=""),
    Case("exists after delete", "GET", "/data/{cid}/exists", 200, json={"{cid}": False}),
    Case("delete is always 204", "DELETE", "/data/{unknown}", 204, text=""),
)  # fmt: skip


def cases_for(era: str) -> list[Case]:
    """The era's cases, in the order they must run (upload first, delete last)."""
    return [case for case in CASES if era in case.eras]


@dataclass
class Result:
    case: str
    expected: str
    observed: str
    passed: bool
    source: str


def check(case: Case, response: requests.Response, extras: bool = False) -> Result:
    """Compare one answer with upstream's. A node with the reference node's test extras
    (`extras`) may add keys to upstream's; every one of upstream's must be there."""
    problems = [] if response.status_code == case.status else ["status"]
    observed_body: object = response.text
    if case.text is not None and response.text != case.text:
        problems.append("body")
    if case.text_prefix is not None and not response.text.startswith(case.text_prefix):
        problems.append("body")
    if case.json is not None or case.json_keys is not None:
        try:
            observed_body = response.json()
        except ValueError:
            observed_body, problems = response.text, [*problems, "not JSON"]
        else:
            if case.json is not None and observed_body != _substitute(case.json):
                problems.append("body")
            keys = set(observed_body) if isinstance(observed_body, dict) else None
            if case.json_keys is not None:
                expected = set(case.json_keys)
                fits = keys is not None and (keys >= expected if extras else keys == expected)
                if not fits:
                    problems.append("keys")
                if keys is not None and (not fits or keys != expected):
                    added = f" (+ extras {', '.join(sorted(keys - expected))})" if fits else ""
                    observed_body = "keys " + ", ".join(sorted(keys)) + added
    shown = observed_body if isinstance(observed_body, str) else json.dumps(observed_body)
    differ = f" ({', '.join(problems)} differ)" if problems else ""
    observed = f"{response.status_code} {shown[:120]!r}{differ}"
    return Result(case.name, case.expected(), observed, not problems, case.source)


def run(client: CodexClient, era: str, extras: bool = False) -> list[Result]:
    """Every case of `era`, in order; `extras`: the node declares the reference node's extras."""
    results = []
    for case in cases_for(era):
        response = client.request(
            case.method, case.url_path(), data=case.body, headers=case.headers, params=case.params, timeout=30
        )
        results.append(check(case, response, extras))
    return results


def to_markdown(results: Iterable[Result]) -> str:
    lines = ["| case | expected | observed | verdict |", "|---|---|---|---|"]
    for r in results:
        cells = [r.case, r.expected, r.observed, "ok" if r.passed else "DIFFERS"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def write_report(results: list[Result], meta: dict, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    markdown, data = folder / "contract.md", folder / "contract.json"
    markdown.write_text(to_markdown(results) + "\n")
    data.write_text(json.dumps({**meta, "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return markdown, data
