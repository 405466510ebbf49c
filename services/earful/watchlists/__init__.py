"""Watchlists: what each team listens for, in a boolean query language, applied live.

* `model`: the Watchlist (query, handles, alert rules, SLA, labels) and its validation;
* `packs`: the alert rules each kind of watchlist runs by default (rule packs), merged with its own;
* `query`: the query language (parse with positions in errors, compile, evaluate);
* `text`: the tokenizer shared by texts and queries;
* `matcher`: `WatchlistSet`, an immutable compiled set with an inverted-index prefilter;
* `files`: the YAML seed folder and the write-back of API changes;
* `live`: `WatchlistStore`, the live set every service holds, fed by `earful.watchlists.v1`;
* `registry`: publishing to that topic and the CRUD HTTP API (mounted on the storage service).
"""

from earful.watchlists.matcher import MATCHER_VERSION, Match, WatchlistSet, WatchlistSource
from earful.watchlists.model import (
    ID_PATTERN,
    KINDS,
    RULES,
    AlertRule,
    QuietHours,
    Watchlist,
    WatchlistSpec,
    parse_watchlist,
    terms_query,
)
from earful.watchlists.packs import RULE_PACKS, pack_rules
from earful.watchlists.query import QueryError, compile_query

__all__ = [
    "ID_PATTERN", "KINDS", "MATCHER_VERSION", "RULES", "RULE_PACKS", "AlertRule", "Match", "QueryError", "QuietHours", "Watchlist",
    "WatchlistSet", "WatchlistSource", "WatchlistSpec", "compile_query", "pack_rules", "parse_watchlist",
    "terms_query",
]
