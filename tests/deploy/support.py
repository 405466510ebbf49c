"""Shared helpers of the deployment checks: rendering kustomizations, the settings and metrics the
code really has, PromQL parsing. Everything is derived from the code, so a setting or a metric
added on another branch shows up here without editing the tests."""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO / "services"
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_FILE = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD_FILE = K8S / "components" / "monitoring" / "dashboards" / "earful-pipeline.json"
RULES_FILE = K8S / "components" / "monitoring" / "prometheusrule.yaml"
DEPLOY_README = DEPLOY / "README.md"

OVERLAYS = ("dev", "prod")
COMPONENTS = ("high-availability", "network-policies", "keda", "monitoring")
SERVICE_PORTS = {"ingest": 8080, "enrichment": 8081, "alerting": 8082, "storage": 8083}
JOB_ARGS = {"earful-topic-init": ["topics", "create"], "earful-migrate": ["migrate"]}
# Which image runs what (see the Dockerfile): only enrichment needs the NLP stack.
IMAGE_OF = {"ingest": "earful", "enrichment": "earful-nlp", "alerting": "earful", "storage": "earful",
            "topic-init": "earful", "migrate": "earful"}

# The Secret created out of band (deploy/README.md): its name and key per secret setting.
EXTERNAL_SECRET = "earful-secrets"
SECRET_KEYS = {"EARFUL_DATABASE_URL": "database-url", "EARFUL_WEBHOOK_SECRET": "webhook-secret",
               "EARFUL_API_KEYS": "api-keys", "EARFUL_INGEST_API_KEYS": "ingest-api-keys",
               "EARFUL_INGEST_MASTODON_ACCESS_TOKEN": "mastodon-access-token",
               "EARFUL_ALERTMANAGER_BEARER_TOKEN": "alertmanager-bearer-token",
               "EARFUL_ALERTMANAGER_BASIC_AUTH": "alertmanager-basic-auth",
               "EARFUL_KAFKA_SASL_PASSWORD": "kafka-sasl-password", "EARFUL_KAFKA_SSL_KEY_PASSWORD": "kafka-ssl-key-password",
               "EARFUL_SCHEMA_REGISTRY_PASSWORD": "schema-registry-password",
               "EARFUL_SCHEMA_REGISTRY_BEARER_TOKEN": "schema-registry-bearer-token",
               "EARFUL_LEADS_WEBHOOK_SECRET": "leads-webhook-secret",
               "EARFUL_CASES_WEBHOOK_SECRET": "cases-webhook-secret",
               "EARFUL_REPORT_SMTP_PASSWORD": "report-smtp-password"}
# Secret keys a pod may start without (the setting is optional and the feature off without it).
OPTIONAL_SECRET_KEYS = frozenset({"mastodon-access-token", "alertmanager-bearer-token", "alertmanager-basic-auth",
                                  "kafka-sasl-password", "kafka-ssl-key-password",
                                  "schema-registry-password", "schema-registry-bearer-token", "leads-webhook-secret",
                                  "cases-webhook-secret",
                                  "report-smtp-password"})
# The Kafka and schema-registry credentials every workload that talks to Kafka gets (deploy/k8s/base/kafka-security.yaml).
KAFKA_SECRETS = frozenset({"EARFUL_KAFKA_SASL_PASSWORD", "EARFUL_KAFKA_SSL_KEY_PASSWORD",
                           "EARFUL_SCHEMA_REGISTRY_PASSWORD", "EARFUL_SCHEMA_REGISTRY_BEARER_TOKEN"})
# Settings that differ per container and so are set in each Deployment, not in the ConfigMap.
PER_CONTAINER_SETTINGS = frozenset({"EARFUL_HTTP_PORT"})

# Labels Prometheus (or the Prometheus Operator) attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "endpoint", "service"})
# Series Prometheus makes itself rather than the services.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


# ---------------------------------------------------------------- settings


def settings_class() -> Any:
    from earful.core.settings import Settings

    return Settings


def env_name(field: str) -> str:
    return f"EARFUL_{field.upper()}"


def all_settings() -> frozenset[str]:
    """Every environment variable the settings class reads."""
    return frozenset(env_name(name) for name in settings_class().model_fields)


def secret_settings() -> frozenset[str]:
    """Settings typed as secrets (SecretStr, optional or not): never in a ConfigMap or in git."""
    from pydantic import SecretStr

    secrets = set()
    for name, field in settings_class().model_fields.items():
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            secrets.add(env_name(name))
    return frozenset(secrets)


def settings_error(env: dict[str, str]) -> str | None:
    """None when `env` (EARFUL_* names → values) makes valid settings, else the error."""
    from earful.core.errors import ConfigError
    from earful.core.settings import load_settings

    saved = {k: v for k, v in os.environ.items() if k.startswith("EARFUL_")}
    try:
        for key in saved:
            del os.environ[key]
        os.environ.update({k: str(v) for k, v in env.items() if k.startswith("EARFUL_")})
        load_settings()
        return None
    except ConfigError as exc:
        return str(exc)
    finally:
        for key in [k for k in os.environ if k.startswith("EARFUL_")]:
            del os.environ[key]
        os.environ.update(saved)


# ---------------------------------------------------------------- kustomize


KUBECTL = shutil.which("kubectl")


def require_kubectl() -> str:
    """kubectl's path; without it the Kubernetes checks fail in CI and are skipped elsewhere."""
    if KUBECTL is None:
        message = "kubectl is not installed: cannot render the kustomize overlays (apt-get install kubectl)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return KUBECTL


def _kustomize(path: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run([require_kubectl(), "kustomize", str(path)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """Objects rendered by `kubectl kustomize deploy/k8s/<kustomization>`."""
    return _kustomize(K8S / kustomization)


def _rebased(value: str, source: Path, target: Path) -> str:
    return os.path.relpath((source / value).resolve(), target)


@functools.cache
def render_with_components(overlay: str, components: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    """`overlay` rendered with exactly `components` (in the canonical order) instead of its own list."""
    source = K8S / "overlays" / overlay
    doc = yaml.safe_load((source / "kustomization.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="earful-kustomize-") as tmp:
        target = Path(tmp)
        doc["resources"] = [_rebased(r, source, target) for r in doc.get("resources", [])]
        doc["components"] = [os.path.relpath(K8S / "components" / c, target) for c in COMPONENTS if c in components]
        for patch in doc.get("patches", []):
            if "path" in patch:
                patch["path"] = _rebased(patch["path"], source, target)
        for generator in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
            for key in ("files", "envs"):
                if key in generator:
                    generator[key] = [
                        (f"{f.split('=', 1)[0]}={_rebased(f.split('=', 1)[1], source, target)}" if "=" in f
                         else _rebased(f, source, target))
                        for f in generator[key]
                    ]
        (target / "kustomization.yaml").write_text(yaml.safe_dump(doc))
        return _kustomize(target)


def component_combinations() -> list[tuple[str, tuple[str, ...]]]:
    """Every overlay with every subset of the optional components."""
    return [(overlay, subset) for overlay in OVERLAYS
            for n in range(len(COMPONENTS) + 1) for subset in itertools.combinations(COMPONENTS, n)]


def of_kind(objects: tuple[dict[str, Any], ...], *kinds: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in kinds]


def workloads(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return of_kind(objects, "Deployment", "Job")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def configmap(objects: tuple[dict[str, Any], ...], prefix: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith(prefix)]
    return found


def configmap_data(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    return configmap(objects, "earful-config")["data"]


# ---------------------------------------------------------------- docker-compose.yml


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", "NAME"]
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def earful_compose_services() -> dict[str, dict[str, Any]]:
    """Compose services that run an Earful image."""
    return {name: s for name, s in compose()["services"].items() if str(s.get("image", "")).startswith("earful")}


# ---------------------------------------------------------------- metrics the code exports


_CATALOG_SCRIPT = r"""
import importlib, json, re, sys
from pathlib import Path
services = Path(sys.argv[1])
pattern = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(")
for path in sorted(services.rglob("*.py")):
    if pattern.search(path.read_text(encoding="utf-8")):
        importlib.import_module(".".join(path.relative_to(services).with_suffix("").parts))
from earful.core.kafka import faust_app
from earful.core.settings import Settings
app_ids = set()
for path in services.rglob("*.py"):
    app_ids.update(re.findall(r'faust_app\(\s*settings\s*,\s*"([^"]+)"', path.read_text(encoding="utf-8")))
for app_id in sorted(app_ids):
    faust_app(Settings(), app_id)  # registers Faust's sensors under the app's prefix, as the service does
from prometheus_client import REGISTRY
suffixes = {"counter": ["_total", "_created"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum", "_created"],
            "summary": ["", "_count", "_sum", "_created"], "info": ["_info"], "stateset": [""], "unknown": [""]}
catalog = {}
for collector in list(REGISTRY._collector_to_names):
    labelnames = getattr(collector, "_labelnames", None)
    families = collector.describe() if labelnames is not None else collector.collect()
    for family in families:
        for suffix in suffixes.get(family.type, [""]):
            labels = set(labelnames or ())
            for sample in getattr(family, "samples", []):
                if sample.name == family.name + suffix:
                    labels.update(sample.labels)
            if family.type == "histogram" and suffix == "_bucket":
                labels.add("le")
            catalog[family.name + suffix] = sorted(labels)
print(json.dumps({"metrics": catalog, "faust_apps": sorted(app_ids)}))
"""


@functools.cache
def metric_catalog() -> dict[str, frozenset[str]]:
    """Every series name the services can expose on /metrics → its label names (from a fresh process)."""
    env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", _CATALOG_SCRIPT, str(SERVICES_DIR)], capture_output=True,
                            text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, f"could not list the exported metrics:\n{result.stderr[-3000:]}"
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["faust_apps"], "found no Faust app ids in the code"
    return {name: frozenset(labels) for name, labels in data["metrics"].items()}


# ---------------------------------------------------------------- PromQL


GRAFANA_MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)


def parse_promql(expr: str) -> Any:
    import promql_parser

    for macro, value in GRAFANA_MACROS.items():
        expr = expr.replace(macro, value)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in `expr`, with its label matchers."""
    import promql_parser

    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(Selector(node.name or "", tuple((m.name, str(m.op), m.value) for m in node.matchers.matchers)))

    promql_parser.walk(parse_promql(expr), visit)
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels named in `by (...)`, `on (...)` and `ignoring (...)` clauses."""
    import promql_parser

    labels: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None and node.modifier.matching:
            labels.update(node.modifier.matching.labels)

    promql_parser.walk(parse_promql(expr), visit)
    return labels


def output_labels(expr: str) -> set[str] | None:
    """The labels the result of `expr` carries, or None when it keeps a selector's labels."""
    import promql_parser

    def labels(node: Any) -> set[str] | None:
        if isinstance(node, promql_parser.ParenExpr):
            return labels(node.expr)
        if isinstance(node, promql_parser.AggregateExpr):
            if node.modifier is None:
                return set()
            if str(node.modifier.type).endswith("By"):
                return set(node.modifier.labels)
            return None
        if isinstance(node, promql_parser.BinaryExpr):
            left, right = labels(node.lhs), labels(node.rhs)
            if isinstance(node.lhs, promql_parser.NumberLiteral):
                return right
            return left
        if isinstance(node, promql_parser.Call):
            vectors = [a for a in node.args if not isinstance(a, (promql_parser.NumberLiteral, promql_parser.StringLiteral))]
            if not vectors:
                return set()
            inner = labels(vectors[-1])
            if node.func.name == "histogram_quantile" and inner is not None:
                return inner - {"le"}
            return inner
        if isinstance(node, promql_parser.NumberLiteral):
            return set()
        return None

    return labels(parse_promql(expr))
