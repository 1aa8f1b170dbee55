"""Soak: /v1/predict at a steady rate for minutes; no 5xx, no memory growth.

Builds and serves a project as ``kill_serve.py`` does, then sends ``POST /v1/predict`` at a
steady rate (default 100 requests/s, one new realistic event each, for 10 minutes). The events
are the simulated world's unseen tail, then further simulated months (same cards and merchants,
new event_ids, times moving forward), sent in arrival order. Requests are paced by a schedule
(request i is due at ``start + i / rate``) and sent by a few client threads, so a slow answer
does not slow the rate down. Every 10 s the server's resident memory (VmRSS from
``/proc/PID/status``) is sampled.

Reported: RSS before the load, after the first minute (the warm-up), at the end and its
maximum; the RSS slope in MB per minute (least squares over the samples after the first
minute); latency p50/p99/max of the requests after warm-up; errors by kind. The latency
includes the Python client's own overhead (http.client, JSON) on a shared 2-core machine:
``benchmarks/serving_latency.py`` is the place for speed.

Exit code 1 if any request failed (a 5xx, any other non-2xx, a connection failure, or a 2xx
that is not a fresh score: every event sent is new), the server's log does not hold one
champion prediction per answered request, or the RSS slope
after warm-up is above ``--max-slope`` (default 1 MB/min). Why that bound: everything the
server keeps in memory is bounded by design. The live feature state keeps per card and per
merchant only the largest window plus the allowed lateness (31 days), and the server starts
with more than that of history, so in steady state as many events leave the windows as enter
(the keys do not grow: the same cards and merchants). Predictions go to SQLite, whose page
cache is capped; the metrics have fixed label sets. The expected slope is therefore zero plus
noise (allocator and page-cache warm-up). At 100 requests/s, 1 MB/min is about 170 bytes per
request -- one leaked small object per request -- which would be 1.4 GB a day at this rate:
a leak worth catching, and well above the noise of ten-second samples over minutes.

    .venv/bin/python reliability/soak.py [--minutes 10] [--rate 100] [--max-slope 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import math
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from _common import (
    Server,
    add_world_options,
    build_served_project,
    jsonable,
    machine,
    percentiles,
    request,
    say,
    verdict,
)
from _common import (
    workdir as temp_workdir,
)

from modelminder.project import load_project
from modelminder.sim.world import WorldConfig, simulate

WARMUP_S = 60.0


def enough_events(live: pl.DataFrame, needed: int, cards: int, seed: int) -> pl.DataFrame:
    """``live``, followed by further simulated 30-day worlds (same cards and merchants, new
    event_ids prefixed ``wK-``, each starting where the previous one ended) until there are
    ``needed`` events."""
    frames, total = [live], live.height
    start = live.get_column("ts").max()
    assert isinstance(start, dt.datetime)
    start = start.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    k = 0
    while total < needed:
        k += 1
        world = simulate(WorldConfig(days=30, cards=cards, seed=seed + 1000 + k, start=start))
        events = world.events.with_columns(
            (pl.lit(f"w{k}-") + pl.col("event_id")).alias("event_id")
        )
        frames.append(events.select(live.columns))
        total += events.height
        start += dt.timedelta(days=30)
    if k:
        say(f"simulated {k} more 30-day world(s): {total - live.height:,} more events")
    return pl.concat(frames).head(needed)


@dataclass
class Load:
    """What the client threads measured (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    next: int = 0
    ok: int = 0
    latency: list[float] = field(default_factory=list)  # after warm-up, seconds
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_lag: float = 0.0  # how far behind its schedule a request was sent


def client(
    port: int,
    events: list[dict[str, Any]],
    rate: float,
    t0: float,
    load: Load,
    stop: threading.Event,
) -> None:
    """Send request i (one event) at ``t0 + i / rate``, for the i this thread takes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        while not stop.is_set():
            with load.lock:
                i = load.next
                load.next += 1
            if i >= len(events):
                return
            due = t0 + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            try:
                status, body = request(conn, "POST", "/v1/predict", {"events": [events[i]]})
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, body = -1, repr(exc)
            took = time.perf_counter() - sent
            with load.lock:
                load.max_lag = max(load.max_lag, sent - due)
                preds = body.get("predictions") if isinstance(body, dict) else None
                fresh = (
                    isinstance(preds, list)
                    and len(preds) == 1
                    and preds[0].get("duplicate") is False
                )
                if 200 <= status < 300 and not fresh:  # every event sent is new
                    status = 0
                if 200 <= status < 300:
                    load.ok += 1
                    if due - t0 >= WARMUP_S:
                        load.latency.append(took)
                else:
                    kind = {-1: "connection failure", 0: "2xx but not a fresh score"}.get(
                        status, f"HTTP {status}"
                    )
                    load.errors[kind] += 1
                    if len(load.examples) < 5:
                        load.examples.append(f"{kind}: {str(body)[:300]}")
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration (10)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (100)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (4)")
    parser.add_argument("--sample", type=float, default=10.0, help="RSS sample period, s (10)")
    parser.add_argument(
        "--max-slope", type=float, default=1.0, help="RSS growth bound after warm-up, MB/min (1)"
    )
    add_world_options(parser)
    args = parser.parse_args()
    if args.minutes * 60 <= WARMUP_S + 2 * args.sample:
        parser.error(f"--minutes must leave samples after the {WARMUP_S:.0f}s warm-up (>= 1.5)")
    say(f"soak: {machine()}; {args.rate:g} requests/s for {args.minutes:g} min")
    with temp_workdir(args.keep) as folder:
        n = int(args.rate * args.minutes * 60)
        # Room before now for the further simulated worlds (>= 2 events per card and day).
        room = 30 * math.ceil(n / (2 * args.cards * 30)) + 1
        built = build_served_project(folder, args.days, args.cards, args.seed, room_days=room)
        frame = enough_events(built.live, n, args.cards, args.seed)
        last = frame.get_column("ts").max()
        assert isinstance(last, dt.datetime)
        if last > dt.datetime.now(dt.UTC):
            print(f"FAILED: the events to send run to {last}, after now: raise the room")
            return 1
        events = [jsonable(r) for r in frame.iter_rows(named=True)]
        server = Server(built.root, folder / "server.log")
        load, stop = Load(), threading.Event()
        samples: list[tuple[float, float]] = []  # (seconds since the load started, RSS MB)
        threads: list[threading.Thread] = []
        try:
            say(f"server ready in {server.start():.1f}s on port {server.port} (pid {server.pid})")
            rss_idle = server.rss_mb()
            t0 = time.perf_counter() + 0.5
            threads = [
                threading.Thread(
                    target=client, args=(server.port, events, args.rate, t0, load, stop)
                )
                for _ in range(args.threads)
            ]
            for t in threads:
                t.start()
            next_sample = t0
            while any(t.is_alive() for t in threads):
                now = time.perf_counter()
                if now >= next_sample:
                    samples.append((now - t0, server.rss_mb()))
                    next_sample += args.sample
                    if len(samples) % 3 == 1:
                        with load.lock:
                            ok, bad = load.ok, sum(load.errors.values())
                        say(f"{now - t0:5.0f}s: {ok:,} answered, {bad} errors, "
                            f"RSS {samples[-1][1]:.1f} MB")  # fmt: skip
                time.sleep(0.2)
            took = time.perf_counter() - t0
            samples.append((took, server.rss_mb()))
            alive = server.proc is not None and server.proc.poll() is None
        finally:
            stop.set()
            for t in threads:
                if t.is_alive():
                    t.join()
            server.stop()
        with load_project(built.root).open_log() as log:
            logged = int(
                log.database.fetch("SELECT COUNT(*) FROM predictions WHERE role = 'champion'")[0][0]
            )

    secs = np.array([x[0] for x in samples])
    rss = np.array([x[1] for x in samples])
    after = secs >= WARMUP_S
    slope = float(np.polyfit(secs[after] / 60, rss[after], 1)[0])
    rss_start = float(rss[after][0])
    print(
        f"\nsent {n:,} requests in {took:.0f}s ({n / took:.1f}/s achieved, target "
        f"{args.rate:g}); answered {load.ok:,}; the most a request was sent behind its "
        f"schedule: {load.max_lag * 1e3:.0f} ms"
    )
    print(f"errors: {sum(load.errors.values())} {dict(load.errors) or ''}")
    for e in load.examples:
        print(f"  {e}")
    print(
        f"RSS: {rss_idle:.1f} MB idle before the load; {rss_start:.1f} MB after the "
        f"{WARMUP_S:.0f}s warm-up; {rss[-1]:.1f} MB at the end; max {rss.max():.1f} MB"
    )
    print(f"RSS slope after warm-up: {slope:+.3f} MB/min over {int(np.sum(after))} samples "
          f"(bound {args.max_slope:g} MB/min)")  # fmt: skip
    print("RSS samples (s, MB): " + ", ".join(f"{a:.0f}:{b:.1f}" for a, b in samples))
    print(f"latency after warm-up ({len(load.latency):,} requests): {percentiles(load.latency)}")
    print("  (includes the Python client's own overhead on a shared 2-core machine; the speed "
          "benchmark is benchmarks/serving_latency.py)")  # fmt: skip
    print(f"champion predictions in the log: {logged:,} (answered {load.ok:,})")

    failures = []
    if load.errors:
        failures.append(f"{sum(load.errors.values())} requests failed: {dict(load.errors)}")
    if not alive:
        failures.append("the server was not running at the end of the load")
    if logged != load.ok:
        failures.append(f"{logged:,} champion predictions logged for {load.ok:,} answers")
    if slope > args.max_slope:
        failures.append(f"RSS grew {slope:.2f} MB/min after warm-up (bound {args.max_slope:g})")
    return verdict(
        failures, "no failed request, one prediction per answer, RSS flat within the bound."
    )


if __name__ == "__main__":
    sys.exit(main())
