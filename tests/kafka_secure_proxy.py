"""A TLS- and SASL-terminating proxy in front of the local Tansu broker, for the Kafka security tests.

Tansu 0.6 (the local broker) can neither serve TLS (its `--cert` and `--key` options refuse to be
given together) nor complete a SASL exchange (with memory storage no user can be created once
`--authentication` is on, so every SCRAM exchange ends in `e=unknown-user`). Managed clusters
terminate both in the broker; this proxy terminates them in front of an unauthenticated Tansu, the way
a TLS load balancer or a Kafka-aware gateway does, so the clients' side is exercised for real:

* TLS: Python's ssl server with a certificate from a throwaway CA (`make_pki`); with `client_ca`
  it requires a client certificate signed by that CA (mutual TLS).
* SASL: the server side of SaslHandshake (v0/v1) and SaslAuthenticate (v0/v1) for PLAIN,
  SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802/7677), answering a bad user or proof with error 58
  (SASL_AUTHENTICATION_FAILED) and closing the connection, as Apache Kafka does. Any other request
  before authentication closes the connection. ApiVersions is answered by Tansu.

After the handshake every byte is relayed unchanged. Tansu must advertise the proxy's port
(`LocalBroker.start(advertised_port=...)`) so that every connection, not only the bootstrap one,
goes through the proxy.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import ssl
import struct
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SASL_HANDSHAKE, SASL_AUTHENTICATE, API_VERSIONS = 17, 36, 18
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE = 58, 33, 34
HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


# ---------------------------------------------------------------- a throwaway PKI


@dataclass(frozen=True)
class Pki:
    """PEM files of a test CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path  # the client key encrypted with `key_password`
    key_password: str
    other_ca: Path  # a CA that signed none of these


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(folder: Path) -> Pki:
    """Generate the CA and certificates with the openssl command line (valid for two days)."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=Earful test {ca}", cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN=earful-{who}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext", cwd=folder)
    password = secrets.token_hex(8)
    _openssl("pkcs8", "-topk8", "-in", "client.key", "-out", "client-encrypted.key", "-passout", f"pass:{password}",
             cwd=folder)
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "client.pem",
               folder / "client.key", folder / "client-encrypted.key", password, folder / "other-ca.pem")


# ---------------------------------------------------------------- the Kafka frames the proxy answers


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def _parse_request(frame: bytes) -> tuple[int, int, int, bytes]:
    """api_key, api_version, correlation_id and the body of a request with header v1 (client_id)."""
    api_key, api_version, correlation_id, client_id_len = struct.unpack(">hhih", frame[:10])
    return api_key, api_version, correlation_id, frame[10 + max(client_id_len, 0):]


def _handshake_response(correlation_id: int, error: int) -> bytes:
    mechanisms = b"".join(_string(m) for m in MECHANISMS)
    return _frame(struct.pack(">ihi", correlation_id, error, len(MECHANISMS)) + mechanisms)


def _authenticate_response(correlation_id: int, version: int, error: int, message: str | None, auth: bytes) -> bytes:
    body = struct.pack(">ih", correlation_id, error) + _string(message) + struct.pack(">i", len(auth)) + auth
    if version >= 1:
        body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
    return _frame(body)


class AuthFailed(Exception):
    pass


class _Scram:
    """The server side of one SCRAM exchange (RFC 5802), users' salted passwords made on the fly."""

    def __init__(self, mechanism: str, users: Mapping[str, str]) -> None:
        self.hash = HASHES[mechanism]
        self.users = users
        self.iterations = 4096
        self.salt = os.urandom(16)
        self.step = 0

    def _hmac(self, key: bytes, msg: bytes) -> bytes:
        return hmac.new(key, msg, self.hash).digest()

    def respond(self, message: bytes) -> tuple[bytes, bool]:
        """The server's reply and whether the exchange is complete; AuthFailed on a bad user or proof."""
        text = message.decode()
        if self.step == 0:
            if not text.startswith("n,,"):
                raise AuthFailed("channel binding is not supported")
            self.client_first_bare = text[3:]
            attrs = dict(part.split("=", 1) for part in self.client_first_bare.split(","))
            user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
            if user not in self.users:
                raise AuthFailed(f"unknown user {user!r}")
            self.salted = hashlib.pbkdf2_hmac(self.hash().name, self.users[user].encode(), self.salt, self.iterations)
            self.nonce = attrs["r"] + secrets.token_hex(12)
            self.server_first = f"r={self.nonce},s={base64.b64encode(self.salt).decode()},i={self.iterations}"
            self.step = 1
            return self.server_first.encode(), False
        attrs = dict(part.split("=", 1) for part in text.split(","))
        without_proof = text[: text.rindex(",p=")]
        if attrs.get("r") != self.nonce:
            raise AuthFailed("nonce mismatch")
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        client_key = self._hmac(self.salted, b"Client Key")
        client_signature = self._hmac(self.hash(client_key).digest(), auth_message)
        expected_proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
        if not hmac.compare_digest(base64.b64decode(attrs["p"]), expected_proof):
            raise AuthFailed("invalid credentials")
        server_signature = self._hmac(self._hmac(self.salted, b"Server Key"), auth_message)
        return f"v={base64.b64encode(server_signature).decode()}".encode(), True


def _plain(message: bytes, users: Mapping[str, str]) -> None:
    try:
        _authzid, user, password = message.decode().split("\0")
    except ValueError as exc:
        raise AuthFailed("malformed PLAIN message") from exc
    if not hmac.compare_digest(users.get(user, "\0unknown").encode(), password.encode()):
        raise AuthFailed("invalid credentials")


# ---------------------------------------------------------------- the proxy


class SecureProxy:
    """Listens on 127.0.0.1:`port` (TLS with `server_tls`, SASL with `users`) and relays to `upstream_port`.

    Runs its own event loop on a thread, so tests may block (waiting for a service process) while it
    serves. `authenticated` counts finished SASL exchanges per mechanism; `refused` counts refusals."""

    def __init__(self, port: int, upstream_port: int, *, server_tls: ssl.SSLContext | None = None,
                 users: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.server_tls = server_tls
        self.users = dict(users) if users is not None else None
        self.authenticated: dict[str, int] = {}
        self.refused = 0
        self.tls_connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-secure-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecureProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.server_tls), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                # Connections still open are the clients' to close; do not wait for them.
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.server_tls is not None:
            self.tls_connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            if self.users is not None and not await self._authenticate(reader, writer, up_reader, up_writer):
                return
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> bool:
        """Run the SASL exchange; True once authenticated, False after refusing (connection to close)."""
        assert self.users is not None
        mechanism: str | None = None
        scram: _Scram | None = None
        while True:
            frame = await _read_frame(reader)
            api_key, version, correlation_id, body = _parse_request(frame)
            if api_key == API_VERSIONS:
                up_writer.write(_frame(frame))
                await up_writer.drain()
                writer.write(_frame(await _read_frame(up_reader)))
                await writer.drain()
            elif api_key == SASL_HANDSHAKE:
                (length,) = struct.unpack(">h", body[:2])
                mechanism = body[2:2 + length].decode()
                ok = mechanism in MECHANISMS
                writer.write(_handshake_response(correlation_id, 0 if ok else UNSUPPORTED_SASL_MECHANISM))
                await writer.drain()
                if not ok:
                    return False
                scram = _Scram(mechanism, self.users) if mechanism in HASHES else None
            elif api_key == SASL_AUTHENTICATE and mechanism is not None:
                (length,) = struct.unpack(">i", body[:4])
                message = body[4:4 + length]
                try:
                    if scram is not None:
                        reply, done = scram.respond(message)
                    else:
                        _plain(message, self.users)
                        reply, done = b"", True
                except (AuthFailed, KeyError, ValueError) as exc:
                    self.refused += 1
                    writer.write(_authenticate_response(
                        correlation_id, version, SASL_AUTHENTICATION_FAILED,
                        f"Authentication failed during authentication due to invalid credentials with SASL mechanism"
                        f" {mechanism} ({exc})", b""))
                    await writer.drain()
                    return False
                writer.write(_authenticate_response(correlation_id, version, 0, None, reply))
                await writer.drain()
                if done:
                    self.authenticated[mechanism] = self.authenticated.get(mechanism, 0) + 1
                    return True
            else:  # Kafka closes a connection that skips authentication
                self.refused += 1
                return False


def server_tls(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    """The proxy's TLS context: the server certificate; with `require_client_cert`, mutual TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(pki.ca))
    return context
