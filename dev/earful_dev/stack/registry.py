"""A small in-memory schema registry for the local stack: the subset of the Confluent Schema
Registry REST API that Earful's client (confluent-kafka's SchemaRegistryClient) and stock
consumers (confluent-kafka's AvroDeserializer, kcat builds with Avro support, other librdkafka
serdes) use, over HTTP or HTTPS, in a thread, on 127.0.0.1 only.

The local stack runs it so its topics carry the Confluent wire format (magic byte 0, 4-byte schema
id) that those tools decode. No registry that implements this API installs from PyPI or Debian
(Confluent's and Apicurio's are Java, Karapace is not published there). Schemas live as long as the
process, like the local broker's topics. It follows the documented API
(docs.confluent.io/platform/current/schema-registry/develop/api.html):

* ``POST /subjects/{subject}/versions`` registers ``{"schema", "schemaType"?, "references"?}`` and
  answers ``{"id"}``; the same schema gets the same id in every subject, registering it again is a
  no-op. Non-Avro or unparsable schemas: 422 with error_code 42201.
* ``POST /subjects/{subject}`` looks a schema up: ``{"subject", "id", "version", "schema"}``, or 404
  with error_code 40401 (no such subject) or 40403 (the subject has not got this schema).
* ``GET /schemas/ids/{id}``: ``{"schema"}`` (plus ``"schemaType"`` when not Avro), or 404 / 40403.
* ``GET /subjects`` and ``GET /subjects/{subject}/versions``: lists (404 / 40401 for a subject
  it does not have).
* ``GET /subjects/{subject}/versions/{version|latest}``: ``{"subject", "id", "version", "schema"}``,
  or 404 with 40401 (no such subject) or 40402 (no such version); a malformed version: 422 / 42202.
* With ``basic`` or ``bearer`` set, a request without those credentials gets 401 / 40101; with
  ``failing`` set every request gets 500 / 50001 (how clients meet an outage).
* Schemas compare by their parsed JSON (the real registry compares canonical forms).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202


@dataclass
class RegistryState:
    """What the registry holds and how it answers; callers may read it or preload schemas."""

    basic: tuple[str, str] | None = None
    bearer: str | None = None
    failing: bool = False
    schemas: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> {"schema", "schemaType"?}
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids, one per version
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, path, headers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def preload(self, schema_id: int, schema: str, schema_type: str | None = None) -> None:
        """Hold `schema` under `schema_id` without a subject (as a registry that others filled)."""
        self.schemas[schema_id] = {"schema": schema, **({"schemaType": schema_type} if schema_type else {})}

    def id_of(self, schema: str) -> int | None:
        wanted = _parsed(schema)
        for schema_id, known in self.schemas.items():
            if known.get("schemaType", "AVRO") == "AVRO" and _parsed(known["schema"]) == wanted:
                return schema_id
        return None

    def register(self, subject: str, schema: str) -> int:
        with self.lock:
            schema_id = self.id_of(schema)
            if schema_id is None:
                schema_id = max(self.schemas, default=0) + 1
                self.schemas[schema_id] = {"schema": schema}
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id


def _parsed(schema: str) -> Any:
    try:
        return json.loads(schema)
    except ValueError:
        return schema


def _subject_not_found(subject: str) -> dict[str, Any]:
    return {"error_code": SUBJECT_NOT_FOUND, "message": f"Subject '{subject}' not found."}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if not self._admitted():
            return
        state, path = self.server.state, urlsplit(self.path).path
        if found := re.fullmatch(r"/schemas/ids/(\d+)", path):
            known = state.schemas.get(int(found[1]))
            if known is None:
                return self._answer(404, {"error_code": SCHEMA_NOT_FOUND, "message": f"Schema {found[1]} not found"})
            return self._answer(200, known)
        if path == "/subjects":
            return self._answer(200, sorted(state.subjects))
        if found := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            subject = unquote(found[1])
            if subject not in state.subjects:
                return self._answer(404, _subject_not_found(subject))
            return self._answer(200, list(range(1, len(state.subjects[subject]) + 1)))
        if found := re.fullmatch(r"/subjects/([^/]+)/versions/([^/]+)", path):
            return self._version(unquote(found[1]), unquote(found[2]))
        self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def _version(self, subject: str, wanted: str) -> None:
        state = self.server.state
        if wanted != "latest" and not re.fullmatch(r"-1|[1-9]\d*", wanted):
            return self._answer(422, {"error_code": INVALID_VERSION, "message": f"The specified version '{wanted}' is not"
                                      " a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""})
        if subject not in state.subjects:
            return self._answer(404, _subject_not_found(subject))
        ids = state.subjects[subject]
        version = len(ids) if wanted in ("latest", "-1") else int(wanted)
        if not 1 <= version <= len(ids):
            return self._answer(404, {"error_code": VERSION_NOT_FOUND, "message": f"Version {wanted} not found."})
        schema_id = ids[version - 1]
        self._answer(200, {"subject": subject, "version": version, "id": schema_id, **state.schemas[schema_id]})

    def do_POST(self) -> None:
        if not self._admitted():
            return
        state, path = self.server.state, urlsplit(self.path).path
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            schema = body["schema"]
        except (ValueError, KeyError, TypeError):
            return self._answer(422, {"error_code": INVALID_SCHEMA, "message": "Invalid schema"})
        if body.get("schemaType", "AVRO") != "AVRO" or not isinstance(_parsed(schema), (dict, list)):
            return self._answer(422, {"error_code": INVALID_SCHEMA, "message": "Invalid schema"})
        if found := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            return self._answer(200, {"id": state.register(unquote(found[1]), schema)})
        if found := re.fullmatch(r"/subjects/([^/]+)", path):
            subject = unquote(found[1])
            if subject not in state.subjects:
                return self._answer(404, _subject_not_found(subject))
            schema_id = state.id_of(schema)
            if schema_id is None or schema_id not in state.subjects[subject]:
                return self._answer(404, {"error_code": SCHEMA_NOT_FOUND, "message": "Schema not found"})
            version = state.subjects[subject].index(schema_id) + 1
            return self._answer(200, {"subject": subject, "id": schema_id, "version": version, "schema": schema})
        self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def _admitted(self) -> bool:
        state = self.server.state
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers.items())))
        if state.failing:
            self._answer(500, {"error_code": 50001, "message": "Error in the backend data store"})
            return False
        given = self.headers.get("Authorization", "")
        if state.basic is not None:
            expected = "Basic " + base64.b64encode(":".join(state.basic).encode()).decode()
            if given != expected:
                self._answer(401, {"error_code": 40101, "message": "Unauthorized"})
                return False
        if state.bearer is not None and given != f"Bearer {state.bearer}":
            self._answer(401, {"error_code": 40101, "message": "Unauthorized"})
            return False
        return True

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RegistryState, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)  # the OS picks a free port: no race with a probe
        self.state = state
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


class LocalRegistry:
    """A running registry: `start` it, read `url`, `stop` it. Its thread is a daemon, so it ends
    with the process that started it, however that process ends."""

    def __init__(self, state: RegistryState | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.state = state or RegistryState()
        self._server = _Server(self.state, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="schema-registry", daemon=True)

    @classmethod
    def start(cls, state: RegistryState | None = None, tls: ssl.SSLContext | None = None) -> LocalRegistry:
        registry = cls(state, tls)
        registry._thread.start()
        return registry

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def running_registry(state: RegistryState | None = None, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, RegistryState]]:
    """A registry on 127.0.0.1 for the duration of the block: (its URL, its state)."""
    registry = LocalRegistry.start(state, tls)
    try:
        yield registry.url, registry.state
    finally:
        registry.stop()
