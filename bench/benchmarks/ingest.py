"""`ingest`: the HTTP API as a process, producing to a local broker with acks=all."""

from __future__ import annotations

import asyncio
import json
import time

from benchmarks.common import Context, Result, median, sample_mentions, say, service_on_fresh_broker

NAME = "ingest"
KEYS = ("ingest_push_per_s",)
DESCRIPTION = "POST /v1/mentions on the ingest service process"

INGEST_BATCH = 100
INGEST_CLIENTS = 4
INGEST_RUNS = 3
INGEST_COPIES = 3  # the sample three times per run (~1 s), so one run is not all noise


async def _ingest_run(url: str, bodies: list[tuple[int, bytes]]) -> tuple[int, float]:
    import httpx

    pending = list(reversed(bodies))
    accepted = 0
    failures: list[str] = []
    headers = {"content-type": "application/json"}

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while pending:
            _count, body = pending.pop()
            resp = await client.post("/v1/mentions", content=body, headers=headers)
            if resp.status_code == 202:
                accepted += int(resp.json()["accepted"])
            else:
                failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")

    clients = [httpx.AsyncClient(base_url=url, timeout=60.0) for _ in range(INGEST_CLIENTS)]
    try:
        # One request per client first (not timed): connections open, the producer has metadata.
        first = json.dumps({"mentions": [json.loads(bodies[0][1])["mentions"][0]]}).encode()
        for client in clients:
            resp = await client.post("/v1/mentions", content=first, headers=headers)
            if resp.status_code != 202:
                raise RuntimeError(f"warm-up POST got HTTP {resp.status_code}: {resp.text[:300]}")
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in clients))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    if failures:
        raise RuntimeError(f"{len(failures)} batches not accepted, e.g. {failures[0]}")
    return accepted, elapsed


def run(ctx: Context) -> Result:
    mentions = sample_mentions()
    rates = []
    with service_on_fresh_broker(ctx, "ingest") as (svc, _):
        say(f"  {INGEST_COPIES} x {len(mentions)} mentions per run in POSTs of up to {INGEST_BATCH}, "
            f"{INGEST_CLIENTS} concurrent clients")
        for attempt in range(INGEST_RUNS):
            # New source ids each run and copy: a re-sent mention is a duplicate ingest does not produce again.
            varied = [dict(m, source_id=f"{m['source_id']}-run{attempt}-{copy}") for copy in range(INGEST_COPIES) for m in mentions]
            bodies = [(len(chunk), json.dumps({"mentions": chunk}, ensure_ascii=False).encode())
                      for chunk in (varied[i:i + INGEST_BATCH] for i in range(0, len(varied), INGEST_BATCH))]
            accepted, elapsed = asyncio.run(_ingest_run(svc.url, bodies))
            if accepted != len(varied):
                raise RuntimeError(f"run {attempt + 1}: {accepted} of {len(varied)} mentions accepted")
            rates.append(accepted / elapsed)
            say(f"  run {attempt + 1}/{INGEST_RUNS}: {accepted} accepted (202) in {elapsed:.2f}s = {rates[-1]:,.0f}/s")
    return Result({"ingest_push_per_s": round(median(rates), 1)}, {"ingest_push_per_s": len(rates)})
