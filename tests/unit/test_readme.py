"""The README stays a short front door, the docs/ pages stay true to the code, and no link dangles."""

import re
from pathlib import Path

from earful.core.settings import Settings, settings_markdown

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETTINGS_DOC = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")

# [text](target) outside code; images too. Absolute URLs and mailto: are not checked.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _links(text: str) -> list[str]:
    prose = _CODE_SPAN.sub("", _FENCE.sub("", text))
    return [target for target in _LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def _anchors(text: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to dashes, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", _FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_settings_table_is_current() -> None:
    assert settings_markdown() in SETTINGS_DOC, "regenerate docs/settings.md with `earful settings --markdown`"


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`EARFUL_{name.upper()}`" in SETTINGS_DOC


def test_the_two_commands_are_shown() -> None:
    assert "make run" in README and "make test" in README
    # Outside tools parse these lines of `make run`.
    assert re.search(r"^  dashboard   http://[\d.]+:\d+/ ", README, re.MULTILINE)
    assert re.search(r"^  ingest API  http://[\d.]+:\d+/v1/mentions ", README, re.MULTILINE)
    assert re.search(r'^\{"mentions_sent": \d+, "mentions_stored": \d+, "alerts_received": \d+, "alert_latency_s": ',
                     README, re.MULTILINE)


def test_the_readme_is_a_short_front_door() -> None:
    lines = README.count("\n")
    assert lines <= 260, f"README.md has {lines} lines: move reference material to docs/"


def test_every_relative_link_points_to_an_existing_file() -> None:
    broken = []
    for doc in _documents():
        for target in _links(doc.read_text(encoding="utf-8")):
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
