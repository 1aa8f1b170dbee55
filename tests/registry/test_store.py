from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelminder.clock import SimulatedClock
from modelminder.errors import ArtifactError, RegistryError
from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema
from modelminder.registry import ModelRecord, Registry

FILES = {"model.json": b'{"members": 1}', "member_0.txt": b"tree\n"}
META: dict[str, Any] = {
    "feature_set": "card_fraud@3f2a",
    "train_range": [1_700_000_000_000_000, 1_710_000_000_000_000],
    "metrics": {"ap": 0.41, "auc": 0.93},
}
DB = "registry.db"  # and its -wal / -shm companions
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(T0)


@pytest.fixture
def log(tmp_path: Path, clock: SimulatedClock) -> Iterator[EventLog]:
    with EventLog.open(tmp_path / "minder.db", EventSchema({"card_id": "str"}), clock=clock) as lg:
        yield lg


@pytest.fixture
def reg(tmp_path: Path, log: EventLog) -> Iterator[Registry]:
    with Registry.open(tmp_path, log) as opened:
        yield opened


@pytest.fixture
def add(reg: Registry, clock: SimulatedClock) -> Callable[..., ModelRecord]:
    """Register a model (one second after the previous one)."""

    def _add(status: str = "accepted", **kw: Any) -> ModelRecord:
        clock.advance_to(clock.now_us() + 1_000_000)
        kw.setdefault("created_by", "retrain-job")
        return reg.register(FILES, META, status=status, **kw)

    return _add


def _audit(log: EventLog, kind: str = "alias_changed") -> list[dict[str, Any]]:
    frame = log.read("audit").filter(kind=kind)
    return [
        {**json.loads(row["payload"]), "_actor": row["actor"], "_ts": row["ts"]}
        for row in frame.iter_rows(named=True)
    ]


# -- versions -------------------------------------------------------------------------------
def test_register_get_list_round_trip(reg: Registry, add: Callable[..., ModelRecord]) -> None:
    rec = add(reasons=["ap above floor"], created_by="alice")
    assert rec == reg.get("v1")
    assert (rec.version, rec.status, rec.reasons, rec.created_by) == (
        "v1",
        "accepted",
        ("ap above floor",),
        "alice",
    )
    assert rec.meta == META
    assert rec.created_at == T0 + 1_000_000
    assert len(rec.checksum) == 64
    assert reg.list() == [rec]
    assert reg.load_files("v1") == FILES
    assert json.loads(rec.to_json())["meta"]["metrics"] == {"ap": 0.41, "auc": 0.93}


def test_versions_increase_and_persist_across_reopen(
    tmp_path: Path, reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    assert [add().version for _ in range(3)] == ["v1", "v2", "v3"]
    created = [r.created_at for r in reg.list()]
    assert created == sorted(created) and len(set(created)) == 3
    reg.close()
    with Registry.open(tmp_path) as again:
        assert [r.version for r in again.list()] == ["v1", "v2", "v3"]
        assert again.register(FILES, {}, status="rejected", created_by="x").version == "v4"
        assert again.load_files("v2") == FILES


def test_artifacts_live_in_the_project_models_folder(
    tmp_path: Path, add: Callable[..., ModelRecord]
) -> None:
    add()
    assert (tmp_path / "models" / "registry.db").is_file()
    assert (tmp_path / "models" / "v1" / "model.json").read_bytes() == FILES["model.json"]


def test_registration_is_audited(log: EventLog, add: Callable[..., ModelRecord]) -> None:
    rec = add("rejected", reasons=["ap 0.1 < 0.3"])
    [event] = _audit(log, "model_registered")
    assert event["version"] == "v1" and event["status"] == "rejected"
    assert event["reasons"] == ["ap 0.1 < 0.3"] and event["checksum"] == rec.checksum
    assert event["_ts"] == rec.created_at


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"status": "ok"}, r"must be one of 'accepted', 'rejected'. Got 'ok'"),
        ({"status": "accepted", "reasons": "too slow"}, "list of strings"),
        ({"status": "accepted", "created_by": ""}, "'created_by' must be a non-empty string"),
        ({"status": "accepted", "meta": {"auc": float("nan")}}, "JSON-serializable"),
        ({"status": "accepted", "meta": {"when": object()}}, "JSON-serializable"),
    ],
)
def test_bad_registrations_are_refused_and_leave_nothing(
    tmp_path: Path, reg: Registry, kwargs: dict[str, Any], needle: str
) -> None:
    kwargs = {"created_by": "job", "meta": {}, **kwargs}
    meta = kwargs.pop("meta")
    with pytest.raises(RegistryError, match=needle):
        reg.register(FILES, meta, **kwargs)
    assert reg.list() == []
    leftovers = [p for p in (tmp_path / "models").iterdir() if not p.name.startswith(DB)]
    assert leftovers == []


def test_bad_file_names_are_refused_before_anything_is_written(
    tmp_path: Path, reg: Registry
) -> None:
    with pytest.raises(ArtifactError, match=r"Invalid artifact file name '\.\./x'"):
        reg.register({"../x": b""}, {}, status="accepted", created_by="job")
    assert reg.list() == []
    assert not (tmp_path / "models" / "v1").exists()


def test_a_failed_row_insert_removes_the_artifact(
    tmp_path: Path, reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Registry._fetch

    def failing(self: Registry, sql: str, params: Any = None) -> list[Any]:
        if sql.startswith("INSERT INTO models"):
            raise RuntimeError("disk I/O error")
        return real(self, sql, params)

    monkeypatch.setattr(Registry, "_fetch", failing)
    with pytest.raises(RuntimeError, match="disk I/O error"):
        reg.register(FILES, {}, status="accepted", created_by="job")
    monkeypatch.undo()
    assert not (tmp_path / "models" / "v1").exists()
    assert reg.list() == []
    assert reg.register(FILES, {}, status="accepted", created_by="job").version == "v1"


def test_an_orphaned_folder_from_a_crash_is_moved_aside(tmp_path: Path, reg: Registry) -> None:
    # A crash between the artifact's rename and the row's commit leaves models/v1 unregistered.
    (tmp_path / "models" / "v1").mkdir()
    (tmp_path / "models" / "v1" / "half.bin").write_bytes(b"?")
    rec = reg.register(FILES, {}, status="accepted", created_by="job")
    assert rec.version == "v1" and reg.load_files("v1") == FILES
    [orphan] = [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".orphan-v1-")]
    assert (orphan / "half.bin").read_bytes() == b"?"


def test_unknown_versions_name_the_known_ones(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    with pytest.raises(RegistryError, match="has no versions yet"):
        reg.get("v1")
    add(), add()
    with pytest.raises(RegistryError, match=r"Unknown model version 'v9'. Known versions: v1, v2"):
        reg.get("v9")
    with pytest.raises(RegistryError, match="Known versions: v1, v2"):
        reg.load_files("1")


def test_load_files_verifies_the_checksum_every_time(
    tmp_path: Path, reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    add()
    assert reg.load_files("v1") == FILES
    (tmp_path / "models" / "v1" / "member_0.txt").write_bytes(b"trex\n")
    with pytest.raises(ArtifactError, match="tampered with or corrupted"):
        reg.load_files("v1")


def test_versions_and_history_are_immutable_in_the_database(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    add("rejected")
    reg.set_alias("shadow", "v1", actor="alice")
    for sql in (
        "UPDATE models SET status = 'accepted'",
        "DELETE FROM models",
        "UPDATE alias_history SET override = 1",
        "DELETE FROM alias_history",
    ):
        with pytest.raises(Exception, match="immutable"):
            reg._fetch(sql)
    assert reg.get("v1").status == "rejected"
    assert reg.alias("shadow") == "v1"
    assert not hasattr(reg, "update")


def test_a_missing_project_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"project folder .*nope does not exist"):
        Registry.open(tmp_path / "nope")


# -- aliases --------------------------------------------------------------------------------
def test_set_and_read_aliases(reg: Registry, add: Callable[..., ModelRecord]) -> None:
    add(), add()
    assert reg.aliases() == {} and reg.alias("champion") is None
    reg.set_alias("champion", "v1", actor="alice", reason="first")
    reg.set_alias("shadow", "v2", actor="alice")
    reg.set_alias("champion", "v2", actor="bob", reason="better ap")
    assert reg.aliases() == {"champion": "v2", "shadow": "v2"}
    assert [(c.alias, c.version, c.previous, c.actor) for c in reg.history()] == [
        ("champion", "v1", None, "alice"),
        ("shadow", "v2", None, "alice"),
        ("champion", "v2", "v1", "bob"),
    ]


def test_setting_an_alias_to_its_current_version_changes_nothing(
    reg: Registry, log: EventLog, add: Callable[..., ModelRecord]
) -> None:
    add()
    reg.set_alias("champion", "v1", actor="alice")
    reg.set_alias("champion", "v1", actor="alice")
    assert len(reg.history()) == 1 and len(_audit(log)) == 1


def test_unknown_alias_and_version_name_the_allowed_values(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    add()
    allowed = r"Unknown alias 'prod'. Aliases: champion, challenger, shadow"
    with pytest.raises(RegistryError, match=allowed):
        reg.set_alias("prod", "v1", actor="alice")
    with pytest.raises(RegistryError, match=allowed):
        reg.alias("prod")
    with pytest.raises(RegistryError, match=allowed):
        reg.clear_alias("prod", actor="alice", reason="")
    with pytest.raises(RegistryError, match=r"Unknown model version 'v7'\. Known versions: v1"):
        reg.set_alias("champion", "v7", actor="alice")
    with pytest.raises(RegistryError, match=r"actor must be a non-empty string\. Got ' '"):
        reg.set_alias("champion", "v1", actor=" ")
    assert reg.history() == []


def test_every_alias_change_is_audited(
    reg: Registry, log: EventLog, clock: SimulatedClock, add: Callable[..., ModelRecord]
) -> None:
    add(), add()
    reg.set_alias("champion", "v1", actor="alice", reason="first")
    clock.advance_to(T0 + 10_000_000)
    reg.set_alias("champion", "v2", actor="bob", reason="better ap")
    events = _audit(log)
    assert [(e["alias"], e["version"], e["previous"], e["_actor"]) for e in events] == [
        ("champion", "v1", None, "alice"),
        ("champion", "v2", "v1", "bob"),
    ]
    assert events[1]["reason"] == "better ap" and events[1]["override"] is False
    assert [e["_ts"] for e in events] == [c.ts for c in reg.history()]
    assert events[1]["_ts"] == T0 + 10_000_000


def test_a_rejected_model_cannot_become_champion_without_override(
    reg: Registry, log: EventLog, add: Callable[..., ModelRecord]
) -> None:
    add()
    add("rejected", reasons=["ap 0.12 < floor 0.30", "overfit gap 0.2"])
    reg.set_alias("champion", "v1", actor="alice")
    with pytest.raises(RegistryError) as err:
        reg.set_alias("champion", "v2", actor="mallory", reason="trust me")
    msg = str(err.value)
    assert "'v2' was rejected (ap 0.12 < floor 0.30; overfit gap 0.2)" in msg
    assert "override=True" in msg
    assert reg.alias("champion") == "v1" and len(reg.history()) == 1
    # A rejected model may still be shadowed or challenge.
    reg.set_alias("shadow", "v2", actor="alice")
    reg.set_alias("challenger", "v2", actor="alice")
    assert [c.override for c in reg.history()] == [False, False, False]


def test_an_override_needs_a_reason_and_is_recorded_everywhere(
    reg: Registry, log: EventLog, add: Callable[..., ModelRecord]
) -> None:
    add(), add("rejected", reasons=["ap too low"])
    reg.set_alias("champion", "v1", actor="alice")
    with pytest.raises(RegistryError, match="needs a reason"):
        reg.set_alias("champion", "v2", actor="bob", override=True)
    reg.set_alias("champion", "v2", actor="bob", reason="incident 42: v1 broken", override=True)
    assert reg.alias("champion") == "v2"
    last = reg.history("champion")[-1]
    assert (last.version, last.previous, last.override, last.actor, last.reason) == (
        "v2",
        "v1",
        True,
        "bob",
        "incident 42: v1 broken",
    )
    event = _audit(log)[-1]
    assert event == {
        "alias": "champion",
        "version": "v2",
        "previous": "v1",
        "action": "set",
        "reason": "incident 42: v1 broken",
        "override": True,
        "_actor": "bob",
        "_ts": last.ts,
    }


def test_override_is_not_recorded_when_it_was_not_needed(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    add()
    reg.set_alias("champion", "v1", actor="alice", override=True)
    assert reg.history()[-1].override is False


def test_clear_alias_is_recorded_and_clearing_nothing_is_a_no_op(
    reg: Registry, log: EventLog, add: Callable[..., ModelRecord]
) -> None:
    add()
    reg.clear_alias("shadow", actor="alice", reason="nothing to clear")
    assert reg.history() == []
    reg.set_alias("shadow", "v1", actor="alice")
    reg.clear_alias("shadow", actor="alice", reason="shadow run finished")
    assert reg.alias("shadow") is None and reg.aliases() == {}
    event = _audit(log)[-1]
    assert (event["action"], event["version"], event["previous"]) == ("clear", None, "v1")


# -- rollback -------------------------------------------------------------------------------
def _promote_all(reg: Registry, add: Callable[..., ModelRecord], n: int) -> None:
    for _ in range(n):
        reg.set_alias("champion", add().version, actor="loop", reason="won evaluation")


def test_rollback_returns_to_the_previous_champion_and_is_audited(
    reg: Registry, log: EventLog, add: Callable[..., ModelRecord]
) -> None:
    _promote_all(reg, add, 3)
    assert reg.rollback(actor="oncall", reason="v3 precision collapsed") == "v2"
    assert reg.alias("champion") == "v2"
    last = reg.history("champion")[-1]
    assert (last.action, last.version, last.previous, last.actor) == (
        "rollback",
        "v2",
        "v3",
        "oncall",
    )
    event = _audit(log)[-1]
    assert (event["action"], event["version"], event["previous"], event["reason"]) == (
        "rollback",
        "v2",
        "v3",
        "v3 precision collapsed",
    )
    assert event["_actor"] == "oncall"


def test_repeated_rollbacks_keep_walking_back_then_stop(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    _promote_all(reg, add, 3)
    assert reg.rollback(actor="oncall") == "v2"
    assert reg.rollback(actor="oncall") == "v1"
    with pytest.raises(RegistryError, match="champion 'v1' has no previous champion"):
        reg.rollback(actor="oncall")
    assert reg.alias("champion") == "v1"


def test_rollback_skips_clears_and_repeats_of_the_current_version(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    _promote_all(reg, add, 2)  # v1, v2
    reg.clear_alias("champion", actor="oncall", reason="stop serving")
    reg.set_alias("champion", "v2", actor="oncall", reason="resume")
    assert reg.rollback(actor="oncall") == "v1"


def test_rollback_without_a_previous_champion_errors(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    with pytest.raises(RegistryError, match="There is no champion to roll back"):
        reg.rollback(actor="oncall")
    _promote_all(reg, add, 1)
    reg.set_alias("challenger", add().version, actor="loop")
    with pytest.raises(RegistryError, match="no previous champion"):
        reg.rollback(actor="oncall")
    assert reg.aliases() == {"champion": "v1", "challenger": "v2"}


def test_rollback_does_not_silently_reinstate_a_rejected_model(
    reg: Registry, add: Callable[..., ModelRecord]
) -> None:
    add("rejected", reasons=["ap too low"])
    reg.set_alias("champion", "v1", actor="bob", reason="emergency", override=True)
    _promote_all(reg, add, 1)  # v2
    with pytest.raises(RegistryError, match=r"Cannot roll back to 'v1': it was rejected.*override"):
        reg.rollback(actor="oncall")
    assert reg.alias("champion") == "v2"


def test_registry_without_a_log_and_with_its_own_clock(tmp_path: Path) -> None:
    with Registry.open(tmp_path, clock=SimulatedClock(42)) as reg:
        rec = reg.register(FILES, {}, status="accepted", created_by="job")
        reg.set_alias("champion", rec.version, actor="alice")
        assert rec.created_at == 42 and reg.history()[0].ts == 42
