"""The schema registry client (confluent-kafka's SchemaRegistryClient behind earful.core.codec)
against a server speaking the registry's REST API (tests/registry_server.py): authentication,
TLS with a private CA and client certificates, auto-registration on and off, and interoperability
of Earful's Confluent framing with confluent-kafka's own Avro deserializer (what stock tools read).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from earful.core.codec import CONFLUENT_MAGIC, AvroCodec, HttpSchemaRegistry, SchemaStore
from earful.core.errors import ConfigError, RegistryError
from earful.core.settings import load_settings
from earful.core.topics import CORRECTIONS, ENRICHED, RAW, load_topics
from tests.registry_server import RegistryState, running_registry
from tests.support import SCHEMAS, example

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(SCHEMAS)


def codec(store: SchemaStore, registry: HttpSchemaRegistry, topic: str = RAW) -> AvroCodec:
    spec = load_topics(SCHEMAS)[topic]
    assert spec.value_schema
    return AvroCodec(store.current(spec.value_schema), store, registry, f"{topic}-value")


RAW_RECORD = example("raw_mention/v2/01_twitter_complaint")


def test_basic_auth_round_trip_and_a_second_process_decodes(store: SchemaStore) -> None:
    with running_registry(RegistryState(basic=("earful", "s3cret:with-colon"))) as (url, state):
        writer = HttpSchemaRegistry(url, username="earful", password="s3cret:with-colon")
        data = codec(store, writer).encode(RAW_RECORD)
        assert data[:1] == CONFLUENT_MAGIC
        assert state.subjects == {f"{RAW}-value": [int.from_bytes(data[1:5], "big")]}
        reader = HttpSchemaRegistry(url, username="earful", password="s3cret:with-colon")  # fresh caches
        assert codec(store, reader).decode(data) == RAW_RECORD
        assert any(m == "GET" and p.startswith("/schemas/ids/") for m, p, _ in state.requests)

        wrong = HttpSchemaRegistry(url, username="earful", password="nope")
        with pytest.raises(RegistryError, match="Unauthorized"):
            codec(store, wrong).encode(RAW_RECORD)


def test_bearer_token(store: SchemaStore) -> None:
    with running_registry(RegistryState(bearer="tok-123")) as (url, state):
        data = codec(store, HttpSchemaRegistry(url, bearer_token="tok-123")).encode(RAW_RECORD)
        assert codec(store, HttpSchemaRegistry(url, bearer_token="tok-123")).decode(data) == RAW_RECORD
        assert all(h.get("Authorization") == "Bearer tok-123" for _, _, h in state.requests)
        with pytest.raises(RegistryError, match="Unauthorized"):
            codec(store, HttpSchemaRegistry(url, bearer_token="other")).encode(RAW_RECORD)


def test_without_auto_registration_a_missing_subject_is_a_config_error_naming_it(store: SchemaStore) -> None:
    with running_registry() as (url, state):
        lookup_only = HttpSchemaRegistry(url, auto_register=False)
        with pytest.raises(ConfigError, match=rf"no subject '{RAW}-value'.*AUTO_REGISTER is false"):
            codec(store, lookup_only)  # checked when the codec is built, i.e. at start-up
        assert not state.subjects  # and nothing was registered

        registered = codec(store, HttpSchemaRegistry(url)).encode(RAW_RECORD)  # an operator registers it
        looked_up = codec(store, HttpSchemaRegistry(url, auto_register=False)).encode(RAW_RECORD)
        assert looked_up == registered
        assert [p for m, p, _ in state.requests if m == "POST"][-1].startswith(f"/subjects/{RAW}-value?")

        # The subject exists but holds another schema: still missing, still named.
        state.register(f"{ENRICHED}-value", json.dumps(store.current("raw_mention").raw))
        with pytest.raises(ConfigError, match=rf"no subject '{ENRICHED}-value'"):
            codec(store, HttpSchemaRegistry(url, auto_register=False), ENRICHED)


def test_an_unreachable_registry_is_a_registry_error(store: SchemaStore) -> None:
    with running_registry() as (url, _):
        pass  # stopped: nothing listens there now
    with pytest.raises(RegistryError, match="unreachable"):
        codec(store, HttpSchemaRegistry(url, timeout_s=2.0)).encode(RAW_RECORD)


def test_stock_confluent_deserializer_reads_earful_records(store: SchemaStore) -> None:
    """What `kcat -s value=avro -r URL` and other Confluent-framing tools do: read the schema id,
    fetch the writer schema from the registry, decode the body."""
    correction = example("correction/v1/01_sentiment_corrected")
    with running_registry() as (url, _):
        registry = HttpSchemaRegistry(url)
        for topic, record in ((RAW, RAW_RECORD), (CORRECTIONS, correction)):
            data = codec(store, registry, topic).encode(record)
            stock = AvroDeserializer(SchemaRegistryClient({"url": url}))
            assert stock(data, SerializationContext(topic, MessageField.VALUE)) == record


# --------------------------------------------------------------------------- TLS


def _cert(subject: str, key: Any, issuer: x509.Certificate | None, issuer_key: Any, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: Any | None = None) -> Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(data)
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("earful test CA", ca_key, None, ca_key, ca=True)
    return {"ca": _write(folder / "ca.pem", ca),
            "server": _write(folder / "server.pem", _cert("registry", server_key, ca, ca_key, ca=False), server_key),
            "client": _write(folder / "client.pem", _cert("earful", client_key, ca, ca_key, ca=False), client_key)}


@pytest.fixture()
def mutual_tls_registry(pki: dict[str, Path]) -> Iterator[tuple[str, RegistryState]]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki["server"], pki["server"].with_suffix(".key"))
    tls.load_verify_locations(pki["ca"])
    tls.verify_mode = ssl.CERT_REQUIRED  # clients must show a certificate of the CA
    with running_registry(tls=tls) as running:
        yield running


def test_tls_with_a_private_ca_and_a_client_certificate(store: SchemaStore, pki: dict[str, Path],
                                                         mutual_tls_registry: tuple[str, RegistryState]) -> None:
    url, state = mutual_tls_registry
    assert url.startswith("https://")
    registry = HttpSchemaRegistry(url, ca_file=pki["ca"], cert_file=pki["client"], key_file=pki["client"].with_suffix(".key"))
    data = codec(store, registry).encode(RAW_RECORD)
    assert codec(store, registry).decode(data) == RAW_RECORD
    assert state.subjects

    no_client_cert = HttpSchemaRegistry(url, ca_file=pki["ca"], timeout_s=2.0)
    with pytest.raises(RegistryError, match="unreachable"):
        codec(store, no_client_cert, ENRICHED).encode(example("enriched_mention/v2/01_english_complaint"))
    public_cas_only = HttpSchemaRegistry(url, cert_file=pki["client"], key_file=pki["client"].with_suffix(".key"), timeout_s=2.0)
    with pytest.raises(RegistryError, match="unreachable"):  # the server's certificate is not trusted
        codec(store, public_cas_only, ENRICHED).encode(example("enriched_mention/v2/01_english_complaint"))


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot set up the schema registry client"):
        HttpSchemaRegistry("https://127.0.0.1:1", ca_file=tmp_path / "missing.pem")


# --------------------------------------------------------------------------- settings


def test_from_settings_passes_credentials_tls_and_auto_registration(store: SchemaStore, pki: dict[str, Path]) -> None:
    with running_registry(RegistryState(basic=("svc", "pw"))) as (url, _):
        settings = load_settings(schema_registry_url=url, schema_registry_username="svc", schema_registry_password="pw",
                                 schema_registry_ca_file=pki["ca"], schema_registry_auto_register=False)
        registry = HttpSchemaRegistry.from_settings(settings)
        assert registry is not None and registry.auto_register is False
        with pytest.raises(ConfigError, match="no subject"):  # authenticated (not a 401), then missing
            codec(store, registry)
    assert HttpSchemaRegistry.from_settings(load_settings()) is None


@pytest.mark.parametrize("env,fragment", [
    ({"EARFUL_SCHEMA_REGISTRY_URL": "https://svc:hunter2@registry:8081"}, "credentials in the URL are not accepted"),
    ({"EARFUL_SCHEMA_REGISTRY_URL": "http://a:8081,https://svc:hunter2@b:8081"}, "credentials in the URL are not accepted"),
    ({"EARFUL_SCHEMA_REGISTRY_URL": "registry:8081"}, "is not an http(s) URL"),
    ({"EARFUL_SCHEMA_REGISTRY_USERNAME": "svc"}, "needs EARFUL_SCHEMA_REGISTRY_PASSWORD"),
    ({"EARFUL_SCHEMA_REGISTRY_USERNAME": "svc", "EARFUL_SCHEMA_REGISTRY_PASSWORD": "hunter2",
      "EARFUL_SCHEMA_REGISTRY_BEARER_TOKEN": "t"}, "not both"),
    ({"EARFUL_SCHEMA_REGISTRY_KEY_FILE": "/k.pem"}, "needs EARFUL_SCHEMA_REGISTRY_CERT_FILE"),
])
def test_bad_registry_settings_are_refused_without_echoing_secrets(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                                   fragment: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)
    assert "hunter2" not in str(info.value)


def test_earful_settings_never_prints_registry_secrets() -> None:
    env = {**os.environ, "EARFUL_SCHEMA_REGISTRY_URL": "https://registry:8081", "EARFUL_SCHEMA_REGISTRY_USERNAME": "svc",
           "EARFUL_SCHEMA_REGISTRY_PASSWORD": "hunter2-password", "EARFUL_SCHEMA_REGISTRY_AUTO_REGISTER": "false"}
    out = subprocess.run([str(Path(sys.executable).with_name("earful")), "settings"], env=env, capture_output=True, text=True,
                         timeout=120, cwd=ROOT, check=True).stdout
    assert "https://registry:8081" in out and "svc" in out
    assert "hunter2-password" not in out
