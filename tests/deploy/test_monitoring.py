"""Monitoring files: `promtool check config` on compose's prometheus.yml, the dashboard's PromQL
parsed by promtool, every metric the dashboard queries exported by the services' code
(their Prometheus registry once their modules are imported), and Grafana's provisioning
pointing at that dashboard and data source. The live check (a real Prometheus scraping the
running pipeline) is in test_prometheus_live.py."""

from __future__ import annotations

import json

import yaml

from shared.ops.config import METRICS_PORTS
from tests.deploy.tools import (
    COMPOSE_DIR,
    DASHBOARD,
    dashboard_exprs,
    load_yaml,
    metric_names,
    registry_names,
    run,
    tool,
)

PROMETHEUS_YML = COMPOSE_DIR / "prometheus" / "prometheus.yml"


def test_promtool_accepts_the_prometheus_config():
    result = run([tool("promtool"), "check", "config", str(PROMETHEUS_YML)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path):
    bad = tmp_path / "prometheus.yml"
    bad.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: often\n")
    assert run([tool("promtool"), "check", "config", str(bad)]).returncode != 0


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    config = load_yaml(PROMETHEUS_YML)
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    compose = load_yaml(COMPOSE_DIR / "docker-compose.yml")["services"]
    for service, port in METRICS_PORTS.items():
        name = service.replace("_", "-")
        assert f"{name}:{port}" in targets
        assert name in compose


def test_dashboard_promql_parses(tmp_path):
    # promtool parses PromQL in rule files: each panel query becomes a recording rule.
    exprs = dashboard_exprs()
    assert len(exprs) >= 8
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "1m")} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_metric_is_exported_by_the_services():
    exported = registry_names()
    wanted = set().union(*(metric_names(e) for e in dashboard_exprs()))
    assert all(metric_names(e) for e in dashboard_exprs()), "a panel queries no engagement_ metric"
    missing = sorted(wanted - exported)
    assert not missing, f"the dashboard queries metrics no service exports: {missing}"


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus():
    provisioning = COMPOSE_DIR / "grafana" / "provisioning"
    [datasource] = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    [provider] = load_yaml(provisioning / "dashboards" / "engagement.yml")["providers"]
    compose = load_yaml(COMPOSE_DIR / "docker-compose.yml")["services"]["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in compose["volumes"])
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {datasource["uid"]}
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("inference latency", "end-to-end latency", "frames per second", "dropped", "faces", "totals"):
        assert topic in titles
