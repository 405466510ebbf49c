"""`earful storage seed`: load a large, realistic data set for benchmarks and demos.

Why: the query API's speed targets are stated for 5 million mentions over 90 days and 50
watchlists; this makes that data set reproducibly (same seed, same rows) and fast. Each UTC day
is generated in Python, COPYed into a table of its own without indexes, then attached as that
day's partition (PostgreSQL builds the partition's indexes in bulk, much faster than row by row).
Questions, brand replies and a few alerts are written alongside; the rollups are rebuilt at the
end by the same recount the tests check the writer against (`earful_rebuild_rollups()`).

The model (see README, "Seeding a benchmark data set"): 50 brand watchlists with Zipf-like
popularity; ~10% of mentions match no watchlist and ~5% two; languages en 55%, es, de, fr, pt, it,
nl; six sources; a daily and weekly rhythm; authors drawn from a heavy-tailed pool (some post a
lot) with log-normal follower counts; 0-4 entities per mention (hashtags, @handles, cities,
people, products) that really occur in the text; sentiment only for English (as the enrichment
service does); risk tags, with customer questions that a brand handle answers 60% of the time
after a log-normal delay (median ~40 minutes).

It refuses a database that already holds mentions, so it cannot mix made-up rows into real data.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from earful.core.db import ensure_database, redact, with_database
from earful.core.errors import StorageError
from earful.core.migrate import migrate
from earful.core.settings import Settings
from earful.storage.writer import MENTION_COLUMNS, facets

UTC = timezone.utc
_CREATED = MENTION_COLUMNS.index("created_at")
_NS = uuid.UUID("8f4b7c52-6f0c-5d2a-9a34-6a1e5f0b9e21")  # mention ids of seeded rows (same as ingest's UUIDv5 scheme)
LANGS = {"en": 0.55, "es": 0.12, "de": 0.10, "fr": 0.09, "pt": 0.06, "it": 0.05, "nl": 0.03}
SOURCES = {"twitter": 0.40, "reddit": 0.15, "news": 0.13, "bluesky": 0.12, "mastodon": 0.10, "blog": 0.10}
RISKS = {"customer_question": 0.08, "complaint": 0.10, "purchase_intent": 0.03, "operational": 0.04,
         "reputational": 0.02, "legal_privacy": 0.01, "regulatory": 0.01}
_DIURNAL = [0.35, 0.25, 0.18, 0.14, 0.13, 0.18, 0.32, 0.55, 0.78, 0.92, 1.0, 1.0,
            0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.9, 0.85, 0.78, 0.68, 0.55, 0.45]
_WEEKLY = [1.0, 1.03, 1.02, 1.0, 0.97, 0.8, 0.75]

_PREFIX = ["Nova", "Astra", "Lumen", "Vertex", "Orbit", "Cobalt", "Pioneer", "Summit", "Harbor", "Cedar", "Atlas",
           "Zenith", "Quantum", "Meridian", "Polar", "Silver", "Crimson", "Evergreen", "Northwind", "Bright"]
_SUFFIX = ["Air", "Bank", "Mobile", "Foods", "Energy", "Motors", "Health", "Cloud", "Telecom", "Coffee", "Hotels",
           "Games", "Pharma", "Retail", "Fitness", "Insurance", "Logistics", "Media", "Labs", "Capital"]
_CITIES = ["London", "Paris", "Berlin", "Madrid", "Lisbon", "Rome", "Amsterdam", "Zürich", "Vienna", "Dublin", "Chicago",
           "Toronto", "Boston", "Seattle", "Denver", "Austin", "Miami", "Mexico City", "São Paulo", "Buenos Aires",
           "Barcelona", "Munich", "Lyon", "Porto", "Milan", "Rotterdam", "Hamburg", "Valencia", "Seville", "Brussels"]
_PEOPLE = ["Maria Lopez", "John Carter", "Aisha Khan", "Lukas Weber", "Sophie Martin", "Giulia Rossi", "Pedro Alves",
           "Emma de Vries", "Chen Wei", "Olivia Brown", "Noah Smith", "Lea Dubois", "Jonas Becker", "Ana Costa"]
_WORDS = {
    "en": ("flight delay refund app update service support price plan order delivery account outage battery screen "
           "coffee hotel room booking staff crew seat bag lounge upgrade signal network bill charge fee card loan "
           "rate branch store product quality taste menu offer deal launch feature design camera speed login "
           "password crash bug review experience weekend morning evening airport gate trip subscription").split(),
    "es": ("vuelo retraso reembolso aplicación servicio soporte precio pedido entrega cuenta factura tarjeta tienda "
           "producto calidad oferta experiencia aeropuerto equipaje habitación reserva personal señal red").split(),
    "de": ("Flug Verspätung Erstattung App Service Kundendienst Preis Bestellung Lieferung Konto Rechnung Karte Filiale "
           "Produkt Qualität Angebot Erfahrung Flughafen Gepäck Zimmer Buchung Personal Netz Störung").split(),
    "fr": ("vol retard remboursement application service assistance prix commande livraison compte facture carte "
           "magasin produit qualité offre expérience aéroport bagage chambre réservation personnel réseau panne").split(),
    "pt": ("voo atraso reembolso aplicativo serviço suporte preço pedido entrega conta fatura cartão loja produto "
           "qualidade oferta experiência aeroporto bagagem quarto reserva equipe rede falha").split(),
    "it": ("volo ritardo rimborso app servizio assistenza prezzo ordine consegna conto fattura carta negozio prodotto "
           "qualità offerta esperienza aeroporto bagaglio camera prenotazione personale rete guasto").split(),
    "nl": ("vlucht vertraging terugbetaling app service klantenservice prijs bestelling levering rekening kaart winkel "
           "product kwaliteit aanbieding ervaring luchthaven bagage kamer boeking personeel netwerk storing").split(),
}
_TONE = {
    "en": {"positive": ["love", "great", "amazing", "thanks", "excellent", "happy with"],
           "negative": ["hate", "terrible", "awful", "worst", "disappointed by", "angry about"],
           "neutral": ["about", "regarding", "noticed", "saw", "news on", "update on"]},
}
_QUESTION = {"en": "How do I", "es": "¿Cómo puedo", "de": "Wie kann ich", "fr": "Comment puis-je", "pt": "Como posso",
             "it": "Come posso", "nl": "Hoe kan ik"}


@dataclass(frozen=True)
class SeedWatchlist:
    id: str
    name: str
    handles: tuple[str, ...]
    hashtags: tuple[str, ...]
    products: tuple[str, ...]
    weight: float


def make_watchlists(count: int, rng: random.Random) -> list[SeedWatchlist]:
    out, names = [], set()
    while len(out) < count:
        name = f"{rng.choice(_PREFIX)} {rng.choice(_SUFFIX)}"
        if name in names:
            continue
        names.add(name)
        joined = name.replace(" ", "")
        wid = name.lower().replace(" ", "-")
        products = tuple(f"{joined} {p}" for p in rng.sample(["One", "Pro", "Go", "Max", "Lite", "Plus", "Prime", "X"], 4))
        tags = (f"#{joined}", f"#{joined}Fail", f"#{joined}Love", f"#{name.split()[1]}")
        out.append(SeedWatchlist(wid, name, (joined, f"{joined}Help"), tags, products, 1.0 / (len(out) + 1) ** 0.8))
    return out


def seed_watchlists(count: int, seed_value: int) -> list[SeedWatchlist]:
    """The watchlists `seed(..., watchlists=count, seed_value=...)` generates."""
    return make_watchlists(count, random.Random(seed_value))


def write_watchlists_yaml(watchlists: list[SeedWatchlist], path: Path) -> None:
    """The seeded watchlists as a watchlists list file (EARFUL_WATCHLISTS_DIR), so the API knows their names and handles."""
    doc = {"watchlists": [{"id": w.id, "name": w.name, "kind": "brand", "handles": list(w.handles),
                           "terms": [w.name, w.handles[0], f"@{w.handles[0]}", w.hashtags[0]]} for w in watchlists]}
    path.write_text("# Generated by `earful storage seed`.\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                    encoding="utf-8")


class _Generator:
    def __init__(self, seed: int, watchlists: list[SeedWatchlist], authors: int) -> None:
        self.rng = random.Random(seed)
        self.watchlists = watchlists
        self.weights = [w.weight for w in watchlists]
        self.langs, self.lang_w = list(LANGS), list(LANGS.values())
        self.sources, self.source_w = list(SOURCES), list(SOURCES.values())
        self.authors = authors
        self.models = json.dumps({"language": "seed", "ner": "seed", "sentiment": "seed", "risk": "seed",
                                  "watchlists": "seed"})
        self.counter = 0

    def author(self, source: str) -> tuple[str, str, str, int]:
        rng = self.rng
        # A third of the posts come from a few thousand frequent posters, the rest from the long tail.
        n = int(rng.paretovariate(1.2)) % 3000 if rng.random() < 0.33 else rng.randrange(self.authors)
        handle = f"user{n:06d}"
        followers = int(math.exp(rng.gauss(5.0, 1.8))) if n % 97 else int(math.exp(rng.gauss(10.5, 1.2)))
        return f"{source[:2]}{n}", handle, f"User {n}", followers

    def mention(self, created: datetime, received_lag_s: float = 2.0,
                reply_to: tuple[str, str] | None = None, brand: SeedWatchlist | None = None) -> tuple[Any, ...]:
        rng = self.rng
        self.counter += 1
        if reply_to is not None:
            source, lang = reply_to[0], "en"
        else:
            source, lang = rng.choices(self.sources, self.source_w)[0], rng.choices(self.langs, self.lang_w)[0]
        source_id = f"s{self.counter:09d}"
        if brand is not None:
            wls = [brand]
        else:
            r = rng.random()
            wls = [] if r < 0.10 else rng.choices(self.watchlists, self.weights, k=2 if r > 0.95 else 1)
            wls = list(dict.fromkeys(wls))
        words = _WORDS[lang]
        ents: list[dict[str, Any]] = []
        parts: list[str] = []

        def add(text: str, etype: str | None) -> None:
            start = sum(len(p) + 1 for p in parts)
            parts.append(text)
            if etype:
                ents.append({"text": text, "type": etype, "start": start, "end": start + len(text), "origin": "rules"})

        risks: list[dict[str, Any]] = []
        if brand is not None:
            add(f"@{reply_to[1] if reply_to else 'customer'}", "mention")
            add("Thanks for reaching out, we are looking into your", None)
            add(rng.choice(words), None)
            add("right now.", None)
            sentiment = "positive"
        else:
            question = rng.random() < RISKS["customer_question"] and bool(wls)
            if question:
                add(_QUESTION[lang], None)
                add(" ".join(rng.sample(words, 2)), None)
                add("with", None)
            sentiment = rng.choices(("negative", "neutral", "positive"), (0.28, 0.44, 0.28))[0]
            tone = _TONE.get(lang, {}).get(sentiment)
            if tone and not question:
                add(rng.choice(tone), None)
            for w in wls:
                r = rng.random()
                if r < 0.55:
                    add(w.name, "corporation")
                elif r < 0.8:
                    add(f"@{w.handles[0]}", "mention")
                else:
                    add(rng.choice(w.products), "product")
            add(" ".join(rng.choices(words, k=rng.randint(4, 14))), None)
            if rng.random() < 0.35:
                add("in", None)
                add(rng.choice(_CITIES), "location")
            if rng.random() < 0.12:
                add("said", None)
                add(rng.choice(_PEOPLE), "person")
            if question:
                add("?", None)
            for w in wls:
                if rng.random() < 0.45:
                    add(rng.choice(w.hashtags), "hashtag")
            if rng.random() < 0.15:
                add(f"#{rng.choice(words).capitalize()}", "hashtag")
            for tag, share in RISKS.items():
                if (tag == "customer_question" and question) or (tag != "customer_question" and rng.random() < share):
                    risks.append({"tag": tag, "evidence": parts[0], "start": 0, "end": len(parts[0])})
        text = " ".join(parts)
        author_id, handle, name, followers = self.author(source)
        if brand is not None:
            handle, author_id, name, followers = brand.handles[1], f"brand-{brand.id}", f"{brand.name} Help", 250_000
        label = sentiment if lang == "en" else None
        score = {"positive": 0.6, "negative": -0.6, "neutral": 0.0}[sentiment] if label else 0.0
        watchlist_ids = [w.id for w in wls]
        matches = [{"watchlist_id": w.id, "start": 0, "end": 1, "term": w.name} for w in wls]
        likes = int(followers * rng.random() * 0.02)
        row = (
            uuid.uuid5(_NS, f"{source}\0{source_id}"), source, source_id, f"https://{source}.example/p/{source_id}",
            author_id, handle, name, followers, text, None, rng.choice(("US", "GB", "DE", "FR", "ES", None)),
            "replay", "application/json", lang, lang, 0.95, created, created + timedelta(seconds=received_lag_s), None,
            created + timedelta(seconds=received_lag_s + 0.2), reply_to[2] if reply_to else None,
            None, likes, likes // 10, likes // 20, None, label, score,
            None if label else f"unsupported_language:{lang}", None, watchlist_ids,
            json.dumps(ents, ensure_ascii=False), json.dumps(risks, ensure_ascii=False), json.dumps(matches),
            self.models, facets(watchlist_ids, ents, risks),
        )
        return row


def _day_counts(total: int, days: list[date], rng: random.Random, end: datetime) -> list[int]:
    """Mentions per day: the weekly rhythm, a little noise, the last day only as far as `end`."""
    weights = [_WEEKLY[d.weekday()] * rng.uniform(0.9, 1.1) for d in days]
    elapsed_h = (end - datetime(days[-1].year, days[-1].month, days[-1].day, tzinfo=UTC)).total_seconds() / 3600
    weights[-1] *= sum(_DIURNAL[: max(1, math.ceil(elapsed_h))]) / sum(_DIURNAL)
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    counts[-1] += total - sum(counts)
    return counts


def _times(day: date, n: int, rng: random.Random, end: datetime) -> list[datetime]:
    """`n` publication times on `day` following the daily rhythm, none after `end`."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hours = min(24, math.ceil((end - start).total_seconds() / 3600))
    chosen = rng.choices(range(hours), _DIURNAL[:hours], k=n)
    return sorted(min(end - timedelta(seconds=1), start + timedelta(hours=h, seconds=rng.random() * 3600)) for h in chosen)


async def seed(url: str, *, mentions: int, days: int, watchlists: int, seed_value: int = 1, end: datetime | None = None,
               watchlists_out: Path | None = None, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Load the data set into the database at `url` (migrated first); returns a summary."""
    if mentions < 1 or days < 1 or watchlists < 1:
        raise StorageError("mentions, days and watchlists must be at least 1")
    started = time.monotonic()
    rng = random.Random(seed_value)
    wls = make_watchlists(watchlists, rng)  # first draws of `rng`: seed_watchlists() gives the same list
    if watchlists_out:
        write_watchlists_yaml(wls, watchlists_out)
    gen = _Generator(seed_value, wls, authors=max(1000, mentions // 12))
    end = (end or datetime.now(UTC)).astimezone(UTC)
    end_day = end.date()
    day_list = [end_day - timedelta(days=days - 1 - i) for i in range(days)]
    counts = _day_counts(mentions, day_list, rng, end)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
        existing = await conn.fetchval("SELECT count(*) FROM (SELECT 1 FROM mentions LIMIT 1) x")
        if existing:
            raise StorageError("the database already holds mentions; seed only into an empty database")
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '512MB'")
        loaded = questions = replies = 0
        for day, n in zip(day_list, counts):
            rows, q_rows, r_rows = [], [], []
            for created in _times(day, n, rng, end):
                row = gen.mention(created)
                rows.append(row)
                risks = row[MENTION_COLUMNS.index("risks")]
                if '"customer_question"' in risks:
                    for wid in row[MENTION_COLUMNS.index("watchlist_ids")]:
                        brand = next(w for w in wls if w.id == wid)
                        first = None
                        if rng.random() < 0.6:
                            delay = timedelta(seconds=min(3 * 86400, math.exp(rng.gauss(7.8, 1.1))))
                            if (created + delay).date() == day and created + delay < end:  # each row in its own day's partition
                                reply = gen.mention(created + delay, reply_to=(row[1], row[5], row[2]), brand=brand)
                                rows.append(reply)
                                first = reply[_CREATED]
                                r_rows.append((wid, row[1], row[2], reply[2], first))
                        q_rows.append((wid, row[1], row[2], created, row[0], first))
            await _load_day(conn, day, rows)
            await conn.copy_records_to_table("questions", records=q_rows, columns=(
                "watchlist_id", "source", "source_id", "created_at", "mention_id", "first_reply_at"))
            await conn.copy_records_to_table("brand_replies", records=r_rows, columns=(
                "watchlist_id", "source", "in_reply_to", "source_id", "created_at"))
            loaded, questions, replies = loaded + len(rows), questions + len(q_rows), replies + len(r_rows)
            elapsed = time.monotonic() - started
            progress(f"{day}: {len(rows):,} mentions; {loaded:,} so far, {loaded / elapsed:,.0f}/s")
        await _alerts(conn, wls, day_list, rng)
        progress("rebuilding rollups from the mentions (one pass over everything)...")
        await conn.execute("SELECT earful_rebuild_rollups()")
        progress("analysing tables...")
        await conn.execute("ANALYZE")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        marker = json.dumps({"earful_seed": {"mentions": mentions, "days": days, "watchlists": watchlists,
                                             "seed": seed_value, "end": end.isoformat()}})
        await conn.execute(f"COMMENT ON DATABASE \"{await conn.fetchval('SELECT current_database()')}\" IS "
                            "'" + marker.replace("'", "''") + "'")
    finally:
        await conn.close()
    summary = {"mentions": loaded, "days": days, "watchlists": watchlists, "questions": questions,
               "brand_replies": replies, "database_size": size, "elapsed_s": round(time.monotonic() - started, 1)}
    progress(f"done: {json.dumps(summary)}")
    return summary


async def _load_day(conn: asyncpg.Connection, day: date, rows: list[tuple[Any, ...]]) -> None:
    """COPY a day's rows into a bare table, then attach it as that day's partition (indexes built in bulk)."""
    part = f"mentions_{day:%Y%m%d}"
    lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hi = lo + timedelta(days=1)
    async with conn.transaction():
        await conn.execute(f'CREATE TABLE "{part}" (LIKE mentions INCLUDING DEFAULTS INCLUDING GENERATED)')
        await conn.copy_records_to_table(part, records=rows, columns=MENTION_COLUMNS)
        await conn.execute(f"""ALTER TABLE "{part}" ADD CONSTRAINT "{part}_range" CHECK (created_at >= '{lo.isoformat()}' AND created_at < '{hi.isoformat()}')""")
        await conn.execute(f"ALTER TABLE mentions ATTACH PARTITION \"{part}\" FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")
        await conn.execute(f'ALTER TABLE "{part}" DROP CONSTRAINT "{part}_range"')
        await conn.execute(f'INSERT INTO mention_keys (source, source_id, created_at, observed_at)'
                           f' SELECT source, source_id, created_at, received_at FROM "{part}"')


async def _alerts(conn: asyncpg.Connection, wls: list[SeedWatchlist], days: list[date], rng: random.Random) -> None:
    rows = []
    for _i in range(len(days) * 6):
        w = rng.choice(wls)
        day = rng.choice(days)
        at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.random() * 86400)
        fp = hashlib.sha256(f"{w.id}/volume_spike".encode()).hexdigest()[:16]
        for status, ends in (("firing", None), ("resolved", at + timedelta(minutes=20))):
            rows.append((f"{fp}-{int(at.timestamp() * 1000)}", status, fp, "volume_spike", w.id, "warning",
                         json.dumps({"watchlist": w.id, "rule": "volume_spike"}), f"{w.id}: volume spike", 40.0, 5.0, 12.0,
                         10, at, ends, ends or at, at, [], "{}", None, None))
    await conn.executemany(
        "INSERT INTO alerts (alert_id, status, fingerprint, rule, watchlist_id, severity, labels, summary, observed,"
        " baseline, score, bucket_seconds, starts_at, ends_at, detected_at, first_received_at, sample_mention_ids,"
        " annotations, group_key, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
        " $15, $16, $17, $18, $19, $20) ON CONFLICT DO NOTHING", rows)


async def seed_marker(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """What `seed` loaded into this database (its parameters), or None if it was not seeded."""
    comment = await conn.fetchval("SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                                  " WHERE datname = current_database()")
    try:
        return json.loads(comment)["earful_seed"] if comment else None
    except (ValueError, KeyError, TypeError):
        return None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _seed_from_args(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.database_url.get_secret_value()
    if args.database:
        url = with_database(url, args.database)
        await ensure_database(url)
    end = datetime.combine(args.end, clock_time(12), tzinfo=timezone.utc) if args.end else None
    _say(f"seeding {args.mentions:,} mentions over {args.days} days, {args.watchlists} watchlists into {redact(url)}")
    summary = await seed(url, mentions=args.mentions, days=args.days, watchlists=args.watchlists, seed_value=args.seed,
                         end=end, watchlists_out=args.watchlists_out, progress=_say)
    print(json.dumps(summary))
    return 0


def seed_command(args: argparse.Namespace, settings: Settings) -> int:
    """`earful storage seed` (its options are declared with the other storage actions in earful.cli)."""
    return asyncio.run(_seed_from_args(args, settings))
