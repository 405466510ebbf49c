"""How every Kafka client of Earful authenticates and encrypts: one place from settings to clients.

The aiokafka producers, consumers and admin clients take `client_kwargs(settings)`; the Faust apps take
`faust_credentials(settings)`, which Faust turns into the same aiokafka arguments for its own
clients. A client that cannot connect (a wrong password, an untrusted certificate, TLS spoken to a
plaintext port) is started through `start_client`, which bounds the wait and turns the failure into
one BrokerError that names the broker, the protocol, the mechanism and the broker's reason:
aiokafka itself only says "Unable to bootstrap" (the reason goes to a log line), and a SCRAM
exchange the broker answers with an error surfaces as a bare KeyError.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn
from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr

from earful.core.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from earful.core.settings import Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
CONNECT_TIMEOUT_S = 20.0  # how long start_client waits for a client to connect before it gives up


def _given(value: object) -> bool:
    return value is not None and bool(value.get_secret_value() if isinstance(value, SecretStr) else str(value))


def security_problem(settings: Settings) -> str | None:
    """What is wrong with the Kafka security settings, in one sentence naming the variables; None when
    they fit together. A mechanism, user name or TLS file set beside a protocol that does not use it
    is refused rather than ignored (a forgotten EARFUL_KAFKA_SECURITY_PROTOCOL would otherwise go
    unnoticed); the two passwords are not, as deployments hand every pod the same optional Secret keys."""
    protocol = settings.kafka_security_protocol
    if protocol in SASL_PROTOCOLS:
        sasl = {"EARFUL_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
                "EARFUL_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
                "EARFUL_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password}
        missing = [name for name, value in sasl.items() if not _given(value)]
        if missing:
            return f"EARFUL_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}"
    else:
        stray = [name for name, value in (("EARFUL_KAFKA_SASL_MECHANISM", settings.kafka_sasl_mechanism),
                                          ("EARFUL_KAFKA_SASL_USERNAME", settings.kafka_sasl_username)) if value is not None]
        if stray:
            return (f"{', '.join(stray)} set but EARFUL_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL"
                    " (SASL_SSL or SASL_PLAINTEXT do)")
    if protocol not in TLS_PROTOCOLS:
        files = (("EARFUL_KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile), ("EARFUL_KAFKA_SSL_CERTFILE", settings.kafka_ssl_certfile),
                 ("EARFUL_KAFKA_SSL_KEYFILE", settings.kafka_ssl_keyfile))
        stray = [name for name, value in files if value is not None]
        if stray:
            return (f"{', '.join(stray)} set but EARFUL_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS"
                    " (SSL or SASL_SSL do)")
        return None
    if settings.kafka_ssl_keyfile is not None and settings.kafka_ssl_certfile is None:
        return "EARFUL_KAFKA_SSL_KEYFILE needs EARFUL_KAFKA_SSL_CERTFILE"
    if settings.kafka_ssl_key_password is not None and settings.kafka_ssl_certfile is None:
        return "EARFUL_KAFKA_SSL_KEY_PASSWORD needs EARFUL_KAFKA_SSL_CERTFILE"
    return None


def _readable(path: Path, variable: str) -> str:
    if not path.is_file():
        raise ConfigError(f"{variable}={path}: no such file")
    return str(path)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every Kafka connection (None without TLS): the CA bundle, the client
    certificate for mutual TLS, hostname checking as set. A missing file or a key that does not
    load is a ConfigError naming the variable, raised before any connection is tried."""
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return None
    cafile = _readable(settings.kafka_ssl_cafile, "EARFUL_KAFKA_SSL_CAFILE") if settings.kafka_ssl_cafile else None
    certfile = _readable(settings.kafka_ssl_certfile, "EARFUL_KAFKA_SSL_CERTFILE") if settings.kafka_ssl_certfile else None
    keyfile = _readable(settings.kafka_ssl_keyfile, "EARFUL_KAFKA_SSL_KEYFILE") if settings.kafka_ssl_keyfile else None
    password = settings.kafka_ssl_key_password.get_secret_value() if settings.kafka_ssl_key_password else None
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=cafile, certfile=certfile, keyfile=keyfile, password=password)
    except ssl.SSLError as exc:
        what = "EARFUL_KAFKA_SSL_CAFILE" if "verify" in str(exc).lower() or (cafile and not certfile) else (
            "EARFUL_KAFKA_SSL_CERTFILE/EARFUL_KAFKA_SSL_KEYFILE (or the key password)")
        raise ConfigError(f"cannot load the Kafka TLS files ({what}): {exc.reason or exc}") from exc
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """The security arguments of an aiokafka producer, consumer or admin client."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        assert settings.kafka_sasl_password is not None  # security_problem refuses SASL without it
        kwargs.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """`broker_credentials` of a Faust app: Faust hands them to every aiokafka client it makes
    (faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth); None for PLAINTEXT."""
    from faust.auth import SASLCredentials, SSLCredentials

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return SSLCredentials(context)
    assert settings.kafka_sasl_password is not None
    # SASLCredentials picks SASL_SSL when given a TLS context and SASL_PLAINTEXT when not.
    return SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password.get_secret_value(),
                           ssl_context=context, mechanism=settings.kafka_sasl_mechanism)


def describe(settings: Settings) -> str:
    """How the clients connect, for messages: `SASL_SSL, SCRAM-SHA-512 as 'earful'` (never the password)."""
    if settings.kafka_security_protocol in SASL_PROTOCOLS:
        return f"{settings.kafka_security_protocol}, {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
    if settings.kafka_security_protocol == "SSL" and settings.kafka_ssl_certfile:
        return "SSL with a client certificate"
    return settings.kafka_security_protocol


def bootstrap_hosts(settings: Settings) -> list[tuple[str, int]]:
    hosts = []
    for one in settings.kafka_bootstrap.split(","):
        host, _, port = one.strip().rpartition(":")
        hosts.append((host.strip("[]") or one.strip(), int(port) if port.isdigit() else 9092))
    return hosts


def _reason(exc: BaseException, settings: Settings) -> str:
    """The broker's or the TLS layer's reason for refusing a connection, in words."""
    # TLS first: a certificate verification error is also a ValueError.
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the broker's TLS certificate is not trusted ({exc.verify_message}; see EARFUL_KAFKA_SSL_CAFILE)"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, (kafka_errors.SaslAuthenticationFailed, kafka_errors.AuthenticationFailedError)):
        return f"authentication failed ({exc.args[0] if exc.args else exc})"
    if isinstance(exc, kafka_errors.UnsupportedSaslMechanismError):
        return f"the broker does not offer {settings.kafka_sasl_mechanism} ({exc.args[0] if exc.args else exc})"
    if isinstance(exc, (KeyError, ValueError)) and settings.kafka_security_protocol in SASL_PROTOCOLS:
        # aiokafka's SCRAM client fails this way when the broker answers with an error (e=...) instead of its signature.
        return "authentication failed (the broker refused the SCRAM exchange: wrong user name or password?)"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "no answer in time (TLS spoken to a plaintext port? check EARFUL_KAFKA_SECURITY_PROTOCOL)"
    if isinstance(exc, kafka_errors.KafkaConnectionError):
        hint = "does it expect another EARFUL_KAFKA_SECURITY_PROTOCOL or SASL mechanism"
        if settings.kafka_security_protocol in TLS_PROTOCOLS and settings.kafka_ssl_certfile is None:
            hint += ", or a client certificate (EARFUL_KAFKA_SSL_CERTFILE)"
        return f"the broker closed the connection ({exc}; {hint}?)"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


async def diagnose(settings: Settings, timeout_s: float = 10.0) -> tuple[str, str] | None:
    """Connect to each bootstrap broker once, as the clients do (TLS, then SASL): None when one
    accepts, else `(host:port, reason)` of the first refusal. A client's own start error says only
    that bootstrapping failed; this finds out why."""
    kwargs = client_kwargs(settings)
    first: tuple[str, str] | None = None
    for host, port in bootstrap_hosts(settings):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, client_id="earful-connection-check", request_timeout_ms=int(timeout_s * 1000),
                            **kwargs), timeout_s)
        except Exception as exc:  # every way a connection can fail is a reason to report
            first = first or (f"{host}:{port}", _reason(exc, settings))
            continue
        conn.close()
        return None
    return first


class _Startable(Protocol):
    async def start(self) -> None: ...


async def _close(client: Any) -> None:
    closer = getattr(client, "stop", None) or getattr(client, "close", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


async def start_client(client: _Startable, settings: Settings, what: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """`client.start()`, given at most `timeout_s`; on failure the client is closed and a BrokerError
    says in one line which broker refused, how the client connected and why, e.g.
    ``cannot reach Kafka at 10.0.0.5:9096 (SASL_SSL, SCRAM-SHA-512 as 'earful') with the ingest producer:
    authentication failed (...)``."""
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except Exception as exc:  # aiokafka raises KafkaError, OSError, TimeoutError and, from SCRAM, KeyError
        await _close(client)
        refusal = await diagnose(settings)
        # None: a broker accepts a connection, so the client failed after it: say how.
        address, reason = refusal or (settings.kafka_bootstrap, _reason(exc, settings))
        raise BrokerError(f"cannot reach Kafka at {address} ({describe(settings)}) with {what}: {reason}") from exc
