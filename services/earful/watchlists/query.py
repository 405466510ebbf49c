"""The watchlist query language: parse, check, compile once, evaluate per mention.

Grammar (highest precedence first; see docs/query-language.md):

    query    := or_expr
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := near_expr (["AND"] near_expr)*       adjacent operands are ANDed
    near     := unary (("NEAR/n" | "ONEAR/n") unary)*
    unary    := "NOT" unary | primary
    primary  := term | term* | "phrase" | #hashtag | @handle | $cashtag
              | site:domain[/path] | lang:xx | source:name | author:handle | country:XX
              | "(" or_expr ")"

Operators are upper case; `and`, `or`, `not` in lower case are refused with a hint rather than
silently searched for. A query is refused when it could match a mention that contains none of
its terms (`NOT x` alone, `a OR NOT b`, `lang:en` alone): every match must be explained by
something in the text or the link. That rule also guarantees that every compiled query has a
set of *trigger* keys, at least one of which occurs in any text it matches, which is what lets
`WatchlistSet` look at only a handful of candidate queries per mention.
"""

from __future__ import annotations

import bisect
import functools
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from earful.core.errors import QueryError
from earful.watchlists.text import SIGILS, fold, index, scan, url_parts

FIELDS = ("site", "lang", "source", "author", "country")
MAX_DISTANCE = 100
MIN_WILDCARD_PREFIX = 3
MAX_DEPTH = 64
MAX_NEAR = 8
MAX_HIGHLIGHTED = 1000  # occurrences of one query part highlighted per mention
MAX_OCCURRENCES = 20_000  # distinct occurrences of one query part kept per mention
MAX_PAIRS = 100_000  # pairs one proximity operator examines per mention
MAX_QUERY_CHARS = 20_000


# --- syntax tree -----------------------------------------------------------------------------
# `pos` is where the node starts in the query text; `text` is the node as written.


@dataclass(frozen=True)
class Words:
    """A term, a phrase, a wildcard, a hashtag/handle/cashtag: tokens at fixed relative positions.

    parts: (key, is_prefix, relative position); a prefix part matches every key starting with it.
    """

    parts: tuple[tuple[str, bool, int], ...]
    text: str
    pos: int


@dataclass(frozen=True)
class Site:
    host: str
    path: str
    text: str
    pos: int


@dataclass(frozen=True)
class Field:
    name: str  # lang | source | author | country
    value: str
    text: str
    pos: int


@dataclass(frozen=True)
class Not:
    child: Node
    pos: int


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]
    pos: int


@dataclass(frozen=True)
class Near:
    left: Node
    right: Node
    distance: int
    ordered: bool
    pos: int


Node = Words | Site | Field | Not | And | Or | Near


def render(node: Node) -> str:
    """The node with every grouping made explicit: how the parser understood a query."""
    if isinstance(node, (Words, Site, Field)):
        return node.text
    if isinstance(node, Not):
        return f"NOT {render(node.child)}"
    if isinstance(node, Near):
        op = "ONEAR" if node.ordered else "NEAR"
        return f"({render(node.left)} {op}/{node.distance} {render(node.right)})"
    joiner = " AND " if isinstance(node, And) else " OR "
    return "(" + joiner.join(render(c) for c in node.children) + ")"


# --- lexer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lexeme:
    kind: str  # ( ) AND OR NOT NEAR PHRASE BARE EOF
    text: str
    pos: int
    distance: int = 0
    ordered: bool = False


_NEAR = re.compile(r"^(O?NEAR)(?:/(\d+))?$")
_NEARISH = re.compile(r"^(?:o?near)/", re.IGNORECASE)
_FIELD = re.compile(r"^([A-Za-z_]+):(.*)$", re.DOTALL)
_LANG = re.compile(r"^[a-z]{2,3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_SOURCE = re.compile(r"^[a-z0-9_.-]+$")
_HOST = re.compile(r"^[\w-]+(?:\.[\w-]+)+$")


def _lex(query: str) -> list[_Lexeme]:
    out: list[_Lexeme] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            out.append(_Lexeme(ch, ch, i))
            i += 1
        elif ch == '"':
            start, i, buf = i, i + 1, []
            while i < n and query[i] != '"':
                if query[i] == "\\" and i + 1 < n and query[i + 1] in '"\\':
                    i += 1
                buf.append(query[i])
                i += 1
            if i >= n:
                raise QueryError('unterminated phrase: expected a closing "', start, query)
            i += 1
            out.append(_Lexeme("PHRASE", "".join(buf), start))
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] not in '()"':
                i += 1
            word = query[start:i]
            if i < n and query[i] == '"' and word.endswith(":"):  # field:"quoted value"
                end = query.find('"', i + 1)
                if end < 0:
                    raise QueryError('unterminated value: expected a closing "', i, query)
                word, i = word + query[i + 1:end], end + 1
            out.append(_classify(word, start, query))
    out.append(_Lexeme("EOF", "", n))
    return out


def _classify(word: str, pos: int, query: str) -> _Lexeme:
    if word in ("AND", "OR", "NOT"):
        return _Lexeme(word, word, pos)
    near = _NEAR.match(word)
    if near:
        if near.group(2) is None:
            raise QueryError(f"{near.group(1)} needs a distance in words, e.g. {near.group(1)}/3", pos, query)
        distance = int(near.group(2))
        if distance > MAX_DISTANCE:
            raise QueryError(f"{word}: the distance must be at most {MAX_DISTANCE} words", pos, query)
        return _Lexeme("NEAR", word, pos, distance, near.group(1) == "ONEAR")
    if word.casefold() in ("and", "or", "not") or _NEARISH.match(word):
        op = word.split("/")[0].upper()
        raise QueryError(f"{word!r} is not an operator: operators are written in capitals ({op}); "
                         f'to search for the word, put it in quotes: "{word}"', pos, query)
    return _Lexeme("BARE", word, pos)


# --- terms -----------------------------------------------------------------------------------


def _words(content: str, pos: int, offset: int, written: str, query: str) -> Words:
    """Cut a term or phrase with the text tokenizer; a * right after a word makes it a prefix."""
    stars = [i for i, c in enumerate(content) if c == "*"]
    for i in stars:
        before_ok = i > 0 and (content[i - 1].isalnum() or content[i - 1] == "_")
        after_ok = i + 1 == len(content) or not (content[i + 1].isalnum() or content[i + 1] in "_*")
        if not (before_ok and after_ok):
            raise QueryError("a wildcard * may only end a word, e.g. crash*", offset + i, query)
    plain = content.replace("*", " ")
    parts: list[tuple[str, bool, int]] = []
    first_pos = None
    for key, start, end, tpos, kind in scan(plain):
        if kind == "url":
            raise QueryError(f"{content[start:end]!r} is a link: use site:{(url_parts(content[start:end]) or ('example.com',))[0]}"
                             " to match links", offset + start, query)
        if key is None:
            raise QueryError(f"{content[start:end]!r} cannot be matched: a # or @ glued to a word is neither a tag"
                             " nor a word", offset + start, query)
        prefix = end in stars
        if prefix:
            stem = key[1:] if key[0] in SIGILS else key
            if len(stem) < MIN_WILDCARD_PREFIX:
                raise QueryError(f"a wildcard needs at least {MIN_WILDCARD_PREFIX} letters before *",
                                 offset + start, query)
        if first_pos is None:
            first_pos = tpos
        parts.append((key, prefix, tpos - first_pos))
    if not parts:
        what = "phrase" if written.startswith('"') else "term"
        raise QueryError(f"the {what} {written!r} has no letters or digits to search for", pos, query)
    return Words(tuple(parts), written, pos)


def _field(name: str, value: str, pos: int, written: str, query: str) -> Node:
    name = name.lower()
    if name in ("http", "https"):
        raise QueryError("a link in a query: use site:example.com to match links", pos, query)
    if name not in FIELDS:
        raise QueryError(f"unknown field {name}:; the fields are {', '.join(f + ':' for f in FIELDS)}"
                         f' (to search for the text itself, put it in quotes: "{written}")', pos, query)
    value = value.strip()
    if not value:
        raise QueryError(f"expected a value after {name}:", pos + len(name) + 1, query)
    at = pos + len(name) + 1
    if name == "site":
        low = re.sub(r"^[a-z]+://", "", value.lower())
        host, _, path = low.partition("/")
        host = host.removeprefix("www.")
        if not _HOST.match(host):
            raise QueryError(f"site: expects a domain like example.com, optionally with a path, not {value!r}", at, query)
        return Site(host, "/" + path if path else "", written, pos)
    if name == "lang":
        if not _LANG.match(value.lower()):
            raise QueryError(f"lang: expects a 2- or 3-letter language code like en, not {value!r}", at, query)
        return Field(name, value.lower(), written, pos)
    if name == "country":
        if not _COUNTRY.match(value.upper()):
            raise QueryError(f"country: expects a 2-letter country code like DE, not {value!r}", at, query)
        return Field(name, value.upper(), written, pos)
    if name == "source":
        if not _SOURCE.match(value.lower()):
            raise QueryError(f"source: expects a source name like twitter, not {value!r}", at, query)
        return Field(name, value.lower(), written, pos)
    handle = value.lstrip("@")
    if not handle or any(c.isspace() for c in handle):
        raise QueryError(f"author: expects a handle like jane, not {value!r}", at, query)
    return Field(name, fold(handle), written, pos)


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.lexemes = _lex(query)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Lexeme:
        return self.lexemes[self.i]

    def take(self) -> _Lexeme:
        lex = self.lexemes[self.i]
        self.i += 1
        return lex

    def error(self, message: str, lex: _Lexeme) -> QueryError:
        return QueryError(message, lex.pos, self.query)

    @staticmethod
    def found(lex: _Lexeme) -> str:
        if lex.kind == "EOF":
            return "the end of the query"
        if lex.kind == "PHRASE":
            return f'"{lex.text}"'
        return lex.text

    def parse(self) -> Node:
        node = self.or_expr()
        lex = self.peek()
        if lex.kind == ")":
            raise self.error("unexpected ): there is no ( to close", lex)
        if lex.kind != "EOF":  # pragma: no cover - and_expr consumes everything else
            raise self.error(f"unexpected {self.found(lex)}", lex)
        return node

    def or_expr(self) -> Node:
        first = self.and_expr()
        children = [first]
        while self.peek().kind == "OR":
            op = self.take()
            children.append(self.and_expr(after=op))
        return first if len(children) == 1 else Or(tuple(children), first_pos(first))

    def and_expr(self, after: _Lexeme | None = None) -> Node:
        first = self.near_expr(after)
        children = [first]
        while True:
            lex = self.peek()
            if lex.kind == "AND":
                self.take()
                children.append(self.near_expr(lex))
            elif lex.kind in ("BARE", "PHRASE", "(", "NOT"):
                children.append(self.near_expr(None))
            else:
                break
        return first if len(children) == 1 else And(tuple(children), first_pos(first))

    def near_expr(self, after: _Lexeme | None) -> Node:
        left = self.unary(after)
        while self.peek().kind == "NEAR":
            op = self.take()
            right = self.unary(op)
            for side, what in ((left, "before"), (right, "after")):
                if not positional(side):
                    raise QueryError(
                        f"{op.text} needs a term, phrase, hashtag, handle, cashtag, or an OR of them on each side;"
                        f" {render(side)!r} {what} it is not one", first_pos(side), self.query)
            left = Near(left, right, op.distance, op.ordered, first_pos(left))
        return left

    def unary(self, after: _Lexeme | None) -> Node:
        nots: list[_Lexeme] = []
        while self.peek().kind == "NOT":  # a loop, not recursion: a long NOT chain must not overflow the stack
            nots.append(self.take())
            if len(nots) > MAX_DEPTH:
                raise self.error(f"more than {MAX_DEPTH} NOTs in a row", nots[-1])
        node = self.primary(nots[-1] if nots else after)
        for lex in reversed(nots):
            node = Not(node, lex.pos)
        return node

    def primary(self, after: _Lexeme | None) -> Node:
        lex = self.take()
        if lex.kind == "PHRASE":
            return _words(lex.text, lex.pos, lex.pos + 1, f'"{lex.text}"', self.query)
        if lex.kind == "BARE":
            field = _FIELD.match(lex.text)
            if field:
                return _field(field.group(1), field.group(2), lex.pos, lex.text, self.query)
            return _words(lex.text, lex.pos, lex.pos, lex.text, self.query)
        if lex.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"more than {MAX_DEPTH} nested parentheses", lex)
            if self.peek().kind == ")":
                raise self.error("empty parentheses: expected a term, phrase or field inside ( )", self.peek())
            node = self.or_expr()
            close = self.peek()
            if close.kind != ")":
                raise QueryError(f"expected ) to close the ( at column {lex.pos + 1}, found {self.found(close)}",
                                 close.pos, self.query)
            self.take()
            self.depth -= 1
            return node
        where = f" after {after.text}" if after is not None else ""
        raise self.error(f'expected a term, "phrase", field or ({where}, found {self.found(lex)}', lex)


def first_pos(node: Node) -> int:
    return node.pos


def positional(node: Node) -> bool:
    """Nodes that occupy word positions: the only operands NEAR/ONEAR accept."""
    if isinstance(node, (Words, Near)):
        return True
    if isinstance(node, Or):
        return all(positional(c) for c in node.children)
    return False


def parse(query: str) -> Node:
    """The syntax tree of `query`; QueryError (with the position) when it is not valid."""
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters", MAX_QUERY_CHARS, query)
    if not query.strip():
        raise QueryError("the query is empty: say what to listen for, e.g. \"Acme Air\" OR #AcmeAir", 0, query)
    tree = _Parser(query).parse()
    check_complexity(tree, query)
    return tree


def check_complexity(tree: Node, query: str) -> None:
    """Refuse trees deeper than MAX_DEPTH or with more than MAX_NEAR proximity operators.

    Evaluation is linear in the text per operator, but every operator costs a pass: these bounds
    keep one query's work per mention small and every recursive walk of the tree far from
    Python's stack limit, whatever a client sends.
    """
    nears = 0
    stack: list[tuple[Node, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise QueryError(f"the query nests more than {MAX_DEPTH} operators deep", node.pos, query)
        if isinstance(node, Near):
            nears += 1
            if nears > MAX_NEAR:
                raise QueryError(f"more than {MAX_NEAR} NEAR/ONEAR operators in one query", node.pos, query)
            stack += [(node.left, depth + 1), (node.right, depth + 1)]
        elif isinstance(node, (And, Or)):
            stack += [(c, depth + 1) for c in node.children]
        elif isinstance(node, Not):
            stack.append((node.child, depth + 1))


# --- normal form, breadth check, triggers ----------------------------------------------------


def negation_normal_form(node: Node, negate: bool = False, not_pos: int | None = None) -> Node:
    """NOT pushed down to the leaves (De Morgan), double negations removed, nested AND/OR flattened.

    Negated nodes keep the position of the NOT that negated them, for error messages.
    """
    if isinstance(node, Not):
        return negation_normal_form(node.child, not negate, None if negate else node.pos)
    pos = not_pos if negate and not_pos is not None else node.pos
    if isinstance(node, (And, Or)):
        kids = [negation_normal_form(c, negate, not_pos) for c in node.children]
        flip = isinstance(node, And) == negate  # NOT (a AND b) = NOT a OR NOT b
        cls: type[And] | type[Or] = Or if flip else And
        flat: list[Node] = []
        for k in kids:
            flat.extend(k.children if isinstance(k, cls) else (k,))
        return cls(tuple(flat), pos)
    return Not(node, pos) if negate else node


def _free(node: Node) -> bool:
    """True when the (normal-form) node can be true for a mention with no text and no link."""
    if isinstance(node, (Words, Site, Near)):
        return False
    if isinstance(node, (Field, Not)):
        return True
    if isinstance(node, And):
        return all(_free(c) for c in node.children)
    assert isinstance(node, Or)
    return any(_free(c) for c in node.children)


def _culprit(node: Node) -> Node:
    if isinstance(node, Or):
        return _culprit(next(c for c in node.children if _free(c)))
    return node


def _has_not(node: Node) -> bool:
    if isinstance(node, Not):
        return True
    if isinstance(node, (And, Or)):
        return any(_has_not(c) for c in node.children)
    return False


def check_not_too_broad(nnf: Node, query: str) -> None:
    """Refuse queries that could match a mention containing none of their terms."""
    if not _free(nnf):
        return
    culprit = _culprit(nnf)
    written = render(culprit)
    if len(written) > 60:
        written = written[:57] + "..."
    if _has_not(culprit):
        raise QueryError(
            f"{written!r} can match a mention that contains none of the query's terms, so the query would match"
            " almost everything; combine exclusions with AND and a term, e.g. apple AND NOT pie",
            culprit.pos, query)
    raise QueryError(
        "field filters (lang:, source:, author:, country:) only narrow a query: add what to listen for, e.g."
        " (Acme OR #Acme) lang:en", culprit.pos, query)


@dataclass(frozen=True)
class Triggers:
    """What occurs in every text the query matches: at least one of these.

    `exact` holds one group per term or phrase: the keys that must all occur for it (longest
    first); any one of them can stand for the group, and `WatchlistSet` indexes the one that is
    rarest among its queries ("Acme Pharma" is found by "acme", not by "pharma").
    """

    exact: frozenset[tuple[str, ...]]
    prefixes: frozenset[str]  # wildcard stems: every key starting with one of them
    sites: frozenset[str]

    def cost(self) -> tuple[int, int]:
        # Fewer, more specific keys first: a prefix or site costs more than an exact key.
        return (len(self.prefixes) + len(self.sites), len(self.exact))


def prefix_key(key: str) -> str:
    """The bucket of wildcard stems a key falls into: its sigil (if any) and first 3 letters."""
    return key[: MIN_WILDCARD_PREFIX + 1] if key[0] in SIGILS else key[:MIN_WILDCARD_PREFIX]


def _leaf_trigger(node: Words) -> Triggers:
    exact = [k for k, is_prefix, _ in node.parts if not is_prefix]
    if exact:
        group = tuple(sorted(set(exact), key=lambda k: (-len(k), k)))
        return Triggers(frozenset({group}), frozenset(), frozenset())
    return Triggers(frozenset(), frozenset({max((k for k, _, _ in node.parts), key=len)}), frozenset())


def triggers(node: Node) -> Triggers:
    """Trigger keys of a normal-form node that is not `_free` (see the module docstring)."""
    if isinstance(node, Words):
        return _leaf_trigger(node)
    if isinstance(node, Site):
        return Triggers(frozenset(), frozenset(), frozenset({node.host}))
    if isinstance(node, Near):
        return min((triggers(node.left), triggers(node.right)), key=Triggers.cost)
    if isinstance(node, And):
        return min((triggers(c) for c in node.children if not _free(c)), key=Triggers.cost)
    if isinstance(node, Or):
        parts = [triggers(c) for c in node.children]
        return Triggers(frozenset().union(*(p.exact for p in parts)), frozenset().union(*(p.prefixes for p in parts)),
                        frozenset().union(*(p.sites for p in parts)))
    raise AssertionError(f"no triggers for {node!r}")


# --- evaluation ------------------------------------------------------------------------------


class Doc:
    """One mention, tokenised once, as every query evaluates it.

    `toks` are the text's tokens (key, start, end, position, kind); `keys` maps each matchable
    key to the indexes of its tokens; `urls` (parsed only when a query looks at links) holds
    (host, path, start, end) of the links in the text and of the mention's own link.
    """

    __slots__ = ("_stems", "_url", "_urls", "author", "country", "keys", "lang", "source", "text", "toks")

    def __init__(self, text: str, *, lang: str | None = None, source: str | None = None, author: str | None = None,
                 country: str | None = None, url: str | None = None) -> None:
        self.text = text
        self.toks, self.keys = index(text)
        self.lang = lang.lower().split("-")[0] if lang else None
        self.source = source.lower() if source else None
        self.author = fold(author.lstrip("@")) if author else None
        self.country = country.upper() if country else None
        self._url = url
        self._urls: list[tuple[str, str, int, int]] | None = None
        self._stems: dict[str, list[str]] | None = None

    @property
    def urls(self) -> list[tuple[str, str, int, int]]:
        """(host, path, start, end) of the text's links and the mention's own (start = end = -1), parsed once on demand."""
        if self._urls is None:
            urls = []
            for _, start, end, _, kind in self.toks:
                if kind == "url":
                    parts = url_parts(self.text[start:end])
                    if parts:
                        urls.append((parts[0], parts[1], start, end))
            if self._url:
                parts = url_parts(self._url)
                if parts:
                    urls.append((parts[0], parts[1], -1, -1))
            self._urls = urls
        return self._urls

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """The text's keys that start with `prefix` (a wildcard stem of at least 3 letters)."""
        if self._stems is None:
            stems: dict[str, list[str]] = {}
            for key in self.keys:
                stems.setdefault(prefix_key(key), []).append(key)
            self._stems = stems
        return [k for k in self._stems.get(prefix_key(prefix), ()) if k.startswith(prefix)]


# An occurrence: (first position, last position, spans of the leaves that make it up). The spans
# are a tree: a leaf's is ((start, end, term),), a proximity match's is (left spans, right spans),
# so combining two occurrences costs the same however deep the query nests (`leaf_spans`
# flattens it, only for the few occurrences that are highlighted).
LeafSpan = tuple[int, int, str]
SpanTree = tuple[Any, ...]
Occurrence = tuple[int, int, SpanTree]


def leaf_spans(tree: SpanTree) -> list[LeafSpan]:
    """The (start, end, term) spans of a span tree, left to right."""
    out: list[LeafSpan] = []
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if len(node) == 3 and isinstance(node[0], int):
            out.append(node)
        else:
            stack.extend(reversed(node))
    return out
Truth = Callable[[Doc], bool]
Occurrences = Callable[[Doc], list[Occurrence]]


def _words_occurrences(node: Words) -> Occurrences:
    parts = node.parts
    term = node.text[1:-1] if node.text.startswith('"') else node.text  # a phrase without its quotes
    first_key, first_prefix, _ = parts[0]
    rest = parts[1:]
    length = len(parts)

    def occ(doc: Doc) -> list[Occurrence]:
        if first_prefix:
            starts: list[int] = sorted(i for k in doc.keys_with_prefix(first_key) for i in doc.keys[k])
        else:
            starts = doc.keys.get(first_key) or []
        out: list[Occurrence] = []
        toks = doc.toks
        n = len(toks)
        for i in starts:
            p = toks[i][3]
            if i + length > n:
                continue
            j = i
            for key, is_prefix, rel in rest:
                j += 1
                k, _, _, q, _ = toks[j]
                if q != p + rel or k is None or (k != key if not is_prefix else not k.startswith(key)):
                    break
            else:
                last = toks[j]
                out.append((p, last[3], ((toks[i][1], last[2], term),)))
        return out

    return occ


def _occurrences(node: Node) -> Occurrences:
    if isinstance(node, Words):
        return _words_occurrences(node)
    if isinstance(node, Or):
        fns = [_occurrences(c) for c in node.children]
        return lambda doc: [o for f in fns for o in f(doc)]
    assert isinstance(node, Near)
    left, right, distance, ordered = _occurrences(node.left), _occurrences(node.right), node.distance, node.ordered

    def occ(doc: Doc) -> list[Occurrence]:
        a_list = distinct_occurrences(left(doc))
        if not a_list:
            return []
        b_list = distinct_occurrences(right(doc))
        if not b_list:
            return []
        by_start = sorted(b_list, key=_START)
        starts = [b[0] for b in by_start]
        by_end = sorted(b_list, key=_END) if not ordered else []
        ends = [b[1] for b in by_end]
        out: dict[tuple[int, int], SpanTree] = {}
        budget = MAX_PAIRS
        for a0, a1, a_parts in a_list:
            # Right-hand occurrences starting within `distance` words after this one ends...
            after = range(bisect.bisect_right(starts, a1), bisect.bisect_right(starts, a1 + distance + 1))
            # ...and, unordered, those ending within `distance` words before it starts.
            before = range(bisect.bisect_left(ends, a0 - distance - 1), bisect.bisect_left(ends, a0)) if ends else range(0)
            budget -= len(after) + len(before)
            for k in after:
                out.setdefault((a0, by_start[k][1]), (a_parts, by_start[k][2]))
            for k in before:
                out.setdefault((by_end[k][0], a1), (by_end[k][2], a_parts))
            if budget <= 0 or len(out) >= MAX_OCCURRENCES:
                break
        return [(lo, hi, parts) for (lo, hi), parts in out.items()]

    return occ


_START, _END = operator.itemgetter(0), operator.itemgetter(1)


def distinct_occurrences(occurrences: list[Occurrence]) -> list[Occurrence]:
    """One occurrence per (first, last) position, at most MAX_OCCURRENCES of them.

    Proximity only looks at where an occurrence starts and ends, so occurrences with the same
    bounds are one for every operator above. Keeping every combination of leaves instead grew
    exponentially with chained operators over a repeated word (`a NEAR/100 a NEAR/100 a`: 54 s and
    1.7 GB for 2 KB of text); distinct bounds are at most tokens × window, and the cap bounds a
    hostile text's work per operator (a part with more occurrences is judged on the first ones).
    """
    seen: dict[tuple[int, int], Occurrence] = {}
    for occurrence in occurrences:
        seen.setdefault((occurrence[0], occurrence[1]), occurrence)
        if len(seen) >= MAX_OCCURRENCES:
            break
    return list(seen.values())


def _site_truth(node: Site) -> Truth:
    host, path, dotted = node.host, node.path, "." + node.host

    def truth(doc: Doc) -> bool:
        for h, p, _, _ in doc.urls:
            if (h == host or h.endswith(dotted)) and p.startswith(path):
                return True
        return False

    return truth


def _truth(node: Node) -> Truth:
    if isinstance(node, Words):
        if len(node.parts) == 1 and not node.parts[0][1]:
            key = node.parts[0][0]
            return lambda doc: key in doc.keys
        if len(node.parts) == 1:
            stem = node.parts[0][0]
            return lambda doc: bool(doc.keys_with_prefix(stem))
        occ = _words_occurrences(node)
        return lambda doc: bool(occ(doc))
    if isinstance(node, Near):
        near = _occurrences(node)
        return lambda doc: bool(near(doc))
    if isinstance(node, Site):
        return _site_truth(node)
    if isinstance(node, Field):
        attr, value = node.name, node.value
        return lambda doc: getattr(doc, attr) == value
    if isinstance(node, Not):
        inner = _truth(node.child)
        return lambda doc: not inner(doc)
    if isinstance(node, And):
        # Cheap, selective checks first: words, then fields and links, proximity, exclusions last.
        fns = [_truth(c) for c in sorted(node.children, key=_cost)]

        def all_of(doc: Doc) -> bool:
            for f in fns:
                if not f(doc):
                    return False
            return True

        return all_of
    assert isinstance(node, Or)
    fns = [_truth(c) for c in sorted(node.children, key=_cost)]

    def any_of(doc: Doc) -> bool:
        for f in fns:
            if f(doc):
                return True
        return False

    return any_of


def _cost(node: Node) -> int:
    if isinstance(node, Words):
        return 0 if len(node.parts) == 1 else 1
    if isinstance(node, (Field, Site)):
        return 1
    if isinstance(node, Not):
        return 5 + _cost(node.child)
    if isinstance(node, Near):
        return 3
    return 2


def _highlight_units(node: Node) -> list[Node]:
    """The positive (not negated) leaves and proximity groups whose spans are highlighted."""
    if isinstance(node, (And, Or)):
        return [u for c in node.children for u in _highlight_units(c)]
    if isinstance(node, (Words, Near, Site)):
        return [node]
    return []


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    term: str


class CompiledQuery:
    """A checked, compiled query: `matches(doc)` and `spans(doc)` for one tokenised mention."""

    def __init__(self, source: str, tree: Node, nnf: Node) -> None:
        self.source = source
        self.tree = tree
        self.nnf = nnf
        self.triggers = triggers(nnf) if not _free(nnf) else None
        self.matches: Truth = _truth(nnf)
        self._units: list[tuple[str, Any]] = []
        for unit in _highlight_units(nnf):
            if isinstance(unit, Site):
                self._units.append(("site", (unit, _site_truth(unit))))
            else:
                self._units.append(("occ", _occurrences(unit)))
        fields = [n for n in _positive_leaves(nnf) if isinstance(n, (Field, Site))]
        self._fallback_term = fields[0].text if fields else ""

    def explain(self) -> str:
        return render(self.tree)

    def spans(self, doc: Doc) -> list[Span]:
        """Spans of the positive terms in `doc` (call only when `matches(doc)`): for highlighting.

        When nothing of the query is in the text itself (e.g. site: matched the mention's link),
        one empty span (0, 0) names the filter that matched.
        """
        found: set[tuple[int, int, str]] = set()
        for kind, unit in self._units:
            if kind == "occ":
                for _, _, parts in unit(doc)[:MAX_HIGHLIGHTED]:
                    found.update(leaf_spans(parts))
            else:
                site, _ = unit
                for h, p, start, end in doc.urls:
                    if start >= 0 and (h == site.host or h.endswith("." + site.host)) and p.startswith(site.path):
                        found.add((start, end, site.text))
        if not found:
            return [Span(0, 0, self._fallback_term)]
        out: list[Span] = []
        reach = -1
        for start, end, term in sorted(found, key=lambda s: (s[0], -s[1], s[2])):
            if end <= reach:  # inside (or equal to) a span already kept: "Acme" within "Acme Air"
                continue
            out.append(Span(start, end, term))
            reach = end
        return out


def _positive_leaves(node: Node) -> list[Node]:
    if isinstance(node, (And, Or)):
        return [leaf for c in node.children for leaf in _positive_leaves(c)]
    if isinstance(node, Not):
        return []
    return [node]


def compile_tree(tree: Node, source: str, *, allow_broad: bool = False) -> CompiledQuery:
    """Compile a syntax tree; `allow_broad` skips the breadth check (tests of the evaluator only)."""
    nnf = negation_normal_form(tree)
    if not allow_broad:
        check_not_too_broad(nnf, source)
    return CompiledQuery(source, tree, nnf)


@functools.lru_cache(maxsize=65536)
def compile_query(query: str) -> CompiledQuery:
    """Parse, check and compile `query` (cached: the same text compiles once per process)."""
    return compile_tree(parse(query), query)
