"""Static checks of the packaging: Dockerfile, docker-compose.yml, kustomize manifests.

Fast and offline. The Kubernetes checks render each overlay with
`kubectl kustomize` and are skipped only when kubectl is not installed; the
schema check additionally needs the `kubernetes-validate` package.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_FILE = REPO / "deploy" / "prometheus" / "prometheus.yml"

OVERLAYS = ("dev", "prod")

# The application's documented settings (environment variables).
# To check against the application's own list once it exposes one, make this
# function return it (e.g. the field names of its settings class).
def documented_settings() -> frozenset[str]:
    """Every setting the application reads (the settings class is the single source)."""
    from earful.core.settings import Settings

    return frozenset(f"EARFUL_{name.upper()}" for name in Settings.model_fields)


# Settings that are secrets: never in a ConfigMap, only from `earful-secrets`.
SECRET_SETTINGS = frozenset({"EARFUL_DATABASE_URL", "EARFUL_WEBHOOK_SECRET", "EARFUL_API_KEYS"})

# Non-Earful variables compose may set, per third-party image.
THIRD_PARTY_ENV = frozenset({"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"})

# The Secret that is created out of band (deploy/README.md) and its keys.
EXTERNAL_SECRET = "earful-secrets"
EXTERNAL_SECRET_KEYS = frozenset({"database-url", "webhook-secret", "api-keys"})

# Service -> HTTP port (API and/or ops endpoints, /metrics included).
SERVICE_PORTS = {"ingest": 8080, "enrichment": 8081, "alerting": 8082, "storage": 8083}
JOB_ARGS = {"earful-topic-init": ["topics", "create"], "earful-migrate": ["migrate"]}

# Kubernetes API version the rendered objects are validated against.
KUBERNETES_VERSION = "1.30"

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed: cannot render the kustomize overlays"
)


# ---------------------------------------------------------------- helpers


@functools.cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    """Objects rendered by `kubectl kustomize deploy/k8s/<kustomization>`."""
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


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


def configmap_data(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (configmap,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("earful-config")]
    return configmap["data"]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", "NAME"]
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def dockerfile_stages() -> list[list[str]]:
    """Dockerfile instructions (continuations joined, comments dropped) per stage."""
    lines = DOCKERFILE.read_text().splitlines()
    instructions: list[str] = []
    current = ""
    for line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        instructions.append(current + stripped)
        current = ""
    stages: list[list[str]] = [[]]
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(instruction)
    return stages


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_final_stage_is_pinned_slim_non_root_with_entrypoint() -> None:
    stages = dockerfile_stages()
    preamble, builder, final = stages[0], stages[1:-1], stages[-1]
    args = dict(
        re.match(r"ARG (\w+)=(\S+)", i).groups()  # type: ignore[union-attr]
        for i in preamble
        if re.match(r"ARG \w+=", i)
    )
    assert builder, "expected a builder stage before the final stage"

    base = final[0].split()[1]
    base = args.get(base.strip("${}"), base)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base

    text = "\n".join(final)
    assert not re.search(r"\b(gcc|build-essential|g\+\+)\b", text), "build tools in the final stage"
    assert any(i.startswith("COPY --from=") for i in final), "final stage should copy the built venv"
    assert re.search(r"^COPY schemas /app/schemas$", text, re.M)
    assert re.search(r"EARFUL_SCHEMA_DIR=/app/schemas\b", text)
    (user,) = [i.split()[1] for i in final if i.startswith("USER ")]
    assert user.split(":")[0] not in {"0", "root"}
    assert 'ENTRYPOINT ["earful"]' in final
    (healthcheck,) = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert "urllib" in healthcheck and "EARFUL_HTTP_PORT" in healthcheck and "/healthz" in healthcheck

    builder_text = "\n".join(i for stage in builder for i in stage)
    assert "pip wheel" in builder_text and "venv" in builder_text


def test_dockerfile_env_names_are_documented() -> None:
    names = set(re.findall(r"\b(EARFUL_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert names <= documented_settings(), names - documented_settings()


def test_dockerignore_excludes_local_state_but_not_the_build_inputs() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", ".git", "tests", ".earful", "**/__pycache__"):
        assert required in patterns, f".dockerignore should exclude {required}"
    for needed in ("pyproject.toml", "README.md", "services", "schemas"):
        assert needed not in patterns, f".dockerignore must not exclude {needed}"


# ---------------------------------------------------------------- docker-compose.yml


def test_compose_references_exist() -> None:
    doc = compose()
    services = doc["services"]
    volumes = set(doc.get("volumes") or {})
    networks = set(doc.get("networks") or {}) | {"default"}
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for dep, spec in depends.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert spec["condition"] in conditions, (name, dep)
            if spec["condition"] == "service_healthy":
                hc = services[dep].get("healthcheck")
                assert hc and not hc.get("disable"), f"{name} waits for {dep} healthy, {dep} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing path {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
        service_networks = service.get("networks") or []
        for network in service_networks:
            assert network in networks, f"{name} uses undeclared network {network}"


def test_compose_env_names() -> None:
    for name, service in compose()["services"].items():
        for var in compose_env(service):
            if var.startswith("EARFUL_"):
                assert var in documented_settings(), f"{name}: {var} is not a documented setting"
            else:
                assert var in THIRD_PARTY_ENV, f"{name}: unexpected variable {var}"


def test_compose_stack_shape() -> None:
    services = compose()["services"]
    for name in ("redpanda", "postgres", "prometheus"):
        image = services[name]["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name} image must be pinned: {image}"
    assert "--mode=dev-container" in services["redpanda"]["command"]

    assert services["topic-init"]["command"] == ["topics", "create"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["webhook-sink"]["command"] == ["webhook-receiver", "--port", "9000"]
    for one_shot in ("topic-init", "migrate"):
        assert services[one_shot]["restart"] == "no"

    for name, port in SERVICE_PORTS.items():
        service = services[name]
        assert service["command"] == [name]
        assert "build" in service
        assert str(compose_env(service)["EARFUL_HTTP_PORT"]) == str(port)
        assert "healthz" in str(service["healthcheck"]["test"])
        assert service["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert services["storage"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

    published = {
        name: {str(p).rsplit(":", 2)[-2] for p in s.get("ports", [])} for name, s in services.items()
    }
    assert published["ingest"] == {"8080"}
    assert published["storage"] == {"8083"}
    assert published["prometheus"] == {"9090"}


def test_prometheus_scrapes_the_four_services() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{port}" for name, port in SERVICE_PORTS.items()}
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


# ---------------------------------------------------------------- Kubernetes


@needs_kubectl
@pytest.mark.parametrize("kustomization", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders(kustomization: str) -> None:
    objects = render(kustomization)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Job", "Service", "PodDisruptionBudget", "ConfigMap", "ServiceAccount"} <= kinds
    idents = [ident(o) for o in objects]
    assert len(idents) == len(set(idents)), "duplicate objects"


@needs_kubectl
def test_base_is_namespace_less() -> None:
    assert all("namespace" not in o["metadata"] for o in render("base"))


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_expected_workloads(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    deployments = {component(d): d for d in of_kind(objects, "Deployment")}
    assert set(deployments) == set(SERVICE_PORTS)
    for name, port in SERVICE_PORTS.items():
        (container,) = pod_spec(deployments[name])["containers"]
        assert container["args"] == [name]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["EARFUL_HTTP_PORT"]["value"] == str(port)
    jobs = {j["metadata"]["name"]: j for j in of_kind(objects, "Job")}
    assert set(jobs) == set(JOB_ARGS)
    for name, args in JOB_ARGS.items():
        (container,) = pod_spec(jobs[name])["containers"]
        assert container["args"] == args


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_hardening(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    (account,) = of_kind(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for workload in workloads(objects):
        spec = pod_spec(workload)
        where = ident(workload)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("runAsUser") == 10001, where
        assert "fsGroup" in pod_sc, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("serviceAccountName") == account["metadata"]["name"], where
        assert spec.get("automountServiceAccountToken") is False, where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(workload):
            sc = container.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: /tmp must be an emptyDir"
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{where}: {section}"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_probes_and_spread(overlay: str) -> None:
    for deployment in of_kind(render(f"overlays/{overlay}"), "Deployment"):
        where = ident(deployment)
        spec = pod_spec(deployment)
        assert spec.get("topologySpreadConstraints"), where
        for container in spec["containers"]:
            port_names = {p.get("name") for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                http = container.get(probe, {}).get("httpGet", {})
                assert http.get("path") == path, f"{where}: {probe}"
                assert http.get("port") in port_names, f"{where}: {probe} port"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_enrichment_gets_the_larger_resources(overlay: str) -> None:
    for deployment in of_kind(render(f"overlays/{overlay}"), "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        resources = container["resources"]
        if component(deployment) == "enrichment":
            expected = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
        else:
            expected = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
        assert {k: {r: str(v) for r, v in resources[k].items()} for k in expected} == expected, ident(deployment)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    assert not of_kind(objects, "Secret"), "Secrets must not be rendered from git"
    configmaps = {o["metadata"]["name"] for o in of_kind(objects, "ConfigMap")}
    secrets = {EXTERNAL_SECRET}

    for workload in workloads(objects):
        where = ident(workload)
        for volume in pod_spec(workload).get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, where
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, where
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, where
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, where
            for var in container.get("env", []):
                name = var["name"]
                assert name in documented_settings(), f"{where}: {name} is not a documented setting"
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in configmaps, where
                if "secretKeyRef" in ref:
                    assert ref["secretKeyRef"]["name"] in secrets, where
                    assert ref["secretKeyRef"]["key"] in EXTERNAL_SECRET_KEYS, where
                elif name in SECRET_SETTINGS:
                    raise AssertionError(f"{where}: {name} must come from {EXTERNAL_SECRET}")


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_keys_are_documented_non_secret_settings(overlay: str) -> None:
    data = configmap_data(render(f"overlays/{overlay}"))
    assert set(data) <= documented_settings(), set(data) - documented_settings()
    assert not set(data) & SECRET_SETTINGS, "secrets do not belong in the ConfigMap"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_disruption_budgets_select_every_deployment(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    services = of_kind(objects, "Service")
    budgets = of_kind(objects, "PodDisruptionBudget")

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        port = SERVICE_PORTS[component(deployment)]
        matching = [s for s in services if selects(s["spec"]["selector"], labels)]
        assert matching, f"no Service for {ident(deployment)}"
        ports = [p for s in matching for p in s["spec"]["ports"]]
        assert any(p["port"] == port and p["targetPort"] in ("http", port) for p in ports), ident(deployment)
        assert any(selects(b["spec"]["selector"]["matchLabels"], labels) for b in budgets), ident(deployment)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_tagged(overlay: str) -> None:
    for workload in workloads(render(f"overlays/{overlay}")):
        for container in containers(workload):
            image = container["image"]
            assert "@sha256:" in image or ":" in image.split("/")[-1], f"{ident(workload)}: untagged {image}"
            assert not image.endswith(":latest"), image
            if overlay == "dev":
                assert image.endswith(":dev"), image


@needs_kubectl
def test_dev_overlay() -> None:
    objects = render("overlays/dev")
    assert all(d["spec"]["replicas"] == 1 for d in of_kind(objects, "Deployment"))


@needs_kubectl
def test_prod_overlay() -> None:
    objects = render("overlays/prod")
    data = configmap_data(objects)
    assert data["EARFUL_TOPIC_REPLICATION_FACTOR"] == "3"
    assert data["EARFUL_KAFKA_IDEMPOTENCE"] == "true"
    assert all(d["spec"]["replicas"] >= 2 for d in of_kind(objects, "Deployment"))
    assert all(b["spec"].get("maxUnavailable") == 1 for b in of_kind(objects, "PodDisruptionBudget"))


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_the_kubernetes_schema(overlay: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install kubernetes-validate): schema check skipped",
    )
    errors = []
    for obj in render(f"overlays/{overlay}"):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{ident(obj)}: {str(exc).splitlines()[0]}")
    assert not errors, "\n".join(errors)
