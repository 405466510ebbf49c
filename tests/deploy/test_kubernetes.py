"""The Kubernetes manifests: every overlay and every component combination renders with
`kubectl kustomize`, validates against the Kubernetes schemas (CRDs against the fields we rely on),
and keeps the hardening, probes, resources, configuration and scaling rules."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.crd_schemas import CRD_SCHEMAS, kafka_trigger_problems
from tests.deploy.support import (
    COMPONENTS,
    EXTERNAL_SECRET,
    IMAGE_OF,
    JOB_ARGS,
    K8S,
    KAFKA_SECRETS,
    OPTIONAL_SECRET_KEYS,
    OVERLAYS,
    PER_CONTAINER_SETTINGS,
    REPO,
    SECRET_KEYS,
    SERVICE_PORTS,
    all_settings,
    component,
    component_combinations,
    configmap,
    configmap_data,
    containers,
    ident,
    of_kind,
    pod_spec,
    render,
    render_with_components,
    secret_settings,
    settings_error,
    workloads,
)

# Oldest Kubernetes the manifests support (NetworkPolicy endPort is GA since 1.25; 1.30 is the
# oldest release still maintained by the big providers) and the newest schema we have.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
COMBINATIONS = component_combinations()
COMBINATION_IDS = [f"{o}+{'+'.join(c) or 'none'}" for o, c in COMBINATIONS]


def everything() -> list[tuple[dict[str, Any], ...]]:
    """The base, each overlay as shipped, and each overlay with every component combination."""
    return [render("base"), *(render(f"overlays/{o}") for o in OVERLAYS),
            *(render_with_components(o, c) for o, c in COMBINATIONS)]


# ---------------------------------------------------------------- rendering and schemas


@pytest.mark.parametrize(("overlay", "components"), COMBINATIONS, ids=COMBINATION_IDS)
def test_every_component_combination_renders_and_validates(overlay: str, components: tuple[str, ...]) -> None:
    objects = render_with_components(overlay, components)
    idents = [ident(o) for o in objects]
    assert len(idents) == len(set(idents)), "duplicate objects"
    assert {"Deployment", "Job", "Service", "PodDisruptionBudget", "ConfigMap", "ServiceAccount"} <= {o["kind"] for o in objects}
    errors = validate_all(objects)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("kustomization", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_shipped_kustomizations_render_and_validate(kustomization: str) -> None:
    objects = render(kustomization)
    errors = validate_all(objects)
    assert not errors, "\n".join(errors)


def validate_all(objects: tuple[dict[str, Any], ...]) -> list[str]:
    return [error for obj in objects for error in _validate(json.dumps(obj, sort_keys=True))]


@functools.cache
def _validate(serialized: str) -> tuple[str, ...]:
    """Schema errors of one object (cached: the combinations share most objects)."""
    obj = json.loads(serialized)
    errors = []
    key = (obj["apiVersion"].split("/")[0], obj["kind"])
    if key in CRD_SCHEMAS:
        for error in jsonschema.Draft202012Validator(CRD_SCHEMAS[key]).iter_errors(obj):
            errors.append(f"{ident(obj)}: {'/'.join(map(str, error.absolute_path))}: {error.message}")
        return tuple(errors)
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{ident(obj)} (Kubernetes {version}): {str(exc).splitlines()[0]}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{ident(obj)}: no schema for {obj['apiVersion']} {obj['kind']} (add one to crd_schemas.py)")
    return tuple(errors)


def test_the_crd_checks_catch_a_typo() -> None:
    """The structural CRD schemas are strict: a misspelt field or a non-string trigger value fails."""
    (scaled,) = [o for o in render_with_components("prod", ("keda",)) if ident(o) == "ScaledObject/earful-enrichment"]
    broken = yaml.safe_load(yaml.safe_dump(scaled))
    broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    broken["spec"]["triggers"][0]["metadata"]["allowIdleConsumers"] = False
    assert len(validate_all((broken,))) >= 2


def test_base_is_namespace_less_and_overlays_set_one() -> None:
    assert all("namespace" not in o["metadata"] for o in render("base"))
    for overlay in OVERLAYS:
        namespaces = {o["metadata"].get("namespace") for o in render(f"overlays/{overlay}")}
        assert len(namespaces) == 1 and None not in namespaces, (overlay, namespaces)


def test_prod_ships_every_component_in_order() -> None:
    doc = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    names = [c.rsplit("/", 1)[-1] for c in doc.get("components", [])]
    assert names == list(COMPONENTS), "prod lists every component, high-availability before keda"


# ---------------------------------------------------------------- workloads


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_expected_workloads_and_images(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    deployments = {component(d): d for d in of_kind(objects, "Deployment")}
    assert set(deployments) == set(SERVICE_PORTS)
    for name, port in SERVICE_PORTS.items():
        (container,) = pod_spec(deployments[name])["containers"]
        assert container["args"] == [name]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        env = {e["name"]: e for e in container.get("env", [])}
        assert env["EARFUL_HTTP_PORT"]["value"] == str(port)
        assert image_name(container["image"]) == IMAGE_OF[name], (name, container["image"])
    jobs = {j["metadata"]["name"]: j for j in of_kind(objects, "Job")}
    assert set(jobs) == set(JOB_ARGS)
    for name, args in JOB_ARGS.items():
        (container,) = pod_spec(jobs[name])["containers"]
        assert container["args"] == args
        assert image_name(container["image"]) == IMAGE_OF[component(jobs[name])]


def image_name(image: str) -> str:
    return image.split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[-1]


@pytest.mark.parametrize(("overlay", "components"), COMBINATIONS, ids=COMBINATION_IDS)
def test_pod_hardening_probes_and_resources(overlay: str, components: tuple[str, ...]) -> None:
    objects = render_with_components(overlay, components)
    (account,) = of_kind(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    for workload in workloads(objects):
        spec = pod_spec(workload)
        where = ident(workload)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("runAsUser") == 10001 and pod_sc.get("runAsGroup") == 10001, where
        assert "fsGroup" in pod_sc, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("serviceAccountName") == account["metadata"]["name"], where
        assert spec.get("automountServiceAccountToken") is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(workload):
            sc = container.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged") in (None, False), where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("runAsUser", 10001) != 0, where
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp", {}).get("name") in empty_dirs, f"{where}: /tmp must be an emptyDir"
            assert all(m.get("readOnly") for p, m in mounts.items() if p != "/tmp"), f"{where}: only /tmp is writable"
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{where}: {section}"
            assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"]), where
            assert quantity(resources["requests"]["cpu"]) <= quantity(resources["limits"]["cpu"]), where
        if workload["kind"] == "Deployment":
            assert spec.get("topologySpreadConstraints"), where
            (container,) = spec["containers"]
            port_names = {p.get("name") for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
            for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                http = container.get(probe, {}).get("httpGet", {})
                assert http.get("path") == path, f"{where}: {probe}"
                assert http.get("port") in port_names, f"{where}: {probe} port"


def quantity(value: Any) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores or bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and (not match.group(2) or match.group(2) in units), value
    return float(match.group(1)) * units.get(match.group(2), 1)


def test_resources_cover_the_measured_peaks() -> None:
    """Memory limits leave at least 2x the peak RSS measured by `make bench-resources`
    (docs/performance.md); requests cover the peak itself. Update both together."""
    measured_peak_mib = {"ingest": 85, "enrichment": 398, "alerting": 94, "storage": 88, "migrate": 79, "topic-init": 39}
    for workload in workloads(render("base")):
        (container,) = pod_spec(workload)["containers"]
        peak = measured_peak_mib[component(workload)] * 2**20
        memory = container["resources"]
        assert quantity(memory["requests"]["memory"]) >= peak, ident(workload)
        assert quantity(memory["limits"]["memory"]) >= 2 * peak, ident(workload)
    (enrichment,) = [d for d in of_kind(render("base"), "Deployment") if component(d) == "enrichment"]
    # A busy enrichment worker uses a whole core (1.9 ms CPU per mention).
    assert quantity(pod_spec(enrichment)["containers"][0]["resources"]["limits"]["cpu"]) >= 1


# ---------------------------------------------------------------- configuration and secrets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_is_in_the_configmap_or_a_secret_or_per_container(overlay: str) -> None:
    """Each field of the settings class is configured in exactly one place (derived from the
    class, so settings added elsewhere are caught here until they are placed)."""
    objects = render(f"overlays/{overlay}")
    data = configmap_data(objects)
    secrets = secret_settings()
    assert set(SECRET_KEYS) == set(secrets), "every secret setting needs a key in earful-secrets (SECRET_KEYS)"
    assert not set(data) & secrets, "secrets do not belong in the ConfigMap"
    assert not set(data) & PER_CONTAINER_SETTINGS
    missing = all_settings() - set(data) - secrets - PER_CONTAINER_SETTINGS
    assert not missing, f"settings missing from deploy/k8s/base/earful.env: {sorted(missing)}"
    unknown = set(data) - all_settings()
    assert not unknown, f"ConfigMap keys that are no setting: {sorted(unknown)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_values_are_valid_settings(overlay: str) -> None:
    """Every value parses: an overlay typo (EARFUL_KAFKA_IDEMPOTENCE=ture) fails here, not in the pod."""
    objects = render(f"overlays/{overlay}")
    for deployment in of_kind(objects, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        env = dict(configmap_data(objects))
        env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
        env.update({name: "postgresql://user:secret@db:5432/earful" if name == "EARFUL_DATABASE_URL" else "x"
                    for name in secrets_of(container)})
        assert settings_error(env) is None, (ident(deployment), settings_error(env))


def test_empty_value_means_default() -> None:
    """The ConfigMap lists optional settings with an empty value; the settings class must read that as unset."""
    data = configmap_data(render("base"))
    empty = {k for k, v in data.items() if v == ""}
    assert {"EARFUL_SCHEMA_REGISTRY_URL", "EARFUL_TOPIC_PARTITIONS"} <= empty
    from earful.core.settings import Settings

    fields = Settings.model_fields
    env = dict.fromkeys(all_settings(), "")
    assert settings_error(env) is None
    import os

    saved = dict(os.environ)
    try:
        os.environ.update(env)
        settings = Settings()
        for name, field in fields.items():
            if field.default_factory is None:
                assert getattr(settings, name) == field.default, name
    finally:
        os.environ.clear()
        os.environ.update(saved)


def secrets_of(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references(overlay: str) -> None:
    objects = render(f"overlays/{overlay}")
    assert not of_kind(objects, "Secret"), "Secrets must not be rendered from git"
    configmaps = {o["metadata"]["name"] for o in of_kind(objects, "ConfigMap")}
    needs = {"storage": {"EARFUL_DATABASE_URL", "EARFUL_API_KEYS", "EARFUL_LEADS_WEBHOOK_SECRET", "EARFUL_CASES_WEBHOOK_SECRET",
                         "EARFUL_REPORT_SMTP_PASSWORD"},
             "migrate": {"EARFUL_DATABASE_URL"},
             "alerting": {"EARFUL_DATABASE_URL", "EARFUL_WEBHOOK_SECRET", "EARFUL_API_KEYS",
                          "EARFUL_ALERTMANAGER_BEARER_TOKEN", "EARFUL_ALERTMANAGER_BASIC_AUTH"},
             "ingest": {"EARFUL_INGEST_API_KEYS", "EARFUL_INGEST_MASTODON_ACCESS_TOKEN"}, "enrichment": set(),
             "topic-init": set()}
    for kafka_client in ("storage", "alerting", "ingest", "enrichment", "topic-init"):
        needs[kafka_client] = needs[kafka_client] | KAFKA_SECRETS
    for workload in workloads(objects):
        where = ident(workload)
        for volume in pod_spec(workload).get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, where
            assert "secret" not in volume or volume["secret"]["secretName"] == EXTERNAL_SECRET, where
        for container in containers(workload):
            sources = [s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s]
            assert sources and all(s in configmaps for s in sources), where
            assert not [s for s in container.get("envFrom", []) if "secretRef" in s], f"{where}: name secret keys one by one"
            for var in container.get("env", []):
                assert var["name"] in all_settings(), f"{where}: {var['name']} is not a setting"
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if var["name"] in secret_settings():
                    key = SECRET_KEYS[var["name"]]
                    optional = {"optional": True} if key in OPTIONAL_SECRET_KEYS else {}
                    assert ref == {"name": EXTERNAL_SECRET, "key": key, **optional}, where
                else:
                    assert ref is None, where
            assert secrets_of(container) == needs[component(workload)], f"{where}: least privilege"


def test_secret_keys_are_documented() -> None:
    readme = (REPO / "deploy" / "README.md").read_text()
    for setting, key in SECRET_KEYS.items():
        assert re.search(rf"`{key}`\s*\|\s*`{setting}`", readme), f"deploy/README.md must document {key} → {setting}"


def test_watchlists_configmap_is_mounted_and_valid(tmp_path: Any) -> None:
    from earful.watchlists import WatchlistSet

    objects = render("base")
    watchlists = configmap(objects, "earful-watchlists")
    for key, text in watchlists["data"].items():
        (tmp_path / key).write_text(text)
    assert WatchlistSet.from_file(tmp_path).watchlists  # one <id>.yaml per watchlist, as the mount shows them
    target = configmap_data(objects)["EARFUL_WATCHLISTS_DIR"]
    for workload in workloads(objects):
        (container,) = pod_spec(workload)["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert volumes["watchlists"]["configMap"]["name"] == watchlists["metadata"]["name"]
        assert target == mounts["watchlists"], ident(workload)


# ---------------------------------------------------------------- services, budgets, replicas


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
        assert len(matching) == 1, f"one Service for {ident(deployment)}"
        (service_port,) = matching[0]["spec"]["ports"]
        assert service_port["name"] == "http" and service_port["port"] == port and service_port["targetPort"] == "http"
        matching_budgets = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching_budgets) == 1 and matching_budgets[0]["spec"].get("maxUnavailable") == 1, ident(deployment)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    for workload in workloads(render(f"overlays/{overlay}")):
        for container in containers(workload):
            image = container["image"]
            assert "@sha256:" in image or ":" in image.split("/")[-1], f"{ident(workload)}: untagged {image}"
            assert not image.endswith(":latest"), image
            if overlay == "dev":
                assert image.endswith(":dev"), image


def test_dev_overlay() -> None:
    objects = render("overlays/dev")
    assert all(d["spec"]["replicas"] == 1 for d in of_kind(objects, "Deployment"))
    assert configmap_data(objects)["EARFUL_TOPIC_PARTITIONS"] == "3"
    assert not of_kind(objects, "ScaledObject", "ServiceMonitor", "PrometheusRule", "NetworkPolicy")


def test_prod_overlay() -> None:
    objects = render("overlays/prod")
    data = configmap_data(objects)
    assert data["EARFUL_TOPIC_REPLICATION_FACTOR"] == "3"
    assert data["EARFUL_KAFKA_IDEMPOTENCE"] == "true"
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in of_kind(objects, "ScaledObject")}
    assert scaled == {"earful-enrichment", "earful-alerting", "earful-storage"}
    for deployment in of_kind(objects, "Deployment"):
        if deployment["metadata"]["name"] in scaled:
            assert "replicas" not in deployment["spec"], f"{ident(deployment)}: KEDA owns the replica count"
        else:
            assert deployment["spec"]["replicas"] >= 2, ident(deployment)
    for scaled_object in of_kind(objects, "ScaledObject"):
        assert scaled_object["spec"]["minReplicaCount"] >= 2, ident(scaled_object)


def test_high_availability_without_keda_keeps_two_replicas_each() -> None:
    objects = render_with_components("prod", ("high-availability", "network-policies", "monitoring"))
    assert all(d["spec"]["replicas"] >= 2 for d in of_kind(objects, "Deployment"))


# ---------------------------------------------------------------- KEDA


def consumer_groups() -> dict[str, str]:
    """Service → the consumer group it uses, read from the code (Faust app id or aiokafka group)."""
    groups = {}
    for service in ("enrichment", "alerting", "storage"):
        for path in (REPO / "services" / "earful" / service).glob("*.py"):
            text = path.read_text()
            match = re.search(r'faust_app\(\s*settings\s*,\s*"([^"]+)"', text) or re.search(
                r'make_consumer\(\s*settings\s*,\s*"([^"]+)"', text)
            if match:
                groups[service] = match.group(1)
    return groups


def test_scaled_objects_match_consumer_groups_topics_and_partitions() -> None:
    """KEDA scales each consumer on its real group and topics, up to their partition count."""
    from earful.core.settings import Settings
    from earful.core.topics import load_topics, partitions_for

    groups = consumer_groups()
    assert set(groups) == {"enrichment", "alerting", "storage"}, groups
    specs = load_topics(REPO / "schemas")
    objects = render("overlays/prod")
    data = configmap_data(objects)
    settings = Settings(topic_partitions=int(data["EARFUL_TOPIC_PARTITIONS"]) if data["EARFUL_TOPIC_PARTITIONS"] else None)
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    for scaled in of_kind(objects, "ScaledObject"):
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        service = component(target)
        partitions = []
        for trigger in scaled["spec"]["triggers"]:
            meta = trigger["metadata"]
            assert not kafka_trigger_problems(trigger), (ident(scaled), kafka_trigger_problems(trigger))
            assert meta["consumerGroup"] == groups[service], ident(scaled)
            spec = specs[meta["topic"]]
            assert service in spec.consumers, f"{ident(scaled)}: {service} does not consume {spec.name}"
            partitions.append(partitions_for(spec, settings))
            env_var = meta["bootstrapServersFromEnv"]
            (container,) = pod_spec(target)["containers"]
            assert env_var in data or env_var in {e["name"] for e in container.get("env", [])}, ident(scaled)
        consumed = {s.name for s in specs.values() if service in s.consumers and s.cleanup_policy != "compact"}
        # Read whole by every replica without committed offsets (a follower, not a consumer group's
        # work): their lag is no reason to scale.
        consumed -= {"earful.watchlists.v1", "earful.cases.v1"}
        assert {t["metadata"]["topic"] for t in scaled["spec"]["triggers"]} == consumed, ident(scaled)
        assert scaled["spec"]["maxReplicaCount"] == max(partitions), (
            f"{ident(scaled)}: maxReplicaCount must equal the partition count ({max(partitions)})")


def test_keda_reaches_kafka_with_the_services_credentials() -> None:
    """Every kafka trigger authenticates through the TriggerAuthentication, which reads the same Secret
    keys as the services (and the user name from the scaled container's own environment)."""
    objects = render("overlays/prod")
    auths = {a["metadata"]["name"]: a for a in of_kind(objects, "TriggerAuthentication")}
    assert set(auths) == {"earful-kafka"}, sorted(auths)
    spec = auths["earful-kafka"]["spec"]
    refs = {r["parameter"]: r for r in spec["secretTargetRef"]}
    assert {"sasl", "password", "tls", "ca", "cert", "key", "keyPassword"} <= set(refs)
    assert all(r["name"] == EXTERNAL_SECRET for r in refs.values())
    assert refs["password"]["key"] == SECRET_KEYS["EARFUL_KAFKA_SASL_PASSWORD"]
    assert refs["keyPassword"]["key"] == SECRET_KEYS["EARFUL_KAFKA_SSL_KEY_PASSWORD"]
    (username,) = spec["env"]
    assert (username["parameter"], username["name"]) == ("username", "EARFUL_KAFKA_SASL_USERNAME")
    assert "EARFUL_KAFKA_SASL_USERNAME" in configmap_data(objects)
    # The TLS files KEDA reads are the ones mounted into the services.
    deployment = next(d for d in of_kind(objects, "Deployment") if component(d) == "storage")
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "kafka-tls"]
    mounted = {item["key"] for item in volume["secret"]["items"]}
    assert {refs[p]["key"] for p in ("ca", "cert", "key")} == mounted
    assert volume["secret"]["secretName"] == EXTERNAL_SECRET and volume["secret"]["optional"] is True
    scaled = of_kind(objects, "ScaledObject")
    assert scaled
    for obj in scaled:
        for trigger in obj["spec"]["triggers"]:
            assert trigger.get("authenticationRef") == {"name": "earful-kafka"}, ident(obj)


# ---------------------------------------------------------------- NetworkPolicies


def policy_selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
    return True


def port_allowed(rule: dict[str, Any], port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    return any(p.get("protocol", "TCP") == protocol and p["port"] <= port <= p.get("endPort", p["port"]) for p in rule["ports"])


def peer_allows(rule: dict[str, Any], direction: str, peer: dict[str, str] | None) -> bool:
    """Whether `rule` admits `peer` (namespace label + pod labels; None = anywhere outside)."""
    peers = rule.get("to" if direction == "egress" else "from")
    if not peers:
        return True
    for p in peers:
        if peer is None:
            if "ipBlock" in p:
                return True
            continue
        ns_ok = "namespaceSelector" not in p or all(
            peer.get(f"ns:{k}") == v for k, v in p["namespaceSelector"].get("matchLabels", {}).items())
        pod_ok = "podSelector" not in p or all(peer.get(k) == v for k, v in p["podSelector"].get("matchLabels", {}).items())
        if ns_ok and pod_ok and ("namespaceSelector" in p or "podSelector" in p):
            return True
    return False


def allowed(policies: list[dict[str, Any]], labels: dict[str, str], direction: str, port: int,
            protocol: str = "TCP", peer: dict[str, str] | None = None) -> bool:
    kind = "Egress" if direction == "egress" else "Ingress"
    applicable = [p for p in policies if policy_selects(p, labels) and kind in p["spec"]["policyTypes"]]
    if not applicable:
        return True  # no policy selects the pod in this direction: Kubernetes allows everything
    return any(port_allowed(rule, port, protocol) and peer_allows(rule, direction, peer)
               for p in applicable for rule in p["spec"].get(direction, []))


def test_network_policies_allow_exactly_the_needed_flows() -> None:
    objects = render_with_components("prod", ("network-policies",))
    policies = of_kind(objects, "NetworkPolicy")
    dns = {"ns:kubernetes.io/metadata.name": "kube-system", "k8s-app": "kube-dns"}
    prometheus = {"ns:kubernetes.io/metadata.name": "monitoring"}
    elsewhere = {"ns:kubernetes.io/metadata.name": "some-team"}
    pods = {component(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(objects)}
    assert set(pods) == {"ingest", "enrichment", "alerting", "storage", "topic-init", "migrate"}

    for name, labels in pods.items():
        assert allowed(policies, labels, "egress", 53, "UDP", dns), f"{name}: DNS"
        assert not allowed(policies, labels, "egress", 53, "UDP", elsewhere), f"{name}: DNS only to kube-dns"
        assert allowed(policies, labels, "egress", 9092), f"{name}: Kafka"
        assert allowed(policies, labels, "egress", 8081), f"{name}: schema registry"
        assert allowed(policies, labels, "egress", 5432) == (name in {"storage", "alerting", "migrate"}), f"{name}: PostgreSQL"
        assert allowed(policies, labels, "egress", 443) == (name in {"ingest", "alerting"}), f"{name}: internet (443)"
        assert allowed(policies, labels, "egress", 80) == (name == "ingest"), f"{name}: http (80)"
        assert not allowed(policies, labels, "egress", 22), f"{name}: anything else is denied"
        if name in SERVICE_PORTS:
            port = SERVICE_PORTS[name]
            assert allowed(policies, labels, "ingress", port, peer=prometheus), f"{name}: metrics scrape"
            public = name in {"ingest", "alerting", "storage"}  # push API, silences/acks, query API
            assert allowed(policies, labels, "ingress", port, peer=elsewhere) == public, f"{name}: API reachable"
        assert not allowed(policies, labels, "ingress", 22, peer=elsewhere), f"{name}: ingress denied by default"


# ---------------------------------------------------------------- jobs


def test_jobs_are_bounded_and_idempotent_commands() -> None:
    for job in of_kind(render("base"), "Job"):
        spec = job["spec"]
        assert spec["backoffLimit"] >= 1 and spec["activeDeadlineSeconds"] <= 3600, ident(job)
        assert spec["ttlSecondsAfterFinished"] > 0, ident(job)
        assert pod_spec(job)["restartPolicy"] == "Never", ident(job)
