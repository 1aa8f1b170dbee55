"""/v1/predict latency and throughput vs a bare FastAPI endpoint running the same model.

All servers run in their own process on loopback with uvicorn and one worker. modelminder's
is the real thing (`minder serve`): each request is a new event, appended to the log, features
from the online engine, the champion (the default LightGBM model: bagged fold models,
calibrated) scores it, a decision and its reasons, the prediction logged. The bare endpoint
only runs the same model's ``predict`` on a ready-made feature vector.

* Latency: one client sends requests one at a time (concurrency 1); p50/p99 per request.
* Throughput: 8 client threads keep 8 requests in flight (each thread its own connection);
  requests per second over the run. modelminder scores requests that wait together in one
  batch (one model call, one commit: ``serving/batching.py``); the bare endpoint scores each
  request on its own, as a plain FastAPI endpoint does.

Target (issue 4): p99 <= 2x the bare endpoint's p99, and >= 70% of its throughput. The
baseline of these ratios is the bare endpoint, against ``minder serve`` with the default
``[serving] durability = "normal"``.

Durability: a third server, ``minder serve`` on a copy of the same project (copied after
training, so both logs start identical) with ``durability = "full"`` (``synchronous=FULL``:
an fsync of the WAL at every commit), measures what full durability costs, against the
``normal`` server of the same run. The three servers alternate in chunks so all see the same
machine, and each event is sent once to each server (both modelminder servers get the same
events in the same order). The Python client (httpx) adds about 2 ms per request to every
server alike, which deflates ratios; read the absolute difference full - normal in
milliseconds (a wrk-based client is planned separately). An fsync costs what the disk under
the temporary folder makes it cost: the script prints that folder's file system and the
time of an fsync there (probed before, between and after the phases, as it drifts with the
host's load), and ``--dir`` puts the projects elsewhere (on tmpfs an fsync is almost free).
It also prints the requests per commit with 8 in flight (from the logs' ``served_at``).

    .venv/bin/python benchmarks/serving_latency.py [--events 150000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
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


# Display names, in the order the servers take turns.
NAMES = {
    "minder": "minder /v1/predict, durability normal",
    "full": "minder /v1/predict, durability full",
    "bare": "bare model endpoint",
}


def _args() -> argparse.Namespace:
    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="folder for the benchmark's projects (default: a temporary folder); "
            "the durability cost depends on its disk",
        )

    return parse(__doc__.splitlines()[0], 150_000, extra)


def _file_system(path: Path) -> str:
    """``type device on mountpoint`` of the mount holding ``path`` (Linux), else ``unknown``."""
    best = ("", "unknown", "unknown")
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    target = str(path.resolve())
    for line in mounts:
        device, point, kind = line.split()[:3]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, kind, device)
    return f"{best[1]} ({best[2]} on {best[0]})"


def _fsync_ms(folder: Path, n: int = 200) -> tuple[float, float]:
    """p50 and p99 of ``n`` appends of 4 KB to a file in ``folder``, each followed by fsync."""
    took = []
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            took.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return float(np.percentile(took, 50) * 1e3), float(np.percentile(took, 99) * 1e3)


def _copy_with_durability(root: Path, dest: Path, durability: str) -> None:
    """Copy the project folder ``root`` to ``dest`` with ``[serving] durability`` rewritten."""
    shutil.copytree(root, dest)
    config = dest / "minder.toml"
    text = config.read_text()
    line = 'durability = "normal"'
    if text.count(line) != 1:
        raise RuntimeError(f"{config} should hold the line {line!r} once; it does not.")
    config.write_text(text.replace(line, f'durability = "{durability}"'))
    got = load_project(dest).serving.durability
    if got != durability:
        raise RuntimeError(f"{config} loads with durability {got!r}, not {durability!r}.")


def main() -> None:
    args = _args()
    import httpx2 as httpx

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp) / "p"
        init_project(root, builtin=True)
        # The simulated world is dated 2026: let the live path take it whatever today's date.
        config = root / "minder.toml"
        config.write_text(
            config.read_text().replace('max_event_age = "365d"', 'max_event_age = "36500d"')
        )
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
        # Copied after training and before any serving: both logs start identical.
        root_full = Path(tmp) / "p-full"
        _copy_with_durability(root, root_full, "full")
        events = [_body(r) for r in world.events.slice(cut).iter_rows(named=True)]
        n_features = len(trained.result.model.feature_names)
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(len(events), n_features)).tolist()

        ports = {name: _port() for name in NAMES}
        minder = str(Path(sys.executable).with_name("minder"))
        (Path(tmp) / "bare.py").write_text(BARE.replace("sys.argv[1]", repr(str(root))))
        servers = [
            subprocess.Popen(
                [minder, "serve", "--port", str(ports[name]), "-p", str(folder)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for name, folder in (("minder", root), ("full", root_full))
        ] + [
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(ports["bare"]),
                 "--log-level", "warning", "--app-dir", tmp],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": tmp},
            ),
        ]  # fmt: skip
        try:
            for name in NAMES:
                _wait(
                    f"http://127.0.0.1:{ports[name]}" + ("/docs" if name == "bare" else "/healthz")
                )
            fsync = [_fsync_ms(Path(tmp))]
            print(f"{machine()}; {cut:,} events in the log; model {trained.record.version}")
            disk = _file_system(Path(tmp))
            print(f"projects in {tmp}: {disk}")
            if disk.startswith(("tmpfs", "ramfs")):
                print("WARNING: in memory, fsync is almost free; pass --dir on a real disk")
            lat: dict[str, list[float]] = {name: [] for name in NAMES}
            busy: dict[str, float] = {name: 0.0 for name in NAMES}
            clients = {
                name: httpx.Client(base_url=f"http://127.0.0.1:{ports[name]}") for name in NAMES
            }
            try:
                for i in range(200):  # warm-up, not timed
                    for name in NAMES:
                        _post(clients[name], name, events, vectors, i)
                chunks = np.array_split(np.arange(200, 6000), 20)
                for chunk in chunks:
                    for name in NAMES:
                        c = clients[name]
                        t_chunk = time.perf_counter()
                        for i in chunk:
                            t0 = time.perf_counter()
                            r = _post(c, name, events, vectors, i)
                            lat[name].append(time.perf_counter() - t0)
                            assert r.status_code == 200, r.text
                        busy[name] += time.perf_counter() - t_chunk
            finally:
                for c in clients.values():
                    c.close()
            fsync.append(_fsync_ms(Path(tmp)))
            rate = _throughput(ports, events[6000:], vectors[6000:])
            fsync.append(_fsync_ms(Path(tmp)))
            # The disk's fsync time drifts with the host's load: probed before, between and
            # after the two phases.
            print(
                "fsync of a 4 KB append there (before, between, after the phases): p50 "
                + " / ".join(f"{p50:.2f}" for p50, _ in fsync)
                + " ms, p99 "
                + " / ".join(f"{p99:.2f}" for _, p99 in fsync)
                + " ms"
            )
        finally:
            for s in servers:
                s.terminate()
                s.wait(timeout=20)
        n8 = len(events) - 6000
        per_commit = {
            name: _requests_per_commit(folder, n8)
            for name, folder in (("minder", root), ("full", root_full))
        }
    _report(lat, busy, rate, n8, per_commit)


def _requests_per_commit(root: Path, n: int) -> float:
    """Mean one-event requests per transaction over the last ``n`` predictions of a project.

    A micro-batch stamps all its predictions with one ``served_at``, so the distinct stamps
    count the commits (read through the library once the server has stopped).
    """
    from modelminder.events.predictions import PredictionTopic

    with load_project(root).open_log() as log:
        served = PredictionTopic(log).frame(features=False).tail(n)
    return n / served.get_column("served_at").n_unique()


def _post(
    c: Any, name: str, events: list[dict[str, Any]], vectors: list[list[float]], i: int
) -> Any:
    if name == "bare":
        return c.post("/predict", json={"x": vectors[i]})
    return c.post("/v1/predict", json={"events": [events[i]]})


def _report(
    lat: dict[str, list[float]],
    busy: dict[str, float],
    rate: dict[str, float],
    n8: int,
    per_commit: dict[str, float],
) -> None:
    ms = {name: np.array(x) * 1e3 for name, x in lat.items()}
    p50 = {name: float(np.percentile(x, 50)) for name, x in ms.items()}
    p99 = {name: float(np.percentile(x, 99)) for name, x in ms.items()}
    c1 = {name: len(ms[name]) / busy[name] for name in NAMES}
    print(
        f"\nconcurrency 1: {len(ms['minder']):,} timed requests per server; "
        f"8 in flight: {n8:,} per server"
    )
    print(f"{'server':40s} {'p50':>9s} {'p99':>9s} {'req/s c=1':>10s} {'req/s 8 in flight':>18s}")
    for name, label in NAMES.items():
        print(
            f"{label:40s} {p50[name]:6.2f} ms {p99[name]:6.2f} ms {c1[name]:10.0f} "
            f"{rate[name]:18.0f}"
        )
    print("\nmodelminder (durability normal) vs the bare endpoint:")
    print(f"RATIO p99 minder/bare = {p99['minder'] / p99['bare']:.2f}  (target <= 2)")
    print(
        f"concurrency 1: throughput minder/bare = {c1['minder'] / c1['bare']:.2f} "
        "(one request at a time: the inverse of the mean latency)"
    )
    print(
        f"RATIO throughput minder/bare = {rate['minder'] / rate['bare']:.2f}  (target >= 0.70, "
        "8 requests in flight)"
    )
    print("\ndurability full vs normal (same events, same run; read the extra milliseconds):")
    print(
        f"extra latency full - normal: p50 {p50['full'] - p50['minder']:+.2f} ms, "
        f"p99 {p99['full'] - p99['minder']:+.2f} ms, "
        f"mean {ms['full'].mean() - ms['minder'].mean():+.2f} ms"
    )
    print(
        f"RATIO throughput full/normal = {c1['full'] / c1['minder']:.2f} (concurrency 1), "
        f"{rate['full'] / rate['minder']:.2f} (8 requests in flight)"
    )
    print(
        f"requests per commit with 8 in flight (micro-batches): normal "
        f"{per_commit['minder']:.2f}, full {per_commit['full']:.2f}"
    )


def _throughput(
    ports: dict[str, int], events: list[dict[str, Any]], vectors: list[list[float]]
) -> dict[str, float]:
    """Requests per second with 8 requests in flight, the servers taking turns in 4 rounds."""
    import httpx2 as httpx

    threads = 8
    done = {name: 0 for name in NAMES}
    took = {name: 0.0 for name in NAMES}
    rounds = np.array_split(np.arange(len(events)), 4)
    failures: list[str] = []

    def run(name: str, idx: np.ndarray) -> None:
        parts = np.array_split(idx, threads)

        def worker(part: np.ndarray) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{ports[name]}") as c:
                for i in part:
                    r = _post(c, name, events, vectors, i)
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
        for name in NAMES:
            run(name, idx)
    return {name: done[name] / took[name] for name in NAMES}


if __name__ == "__main__":
    main()
