"""Watchlists: the model, YAML folders, the compiled set, Avro records, and the CLI."""

from __future__ import annotations

import io
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest

from earful.cli import main as earful_main
from earful.core.errors import ValidationError
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import WATCHLISTS
from earful.watchlists import KINDS, AlertRule, Match, QuietHours, Watchlist, WatchlistSet, parse_watchlist, terms_query
from earful.watchlists.files import WatchlistFolder, load_partial, load_watchlists
from earful.watchlists.model import from_record, to_document, to_record
from earful.watchlists.query import Doc

SAMPLE = Path(__file__).resolve().parents[2] / "services" / "earful" / "sample" / "watchlists"


# --- the bundled sample -------------------------------------------------------------------------


def test_bundled_sample_folder() -> None:
    ws = WatchlistSet.from_file(SAMPLE)
    assert list(ws.watchlists) == ["acme-air", "globex", "initech", "skyjet"]
    assert Settings().watchlists_dir == SAMPLE
    for w in ws.watchlists.values():
        assert w.kind in KINDS and w.query and w.handles
        for handle in w.handles:  # every brand hears replies to its own accounts
            assert ws.matched_ids(ws.match(f"thanks @{handle}!")) == [w.id]
    acme = ws.watchlists["acme-air"]
    assert acme.owner_team == "comms-emea" and acme.response_sla_s == 1800 and acme.labels == {"region": "emea", "tier": "1"}
    assert acme.kind == "brand" and acme.alert_rules == ()  # the brand rule pack applies
    assert ws.watchlists["skyjet"].rule("volume_spike").quiet_hours == QuietHours("22:00", "07:00", "Europe/Berlin")


@pytest.mark.parametrize("text,expected", [
    ("Flying ACME AIR today, then skyjet", ["acme-air", "skyjet"]),
    ("the acme of my career, a sky jet stream, #AcmeAirlines", []),
    ("Acme Air is hiring! #AcmeAirJobs", []),  # job adverts are excluded
    ("Acme Air careers: https://careers.acme-air.example/42", []),
    ("Globex Corporation from the Simpsons was the best episode", []),
    ("Globex Corporation raised prices", ["globex"]),
    ("Initech in Office Space was hilarious", []),
    ("$ACME and $GLBX both up", ["acme-air", "globex"]),
])
def test_sample_queries(text: str, expected: list[str]) -> None:
    ws = WatchlistSet.from_file(SAMPLE)
    assert ws.matched_ids(ws.match(text)) == expected


# --- the model --------------------------------------------------------------------------------


def test_terms_are_a_shorthand_for_a_query() -> None:
    w = Watchlist("acme-air", "Acme Air", "brand", ("Acme Air", "#AcmeAir", "@AcmeAir", "$ACME", 'say "hi"'))
    assert w.query == '"Acme Air" OR #AcmeAir OR @AcmeAir OR $ACME OR "say \\"hi\\""'
    assert terms_query(["C++"]) == '"C++"'
    ws = WatchlistSet([w])
    assert ws.match("cc @AcmeAir about Acme Air") == [Match("acme-air", 3, 11, "@AcmeAir"), Match("acme-air", 18, 26, "Acme Air")]


def test_revision_depends_on_content_only() -> None:
    doc = {"id": "acme", "name": "Acme", "query": "acme OR #acme", "labels": {"tier": 1}}
    a = parse_watchlist(doc, "a")
    b = parse_watchlist({**doc, "labels": {"tier": "1"}, "kind": "brand", "handles": []}, "b")
    assert a == b and a.revision == b.revision and len(a.revision) == 12
    assert parse_watchlist({**doc, "query": "acme"}, "c").revision != a.revision
    assert parse_watchlist({**doc, "name": "ACME"}, "c").revision != a.revision
    # terms and the query they stand for are the same watchlist
    assert parse_watchlist({"id": "acme", "name": "Acme", "terms": ["acme", "#acme"], "labels": {"tier": 1}}, "d").revision \
        == parse_watchlist({**doc, "query": '"acme" OR #acme'}, "e").revision


def test_rule_lookup() -> None:
    w = parse_watchlist({"id": "a", "query": "a", "alert_rules": [
        {"rule": "volume_spike", "enabled": False}, {"rule": "viral_post", "severity": "info"}]}, "x")
    assert w.rule("volume_spike") is None  # disabled
    assert w.rule("viral_post") == AlertRule("viral_post", severity="info")
    assert w.rule("volume_drop") is None


def test_avro_round_trip() -> None:
    codec = Codecs(Settings()).for_topic(WATCHLISTS)
    for w in WatchlistSet.from_file(SAMPLE).watchlists.values():
        record = to_record(w, datetime(2026, 11, 2, tzinfo=timezone.utc), "file:x.yaml")
        decoded = codec.decode(codec.encode(record))
        assert decoded["revision"] == w.revision and decoded["updated_by"] == "file:x.yaml"
        assert from_record(decoded) == w


def test_records_are_validated() -> None:
    codec = Codecs(Settings()).for_topic(WATCHLISTS)
    w = WatchlistSet.from_file(SAMPLE).watchlists["skyjet"]
    record = dict(to_record(w, datetime.now(timezone.utc), None), query="NOT skyjet")
    with pytest.raises(ValidationError, match=r"record 'skyjet'.*query: column 1"):
        from_record(codec.decode(codec.encode(record)))


def test_document_omits_defaults_but_keeps_the_query() -> None:
    w = parse_watchlist({"id": "a", "query": "a OR b"}, "x")
    assert to_document(w) == {"id": "a", "name": "a", "kind": "brand", "query": "a OR b"}


# --- YAML files -------------------------------------------------------------------------------


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    for name, body in files.items():
        (folder / name).write_text(body, encoding="utf-8")
    return folder


GOOD = "id: acme\nname: Acme\nquery: >-\n  acme OR #acme\nhandles: ['@acme']\n"

BAD_FOLDERS = [
    ("bad-id", {"Acme.yaml": "id: Acme Air\nquery: a\n"}, ["Acme.yaml", "id: String should match pattern"]),
    ("unknown-key", {"a.yaml": "id: a\nquerry: a\n"}, ["a.yaml (a)", "querry: unknown key"]),
    ("unknown-kind", {"a.yaml": "id: a\nkind: partner\nquery: a\n"}, ["kind: Input should be 'brand'"]),
    ("query-and-terms", {"a.yaml": "id: a\nquery: a\nterms: [a]\n"}, ["either query or terms, not both"]),
    ("no-query", {"a.yaml": "id: a\n"}, ["needs a query"]),
    ("blank-terms", {"a.yaml": "id: a\nterms: ['  ']\n"}, ["terms: needs at least one non-blank term"]),
    ("bad-query", {"a.yaml": "id: a\nquery: apple AND\n"},
     ["a.yaml (a): query: column 10: expected a term", "  apple AND\n           ^"]),
    ("broad-query", {"a.yaml": "id: a\nquery: NOT apple\n"}, ["column 1", "contains none of the query's terms"]),
    ("comment-ate-the-query", {"a.yaml": "id: a\nquery: Foo OR #Foo\n"}, ["after OR", "' #' starts a comment"]),
    ("duplicate-key", {"a.yaml": "id: a\nquery: a\nquery: b\n"}, ["invalid YAML", "the key 'query' is given twice", "line 3"]),
    ("invalid-yaml", {"a.yaml": "id: a\nquery: [unclosed\n"}, ["a.yaml: invalid YAML", "line"]),
    ("not-a-mapping", {"a.yaml": "- a\n- b\n"}, ["expected a mapping of watchlist keys"]),
    ("name-mismatch", {"acme.yaml": "id: globex\nquery: globex\n"}, ["must be named globex.yaml"]),
    ("list-in-folder", {"all.yaml": "watchlists:\n  - id: a\n    query: a\n"}, ["one watchlist per file"]),
    ("reserved-label", {"a.yaml": "id: a\nquery: a\nlabels: {severity: high}\n"}, ["label name 'severity' is reserved"]),
    ("bad-label", {"a.yaml": "id: a\nquery: a\nlabels: {my-label: x}\n"}, ["label name 'my-label'"]),
    ("bad-severity", {"a.yaml": "id: a\nquery: a\nalert_rules: [{rule: volume_spike, severity: urgent}]\n"},
     ["alert_rules[0].severity: Input should be 'info', 'warning' or 'critical'"]),
    ("unknown-rule", {"a.yaml": "id: a\nquery: a\nalert_rules: [{rule: sentiment}]\n"}, ["alert_rules[0].rule"]),
    ("bad-zone", {"a.yaml": "id: a\nquery: a\nalert_rules: [{rule: viral_post, quiet_hours: {start: '22:00', end: '06:00',"
                            " timezone: Mars/Olympus}}]\n"}, ["unknown time zone 'Mars/Olympus'"]),
    ("bad-sla", {"a.yaml": "id: a\nquery: a\nresponse_sla_s: 0\n"}, ["response_sla_s: Input should be greater than 0"]),
    ("bad-handle", {"a.yaml": "id: a\nquery: a\nhandles: ['two words']\n"}, ["handle 'two words'"]),
    ("not-utf8", {"a.yaml": "id: a\nquery: caf\udce9\n"}, []),  # written below as Latin-1 bytes
]


@pytest.mark.parametrize("files,fragments", [b[1:] for b in BAD_FOLDERS], ids=[b[0] for b in BAD_FOLDERS])
def test_bad_files_are_refused_with_every_problem_named(tmp_path: Path, files: dict[str, str], fragments: list[str]) -> None:
    folder = tmp_path / "watchlists"
    folder.mkdir()
    for name, body in files.items():
        (folder / name).write_bytes(body.encode("utf-8", errors="surrogateescape"))
    (folder / "good.yaml").write_text(GOOD.replace("id: acme", "id: good"), encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        load_watchlists(folder)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    if not fragments:
        assert "not UTF-8" in message
    found, errors = load_partial(folder)
    assert [w.id for w, _ in found] == ["good"] and errors  # the good file still loads


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a.yaml": "id: a\nquery: NOT x\n", "b.yaml": "id: b\nkind: x\nquery: b\n", "c.yaml": GOOD.replace("acme", "c")})
    with pytest.raises(ValidationError) as info:
        load_watchlists(folder)
    assert "a.yaml (a)" in str(info.value) and "b.yaml (b)" in str(info.value)


def test_list_file_and_hidden_files(tmp_path: Path) -> None:
    path = tmp_path / "watchlists.yaml"
    path.write_text("watchlists:\n  - id: a\n    terms: [a]\n  - id: b\n    query: b\n", encoding="utf-8")
    assert [w.id for w in load_watchlists(path)] == ["a", "b"]
    path.write_text("watchlists:\n  - id: a\n    terms: [a]\n  - id: a\n    query: b\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="duplicate watchlist id 'a'"):
        load_watchlists(path)
    folder = _folder(tmp_path, {"acme.yaml": GOOD, ".acme.yaml.tmp": "garbage: [", "notes.txt": "x"})
    (folder / "..data").mkdir()  # a Kubernetes ConfigMap mount
    assert [w.id for w in load_watchlists(folder)] == ["acme"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such folder or file"):
        load_watchlists(tmp_path / "nope")


def test_unquoted_yaml_times_are_read_as_times(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a.yaml": "id: a\nquery: a\nalert_rules:\n  - rule: viral_post\n"
                                          "    quiet_hours: {start: 22:00, end: 07:30}\n"})
    (w,) = load_watchlists(folder)
    assert w.alert_rules[0].quiet_hours == QuietHours("22:00", "07:30", "UTC")


def test_write_back_round_trip(tmp_path: Path) -> None:
    folder = WatchlistFolder(_folder(tmp_path, {}))
    w = parse_watchlist({"id": "acme", "name": "Acme", "query": '"Acme Air" OR #AcmeAir', "labels": {"tier": "1"},
                         "alert_rules": [{"rule": "volume_spike", "thresholds": {"min_count": 5}}]}, "x")
    path = folder.write(w)
    assert path == folder.path / "acme.yaml"
    assert load_watchlists(folder.path) == [w]
    assert folder.current_revision("acme") == w.revision
    assert not list(folder.path.glob(".*.tmp"))
    assert folder.remove("acme") == path and not path.exists()
    assert folder.remove("acme") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_is_not_written(tmp_path: Path) -> None:
    folder = WatchlistFolder(_folder(tmp_path, {"acme.yaml": GOOD}))
    folder.path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert not folder.writable
        assert folder.write(load_watchlists(folder.path)[0]) is None
    finally:
        folder.path.chmod(stat.S_IRWXU)


def test_a_list_file_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text("watchlists:\n  - id: a\n    query: a\n", encoding="utf-8")
    folder = WatchlistFolder(path)
    assert not folder.writable and folder.write(load_watchlists(path)[0]) is None


# --- the compiled set -------------------------------------------------------------------------


def test_matches_are_in_text_order_across_watchlists() -> None:
    ws = WatchlistSet([Watchlist("b", "b", "brand", query="acme OR late"), Watchlist("a", "a", "brand", query="acme")])
    assert ws.match("late acme") == [Match("b", 0, 4, "late"), Match("b", 5, 9, "acme"), Match("a", 5, 9, "acme")]
    assert ws.matched_ids(ws.match("late acme")) == ["a", "b"]


def test_fields_reach_the_queries() -> None:
    ws = WatchlistSet([Watchlist("en", "en", "brand", query="acme lang:en"),
                       Watchlist("news", "news", "brand", query="acme source:news country:DE author:jane"),
                       Watchlist("site", "site", "brand", query="site:acme.example")])
    assert ws.matched_ids(ws.match("acme", lang="en")) == ["en"]
    assert ws.matched_ids(ws.match("acme", source="news", country="de", author="@Jane")) == ["news"]
    assert ws.match("no link", url="https://shop.acme.example/x") == [Match("site", 0, 0, "site:acme.example")]
    assert ws.match("acme") == []


def test_only_candidates_are_evaluated() -> None:
    many = [Watchlist(f"brand-{i}", f"B{i}", "brand", query=f'"brand{i} air" OR #brand{i} OR brand{i}x*') for i in range(1000)]
    ws = WatchlistSet(many)
    doc = Doc("flying brand17 air today, #brand3 and brand900xyz")
    assert ws.candidates(doc) == [3, 17, 900]
    assert ws.matched_ids(ws.match(doc.text)) == ["brand-17", "brand-3", "brand-900"]


def test_sets_are_immutable_snapshots() -> None:
    a = WatchlistSet([Watchlist("a", "a", "brand", query="acme")])
    b = WatchlistSet([Watchlist("a", "a", "brand", query="globex")])
    assert a.revision != b.revision and a.current() is a
    assert a.matched_ids(a.match("acme")) == ["a"] and b.match("acme") == []
    assert WatchlistSet().match("anything") == [] and len(WatchlistSet()) == 0


# --- the CLI ----------------------------------------------------------------------------------


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = earful_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["watchlists", "validate", str(SAMPLE)], capsys)
    assert code == 0 and "4 watchlist(s) valid" in out and "acme-air" in out and not err
    bad = _folder(tmp_path, {"a.yaml": "id: a\nquery: apple and pie\n", "b.yaml": GOOD.replace("acme", "b")})
    code, out, err = _cli(["watchlists", "validate", str(bad)], capsys)
    assert code == 1 and "operators are written in capitals" in err and "^" in err and "1 problem(s)" in err
    assert "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(["watchlists", "validate", str(empty)], capsys)
    assert code == 1 and "no watchlist files" in err


def test_cli_test(capsys: pytest.CaptureFixture[str]) -> None:
    query = '(Apple OR iPhone*) AND NOT (pie OR juice) lang:en'
    code, out, _ = _cli(["watchlists", "test", query, "--text", "My iPhone broke", "--lang", "en"], capsys)
    assert code == 0
    assert "parsed: ((Apple OR iPhone*) AND NOT (pie OR juice) AND lang:en)" in out
    assert "MATCH     My [iPhone] broke   (iPhone*)" in out
    code, out, _ = _cli(["watchlists", "test", query, "--text", "My iPhone broke", "--text", "apple pie", "--lang", "en"],
                        capsys)
    assert code == 1 and "no match  apple pie" in out
    code, out, err = _cli(["watchlists", "test", "apple AND", "--text", "x"], capsys)
    assert code == 2 and "invalid query: column 10" in err and "^" in err


def test_cli_test_reads_texts_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("acme rocks\n\nglobex\n", encoding="utf-8")
    code, out, _ = _cli(["watchlists", "test", "acme", "--file", str(texts)], capsys)
    assert code == 1 and out.count("MATCH") == 1 and out.count("no match") == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("acme\n"))
    assert _cli(["watchlists", "test", "acme", "--file", "-"], capsys)[0] == 0
    code, _, err = _cli(["watchlists", "test", "acme", "--file", str(tmp_path / "missing.txt")], capsys)
    assert code == 2 and "cannot read" in err


def test_a_failed_write_is_reported_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = WatchlistFolder(_folder(tmp_path, {}))
    (folder.path / "acme.yaml").mkdir()  # os.replace cannot put a file there
    w = parse_watchlist({"id": "acme", "query": "acme"}, "x")
    assert folder.write(w) is None
    assert "cannot write watchlist file" in caplog.text
    assert not list(folder.path.glob(".*.tmp"))


def test_the_api_is_described_in_openapi() -> None:
    from fastapi import FastAPI

    from earful.watchlists.registry import WatchlistRegistry

    app = FastAPI()
    from earful.core.audit import AuditLog
    from earful.core.auth import ApiAuth, KeyRing

    app.include_router(WatchlistRegistry.for_settings(Settings()).router(ApiAuth(KeyRing(), AuditLog("storage"))))
    spec = app.openapi()
    assert set(spec["paths"]) == {"/v1/watchlists", "/v1/watchlists/{watchlist_id}", "/v1/watchlists/_validate",
                                  "/v1/watchlists/_test"}
    assert set(spec["paths"]["/v1/watchlists/{watchlist_id}"]) == {"get", "put", "delete"}
    body = spec["components"]["schemas"]["WatchlistSpec"]
    assert body["required"] == ["id"] and "query" in body["properties"] and body["additionalProperties"] is False


def _query_doc_blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced code block of docs/query-language.md."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "query-language.md").read_text(encoding="utf-8")
    blocks, lang, body = [], None, []
    for line in doc.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks.append((lang, "\n".join(body) + "\n"))
                lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def test_the_documented_query_examples_compile_and_do_what_they_say() -> None:
    import re

    from earful.watchlists import compile_query

    queries = [re.split(r"\s{2,}# ", line)[0].strip() for lang, block in _query_doc_blocks() if not lang
               for line in block.splitlines() if line.strip()]
    assert len(queries) >= 5
    for query in queries:
        compile_query(query)
    apple = queries[0]
    assert apple.startswith("(Apple OR $AAPL")
    for text in ("Apple unveils the new iPhone", "my iPhones died"):
        assert compile_query(apple).matches(Doc(text, lang="en")), text
    for text in ("Grandma's apple pie", "an apple tree in the orchard"):
        assert not compile_query(apple).matches(Doc(text, lang="en")), text


def test_the_documented_yaml_examples_are_valid_watchlists(tmp_path: Path) -> None:
    brand, campaign = [body for lang, body in _query_doc_blocks() if lang == "yaml"]
    (tmp_path / "brand").mkdir()
    (tmp_path / "campaign").mkdir()
    (w,) = load_watchlists(_folder(tmp_path / "brand", {"acme-air.yaml": brand}))
    assert w.rule("volume_spike") is not None and w.response_sla_s == 1800
    assert w.care is not None and w.care.business_hours is not None and w.kpis is not None
    (c,) = load_watchlists(_folder(tmp_path / "campaign", {"acme-winter-sale.yaml": campaign}))
    assert c.kind == "campaign" and c.campaign is not None and c.campaign.ends_at is not None


def test_a_phrase_is_indexed_under_its_rarest_word() -> None:
    pharma = [Watchlist(f"p{i}", f"P{i}", "brand", query=f'"brand{i} pharma"') for i in range(50)]
    ws = WatchlistSet([*pharma, Watchlist("tnf", "TNF", "brand", query='"The North Face"')])
    assert ws.candidates(Doc("brand7 pharma and other pharma news")) == [7]
    assert ws.candidates(Doc("the weather, the news, the sports")) == []  # not under "the"
    assert ws.matched_ids(ws.match("The North Face jacket")) == ["tnf"]


def test_the_bundled_sample_folder_is_never_written() -> None:
    folder = WatchlistFolder(SAMPLE)
    assert not folder.writable
    assert folder.write(load_watchlists(SAMPLE)[0]) is None and folder.remove("acme-air") is None
