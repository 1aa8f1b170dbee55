"""A running server follows the registry: a promote or a rollback made by another process (the
CLI, the retraining loop) is served from the very next request, through the checked path; a
champion that cannot be loaded leaves the previous one serving."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelminder.events.predictions import PredictionTopic
from modelminder.model.ensemble import Ensemble
from modelminder.project import Project
from modelminder.registry import Registry, changes
from modelminder.serving.app import create_app
from modelminder.serving.service import Service
from modelminder.sim.world import World

from .conftest import live_project

MINDER = [sys.executable, "-c", "from modelminder.cli import main; main()"]
Live = tuple[Project, World, int]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    return live_project(tmp_path_factory.mktemp("hot") / "p", share=0.95, cards=120)


@pytest.fixture(autouse=True)
def _restore_champion(live: Live) -> Iterator[None]:
    project, _, _ = live
    with Registry.open(project.root) as reg:
        before = reg.alias("champion")
    yield
    with project.open_log() as log, Registry.open(project.root, log) as reg:
        if before is not None and reg.alias("champion") != before:
            reg.set_alias("champion", before, actor="test", reason="restore", override=True)


class Events:
    """Fresh events of the world after the logged part (an event sent twice is a retry,
    answered with its first prediction, so each request takes new ones)."""

    def __init__(self, world: World, start: int) -> None:
        self.world, self.next = world, start

    def take(self) -> dict[str, Any]:
        row = self.world.events.row(self.next, named=True)
        self.next += 1
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


_events: dict[int, Events] = {}


def _fresh(live: Live) -> Events:
    project, world, cut = live
    return _events.setdefault(id(project), Events(world, cut))


def _raw_version(project: Project) -> tuple[str, str]:
    """(champion, a new accepted version): the champion's members without its calibrator, so
    the two score the same features differently and an answer shows which one scored it."""
    with Registry.open(project.root) as reg:
        champ = reg.get(reg.alias("champion") or "")
        files = reg.load_files(champ.version)
        doc = json.loads(files["model.json"])
        doc["calibrator"] = None
        files = files | {"model.json": json.dumps(doc).encode()}
        record = reg.register(files, champ.meta, status="accepted", created_by="test")
    return champ.version, record.version


def _model(project: Project, version: str) -> Ensemble:
    with Registry.open(project.root) as reg:
        return Ensemble.from_files(reg.load_files(version))


def _scored_by(project: Project, answer: dict[str, Any], version: str) -> bool:
    """The answer names ``version`` and its score is that model's score of the features it
    was served with (read back from the prediction log)."""
    with project.open_log() as log:
        [logged] = [
            p for p in PredictionTopic(log).for_event(answer["event_id"]) if p.role == "champion"
        ]
    x = np.array([[np.nan if v is None else v for v in logged.features]])
    expected = float(_model(project, version).predict(x)[0])
    return bool(answer["model_version"] == version and np.isclose(answer["score"], expected))


def test_a_promote_and_a_rollback_from_another_process_are_served_by_the_next_request(
    live: Live,
) -> None:
    project, _, _ = live
    events = _fresh(live)
    first, second = _raw_version(project)
    fingerprint = project.plan().feature_set.fingerprint()
    service = Service(project)
    try:
        with TestClient(create_app(service, open_access=True)) as client:

            def predict() -> dict[str, Any]:
                r = client.post("/v1/predict", json={"events": [events.take()]})
                assert r.status_code == 200, r.text
                answer: dict[str, Any] = r.json()["predictions"][0]
                return answer

            assert _scored_by(project, predict(), first)
            # Another process: its own log and registry connections, the one checked path.
            with project.open_log() as log:
                changes.promote(project.root, log, second, fingerprint=fingerprint,
                                actor="someone else", reason="canary")  # fmt: skip
            assert _scored_by(project, predict(), second)  # the very next request
            assert _scored_by(project, predict(), second)
            with project.open_log() as log:
                back = changes.rollback(project.root, log, fingerprint=fingerprint,
                                        actor="someone else", reason="undo")  # fmt: skip
            assert back.version == first
            # Rollback restores the previous champion within one request.
            assert _scored_by(project, predict(), first)
    finally:
        service.close()


def test_a_new_version_that_moves_no_alias_changes_nothing_served(live: Live) -> None:
    project, _, _ = live
    events = _fresh(live)
    service = Service(project)
    try:
        champion = service.champion
        assert champion is not None
        _raw_version(project)  # registered by another connection, promoted nowhere
        [answer] = service.predict([events.take()])
        assert answer["model_version"] == champion.version
        assert service.champion is champion  # not even reloaded
    finally:
        service.close()


def test_a_champion_that_cannot_be_loaded_leaves_the_previous_one_serving(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    project, _, _ = live
    events = _fresh(live)
    first, broken = _raw_version(project)
    _, good = _raw_version(project)
    with Registry.open(project.root) as reg:
        folder = reg.artifact_folder(broken)
    member = next(p for p in folder.iterdir() if p.name.startswith("member_"))
    member.write_bytes(member.read_bytes() + b"corrupted on disk")
    service = Service(project)
    try:
        with TestClient(create_app(service, open_access=True)) as client:
            # The alias moved without the checks (a script on the registry, or the artifact
            # corrupted after the promote): the server must not serve it, nor fail requests.
            with project.open_log() as log, Registry.open(project.root, log) as reg:
                reg.set_alias("champion", broken, actor="a script", reason="no checks")
            with caplog.at_level(logging.WARNING, logger="modelminder.serving.service"):
                r = client.post("/v1/predict", json={"events": [events.take()]})
                again = client.post("/v1/predict", json={"events": [events.take()]})
            assert r.status_code == again.status_code == 200, r.text
            assert r.json()["predictions"][0]["model_version"] == first
            assert again.json()["predictions"][0]["model_version"] == first
            [warning] = [m for m in caplog.messages if "could not be served" in m]
            assert f"names champion {broken}" in warning and f"serving champion {first}" in warning
            assert "tampered with or corrupted" in warning
            assert service.reload_errors == 1  # tried once, not on every request
            # The next change of the registry is followed again.
            fingerprint = project.plan().feature_set.fingerprint()
            with project.open_log() as log:
                changes.promote(project.root, log, good, fingerprint=fingerprint, actor="fix")
            r = client.post("/v1/predict", json={"events": [events.take()]})
            assert r.json()["predictions"][0]["model_version"] == good
    finally:
        service.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _minder(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*MINDER, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_a_running_minder_serve_follows_minder_models_promote_and_rollback(live: Live) -> None:
    import httpx2 as httpx

    project, _, _ = live
    events = _fresh(live)
    first, second = _raw_version(project)
    root = str(project.root)
    port = _free_port()
    server = subprocess.Popen(
        [*MINDER, "serve", "--port", str(port), "-p", root],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline and server.poll() is None, "not ready"
                time.sleep(0.2)

            def served_by() -> str:
                r = client.post("/v1/predict", json={"events": [events.take()]})
                assert r.status_code == 200, r.text
                return str(r.json()["predictions"][0]["model_version"])

            assert served_by() == first
            _minder("models", "promote", second, "--project", root)
            assert served_by() == second
            _minder("models", "rollback", "--reason", "undo", "--project", root)
            assert served_by() == first
    finally:
        server.terminate()
        _, said = server.communicate(timeout=60)
    assert server.returncode == 0, said
    assert "could not be served" not in said
