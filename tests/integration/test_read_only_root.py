"""Every service runs as the containers run it: the whole filesystem read-only except an empty /tmp
(Kubernetes readOnlyRootFilesystem with an emptyDir at /tmp; compose read_only with a tmpfs).

Each service is started in its own user and mount namespace (`unshare`) where `/` is remounted
read-only and a fresh tmpfs is mounted on /tmp, then must become ready, process a record and stop
cleanly. Skipped where the kernel does not allow unprivileged namespaces.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from earful.core.topics import ENRICHED, RAW
from earful_dev.stack.broker import free_port
from earful_dev.stack.processes import ServiceProcess, service_env
from tests.support import codecs, consume_all, produce, raw_record

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def tmp_size() -> str:
    """The /tmp size the Kubernetes pods get (deploy/k8s/base/pod-defaults.yaml), as a tmpfs size."""
    doc = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "pod-defaults.yaml").read_text())
    (tmp,) = [v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
    return tmp["emptyDir"]["sizeLimit"].replace("Mi", "m").replace("Gi", "g")


READ_ONLY = f'mount -o remount,bind,ro / && mount -t tmpfs -o size={tmp_size()} tmpfs /tmp && cd "$0" && exec "$@"'


def read_only_supported() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-r", "-m", "sh", "-c", READ_ONLY + " 2>/dev/null", "/", "sh", "-c",
                            "touch /tmp/ok && ! touch /probe-must-fail 2>/dev/null"],
                           capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


class ReadOnlyService(ServiceProcess):
    """A service process whose root filesystem is read-only, /tmp a fresh tmpfs, cwd `workdir`
    (an empty directory, read-only inside like the image's /app)."""

    workdir: Path = REPO

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["unshare", "-r", "-m", "sh", "-c", READ_ONLY, str(self.workdir), sys.executable, "-m", "earful", self.name],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )


def under_tmp(path: Path) -> bool:
    return Path("/tmp") in path.resolve().parents


@pytest.fixture(scope="module", autouse=True)
def _needs_namespaces() -> None:
    if not read_only_supported():
        pytest.skip("unprivileged user and mount namespaces are not available (unshare -r -m)")
    if under_tmp(REPO) or under_tmp(Path(sys.prefix)):
        # The fresh tmpfs on /tmp would hide the code itself: the service could not even start.
        pytest.skip(f"the checkout or its Python ({REPO}, {sys.prefix}) is under /tmp, which this test replaces "
                    "with an empty tmpfs; run it from a checkout elsewhere")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh, empty working directory outside /tmp (the service sees it read-only)."""
    (REPO / ".earful").mkdir(exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="read-only-cwd-", dir=REPO / ".earful"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name", ["ingest", "enrichment", "alerting", "storage"])
def test_service_runs_with_a_read_only_root(name: str, base_env: dict[str, str], pg_url: str, settings,
                                             tmp_path: Path, workdir: Path) -> None:
    env = {**base_env, "EARFUL_DATABASE_URL": pg_url}
    port = free_port()
    svc = ReadOnlyService(name, port, service_env(env, name, port), tmp_path / f"{name}.log")
    svc.workdir = workdir
    svc.start()
    try:
        svc.wait_ready(90)
    finally:
        code = svc.stop()
    assert code == 0, f"{name} exited with {code}:\n{svc.log_tail()}"


async def test_enrichment_processes_records_with_a_read_only_root(base_env: dict[str, str], settings,
                                                                  tmp_path: Path, workdir: Path) -> None:
    from datetime import datetime, timezone

    port = free_port()
    svc = ReadOnlyService("enrichment", port, service_env(base_env, "enrichment", port), tmp_path / "enrichment.log")
    svc.workdir = workdir
    svc.start()
    try:
        svc.wait_ready(90)
        record = raw_record("ro-1", "Acme Air lost my bag again", datetime(2026, 11, 2, 9, tzinfo=timezone.utc))
        await produce(settings, RAW, [(record["mention_id"].encode(), codecs(settings).for_topic(RAW).encode(record))])
        out = await consume_all(settings, ENRICHED, expect=1, timeout_s=60)
        assert [codecs(settings).for_topic(ENRICHED).decode(m.value)["mention"]["mention_id"] for m in out] == [
            record["mention_id"]], svc.log_tail()
    finally:
        assert svc.stop() == 0, svc.log_tail()
