"""Alert rules, the Grafana dashboard and the scrape configs use only metrics and labels the
services really export (read from the code's Prometheus registry), in valid PromQL."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    COMPOSE_FILE,
    DASHBOARD_FILE,
    DEPLOY_README,
    PROMETHEUS_FILE,
    PROMETHEUS_SERIES,
    REPO,
    RULES_FILE,
    SERVICE_PORTS,
    TARGET_LABELS,
    compose,
    grouping_labels,
    metric_catalog,
    output_labels,
    parse_promql,
    selectors,
)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def unknown_references(expr: str) -> list[str]:
    """Metric names and label names in `expr` that no service exports."""
    catalog = metric_catalog()
    problems = []
    used_labels: set[str] = set()
    names = set()
    for selector in selectors(expr):
        if selector.metric in PROMETHEUS_SERIES:
            labels = frozenset()
        elif selector.metric not in catalog:
            problems.append(f"metric {selector.metric!r} is not exported by any service")
            continue
        else:
            labels = catalog[selector.metric]
        names.add(selector.metric)
        for label, _, _ in selector.matchers:
            if label != "__name__" and label not in labels | TARGET_LABELS:
                problems.append(f"{selector.metric} has no label {label!r}")
        used_labels |= labels
    for label in grouping_labels(expr):
        if label not in used_labels | TARGET_LABELS:
            problems.append(f"grouping label {label!r} is on none of {sorted(names)}")
    return problems


def test_the_catalog_sees_every_kind_of_metric() -> None:
    catalog = metric_catalog()
    assert {"earful_messages_total", "earful_pipeline_latency_seconds_bucket", "earful_consumer_lag_records",
            "earful_webhook_deliveries_total", "earful_enrichment_topic_partition_offset_commited",
            "process_resident_memory_bytes"} <= set(catalog)
    assert catalog["earful_pipeline_latency_seconds_bucket"] == {"service", "le"}


def test_reference_check_catches_a_wrong_name() -> None:
    assert unknown_references('rate(earful_mesages_total[5m])')
    assert unknown_references('rate(earful_messages_total{servce="x"}[5m])')
    assert unknown_references('sum by (sevice) (rate(earful_messages_total[5m]))')
    assert not unknown_references('sum by (service) (rate(earful_messages_total{outcome="stored"}[5m]))')


@pytest.mark.parametrize("rule", rules(), ids=lambda r: f"{r['alert']}-{r.get('labels', {}).get('service', '')}")
def test_alert_rules_use_real_metrics(rule: dict[str, Any]) -> None:
    parse_promql(rule["expr"])  # raises on invalid PromQL
    assert not unknown_references(rule["expr"])
    assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}
    assert {"summary", "description"} <= set(rule.get("annotations", {}))
    # Every {{ $labels.X }} in the text must be a label the expression's result carries.
    carried = output_labels(rule["expr"])
    referenced = {m for text in rule["annotations"].values() for m in re.findall(r"\$labels\.(\w+)", text)}
    if carried is not None:
        missing = referenced - carried - set(rule.get("labels", {}))
        assert not missing, f"{rule['alert']}: annotations use labels the result lacks: {sorted(missing)}"


def test_rules_cover_the_pipeline() -> None:
    """The alerts the issue asks for: consumer lag (every consumer group), DLQ rate, webhook
    failures, no mentions ingested."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for rule in rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    lag_services = {r["labels"]["service"] for r in by_name["EarfulConsumerLagHigh"]}
    assert lag_services == {"enrichment", "alerting", "storage"}
    assert "earful_dead_letters_total" in by_name["EarfulDeadLetters"][0]["expr"]
    assert "earful_webhook_deliveries_total" in by_name["EarfulWebhookDeliveryFailed"][0]["expr"]
    assert "earful_ingest_mentions_total" in by_name["EarfulNoMentionsIngested"][0]["expr"]


def test_every_alert_has_a_runbook_entry() -> None:
    readme = DEPLOY_README.read_text()
    runbook = readme.split("## Runbook", 1)[1] if "## Runbook" in readme else ""
    for name in {r["alert"] for r in rules()}:
        assert f"`{name}`" in runbook, f"deploy/README.md ## Runbook has no entry for {name}"


@pytest.mark.parametrize(("title", "expr"), dashboard_exprs(), ids=[t for t, _ in dashboard_exprs()])
def test_dashboard_queries_use_real_metrics(title: str, expr: str) -> None:
    parse_promql(expr)
    assert not unknown_references(expr), title


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] == "earful-pipeline" and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = " ".join(p["title"].lower() for p in dashboard_panels() if p["type"] == "row")
    for topic in ("throughput", "latency", "lag", "alerts", "errors"):
        assert topic in titles, f"dashboard has no {topic} row"
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        assert panel["targets"], panel["title"]
    # Panels must not overlap.
    cells = set()
    for panel in dashboard_panels():
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_prometheus_scrapes_the_four_services_with_kubernetes_job_names() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {f"earful-{name}" for name in SERVICE_PORTS}, "job names match the Kubernetes Services"
    for name, port in SERVICE_PORTS.items():
        job = jobs[f"earful-{name}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert [t for s in job["static_configs"] for t in s["targets"]] == [f"{name}:{port}"]
        for static in job["static_configs"]:
            assert "service" not in static.get("labels", {}), "a `service` target label would clobber Earful's own"
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


def test_grafana_in_compose_loads_the_same_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = {m.split(":")[1]: REPO / m.split(":")[0] for m in grafana["volumes"] if m.startswith("./")}
    provisioning = mounts["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "earful.yaml").read_text())["providers"]
    dashboards_dir = mounts[provider["options"]["path"]]
    assert (dashboards_dir / DASHBOARD_FILE.name).resolve() == DASHBOARD_FILE.resolve()
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith(DASHBOARD_FILE.name)
    assert COMPOSE_FILE.exists()
