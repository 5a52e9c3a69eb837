"""The evidence of a repro run: one archive to attach to the field report, and a timeline plot.

`write_bundle` packs the scenario file, whatever the runner collected (the timeline, verdicts,
logs, captures) and a manifest into `<name>.tar.gz`, every member under `<name>/`.
`plot_timeline` draws the events as lanes over time; it needs matplotlib, of the `load` extra.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from harness.errors import TestbedError
from harness.experiments.repro.timeline import Event

ARCHIVE_SUFFIX = ".tar.gz"
MANIFEST = "MANIFEST.txt"
Content = Path | bytes | str  # a file or folder to copy, or the member's content itself


def _check_member(name: str) -> None:
    """A relative path inside the bundle's folder (the runner's names, so a mistake is a bug)."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts or name == MANIFEST:
        raise ValueError(f"{name!r} cannot be a bundle member: give a relative path other than {MANIFEST}")


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes) -> None:
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_folder(tar: tarfile.TarFile, arcname: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, int(time.time()), 0o755
    tar.addfile(info)


def write_bundle(dest: Path, scenario_file: Path, files: Mapping[str, Content]) -> Path:
    """`dest` (…/<name>.tar.gz) holding <name>/: the scenario file, each of `files` (member name ->
    content; a folder is copied with all it holds) and MANIFEST.txt, each file with its size.
    Written aside and then moved, so a failure leaves no half archive."""
    if not dest.name.endswith(ARCHIVE_SUFFIX) or dest.name == ARCHIVE_SUFFIX:
        raise ValueError(f"a bundle is a <name>{ARCHIVE_SUFFIX} file, not {dest.name!r}")
    top = dest.name.removesuffix(ARCHIVE_SUFFIX)
    if scenario_file.name in files:
        raise ValueError(f"{scenario_file.name!r} is the scenario file's member name")
    members: dict[str, Content] = {scenario_file.name: scenario_file, **files}
    for name, content in members.items():
        _check_member(name)
        if isinstance(content, Path) and not content.exists():
            raise TestbedError(f"bundle {dest}: {name}: {content} does not exist")
    listed: list[tuple[str, int]] = []  # (member name, bytes) of every file, in order

    def record(info: tarfile.TarInfo) -> tarfile.TarInfo:  # tarfile's filter, for each member it adds
        if info.isfile():
            listed.append((info.name.removeprefix(f"{top}/"), info.size))
        return info

    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(partial, "w:gz") as tar:
            _add_folder(tar, top)
            for name, content in members.items():
                if isinstance(content, Path):
                    tar.add(content, f"{top}/{name}", filter=record)
                else:
                    data = content.encode() if isinstance(content, str) else content
                    _add_bytes(tar, f"{top}/{name}", data)
                    listed.append((name, len(data)))
            _add_bytes(tar, f"{top}/{MANIFEST}", _manifest(top, listed).encode())
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _manifest(top: str, listed: list[tuple[str, int]]) -> str:
    width = max((len(str(size)) for _, size in listed), default=1)
    lines = [f"{top}: the evidence of a repro run, each file with its size in bytes", ""]
    return "\n".join([*lines, *(f"{size:>{width}}  {name}" for name, size in listed)]) + "\n"


# Plot colours: a node's reservation as the samples saw it, a download's outcome, a fault's span.
RESERVED_COLOURS = {True: "#9ad29a", False: "#ee8e8e", None: "#d5d5d5"}
DOWNLOAD_COLOURS = {True: "#3c9a3c", False: "#c83c3c", None: "#9a9a9a"}  # None: never ended
FAULT_COLOUR = "#e0a030"


def _downloads(events: Sequence[Event], t_end: float) -> dict[str, tuple[float, float, bool | None]]:
    """Download id -> (begin, end, ok); one that never ended runs to the timeline's end, ok None."""
    spans: dict[str, tuple[float, float, bool | None]] = {}
    for event in events:
        if event.kind != "download":
            continue
        if event.detail.get("phase") == "begin":
            spans[event.subject] = (event.t_s, t_end, None)
        elif event.detail.get("phase") == "end":
            begin = spans.get(event.subject, (0.0, 0.0, None))[0]
            spans[event.subject] = (begin, event.t_s, bool(event.detail.get("ok")))
    return spans


def _faults(events: Sequence[Event]) -> list[tuple[str, float, float | None]]:
    """(label, begin, end) of each fault; end None for one with no end event (an instant)."""
    marks: list[tuple[str, float, float | None]] = []
    open_: dict[tuple[str, str], int] = {}  # (fault, target) -> its place in marks
    for event in events:
        if event.kind != "fault":
            continue
        key = (str(event.detail.get("fault")), event.subject)
        if event.detail.get("phase") == "end" and key in open_:
            at = open_.pop(key)
            label, begin, _ = marks[at]
            marks[at] = (label, begin, event.t_s)
        elif event.detail.get("phase") != "end":
            open_[key] = len(marks)
            marks.append((" ".join(key), event.t_s, None))
    return marks


def plot_timeline(events: Sequence[Event], path: Path) -> Path:
    """A PNG: x is seconds since the start; one lane per download (a bar: green ok, red failed,
    grey never ended) and one per sampled node (bands: its reservation held, lost or unknown;
    markers: a direct connection); faults shaded over their span, or a line at their instant."""
    try:
        import matplotlib
    except ImportError:
        raise TestbedError(
            "plotting a repro timeline needs matplotlib, of the load extra: pip install 'codex-testbed[load]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t_end = max((event.t_s for event in events), default=0.0) or 1.0
    downloads = _downloads(events, t_end)
    nodes = list(dict.fromkeys(event.subject for event in events if event.kind == "sample"))
    lanes = [f"download {name}" for name in downloads] + nodes
    figure, axes = plt.subplots(figsize=(10, 1.5 + 0.45 * max(len(lanes), 1)))
    for lane, (begin, end, ok) in enumerate(downloads.values()):
        axes.broken_barh(
            [(begin, max(end - begin, t_end / 500))], (lane - 0.3, 0.6), color=DOWNLOAD_COLOURS[ok]
        )
    for lane, node in enumerate(nodes, len(downloads)):
        samples = [event for event in events if event.kind == "sample" and event.subject == node]
        for sample, following in zip(samples, [*samples[1:], None], strict=True):
            until = following.t_s if following else t_end
            colour = RESERVED_COLOURS[sample.detail.get("reserved")]
            axes.broken_barh([(sample.t_s, until - sample.t_s)], (lane - 0.3, 0.6), color=colour)
        direct = [sample.t_s for sample in samples if sample.detail.get("direct_peers")]
        axes.plot(direct, [lane] * len(direct), "k^", markersize=5)
    for label, begin, end in _faults(events):
        if end is None:
            axes.axvline(begin, color=FAULT_COLOUR, linewidth=1.5)
        else:
            axes.axvspan(begin, end, color=FAULT_COLOUR, alpha=0.2)
        axes.text(begin, 1.01, label, rotation=45, fontsize=7, transform=axes.get_xaxis_transform())
    axes.set_yticks(range(len(lanes)), lanes)
    axes.set_ylim(max(len(lanes), 1) - 0.3, -0.7)  # the first lane on top
    axes.set_xlim(0, t_end)
    axes.set_xlabel("seconds since the start")
    legend = [
        Patch(color=RESERVED_COLOURS[True], label="reserved"),
        Patch(color=RESERVED_COLOURS[False], label="not reserved"),
        Patch(color=RESERVED_COLOURS[None], label="reservation unknown"),
        Patch(color=DOWNLOAD_COLOURS[True], label="download ok"),
        Patch(color=DOWNLOAD_COLOURS[False], label="download failed"),
        Patch(color=FAULT_COLOUR, alpha=0.4, label="fault"),
        plt.Line2D([], [], color="k", marker="^", linestyle="", label="direct connection"),
    ]
    axes.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path
