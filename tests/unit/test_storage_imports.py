"""Every module of the storage service imports on its own, whichever is imported first.

A module that only imports when another one was imported before it (a circular import that the
usual import order hides) breaks a script, a test or a tool that starts from it. One fresh
interpreter imports each module in turn after forgetting every `earful` module it has loaded (and
the metrics registry they filled), so each import starts from nothing of ours, as in a new
process; other third-party packages stay loaded, which keeps it fast and changes nothing about
our own import order.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import earful.storage

PROBE = """
import importlib, json, sys, traceback
OURS = ("earful", "prometheus_client")  # the metrics registry holds what our modules registered
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] in OURS]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
"""


def storage_modules() -> list[str]:
    """earful.storage and every module and package below it."""
    found = ["earful.storage"]
    for info in pkgutil.walk_packages([str(Path(earful.storage.__file__).parent)], "earful.storage."):
        found.append(info.name)
    return sorted(found)


def test_the_module_list_is_complete() -> None:
    names = storage_modules()
    for expected in ("earful.storage.dashboard_views", "earful.storage.kpis", "earful.storage.api",
                     "earful.storage.api.dashboard", "earful.storage.report_data", "earful.storage.cases"):
        assert expected in names


def test_the_probe_catches_a_circular_import(tmp_path: Path) -> None:
    """The check can fail: two modules of a package importing names from each other."""
    pkg = tmp_path / "earful_cycle_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a.py").write_text("from earful_cycle_probe.b import B\nA = 1\n", encoding="utf-8")
    (pkg / "b.py").write_text("from earful_cycle_probe.a import A\nB = 2\n", encoding="utf-8")
    probe = PROBE.replace('("earful", "prometheus_client")', '("earful_cycle_probe",)')
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(["earful_cycle_probe.a"])], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path, check=True)
    failed = json.loads(out.stdout)
    assert list(failed) == ["earful_cycle_probe.a"] and "circular import" in failed["earful_cycle_probe.a"]


def test_every_storage_module_imports_on_its_own() -> None:
    names = storage_modules()
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    failed = json.loads(out.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n".join(f"{name}:\n{trace}" for name, trace in failed.items())
