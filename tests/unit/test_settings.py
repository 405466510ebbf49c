"""Settings: defaults, EARFUL_* overrides, validation errors, secrets and the generated table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from earful.core.errors import ConfigError
from earful.core.settings import SERVICE_PORTS, Settings, load_settings, settings_markdown

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("EARFUL_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.schema_registry_url is None
    assert s.schema_dir == REPO / "schemas"
    assert (s.schema_dir / "topics.yaml").is_file()
    assert s.topic_replication_factor == 1
    assert s.topic_partitions is None
    assert s.kafka_idempotence is False
    assert s.database_url.get_secret_value() == "postgresql://postgres@127.0.0.1:5432/earful"
    assert s.http_host == "127.0.0.1"
    assert s.http_port is None
    assert (s.log_level, s.log_format) == ("INFO", "json")
    assert (s.ingest_max_batch, s.ingest_max_text_chars) == (1000, 20000)
    assert s.watchlists_dir == REPO / "services" / "earful" / "sample" / "watchlists"
    assert s.watchlists_seed_policy == "changed" and s.enrich_drop_unmatched is False
    assert s.webhook_urls == ()
    assert s.webhook_secret is None
    assert s.webhook_max_attempts == 8
    assert s.api_keys is None
    assert (s.alert_bucket_s, s.alert_baseline_buckets, s.alert_warmup_buckets) == (10, 60, 12)
    assert (s.alert_min_count, s.alert_min_ratio, s.alert_max_p_value, s.alert_resolve_buckets) == (3, 2.5, 1e-6, 3)
    assert (s.alert_min_z, s.alert_peak_half_life_s, s.alert_seasonal_weeks) == (6.0, 345600, 2)
    assert (s.alert_window_s, s.alert_window_medium_s, s.alert_window_long_s, s.alert_rate_half_life_s) == (60, 300, 900, 86400)
    assert s.alert_rule_packs is True and s.alert_source_health is True
    assert s.alert_default_rules == ("volume_spike", "negative_surge", "unanswered_question")
    assert s.alert_risk_tags == ("legal_privacy", "regulatory") and s.alert_group_by == ("watchlist",)
    assert (s.alert_group_wait_s, s.alert_group_interval_s, s.alert_repeat_interval_s) == (0.5, 60.0, 14400.0)
    assert s.alert_receivers_file is None and s.webhook_allowed_networks == ()


def test_alerting_lists_and_allowed_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARFUL_ALERT_DEFAULT_RULES", "volume_spike, risk_mention")
    monkeypatch.setenv("EARFUL_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,10.1.2.3/32,fd00::/8")
    s = load_settings()
    assert s.alert_default_rules == ("volume_spike", "risk_mention")
    assert s.webhook_allowed_networks == ("127.0.0.0/8", "10.1.2.3/32", "fd00::/8")
    monkeypatch.setenv("EARFUL_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,localhost")
    with pytest.raises(ConfigError, match=r"EARFUL_WEBHOOK_ALLOWED_NETWORKS.*'localhost' is not a CIDR network"):
        load_settings()


def test_request_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.http_max_body_bytes == 1024 * 1024 and s.http_allowed_hosts == ()
    assert s.alert_silence_max_days == 90
    monkeypatch.setenv("EARFUL_HTTP_ALLOWED_HOSTS", " storage , Dashboard.Example.com,,")
    monkeypatch.setenv("EARFUL_HTTP_MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("EARFUL_ALERT_SILENCE_MAX_DAYS", "7")
    s = load_settings()
    assert s.http_allowed_hosts == ("storage", "dashboard.example.com")
    assert (s.http_max_body_bytes, s.alert_silence_max_days) == (65536, 7)
    for var, bad in (("EARFUL_HTTP_ALLOWED_HOSTS", "storage:8083"), ("EARFUL_HTTP_ALLOWED_HOSTS", "http://storage"),
                     ("EARFUL_HTTP_MAX_BODY_BYTES", "10"), ("EARFUL_ALERT_SILENCE_MAX_DAYS", "0")):
        monkeypatch.setenv(var, bad)
        with pytest.raises(ConfigError, match=var):
            load_settings()
        monkeypatch.delenv(var)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception):
        s.kafka_bootstrap = "elsewhere:9092"  # type: ignore[misc]


ENV_OVERRIDES = [
    ("EARFUL_KAFKA_BOOTSTRAP", "kafka-0:9092,kafka-1:9092", "kafka_bootstrap", "kafka-0:9092,kafka-1:9092"),
    ("EARFUL_SCHEMA_REGISTRY_URL", "http://registry:8081", "schema_registry_url", "http://registry:8081"),
    ("EARFUL_SCHEMA_DIR", "/opt/earful/schemas", "schema_dir", Path("/opt/earful/schemas")),
    ("EARFUL_TOPIC_PARTITIONS", "2", "topic_partitions", 2),
    ("EARFUL_TOPIC_REPLICATION_FACTOR", "3", "topic_replication_factor", 3),
    ("EARFUL_KAFKA_IDEMPOTENCE", "true", "kafka_idempotence", True),
    ("EARFUL_KAFKA_SESSION_TIMEOUT_S", "10.5", "kafka_session_timeout_s", 10.5),
    ("EARFUL_HTTP_HOST", "0.0.0.0", "http_host", "0.0.0.0"),
    ("EARFUL_HTTP_PORT", "9000", "http_port", 9000),
    ("EARFUL_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("EARFUL_LOG_FORMAT", "text", "log_format", "text"),
    ("EARFUL_INGEST_MAX_BATCH", "50", "ingest_max_batch", 50),
    ("EARFUL_SPACY_MODEL", "en_core_web_md", "spacy_model", "en_core_web_md"),
    ("EARFUL_WATCHLISTS_DIR", "/etc/earful/watchlists", "watchlists_dir", Path("/etc/earful/watchlists")),
    ("EARFUL_WATCHLISTS_SEED_POLICY", "missing", "watchlists_seed_policy", "missing"),
    ("EARFUL_ENRICH_DROP_UNMATCHED", "true", "enrich_drop_unmatched", True),
    ("EARFUL_ALERT_MIN_RATIO", "2.5", "alert_min_ratio", 2.5),
    ("EARFUL_ALERT_MAX_P_VALUE", "1e-4", "alert_max_p_value", 1e-4),
    ("EARFUL_WEBHOOK_MAX_ATTEMPTS", "2", "webhook_max_attempts", 2),
    ("earful_storage_batch_size", "42", "storage_batch_size", 42),  # variable names are case-insensitive
]


@pytest.mark.parametrize("var,value,field,expected", ENV_OVERRIDES, ids=[e[0] for e in ENV_OVERRIDES])
def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str, expected: object) -> None:
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), field) == expected
    assert getattr(Settings(), field) == expected


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARFUL_HTTP_PORT", "9000")
    assert load_settings(http_port=9100).http_port == 9100


@pytest.mark.parametrize(
    "value,expected",
    [
        ("http://a.example/hook", ("http://a.example/hook",)),
        ("http://a.example/hook,https://b.example/x", ("http://a.example/hook", "https://b.example/x")),
        (" http://a.example/hook , ,https://b.example/x ,", ("http://a.example/hook", "https://b.example/x")),
        ("", ()),
    ],
    ids=["one", "two", "spaces-and-empties", "empty"],
)
def test_webhook_urls_are_a_comma_list(monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]) -> None:
    monkeypatch.setenv("EARFUL_WEBHOOK_URLS", value)
    assert load_settings().webhook_urls == expected


INVALID = [
    ("EARFUL_HTTP_PORT", "70000"),
    ("EARFUL_HTTP_PORT", "eighty"),
    ("EARFUL_LOG_LEVEL", "LOUD"),
    ("EARFUL_LOG_FORMAT", "xml"),
    ("EARFUL_ENRICH_BATCH_SIZE", "0"),
    ("EARFUL_KAFKA_SESSION_TIMEOUT_S", "-1"),
    ("EARFUL_KAFKA_IDEMPOTENCE", "maybe"),
    ("EARFUL_TOPIC_PARTITIONS", "0"),
    ("EARFUL_ALERT_MAX_P_VALUE", "1.5"),
    ("EARFUL_ALERT_BASELINE_BUCKETS", "2"),
    ("EARFUL_ALERT_MIN_RATIO", "0.5"),
    ("EARFUL_ALERT_FAST_WINDOW_S", "10"),  # not shorter than a bucket
    ("EARFUL_ALERT_FAST_MIN_EXPECTED", "0"),
]


@pytest.mark.parametrize("var,value", INVALID, ids=[f"{v}={x}" for v, x in INVALID])
def test_invalid_value_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert var in str(info.value)
    assert info.value.kind == "config_error"


def test_every_invalid_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARFUL_HTTP_PORT", "-5")
    monkeypatch.setenv("EARFUL_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "EARFUL_HTTP_PORT" in str(info.value) and "EARFUL_LOG_LEVEL" in str(info.value)


def test_invalid_keyword_override_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EARFUL_WEBHOOK_TIMEOUT_S"):
        load_settings(webhook_timeout_s=0)


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "EARFUL_DATABASE_URL": "postgresql://earful:hunter2-db@db.internal:5432/earful",
        "EARFUL_WEBHOOK_SECRET": "whsec-0123456789abcdef",
        "EARFUL_API_KEYS": "key-alpha-9f8e,key-beta-7d6c",
    }
    for var, value in secrets.items():
        monkeypatch.setenv(var, value)
    s = load_settings()
    for text in (repr(s), str(s)):
        for needle in ("hunter2-db", "whsec-0123456789abcdef", "key-alpha-9f8e", "key-beta-7d6c"):
            assert needle not in text
    assert isinstance(s.database_url, SecretStr) and isinstance(s.webhook_secret, SecretStr)
    assert s.database_url.get_secret_value() == secrets["EARFUL_DATABASE_URL"]
    assert s.webhook_secret.get_secret_value() == secrets["EARFUL_WEBHOOK_SECRET"]
    assert "**" in repr(s.webhook_secret)


@pytest.mark.parametrize("service,port", sorted(SERVICE_PORTS.items()))
def test_port_for_defaults(service: str, port: int) -> None:
    assert Settings().port_for(service) == port


def test_service_default_ports() -> None:
    assert SERVICE_PORTS == {"ingest": 8080, "enrichment": 8081, "alerting": 8082, "storage": 8083}


def test_port_for_uses_http_port_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARFUL_HTTP_PORT", "9100")
    s = load_settings()
    assert {svc: s.port_for(svc) for svc in SERVICE_PORTS} == dict.fromkeys(SERVICE_PORTS, 9100)
    assert load_settings(http_port=0).port_for("storage") == 0  # 0 = any free port, not "unset"


def test_port_for_unknown_service() -> None:
    with pytest.raises(KeyError):
        Settings().port_for("billing")


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, frozenset()),
        ("k1", frozenset({"k1"})),
        (" k1 , k2,,k1, ", frozenset({"k1", "k2"})),
        (" , ", frozenset()),
    ],
    ids=["unset", "one", "spaces-duplicates-empties", "only-separators"],
)
def test_api_key_set(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: frozenset[str]) -> None:
    if value is not None:
        monkeypatch.setenv("EARFUL_API_KEYS", value)
    assert load_settings().api_key_set() == expected


def test_settings_markdown_lists_every_field() -> None:
    table = settings_markdown()
    lines = table.splitlines()
    assert lines[0] == "| variable | default | description |"
    assert len(lines) == 2 + len(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert field.description and field.description.strip(), f"{name} has no description"
        (row,) = [line for line in lines if line.startswith(f"| `EARFUL_{name.upper()}` |")]
        assert field.description in row
    assert "| `EARFUL_KAFKA_BOOTSTRAP` | `127.0.0.1:9092` |" in table
    assert "| `EARFUL_WEBHOOK_URLS` | (none) |" in table
    assert "| `EARFUL_SCHEMA_REGISTRY_URL` | (none) |" in table


def test_settings_markdown_does_not_depend_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = settings_markdown()
    monkeypatch.setenv("EARFUL_KAFKA_BOOTSTRAP", "elsewhere:9092")
    monkeypatch.setenv("EARFUL_WEBHOOK_SECRET", "whsec-do-not-print")
    after = settings_markdown()
    assert after == before
    assert "whsec-do-not-print" not in after


@pytest.mark.parametrize("url", ["http://127.0.0.1:80a/hook", "ftp://example.com/x", "not a url", "https://"])
def test_malformed_webhook_urls_are_refused_at_start(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("EARFUL_WEBHOOK_URLS", f"http://ok.example/a,{url}")
    with pytest.raises(ConfigError, match="EARFUL_WEBHOOK_URLS"):
        load_settings()
