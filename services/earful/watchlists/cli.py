"""`earful watchlists validate DIR` and `earful watchlists test QUERY --text ...`, for people
writing watchlists; `earful watchlists backfill ID --since T` applies one to stored history (its
options here, the job in earful.storage.backfill, which earful.cli runs). Exit codes: validate 0 =
valid, 1 = problems; test 0 = every text matched, 1 = some text did not match, 2 = the query is not
valid; backfill 0 = done."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from earful.watchlists.files import load_partial
from earful.watchlists.query import Doc, QueryError, compile_query


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("watchlists", help="check watchlist files and try queries",
                       description="Check watchlist files and try queries on texts.")
    wsub = w.add_subparsers(dest="watchlists_command", required=True, metavar="ACTION")
    v = wsub.add_parser("validate", help="check every watchlist file of a folder (or one list file)",
                        description="Check every watchlist of a folder; exit 0 when all are valid, 1 otherwise.")
    v.add_argument("dir", nargs="?", type=Path, help="folder of <id>.yaml files (default: EARFUL_WATCHLISTS_DIR)")
    t = wsub.add_parser("test", help="try a query on one or more texts",
                        description="Show how a query is understood and whether it matches each text; exit 0 when"
                                    " every text matched, 1 when some did not, 2 when the query is not valid.")
    t.add_argument("query", help="the query, e.g. '(Apple OR iPhone*) AND NOT pie' (quote it for the shell)")
    t.add_argument("--text", action="append", default=[], help="a mention text (repeatable)")
    t.add_argument("--file", type=Path, help="a file with one text per line ('-': standard input)")
    t.add_argument("--lang", help="the mention's language (ISO 639-1), for lang:")
    t.add_argument("--source", help="the mention's source (twitter, news, ...), for source:")
    t.add_argument("--author", help="the author's handle, for author:")
    t.add_argument("--country", help="the mention's country (ISO 3166-1 alpha-2), for country:")
    t.add_argument("--url", help="the mention's own link, for site:")
    b = wsub.add_parser("backfill", help="apply a new or changed watchlist to the stored mentions since a time",
                        description="Match the stored mentions created since --since with the watchlist as it is now "
                                    "(the set in force: earful.watchlists.v1): mentions gain or lose it, and every count "
                                    "(volume, sentiment, share of voice, entities, authors) follows exactly. Resumable "
                                    "(--resume), throttled (docs/history.md). Prints the job as JSON last.")
    b.add_argument("id", help="the watchlist's id")
    b.add_argument("--since", help="first creation time covered (RFC 3339 or YYYY-MM-DD; no zone = UTC)")
    b.add_argument("--rate", type=float, help="at most this many mentions per second (default 1000)")
    b.add_argument("--resume", type=int, metavar="JOB", help="continue a stopped back-fill job of this watchlist")
    b.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")


def run(args: argparse.Namespace, default_dir: Path, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.watchlists_command == "validate":
        return validate(args.dir or default_dir, out, err)
    return test(args, out, err)


def validate(path: Path, out: TextIO, err: TextIO) -> int:
    found, errors = load_partial(path)
    for w, _source in found:
        print(f"ok       {w.id:<24} {w.kind:<10} {w.compiled.explain()}", file=out)
    for problem in errors:
        print(problem, file=err)
    if errors:
        print(f"{len(errors)} problem(s) in {path}; {len(found)} watchlist(s) valid", file=err)
        return 1
    if not found:
        print(f"{path}: no watchlist files (*.yaml, one watchlist each)", file=err)
        return 1
    print(f"{len(found)} watchlist(s) valid in {path}", file=out)
    return 0


def _highlight(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        if end <= start:
            continue
        out.append(text[last:start] + "[" + text[start:end] + "]")
        last = end
    return ("".join(out) + text[last:]).replace("\n", " ")


def test(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        compiled = compile_query(args.query)
    except QueryError as exc:
        print(f"invalid query: {exc}", file=err)
        print(exc.pointer(), file=err)
        return 2
    texts = list(args.text)
    if args.file is not None:
        try:
            lines = sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"cannot read {args.file}: {exc}", file=err)
            return 2
        texts += [line for line in lines.splitlines() if line.strip()]
    print(f"parsed: {compiled.explain()}", file=out)
    if not texts:
        print("(no --text or --file given: the query is valid)", file=out)
        return 0
    missed = 0
    for text in texts:
        doc = Doc(text, lang=args.lang, source=args.source, author=args.author, country=args.country, url=args.url)
        if compiled.matches(doc):
            spans = compiled.spans(doc)
            terms = ", ".join(dict.fromkeys(s.term for s in spans))
            print(f"MATCH     {_highlight(text, [(s.start, s.end) for s in spans])}   ({terms})", file=out)
        else:
            missed += 1
            print(f"no match  {text}", file=out)
    return 1 if missed else 0
