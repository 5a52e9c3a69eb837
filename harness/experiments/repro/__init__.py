"""Repro: reproduce a NAT failure seen in the field (`testbed repro SCENARIO`).

A scenario file (compose/scenarios/<name>.yaml, loaded by `scenario`) holds a topology, the link
conditions and router settings the field had, a timeline of steps (workload and faults) and the
failure as the field saw it (expectations). The runner executes the steps against a testbed and
records what happened as a `timeline` of events; `verdict` judges, from those events alone,
whether each expectation reproduced; `bundle` packs the evidence (scenario, timeline, logs,
captures, a plot) into one archive. Only the runner and its faults touch docker; the rest is pure.
"""
