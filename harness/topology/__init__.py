"""Topology files -> typed model -> Plan (project name, subnets, addresses)."""
