"""Readiness: the conditions each service declares (harness/render/conditions.py), waited for kind
by kind under one deadline, with a timed report (readiness.py)."""
