"""/v1/predict latency and throughput vs a bare FastAPI endpoint running the same model.

Both servers run in their own process on loopback with uvicorn and one worker. modelminder's
is the real thing (`minder serve`): each request is a new event, appended to the log, features
from the online engine, the champion (the default LightGBM model: bagged fold models,
calibrated) scores it, a decision and its reasons, the prediction logged. The bare endpoint
only runs the same model's ``predict`` on a ready-made feature vector.

* Latency: one client sends requests one at a time (concurrency 1); p50/p99 per request.
* Throughput: 8 client threads keep 8 requests in flight (each thread its own connection);
  requests per second over the run. modelminder scores requests that wait together in one
  batch (one model call, one commit: ``serving/batching.py``); the bare endpoint scores each
  request on its own, as a plain FastAPI endpoint does.

Each event is sent once; the two servers alternate in chunks so both see the same machine.

Target (issue 4): p99 <= 2x the bare endpoint's p99, and >= 70% of its throughput.

    .venv/bin/python benchmarks/serving_latency.py [--events 150000] [--repeat 1]
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import DAYS, EVENTS_PER_CARD, machine, parse

from modelminder.project import init_project, load_project
from modelminder.registry import Registry
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

BARE = """
import sys
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from modelminder.project import load_project
from modelminder.workflows import load_model

_, model = load_model(load_project(sys.argv[1]), "champion")
app = FastAPI()


class Vector(BaseModel):
    x: list[float | None]


@app.post("/predict")
async def predict(v: Vector) -> dict[str, float]:
    x = np.array([[np.nan if a is None else a for a in v.x]])
    return {"score": float(model.predict(x)[0])}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str) -> None:
    import httpx2 as httpx

    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _body(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


def main() -> None:
    args = parse(__doc__.splitlines()[0], 150_000)
    import httpx2 as httpx

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p"
        init_project(root, builtin=True)
        project = load_project(root)
        cards = max(100, round(args.events / EVENTS_PER_CARD * DAYS / 100))
        world = simulate(
            WorldConfig(days=100, cards=cards, seed=9, fraud_card_share=0.15, schedule="steady")
        )
        cut = world.events.height - 12000
        with project.open_log() as log:
            log.append_events(world.events.head(cut))
            log.append_labels(world.labels)
        trained = train_and_register(project, TrainConfig(trials=0))
        with project.open_log() as log, Registry.open(root, log) as reg:
            # Latency does not depend on the verdict; the bench promotes the model either way.
            reg.set_alias(
                "champion", trained.record.version, actor="bench", reason="bench",
                override=not trained.result.verdict.passed,
            )  # fmt: skip
        events = [_body(r) for r in world.events.slice(cut).iter_rows(named=True)]
        n_features = len(trained.result.model.feature_names)
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(len(events), n_features)).tolist()

        p_mm, p_bare = _port(), _port()
        minder = str(Path(sys.executable).with_name("minder"))
        (Path(tmp) / "bare.py").write_text(BARE.replace("sys.argv[1]", repr(str(root))))
        servers = [
            subprocess.Popen(
                [minder, "serve", "--port", str(p_mm), "-p", str(root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(p_bare),
                 "--log-level", "warning", "--app-dir", tmp],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": tmp},
            ),
        ]  # fmt: skip
        try:
            _wait(f"http://127.0.0.1:{p_mm}/healthz")
            _wait(f"http://127.0.0.1:{p_bare}/docs")
            print(f"{machine()}; {cut:,} events in the log; model {trained.record.version}")
            lat: dict[str, list[float]] = {"minder": [], "bare": []}
            busy: dict[str, float] = {"minder": 0.0, "bare": 0.0}
            with (
                httpx.Client(base_url=f"http://127.0.0.1:{p_mm}") as mm,
                httpx.Client(base_url=f"http://127.0.0.1:{p_bare}") as bare,
            ):
                for i in range(200):  # warm-up, not timed
                    mm.post("/v1/predict", json={"events": [events[i]]})
                    bare.post("/predict", json={"x": vectors[i]})
                chunks = np.array_split(np.arange(200, 6000), 20)
                for chunk in chunks:
                    for name in ("minder", "bare"):
                        t_chunk = time.perf_counter()
                        for i in chunk:
                            t0 = time.perf_counter()
                            if name == "minder":
                                r = mm.post("/v1/predict", json={"events": [events[i]]})
                            else:
                                r = bare.post("/predict", json={"x": vectors[i]})
                            lat[name].append(time.perf_counter() - t0)
                            assert r.status_code == 200, r.text
                        busy[name] += time.perf_counter() - t_chunk
            rate = _throughput(p_mm, p_bare, events[6000:], vectors[6000:])
        finally:
            for s in servers:
                s.terminate()
                s.wait(timeout=20)
    a = np.array(lat["minder"]) * 1e3
    b = np.array(lat["bare"]) * 1e3
    for name, x in (("minder /v1/predict", a), ("bare model endpoint", b)):
        print(
            f"{name:20s} p50 {np.percentile(x, 50):6.2f} ms  p99 {np.percentile(x, 99):6.2f} ms  "
            f"{len(x) / busy['minder' if x is a else 'bare']:7.0f} requests/s"
        )
    print(
        f"RATIO p99 minder/bare = {np.percentile(a, 99) / np.percentile(b, 99):.2f}  (target <= 2)"
    )
    print(
        f"concurrency 1: throughput minder/bare = {busy['bare'] / busy['minder']:.2f} "
        "(one request at a time: the inverse of the mean latency)"
    )
    print(
        f"concurrency 8: minder {rate['minder']:.0f} requests/s, bare {rate['bare']:.0f} requests/s"
    )
    print(
        f"RATIO throughput minder/bare = {rate['minder'] / rate['bare']:.2f}  (target >= 0.70, "
        "8 requests in flight)"
    )


def _throughput(
    p_mm: int, p_bare: int, events: list[dict[str, Any]], vectors: list[list[float]]
) -> dict[str, float]:
    """Requests per second with 8 requests in flight, alternating servers in 4 rounds."""
    import httpx2 as httpx

    threads = 8
    done = {"minder": 0.0, "bare": 0.0}
    took = {"minder": 0.0, "bare": 0.0}
    rounds = np.array_split(np.arange(len(events)), 4)
    failures: list[str] = []

    def run(name: str, idx: np.ndarray) -> None:
        port = p_mm if name == "minder" else p_bare
        parts = np.array_split(idx, threads)

        def worker(part: np.ndarray) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
                for i in part:
                    if name == "minder":
                        r = c.post("/v1/predict", json={"events": [events[i]]})
                    else:
                        r = c.post("/predict", json={"x": vectors[i]})
                    if r.status_code != 200:
                        failures.append(f"{name}: {r.status_code} {r.text[:200]}")
                        return

        pool = [threading.Thread(target=worker, args=(part,)) for part in parts]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        took[name] += time.perf_counter() - t0
        if failures:
            raise RuntimeError(failures[0])
        done[name] += len(idx)

    for idx in rounds:
        run("minder", idx)
        run("bare", idx)
    return {name: done[name] / took[name] for name in done}


if __name__ == "__main__":
    main()
