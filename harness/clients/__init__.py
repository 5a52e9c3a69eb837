"""Typed clients for the services in a testbed."""
