"""Avro codecs for every topic value.

Two wire formats, both standard so any Avro/Kafka tool can read our topics:

* **Confluent framing** (when a schema registry is configured): ``0x00`` + 4-byte big-endian
  schema id + Avro binary body. The writer's schema is fetched from the registry by id, through
  confluent-kafka's registry client (`HttpSchemaRegistry`); the framing and Avro stay ours.
* **Avro single-object encoding** (no registry): ``0xC3 0x01`` + 8-byte little-endian
  CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing Canonical Form + body. The
  writer schema is looked up by fingerprint among the current and historical schema files.

Decoders accept both, so a deployment can move from one to the other without a flag day.
Schemas live in ``schemas/*.avsc``; frozen earlier versions in ``schemas/history/<stem>/v<N>.avsc``.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import urlsplit

import fastavro
import fastavro.schema
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from earful.core.errors import ConfigError, DecodeError, EncodeError, RegistryError, SchemaError

if TYPE_CHECKING:
    from earful.core.settings import Settings

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

_RABIN_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_RABIN_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_RABIN_TABLE = _rabin_table()


def crc64_avro(data: bytes) -> int:
    """The 64-bit Rabin fingerprint the Avro specification defines (CRC-64-AVRO)."""
    fp = _RABIN_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _RABIN_TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class AvroSchema:
    """One parsed schema with the identities both wire formats need."""

    name: str
    path: Path
    raw: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: int

    @property
    def fingerprint_bytes(self) -> bytes:
        return self.fingerprint.to_bytes(8, "little")

    @property
    def version(self) -> int:
        """The schema_version default declared in the schema (1 for the first version)."""
        for f in self.raw.get("fields", []):
            if f["name"] == "schema_version":
                return int(f.get("default", 1))
        return 1

    @classmethod
    def from_file(cls, path: Path) -> AvroSchema:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(raw, path)
        except (OSError, ValueError) as exc:
            raise SchemaError(f"cannot load Avro schema {path}: {exc}") from exc

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path = Path("<inline>")) -> AvroSchema:
        try:
            parsed = fastavro.parse_schema(raw, named_schemas={})
            canonical = fastavro.schema.to_parsing_canonical_form(raw)
        except Exception as exc:  # fastavro raises several unrelated types
            raise SchemaError(f"invalid Avro schema {path}: {exc}") from exc
        name = fastavro.schema.fullname(raw) if isinstance(raw, dict) else str(raw)
        return cls(name, path, raw, parsed, canonical, crc64_avro(canonical.encode("utf-8")))


class SchemaStore:
    """The schema files of a `schemas/` folder: current versions plus frozen history."""

    def __init__(self, schema_dir: Path) -> None:
        if not schema_dir.is_dir():
            raise SchemaError(f"schema folder {schema_dir} does not exist (set EARFUL_SCHEMA_DIR)")
        self.schema_dir = schema_dir
        self._current: dict[str, AvroSchema] = {}
        self._by_fingerprint: dict[int, AvroSchema] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            schema = AvroSchema.from_file(path)
            self._current[path.stem] = schema
            self._by_fingerprint[schema.fingerprint] = schema
        for path in sorted(schema_dir.glob("history/*/v*.avsc")):
            schema = AvroSchema.from_file(path)
            self._by_fingerprint.setdefault(schema.fingerprint, schema)

    def current(self, stem: str) -> AvroSchema:
        """The current schema of `stem` (file name without .avsc)."""
        try:
            return self._current[stem.removesuffix(".avsc")]
        except KeyError as exc:
            raise SchemaError(f"no schema {stem!r} in {self.schema_dir}") from exc

    def stems(self) -> list[str]:
        return sorted(self._current)

    def history(self, stem: str) -> list[AvroSchema]:
        """Frozen versions of `stem`, oldest first."""
        paths = sorted(
            (self.schema_dir / "history" / stem).glob("v*.avsc"), key=lambda p: int(p.stem[1:])
        )
        return [AvroSchema.from_file(p) for p in paths]

    def by_fingerprint(self, fingerprint: int) -> AvroSchema | None:
        return self._by_fingerprint.get(fingerprint)


class SchemaRegistry(Protocol):
    """What the codec needs from a Confluent-compatible schema registry."""

    def id_for(self, subject: str, schema: AvroSchema) -> int: ...

    def schema_for(self, schema_id: int) -> AvroSchema:
        """DecodeError when no such schema exists, RegistryError when the registry cannot answer."""
        ...


class HttpSchemaRegistry:
    """A Confluent-compatible schema registry (Confluent, Karapace, Redpanda, Apicurio's ccompat API),
    spoken to through confluent-kafka's maintained `SchemaRegistryClient` (basic or bearer
    authentication, TLS with a private CA and client certificates, retries with backoff).

    Earful keeps its own framing and Avro code (fastavro); this class only maps subjects to ids
    and ids to writer schemas. Both look-ups are cached: an id never changes meaning, so each costs
    one request per process. Calls are synchronous because they happen once per schema, not per
    message. With `auto_register` false the schema must already be registered under its subject
    (`POST /subjects/{subject}` looks it up); production registries usually refuse writes from
    services, and a schema nobody registered is a deployment mistake to stop at, not to repair.
    """

    def __init__(
        self,
        url: str,
        timeout_s: float = 10.0,
        *,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        auto_register: bool = True,
    ) -> None:
        urls = [u.strip().rstrip("/") for u in url.split(",") if u.strip()]
        for one in urls:
            if urlsplit(one).username is not None or urlsplit(one).password is not None:
                raise ConfigError("the schema registry URL must not hold credentials: set EARFUL_SCHEMA_REGISTRY_USERNAME"
                                  " and EARFUL_SCHEMA_REGISTRY_PASSWORD (or EARFUL_SCHEMA_REGISTRY_BEARER_TOKEN)")
        self.url = ",".join(urls)
        self.auto_register = auto_register
        conf: dict[str, Any] = {"url": self.url, "timeout": timeout_s, **_RETRIES}
        if username is not None or password is not None:
            conf["basic.auth.user.info"] = f"{username or ''}:{password or ''}"
        if bearer_token is not None:
            # The client's static-token mode; the logical cluster header is Confluent Cloud's and empty elsewhere.
            conf.update({"bearer.auth.credentials.source": "STATIC_TOKEN", "bearer.auth.token": bearer_token,
                         "bearer.auth.logical.cluster": ""})
        if ca_file is not None:
            conf["ssl.ca.location"] = str(ca_file)
        if cert_file is not None:
            conf["ssl.certificate.location"] = str(cert_file)
        if key_file is not None:
            conf["ssl.key.location"] = str(key_file)
        try:
            self._client = SchemaRegistryClient(conf)
        except (ValueError, TypeError, OSError) as exc:  # bad combination, unreadable CA/cert/key (ssl.SSLError is an OSError)
            raise ConfigError(f"cannot set up the schema registry client for {self.url}: {exc}") from exc
        self._ids: dict[tuple[str, int], int] = {}
        self._schemas: dict[int, AvroSchema] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpSchemaRegistry | None:
        """The registry the settings describe (EARFUL_SCHEMA_REGISTRY_*); None without a URL."""
        if not settings.schema_registry_url:
            return None
        username = settings.schema_registry_username
        secret = settings.schema_registry_password if username is not None else None  # used only with a user name
        token = settings.schema_registry_bearer_token if username is None else None
        return cls(
            settings.schema_registry_url,
            username=username,
            password=secret.get_secret_value() if secret is not None else None,
            bearer_token=token.get_secret_value() if token is not None else None,
            ca_file=settings.schema_registry_ca_file,
            cert_file=settings.schema_registry_cert_file,
            key_file=settings.schema_registry_key_file,
            auto_register=settings.schema_registry_auto_register,
        )

    def close(self) -> None:
        self._client.close()

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        """The id of `schema` under `subject`: registered when auto-registering, else looked up. A
        subject or schema the registry does not have (auto-registration off) is a ConfigError naming
        the subject; an unreachable or failing registry a RegistryError."""
        key = (subject, schema.fingerprint)
        with self._lock:
            if key not in self._ids:
                wanted = Schema(json.dumps(schema.raw), "AVRO")
                try:
                    if self.auto_register:
                        self._ids[key] = int(self._client.register_schema(subject, wanted))
                    else:
                        found = self._client.lookup_schema(subject, wanted)
                        if found.schema_id is None:
                            raise RegistryError(f"schema registry {self.url} answered no id for subject {subject!r}")
                        self._ids[key] = int(found.schema_id)
                except SchemaRegistryError as exc:
                    if not self.auto_register and exc.http_status_code == 404 and exc.error_code in _NOT_REGISTERED:
                        raise ConfigError(
                            f"schema registry {self.url} has no subject {subject!r} with the schema of {schema.path.name}"
                            f" ({exc.error_message}); EARFUL_SCHEMA_REGISTRY_AUTO_REGISTER is false, so register it first"
                        ) from exc
                    raise RegistryError(f"schema registry {self.url} refused subject {subject!r}: {exc}") from exc
                except Exception as exc:  # transport errors of the client's HTTP library (connection, TLS, timeout)
                    raise RegistryError(f"schema registry {self.url} unreachable: {exc!r}") from exc
            return self._ids[key]

    def schema_for(self, schema_id: int) -> AvroSchema:
        """The writer schema behind `schema_id`. An id the registry does not know, or one naming a
        schema that is not Avro, is a DecodeError: the bytes are wrong, and asking again will not
        help. An unreachable or failing registry stays a RegistryError (transient: retry)."""
        with self._lock:
            if schema_id not in self._schemas:
                try:
                    found = self._client.get_schema(schema_id)
                except SchemaRegistryError as exc:
                    if exc.http_status_code == 404 and exc.error_code == _SCHEMA_NOT_FOUND:
                        raise DecodeError(f"schema registry {self.url} has no schema {schema_id}") from exc
                    raise RegistryError(f"schema registry {self.url} cannot give schema {schema_id}: {exc}") from exc
                except Exception as exc:  # as in id_for
                    raise RegistryError(f"schema registry {self.url} unreachable: {exc!r}") from exc
                if (found.schema_type or "AVRO") != "AVRO":
                    raise DecodeError(f"schema id {schema_id} is a {found.schema_type} schema, not Avro")
                try:
                    raw = json.loads(found.schema_str or "")
                except (TypeError, ValueError) as exc:
                    raise RegistryError(f"registry returned no usable schema for id {schema_id}") from exc
                try:
                    self._schemas[schema_id] = AvroSchema.from_dict(raw, Path(f"registry:{schema_id}"))
                except SchemaError as exc:
                    raise DecodeError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
            return self._schemas[schema_id]


# The Confluent API's error codes: 40401 subject not found, 40403 schema not found.
_SCHEMA_NOT_FOUND = 40403
_NOT_REGISTERED = frozenset({40401, _SCHEMA_NOT_FOUND})
# Few, short retries: callers retry a RegistryError themselves (it is transient), and a decode
# waiting on the registry holds up its partition.
_RETRIES = {"max.retries": 2, "retries.wait.ms": 200, "retries.max.wait.ms": 2000}


class AvroCodec:
    """Encodes and decodes one topic's values (one reader/writer schema)."""

    def __init__(
        self,
        schema: AvroSchema,
        store: SchemaStore,
        registry: SchemaRegistry | None = None,
        subject: str | None = None,
    ) -> None:
        self.schema = schema
        self.store = store
        self.registry = registry
        self.subject = subject or f"{schema.name}-value"
        self._header: bytes | None = None
        # fastavro writes any Python int into an Avro int/long as a varint of any length, which other
        # readers reject; full validation costs ~5x the write, so check only the numeric fields.
        self._check_ranges = _range_checker(schema.parsed) or (lambda value, path: None)
        if registry is not None and not getattr(registry, "auto_register", True):
            # Nothing registers for us: a subject missing from the registry stops the process at
            # start-up (ConfigError naming it) instead of at its first record.
            self.header()

    def header(self) -> bytes:
        """The framing prefix this codec writes (computed once; may register the schema)."""
        if self._header is None:
            if self.registry is not None:
                schema_id = self.registry.id_for(self.subject, self.schema)
                self._header = CONFLUENT_MAGIC + struct.pack(">I", schema_id)
            else:
                self._header = SINGLE_OBJECT_MAGIC + self.schema.fingerprint_bytes
        return self._header

    def encode(self, record: dict[str, Any]) -> bytes:
        """Record → framed Avro bytes; a record that does not fit the schema raises EncodeError."""
        buf = io.BytesIO()
        buf.write(self.header())
        try:
            self._check_ranges(record, "")
            fastavro.schemaless_writer(buf, self.schema.parsed, record, strict_allow_default=True)
        except Exception as exc:  # fastavro raises ValueError, TypeError, KeyError, AttributeError...
            raise EncodeError(f"record does not fit {self.schema.name}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Framed Avro bytes (either format) → record in the current schema's shape."""
        if not data:
            raise DecodeError("empty value: expected an Avro record")
        writer = self._writer_schema(data)
        body = io.BytesIO(data)
        body.seek(10 if data[:2] == SINGLE_OBJECT_MAGIC else 5)
        reader = None if writer.fingerprint == self.schema.fingerprint else self.schema.parsed
        try:
            record = fastavro.schemaless_reader(body, writer.parsed, reader)
        except Exception as exc:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, OverflowError...
            raise DecodeError(f"corrupt {writer.name} body: {_describe(exc)}") from exc
        if body.tell() != len(data):
            raise DecodeError(f"{len(data) - body.tell()} trailing bytes after the {writer.name} record")
        return cast(dict[str, Any], record)  # topic values are Avro records, which read as dicts

    def _writer_schema(self, data: bytes) -> AvroSchema:
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("truncated single-object header: need 10 bytes")
            fingerprint = int.from_bytes(data[2:10], "little")
            writer = self.store.by_fingerprint(fingerprint)
            if writer is None:
                raise DecodeError(f"unknown writer schema fingerprint {data[2:10].hex()}")
            return writer
        if data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError("truncated Confluent header: need 5 bytes")
            if self.registry is None:
                raise DecodeError("Confluent-framed value but no schema registry configured (EARFUL_SCHEMA_REGISTRY_URL)")
            # A registry outage raises RegistryError (transient: retry), not DecodeError (DLQ);
            # an id the registry does not know is a DecodeError.
            return self.registry.schema_for(struct.unpack(">I", data[1:5])[0])
        raise DecodeError(
            f"unknown framing byte 0x{data[0]:02x}: expected 0xc3 0x01 (Avro single-object) or 0x00 (Confluent)"
        )


def _describe(exc: Exception) -> str:
    """A short account of a body decoding failure. The repr of a UnicodeDecodeError holds the
    whole string it failed on, which an adversarial record makes megabytes long."""
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 in a string ({exc.reason} at byte {exc.start} of {len(exc.object)})"
    text = repr(exc)
    return text if len(text) <= 300 else text[:300] + "…"


class EmbeddingEncoder:
    """Encodes records of `outer` whose first two fields are an int and a record of `inner`'s schema
    (an enriched mention: `schema_version`, then the raw `mention`), copying the inner record's
    bytes as they arrived instead of encoding it a second time.

    Avro's binary form of a record is its fields' forms one after another, so the outer record is
    its header, the int, the inner body as received and the remaining fields. The copy is taken
    only when the received bytes were written with exactly the inner schema (same fingerprint) and
    the record still holds the very dict decoded from them; otherwise the record is encoded in full.
    Either way the bytes are identical (tested). On the enrichment worker the raw mention is about
    half of each enriched record, and encoding was the largest part of the event loop's work.
    """

    def __init__(self, outer: AvroCodec, inner: AvroCodec) -> None:
        self.outer = outer
        self._inner_header = SINGLE_OBJECT_MAGIC + inner.schema.fingerprint_bytes
        fields = outer.schema.raw.get("fields", [])
        if len(fields) < 2 or fields[0]["type"] not in ("int", "long") or not isinstance(fields[1]["type"], dict):
            raise SchemaError(f"{outer.schema.name} does not start with an int and a record field")
        self.version_field, self.inner_field = fields[0]["name"], fields[1]["name"]
        self._version_limits = _LIMITS[fields[0]["type"]]
        embedded = dict(fields[1]["type"])
        embedded.setdefault("namespace", outer.schema.raw.get("namespace"))
        if fastavro.schema.to_parsing_canonical_form(embedded) != inner.schema.canonical:
            raise SchemaError(f"{outer.schema.name}.{self.inner_field} is not {inner.schema.name} as in {inner.schema.path}")
        rest = {"type": "record", "name": f"{outer.schema.name}__rest", "fields": fields[2:]}
        if outer.schema.raw.get("namespace"):
            rest["namespace"] = outer.schema.raw["namespace"]
        self._rest = fastavro.parse_schema(rest, named_schemas={})
        check = _range_checker(self._rest)
        self._check_rest = check or (lambda value, path: None)

    def encode(self, record: dict[str, Any], inner_record: dict[str, Any], inner_bytes: bytes | None) -> bytes:
        """`record` as `outer.encode` would write it; `inner_bytes` are the framed bytes `inner_record`
        was decoded from (None: not known)."""
        # Only single-object bytes name their writer schema here; registry-framed ones are encoded.
        if (not inner_bytes or record.get(self.inner_field) is not inner_record
                or inner_bytes[:10] != self._inner_header):
            return self.outer.encode(record)
        body = memoryview(inner_bytes)[10:]
        buf = io.BytesIO()
        buf.write(self.outer.header())
        try:
            buf.write(_zigzag_varint(record[self.version_field], self._version_limits))
            rest = {k: v for k, v in record.items() if k != self.version_field and k != self.inner_field}
            self._check_rest(rest, "")
            buf.write(body)
            fastavro.schemaless_writer(buf, self._rest, rest, strict_allow_default=True)
        except Exception as exc:  # as in AvroCodec.encode
            raise EncodeError(f"record does not fit {self.outer.schema.name}: {exc}") from exc
        return buf.getvalue()


def _zigzag_varint(value: Any, limits: tuple[int, int]) -> bytes:
    """An Avro int/long as written on the wire (zig-zag, then base-128 varint)."""
    if not isinstance(value, int) or isinstance(value, bool) or not limits[0] <= value <= limits[1]:
        raise ValueError(f"{value!r} is not an Avro integer in [{limits[0]}, {limits[1]}]")
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_LIMITS = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
RangeCheck = Any  # Callable[[Any, str], None]


def _range_checker(schema: Any) -> RangeCheck | None:
    """A function raising ValueError for an out-of-range int/long anywhere in a value of `schema`
    (None when the schema holds no numbers to check). Built once per codec."""
    if isinstance(schema, str):
        if schema not in _LIMITS:
            return None
        low, high = _LIMITS[schema]

        def check_number(value: Any, path: str) -> None:
            if isinstance(value, int) and not isinstance(value, bool) and not low <= value <= high:
                raise ValueError(f"{path or 'value'}: {value} is out of range for an Avro {schema}")

        return check_number
    if isinstance(schema, list):  # union: check with the branches that hold numbers
        branches = [c for c in (_range_checker(b) for b in schema) if c is not None]
        if not branches:
            return None

        def check_union(value: Any, path: str) -> None:
            if value is not None:
                for branch in branches:
                    branch(value, path)

        return check_union
    kind = schema.get("type")
    if kind == "record":
        fields = [(f["name"], c) for f in schema["fields"] if (c := _range_checker(f["type"])) is not None]
        if not fields:
            return None

        def check_record(value: Any, path: str) -> None:
            if isinstance(value, dict):
                for name, check in fields:
                    check(value.get(name), f"{path}.{name}" if path else name)

        return check_record
    if kind in ("array", "map"):
        inner = _range_checker(schema["items" if kind == "array" else "values"])
        if inner is None:
            return None

        def check_items(value: Any, path: str) -> None:
            items = value.items() if isinstance(value, dict) else enumerate(value or ())
            for key, item in items:
                inner(item, f"{path}[{key}]")

        return check_items
    if isinstance(kind, (str, list, dict)) and kind not in ("enum", "fixed"):
        return _range_checker(kind)  # a primitive or logical type wrapped in a dict
    return None
