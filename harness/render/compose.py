"""Render a Plan into `compose/generated/<project>/`: compose.yaml, nodes/<name>.env, plan.json."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from harness.labels import plan_labels
from harness.paths import TEMPLATES_DIR, generated_dir
from harness.render.services import HEALTH_RETRIES, HEALTH_TIMEOUT_S, services
from harness.topology.plan import Plan

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def _quote(value: object) -> str:
    """JSON scalars are valid YAML scalars, so quoting every value this way rules out injection;
    `$$` is how both compose flavours spell a literal `$` (they interpolate `$VAR`)."""
    return json.dumps(value).replace("$", "$$")


_env.filters["q"] = _quote


def render_to_strings(plan: Plan) -> dict[str, str]:
    """Relative path -> file content; pure, for golden tests."""
    files = {
        "compose.yaml": _env.get_template("compose.yaml.j2").render(
            plan=plan,
            services=services(plan),
            labels=lambda role: plan_labels(plan, role),
            health_timeout_s=HEALTH_TIMEOUT_S,
            health_retries=HEALTH_RETRIES,
        ),
        "plan.json": plan.to_json() + "\n",
    }
    for node in [*plan.nodes.values(), *plan.status.values()]:
        files[f"nodes/{node.name}.env"] = _env.get_template("node.env.j2").render(node=node)
    return files


def render(plan: Plan, out_dir: Path | None = None) -> Path:
    """Write the rendered files; returns the compose file path."""
    out = out_dir or generated_dir(plan.project)
    for relative, content in render_to_strings(plan).items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return out / "compose.yaml"
