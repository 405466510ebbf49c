"""Rule-based parts of enrichment: social entities (hashtags, handles, cashtags, URLs) and risk tags.

Risk and intent tags come from small multilingual term lists, each tag carrying the span that
triggered it; they are deliberately transparent (a brand team can read why a tag is there).
"""

from __future__ import annotations

import re
from typing import Any

RISK_RULES_VERSION = "earful-risk-rules@1"

SOCIAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d_]\w*")),
    ("mention", re.compile(r"(?<![\w@])@\w{1,30}")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Za-z]{1,6}(?![\w])")),
)

RISK_TERMS: dict[str, tuple[str, ...]] = {
    "legal_privacy": (
        "data breach", "breach", "leak", "leaked", "leaks", "privacy", "gdpr", "lawsuit", "sue", "suing", "class action",
        "personal data", "hacked", "filtración", "datos personales", "demanda", "datenleck", "datenschutz", "klage",
        "fuite de données", "fuite", "données personnelles", "plainte", "vazamento", "processo", "dados pessoais",
    ),
    "regulatory": (
        "regulator", "regulators", "fine", "fined", "investigation", "compliance", "ftc", "authority", "sanction",
        "regulador", "multa", "investigación", "behörde", "bußgeld", "ermittlung", "régulateur", "amende", "enquête",
        "regulador", "investigação", "cnil", "anpd",
    ),
    "operational": (
        "outage", "down", "not working", "cancelled", "canceled", "delayed", "stranded", "system failure", "crash",
        "caída", "cancelado", "retrasado", "ausfall", "gestrichen", "verspätet", "panne", "annulé", "retardé",
        "fora do ar", "cancelado", "atrasado",
    ),
    "reputational": (
        "boycott", "scandal", "disgrace", "shame", "worst", "never again", "boicot", "escándalo", "skandal",
        "nie wieder", "scandale", "honte", "escândalo", "vergonha",
    ),
    "complaint": (
        "terrible", "awful", "refund", "worst", "unacceptable", "disappointed", "complaint", "horrible", "reembolso",
        "inaceptable", "erstattung", "unverschämt", "remboursement", "inadmissible", "reclamação", "péssimo",
    ),
    "purchase_intent": (
        "want to buy", "going to buy", "thinking of buying", "should i buy", "where can i buy", "book a flight",
        "sign up", "quiero comprar", "will kaufen", "je veux acheter", "quero comprar",
    ),
}

_QUESTION_START = re.compile(
    r"(?i)^(how|what|when|where|why|who|can|could|is|are|does|do|will|cómo|qué|cuándo|dónde|wie|was|wann|wo|"
    r"comment|quand|où|pourquoi|como|quando|onde|por que)\b"
)

_RISK_REGEX: dict[str, re.Pattern[str]] = {
    tag: re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True)) + r")(?!\w)",
                    re.IGNORECASE)
    for tag, terms in RISK_TERMS.items()
}


def social_entities(text: str) -> list[dict[str, Any]]:
    """Hashtags, @handles, $cashtags and URLs with code-point offsets (URLs win overlaps)."""
    spans: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []
    for etype, pattern in SOCIAL_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            spans.append({"text": m.group(0), "type": etype, "start": m.start(), "end": m.end(), "origin": "rules"})
    return sorted(spans, key=lambda s: s["start"])


def risk_tags(text: str) -> list[dict[str, Any]]:
    """Risk and intent tags with their evidence; one tag per category (its first evidence)."""
    tags = []
    for tag, regex in _RISK_REGEX.items():
        m = regex.search(text)
        if m:
            tags.append({"tag": tag, "evidence": m.group(0), "start": m.start(), "end": m.end()})
    question = _question_span(text)
    if question:
        tags.append({"tag": "customer_question", **question})
    return tags


def _question_span(text: str) -> dict[str, Any] | None:
    for sentence in re.finditer(r"[^.!?]*\?", text):
        chunk = sentence.group(0)
        stripped = chunk.lstrip()
        offset = sentence.start() + len(chunk) - len(stripped)
        # Skip a leading @handle ("@AcmeAir how do I ...?") before looking for the question word.
        lead = re.match(r"(?:@\w+\s+)*[¿¡]?", stripped)
        body = stripped[lead.end():] if lead else stripped
        if _QUESTION_START.match(body):
            return {"evidence": stripped, "start": offset, "end": sentence.end()}
    return None
