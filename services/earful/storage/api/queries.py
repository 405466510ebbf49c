"""The SQL of the query API, as pure functions returning ``(sql, args)``.

SQL text is assembled only from fixed fragments chosen by which filters are present; every value
travels as a positional bind parameter, so no input can reach SQL as text, and each statement can
be checked without a database. Aggregates read the rollup tables (see migration 003), never a scan
of the mentions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

Sql = tuple[str, list[Any]]

ORIGIN = datetime(2000, 1, 3, tzinfo=timezone.utc)  # a Monday: weekly buckets start on Mondays
MINUTE, HOUR, DAY = 60, 3600, 86400

# Every text-search configuration of migration 002's earful_text_search_config; a query without a
# language filter is stemmed in each of them and the alternatives OR-ed.
TEXT_SEARCH_CONFIGS = (
    "arabic", "armenian", "basque", "catalan", "danish", "dutch", "english", "finnish", "french", "german", "greek",
    "hindi", "hungarian", "indonesian", "irish", "italian", "lithuanian", "nepali", "norwegian", "portuguese",
    "romanian", "russian", "serbian", "spanish", "swedish", "tamil", "turkish", "yiddish", "simple",
)

MENTION_FIELDS = (
    "mention_id", "source", "source_id", "url", "author_id", "author_handle", "author_name", "author_followers",
    "text", "title", "country", "connector", "lang", "lang_confidence", "declared_lang", "created_at", "received_at",
    "in_reply_to", "reposted_from", "likes", "reposts", "replies", "engagement_observed_at", "sentiment",
    "sentiment_score", "sentiment_reason", "watchlist_ids", "entities", "risks", "matches", "owned_watchlist_ids",
)
#: The keyset of each mention order (ties broken by mention_id).
MENTION_SORT_KEYS = {"time": "m.created_at", "reach": "coalesce(m.author_followers, 0)"}


class Params:
    """Positional bind parameters for a query being assembled from fixed fragments."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _where(conditions: Sequence[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


# --- time buckets -----------------------------------------------------------------------------


def floor_to(ts: datetime, step: int) -> datetime:
    """`ts` rounded down to a multiple of `step` seconds since ORIGIN."""
    seconds = (ts - ORIGIN).total_seconds()
    return ORIGIN + timedelta(seconds=(seconds // step) * step)


def ceil_to(ts: datetime, step: int) -> datetime:
    """`ts` rounded up to a multiple of `step` seconds since ORIGIN."""
    floor = floor_to(ts, step)
    return floor if floor == ts else floor + timedelta(seconds=step)


def rollup_parts(lo: datetime, hi: datetime, family: str = "mention_rollups") -> list[tuple[str, datetime, datetime]]:
    """Cover the minute-aligned [lo, hi) with the coarsest rollup tables of `family`: whole days from
    the day table, whole hours of the ragged ends from the hour table, the remaining minutes from the minute one."""
    parts: list[tuple[str, datetime, datetime]] = []

    def split(a: datetime, b: datetime, step: int, table: str) -> list[tuple[datetime, datetime]]:
        c_lo, c_hi = ceil_to(a, step), floor_to(b, step)
        if c_lo < c_hi:
            parts.append((table, c_lo, c_hi))
            return [(a, c_lo), (c_hi, b)]
        return [(a, b)]

    for a, b in split(lo, hi, DAY, f"{family}_day"):
        for x, y in split(a, b, HOUR, f"{family}_hour") if a < b else []:
            if x < y:
                parts.append((f"{family}_minute", x, y))
    return parts


def rollup_table(step: int) -> str:
    """The finest mention rollup a series of `step`-second buckets can be summed from."""
    return "mention_rollups_minute" if step < HOUR else "mention_rollups_hour" if step < DAY else "mention_rollups_day"


# --- full-text search -------------------------------------------------------------------------


def tsquery_sql(q_param: str, lang_param: str | None) -> str:
    """The tsquery of a search: `q` parsed in the filter language's configuration; without a
    language filter the parameter already holds the query of every configuration (any_language_tsquery)."""
    if lang_param is not None:
        return f"websearch_to_tsquery(earful_text_search_config({lang_param}), {q_param})"
    return f"{q_param}::tsquery"


def language_alternatives(q: str) -> Sql:
    """The distinct non-empty tsqueries of `q` in every text-search configuration, sorted."""
    sql = ("SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{}') FROM ("
           " SELECT websearch_to_tsquery(c::regconfig, $1)::text AS t FROM unnest($2::text[]) AS c) x WHERE t <> ''")
    return sql, [q, [f"pg_catalog.{c}" for c in TEXT_SEARCH_CONFIGS]]


def any_of(alternatives: Sequence[str]) -> str:
    """The tsquery matching any of `alternatives` ('' for none)."""
    return " | ".join(f"( {a} )" for a in alternatives)


# --- mentions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MentionFilter:
    """What a mention search keeps; `tsquery` is a parsed query (the raw text when `lang` is set)."""

    watchlist: str | None = None
    entity: str | None = None
    risk: str | None = None
    from_: datetime | None = None
    to: datetime | None = None
    lang: str | None = None
    source: str | None = None
    sentiment: str | None = None
    tsquery: str | None = None
    owned: str = "any"  # any | true (only owned: by the brand's own accounts) | false (only earned)


def owned_condition(owned: str, watchlist: str | None, p: Params) -> str | None:
    """The condition keeping owned (`true`) or earned (`false`) mentions: of `watchlist` when given,
    else owned for any watchlist / for none; None for `any`."""
    if owned == "any":
        return None
    if watchlist:
        return f"{p(watchlist)} {'= ANY' if owned == 'true' else '<> ALL'}(m.owned_watchlist_ids)"
    return f"cardinality(m.owned_watchlist_ids) {'>' if owned == 'true' else '='} 0"


def mention_search(f: MentionFilter, sort: str, after: tuple[Any, Any] | None, limit: int) -> Sql:
    """One page (plus one row, to tell whether there is more) of mentions, newest or largest reach
    first; `after` is the (sort key, mention_id) of the previous page's last row."""
    p = Params()
    where: list[str] = []
    facets = [f"w:{f.watchlist}"] if f.watchlist else []
    if f.entity:
        facets.append(f"e:{f.entity.strip().lower()}")
    if f.risk:
        facets.append(f"r:{f.risk}")
    if facets:
        where.append(f"m.facets @> {p(facets)}::text[]")
    if f.from_:
        where.append(f"m.created_at >= {p(f.from_)}")
    if f.to:
        where.append(f"m.created_at < {p(f.to)}")
    lang_param = None
    if f.lang:
        lang_param = p(f.lang)
        where.append(f"m.lang = {lang_param}")
    if f.source:
        where.append(f"m.source = {p(f.source)}")
    if f.sentiment == "unknown":
        where.append("m.sentiment IS NULL")
    elif f.sentiment:
        where.append(f"m.sentiment = {p(f.sentiment)}")
    if f.tsquery:
        where.append(f"m.tsv @@ {tsquery_sql(p(f.tsquery), lang_param)}")
    owned = owned_condition(f.owned, f.watchlist, p)
    if owned:
        where.append(owned)
    key_sql = MENTION_SORT_KEYS[sort]
    if after is not None:
        where.append(f"({key_sql}, m.mention_id) < ({p(after[0])}, {p(after[1])})")
    sql = (f"SELECT {', '.join('m.' + c for c in MENTION_FIELDS)}, {key_sql} AS sort_key FROM mentions m"
           + _where(where) + f" ORDER BY {key_sql} DESC, m.mention_id DESC LIMIT {p(limit + 1)}")
    return sql, p.values


# --- trends -----------------------------------------------------------------------------------


def volume_series(watchlist_id: str, lo: datetime, hi: datetime, step: int, source: str | None = None,
                  lang: str | None = None) -> Sql:
    """Mentions and sentiment of a watchlist per `step`-second bucket of [lo, hi), every bucket
    present (zeros included)."""
    p = Params()
    step_p, lo_p, hi_p = p(timedelta(seconds=step)), p(lo), p(hi)
    filters = [f"watchlist_id = {p(watchlist_id)}", f"bucket >= {lo_p}", f"bucket < {hi_p}"]
    if source:
        filters.append(f"source = {p(source)}")
    if lang:
        filters.append(f"lang = {p(lang)}")
    sql = f"""
            WITH b AS (SELECT generate_series({lo_p}::timestamptz, {hi_p}::timestamptz - {step_p}::interval, {step_p}::interval) AS start),
            r AS (SELECT date_bin({step_p}::interval, bucket, {p(ORIGIN)}::timestamptz) AS start, sentiment, sum(mentions) AS n
                  FROM {rollup_table(step)} WHERE {' AND '.join(filters)} GROUP BY 1, 2)
            SELECT b.start, coalesce(sum(r.n), 0)::bigint AS mentions,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'negative'), 0)::bigint AS negative,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'neutral'), 0)::bigint AS neutral,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'positive'), 0)::bigint AS positive,
                   coalesce(sum(r.n) FILTER (WHERE r.sentiment = 'unknown'), 0)::bigint AS unknown
            FROM b LEFT JOIN r USING (start) GROUP BY b.start ORDER BY b.start"""
    return sql, p.values


def share_of_voice(lo: datetime, hi: datetime, watchlist_ids: Sequence[str] | None) -> Sql | None:
    """Mentions and sentiment per watchlist over the minute-aligned [lo, hi), most mentioned first;
    None when the period covers no rollup row at all."""
    p = Params()
    only = f" AND watchlist_id = ANY({p(sorted(set(watchlist_ids)))}::text[])" if watchlist_ids else ""
    union = " UNION ALL ".join(
        f"SELECT watchlist_id, sentiment, mentions FROM {table} WHERE bucket >= {p(a)} AND bucket < {p(b)}"
        f" AND watchlist_id <> '(none)'{only}"
        for table, a, b in rollup_parts(lo, hi, "watchlist_rollups"))
    if not union:
        return None
    sql = ("SELECT watchlist_id, sum(mentions)::bigint AS mentions,"
           " coalesce(sum(mentions) FILTER (WHERE sentiment = 'negative'), 0)::bigint AS negative,"
           " coalesce(sum(mentions) FILTER (WHERE sentiment = 'neutral'), 0)::bigint AS neutral,"
           " coalesce(sum(mentions) FILTER (WHERE sentiment = 'positive'), 0)::bigint AS positive,"
           " coalesce(sum(mentions) FILTER (WHERE sentiment = 'unknown'), 0)::bigint AS unknown"
           f" FROM ({union}) x GROUP BY 1 ORDER BY 2 DESC, 1")
    return sql, p.values


TOTAL_MENTIONS = "SELECT coalesce(sum(mentions), 0)::bigint FROM mention_totals_day"
WATCHLIST_TOTALS = (
    "SELECT d.watchlist_id, d.mentions, d.negative,"
    " (SELECT max(bucket) FROM mention_rollups_minute m WHERE m.watchlist_id = d.watchlist_id) AS last_minute"
    " FROM (SELECT watchlist_id, sum(mentions)::bigint AS mentions,"
    "       coalesce(sum(mentions) FILTER (WHERE sentiment = 'negative'), 0)::bigint AS negative"
    "       FROM watchlist_rollups_day GROUP BY 1) d ORDER BY 2 DESC, 1")
WATCHLIST_HAS_DATA = "SELECT 1 FROM mention_rollups_day WHERE watchlist_id = $1 LIMIT 1"


# --- entities, authors, advocates (candidates walked in chunks, see migration 006) ------------


def chunk(candidates_sql: str, offset: int, size: int) -> str:
    """One chunk of a candidate walk (`offset` and `size` are ints of our own, never input)."""
    return f"{candidates_sql} OFFSET {int(offset)} LIMIT {int(size)}"


def entity_candidates(watchlist_id: str, entity_type: str | None) -> Sql:
    """A watchlist's entities by all-time count: of `entity_type`, or of every type but hashtags
    and links when None."""
    condition = "entity_type = $2" if entity_type else "entity_type NOT IN ('hashtag', 'url') AND $2::text IS NULL"
    sql = ("SELECT entity_type, entity_key, mentions FROM entity_totals WHERE watchlist_id = $1 AND "
           + condition + " ORDER BY mentions DESC, entity_type, entity_key")
    return sql, [watchlist_id, entity_type or None]


def entity_sums(watchlist_id: str, types: list[str], keys: list[str], lo: datetime, hi: datetime) -> Sql:
    """Mentions in the day-aligned [lo, hi) of each (type, key) candidate that has any."""
    sql = ("SELECT r.entity_type AS type, min(r.entity_text) AS text, sum(r.mentions)::bigint AS mentions, r.entity_key"
           " FROM unnest($2::text[], $3::text[]) AS c(t, k) JOIN entity_rollups_day r ON r.watchlist_id = $1"
           " AND r.entity_type = c.t AND r.entity_key = c.k AND r.bucket >= $4 AND r.bucket < $5 GROUP BY 1, 4")
    return sql, [watchlist_id, types, keys, lo, hi]


def author_candidates(watchlist_id: str) -> Sql:
    """A watchlist's authors by all-time mentions."""
    sql = ("SELECT source, author_key, mentions, reach FROM author_totals WHERE watchlist_id = $1"
           " ORDER BY mentions DESC, source, author_key")
    return sql, [watchlist_id]


# Advocates: how far a post travelled. Engagement velocity is engagement (likes, reposts, replies)
# per hour from posting to when the counts were observed, at least one hour (a post seen a minute
# old is not credited 60 times its likes); a post's amplification is reposts + replies + velocity.
AUTHOR_KEY = "coalesce(lower(m.author_handle), 'id:' || m.author_id)"
# Both are computed as the author rollups count them (migration 061's earful_velocity, 6 decimals).
VELOCITY = "earful_velocity(m.likes, m.reposts, m.replies, coalesce(m.engagement_observed_at, m.received_at), m.created_at)"


def advocate_ranking(watchlist_id: str, lo: datetime, hi: datetime, min_positive: int) -> Sql:
    """The watchlist's earned authors with at least `min_positive` positive mentions in the day-aligned
    [lo, hi), by the amplification of their positive posts, most first (then more positive posts,
    then the larger reach): from the author rollups' days with a positive post (migration 061).
    Whether each has more positive than negative posts, and the previous period, `advocate_details`
    tells for the few read."""
    # Summed as float8 (exact for counts below 2**53): a sum of bigint or numeric goes through
    # numeric, about three times slower over the ~25,000 author-days of a large brand's month.
    sql = """
        SELECT source, author_key, sum(positive::float8)::bigint AS positive, sum(pos_likes::float8)::bigint AS likes,
               sum(pos_reposts::float8)::bigint AS reposts, sum(pos_replies::float8)::bigint AS replies,
               sum(pos_velocity::float8) AS velocity,
               sum((pos_reposts + pos_replies)::float8) + sum(pos_velocity::float8) AS amplification,
               max(reach) AS positive_reach
        FROM author_rollups_day
        WHERE watchlist_id = $1 AND bucket >= $2 AND bucket < $3 AND positive > 0
        GROUP BY 1, 2 HAVING sum(positive::float8) >= $4
        ORDER BY amplification DESC, positive DESC, positive_reach DESC, source, author_key"""
    return sql, [watchlist_id, lo, hi, min_positive]


def advocate_details(watchlist_id: str, prev_lo: datetime, lo: datetime, hi: datetime, sources: list[str],
                     keys: list[str]) -> Sql:
    """For each (source, author key): negative mentions in [lo, hi), positive ones and their
    amplification in [prev_lo, lo), the largest reach and the latest names over both periods (one
    short range of the author rollups' key per author)."""
    sql = """
        SELECT c.s AS source, c.k AS author_key, max(r.author_handle) AS author_handle, max(r.author_id) AS author_id,
               max(r.author_name) AS author_name, max(r.connector) AS connector, coalesce(max(r.reach), 0) AS reach,
               coalesce(sum(r.negative) FILTER (WHERE r.bucket >= $5), 0)::bigint AS negative,
               coalesce(sum(r.positive) FILTER (WHERE r.bucket < $5), 0)::bigint AS previous_positive,
               coalesce(sum(r.pos_reposts + r.pos_replies + r.pos_velocity) FILTER (WHERE r.bucket < $5), 0)::float8
                   AS previous_amplification
        FROM unnest($2::text[], $3::text[]) AS c(s, k)
        JOIN author_rollups_day r ON r.watchlist_id = $1 AND r.source = c.s AND r.author_key = c.k
         AND r.bucket >= $4 AND r.bucket < $6 AND (r.positive > 0 OR r.negative > 0)
        GROUP BY 1, 2"""
    return sql, [watchlist_id, sources, keys, prev_lo, lo, hi]


def advocate_days(watchlist_id: str, lo: datetime, hi: datetime, sources: list[str], keys: list[str]) -> Sql:
    """The days of the day-aligned [lo, hi) on which each (source, author key) wrote a positive earned
    post, with the upper bound of that day's best post's amplification (null: unknown), highest first."""
    sql = ("SELECT r.source, r.author_key, r.bucket, r.pos_best FROM unnest($2::text[], $3::text[]) AS c(s, k)"
           " JOIN author_rollups_day r ON r.watchlist_id = $1 AND r.source = c.s AND r.author_key = c.k"
           " AND r.bucket >= $4 AND r.bucket < $5 AND r.positive > 0"
           " ORDER BY r.source, r.author_key, r.pos_best DESC NULLS FIRST, r.bucket DESC")
    return sql, [watchlist_id, sources, keys, lo, hi]


def advocate_day_posts(watchlist_id: str, lo: datetime, hi: datetime, sources: list[str], keys: list[str],
                       days: list[datetime]) -> Sql:
    """The positive earned posts in [lo, hi) of each (source, author key, UTC day), through the index by
    author (migration 061), with their velocity and amplification."""
    sql = f"""
        SELECT m.source, {AUTHOR_KEY} AS author_key, m.mention_id, m.url, m.text, m.created_at, m.likes, m.reposts,
               m.replies, {VELOCITY} AS velocity, m.reposts + m.replies + {VELOCITY} AS amplification
        FROM unnest($4::text[], $5::text[], $6::timestamptz[]) AS c(s, k, d)
        JOIN mentions m ON m.source = c.s AND {AUTHOR_KEY} = c.k
         AND m.created_at >= c.d AND m.created_at < c.d + interval '1 day'
        WHERE m.created_at >= $2 AND m.created_at < $3 AND m.facets @> $1::text[]
          AND $7 <> ALL (m.owned_watchlist_ids) AND m.sentiment = 'positive'"""
    return sql, [[f"w:{watchlist_id}"], lo, hi, sources, keys, days, watchlist_id]


def author_sums(watchlist_id: str, sources: list[str], keys: list[str], lo: datetime, hi: datetime) -> Sql:
    """Mentions, positive and negative ones in the day-aligned [lo, hi) of each (source, key) candidate."""
    sql = ("SELECT r.source, r.author_key, max(r.author_handle) AS author_handle, max(r.author_name) AS author_name,"
           " sum(r.mentions)::bigint AS mentions, sum(r.positive)::bigint AS positive, sum(r.negative)::bigint AS negative"
           " FROM unnest($2::text[], $3::text[]) AS c(s, k) JOIN author_rollups_day r ON r.watchlist_id = $1"
           " AND r.source = c.s AND r.author_key = c.k AND r.bucket >= $4 AND r.bucket < $5 GROUP BY 1, 2")
    return sql, [watchlist_id, sources, keys, lo, hi]


# --- customer questions -----------------------------------------------------------------------


def question_stats(watchlist_id: str, lo: datetime, hi: datetime, sla_s: int | None) -> Sql:
    """Questions asked in [lo, hi): how many, how many answered, response-time percentiles, and
    how many waited (or have waited) longer than `sla_s`."""
    sql = ("SELECT count(*) AS asked, count(first_reply_at) AS answered,"
           " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM greatest(first_reply_at - created_at, interval '0')))"
           "   FILTER (WHERE first_reply_at IS NOT NULL) AS median_response_s,"
           " percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM greatest(first_reply_at - created_at, interval '0')))"
           "   FILTER (WHERE first_reply_at IS NOT NULL) AS p90_response_s,"
           " count(*) FILTER (WHERE $4::bigint IS NOT NULL AND coalesce(first_reply_at, now()) - created_at"
           "   > make_interval(secs => $4::bigint)) AS sla_breached"
           " FROM questions WHERE watchlist_id = $1 AND created_at >= $2 AND created_at < $3")
    return sql, [watchlist_id, lo, hi, sla_s]


def open_questions(watchlist_id: str, lo: datetime, hi: datetime, after: tuple[datetime, Any] | None,
                   limit: int) -> Sql:
    """One page (plus one row) of unanswered questions asked in [lo, hi), longest waiting first;
    `after` is the (created_at, mention_id) of the previous page's last row. Their posts come from
    `question_posts`: joined here, planning the join over every daily partition of a month cost
    ~25 ms, and the planner, unsure how many rows the join keeps, once hashed every mention of the
    period (~1 s)."""
    p = Params()
    where = [f"q.watchlist_id = {p(watchlist_id)}", "q.first_reply_at IS NULL",
             f"q.created_at >= {p(lo)}", f"q.created_at < {p(hi)}"]
    if after is not None:
        where.append(f"(q.created_at, q.mention_id) > ({p(after[0])}, {p(after[1])})")
    sql = ("SELECT q.created_at, q.mention_id, q.source, q.source_id,"
           " extract(epoch FROM now() - q.created_at)::bigint AS waiting_s"
           f" FROM questions q WHERE {' AND '.join(where)} ORDER BY q.created_at, q.mention_id LIMIT {p(limit + 1)}")
    return sql, p.values


def question_posts(keys: Sequence[tuple[str, str, datetime]]) -> Sql:
    """The posts of the questions `keys` (source, source_id, created_at): bounded by their first and
    last time, so only the days they fall on are planned and read."""
    sql = ("SELECT m.source, m.source_id, m.created_at, m.url, m.author_handle, m.author_followers, m.lang, m.text"
           " FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS c(s, i, t)"
           " JOIN mentions m ON m.source = c.s AND m.source_id = c.i AND m.created_at = c.t"
           " WHERE m.created_at >= $4 AND m.created_at <= $5")
    return sql, [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], min(k[2] for k in keys),
                 max(k[2] for k in keys)]


# --- alerts -----------------------------------------------------------------------------------

NOTIFICATION_LOG_EXISTS = "SELECT to_regclass('notification_log') IS NOT NULL"
_NOTIFICATIONS = (
    "coalesce((SELECT jsonb_agg(jsonb_build_object('receiver', n.receiver, 'receiver_kind', n.receiver_kind,"
    " 'status', n.status, 'outcome', n.outcome, 'attempts', n.attempts, 'http_status', n.http_status,"
    " 'error', n.error, 'sent_at', n.sent_at) ORDER BY n.sent_at, n.id) FROM notification_log n"
    " WHERE a.alert_id = ANY(n.alert_ids) AND n.status = a.status), '[]'::jsonb)")


@dataclass(frozen=True)
class AlertFilter:
    """Which alert state changes a listing keeps (detected in [from_, to))."""

    watchlist: str | None = None
    status: str | None = None
    rule: str | None = None
    severity: str | None = None
    from_: datetime | None = None
    to: datetime | None = None


def alert_listing(f: AlertFilter, after: tuple[datetime, str, str] | None, limit: int,
                  with_notifications: bool) -> Sql:
    """One page (plus one row) of alert state changes, newest first, each with its notifications
    when the alerting service's notification log exists; `after` is the (detected_at, alert_id,
    status) of the previous page's last row."""
    p = Params()
    where = []
    for column, value in (("watchlist_id", f.watchlist), ("status", f.status), ("rule", f.rule),
                          ("severity", f.severity)):
        if value:
            where.append(f"a.{column} = {p(value)}")
    if f.from_:
        where.append(f"a.detected_at >= {p(f.from_)}")
    if f.to:
        where.append(f"a.detected_at < {p(f.to)}")
    if after is not None:
        where.append(f"(a.detected_at, a.alert_id, a.status) < ({p(after[0])}, {p(after[1])}, {p(after[2])})")
    notifications = _NOTIFICATIONS if with_notifications else "'[]'::jsonb"
    sql = ("SELECT a.alert_id, a.status, a.fingerprint, a.rule, a.watchlist_id, a.severity, a.labels, a.annotations,"
           " a.group_key, a.summary, a.observed, a.baseline, a.score, a.bucket_seconds, a.starts_at, a.ends_at,"
           " a.detected_at, a.first_received_at, a.sample_mention_ids, a.explanation,"
           f" {notifications} AS notifications FROM alerts a"
           + _where(where)
           + f" ORDER BY a.detected_at DESC, a.alert_id DESC, a.status DESC LIMIT {p(limit + 1)}")
    return sql, p.values
