"""docker-compose.yml: parses, references only what exists, waits for health, and configures every
setting the code reads with a value the settings class accepts."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.support import (
    REPO,
    SERVICE_PORTS,
    all_settings,
    compose,
    compose_env,
    earful_compose_services,
    settings_error,
)

# Non-Earful variables compose may set, per third-party image.
THIRD_PARTY_ENV = {
    "postgres": {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"},
    "grafana": {"GF_AUTH_ANONYMOUS_ENABLED", "GF_AUTH_ANONYMOUS_ORG_ROLE", "GF_SECURITY_ADMIN_PASSWORD",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"},
}
# Keys of a compose service this file may use (a typo such as `depends-on` would be ignored by
# some tools and refused by others).
SERVICE_KEYS = {"image", "build", "command", "entrypoint", "environment", "volumes", "ports", "healthcheck",
                "depends_on", "restart", "profiles", "user", "read_only", "tmpfs", "cap_drop", "security_opt"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
ONE_SHOTS = {"topic-init", "migrate"}


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def test_compose_references_exist() -> None:
    doc = compose()
    assert set(doc) <= {"name", "services", "volumes", "networks"} | {k for k in doc if k.startswith("x-")}
    volumes = set(doc.get("volumes") or {})
    used_volumes = set()
    for name, service in doc["services"].items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unexpected keys {set(service) - SERVICE_KEYS}"
        assert "image" in service, name
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dep, spec in depends.items():
            assert dep in doc["services"], f"{name} depends on unknown service {dep}"
            assert spec["condition"] in CONDITIONS, (name, dep)
            target = doc["services"][dep]
            if spec["condition"] == "service_healthy":
                hc = target.get("healthcheck")
                assert hc and not hc.get("disable"), f"{name} waits for {dep} healthy, {dep} has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dep} must be a one-shot"
            assert not set(target.get("profiles", [])) - set(service.get("profiles", [])), (
                f"{name} depends on {dep}, which only starts with a profile")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts missing path {source}"
            else:
                assert source in volumes, f"{name} uses undeclared volume {source}"
                used_volumes.add(source)
        build = service.get("build")
        if build:
            assert (REPO / build["context"] / build["dockerfile"]).exists()
            stages = [line.split()[-1] for line in (REPO / build["dockerfile"]).read_text().splitlines()
                      if line.startswith("FROM ") and " AS " in line]
            assert build["target"] in stages, f"{name}: no stage {build['target']}"
    assert used_volumes == volumes, "declared volumes nobody uses"


def test_dependencies_wait_for_health_and_one_shots() -> None:
    s = services()
    for name in SERVICE_PORTS:
        depends = s[name]["depends_on"]
        assert depends["redpanda"]["condition"] == "service_healthy"
        assert depends["topic-init"]["condition"] == "service_completed_successfully"
    for name in ("storage", "alerting"):
        assert s[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert s[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for one_shot in ONE_SHOTS:
        assert s[one_shot]["restart"] == "no"
    assert s["topic-init"]["command"] == ["topics", "create"]
    assert s["migrate"]["command"] == ["migrate"]
    assert s["alerting"]["depends_on"]["webhook-sink"]["condition"] == "service_healthy"


def test_stack_shape_and_pinned_images() -> None:
    s = services()
    for name, service in s.items():
        image = service["image"]
        if service.get("build"):
            assert image in ("earful:local", "earful-nlp:local"), name
            continue
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name} image must be pinned: {image}"
    assert "--mode=dev-container" in s["redpanda"]["command"]
    assert any(arg.startswith("--schema-registry-addr") for arg in s["redpanda"]["command"])
    assert s["enrichment"]["build"]["target"] == "earful-nlp"
    for name in ("ingest", "alerting", "storage", "topic-init", "migrate", "webhook-sink"):
        assert s[name]["build"]["target"] == "earful", name
    published = {name: {str(p).rsplit(":", 2)[-2] for p in svc.get("ports", [])} for name, svc in s.items()}
    assert published["ingest"] == {"8080"} and published["storage"] == {"8083"}
    assert published["prometheus"] == {"9090"} and published["grafana"] == {"3000"}
    for name, svc in s.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


@pytest.mark.parametrize("name", sorted(SERVICE_PORTS))
def test_services_hardened_and_health_checked(name: str) -> None:
    service = services()[name]
    assert service["command"] == [name]
    assert str(compose_env(service)["EARFUL_HTTP_PORT"]) == str(SERVICE_PORTS[name])
    assert service["user"] == "10001:10001" and service["read_only"] is True
    assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    assert any(t.startswith("/tmp") for t in service["tmpfs"])
    assert service["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py", "/readyz"]


def test_every_setting_is_set_for_every_earful_container() -> None:
    """Derived from the settings class: a setting added anywhere must be given a value here."""
    for name, service in earful_compose_services().items():
        if name in {"webhook-sink", "replay"}:
            continue  # tools, not services: they read no service settings
        env = compose_env(service)
        missing = all_settings() - set(env) - ({"EARFUL_HTTP_PORT"} if name in ONE_SHOTS else set())
        assert not missing, f"{name}: settings missing from x-earful-env: {sorted(missing)}"


def test_env_names_and_values_are_valid() -> None:
    for name, service in services().items():
        env = compose_env(service)
        for var in env:
            if var.startswith("EARFUL_"):
                assert var in all_settings(), f"{name}: {var} is not a setting"
            else:
                assert var in THIRD_PARTY_ENV.get(name, set()), f"{name}: unexpected variable {var}"
        if str(service.get("image", "")).startswith("earful"):
            assert settings_error({k: str(v) for k, v in env.items()}) is None, (name, settings_error(env))


def test_webhook_sink_is_reachable_and_verifies_signatures() -> None:
    """The sink must listen beyond its own loopback, on the path alerting posts to, with the secret
    alerting signs with (it listened on 127.0.0.1 and alerting posted to a path it does not serve)."""
    from earful.webhook_receiver import WebhookReceiver

    s = services()
    command = s["webhook-sink"]["command"]
    assert command[0] == "webhook-receiver"
    options = dict(zip(command[1::2], command[2::2]))
    assert options["--host"] == "0.0.0.0"
    (url,) = compose_env(s["alerting"])["EARFUL_WEBHOOK_URLS"].split(",")
    parts = urlsplit(url)
    assert parts.hostname == "webhook-sink" and str(parts.port) == options["--port"]
    routes = {route.path for route in WebhookReceiver().app().routes if "POST" in getattr(route, "methods", set())}
    assert parts.path in routes, f"the receiver serves {sorted(routes)}, alerting posts to {parts.path}"
    assert options["--secret"] == compose_env(s["alerting"])["EARFUL_WEBHOOK_SECRET"]
    assert str(compose_env(s["webhook-sink"])["EARFUL_HTTP_PORT"]) == options["--port"], "its health check port"


def test_watchlists_folder_is_mounted_where_the_setting_points() -> None:
    from earful.watchlists import WatchlistSet

    checked = 0
    for name, service in earful_compose_services().items():
        target = compose_env(service).get("EARFUL_WATCHLISTS_DIR")
        if not target:
            continue
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}
        assert target in mounts, f"{name}: {target} is not mounted"
        assert WatchlistSet.from_file(REPO / mounts[target]).watchlists, f"{name}: {mounts[target]} holds no watchlists"
        checked += 1
    assert checked, "no service is given EARFUL_WATCHLISTS_DIR"


def test_replay_profile_targets_ingest() -> None:
    replay = services()["replay"]
    assert replay["profiles"] == ["demo"]
    args = dict(zip(replay["command"][1::2], replay["command"][2::2]))
    assert replay["command"][0] == "replay" and args["--ingest-url"] == "http://ingest:8080"


def test_replay_profile_mounts_the_sample_it_replays() -> None:
    """The image has no sample stream (it ships with the development package): the file named last
    in the command is mounted from the clone."""
    replay = services()["replay"]
    path = replay["command"][-1]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in replay.get("volumes", [])}
    assert path in mounts, f"{path} is not mounted"
    assert (REPO / mounts[path]).is_file() and mounts[path].endswith(".jsonl.gz")


# Variables the code reads outside the settings class, and why they need no deployment entry.
OTHER_ENV_READS: dict[str, str] = {}


def test_the_code_reads_no_variable_the_deployments_do_not_know() -> None:
    """Besides the settings class, the services read only EARFUL_* settings (or variables listed
    in OTHER_ENV_READS with the reason), so compose and the ConfigMap configure everything."""
    pattern = re.compile(r"""os\.(?:environ\.get|getenv|environ\.setdefault)\(\s*["']([A-Za-z0-9_]+)["']|os\.environ\[\s*["']([A-Za-z0-9_]+)["']\s*\]""")
    found = set()
    for path in (REPO / "services").rglob("*.py"):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    unknown = {name for name in found if name not in all_settings() and name not in OTHER_ENV_READS}
    assert not unknown, f"variables read outside the settings class: {sorted(unknown)}"
