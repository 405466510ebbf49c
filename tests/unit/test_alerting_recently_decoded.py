"""The decoded records alerting's fan-out keeps for its detector (earful.alerting.agents.RecentlyDecoded)."""

from __future__ import annotations

from earful.alerting.agents import RecentlyDecoded


def test_a_by_watchlist_record_finds_the_record_decoded_from_equal_bytes() -> None:
    kept = RecentlyDecoded(capacity=4)
    record = {"mention": {"mention_id": "m1"}}
    kept.put(b"\xc3\x01avro-bytes", record)
    # The consumer hands detect a new bytes object with the same content: it is the same record.
    assert kept.get(bytes(bytearray(b"\xc3\x01avro-bytes"))) is record
    assert kept.get(b"\xc3\x01other-bytes") is None


def test_the_oldest_records_go_first_once_the_capacity_is_reached() -> None:
    kept = RecentlyDecoded(capacity=3)
    for i in range(5):
        kept.put(f"value-{i}".encode(), {"i": i})
    assert len(kept) == 3
    assert [kept.get(f"value-{i}".encode()) for i in range(5)] == [None, None, {"i": 2}, {"i": 3}, {"i": 4}]


def test_a_value_put_again_keeps_a_single_entry() -> None:
    kept = RecentlyDecoded(capacity=2)
    kept.put(b"a", {"n": 1})
    kept.put(b"a", {"n": 1})
    kept.put(b"b", {"n": 2})
    assert len(kept) == 2 and kept.get(b"a") == {"n": 1}
