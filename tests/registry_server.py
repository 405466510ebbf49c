"""A schema registry for tests: the subset of the Confluent Schema Registry REST API that clients
use to register, look up and fetch Avro schemas, over HTTP or HTTPS, in a thread.

No registry that implements this API installs from PyPI here (Confluent's and Apicurio's are Java,
Karapace is not published there), so tests run the real client (confluent-kafka's
SchemaRegistryClient, through earful.core.codec) against this server. It follows the documented API
(docs.confluent.io/platform/current/schema-registry/develop/api.html):

* ``POST /subjects/{subject}/versions`` registers ``{"schema", "schemaType"?, "references"?}`` and
  answers ``{"id"}``; the same schema gets the same id in every subject, registering it again is a
  no-op. Non-Avro or unparsable schemas: 422 with error_code 42201.
* ``POST /subjects/{subject}`` looks a schema up: ``{"subject", "id", "version", "schema"}``, or 404
  with error_code 40401 (no such subject) or 40403 (the subject has not got this schema).
* ``GET /schemas/ids/{id}``: ``{"schema"}`` (plus ``"schemaType"`` when not Avro), or 404 / 40403.
* ``GET /subjects`` and ``GET /subjects/{subject}/versions``: lists.
* With ``basic`` or ``bearer`` set, a request without those credentials gets 401 / 40101.
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

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class RegistryState:
    """What the registry holds; tests may read it or preload schemas (`preload`)."""

    basic: tuple[str, str] | None = None
    bearer: str | None = None
    failing: bool = False
    schemas: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> {"schema", "schemaType"?}
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids, one per version
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, path, headers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def preload(self, schema_id: int, schema: str, schema_type: str | None = None) -> None:
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


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if not self._admitted():
            return
        state, path = self.server.state, urlsplit(self.path).path
        if found := re.fullmatch(r"/schemas/ids/(\d+)", path):
            known = state.schemas.get(int(found[1]))
            if known is None:
                return self._answer(404, {"error_code": 40403, "message": f"Schema {found[1]} not found"})
            return self._answer(200, known)
        if path == "/subjects":
            return self._answer(200, sorted(state.subjects))
        if found := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            subject = unquote(found[1])
            if subject not in state.subjects:
                return self._answer(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
            return self._answer(200, list(range(1, len(state.subjects[subject]) + 1)))
        self._answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_POST(self) -> None:
        if not self._admitted():
            return
        state, path = self.server.state, urlsplit(self.path).path
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            schema = body["schema"]
        except (ValueError, KeyError, TypeError):
            return self._answer(422, {"error_code": 42201, "message": "Invalid schema"})
        if body.get("schemaType", "AVRO") != "AVRO" or not isinstance(_parsed(schema), (dict, list)):
            return self._answer(422, {"error_code": 42201, "message": "Invalid schema"})
        if found := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            return self._answer(200, {"id": state.register(unquote(found[1]), schema)})
        if found := re.fullmatch(r"/subjects/([^/]+)", path):
            subject = unquote(found[1])
            if subject not in state.subjects:
                return self._answer(404, {"error_code": 40401, "message": f"Subject '{subject}' not found."})
            schema_id = state.id_of(schema)
            if schema_id is None or schema_id not in state.subjects[subject]:
                return self._answer(404, {"error_code": 40403, "message": "Schema not found"})
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
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RegistryState, tls: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def url(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


@contextmanager
def running_registry(state: RegistryState | None = None, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, RegistryState]]:
    """A registry on 127.0.0.1 for the duration of the block: (its URL, its state)."""
    state = state or RegistryState()
    server = _Server(state, tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url, state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
