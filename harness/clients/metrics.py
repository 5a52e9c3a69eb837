"""Read a node's Prometheus metrics (the same names on the reference node and upstream images)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def _samples(url: str, timeout_s: float):
    response = requests.get(url, timeout=timeout_s)
    response.raise_for_status()
    return (sample for family in text_string_to_metric_families(response.text) for sample in family.samples)


def scrape(url: str, timeout_s: float = 10) -> dict[str, float]:
    """Sample name -> value for every unlabelled sample (counters appear as `<name>_total`)."""
    return {sample.name: sample.value for sample in _samples(url, timeout_s) if not sample.labels}


def scrape_by_label(
    url: str, names: set[str], label: str, timeout_s: float = 10
) -> dict[tuple[str, str], float]:
    """(sample name, value of `label`) -> value, for the samples named (nim-libp2p's kad_*
    counters carry the message type as `type`)."""
    return {
        (sample.name, sample.labels[label]): sample.value
        for sample in _samples(url, timeout_s)
        if sample.name in names and label in sample.labels
    }
