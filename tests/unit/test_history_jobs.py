"""The pure parts of re-scoring and back-filling stored history: the keyset walk, throttling,
progress, erased authors, owned decisions, what a re-scoring or a back-fill changes, the records
published, and the counts a stored mention moves (earful.storage.history, reprocess, backfill,
contributions)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from earful.core.codec import AvroCodec, SchemaStore
from earful.core.erased_authors import author_hash
from earful.core.settings import PACKAGE_DIR
from earful.storage.backfill import backfilled, match_stored
from earful.storage.contributions import Contribution, move_rows, question_changes
from earful.storage.history import Cursor, Progress, Selection, Throttle, batch_query, erased_rows, owned_after, raw_mention
from earful.storage.reprocess import changed, enriched_record, rescored, update_args
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.owned import OwnedHandles
from tests.support import SCHEMAS, example

UTC = timezone.utc
T = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
ACME = Watchlist("acme-air", "Acme Air", "brand", ("Acme Air",), ("AcmeAir", "AcmeAirHelp"))
RIVAL = Watchlist("rival", "Rival Air", "brand", query='"Rival Air" OR #RivalAir', handles=("RivalAir",))
OWNED = OwnedHandles.of([ACME, RIVAL])


def row(**changes: Any) -> dict[str, Any]:
    """A stored mention as history.decoded() gives it."""
    base: dict[str, Any] = {
        "mention_id": uuid.UUID(int=7), "source": "twitter", "source_id": "7", "url": None, "author_id": "42",
        "author_handle": "jane", "author_name": "Jane", "author_followers": 120, "text": "Acme Air lost my bag",
        "title": None, "country": None, "connector": "x", "content_type": "post", "declared_lang": None, "lang": "en",
        "lang_confidence": 0.9, "created_at": T, "received_at": T + timedelta(seconds=1), "fetched_at": None,
        "enriched_at": T + timedelta(seconds=2), "in_reply_to": None, "reposted_from": None, "likes": 3, "reposts": 0,
        "replies": 1, "engagement_observed_at": None, "sentiment": "negative", "sentiment_score": -0.8,
        "sentiment_reason": None, "sentiment_probabilities": {"negative": 0.9, "neutral": 0.08, "positive": 0.02},
        "watchlist_ids": ["acme-air"], "owned_watchlist_ids": [],
        "entities": [{"text": "Acme Air", "type": "corporation", "start": 0, "end": 8, "origin": "ner@1"}],
        "risks": [{"tag": "complaint", "evidence": "lost my bag", "start": 9, "end": 20}],
        "matches": [{"watchlist_id": "acme-air", "start": 0, "end": 8, "term": "Acme Air"}],
        "models": {"language": "l@1", "ner": "ner@1", "sentiment": "s@1", "risk": "r@1", "watchlists": "w@1"},
    }
    return {**base, **changes}


def enrichment_of(r: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What the processor would say: the stored values, unless changed."""
    out = {"language": {"code": r["lang"], "confidence": r["lang_confidence"], "script": None},
           "sentiment": {"label": r["sentiment"], "score": r["sentiment_score"], "reason": r["sentiment_reason"],
                         "probabilities": r["sentiment_probabilities"]},
           "entities": r["entities"], "risks": r["risks"], "watchlist_ids": r["watchlist_ids"], "matches": r["matches"],
           "models": r["models"]}
    out.update(changes)
    return out


# --- the walk ---------------------------------------------------------------------------------------------


def test_the_walk_is_keyset_ordered_after_the_cursor_with_the_filters_bound() -> None:
    sql, args = batch_query(Selection(T, T + timedelta(days=1), "acme-air", "twitter"), Cursor(), 50, ("mention_id",))
    assert sql == ("SELECT mention_id FROM mentions WHERE created_at >= $1 AND created_at < $2 AND facets @> ARRAY[$3]::text[]"
                   " AND source = $4 ORDER BY created_at, mention_id LIMIT $5 FOR UPDATE")
    assert args == [T, T + timedelta(days=1), "w:acme-air", "twitter", 50]
    after = Cursor(T, uuid.UUID(int=1))
    sql, args = batch_query(Selection(T), after, 10, ("mention_id",))
    assert "created_at >= $1 AND (created_at, mention_id) > ($2, $3::uuid) ORDER BY" in sql and args == [T, T, after.mention_id, 10]


def test_the_throttle_holds_the_average_rate() -> None:
    now = [100.0]
    throttle = Throttle(50.0, clock=lambda: now[0])
    assert throttle.delay(100) == pytest.approx(2.0)  # 100 mentions at 50/s: 2 s from the start
    now[0] = 103.0
    assert throttle.delay(50) == 0.0  # behind schedule: no wait
    assert Throttle(None, clock=lambda: 0.0).delay(10**6) == 0.0
    with pytest.raises(ValueError):
        Throttle(0)


async def test_the_throttle_pauses_while_the_live_pipeline_is_behind_and_does_not_rush_after() -> None:
    """A re-scoring at its rate beside a busy pipeline delayed live alerts from 1.9 s to 15.5 s: the job
    now waits while a live consumer is more than max_lag records behind, until half of it."""
    now = [0.0]
    behind = iter([5_000, 3_000, 900, 400, 0, 0])
    told: list[str] = []

    async def sleep(s: float) -> None:
        now[0] += s

    async def lag() -> int:
        return next(behind)

    throttle = Throttle(100.0, clock=lambda: now[0], sleep=sleep, lag=lag, max_lag=1_000, poll_s=2.0, say=told.append)
    await throttle.pace(100)  # 1 s at 100/s, then 5,000 behind: paused until at most 500 (3,000, 900, 400)
    assert now[0] == pytest.approx(1.0 + 3 * 2.0) and throttle.pauses == 1 and throttle.paused_s == pytest.approx(6.0)
    assert "5000 records behind" in told[0] and "resumed" in told[1]
    await throttle.pace(100)  # the average starts again after the pause: 1 s more, not a rush
    assert now[0] == pytest.approx(8.0) and throttle.pauses == 1
    with pytest.raises(ValueError):
        Throttle(1.0, max_lag=0)


def test_progress_lines_say_how_far() -> None:
    assert Progress("reprocess job 3", 200, enabled=False).line(50, rescored=7) == "reprocess job 3: 50/200 (25%) rescored=7"
    assert Progress("x", 0, enabled=False).line(0) == "x: 0/0"


def test_erased_authors_are_found_by_handle_or_id_up_to_their_erasure() -> None:
    rows = [row(author_handle="Leaver"), row(author_handle=None, author_id="77"), row(author_handle="stay"),
            row(author_handle="leaver", created_at=T + timedelta(days=2))]  # posted after the erasure
    erased = {author_hash("twitter", "leaver"): T + timedelta(days=1), author_hash("twitter", "77"): T}
    assert erased_rows(rows, erased) == {0, 1}


def test_a_kept_watchlist_keeps_the_writers_owned_decision_and_a_new_one_is_decided_now() -> None:
    decide = lambda added: [w for w in added if w == "rival"]  # noqa: E731
    assert owned_after(["acme-air", "old"], ["old"], ["acme-air", "old", "rival", "globex"], decide) == ["old", "rival"]
    assert owned_after(["acme-air"], ["acme-air"], [], decide) == []


def test_the_raw_mention_rebuilt_from_a_stored_row_is_a_valid_record() -> None:
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store.current("raw_mention"), store)
    raw = raw_mention(row())
    assert codec.decode(codec.encode(raw)) == raw
    assert raw["engagement"] == {"likes": 3, "reposts": 0, "replies": 1, "observed_at": None}


# --- re-scoring -------------------------------------------------------------------------------------------


def test_the_same_enrichment_changes_nothing_and_real_columns_compare_at_their_precision() -> None:
    r = row(lang_confidence=0.3400000035762787)  # 0.34 as PostgreSQL's real gives it back
    new = rescored(r, enrichment_of(r, language={"code": "en", "confidence": 0.34}), frozenset(), OWNED)
    assert not changed(r, new)
    assert changed(r, rescored(r, enrichment_of(r, models={**r["models"], "sentiment": "s@2"}), frozenset(), OWNED))
    assert changed(r, rescored(r, enrichment_of(r, language={"code": "en", "confidence": 0.35}), frozenset(), OWNED))


def test_a_corrected_field_keeps_the_persons_value() -> None:
    r = row(sentiment="positive", sentiment_score=1.0, sentiment_probabilities={"negative": 0.0, "neutral": 0.0, "positive": 1.0})
    out = enrichment_of(r, sentiment={"label": "negative", "score": -0.9, "reason": None, "probabilities": None},
                        risks=[], models={**r["models"], "sentiment": "s@2"})
    new = rescored(r, out, frozenset({"sentiment"}), OWNED)
    assert (new["sentiment"], new["sentiment_score"], new["sentiment_probabilities"]) == ("positive", 1.0, r["sentiment_probabilities"])
    assert new["risks"] == [] and new["models"]["sentiment"] == "s@2"  # the rest follows the models
    assert rescored(r, out, frozenset({"sentiment", "risks"}), OWNED)["risks"] == r["risks"]


def test_a_newly_matched_watchlist_of_the_authors_own_brand_is_owned() -> None:
    r = row(author_handle="RivalAir")
    out = enrichment_of(r, watchlist_ids=["acme-air", "rival"])
    assert rescored(r, out, frozenset(), OWNED)["owned_watchlist_ids"] == ["rival"]


def test_the_published_record_is_an_enriched_mention_marked_reprocessed() -> None:
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store.current("enriched_mention"), store)
    r = row()
    out = enrichment_of(r, models={**r["models"], "ner": "ner@2"}, language={"code": "en", "confidence": 0.9, "script": "Latn"})
    new = rescored(r, out, frozenset(), OWNED)
    at = T + timedelta(days=30)
    record = codec.decode(codec.encode(enriched_record(r, new, out, at)))
    assert record["reprocessed_at"] == record["enriched_at"] == at and record["schema_version"] == 4
    assert record["models"]["ner"] == "ner@2" and record["language"]["script"] == "Latn"
    assert record["mention"]["mention_id"] == str(r["mention_id"]) and record["mention"]["text"] == r["text"]
    args = update_args(r, new, at)
    assert args[:3] == ("twitter", "7", T) and json.loads(args[14])["ner"] == "ner@2" and args[-1] == at
    assert args[15] == ["w:acme-air", "e:acme air", "r:complaint"]  # the filter facets follow


# --- back-filling -----------------------------------------------------------------------------------------


def test_a_backfill_adds_removes_or_leaves_one_watchlist() -> None:
    one = WatchlistSet([RIVAL])
    r = row(text="Acme Air beats Rival Air #RivalAir")
    new = backfilled(r, "rival", match_stored(one, r, 20_000), OWNED)
    assert new is not None and new["watchlist_ids"] == ["acme-air", "rival"]
    assert [(m["watchlist_id"], m["term"]) for m in new["matches"]] == [
        ("acme-air", "Acme Air"), ("rival", "Rival Air"), ("rival", "#RivalAir")]
    applied = {**r, **new}
    assert backfilled(applied, "rival", match_stored(one, applied, 20_000), OWNED) is None  # applied: nothing more
    gone = backfilled(applied, "rival", [], OWNED)
    assert gone is not None and gone["watchlist_ids"] == ["acme-air"] and gone["matches"] == r["matches"]
    assert backfilled(r, "rival", match_stored(one, r, 12), OWNED) is None  # beyond the clipped text: no match
    own = row(text="Rival Air lounges reopen", author_handle="rivalair", watchlist_ids=[], matches=[])
    assert backfilled(own, "rival", match_stored(one, own, 20_000), OWNED)["owned_watchlist_ids"] == ["rival"]


# --- the counts a mention moves ---------------------------------------------------------------------------


def contribution(**changes: Any) -> Contribution:
    return Contribution.of(row(), **changes)


def test_a_move_that_counts_the_same_writes_nothing() -> None:
    before = contribution()
    assert move_rows([(before, contribution(lang_confidence=0.1, matches=[]))]) == []
    assert move_rows([(before, contribution(entities=[{"text": "ACME AIR", "type": "corporation"}]))]) == []  # same key
    assert move_rows([(contribution(owned_watchlist_ids=["acme-air"]),  # owned for all it has: counted nowhere
                       contribution(owned_watchlist_ids=["acme-air"], sentiment="positive"))]) == []
    assert move_rows([(contribution(watchlist_ids=[]), contribution(watchlist_ids=[], sentiment="positive"))]) != []


def test_a_move_subtracts_the_old_contribution_and_adds_the_new_one() -> None:
    rows = move_rows([(contribution(), contribution(sentiment=None, watchlist_ids=["acme-air", "rival"],
                                                    owned_watchlist_ids=["rival"]))])
    assert [(r[0], r[5], r[6], r[7]) for r in rows] == [(-1, "negative", ["acme-air"], []),
                                                       (1, "unknown", ["acme-air", "rival"], ["rival"])]
    assert json.loads(rows[1][8]) == [{"type": "corporation", "text": "Acme Air"}]


def test_questions_follow_the_tag_and_the_watchlists() -> None:
    question = [{"tag": "customer_question", "evidence": "?", "start": 0, "end": 1}]
    asked = contribution(risks=question)
    assert question_changes(contribution(), asked) == ([], ["acme-air"])
    assert question_changes(asked, contribution(risks=question, watchlist_ids=["rival"])) == (["acme-air"], ["rival"])
    assert question_changes(asked, contribution()) == (["acme-air"], [])


def test_the_sample_watchlists_load_for_the_matcher() -> None:
    assert "acme-air" in WatchlistSet.from_file(PACKAGE_DIR / "sample" / "watchlists")


def test_example_records_of_the_new_version_are_marked() -> None:
    assert example("enriched_mention/v4/01_english_complaint_reprocessed")["reprocessed_at"] is not None
    assert example("enriched_mention/v4/02_romanised_hindi")["reprocessed_at"] is None
