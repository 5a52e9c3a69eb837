"""Control plane of the Codex testbed: topology -> plan -> compose -> ready testbed -> teardown."""
