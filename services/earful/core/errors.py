"""One exception hierarchy for the whole project.

Every failure a service can meet has a class here and a short `kind`, which is also the label of
the failure metric and the `error_kind` of a dead letter, so logs, metrics and the DLQ agree.
"""

from __future__ import annotations


class EarfulError(Exception):
    """Base of every error Earful raises on purpose."""

    kind = "error"


class ConfigError(EarfulError):
    """A setting is missing or invalid; the process cannot start."""

    kind = "config_error"


class SchemaError(EarfulError):
    """An Avro schema file or the topic declaration is invalid."""

    kind = "schema_error"


class CodecError(EarfulError):
    """A value could not be encoded to or decoded from Avro."""

    kind = "codec_error"


class DecodeError(CodecError):
    """Bytes are not a valid Earful Avro record (bad framing, unknown schema, corrupt body)."""

    kind = "decode_error"


class EncodeError(CodecError):
    """A record does not fit its schema."""

    kind = "encode_error"


class RegistryError(CodecError):
    """The schema registry could not be reached or refused a request."""

    kind = "registry_error"


class ValidationError(EarfulError):
    """Input from outside (HTTP body, file) is invalid."""

    kind = "validation_error"


class QueryError(ValidationError):
    """A watchlist query that cannot be used, with the 0-based character position of the problem."""

    kind = "query_error"

    def __init__(self, message: str, position: int, query: str = "") -> None:
        self.message = message
        self.position = position
        self.query = query
        super().__init__(f"column {position + 1}: {message}")

    def pointer(self) -> str:
        """The query with a caret under the problem (for terminals)."""
        line = self.query.replace("\n", " ").replace("\t", " ")
        return f"  {line}\n  {' ' * self.position}^"


class BrokerError(EarfulError):
    """The Kafka broker could not be reached or refused a request."""

    kind = "broker_error"


class BackpressureError(BrokerError):
    """Too many mentions already wait for the broker's acknowledgement; retry later."""

    kind = "backpressure"


class SourceError(EarfulError):
    """A source (feed, stream, file) could not be read or sent something unusable."""

    kind = "source_error"

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # what the source asked for (HTTP Retry-After), 0 if nothing


class StorageError(EarfulError):
    """PostgreSQL could not be reached or refused a write."""

    kind = "storage_error"


class DeliveryError(EarfulError):
    """A webhook could not be delivered."""

    kind = "delivery_error"


class ProcessingError(EarfulError):
    """A record was decodable but could not be processed (e.g. a model failed on it)."""

    kind = "processing_error"
