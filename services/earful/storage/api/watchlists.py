"""Watchlists as the query API sees them: the set in force, and which ids have endpoints.

The CRUD API of watchlists is the registry's router (earful.watchlists.registry), mounted on the
same app by the storage service next to these endpoints.
"""

from __future__ import annotations

from fastapi import HTTPException

from earful.storage.api.deps import ApiContext
from earful.storage.api.queries import WATCHLIST_HAS_DATA
from earful.watchlists import Watchlist


async def known_watchlist(ctx: ApiContext, watchlist_id: str) -> Watchlist | None:
    """The watchlist in force with this id (None when only stored data has it); a 404 when neither
    the watchlists nor the rollups know it."""
    configured = ctx.watchlists().watchlists.get(watchlist_id)
    if configured is not None:
        return configured
    if await ctx.pool.fetchval(WATCHLIST_HAS_DATA, watchlist_id):
        return None
    raise HTTPException(404, detail=f"watchlist_id: no watchlist {watchlist_id!r} is configured or has data")
