"""The words Earful's events are made of: risk tags, intent tags and entity types.

One definition for the enrichment rules and models that produce them, the query API that
validates filters on them, the detector that alerts on them, the seeder that fakes them and the
Avro schema's field docs that describe them (a test checks the schema says the same).
"""

from __future__ import annotations

#: Risk tags: a mention that may hurt the brand, by kind of harm.
RISK_TAGS: tuple[str, ...] = ("reputational", "regulatory", "legal_privacy", "operational")
#: Intent tags: what the author wants from the brand.
INTENT_TAGS: tuple[str, ...] = ("customer_question", "complaint", "purchase_intent")
#: Every tag enrichment may put on a mention, in the order the schema documents them.
TAGS: tuple[str, ...] = RISK_TAGS + INTENT_TAGS
#: The risk tags that page someone by default (risk_mention rule).
ALERTING_RISK_TAGS: tuple[str, ...] = ("legal_privacy", "regulatory")

#: Entity types the NER model reports (the WNUT-17 types).
NER_ENTITY_TYPES: tuple[str, ...] = ("person", "location", "corporation", "product", "creative-work", "group")
#: Entity types the rules find from a post's syntax.
SYNTAX_ENTITY_TYPES: tuple[str, ...] = ("hashtag", "mention", "cashtag", "url")
#: Every entity type of an enriched mention.
ENTITY_TYPES: tuple[str, ...] = NER_ENTITY_TYPES + SYNTAX_ENTITY_TYPES
#: Longest entity text kept. Entity texts are keys of storage's indexes and rollups, which refuse
#: keys of more than ~2,700 bytes: a 3 KB "hashtag" would be accepted by ingest and then lost.
MAX_ENTITY_CHARS = 256


def prose(words: tuple[str, ...]) -> str:
    """'a, b or c': how the schema's docs list a vocabulary."""
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)
