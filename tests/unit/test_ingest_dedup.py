"""The ingest dedup memory: exactly the keys a plain reference remembers (oldest first out, each
for `ttl_s` after its latest delivery), in a table allocated once, so a long-running ingest's memory
stays flat as it fills (it grew by about 20 MiB at the default size before)."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from earful.ingest.publisher import Dedup


class Reference:
    """The behaviour, written plainly."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self.max_entries, self.ttl_s = max_entries, ttl_s
        self.seen: OrderedDict[bytes, float] = OrderedDict()  # first arrival order → latest delivery

    def add(self, keys: list[bytes], now: float) -> None:
        for key in keys:
            if key in self.seen:
                self.seen[key] = now
                continue
            if len(self.seen) == self.max_entries:
                self.seen.popitem(last=False)
            self.seen[key] = now

    def contains(self, key: bytes, now: float) -> bool:
        return key in self.seen and now - self.seen[key] < self.ttl_s


def key(n: int, collide: bool = False) -> bytes:
    """A 16-byte key; `collide` keeps the low bits that pick the table slot equal, so probes chain."""
    digest = hashlib.blake2b(str(n).encode(), digest_size=16).digest()
    return digest[:8] + (n << 20).to_bytes(8, "big") if collide else digest


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 12), collide=st.booleans(),
       steps=st.lists(st.tuples(st.lists(st.integers(0, 30), max_size=6), st.integers(0, 3)), max_size=60))
def test_it_remembers_exactly_what_the_reference_does(capacity: int, collide: bool,
                                                      steps: list[tuple[list[int], int]]) -> None:
    clock = [0.0]
    dedup, ref = Dedup(capacity, ttl_s=5.0, clock=lambda: clock[0]), Reference(capacity, 5.0)
    for numbers, wait in steps:
        clock[0] += wait
        keys = [key(n, collide) for n in numbers]
        dedup.add(keys)
        ref.add(keys, clock[0])
        assert len(dedup) == len(ref.seen)
        for n in range(31):
            assert (key(n, collide) in dedup) == ref.contains(key(n, collide), clock[0]), n


def test_zero_entries_remembers_nothing() -> None:
    dedup = Dedup(0, 60.0)
    dedup.add([key(1)])
    assert key(1) not in dedup and len(dedup) == 0


def test_its_memory_does_not_grow_as_it_fills() -> None:
    tracemalloc.start()
    try:
        dedup = Dedup(50_000, 3600.0)
        empty = tracemalloc.get_traced_memory()[0]
        for start in range(0, 120_000, 1000):  # fills, then keeps forgetting the oldest
            dedup.add([key(n) for n in range(start, start + 1000)])
        full = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(dedup) == 50_000 and key(119_999) in dedup and key(0) not in dedup
    assert full - empty < 64 * 1024, full - empty
