"""Experiments: what runs on top of the core and reports a verdict.

Each one drives testbeds (or a single container) through the core's public API only, and writes
its own report: the NAT outcome matrix (`natmatrix`), the REST conformance table (`contract`),
the load gate (`load`, with Locust runs from `locust_run`). The core never imports them; the CLI
imports one inside the command that runs it. The load gate needs the `load` extra
(`pip install 'codex-testbed[load]'`: Locust and matplotlib).
"""
