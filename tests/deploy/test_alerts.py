"""compose/prometheus/alerts.yml: `promtool check rules`, its unit tests (`promtool test rules
tests/deploy/alerts_test.yml`), proof that those tests can fail, every alert the issue asks for,
every engagement_ metric a rule reads exported by the services, and Prometheus and Grafana
wired to show the alerts."""

from __future__ import annotations

import json
import re
import shutil

from tests.deploy.tools import COMPOSE_DIR, DASHBOARD, load_yaml, metric_names, registry_names, run, tool

ALERTS = COMPOSE_DIR / "prometheus" / "alerts.yml"
UNIT_TESTS = COMPOSE_DIR.parent / "tests" / "deploy" / "alerts_test.yml"
WANTED = {"EngagementServiceDown", "InferenceLatencyHigh", "FramesDropped", "BridgeQueueBehind", "DiskNearlyFull",
          "RedisMemoryHigh", "LinkHasStrayPeer"}


def rules() -> list[dict]:
    return [r for group in load_yaml(ALERTS)["groups"] for r in group["rules"]]


def test_promtool_accepts_the_rules():
    result = run([tool("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass():
    result = run([tool("promtool"), "test", "rules", str(UNIT_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_fail_when_a_threshold_moves(tmp_path):
    # The unit tests must be able to fail: the inference target raised tenfold makes them red.
    (tmp_path / "compose" / "prometheus").mkdir(parents=True)
    (tmp_path / "tests" / "deploy").mkdir(parents=True)
    text = ALERTS.read_text()
    assert "[5m]))) > 0.1" in text
    (tmp_path / "compose" / "prometheus" / "alerts.yml").write_text(text.replace("[5m]))) > 0.1", "[5m]))) > 1"))
    shutil.copy(UNIT_TESTS, tmp_path / "tests" / "deploy" / "alerts_test.yml")
    result = run([tool("promtool"), "test", "rules", "tests/deploy/alerts_test.yml"], cwd=tmp_path)
    assert result.returncode != 0 and "InferenceLatencyHigh" in result.stdout + result.stderr


def test_every_wanted_alert_exists_with_a_severity_and_a_summary():
    by_name = {r["alert"]: r for r in rules() if "alert" in r}
    assert WANTED <= set(by_name), f"missing: {WANTED - set(by_name)}"
    for name, rule in by_name.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    assert set(by_name) <= tested, f"no unit test for {set(by_name) - tested}"


def test_every_engagement_metric_of_the_rules_is_exported():
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    assert {"engagement_inference_seconds_bucket", "engagement_frames_dropped_total",
            "engagement_mqtt_bridge_oldest_queued_age_seconds"} <= used
    missing = sorted(used - registry_names())
    assert not missing, f"alerts read metrics no service exports: {missing}"


def test_prometheus_loads_the_rules_and_scrapes_the_exporters():
    config = load_yaml(COMPOSE_DIR / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    compose = load_yaml(COMPOSE_DIR / "docker-compose.yml")["services"]
    mounts = {target: source for source, target, *_ in (v.split(":") for v in compose["prometheus"]["volumes"])}
    assert mounts["/etc/prometheus/alerts.yml"] == "./prometheus/alerts.yml"
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"  # same folder
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for exporter, port in (("node-exporter", 9100), ("redis-exporter", 9121)):
        assert f"{exporter}:{port}" in targets and exporter in compose
        assert compose[exporter]["deploy"]["resources"]["limits"]


def test_grafana_shows_the_alerts():
    datasources = load_yaml(COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    [prometheus] = datasources["datasources"]
    assert prometheus["jsonData"]["manageAlerts"] is True
    panels = json.loads(DASHBOARD.read_text())["panels"]
    [alert_list] = [p for p in panels if p["type"] == "alertlist"]
    assert alert_list["options"]["datasource"] == prometheus["name"]
    assert alert_list["options"]["stateFilter"]["firing"] and alert_list["gridPos"]["y"] == 0
