"""Live watchlists on a real broker: the seed folder is published, the CRUD API publishes every
change to `earful.watchlists.v1`, every store applies it without a restart, and the folder is
kept in step."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from earful.core.apikeys import parse_api_keys
from earful.core.audit import AuditLog
from earful.core.auth import ApiAuth, KeyRing
from earful.core.errors import BrokerError
from earful.core.http import add_problem_handlers
from earful.core.kafka import Codecs
from earful.core.settings import Settings
from earful.core.topics import WATCHLISTS, create_topics
from earful.watchlists.files import WatchlistFolder, load_watchlists
from earful.watchlists.live import UPDATES, WatchlistStore, seed_from_folder
from earful.watchlists.model import to_record
from earful.watchlists.registry import WatchlistRegistry
from earful_dev.stack.broker import LocalBroker, free_port
from tests.support import consume_all, eventually, produce

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "services" / "earful" / "sample" / "watchlists"
KEY = "test-key"


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own: the compacted topic keeps everything, tests must not share it."""
    b = LocalBroker.start(log_path=tmp_path / "tansu.log")
    yield b
    b.stop()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "watchlists"
    shutil.copytree(SAMPLE, target)
    return target


def _settings(broker: LocalBroker, folder: Path, **overrides: object) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, watchlists_dir=folder, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def settings_(fresh_broker: LocalBroker, folder: Path) -> Settings:
    s = _settings(fresh_broker, folder)
    await create_topics(s)
    return s


@pytest.fixture
async def registry(settings_: Settings) -> AsyncIterator[WatchlistRegistry]:
    reg = WatchlistRegistry.for_settings(settings_)
    await reg.start()
    yield reg
    await reg.stop()


@pytest.fixture
async def api(registry: WatchlistRegistry) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    add_problem_handlers(app)  # as the storage service's app answers errors
    app.include_router(registry.router(ApiAuth(KeyRing(parse_api_keys(KEY)), AuditLog("storage"))))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://storage",
                                 headers={"X-API-Key": KEY}) as client:
        yield client


@pytest.fixture
async def other_service(settings_: Settings) -> AsyncIterator[WatchlistStore]:
    """Another process's view (enrichment, alerting): its own store on the same topic."""
    store = WatchlistStore(settings_, seed=seed_from_folder(settings_, "enrichment"), service="enrichment")
    await store.start()
    yield store
    await store.stop()


def _ids(store: WatchlistStore, text: str, **fields: str) -> list[str]:
    ws = store.current()
    return ws.matched_ids(ws.match(text, **fields))


async def test_the_seed_folder_is_published_once(settings_: Settings, registry: WatchlistRegistry, folder: Path) -> None:
    records = await consume_all(settings_, WATCHLISTS, expect=4, timeout_s=10)
    codec = Codecs(settings_).for_topic(WATCHLISTS)
    decoded = {r.key.decode(): codec.decode(r.value) for r in records}
    assert sorted(decoded) == ["acme-air", "globex", "initech", "skyjet"]
    on_disk = {w.id: w for w in load_watchlists(folder)}
    for wid, rec in decoded.items():
        assert rec["revision"] == on_disk[wid].revision
        assert rec["updated_by"] == f"file:{folder / (wid + '.yaml')}"
    # A restart with the same folder publishes nothing new.
    again = WatchlistRegistry.for_settings(settings_)
    summary = await again.start()
    await again.stop()
    assert summary["published"] == [] and sorted(summary["unchanged"]) == sorted(decoded)
    assert len(await consume_all(settings_, WATCHLISTS, expect=5, timeout_s=2)) == 4


async def test_an_api_change_reaches_another_service_live(api: httpx.AsyncClient, other_service: WatchlistStore,
                                                          folder: Path) -> None:
    assert _ids(other_service, "Acme Airways is late") == []
    resp = await api.get("/v1/watchlists/acme-air")
    assert resp.status_code == 200
    body = resp.json()
    assert resp.headers["ETag"] == f'"{body["revision"]}"' and body["file"] == str(folder / "acme-air.yaml")
    body["query"] = '"Acme Airways" OR #AcmeAirways'
    for key in ("revision", "updated_at", "updated_by", "file"):
        body.pop(key)
    resp = await api.put("/v1/watchlists/acme-air", json=body, headers={"If-Match": resp.headers["ETag"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["updated_by"].startswith("key:legacy-") and KEY not in resp.text

    async def applied() -> bool:
        return _ids(other_service, "Acme Airways is late") == ["acme-air"]

    assert await eventually(applied, timeout_s=10)
    assert _ids(other_service, "Acme Air is late") == []  # the old query is gone
    # written back to the folder, and a restart's seed would publish nothing
    assert load_watchlists(folder)[0].query == '"Acme Airways" OR #AcmeAirways'
    assert 'query: \'"Acme Airways" OR #AcmeAirways\'' in (folder / "acme-air.yaml").read_text()

    # create, then delete
    new = {"id": "zephyr", "name": "Zephyr Jets", "kind": "competitor", "query": "Zephyr NEAR/2 (jet OR jets)"}
    resp = await api.post("/v1/watchlists", json=new)
    assert resp.status_code == 201 and resp.headers["Location"] == "/v1/watchlists/zephyr"
    assert (folder / "zephyr.yaml").is_file()
    assert await eventually(lambda: _async(_ids(other_service, "zephyr jets are cheap") == ["zephyr"]), timeout_s=10)
    assert (await api.delete("/v1/watchlists/zephyr")).status_code == 204
    assert await eventually(lambda: _async(other_service.get("zephyr") is None), timeout_s=10)
    assert not (folder / "zephyr.yaml").exists()
    assert (await api.get("/v1/watchlists/zephyr")).status_code == 404
    listing = (await api.get("/v1/watchlists")).json()
    assert [w["id"] for w in listing["watchlists"]] == ["acme-air", "globex", "initech", "skyjet"]
    assert listing["revision"] == other_service.current().revision


async def _async(value: bool) -> bool:
    return value


async def test_api_refusals(api: httpx.AsyncClient) -> None:
    good = {"id": "zephyr", "query": "zephyr"}
    resp = await api.post("/v1/watchlists", json={"id": "zephyr", "query": "zephyr OR"})
    assert resp.status_code == 422
    (problem,) = resp.json()["errors"]
    assert problem["type"] == "query_error" and problem["ctx"]["position"] == 9
    assert "column 10" in problem["detail"] and "after OR" in problem["detail"]
    resp = await api.post("/v1/watchlists", json={"id": "zephyr", "query": "NOT pie"})
    assert resp.status_code == 422 and "none of the query's terms" in resp.text
    resp = await api.post("/v1/watchlists", json={**good, "colour": "red"})
    assert resp.status_code == 422 and "extra_forbidden" in resp.text
    assert (await api.post("/v1/watchlists", json={"id": "acme-air", "query": "x"})).status_code == 409
    resp = await api.put("/v1/watchlists/globex", json={"id": "globex", "query": "globex"}, headers={"If-Match": '"stale"'})
    assert resp.status_code == 412 and "read it again" in resp.text
    resp = await api.put("/v1/watchlists/globex", json={"id": "globex", "query": "x"}, headers={"If-None-Match": "*"})
    assert resp.status_code == 412
    assert (await api.put("/v1/watchlists/other", json=good)).status_code == 422  # id differs from the path
    assert (await api.get("/v1/watchlists/Not_An_Id")).status_code == 422
    assert (await api.delete("/v1/watchlists/nope")).status_code == 404
    resp = await api.get("/v1/watchlists", headers={"X-API-Key": "wrong"})
    assert resp.status_code == 401
    resp = await api.put("/v1/watchlists/zephyr", json=good, headers={"If-None-Match": "*"})
    assert resp.status_code == 201
    assert (await api.put("/v1/watchlists/zephyr", json=good)).status_code == 200  # same content: no new version


async def test_validate_and_try_a_query(api: httpx.AsyncClient) -> None:
    resp = await api.post("/v1/watchlists/_validate", json={"id": "apple", "query": "Apple AND NOT pie"})
    assert resp.status_code == 200 and resp.json()["parsed"] == "(Apple AND NOT pie)"
    assert (await api.post("/v1/watchlists/_validate", json={"id": "apple", "query": "apple and pie"})).status_code == 422
    resp = await api.post("/v1/watchlists/_test", json={
        "query": "(Apple OR iPhone*) AND NOT pie lang:en", "text": "My iPhone died", "lang": "en"})
    assert resp.json() == {"matches": True, "parsed": "((Apple OR iPhone*) AND NOT pie AND lang:en)",
                           "spans": [{"start": 3, "end": 9, "term": "iPhone*", "text": "iPhone"}]}
    resp = await api.post("/v1/watchlists/_test", json={"query": "(Apple", "text": "x"})
    assert resp.status_code == 422 and resp.json()["errors"][0]["column"] == 7


async def test_seed_policies(settings_: Settings, folder: Path, fresh_broker: LocalBroker) -> None:
    reg = WatchlistRegistry.for_settings(settings_)
    await reg.start()
    changed = reg.store.published("skyjet").watchlist  # type: ignore[union-attr]
    api_version = dataclasses.replace(changed, query="SkyJet OR #SkyJet OR SkyJetAir")
    await reg.put(api_version, "api")
    await reg.stop()
    # The folder is the seed again (e.g. a read-only ConfigMap that never got the API change):
    (folder / "skyjet.yaml").write_text((SAMPLE / "skyjet.yaml").read_text())

    keep = WatchlistRegistry.for_settings(_settings(fresh_broker, folder, watchlists_seed_policy="missing"))
    summary = await keep.start()
    assert summary["published"] == [] and summary["kept_topic"] == ["skyjet"]
    assert keep.store.get("skyjet").query == api_version.query  # type: ignore[union-attr]
    await keep.stop()

    (folder / "skyjet.yaml").write_text((SAMPLE / "skyjet.yaml").read_text())
    win = WatchlistRegistry.for_settings(_settings(fresh_broker, folder, watchlists_seed_policy="changed"))
    summary = await win.start()
    assert summary["published"] == ["skyjet"] and win.store.get("skyjet").query == changed.query  # type: ignore[union-attr]
    await win.stop()


async def test_a_bad_seed_file_does_not_stop_the_others(settings_: Settings, folder: Path) -> None:
    (folder / "globex.yaml").write_text("id: globex\nquery: NOT globex\n")
    reg = WatchlistRegistry.for_settings(settings_)
    summary = await reg.start()
    try:
        assert sorted(summary["published"]) == ["acme-air", "initech", "skyjet"]
        assert len(summary["invalid"]) == 1 and "globex.yaml" in summary["invalid"][0]
        assert reg.store.get("globex") is None
    finally:
        await reg.stop()


async def test_bad_records_keep_the_previous_version(registry: WatchlistRegistry, other_service: WatchlistStore,
                                                     settings_: Settings) -> None:
    codec = Codecs(settings_).for_topic(WATCHLISTS)
    good = registry.store.published("initech")
    assert good is not None
    broad = dict(to_record(good.watchlist, datetime.now(timezone.utc), "other-tool"), query="NOT initech")
    rejected_before = UPDATES.labels("enrichment", "rejected")._value.get()
    await produce(settings_, WATCHLISTS, [(b"initech", codec.encode(broad)), (b"initech", b"\x00garbage"),
                                          (b"globex", None)])  # type: ignore[list-item]

    async def tombstone_applied() -> bool:
        return other_service.get("globex") is None

    assert await eventually(tombstone_applied, timeout_s=10)
    assert other_service.get("initech") == good.watchlist  # both bad records were ignored
    assert UPDATES.labels("enrichment", "rejected")._value.get() - rejected_before == 2
    assert _ids(other_service, "Initech is down") == ["initech"]


async def test_the_seed_serves_until_the_topic_has_watchlists(settings_: Settings, folder: Path) -> None:
    store = WatchlistStore(settings_, seed=seed_from_folder(settings_, "alerting"), service="alerting")
    await store.start()
    try:
        assert not store.topic_has_records and len(store.current()) == 4
        await store.check()
        reg = WatchlistRegistry(settings_, WatchlistStore(settings_, service="storage"), WatchlistFolder(folder))
        (folder / "skyjet.yaml").unlink()
        await reg.start()  # publishes three
        await reg.stop()

        async def from_topic() -> bool:
            return store.topic_has_records and sorted(store.current().watchlists) == ["acme-air", "globex", "initech"]

        assert await eventually(from_topic, timeout_s=10)
    finally:
        await store.stop()
    with pytest.raises(RuntimeError):
        await store.check()


async def test_an_unreachable_broker_is_a_clear_error(folder: Path) -> None:
    s = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", watchlists_dir=folder)
    store = WatchlistStore(s, service="test")
    with pytest.raises(BrokerError, match=r"earful.watchlists.v1"):
        await asyncio.wait_for(store.start(timeout_s=3), 30)


async def test_a_missing_folder_is_a_configuration_error(settings_: Settings, tmp_path: Path) -> None:
    from earful.core.errors import ConfigError

    broken = settings_.model_copy(update={"watchlists_dir": tmp_path / "nope"})
    with pytest.raises(ConfigError, match="EARFUL_WATCHLISTS_DIR="):
        seed_from_folder(broken, "enrichment")
    reg = WatchlistRegistry.for_settings(broken)
    try:
        with pytest.raises(ConfigError, match="no such folder"):
            await reg.start()
    finally:
        await reg.stop()


def test_a_service_with_a_missing_folder_exits_with_one_line(base_env: dict[str, str], tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**base_env, "EARFUL_WATCHLISTS_DIR": str(tmp_path / "nope"), "PYTHONPATH": str(SAMPLE.parents[2])}
    proc = subprocess.run([sys.executable, "-m", "earful", "alerting"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert f"EARFUL_WATCHLISTS_DIR={tmp_path / 'nope'}: no such folder or file" in proc.stderr
    assert "Traceback" not in proc.stderr
