"""A project folder made by the release before versioned migrations (a17ea8f) opens with this
code, is upgraded in place, keeps every row, and ends with the schema a new project gets."""

from __future__ import annotations

import datetime as dt
import json
import tarfile
from pathlib import Path
from typing import Any

from modelminder.clock import SimulatedClock
from modelminder.events.predictions import PredictionTopic
from modelminder.monitoring.alerts import AlertLog
from modelminder.project import Project, init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.service import Service
from modelminder.serving.store import ServingStore
from modelminder.store.migrations import log as log_schema
from modelminder.store.migrations import registry as registry_schema
from modelminder.store.migrations import schema_version
from modelminder.store.migrations import serving as serving_schema
from modelminder.store.sqlite import Database, quote_name

DATA = Path(__file__).parent / "data"
RELEASE = "a17ea8f"  # made by data/make_project_a17ea8f.py with that commit's code
# Each database of a project, and the version this code brings it to.
DATABASES = {
    "minder.db": len(log_schema.migrations({})),
    "models/registry.db": len(registry_schema.MIGRATIONS),
    "serving.db": len(serving_schema.MIGRATIONS),
}
# Bookkeeping that the upgrade adds or converts (the alerts' rows are checked through the API).
CHANGED = {"schema_version", "sqlite_sequence", "alerts", "alert_events"}


def _unpack(into: Path) -> Path:
    with tarfile.open(DATA / f"project_{RELEASE}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    return into / "proj"


def _read(path: Path, sql: str) -> list[Any]:
    db = Database(path, pragmas=())
    try:
        return db.fetch(sql)
    finally:
        db.close()


def _rows(path: Path) -> dict[str, list[Any]]:
    """Every row of every table, in rowid order."""
    names = _read(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return {
        str(n): _read(path, f"SELECT * FROM {quote_name(str(n))} ORDER BY rowid") for (n,) in names
    }


def _schema(path: Path) -> set[tuple[Any, ...]]:
    objects = _read(path, "SELECT type, name, tbl_name, sql FROM sqlite_master")
    return {tuple(o) for o in objects} | {("user_version", *_read(path, "PRAGMA user_version")[0])}


def _version(path: Path) -> int:
    db = Database(path, pragmas=())
    try:
        return schema_version(db)
    finally:
        db.close()


def _open_all(project: Project) -> None:
    """What every command does first: open the log, the registry and the serving store."""
    with project.open_log() as log, Registry.open(project.root, log):
        pass
    with ServingStore.open(project.root):
        pass


def test_a_project_from_the_last_unversioned_release_is_upgraded_in_place(
    tmp_path: Path,
) -> None:
    root = _unpack(tmp_path / "old")
    expected = json.loads((DATA / f"project_{RELEASE}.json").read_text())
    before = {name: _rows(root / name) for name in DATABASES}
    assert {name: _version(root / name) for name in DATABASES} == dict.fromkeys(DATABASES, 0)
    assert before["minder.db"]["alerts"], "the fixture must hold alerts to convert"

    project = load_project(root)
    _open_all(project)

    # Every database is at the current version, and every row it held is still there.
    assert {name: _version(root / name) for name in DATABASES} == DATABASES
    for name, tables in before.items():
        after = _rows(root / name)
        for table, rows in tables.items():
            if table == "labels":  # migration 4 adds revision 0, no reviewer, no note
                assert after[table] == [(*r, 0, "", "") for r in rows], f"{name}: labels changed"
            elif table not in CHANGED:
                assert after[table] == rows, f"{name}: table {table} changed"
        sequences = dict(after.get("sqlite_sequence", []))
        for table, last in tables.get("sqlite_sequence", []):  # offsets are never reused
            assert sequences[table] == last, f"{name}: the offsets of {table} moved"
    assert "alerts" not in _rows(root / "minder.db")

    # ... and reads back through the library as the release wrote it.
    with project.open_log() as log:
        for topic in ("events", "labels", "audit"):
            assert log.count(topic) == expected[topic]
        assert log.read("events", to_offset=1).row(0, named=True) == expected["first_event"]
        assert log.read("labels").tail(1).row(0, named=True) == expected["last_label"] | {
            "revision": 0,
            "reviewer": "",
            "note": "",
        }
        assert log.feature_labels().height == expected["labels"] - expected["expired_labels"]
        predictions = PredictionTopic(log)
        served = sum(len(predictions.frame(r, features=False)) for r in ("champion", "shadow"))
        assert served == expected["predictions"]
        alerts = AlertLog(log)
        assert [a.to_dict() for a in alerts.read()] == expected["alerts"]
        # Each old row became one event: the alert's last state, stamped when first raised.
        raised = {str(r[1]): int(r[2]) for r in before["minder.db"]["alerts"]}
        assert {e.alert.key: e.recorded_at for e in alerts.events()} == raised
    with Registry.open(root) as reg:
        assert [r.version for r in reg.list()] == expected["models"]
        assert reg.aliases() == expected["aliases"]
        assert len(reg.history()) == expected["alias_history"]
    with ServingStore.open(root) as store:
        assert [[t.role, t.revoked_at is not None] for t in store.tokens()] == expected["tokens"]

    # The upgraded schema is exactly the one a new project gets.
    init_project(tmp_path / "new", builtin=True)
    _open_all(load_project(tmp_path / "new"))
    for name in DATABASES:
        assert _schema(root / name) == _schema(tmp_path / "new" / name), name

    # Opening again changes nothing.
    upgraded = {name: _rows(root / name) for name in DATABASES}
    _open_all(project)
    assert {name: _rows(root / name) for name in DATABASES} == upgraded


def test_the_upgraded_project_serves_with_the_champion_it_had(tmp_path: Path) -> None:
    project = load_project(_unpack(tmp_path))
    with project.open_log() as log:
        last = log.max_event_ts()
    assert last is not None
    at = last + 60_000_000
    service = Service(project, clock=SimulatedClock(at))
    try:
        event = {
            "event_id": "after-upgrade", "card_id": "card000001", "merchant_id": "m00007",
            "amount": 25.0, "country": "US", "channel": "pos",
            "ts": dt.datetime.fromtimestamp(at / 1e6, dt.UTC).isoformat(),
        }  # fmt: skip
        [answer] = service.predict([event])
        assert answer["model_version"] == "v1"
        assert 0.0 <= answer["score"] <= 1.0
        [logged] = service.predictions.for_event("after-upgrade")
        assert logged.role == "champion"
    finally:
        service.close()
