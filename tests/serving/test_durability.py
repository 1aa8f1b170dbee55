"""Nothing acknowledged is lost: kill -9 the server mid-stream, restart, retry."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from .conftest import live_project

MINDER = str(Path(sys.executable).with_name("minder"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [MINDER, "serve", "--port", str(port), "-p", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not become ready")


def _body(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


@pytest.mark.slow
def test_acknowledged_events_survive_kill_9_and_retries_do_not_duplicate(tmp_path: Path) -> None:
    root = tmp_path / "p"
    project, world, cut = live_project(root, share=0.9, cards=120)
    rest = [_body(r) for r in world.events.slice(cut).iter_rows(named=True)]
    port = _free_port()
    server = _start(root, port)
    acked: list[str] = []
    unanswered: list[str] = []
    killer = threading.Timer(3.0, lambda: os.kill(server.pid, signal.SIGKILL))
    killer.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for event in rest:
            try:
                r = client.post("/v1/predict", json={"events": [event]})
            except httpx.HTTPError:
                unanswered.append(event["event_id"])
                break  # the server is gone
            assert r.status_code == 200, r.text
            acked.append(event["event_id"])
    server.wait(timeout=10)
    killer.cancel()
    assert server.returncode == -signal.SIGKILL, "the server was not killed mid-stream"
    assert acked, "nothing was acknowledged before the kill"

    with project.open_log() as log:
        logged = set(log.events_by_id(acked).get_column("event_id").to_list())
    assert logged == set(acked)  # every 2xx is durable

    server = _start(root, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            sent = acked[-5:] + unanswered + [e["event_id"] for e in rest[len(acked) + 1 :][:20]]
            by_id = {e["event_id"]: e for e in rest}
            for event_id in sent:  # retries of answered and unanswered events, then new ones
                r = client.post("/v1/predict", json={"events": [by_id[event_id]]})
                assert r.status_code == 200, r.text
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
    with project.open_log() as log:
        events = log.read("events")
    assert events.get_column("event_id").n_unique() == events.height  # no duplicates
    assert events.height == cut + len(set(acked) | set(sent))
