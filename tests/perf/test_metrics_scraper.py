"""bench.observe.MetricsScraper: what it keeps of a service's page, and its reads spread one service at a time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from bench.observe import MetricsScraper
from shared.ops.ports import free_ports


def _page(drops: float, calls: int) -> CollectorRegistry:
    """A service's registry as the services build theirs: wanted families among others, labelled and not."""
    registry = CollectorRegistry()
    dropped = Counter("engagement_frames_dropped_total", "", ["service", "reason"], registry=registry)
    dropped.labels("capture", "queue_full").inc(drops)
    dropped.labels("capture", "stopping").inc(1)
    seconds = Histogram("engagement_inference_seconds", "", registry=registry)
    for i in range(calls):
        seconds.observe(0.01 * (i + 1))
    Counter("engagement_frames_captured_total", "", ["service"], registry=registry).labels("capture").inc(7)
    Gauge("engagement_source_up", "", registry=registry).set(1)
    return registry


def _full_parse(text: str) -> dict[str, float]:
    """What the scraper kept when it parsed the whole page (its old way): the reference."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(MetricsScraper.WANTED):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_total", "_sum", "_count")):
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()) if k == "reason")
                values[key] = values.get(key, 0.0) + sample.value
    return values


def test_the_wanted_lines_alone_give_what_the_whole_page_gave():
    text = generate_latest(_page(drops=3, calls=4)).decode()
    values = MetricsScraper.parse(text)
    assert values == _full_parse(text)
    assert values["engagement_frames_dropped_total,reason=queue_full"] == 3
    assert values["engagement_frames_dropped_total,reason=stopping"] == 1
    assert values["engagement_inference_seconds_count"] == 4
    assert abs(values["engagement_inference_seconds_sum"] - 0.1) < 1e-9
    # Not wanted, or not a total/sum/count: buckets, _created timestamps, other families.
    assert not any("bucket" in k or "created" in k or "captured" in k or "source_up" in k for k in values)


def test_a_page_without_a_wanted_family_gives_nothing():
    registry = CollectorRegistry()
    Gauge("engagement_source_up", "", registry=registry).set(1)
    assert MetricsScraper.parse(generate_latest(registry).decode()) == {}
    assert MetricsScraper.parse("") == {}


def test_scrape_next_reads_one_service_a_call_in_turn():
    ports = free_ports(3)
    servers = [start_http_server(port, addr="127.0.0.1", registry=_page(drops=i + 1, calls=1)) for i, port in
               enumerate(ports)]
    try:
        scraper = MetricsScraper()
        scraper.remember_ports({f"svc{i}": {"METRICS_PORT": str(p)} for i, p in enumerate(ports)})
        seen = []
        for _ in range(3):
            scraper.scrape_next()
            seen.append(set(scraper.values))
        assert [len(s) for s in seen] == [1, 2, 3]  # one more service each call, none read twice
        assert scraper.breakdown("engagement_frames_dropped_total") == {
            "svc0 queue_full": 1, "svc1 queue_full": 2, "svc2 queue_full": 3,
            "svc0 stopping": 1, "svc1 stopping": 1, "svc2 stopping": 1}
        scraper.ports["gone"] = free_ports(1)[0]  # a service that has exited: skipped, the others kept
        scraper.scrape()
        assert set(scraper.values) == {"svc0", "svc1", "svc2"}
    finally:
        for server, _thread in servers:
            server.shutdown()
