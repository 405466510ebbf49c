"""Packaging: every pin in the lock files carries the sha256 the Dockerfile's --require-hashes checks,
`make lock` keeps the hashes of unchanged pins and looks up the file pip really installs, the extras
split what each image needs, and `earful --version` prints the installed version."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, REPO
from tests.deploy.test_image import lock_module

LOCK_FILES = sorted((DEPLOY / "requirements").glob("*.txt"))
SHA256 = re.compile(r"[0-9a-f]{64}")


def test_every_pin_in_every_lock_file_carries_a_sha256() -> None:
    lock = lock_module()
    assert {p.stem for p in LOCK_FILES} >= {"core", "nlp", "dev", "models"}
    for path in LOCK_FILES:
        entries = lock.parse(path.read_text())
        assert entries, f"{path.name} pins nothing"
        for name, (version, digests) in entries.items():
            assert version, f"{path.name}: {name} is not pinned with =="
            assert digests, f"{path.name}: {name}=={version} has no --hash (run `make lock`)"
            assert all(SHA256.fullmatch(d) for d in digests), f"{path.name}: {name}: {digests}"


def test_lock_files_are_valid_pip_requirements_with_hashes() -> None:
    """pip's own parser reads each file as hash-pinned requirements (what --require-hashes needs)."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    for path in LOCK_FILES:
        parsed = list(parse_requirements(str(path), session=PipSession()))
        assert parsed, path.name
        for req in parsed:
            hashes = (req.options or {}).get("hashes", {})
            assert hashes.get("sha256"), f"{path.name}: {req.requirement} has no hash pip can see"
            assert re.fullmatch(r"[A-Za-z0-9._-]+==\S+", req.requirement.strip()), req.requirement


def test_render_and_parse_round_trip() -> None:
    lock = lock_module()
    pins = {"aa": "1.0", "b-c": "2.0.post1"}
    hashes = {"aa": ["0" * 64, "1" * 64], "b-c": ["2" * 64]}
    assert lock.parse(lock.render("core", pins, hashes)) == {n: (v, hashes[n]) for n, v in pins.items()}


def test_unchanged_pins_keep_their_hashes_and_only_new_versions_are_looked_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = lock_module()
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path)
    (tmp_path / "core.txt").write_text(lock.render("core", {"kept": "1.0", "bumped": "1.0"},
                                                   {"kept": ["a" * 64], "bumped": ["b" * 64]}))
    asked: list[dict[str, str]] = []

    def fetch(pins: dict[str, str]) -> dict[str, list[str]]:
        asked.append(pins)
        return {name: ["c" * 64] for name in pins}

    monkeypatch.setattr(lock, "fetch_hashes", fetch)
    got = lock.hashes_for("core", {"kept": "1.0", "bumped": "2.0", "new": "0.1"})
    assert asked == [{"bumped": "2.0", "new": "0.1"}]
    assert got == {"kept": ["a" * 64], "bumped": ["c" * 64], "new": ["c" * 64]}


def test_the_hash_lookup_finds_the_locked_file() -> None:
    """For a locked pin, pip's report gives the very sha256 written in the lock (so a `make lock`
    from this environment reproduces the file)."""
    lock = lock_module()
    entries = lock.read_entries("core")
    name = "six" if "six" in entries else sorted(entries)[0]
    version, digests = entries[name]
    assert lock.fetch_hashes({name: version}) == {name: digests}


def test_check_mode_reports_a_pin_without_a_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lock = lock_module()
    for group in ("core", "nlp", "dev"):
        (tmp_path / f"{group}.txt").write_text((lock.LOCK_DIR / f"{group}.txt").read_text())
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path)
    assert lock.main(["--check"]) == 0
    core = (tmp_path / "core.txt").read_text()
    first = next(name for name in lock.parse(core))
    stripped = re.sub(rf"^({re.escape(first)}==\S+) \\\n(    --hash=\S+(?: \\\n)?)+", r"\1\n", core, count=1, flags=re.M)
    assert stripped != core
    (tmp_path / "core.txt").write_text(stripped)
    assert lock.main(["--check"]) == 1
    assert f"no hash for {first}" in capsys.readouterr().err


def test_the_service_dependencies_leave_the_nlp_stack_to_its_extra() -> None:
    """[project] dependencies are what the `earful` image installs (core.txt); spaCy and the models
    are the `nlp` extra (nlp.txt, the earful-nlp image)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = lock_module()
    runtime = {lock.canonical(re.split(r"[\[=<>!~ ;]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    nlp = {lock.canonical(re.split(r"[\[=<>!~ ;]", d, maxsplit=1)[0]) for d in project["optional-dependencies"]["nlp"]}
    assert {"spacy", "scikit-learn", "numpy"} <= nlp and not runtime & nlp
    assert {"faust-streaming", "aiokafka", "fastavro", "asyncpg", "fastapi", "uvicorn"} <= runtime
    assert nlp <= set(lock.read("nlp")) and runtime <= set(lock.read("core"))


def test_earful_version_prints_the_installed_version() -> None:
    script = Path(sys.executable).parent / "earful"
    assert script.exists(), "the `earful` console script is not installed next to this interpreter"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120, check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert importlib.metadata.version("earful") == expected
    assert result.stdout.strip() == f"earful {expected}"
