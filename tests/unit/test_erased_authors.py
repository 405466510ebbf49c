"""Matching mentions against erasures as the topic's contract says: hashed handle or account id of
the same source, created at or before erased_before; the latest erasure of an identity wins."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from earful.core.erased_authors import ErasedAuthors, author_hash
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import ERASURES

T = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class Record(NamedTuple):
    value: bytes | None
    partition: int = 0
    offset: int = 0


def erasure(erasure_id: int, *identities: str, at: datetime = T, source: str = "twitter") -> bytes:
    codec = Codecs(Settings()).for_topic(ERASURES)
    hashes = sorted(author_hash(source, i) for i in identities)
    return codec.encode({"schema_version": 1, "erasure_id": erasure_id, "source": source, "author_key": hashes[0],
                         "author_hashes": hashes, "erased_before": at, "requested_at": at, "requested_via": "api",
                         "mentions_erased": 0})


def mention(handle: str | None, author_id: str | None, created_at: datetime, source: str = "twitter") -> dict[str, Any]:
    return {"source": source, "author": {"handle": handle, "id": author_id}, "created_at": created_at}


def store() -> ErasedAuthors:
    settings = Settings()
    return ErasedAuthors(settings, Codecs(settings).for_topic(ERASURES), "test")


def test_nothing_is_erased_before_any_erasure() -> None:
    assert not store().erased(mention("jane", "1", T))


def test_handle_or_id_of_the_same_source_up_to_erased_before() -> None:
    erased = store()
    erased.apply([Record(erasure(1, "leaverx", "9001"))])
    assert erased.identities == 2
    assert erased.erased(mention("LeaverX", None, T))  # handles compare in lower case; the boundary is included
    assert erased.erased(mention("renamed", "9001", T - timedelta(days=3)))  # by account id alone
    assert not erased.erased(mention("LeaverX", "9001", T + timedelta(milliseconds=1)))  # a later post is new data
    assert not erased.erased(mention("LeaverX", "9001", T, source="mastodon"))  # the same name elsewhere is someone else
    assert not erased.erased(mention("other", "9002", T))
    assert not erased.erased(mention(None, None, T))


def test_the_latest_erasure_of_an_identity_wins_and_tombstones_forget_nothing() -> None:
    erased = store()
    later = T + timedelta(days=1)
    erased.apply([Record(erasure(2, "leaverx", at=later), offset=0), Record(erasure(1, "leaverx"), offset=1),
                  Record(None, offset=2)])
    assert erased.erased(mention("leaverx", None, later))


def test_a_record_that_does_not_decode_is_skipped() -> None:
    erased = store()
    erased.apply([Record(b"\x00not avro"), Record(erasure(3, "leaverx"), offset=1)])
    assert erased.identities == 1 and erased.erased(mention("leaverx", None, T))
