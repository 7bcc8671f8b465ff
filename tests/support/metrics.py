"""Reading metrics: from this process's registry, or off a running service's /metrics."""

from __future__ import annotations

import urllib.request

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(port: int, timeout: float = 2.0) -> Samples:
    """Every sample a service on loopback serves on /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        return parse(r.read().decode())


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def local_metric(name: str, **labels: str) -> float:
    """A sample of this process's registry (a service run in-process), summed over other labels."""
    return metric_sum(parse_registry(), name, **labels)


def parse_registry() -> Samples:
    out = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def counter(metric, *labels: str) -> float:
    """The value of a metric object of this process (a service run in-process) for `labels`."""
    return metric.labels(*labels)._value.get() if labels else metric._value.get()
