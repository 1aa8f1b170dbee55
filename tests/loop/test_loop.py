"""The loop's promises: a worse candidate is never promoted, a better one is (after its shadow
period, or a human's approval), a new champion that does worse live is rolled back, a crash
mid-retrain leaves the champion serving, two loops never retrain at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from modelminder.errors import RegistryError
from modelminder.loop.engine import RunContext, approve, current_state, run_once
from modelminder.project import Project, load_project
from modelminder.registry import Registry
from tests.loop.conftest import DAY_US, audit, copy_version, serve_history, today_us

MINDER = [str(Path(sys.executable).parent / "minder")]


def _aliases(project: Project) -> dict[str, str]:
    with Registry.open(project.root) as reg:
        return reg.aliases()


def _steps(project: Project) -> list[str]:
    with project.open_log() as log:
        audit_ = log.read("audit")
    kinds = audit_.filter(pl.col("kind").str.starts_with("loop.")).get_column("kind")
    return [k.removeprefix("loop.") for k in kinds.to_list()]


def _shadowing(project: Project, how_champion: str, how_candidate: str) -> str:
    """A candidate (a copy of v1) in its shadow period since 25 days ago, with 20 days of
    served traffic scored by the champion and by it, each ``"model"`` or ``"noise"``."""
    from modelminder.registry import changes

    v2 = copy_version(project, "v1")
    changes.promote(project.root, None, v2, alias="shadow", fingerprint=project.fingerprint(),
                    actor="test", reason="test shadow")  # fmt: skip
    since = today_us() - 25 * DAY_US
    audit(project, "shadow_started", {"version": v2, "evidence": None}, since)
    roles = {"champion": ("v1", how_champion), "shadow": (v2, how_candidate)}
    serve_history(project, from_ts=since, to_ts=today_us() - 5 * DAY_US, roles=roles)
    return v2


def test_a_worse_candidate_is_not_promoted(project: Project) -> None:
    v2 = _shadowing(project, "model", "noise")
    decisions = run_once(RunContext(project))
    rejected = [d for d in decisions if d.step == "candidate_rejected"]
    assert rejected, [d.text for d in decisions]
    assert "not better" in rejected[0].text and "live shadow traffic" in rejected[0].text
    aliases = _aliases(project)
    assert aliases["champion"] == "v1" and "shadow" not in aliases
    assert current_state(project).stage == "idle"
    assert v2 not in aliases.values()


def test_a_better_candidate_is_promoted_after_its_shadow_period(project: Project) -> None:
    v2 = _shadowing(project, "noise", "model")
    decisions = run_once(RunContext(project))
    assert "promoted" in [d.step for d in decisions], [d.text for d in decisions]
    aliases = _aliases(project)
    assert aliases["champion"] == v2 and aliases["shadow"] == "v1"  # the old one shadows it
    state = current_state(project)
    assert (state.stage, state.candidate, state.previous) == ("probation", v2, "v1")


def test_with_promotion_approve_a_human_decides(project: Project) -> None:
    toml = project.root / "minder.toml"
    toml.write_text(toml.read_text().replace('promotion = "auto"', 'promotion = "approve"'))
    project = load_project(project.root)
    v2 = _shadowing(project, "noise", "model")
    decisions = run_once(RunContext(project))
    assert decisions[-1].step == "awaiting_approval", [d.text for d in decisions]
    assert _aliases(project)["champion"] == "v1"
    assert run_once(RunContext(project)) == []  # waits; nothing else happens
    with pytest.raises(RegistryError, match="not waiting for approval"):
        approve(project, "v1", actor="alice")
    # Over HTTP, as minder serve wires it: admin only (the route-table test covers the
    # roles), 409 for a version that is not waiting, and the server serves the approved one.
    from fastapi.testclient import TestClient

    from modelminder.serving.app import create_app
    from modelminder.serving.service import Service

    service = Service(project)
    try:
        app = create_app(service, approve=lambda v, who: approve(project, v, actor=who))
        admin = {"Authorization": f"Bearer {service.store.create_token('admin')}"}
        with TestClient(app) as client:
            r = client.post("/v1/models/v1/approve", headers=admin)
            assert r.status_code == 409 and "not waiting" in r.json()["error"]["message"]
            r = client.post(f"/v1/models/{v2}/approve", headers=admin)
            assert r.status_code == 200 and r.json()["champion"] == v2, r.text
        assert service.champion is not None and service.champion.version == v2
    finally:
        service.close()
    assert _aliases(project)["champion"] == v2
    assert current_state(project).stage == "probation"


def test_a_new_champion_that_does_worse_live_is_rolled_back(project: Project) -> None:
    from modelminder.registry import changes

    v2 = copy_version(project, "v1")
    fp = project.fingerprint()
    changes.promote(project.root, None, v2, fingerprint=fp, actor="test", reason="test")
    changes.promote(project.root, None, "v1", alias="shadow", fingerprint=fp, actor="test",
                    reason="probation")  # fmt: skip
    since = today_us() - 25 * DAY_US
    audit(project, "promoted", {"version": v2, "previous": "v1"}, since)
    serve_history(project, from_ts=since, to_ts=today_us() - 5 * DAY_US,
                  roles={"champion": (v2, "noise"), "shadow": ("v1", "model")})  # fmt: skip
    decisions = run_once(RunContext(project))
    assert "rolled_back" in [d.step for d in decisions], [d.text for d in decisions]
    assert _aliases(project).get("champion") == "v1"
    assert current_state(project).stage == "idle"


def _run(project: Project, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MODELMINDER_ACTOR": "test"}
    return subprocess.Popen(
        [*MINDER, *args, "--project", str(project.root)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip


def test_a_crash_mid_retrain_leaves_the_champion_serving(project: Project) -> None:
    before = _steps(project).count("retrain_started")
    proc = _run(project, "retrain", "--reason", "crash test")
    deadline = time.monotonic() + 120
    while _steps(project).count("retrain_started") == before:
        assert proc.poll() is None and time.monotonic() < deadline, "the retrain never started"
        time.sleep(0.05)
    time.sleep(0.5)  # well into the training
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # reaps it and closes its pipe
    assert _steps(project).count("retrain_finished") == before  # it died mid-way
    assert _aliases(project) == {"champion": "v1"}
    # The next run sees the interrupted retrain, says so, and retrains cleanly.
    decisions = run_once(RunContext(project))
    steps = [d.step for d in decisions]
    assert steps[:2] == ["retrain_failed", "triggered"], [d.text for d in decisions]
    assert "never finished" in decisions[0].text
    assert "retrain_finished" in steps
    assert _aliases(project)["champion"] == "v1"  # a candidate shadows first, never at once


def test_two_loops_started_at_once_retrain_once(project: Project) -> None:
    from modelminder.loop.engine import request_retrain

    before = _steps(project)
    request_retrain(project, actor="test", reason="race")
    procs = [_run(project, "loop", "--once") for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    after = _steps(project)[len(before) :]
    assert after.count("retrain_started") == 1, outputs
    assert after.count("retrain_finished") == 1, outputs
    # The candidate is judged and shadows (or is discarded); it never becomes champion at once.
    assert after[-1] in ("shadow_started", "candidate_rejected"), after
    assert _aliases(project)["champion"] == "v1"


def test_loop_once_with_nothing_due_says_so(project: Project) -> None:
    out = subprocess.run([*MINDER, "loop", "--once", "--project", str(project.root)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stdout


def test_a_due_retrain_waits_while_the_new_champion_cannot_be_judged_yet(project: Project) -> None:
    from modelminder.clock import SimulatedClock
    from modelminder.registry import changes

    v2 = copy_version(project, "v1")
    fp = project.fingerprint()
    changes.promote(project.root, None, v2, fingerprint=fp, actor="test", reason="test")
    changes.promote(project.root, None, "v1", alias="shadow", fingerprint=fp, actor="test",
                    reason="probation")  # fmt: skip
    audit(project, "promoted", {"version": v2, "previous": "v1"}, today_us())
    said: list[str] = []
    # Eight days on, the weekly schedule is due, but no served event has a known outcome yet:
    # retraining would end the probation unjudged, so it waits.
    ctx = RunContext(project, SimulatedClock(today_us() + 8 * DAY_US), say=said.append)
    assert [d.step for d in run_once(ctx)] == []
    assert any("the retrain waits" in m and "(0 labelled frauds" in m for m in said), said
    assert current_state(project).stage == "probation"
    assert _aliases(project) == {"champion": v2, "shadow": "v1"}
