"""Net sentiment, defined once for the dashboard, the KPIs, campaigns and the report.

Net sentiment is (positive − negative) / (positive + negative), −1 … +1: the balance of the
mentions that take a side, as social-listening tools report it (a net sentiment score). Neutral
and unknown mentions are left out, so a period where most posts are news does not read as
lukewarm. It is 0 when no mention is positive or negative. A period without any mention has no
net sentiment at all: callers say "no data" for it (`of_period`).
"""

from __future__ import annotations

__all__ = ["net_sentiment", "of_period"]


def net_sentiment(positive: float, negative: float) -> float:
    """(positive − negative) / (positive + negative); 0 when both are 0."""
    polar = positive + negative
    return (positive - negative) / polar if polar else 0.0


def of_period(mentions: float, positive: float, negative: float) -> float | None:
    """The net sentiment of a period with `mentions` mentions; None when it has none (no data)."""
    return net_sentiment(positive, negative) if mentions else None
