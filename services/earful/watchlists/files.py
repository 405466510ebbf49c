"""Watchlists as YAML files: the versionable seed folder, and the write-back of API changes.

A folder holds one watchlist per file, named `<id>.yaml` (or `.yml`); files whose names start
with a dot are ignored (Kubernetes mounts ConfigMaps with `..data` links). A single file with
a top-level `watchlists:` list is also accepted (read-only: changes are never written into it).
Every problem of every file is reported at once, each with its file and key.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from earful.core.errors import ValidationError
from earful.watchlists.model import Watchlist, parse_watchlist, to_document

log = logging.getLogger(__name__)
SUFFIXES = (".yaml", ".yml")
HEADER = ("# Watchlist managed as a file and through the watchlist API (/v1/watchlists). Earful publishes\n"
          "# the watchlists of this folder when the storage service starts; see docs/query-language.md.\n")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; problems become a ValidationError with the file, line and column."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from exc


_PLAIN_QUERY_WITH_HASH = re.compile(r"^\s*(?:-\s+)?query:\s*[^\s'\"|>].*\s#", re.MULTILINE)
COMMENT_HINT = ("in YAML an unquoted ' #' starts a comment, which cuts the query short there: write the query"
                " as a block (query: >-, then the query indented on the next lines) or in quotes")


def _with_hint(path: Path, message: str) -> str:
    """Add the YAML-comment hint when a query error may come from a '#' eaten as a comment."""
    if "query:" not in message:
        return message
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return message
    return f"{message}\n{path}: hint: {COMMENT_HINT}" if _PLAIN_QUERY_WITH_HASH.search(raw) else message


def watchlist_files(folder: Path) -> list[Path]:
    """The watchlist files of a folder, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file())


def _load_list_file(path: Path, errors: list[str]) -> list[tuple[Watchlist, Path]]:
    try:
        doc = read_yaml(path)
    except ValidationError as exc:
        errors.append(str(exc))
        return []
    if isinstance(doc, dict) and "watchlists" not in doc and "id" in doc:
        items: Any = [doc]
    else:
        items = doc.get("watchlists") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        errors.append(f"{path}: expected a top-level 'watchlists:' list (or one watchlist mapping)")
        return []
    out = []
    for i, item in enumerate(items):
        try:
            out.append((parse_watchlist(item, f"{path}: watchlists[{i}]"), path))
        except ValidationError as exc:
            errors.append(_with_hint(path, str(exc)))
    return out


def _load_folder(folder: Path, errors: list[str]) -> list[tuple[Watchlist, Path]]:
    out = []
    for path in watchlist_files(folder):
        try:
            doc = read_yaml(path)
        except ValidationError as exc:
            errors.append(str(exc))
            continue
        if isinstance(doc, dict) and "watchlists" in doc:
            errors.append(f"{path}: holds a 'watchlists:' list; in a folder, put one watchlist per file named"
                          " <id>.yaml (or point EARFUL_WATCHLISTS_DIR at this one file)")
            continue
        try:
            w = parse_watchlist(doc, str(path))
        except ValidationError as exc:
            errors.append(_with_hint(path, str(exc)))
            continue
        if path.stem != w.id:
            errors.append(f"{path} ({w.id}): the file of watchlist {w.id!r} must be named {w.id}{path.suffix}")
            continue
        out.append((w, path))
    return out


def load_partial(path: Path) -> tuple[list[tuple[Watchlist, Path]], list[str]]:
    """The valid watchlists of a folder (or list file) with their files, and one line per problem."""
    errors: list[str] = []
    if path.is_dir():
        found = _load_folder(path, errors)
    elif path.exists():
        found = _load_list_file(path, errors)
    else:
        return [], [f"{path}: no such folder or file (EARFUL_WATCHLISTS_DIR)"]
    seen: dict[str, Path] = {}
    unique = []
    for w, source in found:
        if w.id in seen:
            errors.append(f"{source}: duplicate watchlist id {w.id!r} (also in {seen[w.id]})")
            continue
        seen[w.id] = source
        unique.append((w, source))
    return unique, errors


def load_with_sources(path: Path) -> list[tuple[Watchlist, Path]]:
    """Every watchlist of a folder (or list file) with the file it came from; ValidationError
    lists every problem found, one per line."""
    found, errors = load_partial(path)
    if errors:
        raise ValidationError("\n".join(errors))
    return found


def load_watchlists(path: Path) -> list[Watchlist]:
    """The watchlists of a folder or list file, validated (see `load_with_sources`)."""
    return [w for w, _ in load_with_sources(path)]


BUNDLED = Path(__file__).resolve().parents[1] / "sample" / "watchlists"


class WatchlistFolder:
    """The seed folder, and where API changes are written back when it is writable."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def writable(self) -> bool:
        """A folder we may write files into: not a list file, a read-only mount, or the bundled
        sample folder (package data, and the sample generator's input)."""
        if not self.path.is_dir() or self.path.resolve() == BUNDLED:
            return False
        return os.access(self.path, os.W_OK | os.X_OK)

    def load(self) -> list[Watchlist]:
        return load_watchlists(self.path)

    def file_for(self, watchlist_id: str) -> Path:
        for suffix in SUFFIXES:
            candidate = self.path / f"{watchlist_id}{suffix}"
            if candidate.exists():
                return candidate
        return self.path / f"{watchlist_id}.yaml"

    def current_revision(self, watchlist_id: str) -> str | None:
        """Revision of the file's watchlist, None when there is no such (valid) file."""
        path = self.file_for(watchlist_id)
        if not path.is_file():
            return None
        try:
            return parse_watchlist(read_yaml(path), str(path)).revision
        except ValidationError:
            return None

    def write(self, w: Watchlist) -> Path | None:
        """Write `w` to `<id>.yaml` atomically; None (and a warning) when the folder is not writable."""
        if not self.writable:
            return None
        target = self.file_for(w.id)
        body = HEADER + yaml.safe_dump(to_document(w), sort_keys=False, allow_unicode=True, width=100)
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{w.id}.", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(body)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            log.warning("cannot write watchlist file", extra={"path": str(target), "error": str(exc)})
            return None
        return target

    def remove(self, watchlist_id: str) -> Path | None:
        """Delete the watchlist's file; the path removed, or None."""
        if not self.writable:
            return None
        target = self.file_for(watchlist_id)
        try:
            target.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot delete watchlist file", extra={"path": str(target), "error": str(exc)})
            return None
        return target
