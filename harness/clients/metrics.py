"""Read a node's Prometheus metrics (the same names on the reference node and upstream images)."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout_s: float = 10) -> dict[str, float]:
    """Sample name -> value for every unlabelled sample (counters appear as `<name>_total`)."""
    response = requests.get(url, timeout=timeout_s)
    response.raise_for_status()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }
