"""Layered readiness: container health -> app probe -> topology predicate, with a timed report."""
