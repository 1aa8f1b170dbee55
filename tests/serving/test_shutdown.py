"""SIGTERM stops `minder serve` gracefully: requests in flight are answered, every queued
shadow score is recorded, the log is closed (no WAL file left) and the exit code is 0."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import polars as pl

from modelminder.events.predictions import PredictionTopic
from modelminder.registry import Registry

from .conftest import live_project


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, body: dict[str, Any]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/predict", json.dumps(body), {"content-type": "application/json"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_sigterm_drains_requests_and_shadow_scores_then_exits_0(tmp_path: Path) -> None:
    project, world, cut = live_project(tmp_path / "p", share=0.9)
    with project.open_log() as log, Registry.open(project.root, log) as reg:
        reg.set_alias("shadow", reg.alias("champion") or "", actor="test", reason="test",
                      override=True)  # fmt: skip
    pending = [
        r | {"ts": r["ts"].replace(tzinfo=dt.UTC).isoformat()}
        for r in world.events.slice(cut, 400).iter_rows(named=True)
    ]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from modelminder.cli import main; main()", "serve",
         "--port", str(port), "-p", str(project.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                probe.request("GET", "/readyz")
                probe.getresponse().read()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr
                time.sleep(0.2)
            finally:
                probe.close()

        def send() -> None:
            for event in pending:
                try:
                    if _post(port, {"events": [event]}) == 200:
                        acked.append(event["event_id"])
                except OSError:
                    return  # the server stopped listening: nothing more is acknowledged

        sender = threading.Thread(target=send)
        sender.start()
        while len(acked) < 100:
            time.sleep(0.01)
        server.send_signal(signal.SIGTERM)  # while requests are still coming
        stdout, stderr = server.communicate(timeout=120)
        sender.join(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, stderr
    assert "stopped (SIGTERM)" in stdout and "Traceback" not in stderr
    assert (
        not Path(str(project.log_path) + "-wal").exists()
        or Path(str(project.log_path) + "-wal").stat().st_size == 0
    )
    with project.open_log() as log:
        topic = PredictionTopic(log)
        champion = topic.frame("champion").get_column("event_id")
        shadow = topic.frame("shadow").get_column("event_id")
    assert len(acked) >= 100
    assert set(acked) <= set(champion.to_list())  # every acknowledged answer is in the log
    assert champion.sort().equals(shadow.sort())  # and every one has its shadow score
    assert pl.Series(acked).is_unique().all()
