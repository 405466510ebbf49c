"""The watchlist query language: parser, evaluator, refusals, and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from earful.core.errors import ValidationError
from earful.watchlists import Watchlist, WatchlistSet
from earful.watchlists.query import MAX_OCCURRENCES, Doc, QueryError, _occurrences, compile_query, compile_tree, parse, render
from earful.watchlists.text import tokens


def matches(query: str, text: str, **fields: str) -> bool:
    return compile_query(query).matches(Doc(text, **fields))


# --- how queries are understood (precedence, implicit AND) ------------------------------------

PARSED = [
    ("acme", "acme"),
    ("a b", "(a AND b)"),  # adjacent operands are ANDed
    ("a AND b", "(a AND b)"),
    ("a OR b c", "(a OR (b AND c))"),  # AND binds tighter than OR
    ("a b OR c", "((a AND b) OR c)"),
    ("NOT a b", "(NOT a AND b)"),  # NOT binds tightest
    ("a NOT b", "(a AND NOT b)"),
    ("a NEAR/3 b OR c", "((a NEAR/3 b) OR c)"),  # NEAR binds tighter than AND and OR
    ("a NEAR/3 b c", "((a NEAR/3 b) AND c)"),
    ("a NEAR/1 b ONEAR/2 c", "((a NEAR/1 b) ONEAR/2 c)"),  # left to right
    ("(a OR b) NEAR/5 cust*", "((a OR b) NEAR/5 cust*)"),
    ('"Acme Air" OR #AcmeAir', '("Acme Air" OR #AcmeAir)'),
    ("NOT NOT a", "NOT NOT a"),
    ("((a))", "a"),
    ("a AND (b OR c) AND NOT (d OR e)", "(a AND (b OR c) AND NOT (d OR e))"),
    ("apple lang:en source:twitter", "(apple AND lang:en AND source:twitter)"),
    ("x site:Example.COM/Path", "(x AND site:Example.COM/Path)"),
]


@pytest.mark.parametrize("query,expected", PARSED, ids=[p[0] for p in PARSED])
def test_parsed_form(query: str, expected: str) -> None:
    assert render(parse(query)) == expected


# --- what matches -----------------------------------------------------------------------------

APPLE = '(Apple OR $AAPL OR iPhone* OR MacBook) AND NOT (pie OR juice OR orchard OR cider OR "apple tree")'

# (id, query, fields, texts that must match, texts that must not)
TABLE = [
    ("term", "globex", {}, ["I love Globex!", "GLOBEX down", "Globex's router", "(globex)", "globex\nnext"],
     ["Globexian", "MegaGlobex", "Globex2", "Globex_fan", "#Globex", "@Globex", "$Globex", "", "glo bex"]),
    ("unicode-case", "Straße", {}, ["STRASSE gesperrt", "die straße", "Strasse"], ["Straßenbahn"]),
    ("accents", '"café noir"', {}, ["Un café noir, merci", "CAFÉ NOIR!", "Cafe\u0301 noir"], ["cafe noir", "café au noir"]),
    ("greek", "Ωmega", {}, ["ωmega watches", "ΩMEGA"], ["ωmegas"]),
    ("cjk-whole-token", "東京", {}, ["東京 が好き"], ["東京タワー"]),
    ("emoji-neighbours", "Zürich", {}, ["🚀Zürich✈️"], []),
    ("phrase", '"Acme Air"', {}, ["Flying Acme Air today", "acme-air rocks", "ACME  AIR"],
     ["Acme Airlines", "Air Acme", "Acme. Air is bad", "Acme\nAir"]),
    ("phrase-sentence-break", '"Acme. Air"', {}, ["Acme. Air"], ["Acme Air"]),
    ("phrase-punctuation", "E.ON", {}, ["E.ON raises prices", "e.on", "E-ON"], ["eon", "E. On this day"]),
    ("bare-multiword-is-phrase", "Acme-Air", {}, ["Acme Air is late"], ["Acme is late on Air"]),
    ("wildcard", "crash*", {}, ["it crashed", "CRASHES", "crash"], ["cras", "#crash", "acrash"]),
    ("wildcard-in-phrase", '"acme air*"', {}, ["acme airlines", "acme air"], ["acme jet airlines"]),
    ("hashtag", "#AcmeAir", {}, ["love #acmeair", "#AcmeAir!"], ["AcmeAir", "@AcmeAir", "#AcmeAirlines", "x#AcmeAir"]),
    ("handle", "@AcmeAir", {}, ["cc @AcmeAir", "@acmeair: help"], ["AcmeAir", "#AcmeAir", "mail@acmeair.example"]),
    ("handle-with-dots", "@jane.bsky.social", {}, ["thanks @jane.bsky.social!"], ["thanks @jane"]),
    ("cashtag", "$ACME", {}, ["$ACME up 5%", "$acme"], ["ACME", "$ACMEX", "#ACME", "$5 ACME"]),
    ("hashtag-wildcard", "#acme*", {}, ["#AcmeAir", "#acme"], ["acmeair", "@acmeair"]),
    ("and", "acme AND late", {}, ["acme is late", "late again, acme"], ["acme", "late"]),
    ("implicit-and", "acme late", {}, ["acme is late"], ["acme on time"]),
    ("or", "acme OR globex", {}, ["acme", "globex"], ["initech"]),
    ("not", "acme AND NOT pie", {}, ["acme rocks"], ["acme pie"]),
    ("apple-not-the-fruit", APPLE, {},
     ["Apple unveils the new iPhone", "my iPhones died", "$AAPL up", "MacBook battery"],
     ["apple pie", "Apple juice and apple cider", "an apple tree", "orchard apples"]),
    ("near-either-order", "refund NEAR/2 acme", {}, ["acme gave a refund", "refund from acme", "acme refund"],
     ["acme never ever gave a refund", "refund"]),
    ("near-zero", "acme NEAR/0 air", {}, ["acme air", "air acme"], ["acme the air"]),
    ("onear-ordered", "acme ONEAR/3 refund", {}, ["acme still no refund"], ["refund from acme"]),
    ("near-group", "(acme OR globex) NEAR/3 (outage OR down*)", {}, ["globex is down again", "outage at acme"],
     ["acme is fine; globex", "globex customers report a long and painful outage"]),
    ("near-sentence-counts-one-word", "acme NEAR/1 down", {}, ["acme down", "acme is down"], ["acme. Is down"]),
    ("near-chained", "a NEAR/1 b NEAR/1 c", {}, ["a b c", "c x a b"], ["a b x x c"]),
    ("near-phrase", '"acme air" NEAR/2 delay*', {}, ["acme air flight delayed"], ["acme flight air delayed"]),
    ("lang", "acme lang:en", {"lang": "en"}, ["acme"], []),
    ("lang-other", "acme lang:en", {"lang": "de"}, [], ["acme"]),
    ("lang-unknown", "acme lang:en", {}, [], ["acme"]),
    ("lang-region", "acme lang:pt", {"lang": "pt-BR"}, ["acme"], []),
    ("not-lang", "acme AND NOT lang:en", {}, ["acme"], []),
    ("source", "acme source:twitter", {"source": "Twitter"}, ["acme"], []),
    ("author", "acme author:@Jane", {"author": "jane"}, ["acme"], []),
    ("author-other", "acme author:jane", {"author": "janet"}, [], ["acme"]),
    ("country", "acme country:de", {"country": "DE"}, ["acme"], []),
    ("site-in-text", "site:acme.example", {},
     ["see https://www.acme.example/sale", "careers: https://jobs.acme.example/x.", "www.acme.example"],
     ["acme.example", "https://notacme.example/", "https://acme.example.evil.test/"]),
    ("site-path", "site:acme.example/careers", {}, ["https://acme.example/careers/123"],
     ["https://acme.example/blog"]),
    ("site-mention-url", "site:news.example", {"url": "https://www.news.example/story/1"}, ["anything"], []),
    ("site-exclusion", "acme AND NOT site:careers.acme.example", {},
     ["acme rocks https://acme.example/"], ["acme is hiring https://careers.acme.example/1"]),
    ("operators-inside-phrase-are-words", '"not and or"', {}, ["not and or"], ["not or"]),
    ("quoted-escapes", '"say \\"hi\\""', {}, ['they say "hi"'], ["say hello"]),
]


@pytest.mark.parametrize("query,fields,good,bad", [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_table(query: str, fields: dict[str, str], good: list[str], bad: list[str]) -> None:
    for text in good:
        assert matches(query, text, **fields), f"{query!r} should match {text!r}"
    for text in bad:
        assert not matches(query, text, **fields), f"{query!r} should not match {text!r}"


# --- spans ------------------------------------------------------------------------------------


def test_spans_name_the_term_as_written() -> None:
    q = compile_query('("Acme Air" OR #AcmeAir OR crash*) AND NOT pie')
    text = "Acme Air crashed again #acmeair"
    doc = Doc(text)
    spans = [(s.start, s.end, s.term, text[s.start:s.end]) for s in q.spans(doc)]
    assert spans == [(0, 8, "Acme Air", "Acme Air"), (9, 16, "crash*", "crashed"), (23, 31, "#AcmeAir", "#acmeair")]


def test_spans_of_near_cover_only_the_pair() -> None:
    text = "acme. Later: acme gave a refund"
    q = compile_query("acme NEAR/2 refund")
    assert [(text[s.start:s.end], s.term) for s in q.spans(Doc(text))] == [("acme", "acme"), ("refund", "refund")]
    assert q.spans(Doc(text))[0].start == text.index("acme gave")


def test_a_shorter_term_inside_a_longer_one_is_one_span() -> None:
    text = "Flying Acme Air"
    spans = compile_query('"Acme Air" OR Acme').spans(Doc(text))
    assert [(s.start, s.end, s.term) for s in spans] == [(7, 15, "Acme Air")]


def test_site_on_the_mention_link_has_an_empty_span() -> None:
    q = compile_query("site:news.example")
    assert [(s.start, s.end, s.term) for s in q.spans(Doc("no link here", url="https://news.example/a"))] == [
        (0, 0, "site:news.example")]


def test_site_in_the_text_spans_the_link() -> None:
    text = "read https://www.acme.example/sale)."
    q = compile_query("site:acme.example")
    (span,) = q.spans(Doc(text))
    assert text[span.start:span.end] == "https://www.acme.example/sale"


# --- refusals: position and what was expected --------------------------------------------------

ERRORS = [
    ("empty", "", 0, "the query is empty"),
    ("blank", "   ", 0, "the query is empty"),
    ("not-alone", "NOT pie", 0, "contains none of the query's terms"),
    ("or-not", "apple OR NOT pie", 9, "contains none of the query's terms"),
    ("not-group", "NOT (a OR b)", 0, "contains none of the query's terms"),
    ("field-alone", "lang:en", 0, "only narrow a query"),
    ("fields-only", "lang:en source:twitter", 0, "only narrow a query"),
    ("field-or-term", "acme OR lang:en", 8, "only narrow a query"),
    ("and-at-end", "acme AND", 8, 'expected a term, "phrase", field or ( after AND, found the end of the query'),
    ("or-at-start", "OR acme", 0, "found OR"),
    ("double-op", "acme AND OR globex", 9, "after AND, found OR"),
    ("not-at-end", "acme NOT", 8, "after NOT"),
    ("unclosed", "(acme OR globex", 15, "expected ) to close the ( at column 1"),
    ("stray-close", "acme)", 4, "no ( to close"),
    ("empty-parens", "acme ()", 6, "empty parentheses"),
    ("unterminated", 'acme "air', 5, 'expected a closing "'),
    ("unknown-field", "acme colour:red", 5, "unknown field colour:"),
    ("url-as-field", "https://acme.example", 0, "site:"),
    ("bad-lang", "acme lang:english", 10, "2- or 3-letter language code"),
    ("bad-country", "acme country:GER", 13, "2-letter country code"),
    ("bad-site", "acme site:localhost", 10, "domain like example.com"),
    ("empty-field", "acme lang:", 10, "expected a value after lang:"),
    ("near-without-distance", "a NEAR b", 2, "NEAR/3"),
    ("near-too-far", "a NEAR/500 b", 2, "at most 100"),
    ("near-with-not", "a NEAR/2 NOT b", 9, "NOT b"),
    ("near-with-field", "a NEAR/2 lang:en", 9, "lang:en"),
    ("near-with-and", "(a b) NEAR/2 c", 1, "(a AND b)"),
    ("lowercase-and", "apple and pie", 6, "operators are written in capitals (AND)"),
    ("lowercase-or", "apple or pie", 6, "(OR)"),
    ("lowercase-near", "apple near/3 pie", 6, "(NEAR)"),
    ("short-wildcard", "ab*", 0, "at least 3 letters before *"),
    ("inner-wildcard", "cr*sh", 2, "may only end a word"),
    ("lone-star", "acme *", 5, "may only end a word"),
    ("no-letters", "acme ---", 5, "no letters or digits"),
    ("empty-phrase", 'acme ""', 5, "no letters or digits"),
    ("link-as-term", "www.acme.example", 0, "site:acme.example"),
    ("glued", "x#tag", 1, "glued"),
]


@pytest.mark.parametrize("query,position,fragment", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_refused_with_position(query: str, position: int, fragment: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(query)
    err = info.value
    assert fragment in err.message, err.message
    assert err.position == position, (err.position, err.message)
    assert str(err).startswith(f"column {position + 1}: ")
    assert isinstance(err, ValidationError) and err.kind == "query_error"
    caret_line = err.pointer().splitlines()[1]
    assert caret_line.index("^") == 2 + position


def test_nesting_depth_is_bounded() -> None:
    with pytest.raises(QueryError, match="nested"):
        compile_query("(" * 100 + "a" + ")" * 100)


def test_very_long_query_is_refused() -> None:
    with pytest.raises(QueryError, match="longer than"):
        compile_query(" OR ".join(["acme"] * 10_000))


# --- tokenizer --------------------------------------------------------------------------------


def test_tokens() -> None:
    text = "Hi @AcmeAir, #AcmeAir! $ACME up. x#no jane@acme.example https://www.acme.example/a?b=1). Straße"
    got = [(t.kind, t.key, text[t.start:t.end], t.pos) for t in tokens(text)]
    assert got == [
        ("word", "hi", "Hi", 0), ("handle", "@acmeair", "@AcmeAir", 1), ("hashtag", "#acmeair", "#AcmeAir", 2),
        ("cashtag", "$acme", "$ACME", 4), ("word", "up", "up", 5), ("word", "x", "x", 7),
        ("glued", None, "#no", 8), ("word", "jane", "jane", 9), ("glued", None, "@acme.example", 10),
        ("url", None, "https://www.acme.example/a?b=1", 11), ("word", "strasse", "Straße", 13),
    ]


# --- properties -------------------------------------------------------------------------------

VOCAB = ["acme", "air", "pie", "globex", "late", "refund"]
LEAVES = [*VOCAB, "#acme", "@acme", "$acme", '"acme air"', '"late refund"', "acm*", "refu*", "lang:en", "source:news", "site:acme.example"]


def _query(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(LEAVES)
    if depth == 0:
        return leaf
    sub = _query(depth - 1)
    near_side = st.sampled_from([*VOCAB, '"acme air"', "acm*", "#acme"])
    return st.one_of(
        leaf,
        st.tuples(sub, sub).map(lambda p: f"({p[0]} AND {p[1]})"),
        st.tuples(sub, sub).map(lambda p: f"({p[0]} OR {p[1]})"),
        st.tuples(sub, sub).map(lambda p: f"({p[0]} {p[1]})"),
        sub.map(lambda q: f"NOT {q}"),
        st.tuples(near_side, st.sampled_from(["NEAR", "ONEAR"]), st.integers(0, 3), near_side)
        .map(lambda p: f"({p[0]} {p[1]}/{p[2]} {p[3]})"),
    )


QUERIES = _query(3)
WORDS = st.sampled_from([*VOCAB, "#acme", "@acme", "$acme", "acmes", "refunds", "the", "x", "https://acme.example/a", "https://other.example/"])
SEPARATORS = st.sampled_from([" ", " ", ", ", ". ", "\n", "-", "!"])
TEXTS = st.lists(st.tuples(WORDS, SEPARATORS), max_size=12).map(lambda ws: "".join(w + s for w, s in ws))
FIELDS = st.fixed_dictionaries({}, optional={"lang": st.sampled_from(["en", "de"]),
                                             "source": st.sampled_from(["news", "twitter"]),
                                             "url": st.sampled_from(["https://acme.example/x", "https://b.example/"])})


@settings(max_examples=400, deadline=None)
@given(QUERIES, TEXTS, FIELDS)
def test_not_q_matches_exactly_when_q_does_not(query: str, text: str, fields: dict[str, str]) -> None:
    positive = compile_tree(parse(query), query, allow_broad=True)
    negated_text = f"NOT ({query})"
    negated = compile_tree(parse(negated_text), negated_text, allow_broad=True)
    doc = Doc(text, **fields)
    assert negated.matches(doc) is (not positive.matches(doc))


@settings(max_examples=300, deadline=None)
@given(st.lists(QUERIES, min_size=1, max_size=6), TEXTS, FIELDS)
def test_the_prefilter_never_loses_a_match(queries: list[str], text: str, fields: dict[str, str]) -> None:
    accepted = []
    for i, q in enumerate(queries):
        try:
            compile_query(q)
        except QueryError:
            continue
        accepted.append(Watchlist(f"w{i}", f"w{i}", "brand", query=q))
    assume(accepted)
    ws = WatchlistSet(accepted)
    doc = Doc(text, **fields)
    expected = sorted(w.id for w in accepted if w.compiled.matches(doc))
    assert ws.matched_ids(ws.match(text, **fields)) == expected


@settings(max_examples=300, deadline=None)
@given(QUERIES)
def test_rendering_is_a_fixed_point(query: str) -> None:
    once = render(parse(query))
    assert render(parse(once)) == once


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([*list('ab #@$*"():/.-NOTANDRE1é'), "NEAR/2", " OR ", "lang:", "site:", "ß"]),
                max_size=30).map("".join))
def test_any_input_is_a_query_or_a_query_error(query: str) -> None:
    try:
        compile_query(query)
    except QueryError as exc:
        assert 0 <= exc.position <= len(query)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_a_matched_span_is_the_term_in_the_text(text: str) -> None:
    q = compile_query('acme OR "acme air" OR #acme OR refu*')
    doc = Doc(text)
    if q.matches(doc):
        for span in q.spans(doc):
            piece = text[span.start:span.end].lower()
            assert piece.startswith(span.term.lower().rstrip("*")[:4].lstrip('"'))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_keys_are_the_folded_tokens_whatever_the_text(text: str) -> None:
    from earful.watchlists.text import fold

    for t in tokens(text):
        if t.key is not None:
            assert t.key == fold(text[t.start:t.end]), (text, t)


# --- hostile queries: bounded work whatever the text ------------------------------------------


def _brute_near(positions_a: list[int], positions_b: list[int], distance: int, ordered: bool) -> bool:
    """Reference: some pair of single-token occurrences within `distance` words (in order if asked)."""
    return any(0 <= b - a - 1 <= distance or (not ordered and 0 <= a - b - 1 <= distance)
               for a in positions_a for b in positions_b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=40), st.integers(0, 4), st.booleans())
def test_near_agrees_with_a_brute_force_reference(words: list[str], distance: int, ordered: bool) -> None:
    op = "ONEAR" if ordered else "NEAR"
    query = compile_tree(parse(f"x {op}/{distance} y"), "", allow_broad=True)
    xs = [i for i, w in enumerate(words) if w == "x"]
    ys = [i for i, w in enumerate(words) if w == "y"]
    assert query.matches(Doc(" ".join(words))) == _brute_near(xs, ys, distance, ordered)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=30), st.integers(0, 3))
def test_chained_near_agrees_with_a_brute_force_reference(words: list[str], distance: int) -> None:
    """a NEAR/d b NEAR/d a: some b with an a on one side within d and an a ... (chained by intervals)."""
    query = compile_tree(parse(f"a NEAR/{distance} b NEAR/{distance} a"), "", allow_broad=True)

    def occurrences(pattern: list[str]) -> set[tuple[int, int]]:
        """Intervals of every occurrence of the chain, by exhaustive search (small inputs only)."""
        found: set[tuple[int, int]] = {(i, i) for i, w in enumerate(words) if w == pattern[0]}
        for term in pattern[1:]:
            nxt = set()
            for lo, hi in found:
                for j, w in enumerate(words):
                    if w == term and (0 <= j - hi - 1 <= distance or 0 <= lo - j - 1 <= distance):
                        nxt.add((min(lo, j), max(hi, j)))
            found = nxt
        return found

    assert query.matches(Doc(" ".join(words))) == bool(occurrences(["a", "b", "a"]))


def test_chained_near_work_is_bounded() -> None:
    """`a NEAR/100 a NEAR/100 a` on a text of one repeated word: every combination grew exponentially."""
    tree = parse(" NEAR/100 ".join(["a"] * 8))
    doc = Doc(" ".join(["a"] * 2000))
    found = _occurrences(tree)(doc)
    assert 0 < len(found) <= MAX_OCCURRENCES
    assert len({(lo, hi) for lo, hi, _ in found}) == len(found)
    assert compile_tree(tree, "", allow_broad=True).matches(doc)


@pytest.mark.parametrize(("query", "fragment"), [
    (" NEAR/5 ".join(["a"] * 10), "NEAR/ONEAR operators"),
    ("NOT " * 65 + "a", "NOTs in a row"),
    ("(" * 70 + "a" + ")" * 70, "nested parentheses"),
])
def test_query_complexity_is_bounded_at_validation(query: str, fragment: str) -> None:
    with pytest.raises(QueryError, match=fragment):
        compile_query(query)
