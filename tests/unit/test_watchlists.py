"""Watchlists: term matching and validation of the YAML file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from earful.core.errors import ValidationError
from earful.watchlists import KINDS, Match, Watchlist, WatchlistSet

SAMPLE = Path(__file__).resolve().parents[2] / "services" / "earful" / "sample" / "watchlists.yaml"


def _set(*specs: tuple[str, tuple[str, ...]]) -> WatchlistSet:
    return WatchlistSet([Watchlist(wid, wid, "brand", terms) for wid, terms in specs])


def _spans(ws: WatchlistSet, text: str) -> list[tuple[str, str]]:
    return [(m.watchlist_id, text[m.start:m.end]) for m in ws.match(text)]


GLOBEX = _set(("globex", ("Globex",)))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("I love Globex!", ["Globex"]),
        ("globex and GLOBEX and GloBex", ["globex", "GLOBEX", "GloBex"]),
        ("Globex's new router", ["Globex"]),
        ("(Globex)", ["Globex"]),
        ("Globexian empire", []),
        ("MegaGlobex", []),
        ("Globex2", []),
        ("Globex_fan", []),
        ("#Globex", []),  # a bare term does not match inside a hashtag ...
        ("@Globex", []),  # ... or a handle ...
        ("$Globex", []),  # ... or a cashtag
        ("", []),
    ],
    ids=["word", "case-insensitive", "possessive", "parens", "prefix-of-word", "suffix-of-word", "digit",
         "underscore", "hashtag", "handle", "cashtag", "empty"],
)
def test_whole_word_case_insensitive(text: str, expected: list[str]) -> None:
    assert [t for _, t in _spans(GLOBEX, text)] == expected


def test_match_offsets() -> None:
    text = "Flying Acme Air today"
    assert _set(("acme-air", ("Acme Air",))).match(text) == [Match("acme-air", 7, 15)]


@pytest.mark.parametrize(
    "term,text,expected",
    [
        ("Café Noir", "Un café noir, s'il vous plaît", ["café noir"]),
        ("Café Noir", "CAFÉ NOIR!", ["CAFÉ NOIR"]),
        ("Café", "Cafés", []),  # é is a word character: no partial match
        ("Müller", "Müllerstraße", []),
        ("Müller", "bei MÜLLER heute", ["MÜLLER"]),
        ("東京", "東京タワー", []),
        ("Ωmega", "ωmega watches", ["ωmega"]),
        ("Zürich", "🚀Zürich✈️", ["Zürich"]),
    ],
    ids=["accents", "accents-upper", "accent-word-char", "umlaut-in-word", "umlaut-upper", "cjk-word",
         "greek", "emoji-neighbours"],
)
def test_unicode(term: str, text: str, expected: list[str]) -> None:
    ws = _set(("w", (term,)))
    assert [t for _, t in _spans(ws, text)] == expected
    for m in ws.match(text):
        assert text[m.start:m.end].casefold() == term.casefold()


def test_a_term_with_sharp_s_matches_itself() -> None:
    ws = _set(("grossbank", ("Großbank",)))
    assert _spans(ws, "Die Großbank ist pleite") == [("grossbank", "Großbank")]


def test_longest_term_wins() -> None:
    ws = _set(("acme", ("Acme",)), ("acme-air", ("Acme Air",)), ("acme-air-cargo", ("Acme Air Cargo",)))
    assert _spans(ws, "Acme Air rocks") == [("acme-air", "Acme Air")]
    assert _spans(ws, "Acme rocks") == [("acme", "Acme")]
    assert _spans(ws, "acme air cargo is late") == [("acme-air-cargo", "acme air cargo")]
    assert _spans(ws, "Acme Airline") == [("acme", "Acme")]  # "Acme Air" is not a whole word here


def test_longest_term_wins_regardless_of_order() -> None:
    text = "Acme Air rocks"
    a = WatchlistSet([Watchlist("acme-air", "x", "brand", ("Acme Air",)), Watchlist("acme", "x", "brand", ("Acme",))])
    b = WatchlistSet([Watchlist("acme", "x", "brand", ("Acme",)), Watchlist("acme-air", "x", "brand", ("Acme Air",))])
    assert a.match(text) == b.match(text) == [Match("acme-air", 0, 8)]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Love #AcmeAir", [("acme-air", "#AcmeAir")]),
        ("Love #acmeair", [("acme-air", "#acmeair")]),
        ("cc @AcmeAir", [("acme-air", "@AcmeAir")]),
        ("AcmeAir is late", []),  # only the hashtag and the handle are terms here
        ("#AcmeAirlines", []),
        ("x#AcmeAir", []),
        ("@AcmeAir #AcmeAir", [("acme-air", "@AcmeAir"), ("acme-air", "#AcmeAir")]),
        ("$ACME up 5%", [("acme-air", "$ACME")]),
    ],
    ids=["hashtag", "hashtag-case", "handle", "bare-word", "longer-hashtag", "glued", "both", "cashtag"],
)
def test_hashtag_and_handle_terms(text: str, expected: list[tuple[str, str]]) -> None:
    ws = _set(("acme-air", ("#AcmeAir", "@AcmeAir", "$ACME")))
    assert _spans(ws, text) == expected


def test_multiple_watchlists_share_a_term() -> None:
    ws = _set(("acme-air", ("Acme", "Acme Air")), ("acme-group", ("Acme", "Acme Holdings")))
    assert ws.match("Acme results are out") == [Match("acme-air", 0, 4), Match("acme-group", 0, 4)]
    assert ws.match("Acme Holdings results") == [Match("acme-group", 0, 13)]


def test_shared_term_with_different_case() -> None:
    ws = _set(("a", ("ACME",)), ("b", ("acme",)))
    assert ws.match("Acme") == [Match("a", 0, 4), Match("b", 0, 4)]


def test_a_term_listed_twice_matches_once() -> None:
    ws = _set(("globex", ("Globex", "globex")))
    assert ws.match("Globex") == [Match("globex", 0, 6)]


def test_regex_special_characters_are_literal() -> None:
    ws = _set(("cpp", ("C++",)), ("dotnet", (".NET",)), ("qm", ("Acme?",)))
    assert _spans(ws, "C++ and .NET, Acme?") == [("cpp", "C++"), ("dotnet", ".NET"), ("qm", "Acme?")]
    assert _spans(ws, "Acme") == []


def test_empty_set_matches_nothing() -> None:
    assert WatchlistSet([]).match("anything at all") == []


def test_revision_defaults_to_inline() -> None:
    assert WatchlistSet([]).revision == "inline"


# --- from_file --------------------------------------------------------------------------------


GOOD_YAML = """\
watchlists:
  - id: acme-air
    name: Acme Air
    kind: brand
    handles: ["@AcmeAir", "AcmeAirHelp"]
    terms: ["Acme Air", "#AcmeAir"]
  - id: skyjet
    kind: competitor
    terms: [SkyJet, "  "]
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchlists.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_from_file(tmp_path: Path) -> None:
    path = _file(tmp_path, GOOD_YAML)
    ws = WatchlistSet.from_file(path)
    assert list(ws.watchlists) == ["acme-air", "skyjet"]
    acme, skyjet = ws.watchlists["acme-air"], ws.watchlists["skyjet"]
    assert acme == Watchlist("acme-air", "Acme Air", "brand", ("Acme Air", "#AcmeAir"), ("AcmeAir", "AcmeAirHelp"))
    assert skyjet == Watchlist("skyjet", "skyjet", "competitor", ("SkyJet",), ())  # blank terms dropped
    assert ws.revision == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert _spans(ws, "Acme Air beats SkyJet") == [("acme-air", "Acme Air"), ("skyjet", "SkyJet")]


def test_revision_changes_with_the_file(tmp_path: Path) -> None:
    first = WatchlistSet.from_file(_file(tmp_path, GOOD_YAML)).revision
    second = WatchlistSet.from_file(_file(tmp_path, GOOD_YAML + "  # comment\n")).revision
    assert first != second


def test_kind_defaults_to_brand(tmp_path: Path) -> None:
    ws = WatchlistSet.from_file(_file(tmp_path, "watchlists:\n  - id: globex\n    terms: [Globex]\n"))
    assert ws.watchlists["globex"].kind == "brand"
    assert set(KINDS) == {"brand", "competitor", "campaign", "topic"}


BAD_FILES = [
    ("bad-id", "watchlists:\n  - id: Acme Air\n    terms: [x]\n", ["watchlists[0]", "'Acme Air'"]),
    ("missing-id", "watchlists:\n  - terms: [x]\n", ["watchlists[0]", "id ''"]),
    ("id-too-long", f"watchlists:\n  - id: {'a' * 65}\n    terms: [x]\n", ["watchlists[0]"]),
    ("unknown-kind", "watchlists:\n  - id: acme-air\n    terms: [x]\n  - id: globex\n    kind: partner\n    terms: [y]\n",
     ["watchlists[1] (globex)", "'partner'"]),
    ("no-terms", "watchlists:\n  - id: acme-air\n    terms: []\n", ["watchlists[0] (acme-air)", "at least one term"]),
    ("terms-missing", "watchlists:\n  - id: acme-air\n", ["watchlists[0] (acme-air)", "at least one term"]),
    ("blank-terms", "watchlists:\n  - id: acme-air\n    terms: ['  ', '']\n", ["(acme-air)", "at least one term"]),
    ("duplicate-ids", "watchlists:\n  - id: acme-air\n    terms: [x]\n  - id: globex\n    terms: [y]\n"
     "  - id: acme-air\n    terms: [z]\n", ["duplicate watchlist ids acme-air"]),
    ("not-a-list", "watchlists:\n  acme-air: [x]\n", ["top-level 'watchlists:' list"]),
    ("no-watchlists-key", "brands:\n  - id: acme-air\n", ["top-level 'watchlists:' list"]),
    ("top-level-list", "- id: acme-air\n  terms: [x]\n", ["top-level 'watchlists:' list"]),
    ("empty-file", "", ["top-level 'watchlists:' list"]),
    ("entry-not-a-mapping", "watchlists:\n  - acme-air\n", ["watchlists[0]", "expected a mapping"]),
    ("invalid-yaml", "watchlists: [unclosed\n", ["cannot read watchlists"]),
]


@pytest.mark.parametrize("text,fragments", [(t, f) for _, t, f in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
def test_from_file_errors_name_the_entry(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ValidationError) as info:
        WatchlistSet.from_file(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert info.value.kind == "validation_error"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read watchlists"):
        WatchlistSet.from_file(tmp_path / "nope.yaml")


def test_terms_must_be_a_list(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="globex"):
        WatchlistSet.from_file(_file(tmp_path, "watchlists:\n  - id: globex\n    terms: Globex\n"))


# --- the bundled sample -----------------------------------------------------------------------


def test_bundled_sample_loads() -> None:
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} not present")
    ws = WatchlistSet.from_file(SAMPLE)
    assert ws.watchlists
    assert len(ws.revision) == 12
    for w in ws.watchlists.values():
        assert w.kind in KINDS
        for term in w.terms:
            # Every term matches itself exactly, whole.
            assert Match(w.id, 0, len(term)) in ws.match(term), (w.id, term)
        for handle in w.handles:
            assert not handle.startswith("@")
