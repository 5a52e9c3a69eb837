"""`testbed`: up, down, status, logs, render, nat-check, nat-matrix, contract, repro, load, clean,
images, doctor."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import docker

from harness import imagerefs, selection, single
from harness import sweep as sweeper
from harness.clients.codex import CodexClient
from harness.engine import compose, images
from harness.engine.bootstrap import engine_answers, ensure_engine
from harness.errors import PoolConfigError, TestbedError
from harness.impl import CAP_CONNECTIONS, CAP_NAT_TRAVERSAL, CAP_REFERENCE_EXTRAS
from harness.labels import check_project, find_containers
from harness.net import hostfw, natcheck, neighbours
from harness.paths import artifacts_dir, artifacts_root, cache_dir, generated_dir
from harness.render import kubernetes
from harness.render.compose import render
from harness.testbed import DEFAULT_DEADLINE_S, Testbed, down_project
from harness.topology import loader, subnets
from harness.topology.loader import TOPOLOGIES_DIR
from harness.topology.plan import NodePlan, Plan, StatusPlan, capabilities_of, make_plan, new_project_name

CLI_PROJECTS = "cli-projects"


def _cli_projects() -> list[str]:
    path = cache_dir() / CLI_PROJECTS
    return [p for p in path.read_text().split() if p] if path.exists() else []


def _set_cli_projects(projects: list[str]) -> None:
    (cache_dir() / CLI_PROJECTS).write_text("\n".join(projects) + ("\n" if projects else ""))


def _project_arg(value: str) -> str:
    """argparse type: a project name, so `clean --project ''` or `down ..` is refused, not widened."""
    try:
        return check_project(value)
    except TestbedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def _storage_of(peer: StatusPlan) -> str:
    return "embedded storage" if peer.embedded else f"storage on {peer.codex}"


def describe(plan: Plan) -> str:
    rows = [["NODE", "IMPL", "IMAGE", "ADDRESS", "API"]]
    rows += [[n.name, n.impl, n.image, n.ip, n.api_url] for n in plan.nodes.values()]
    rows += [
        [p.name, "status", p.image, p.ip, f"{p.url}/statusgo/... ({p.role}, {_storage_of(p)})"]
        for p in plan.status.values()
    ]
    return _table(rows)


def cmd_up(args: argparse.Namespace) -> int:
    start = time.monotonic()
    build = selection.from_arguments(args)
    testbed = Testbed.up(args.topology, project=args.project, deadline_s=args.deadline, build=build)
    testbed.keep()
    _set_cli_projects([*_cli_projects(), testbed.plan.project])
    plan = testbed.plan
    first = next(iter(plan.nodes.values()))
    print(f"\ntestbed {plan.project} is ready (topology {plan.topology}) in {time.monotonic() - start:.1f}s")
    print(testbed.readiness.to_text())
    print(f"\n{describe(plan)}\n")
    print(f"try:   curl {first.api_url}/debug/info")
    print(f"state: testbed status {plan.project}")
    print(f"stop:  make testbed-down   (or: testbed down {plan.project})")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    ensure_engine()
    projects = args.projects or (sorted(sweeper.labelled_projects()) if args.all else _cli_projects())
    if not projects:
        # The record is a file in the cache dir: when it is gone, say what the engine still has.
        present = sorted(sweeper.labelled_projects())
        print(
            "no testbed started from the command line is recorded as up"
            + (f"; on this engine: {', '.join(present)} (testbed down NAME, or --all)" if present else "")
        )
        return 0
    for project in projects:
        start = time.monotonic()
        account = down_project(project)
        print(f"{project}: down in {time.monotonic() - start:.1f}s ({account})")
    _set_cli_projects([p for p in _cli_projects() if p not in projects])
    return 0


def _container_row(name: str, container) -> list[str]:
    state = container.attrs["State"]
    health = (state.get("Health") or {}).get("Status", "-")
    addresses = [net["IPAddress"] for net in container.attrs["NetworkSettings"]["Networks"].values()]
    return [name, state["Status"], health, ",".join(a for a in addresses if a), container.image.tags[0]]


def cmd_status(args: argparse.Namespace) -> int:
    if not engine_answers():
        print("no Docker engine answers; nothing can be running (make setup starts one)")
        return 1
    client = docker.from_env()
    projects = args.projects or sorted(sweeper.labelled_projects(client))
    if not projects:
        print("no testbed is up")
    for project in projects:
        containers = find_containers(client, project)
        print(f"{project}: {len(containers)} containers")
        if containers:
            rows = [["NODE", "STATE", "HEALTH", "ADDRESS", "IMAGE"]]
            rows += [_container_row(name, c) for name, c in sorted(containers.items())]
            print(_table(rows))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    containers = find_containers(docker.from_env(), args.project)
    if not containers:
        print(f"no containers for project {args.project}", file=sys.stderr)
        return 1
    for name, container in sorted(containers.items()):
        if args.node in (None, name):
            print(f"=== {name} ===")
            print(container.logs(tail=args.tail).decode(errors="replace"))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Render without creating anything: subnets come from the pool, avoiding what is in use now."""
    model = selection.from_arguments(args).apply(loader.load(args.topology))
    plan = make_plan(
        model,
        subnets.preview(model.network_kinds()),
        images.image_refs(model.images()),
        project=args.project or new_project_name(model.name),
    )
    out = Path(args.out) if args.out else None
    if args.target == "kubernetes":
        print(kubernetes.render(plan, out or generated_dir(plan.project)))
    else:
        print(render(plan, out))
    return 0


def cmd_nat_check(args: argparse.Namespace) -> int:
    """Classify every router of a running testbed again and compare with its declared profile."""
    plan_file = generated_dir(args.project) / "plan.json"
    if not plan_file.exists():
        print(f"no rendered plan for {args.project} (is it up, and was it started from this checkout?)")
        return 1
    plan = Plan.from_json(plan_file.read_text())
    if not plan.routers:
        print(f"{args.project} has no NAT routers")
        return 0
    verdicts = natcheck.check_all(plan, find_containers(docker.from_env(), plan.project))
    out = artifacts_dir(plan.project)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nat-check.md").write_text(natcheck.to_markdown(verdicts) + "\n")
    (out / "nat-check.json").write_text(natcheck.to_json(verdicts))
    print(natcheck.to_markdown(verdicts))
    print(f"\nwritten: {out / 'nat-check.md'}, {out / 'nat-check.json'}")
    return 0 if all(v.agrees for v in verdicts) else 1


def cmd_nat_matrix(args: argparse.Namespace) -> int:
    """The DCUtR outcome matrix on the generated nat-matrix topology; exit 1 if it differs from
    Table B of docs/nat.md in a cell the table is certain about."""
    from harness.experiments import natmatrix

    try:
        profiles = natmatrix.parse_profiles(args.profiles)
    except ValueError as exc:
        print(f"testbed nat-matrix: {exc}", file=sys.stderr)
        return 2
    if args.write_topology:
        TOPOLOGIES_DIR.joinpath("nat-matrix.yaml").write_text(natmatrix.topology_yaml())
        print(TOPOLOGIES_DIR / "nat-matrix.yaml")
        return 0
    topology: str | Path = "nat-matrix"
    if profiles != natmatrix.PROFILES:
        topology = cache_dir() / f"nat-matrix-{'-'.join(profiles)}.yaml"
        topology.write_text(natmatrix.topology_yaml(profiles))
    build = selection.from_arguments(args)
    # A cell is read from the node's `connections[].direct`; DCUtR must be in the node: say so first.
    needed = {CAP_NAT_TRAVERSAL, CAP_CONNECTIONS}
    lacking = [
        n for n in build.apply(loader.load(topology)).nodes.values() if not needed <= set(capabilities_of(n))
    ]
    if lacking:
        print(
            f"testbed nat-matrix: needs {', '.join(sorted(needed))} (DCUtR in the node, /debug/info "
            f"connections[].direct), which {lacking[0].name} of this build lacks: a Logos-era node has them",
            file=sys.stderr,
        )
        return 2
    with Testbed.up(topology, deadline_s=args.deadline, build=build) as testbed:
        try:
            cells = natmatrix.run(testbed, profiles)
        finally:
            testbed.save_artifacts()  # the nodes' logs explain every cell
        markdown, data = natmatrix.write_report(cells, artifacts_dir(testbed.plan.project) / "nat-matrix")
    print(markdown.read_text())
    print(f"written: {markdown}, {data}")
    return 0 if natmatrix.agrees(cells) else 1


def cmd_repro(args: argparse.Namespace) -> int:
    """Play a scenario `--repeat` times; exit 0 only if every expectation reproduced in every run."""
    from harness.experiments.repro import runner, scenario, verdict

    if args.list:
        for name in scenario.available():
            print(name)
        return 0
    if not args.scenario:
        print("testbed repro: name a scenario (--list shows them)", file=sys.stderr)
        return 2
    played = scenario.load(args.scenario)  # a broken scenario stops here, before anything is created
    build = selection.from_arguments(args)
    first_seed = played.seed if args.seed is None else args.seed
    out = Path(args.out) if args.out else artifacts_root() / "repro"
    runs = []
    for number in range(args.repeat):
        seed = first_seed + number
        print(f"== {played.name}: run {number + 1} of {args.repeat}, seed {seed}")
        run = runner.run_once(played, seed, build, out, deadline_s=args.deadline)
        runs.append(run.verdicts)
        print(verdict.format_verdicts([run.verdicts]))
        print(f"evidence: {run.bundle}")
    if args.repeat > 1:
        print(verdict.format_verdicts(runs))
    return verdict.exit_code(runs)


def _contract_target(args: argparse.Namespace) -> tuple[str, NodePlan]:
    """The node of a running testbed `--project` names (from its rendered plan), or None."""
    plan_file = generated_dir(args.project) / "plan.json"
    if not plan_file.exists():
        raise TestbedError(
            f"no rendered plan for {args.project} (is it up, and was it started from this checkout?)"
        )
    plan = Plan.from_json(plan_file.read_text())
    name = args.node or next(iter(plan.nodes), None)
    if name not in plan.nodes:
        raise TestbedError(f"{args.project} has no storage node {name!r}: {', '.join(plan.nodes) or 'none'}")
    return f"{plan.project}/{name}", plan.nodes[name]


def cmd_contract(args: argparse.Namespace) -> int:
    """Every REST case of the node's era against one node: a conformance table; exit 1 if any
    case differs from upstream's answer. The node is a single container of the build under test
    (harness/single.py), or with `--project` a storage node of a running testbed."""
    from harness.experiments import contract

    start = time.monotonic()
    if args.project:
        if args.codex_image or args.impl or args.strict_reference:
            print(
                "testbed contract: --project runs on the testbed's own nodes; choose their build with "
                "`testbed up --codex-image/--impl/--strict-reference`",
                file=sys.stderr,
            )
            return 2
        target, node = _contract_target(args)
        image, impl, capabilities = node.image, node.impl, node.capabilities
        results = contract.run(CodexClient(node.api_url), impl, CAP_REFERENCE_EXTRAS in capabilities)
    else:
        if args.node:
            print("testbed contract: --node names a node of a testbed (--project)", file=sys.stderr)
            return 2
        spec = single.plan_single(selection.from_arguments(args))
        image, impl, capabilities = spec.image, spec.impl, spec.capabilities
        target = f"single container {spec.container_name}"
        with single.single_node(spec, deadline_s=args.deadline) as ready:
            print(f"{target}: {image} ready at {ready.api_url} in {time.monotonic() - start:.1f}s")
            results = contract.run(ready.client, impl, CAP_REFERENCE_EXTRAS in capabilities)
        print(f"{target}: removed, {time.monotonic() - start:.1f}s in all\n")
    meta = {
        "image": image,
        "impl": impl,
        "target": target,
        "capabilities": list(capabilities),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    folder = artifacts_dir("contract") / f"{impl}-{time.strftime('%Y%m%d-%H%M%S')}"
    markdown, data = contract.write_report(results, meta, folder)
    passed = sum(r.passed for r in results)
    print(f"REST contract of {impl} on {image}: {passed} of {len(results)} cases as upstream\n")
    print(markdown.read_text())
    print(f"written: {markdown}, {data}")
    return 0 if passed == len(results) else 1


def _lacks_load_extra(command: str) -> bool:
    """Say so (and which modules are missing) when the `load` extra is not installed."""
    from harness.experiments import load  # finds the modules without importing them

    if missing := load.missing_extra():
        print(
            f"{command} needs the load extra: pip install 'codex-testbed[load]' "
            f"({', '.join(missing)} not installed)",
            file=sys.stderr,
        )
    return bool(missing)


def cmd_load(args: argparse.Namespace) -> int:
    """The release gate: exit 0 when it held, 2 when a threshold was breached or (A/B, with
    --baseline-image) the candidate is worse than the baseline."""
    from harness.experiments import abgate, load  # Locust runs in a subprocess; matplotlib to plot
    from harness.experiments.profiles import load_profile

    if _lacks_load_extra("testbed load"):
        return 1
    if args.baseline_image and (args.baseline or args.threshold):
        print(
            "--baseline-image compares two builds in one run: --baseline and --threshold are for "
            "single-build runs",
            file=sys.stderr,
        )
        return 1
    overrides = {}
    for item in args.threshold:
        key, _, value = item.partition("=")
        overrides[key] = float(value)
    profile = load_profile(args.profile, overrides, args.workers)
    candidate = selection.from_arguments(args)
    if args.baseline_image:
        baseline_build = selection.baseline_of(candidate, args.baseline_image)
        run_dir, passed = abgate.run_ab(profile, candidate, baseline_build)
    else:
        baseline = Path(args.baseline) if args.baseline else None
        run_dir, passed = load.run_gate(profile, baseline, build=candidate)
    print((run_dir / "summary.md").read_text())
    print(f"reports: {run_dir}")
    return 0 if passed else 2


def cmd_experiment_community(args: argparse.Namespace) -> int:
    from harness.experiments import community  # the report plots with matplotlib: the load extra

    if _lacks_load_extra("testbed experiment"):
        return 1
    if not 1 <= args.offline_after <= args.members:
        print(
            f"--offline-after {args.offline_after}: between 1 and --members ({args.members})", file=sys.stderr
        )
        return 1
    settings = community.Settings(
        members=args.members, archive_mb=args.archive_mb, links=args.links, offline_after=args.offline_after,
        deadline_s=args.phase_deadline, seed=args.seed, status_image=args.status_image,
    )  # fmt: skip
    folder = community.run(settings)
    print((folder / "report.md").read_text())
    print(f"reports: {folder}")
    return 0


def cmd_experiment_dht(args: argparse.Namespace) -> int:
    from harness.experiments import dht  # the report plots with matplotlib: the load extra

    if _lacks_load_extra("testbed experiment"):
        return 1
    settings = dht.Settings(
        sizes=tuple(args.sizes), datasets=tuple(args.datasets), interval_s=args.interval,
        idle_s=args.idle, steady_rounds=args.steady_rounds, phase_deadline_s=args.phase_deadline,
        seed=args.seed, churn_per_min=args.churn, churn_s=args.churn_duration,
    )  # fmt: skip
    if problems := settings.problems():
        print("; ".join(problems), file=sys.stderr)
        return 1
    if args.write_topology:
        build, size = selection.from_arguments(args), settings.sizes[0]
        dht.write_topology(settings, size, build, Path(args.write_topology))
        print(f"written: {args.write_topology} ({size} nodes; see docs/kubernetes.md)")
        return 0
    if args.merge:
        folder = dht.merge_runs([Path(f) for f in args.merge])
    else:
        folder = dht.run(settings, selection.from_arguments(args))
    print((folder / "report.md").read_text())
    print(f"reports: {folder}")
    return 0


def cmd_experiment_blockexchange(args: argparse.Namespace) -> int:
    from harness.experiments.bx import report  # the report plots with matplotlib: the load extra

    if _lacks_load_extra("testbed experiment"):
        return 1
    if unknown := sorted(set(args.experiments) - set(report.EXPERIMENTS)):
        print(
            f"no experiment {', '.join(unknown)} (experiments: {', '.join(report.EXPERIMENTS)})",
            file=sys.stderr,
        )
        return 1
    build = selection.from_arguments(args)
    builds = [build] + [selection.baseline_of(build, image) for image in args.compare_image or []]
    folder = report.run(args.experiments or list(report.EXPERIMENTS), builds, args.samples)
    print((folder / "report.md").read_text())
    print(f"reports: {folder}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    if not engine_answers():
        print("no Docker engine answers: nothing to clean")
        return 0
    report = sweeper.sweep(args.project)
    _set_cli_projects([p for p in _cli_projects() if args.project is not None and p != args.project])
    print(f"clean: {report.summary()}")
    return 1 if report.errors else 0


def cmd_images(args: argparse.Namespace) -> int:
    print(ensure_engine())
    if args.remove:
        removed = images.remove_images()
        print(f"images: removed {len(removed)} of namespace {imagerefs.namespace()}")
        return 0
    rebuild = args.rebuild or images.rebuild_requested()
    for name, ref in images.ensure_images(rebuild=rebuild).items():
        print(f"{name}: {ref}")
    return 0


def _netem_detail(client: docker.DockerClient, base: str) -> str:
    probe = "ip link add p type dummy && tc qdisc add dev p root netem delay 1ms && echo yes || echo no"
    output = client.containers.run(base, ["sh", "-c", probe], cap_add=["NET_ADMIN"], remove=True)
    if output.decode().strip().endswith("yes"):
        return "available: link delay, jitter, loss and reordering are netem's"
    return "not in this kernel (CONFIG_NET_SCH_NETEM): link conditions run in link stages (NFQUEUE)"


def _image_checks(client: docker.DockerClient) -> list[tuple[str, str, str]]:
    """Missing images are `todo`: `make images` and `testbed up` build them, so a fresh machine
    passes `make setup` and goes on to build."""
    present = images.present_images(client)
    base = imagerefs.base_image_ref()
    if base in present:
        checks = [("base image", "ok", base)]
    else:
        checks = [("base image", "todo", f"{base} missing: debootstrapped by `make images` or `testbed up`")]
    wanted = images.image_refs(set(images.SERVICE_IMAGES))
    missing = sorted(name for name, ref in wanted.items() if ref not in present)
    detail = f"{len(wanted) - len(missing)} of {len(wanted)} built"
    checks.append(
        (
            "service images",
            "todo" if missing else "ok",
            detail + (f"; {', '.join(missing)} built when first needed" if missing else ""),
        )
    )
    return checks


def _doctor_checks() -> list[tuple[str, str, str]]:
    """(name, ok | FAIL | todo | info, detail): only FAIL fails. `todo` is what the next build step
    does by itself; `info` describes an optional feature."""

    def check(name: str, ok: bool, detail: str) -> tuple[str, str, str]:
        return name, "ok" if ok else "FAIL", detail

    checks = []
    answers = engine_answers()
    version = docker.from_env().version()["Version"] if answers else "no engine answers (run make setup)"
    checks.append(check("docker engine", answers, version))
    try:
        checks.append(
            check("compose cli", True, f"{' '.join(compose.compose_command())}: {compose.compose_version()}")
        )
    except TestbedError as exc:
        checks.append(check("compose cli", False, str(exc)))
    has_debootstrap = shutil.which("debootstrap") is not None
    checks.append(
        check("debootstrap", has_debootstrap or bool(os.environ.get("BASE_IMAGE")), "for the base image")
    )
    py_ok = sys.version_info[:2] == (3, 11)
    checks.append(
        check("host python 3.11", py_ok, f"{sys.version.split()[0]} (wheels must match the images' 3.11)")
    )
    try:
        pools = f"WAN {subnets.wan_pool()}, LAN {subnets.lan_pool()}, carrier {subnets.carrier_pool()}"
        checks.append(check("address pools", True, pools))
    except PoolConfigError as exc:
        checks.append(check("address pools", False, str(exc)))
    checks.append(check("host firewall", hostfw.available(), "iptables with docker's DOCKER-USER chain"))
    raised, detail = neighbours.describe(neighbours.limits())
    checks.append(("neighbour table", "ok" if raised else "todo", detail))
    if answers:
        client = docker.from_env()
        image_checks = _image_checks(client)
        checks += image_checks
        running = sweeper.labelled_projects(client)
        orphans = sweeper.orphaned_projects(client)
        detail = f"{len(running)} testbeds present" + (
            f"; orphans of {', '.join(sorted(orphans))}" if orphans else ""
        )
        checks.append(check("no orphans", not orphans, detail + " (testbed clean removes orphans)"))
        if image_checks[0][1] == "ok":  # the netem probe runs in the base image
            checks.append(("netem", "info", _netem_detail(client, imagerefs.base_image_ref())))
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.fix:
        print(ensure_engine())
        print(neighbours.raise_limits())
    checks = _doctor_checks()
    for name, status, detail in checks:
        print(f"  {status:<4}  {name:<18} {detail}")
    return 1 if any(status == "FAIL" for _, status, _ in checks) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="bring a topology up and wait until it is ready")
    p.add_argument("topology", nargs="?", default="basic", help="name under compose/topologies or a path")
    p.add_argument("--project", type=_project_arg, help="project name (default: tb-<topology>-<random>)")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, help="readiness deadline, seconds")
    selection.add_arguments(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="tear testbeds down (default: the ones `testbed up` started)")
    p.add_argument("projects", nargs="*", type=_project_arg)
    p.add_argument("--all", action="store_true", help="every labelled testbed on this engine")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="list testbeds and their nodes")
    p.add_argument("projects", nargs="*", type=_project_arg)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="print a testbed's container logs")
    p.add_argument("project", type=_project_arg)
    p.add_argument("node", nargs="?")
    p.add_argument("--tail", type=int, default=100)
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("render", help="render the compose file and node configs; creates nothing")
    p.add_argument("topology", nargs="?", default="basic")
    p.add_argument("--project", type=_project_arg)
    p.add_argument("--out", help="output folder (default compose/generated/<project>)")
    p.add_argument(
        "--target",
        choices=("compose", "kubernetes"),
        default="compose",
        help="compose (what `up` runs) or Kubernetes manifests for an existing cluster (docs/kubernetes.md)",
    )
    selection.add_arguments(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "nat-check", help="classify every NAT router with the STUN referee; compare with the topology"
    )
    p.add_argument("project", type=_project_arg)
    p.set_defaults(func=cmd_nat_check)

    from harness.experiments import natmatrix  # the command's profile names (pure data, no extra)

    p = sub.add_parser(
        "nat-matrix",
        help="DCUtR outcomes for every dialer x listener NAT profile, against Table B of docs/nat.md",
    )
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, help="readiness deadline, seconds")
    p.add_argument(
        "--profiles",
        default=",".join(natmatrix.PROFILES),
        help=f"comma-separated, of {', '.join(natmatrix.SUPPORTED)} (default: table B's five)",
    )
    p.add_argument(
        "--write-topology", action="store_true", help="only regenerate compose/topologies/nat-matrix.yaml"
    )
    selection.add_arguments(p)
    p.set_defaults(func=cmd_nat_matrix)

    p = sub.add_parser(
        "contract",
        help="the node's REST contract, case by case, against upstream's answers "
        "(a single container of the build, or --project: a running testbed's node)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=single.DEFAULT_DEADLINE_S,
        help="the container's readiness deadline, s",
    )
    p.add_argument(
        "--project",
        type=_project_arg,
        help="run on a storage node of this running testbed instead (it uploads, then deletes, one sample)",
    )
    p.add_argument("--node", help="with --project: which storage node (default: its first)")
    selection.add_arguments(p)
    p.set_defaults(func=cmd_contract)

    p = sub.add_parser(
        "repro", help="reproduce a field failure: a scenario's timeline, a verdict per expectation, evidence"
    )
    p.add_argument("scenario", nargs="?", help="a name in compose/scenarios/ or a path")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    p.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh testbed (the rate)")
    p.add_argument(
        "--seed", type=int, help="the first run's seed (default: the scenario's); run k uses seed+k"
    )
    p.add_argument("--out", help="where the evidence bundles go (default: artifacts/repro)")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, help="readiness deadline, seconds")
    selection.add_arguments(p)
    p.set_defaults(func=cmd_repro)

    p = sub.add_parser("experiment", help="run an experiment; a table, a plot and results.json")
    experiments = p.add_subparsers(dest="experiment", required=True)
    e = experiments.add_parser(
        "blockexchange", help="prefetch interference, duplicates by timing, single-request latency by RTT"
    )
    e.add_argument("experiments", nargs="*", help="interference, duplicates, latency (default: all three)")
    e.add_argument("--samples", type=int, default=40, help="timed requests per condition")
    e.add_argument(
        "--compare-image", action="append", metavar="IMAGE",
        help="run the same experiments on this image too, side by side "
        f"({selection.REFERENCE!r}: the reference node)",
    )  # fmt: skip
    selection.add_arguments(e)
    e.set_defaults(func=cmd_experiment_blockexchange)

    e = experiments.add_parser(
        "community",
        help="archive distribution at community scale: time to history per NAT class, what the owner serves",
    )
    e.add_argument("--members", type=int, default=20, help="members besides the owner (4 NAT classes)")
    e.add_argument("--archive-mb", type=int, default=30, help="the archive's size, MB of chat")
    e.add_argument("--links", type=int, default=3, help="other members each member's storage node dials")
    e.add_argument(
        "--offline-after", type=int, default=5, help="members with their history before the owner leaves"
    )
    e.add_argument("--phase-deadline", type=float, default=600, help="seconds each phase may take")
    e.add_argument("--seed", type=int, default=1, help="seeds the choice of member links")
    e.add_argument(
        "--status-image", help="a status-backend image for every peer (default: the reference peer)"
    )
    e.set_defaults(func=cmd_experiment_community)

    e = experiments.add_parser(
        "dht",
        help="Kad-DHT bytes per node by network size, datasets and re-advertise interval, against the model",
    )
    e.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128], help="network sizes N")
    e.add_argument(
        "--datasets", type=int, nargs="+", default=[5, 20], help="datasets per node C (increasing)"
    )
    e.add_argument(
        "--interval", type=int, default=60, help="re-advertise interval T, seconds (reference node)"
    )
    e.add_argument(
        "--idle",
        type=float,
        default=660,
        help="seconds of the idle phase (0: none; nim refreshes every 10 min)",
    )
    e.add_argument("--steady-rounds", type=int, default=2, help="intervals the steady phase lasts")
    e.add_argument("--phase-deadline", type=float, default=600, help="seconds a join or upload may take")
    e.add_argument("--seed", type=int, default=1, help="seeds the datasets and the churn")
    e.add_argument(
        "--churn", type=float, default=0, help="node crashes per minute in a last, churn phase (0: none)"
    )
    e.add_argument("--churn-duration", type=float, default=300, help="seconds the churn phase lasts")
    e.add_argument(
        "--merge", nargs="+", metavar="RUN", help="only report these runs' folders together (several T, say)"
    )
    e.add_argument(
        "--write-topology",
        metavar="FILE",
        help="only write the first size's topology, joined through d000, to FILE (docs/kubernetes.md)",
    )
    selection.add_arguments(e)
    e.set_defaults(func=cmd_experiment_dht)

    p = sub.add_parser("load", help="run a load profile against its topology; fail on a breached threshold")
    p.add_argument("--profile", default="release", help="a profile in suites/load/profiles.yaml")
    p.add_argument("--baseline", help="results.json of an earlier run to compare with")
    p.add_argument(
        "--baseline-image",
        metavar="IMAGE",
        help="A/B: run the same load on this build (the last release) and on the candidate "
        f"(--codex-image), interleaved, and gate on their ratios; {selection.REFERENCE!r}: the "
        "reference node",
    )
    p.add_argument("--threshold", action="append", default=[], help="override, e.g. min_mb_s=50")
    p.add_argument(
        "--workers", type=int, help="run Locust as a master and N worker containers in the topology"
    )
    selection.add_arguments(p)
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("clean", help="remove everything any testbed run created (by label); idempotent")
    p.add_argument("--project", type=_project_arg, help="only this project's resources (exact name)")
    p.set_defaults(func=cmd_clean)

    p = sub.add_parser("images", help="build the base and service images (offline)")
    p.add_argument(
        "--rebuild", action="store_true", help="rebuild from scratch (default in CI or TESTBED_REBUILD=1)"
    )
    p.add_argument(
        "--remove",
        action="store_true",
        help="remove the images of this namespace (TESTBED_IMAGE_NAMESPACE, default testbed) instead",
    )
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("doctor", help="check the machine: engine, compose, debootstrap, images, orphans")
    p.add_argument("--fix", action="store_true", help="install and start the engine first (Debian, root)")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `testbed status | head` ends quietly
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TestbedError as exc:
        print(f"testbed {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
