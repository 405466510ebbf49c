"""The ingest HTTP API: validate, assign ids, produce with acks=all, answer 202 after the ack."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram

from earful.core.codec import AvroCodec
from earful.core.errors import BrokerError, EncodeError
from earful.core.health import Health
from earful.core.http import add_ops_routes
from earful.core.kafka import utc_now
from earful.core.metrics import ERRORS, LATENCY_BUCKETS
from earful.core.settings import Settings
from earful.core.topics import RAW
from earful.ingest.model import MentionBatch, check_limits, format_problems, to_record

log = logging.getLogger(__name__)

ACCEPTED = Counter("earful_ingest_mentions_total", "Mentions accepted (acknowledged by the broker), by source.", ["source"])
REJECTED = Counter("earful_ingest_rejected_requests_total", "Requests refused, by reason.", ["reason"])
PUBLISH_SECONDS = Histogram(
    "earful_ingest_publish_seconds", "Time from request to broker acknowledgement of the whole batch.", buckets=LATENCY_BUCKETS
)


class Publisher:
    """Produces raw mentions and returns only once the broker acknowledged every one of them."""

    def __init__(self, producer: AIOKafkaProducer, codec: AvroCodec, timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.codec = codec
        self.timeout_s = timeout_s

    async def publish(self, records: list[dict[str, Any]]) -> None:
        try:
            payloads = [(r["mention_id"].encode(), self.codec.encode(r)) for r in records]
        except EncodeError:
            ERRORS.labels("ingest", EncodeError.kind).inc()
            raise
        async def send_all() -> None:
            # send() itself may wait for metadata when the broker is away, so the deadline covers it too.
            futures = [await self.producer.send(RAW, value, key=key) for key, value in payloads]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self.timeout_s)
        except (KafkaError, asyncio.TimeoutError) as exc:
            ERRORS.labels("ingest", BrokerError.kind).inc()
            raise BrokerError(f"broker did not acknowledge the batch: {exc!r}") from exc


def build_app(settings: Settings, publisher: Publisher, health: Health) -> FastAPI:
    """The ingest FastAPI app (its OpenAPI document is served at /openapi.json)."""
    app = FastAPI(
        title="Earful ingest",
        version="1",
        description="Push mentions into Earful. A 202 means every mention in the batch is durably in Kafka.",
    )
    add_ops_routes(app, health)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            REJECTED.labels("bad_json").inc()
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            return JSONResponse(
                {"error": "request body is not valid JSON", "problems": [{"path": "(body)", "message": str(detail.get("ctx", {}).get("error", detail["msg"]))}]},
                status_code=400,
            )
        REJECTED.labels("invalid").inc()
        return JSONResponse({"error": "invalid mentions", "problems": format_problems(errors)}, status_code=422)

    @app.post(
        "/v1/mentions",
        status_code=202,
        summary="Accept a batch of mentions.",
        responses={400: {"description": "Body is not JSON"}, 422: {"description": "Invalid mentions (each problem named by path)"},
                   503: {"description": "Kafka unavailable; retry later"}},
    )
    async def post_mentions(batch: MentionBatch) -> JSONResponse:
        started = time.perf_counter()
        now = utc_now()
        problems = check_limits(batch, settings.ingest_max_batch, settings.ingest_max_text_chars, now)
        if problems:
            REJECTED.labels("limits").inc()
            status = 413 if problems[0]["path"] == "mentions" else 422
            return JSONResponse({"error": "invalid mentions", "problems": problems}, status_code=status)
        records = [to_record(m, now) for m in batch.mentions]
        try:
            await publisher.publish(records)
        except EncodeError as exc:  # validation should have caught it; still a client problem, not a 500
            REJECTED.labels("invalid").inc()
            return JSONResponse({"error": "invalid mentions", "problems": [{"path": "mentions", "message": str(exc)}]},
                                status_code=422)
        except BrokerError as exc:
            REJECTED.labels("broker_unavailable").inc()
            log.error("publish failed", extra={"error": str(exc), "count": len(records)})
            return JSONResponse({"error": "Kafka is unavailable; nothing was accepted, retry later"}, status_code=503,
                                headers={"Retry-After": "5"})
        for r in records:
            ACCEPTED.labels(r["source"]).inc()
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        return JSONResponse(
            {"accepted": len(records), "mention_ids": [r["mention_id"] for r in records],
             "received_at": now.isoformat().replace("+00:00", "Z")},
            status_code=202,
        )

    return app
