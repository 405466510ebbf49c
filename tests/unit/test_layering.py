"""The package's layers, enforced: services depend on the shared core and `watchlists` only.

Layers, bottom up: `earful.core` → `earful.watchlists` → the four services (`ingest`,
`enrichment`, `alerting`, `storage`) → the CLI (`earful.cli`, `earful.__main__`) and the
development tooling outside the runtime package. A module may import its own layer's package and
anything below it, never a sibling service or anything above. Imports inside functions count too:
a hidden import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "services" / "earful"
SERVICES = ("ingest", "enrichment", "alerting", "storage")
# What each top-level package of `earful` may import from `earful` (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "watchlists": frozenset({"core"}),
    **{service: frozenset({"core", "watchlists"}) for service in SERVICES},
}
FORBIDDEN_ELSEWHERE = ("earful_dev",)  # development tooling: never imported by the runtime layers


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in a file, at any depth, relative imports resolved."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from earful import storage` names a package too
                yield node.lineno, f"{module}.{alias.name}"


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "earful" else None


def violations() -> list[str]:
    found = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for line, module in imported_modules(path):
                target = layer_of(module)
                above = target is not None and target != layer and target not in allowed
                if above or module.split(".")[0] in FORBIDDEN_ELSEWHERE:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({layer}) imports {module}")
    return found


def test_no_layer_imports_a_sibling_or_a_layer_above() -> None:
    assert violations() == []


def test_every_runtime_package_has_a_declared_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), f"declare the layer of {sorted(packages - set(ALLOWED))} in ALLOWED"


@pytest.mark.parametrize(("source", "expected"), [
    ("from earful.storage.writer import x\n", "earful.storage.writer"),
    ("def f():\n    import earful.ingest.app\n", "earful.ingest.app"),
    ("from earful import storage\n", "earful.storage"),
])
def test_the_walker_sees_every_kind_of_import(tmp_path: Path, source: str, expected: str) -> None:
    module = PACKAGE / "alerting" / "_layering_probe.py"
    try:
        module.write_text(source, encoding="utf-8")
        assert any(expected in v for v in violations())
    finally:
        module.unlink()
