"""File replay: JSONL and CSV files (Earful's own stream files and other tools' exports) as mentions.

A line or row becomes a mention in the push API's shape, checked by the same model and limits as
the push API (text length, times in the future or older than the retention period), so a bad line is
reported with its line number and skipped instead of spoiling a batch.

* **JSONL**: each line is ``{"mention": {...}}`` (Earful stream files, e.g. the bundled sample),
  a bare mention object in the push API's shape, or any flat JSON object, read through the
  column mapping below.
* **CSV** (with a header row): columns are mapped to fields by name, case-insensitively, ignoring
  spaces, dashes and underscores (``Full Text`` = ``full_text``). `COLUMN_ALIASES` lists the names
  recognised for each field (it covers the usual export columns of listening and social tools);
  ``--map field=Column`` overrides it.

Missing ``source`` takes the ``--source`` default; missing ``source_id`` becomes the URL or, without
one, a hash of text and time; times without a zone are taken as UTC; epoch seconds and
milliseconds and RFC 2822 dates are understood; ``1,234`` counts are fine.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

import pydantic

from earful.core.errors import ValidationError
from earful.core.mention import MentionIn, check_times, format_problems

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "source": ("source", "platform", "network", "pagetype", "sourcetype", "contentsource", "site", "domain"),
    "source_id": ("sourceid", "id", "postid", "guid", "tweetid", "statusid", "mentionid", "resourceid", "documentid"),
    "text": ("text", "fulltext", "content", "message", "body", "snippet", "posttext", "contenttext"),
    "title": ("title", "headline"),
    "created_at": ("createdat", "date", "published", "publishedat", "publishdate", "timestamp", "time", "created",
                   "postdate", "datetime", "datepublished"),
    "url": ("url", "link", "permalink", "posturl", "originalurl"),
    "lang": ("lang", "language"),
    "country": ("country", "countrycode"),
    "author.id": ("authorid", "userid", "accountid"),
    "author.handle": ("author", "handle", "username", "screenname", "user", "authorhandle", "authorusername"),
    "author.display_name": ("authorname", "displayname", "fullname", "name", "authordisplayname"),
    "author.followers": ("followers", "authorfollowers", "followerscount", "twitterfollowers", "reach", "audience"),
    "engagement.likes": ("likes", "likecount", "favorites", "favourites", "favoritecount", "favouritescount", "reactions"),
    "engagement.reposts": ("reposts", "retweets", "retweetcount", "shares", "sharecount", "reblogs", "reblogscount", "twitterretweets"),
    "engagement.replies": ("replies", "replycount", "comments", "commentcount", "repliescount", "twitterreplies"),
    "in_reply_to": ("inreplyto", "inreplytoid", "parentid", "replyto"),
    "reposted_from": ("repostedfrom", "retweetedid", "repostof"),
}
FIELDS = tuple(COLUMN_ALIASES)
_COUNTS = ("author.followers", "engagement.likes", "engagement.reposts", "engagement.replies")
_MENTION_KEYS = frozenset(MentionIn.model_fields)
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.strip().lower())


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """['text=Full Text', ...] → {'text': 'Full Text'}; unknown fields are a ValidationError."""
    out = {}
    for pair in pairs:
        fld, sep, column = pair.partition("=")
        if not sep or not column.strip():
            raise ValidationError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. text='Full Text'")
        if fld.strip() not in COLUMN_ALIASES:
            raise ValidationError(f"--map {pair!r}: unknown field {fld.strip()!r}; fields: {', '.join(FIELDS)}")
        out[fld.strip()] = column.strip()
    return out


def parse_time(value: Any) -> str:
    """A timestamp in any common export form → RFC 3339 (UTC when the value has no zone)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, timezone.utc).isoformat()
    text = str(value).strip()
    if re.fullmatch(r"\d{9,13}(\.\d+)?", text):
        return parse_time(float(text))
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise ValueError(f"unrecognised time {text[:60]!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).isoformat()


def _count(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a count cannot be true/false")
    if isinstance(value, (int, float)):
        return int(value)
    return int(float(str(value).replace(",", "").replace("_", "").strip()))


@dataclass
class ColumnMap:
    """Which input column feeds each field (resolved once per CSV header or JSON key set)."""

    overrides: dict[str, str] = field(default_factory=dict)
    default_source: str = "import"

    def resolve(self, columns: list[str]) -> dict[str, str]:
        by_norm: dict[str, str] = {}
        for column in columns:
            by_norm.setdefault(_norm(column), column)
        resolved: dict[str, str] = {}
        for fld, aliases in COLUMN_ALIASES.items():
            if fld in self.overrides:
                wanted = _norm(self.overrides[fld])
                if wanted not in by_norm:
                    raise ValidationError(f"--map {fld}={self.overrides[fld]!r}: no such column (columns: {', '.join(columns)[:300]})")
                resolved[fld] = by_norm[wanted]
                continue
            for alias in aliases:
                found = by_norm.get(alias)
                if found is not None and found not in resolved.values():
                    resolved[fld] = found
                    break
        return resolved

    def mention(self, row: dict[str, Any], resolved: dict[str, str]) -> dict[str, Any]:
        """A flat row → a mention in the push API's shape (raises ValueError naming the field)."""
        values: dict[str, Any] = {}
        for fld, column in resolved.items():
            cell = row.get(column)
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                continue
            values[fld] = cell
        if "text" not in values and "title" not in values:
            raise ValueError("no text (looked for columns " + ", ".join(COLUMN_ALIASES["text"][:4]) + ", ...)")
        if "created_at" not in values:
            raise ValueError("no time (looked for columns " + ", ".join(COLUMN_ALIASES["created_at"][:4]) + ", ...)")
        mention: dict[str, Any] = {"author": {}, "engagement": {}}
        for fld, given in values.items():
            value: int | str | None
            try:
                if fld in _COUNTS:
                    value = _count(given)
                elif fld == "created_at":
                    value = parse_time(given)
                else:
                    value = self._text(fld, str(given).strip())
            except ValueError as exc:
                raise ValueError(f"{fld} (column {resolved[fld]!r}): {exc}") from None
            group, _, name = fld.partition(".")
            if name:
                mention[group][name] = value
            elif value is not None:
                mention[fld] = value
        if "text" not in mention:
            mention["text"] = mention["title"]
        mention.setdefault("source", self.default_source)
        if "source_id" not in mention:
            mention["source_id"] = mention.get("url") or "sha256:" + hashlib.sha256(
                f"{mention['text']}\x1f{mention['created_at']}".encode()).hexdigest()[:40]
        return mention

    def _text(self, fld: str, text: str) -> str | None:
        """A text field as the push API accepts it: a source name, a bare language or country code, a handle without @."""
        if fld == "source":
            return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")[:32] or self.default_source
        if fld == "lang":
            return text.replace("_", "-").split("-")[0].lower()
        if fld == "country":
            return text.upper() if re.fullmatch(r"[A-Za-z]{2}", text) else None
        if fld == "author.handle":
            return text.lstrip("@")
        return text


@dataclass
class LineProblem:
    line: int
    message: str


class MentionFile:
    """Reads mentions from a JSONL or CSV file (optionally gzip-compressed), remembering bad lines.

    Iterating yields ``{"mention": {...}, "validated": MentionIn}`` dicts (the stream-file shape
    `earful replay` sends), each already valid for the push API. `position` / `size` give progress in bytes.
    """

    def __init__(self, path: Path, fmt: str = "auto", default_source: str = "import",
                 mapping: dict[str, str] | None = None, max_text_chars: int = 20000, retention_days: int = 0) -> None:
        if not path.is_file():
            raise ValidationError(f"replay file {path} does not exist")
        name = path.name.lower().removesuffix(".gz")
        self.format = fmt if fmt != "auto" else ("csv" if name.endswith((".csv", ".tsv")) else "jsonl")
        if self.format not in CONTENT_TYPES:
            raise ValidationError(f"unknown format {fmt!r}: jsonl, csv or auto")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,31}", default_source):
            raise ValidationError(f"--source {default_source!r} must be lower case [a-z0-9_.-], e.g. import")
        self.path = path
        self.delimiter = "\t" if name.endswith(".tsv") else ","
        self.columns = ColumnMap(mapping or {}, default_source)
        self.max_text_chars = max_text_chars
        self.retention_days = retention_days
        self.size = path.stat().st_size
        self.position = 0
        self.lines = 0
        self.problems: list[LineProblem] = []
        self.bad = 0

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def _open(self) -> tuple[IO[bytes], IO[bytes] | gzip.GzipFile]:
        raw = open(self.path, "rb")
        if raw.read(2) == b"\x1f\x8b":
            raw.seek(0)
            return raw, gzip.open(raw)
        raw.seek(0)
        return raw, raw

    def _problem(self, line: int, message: str) -> None:
        self.bad += 1
        if len(self.problems) < 1000:
            self.problems.append(LineProblem(line, message))

    def _checked(self, line: int, mention: Any) -> MentionIn | None:
        if not isinstance(mention, dict):
            self._problem(line, "not a JSON object")
            return None
        try:
            m = MentionIn.model_validate(mention)
        except pydantic.ValidationError as exc:
            self._problem(line, "; ".join(f"{p['path']}: {p['message']}" for p in format_problems(exc.errors()))[:500])
            return None
        if len(m.text) > self.max_text_chars:
            self._problem(line, f"text: {len(m.text)} characters; at most {self.max_text_chars}")
            return None
        problems = check_times(m, datetime.now(timezone.utc), self.retention_days)
        if problems:
            self._problem(line, "; ".join(f"{path}: {message}" for path, message in problems)[:500])
            return None
        return m

    def __iter__(self) -> Iterator[dict[str, Any]]:
        raw, stream = self._open()
        try:
            text = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="")
            rows = self._csv_rows(text, raw) if self.format == "csv" else self._jsonl_rows(text, raw)
            for line, mention in rows:
                checked = self._checked(line, mention)
                if checked is not None:
                    yield {"mention": mention, "validated": checked}
        except UnicodeDecodeError as exc:
            raise ValidationError(f"{self.path}: not UTF-8 text near line {self.lines + 1}: {exc.reason}") from exc
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ValidationError(f"{self.path}: cannot read: {exc}") from exc
        finally:
            raw.close()

    def _jsonl_rows(self, text: IO[str], raw: IO[bytes]) -> Iterator[tuple[int, Any]]:
        resolved_for: dict[frozenset[str], dict[str, str]] = {}
        for self.lines, line in enumerate(text, 1):
            self.position = raw.tell()
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                self._problem(self.lines, f"not JSON: {exc}")
                continue
            if isinstance(obj, dict) and isinstance(obj.get("mention"), dict):
                yield self.lines, obj["mention"]
            elif isinstance(obj, dict) and obj.keys() <= _MENTION_KEYS and "source_id" in obj:
                yield self.lines, obj
            elif isinstance(obj, dict):
                keys = frozenset(obj)
                if keys not in resolved_for:
                    if len(resolved_for) > 100:
                        resolved_for.clear()
                    resolved_for[keys] = self.columns.resolve(list(obj))
                try:
                    yield self.lines, self.columns.mention(obj, resolved_for[keys])
                except ValueError as exc:
                    self._problem(self.lines, str(exc))
            else:
                self._problem(self.lines, "not a JSON object")

    def _csv_rows(self, text: IO[str], raw: IO[bytes]) -> Iterator[tuple[int, Any]]:
        reader = csv.DictReader(text, delimiter=self.delimiter)
        try:
            header = reader.fieldnames
        except csv.Error as exc:
            raise ValidationError(f"{self.path}: bad CSV header: {exc}") from exc
        if not header:
            raise ValidationError(f"{self.path}: empty CSV file (a header row is needed)")
        resolved = self.columns.resolve(list(header))
        missing = [f for f in ("text", "created_at") if f not in resolved and not (f == "text" and "title" in resolved)]
        if missing:
            raise ValidationError(f"{self.path}: no column for {', '.join(missing)} among {', '.join(header)[:300]}; "
                                  f"use --map FIELD=COLUMN")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.lines = reader.line_num
                self._problem(reader.line_num, f"bad CSV: {exc}")
                continue
            self.lines = reader.line_num
            self.position = raw.tell()
            if None in row:
                self._problem(reader.line_num, f"{len(header) + len(row[None])} fields; the header has {len(header)}")
                continue
            try:
                yield reader.line_num, self.columns.mention(row, resolved)
            except ValueError as exc:
                self._problem(reader.line_num, str(exc))
