"""`DELETE /v1/authors/{source}/{author}`: erase an author's data everywhere (see earful.storage.erasure).

Needs the `admin` scope. The audit log names the erasure by its source and the author's hash
(never the handle, which the erasure removes everywhere else), and by the erasure id once done.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam

from earful.core.auth import AuditedRoute, Scope, requires
from earful.core.errors import ValidationError
from earful.storage.api.deps import SOURCE_PATTERN, bad_param, db_pool
from earful.storage.api.responses import ERRORS, iso
from earful.storage.erasure import erase_author
from earful.storage.writer import author_hash

router = APIRouter(route_class=AuditedRoute)


def erasure_target(request: Request) -> str:
    """What the audit log records as erased: the source and the author's hash, as the erasures table does."""
    source = str(request.path_params.get("source", ""))
    author = str(request.path_params.get("author", "")).lower()
    return f"{source}/author-hash:{author_hash(source, author)[:16]}"


@router.delete("/v1/authors/{source}/{author}", tags=["privacy"], responses=ERRORS, operation_id="eraseAuthor",
               dependencies=[requires(Scope.ADMIN, target=erasure_target)],
               summary="Erase every mention by an author (handle or account id) everywhere, and record the erasure.")
async def erase(
    request: Request,
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
    request.state.audit_target = f"{erasure_target(request)} erasure:{result.erasure_id}"
    return {"erasure_id": result.erasure_id, "source": result.source, "mentions_erased": result.mentions_erased,
            "requested_at": iso(result.requested_at)}
