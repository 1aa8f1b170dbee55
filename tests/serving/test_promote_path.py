"""One way to change what is served: the CLI and the API promote through the same checked,
audited path, and a promote does not stall predictions in flight."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelminder.project import Project
from modelminder.registry import Registry, changes
from modelminder.serving.app import create_app
from modelminder.serving.service import Service
from modelminder.sim.world import World

from .conftest import live_project

MINDER = [sys.executable, "-c", "from modelminder.cli import main; main()"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, World, int]:
    return live_project(tmp_path_factory.mktemp("promote"), share=0.95, cards=120)


def _event(world: World, i: int) -> dict[str, Any]:
    row = world.events.row(i, named=True)
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _second_version(project: Project) -> str:
    """Register a copy of the champion's files as a new accepted version."""
    with Registry.open(project.root) as reg:
        champ = reg.get(reg.alias("champion") or "")
        record = reg.register(
            reg.load_files(champ.version), champ.meta, status="accepted", created_by="test"
        )
    return record.version


def test_cli_promote_checks_the_model_before_the_alias_moves(
    live: tuple[Project, World, int],
) -> None:
    project, _, _ = live
    version = _second_version(project)
    with Registry.open(project.root) as reg:
        before = reg.alias("champion")
        folder = reg.artifact_folder(version)
    member = next(p for p in folder.iterdir() if p.name.startswith("member_"))
    member.write_bytes(member.read_bytes() + b"tampered")
    result = subprocess.run(
        [*MINDER, "models", "promote", version, "--project", str(project.root)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
    assert "tampered with or corrupted" in said
    assert "Traceback" not in said
    with Registry.open(project.root) as reg:
        assert reg.alias("champion") == before  # nothing moved
        assert all(c.version != version for c in reg.history("champion"))


def test_promote_refuses_a_model_of_another_feature_set(live: tuple[Project, World, int]) -> None:
    project, _, _ = live
    version = _second_version(project)
    with pytest.raises(Exception, match="different feature set"):
        changes.promote(project.root, None, version, fingerprint="0" * 64, actor="test")
    with Registry.open(project.root) as reg:
        assert reg.alias("champion") != version


def test_api_and_cli_record_who_moved_the_alias(live: tuple[Project, World, int]) -> None:
    project, _, _ = live
    first, version = _second_version(project), _second_version(project)
    service = Service(project)
    try:
        with TestClient(create_app(service, open_access=True)) as client:
            assert client.post(f"/v1/models/{first}/promote").status_code == 200
            r = client.post(f"/v1/models/{version}/promote", params={"reason": "canary ok"})
            assert r.status_code == 200, r.text
            assert service.champion is not None and service.champion.version == version
            r = client.post("/v1/models/rollback", params={"reason": "undo"})
            assert r.status_code == 200, r.text
            assert r.json() == {"champion": first} and service.champion.version == first
    finally:
        service.close()
    with Registry.open(project.root) as reg:
        last_two = reg.history("champion")[-2:]
    assert [(c.action, c.reason) for c in last_two] == [("set", "canary ok"), ("rollback", "undo")]
    assert all(c.actor == "open server (no tokens) (api)" for c in last_two)


def test_promote_runs_off_the_event_loop(
    live: tuple[Project, World, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a promote is stuck loading its model, predictions are still answered: the
    loading runs in the thread pool, not on the event loop that serves them."""
    project, world, cut = live
    version = _second_version(project)
    loading, release = threading.Event(), threading.Event()
    real = changes.load_checked

    def slow_load(*args: Any, **kwargs: Any) -> changes.Loaded:
        loading.set()
        assert release.wait(60), "the test never released the promote"
        return real(*args, **kwargs)

    service = Service(project)
    try:
        with TestClient(create_app(service, open_access=True)) as client:
            monkeypatch.setattr(changes, "load_checked", slow_load)
            answers: dict[str, Any] = {}
            promoting = threading.Thread(
                target=lambda: answers.update(promote=client.post(f"/v1/models/{version}/promote"))
            )
            promoting.start()
            assert loading.wait(60), "the promote never started loading"
            scored = []
            for i in range(cut, cut + 20):  # answered while the promote is still blocked
                r = client.post("/v1/predict", json={"events": [_event(world, i)]})
                assert r.status_code == 200, r.text
                scored.append(r.json()["predictions"][0]["model_version"])
            assert not release.is_set() and promoting.is_alive()
            release.set()
            promoting.join(60)
            assert answers["promote"].status_code == 200, answers["promote"].text
            after = client.post("/v1/predict", json={"events": [_event(world, cut + 20)]})
            assert after.json()["predictions"][0]["model_version"] == version
            assert version not in scored
    finally:
        service.close()


@pytest.fixture(autouse=True)
def _restore_champion(live: tuple[Project, World, int]) -> Iterator[None]:
    project, _, _ = live
    with Registry.open(project.root) as reg:
        before = reg.alias("champion")
    yield
    with project.open_log() as log, Registry.open(project.root, log) as reg:
        if before is not None and reg.alias("champion") != before:
            reg.set_alias("champion", before, actor="test", reason="restore", override=True)
