"""Kafka security settings: the combinations refused at load, the client arguments they become, the
password never printed."""

from __future__ import annotations

import pytest

from earful.core.errors import ConfigError
from earful.core.kafka_security import client_kwargs, describe, faust_credentials
from earful.core.settings import Settings, load_settings

SASL = {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "earful", "kafka_sasl_password": "pw-123"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"kafka_security_protocol": "SASL_SSL"}, "SASL_SSL needs EARFUL_KAFKA_SASL_MECHANISM, EARFUL_KAFKA_SASL_USERNAME"),
    ({**SASL, "kafka_sasl_username": None}, "needs EARFUL_KAFKA_SASL_USERNAME"),
    ({**SASL, "kafka_sasl_password": ""}, "needs EARFUL_KAFKA_SASL_PASSWORD"),
    ({"kafka_sasl_mechanism": "PLAIN"}, "EARFUL_KAFKA_SASL_MECHANISM set but EARFUL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
    ({**SASL, "kafka_ssl_cafile": "/ca.pem"}, "EARFUL_KAFKA_SSL_CAFILE set but EARFUL_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k.pem"}, "EARFUL_KAFKA_SSL_KEYFILE needs EARFUL_KAFKA_SSL_CERTFILE"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_key_password": "x"}, "KEY_PASSWORD needs EARFUL_KAFKA_SSL_CERTFILE"),
    ({"kafka_security_protocol": "TLS"}, "EARFUL_KAFKA_SECURITY_PROTOCOL"),
    ({**SASL, "kafka_sasl_mechanism": "GSSAPI"}, "EARFUL_KAFKA_SASL_MECHANISM"),
])
def test_bad_combinations_are_config_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


def test_a_password_from_a_shared_secret_does_not_stop_a_plaintext_client() -> None:
    assert client_kwargs(Settings(kafka_sasl_password="x", kafka_ssl_key_password="y")) == {"security_protocol": "PLAINTEXT"}


def test_sasl_settings_become_client_arguments_and_faust_credentials() -> None:
    s = Settings(**SASL)
    assert client_kwargs(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                "sasl_plain_username": "earful", "sasl_plain_password": "pw-123"}
    creds = faust_credentials(s)
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(creds) == {**client_kwargs(s), "ssl_context": None}
    assert faust_credentials(Settings()) is None
    assert describe(s) == "SASL_PLAINTEXT, SCRAM-SHA-512 as 'earful'"


def test_the_password_is_masked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in SASL.items():
        monkeypatch.setenv(f"EARFUL_{name.upper()}", value)
    from earful.cli import main

    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "EARFUL_KAFKA_SASL_USERNAME=earful" in out and "pw-123" not in out
    assert "pw-123" not in repr(load_settings())
