"""`DELETE /v1/authors/{source}/{author}`: erase an author's data everywhere (see earful.storage.erasure)."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Depends
from fastapi import Path as PathParam

from earful.core.errors import ValidationError
from earful.storage.api.deps import SOURCE_PATTERN, bad_param, db_pool
from earful.storage.api.responses import ERRORS, iso
from earful.storage.erasure import erase_author

router = APIRouter()


@router.delete("/v1/authors/{source}/{author}", tags=["privacy"], responses=ERRORS,
               summary="Erase every mention by an author (handle or account id) everywhere, and record the erasure.")
async def erase(
    source: str = PathParam(..., pattern=SOURCE_PATTERN, description="Source, e.g. twitter."),
    author: str = PathParam(..., min_length=1, max_length=256, description="Handle (case-insensitive, @ optional) or account id."),
    pool: asyncpg.Pool = Depends(db_pool),
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        await conn.execute("SET statement_timeout = 0")  # a full scan of every partition may take a while
        try:
            result = await erase_author(conn, source, author, via="api")
        except ValidationError as exc:
            raise bad_param("path", "author" if str(exc).startswith("author") else "source", str(exc)) from exc
        finally:
            await conn.execute("RESET statement_timeout")
    return {"erasure_id": result.erasure_id, "source": result.source, "mentions_erased": result.mentions_erased,
            "requested_at": iso(result.requested_at)}
