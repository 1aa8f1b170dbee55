"""kill -9 during serving: no acknowledged event is lost or scored twice.

Proves that ``POST /v1/predict``'s promise holds across crashes: a 2xx means the events are
durable, and a retried event_id is never scored twice (it gets its first answer back). It
builds a project with the CLI (120 simulated days, the first 90% by time ingested, trained,
promoted), serves it with ``minder serve``, and sends the remaining events from concurrent
client threads, 1-5 events per request. At random moments (spread over the run) the server is
killed with SIGKILL and restarted; a client whose request failed retries it with the same
event_ids until it gets a 2xx, as a real client would. At the end, with the server stopped, it
reads the log through the library and checks:

* every acknowledged event_id is in the events topic exactly once (none lost, none twice);
* every acknowledged event has exactly one champion prediction, and no event has two;
* the answer the client got equals the prediction recorded (score and model version);
* a retried event came back as ``duplicate: true`` or, if its first attempt never committed,
  freshly scored (once);
* no request got a 5xx;
* the registry's champion is still a valid version that loads (checksums verified).

Exit code 0 when all of that held, 1 otherwise.

    .venv/bin/python reliability/kill_serve.py [--kills 5] [--threads 4] [--max-events 0]
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    Server,
    add_world_options,
    build_served_project,
    jsonable,
    machine,
    request,
    say,
    seeded_rng,
    verdict,
    workdir,
)

from modelminder.events.predictions import PredictionTopic
from modelminder.project import load_project
from modelminder.registry import Registry
from modelminder.workflows import load_model


@dataclass
class Tally:
    """What the clients saw, shared by the client threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # acknowledged event -> answer
    requests_ok: int = 0
    attempts: int = 0
    connection_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # non-2xx statuses
    retried_events: int = 0  # events of requests acknowledged after >= 1 failed attempt
    retried_duplicate: int = 0  # ... answered duplicate=true (the first attempt had committed)
    bad_answers: list[str] = field(default_factory=list)
    in_flight: int = 0
    dispatched: int = 0  # requests taken by a client


def chunk_requests(events: list[dict[str, Any]], rng: random.Random) -> list[list[dict[str, Any]]]:
    """Events in arrival order, cut into requests of 1-5 events."""
    out, at = [], 0
    while at < len(events):
        n = rng.randint(1, 5)
        out.append(events[at : at + n])
        at += n
    return out


def client(
    port: int, todo: list[list[dict[str, Any]]], tally: Tally, stop: threading.Event
) -> None:
    """Take requests in order; send each until it gets a 2xx (retrying the same event_ids)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        while not stop.is_set():
            with tally.lock:
                if tally.dispatched >= len(todo):
                    return
                events = todo[tally.dispatched]
                tally.dispatched += 1
            failed = 0
            while not stop.is_set():
                with tally.lock:
                    tally.in_flight += 1
                    tally.attempts += 1
                try:
                    status, body = request(conn, "POST", "/v1/predict", {"events": events})
                except (OSError, http.client.HTTPException):
                    conn.close()  # http.client reopens it on the next request
                    status, body = -1, None
                finally:
                    with tally.lock:
                        tally.in_flight -= 1
                if 200 <= status < 300:
                    record(tally, events, body, retried=failed > 0)
                    break
                failed += 1
                with tally.lock:
                    if status == -1:
                        tally.connection_errors += 1
                    else:
                        tally.statuses[status] += 1
                        tally.bad_answers.append(f"HTTP {status}: {str(body)[:300]}")
                time.sleep(0.05)
    finally:
        conn.close()


def record(tally: Tally, events: list[dict[str, Any]], body: Any, *, retried: bool) -> None:
    ids = [e["event_id"] for e in events]
    preds = body.get("predictions") if isinstance(body, dict) else None
    with tally.lock:
        tally.requests_ok += 1
        if not isinstance(preds, list) or [p.get("event_id") for p in preds] != ids:
            tally.bad_answers.append(f"answer does not match the request {ids}: {body}")
            return
        for p in preds:
            if p.get("score") is None:
                tally.bad_answers.append(f"event {p['event_id']} answered without a score: {p}")
            if p["event_id"] in tally.answers:
                tally.bad_answers.append(f"event {p['event_id']} acknowledged twice")
            tally.answers[p["event_id"]] = p
            if retried:
                tally.retried_events += 1
                tally.retried_duplicate += bool(p.get("duplicate"))
            elif p.get("duplicate"):
                tally.bad_answers.append(f"event {p['event_id']} sent once, answered duplicate")


def chaos(
    server: Server,
    tally: Tally,
    thresholds: list[int],
    rng: random.Random,
    kills: list[dict[str, float]],
    stop: threading.Event,
    errors: list[str],
) -> None:
    """Kill -9 the server when the clients pass each threshold (plus a random 0-0.5 s), then
    restart it at once; record each kill."""
    for at in thresholds:
        while not stop.is_set():
            with tally.lock:
                if tally.dispatched >= at:
                    break
            time.sleep(0.01)
        if stop.is_set():
            return
        time.sleep(rng.uniform(0, 0.5))
        with tally.lock:
            in_flight, acked, at = tally.in_flight, len(tally.answers), tally.dispatched
        server.kill9()
        try:
            seconds = server.start()
        except Exception as exc:  # a server that does not come back is the finding
            errors.append(f"restart after kill #{len(kills) + 1} failed: {exc}")
            stop.set()
            return
        kills.append({"request": at, "in_flight": in_flight, "acked": acked, "restart": seconds})
        say(
            f"kill -9 #{len(kills)} at request ~{at:,} ({in_flight} in flight, {acked:,} events "
            f"acknowledged so far); restarted and ready in {seconds:.1f}s"
        )


def verify(root: Path, tally: Tally, history: int, sent: set[str]) -> list[str]:
    """The checks of the module docstring on the stopped server's log; the failures."""
    failures: list[str] = []
    project = load_project(root)
    with project.open_log() as log:
        ids = log.read("events").get_column("event_id")
        counts = Counter(ids.to_list())
        rows = log.database.fetch(
            "SELECT event_id, COUNT(*), MIN(score), MIN(model_version) FROM predictions "
            "WHERE role = 'champion' GROUP BY event_id"
        )
        served = PredictionTopic(log).frame(features=False)
    preds = {str(r[0]): (int(r[1]), float(r[2]), str(r[3])) for r in rows}
    acked = tally.answers
    lost = [e for e in acked if counts.get(e, 0) == 0]
    twice = [e for e in acked if counts.get(e, 0) > 1]
    no_pred = [e for e in acked if e not in preds]
    two_preds = [e for e, (n, _, _) in preds.items() if n > 1]
    differ = [
        e
        for e, a in acked.items()
        if e in preds and (preds[e][1] != a.get("score") or preds[e][2] != a.get("model_version"))
    ]
    print(f"\nacknowledged events:                  {len(acked):,} (of {len(sent):,} sent)")
    print(f"present in the events topic:          {len(acked) - len(lost):,}")
    print(f"lost (acknowledged, not in the log):  {len(lost):,}")
    print(f"duplicated in the events topic:       {len(twice):,}")
    print(f"acknowledged without a prediction:    {len(no_pred):,}")
    print(f"events with two champion predictions: {len(two_preds):,}")
    print(f"answer != recorded prediction:        {len(differ):,}")
    print(f"events topic: {len(counts):,} = {history:,} history + {len(sent):,} live? "
          f"{'yes' if len(counts) == history + len(sent) else 'NO'}")  # fmt: skip
    print(f"champion predictions (frame):         {served.height:,}")
    for name, bad in (
        ("lost", lost), ("duplicated", twice), ("without a prediction", no_pred),
        ("with two champion predictions", two_preds), ("answered differently", differ),
    ):  # fmt: skip
        if bad:
            failures.append(f"{len(bad)} acknowledged events {name}, e.g. {bad[:5]}")
    if len(counts) != history + len(sent):
        failures.append(f"the events topic holds {len(counts)} events, not {history + len(sent)}")
    if len(acked) != len(sent):
        failures.append(f"only {len(acked)} of {len(sent)} sent events were acknowledged")
    with Registry.open(root) as reg:
        aliases = reg.aliases()
    champion = aliases.get("champion")
    try:
        record_, model = load_model(project, "champion")
        print(f"registry: aliases {aliases}; champion {record_.version} loads "
              f"({len(model.members)} members, checksums verified)")  # fmt: skip
    except Exception as exc:  # any failure to load is the finding
        failures.append(f"the champion ({champion}) does not load: {exc!r}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="kill -9 this many times (5)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (4)")
    parser.add_argument(
        "--max-events", type=int, default=0, help="send at most this many events (0: all live)"
    )
    parser.add_argument("--rng-seed", type=int, default=None, help="seed of the kill moments")
    add_world_options(parser)
    args = parser.parse_args()
    rng, rng_seed = seeded_rng(args.rng_seed)
    say(f"kill_serve: {machine()}; kills={args.kills}, threads={args.threads}, seed={rng_seed}")
    with workdir(args.keep) as folder:
        built = build_served_project(folder, args.days, args.cards, args.seed)
        live = built.live.head(args.max_events) if args.max_events else built.live
        events = [jsonable(r) for r in live.iter_rows(named=True)]
        todo = chunk_requests(events, rng)
        thresholds = sorted(rng.sample(range(len(todo) // 20, len(todo) * 19 // 20), args.kills))
        tally, kills, stop = Tally(), list[dict[str, float]](), threading.Event()
        server = Server(built.root, folder / "server.log")
        failures: list[str] = []
        threads = [
            threading.Thread(target=client, args=(server.port, todo, tally, stop))
            for _ in range(args.threads)
        ]
        killer = threading.Thread(
            target=chaos, args=(server, tally, thresholds, rng, kills, stop, failures)
        )
        try:
            say(f"server ready in {server.start():.1f}s on port {server.port}")
            t0 = time.perf_counter()
            for t in [*threads, killer]:
                t.start()
            last = 0.0
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)
                if time.perf_counter() - last > 10:
                    last = time.perf_counter()
                    with tally.lock:
                        say(f"{tally.dispatched:,}/{len(todo):,} requests taken, "
                            f"{len(tally.answers):,} events acknowledged")  # fmt: skip
            stop.set()
            killer.join()
            took = time.perf_counter() - t0
        finally:
            stop.set()
            for t in [*threads, killer]:
                if t.is_alive():
                    t.join()
            server.stop()
        say(
            f"sent {len(events):,} events in {len(todo):,} requests over {took:.0f}s: "
            f"{tally.attempts:,} attempts, {tally.connection_errors:,} connection errors "
            f"(server down), non-2xx {dict(tally.statuses) or 'none'}"
        )
        say(
            f"retried events: {tally.retried_events:,}, of which {tally.retried_duplicate:,} "
            "answered duplicate=true (first attempt had committed) and the rest scored once "
            "(first attempt had not committed)"
        )
        failures += verify(built.root, tally, built.history, {e["event_id"] for e in events})
        if any(s >= 500 for s in tally.statuses):
            failures.append(f"5xx answers: {dict(tally.statuses)}")
        failures += tally.bad_answers[:20]
        if len(kills) < args.kills:
            failures.append(f"only {len(kills)} of {args.kills} kills happened")
        restarts = ", ".join(f"{k['restart']:.1f}" for k in kills)
        print(f"kills: {len(kills)}; restart-to-ready seconds: {restarts}")
    return verdict(
        failures,
        "every acknowledged event is logged once with exactly one champion prediction; the "
        "champion loads.",
    )


if __name__ == "__main__":
    sys.exit(main())
