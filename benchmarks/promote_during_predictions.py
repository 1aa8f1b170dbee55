"""/v1/predict latency while models are promoted, against the same server with no promote.

Issue 11: a promote (registry opening, model loading, SQLite writes) runs in the thread pool,
so it must not stall the predictions in flight. This measures by how much it raises them.

One ``minder serve`` (its own process, loopback, one worker, the default LightGBM champion:
bagged fold models, calibrated) serves two registered versions with identical files. The
load generator is ``wrk`` (C; one thread, a Lua script that sends every request a new event
of the simulated world, in time order, never one twice), at 1 connection and at 8. Two
phases take turns in the same run, the order swapped every round so both see the same
machine:

* (a) baseline: predictions only;
* (b) predictions while another process promotes the two versions back and forth about once
  a second through the API (``POST /v1/models/{version}/promote``, admin token): each
  promote loads and checks the model, moves the alias, audits the move, and the server swaps
  the model in.

Bound (issue 11): p99 during promotes <= 2x p99 without, at each concurrency; the script
prints PASS or FAIL against it (a verdict to read, not an exit code). Each phase's latency
histograms are pooled over the rounds (wrk's full histogram, not an average of p99s). It
also prints the promotes' own durations, which versions served the predictions of each
phase (from ``/metrics``: both must appear in (b)), and the CPU wrk used, to show the load
generator is not the bottleneck.

wrk is closed-loop: a connection waiting on a stalled answer sends nothing meanwhile, so a
stall of the event loop shows as one slow request per connection, not as the queue an
open-loop client would see (coordinated omission). With one stall a second, that is about 2%
of the requests at 8 connections (~400 req/s: it shows at p99) but about 0.5% at 1
connection (~180 req/s: only p99.9 and max show it); the script prints both.

    .venv/bin/python benchmarks/promote_during_predictions.py [--events 160000]
        [--seconds 3] [--rounds 6] [--fresh]

Needs ``wrk`` on the PATH (Debian/Ubuntu: ``apt-get install wrk``; macOS: ``brew install
wrk``). The trained project (a 160-day world: 100 days of log to train on, the last 60 days
as the stream) is built once and cached in ``bench-data/`` (training takes 1-2.5 minutes);
each run serves a copy. With the cache, a run takes about 1.5 minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from _common import DATA, DAYS, EVENTS_PER_CARD, machine
from serving_latency import _body, _port, _wait

from modelminder.project import init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.store import ServingStore
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

BOUND = 2.0  # p99 during promotes / p99 without, at most (issue 11)
CONNECTIONS = (1, 8)
PROMOTE_EVERY = 1.0  # seconds
# The first 100 days are the log the model trains on (walk-forward needs about 92); the last
# 60 are the stream the predictions send, in time order.
WORLD_DAYS, TRAIN_DAYS = 160, 100

# One wrk thread, so one Lua state hands out the events: each request a new one, in order.
# done() runs in wrk's main Lua state; it writes the run's full latency histogram (value in
# microseconds and count, wrk's `latency(i)`) for the benchmark to pool over the rounds.
LUA = r"""
local bodies, headers = {}, nil
sent, wrapped = 0, 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path, token, first = args[1], args[2], tonumber(args[3])
  local n = 0
  for line in io.lines(path) do
    n = n + 1
    if n > first then bodies[#bodies + 1] = line end
  end
  headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
end

function request()
  sent = sent + 1
  local i = sent
  if i > #bodies then
    wrapped = wrapped + 1
    i = (i - 1) % #bodies + 1
  end
  return wrk.format("POST", "/v1/predict", headers, bodies[i])
end

function done(summary, latency, requests)
  local out = io.open(os.getenv("WRK_RESULT"), "w")
  local t = threads[1]
  local e = summary.errors
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "sent": %d, "wrapped": %d, "status": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "histogram": [',
    summary.requests, summary.duration, t:get("sent"), t:get("wrapped"), e.status,
    e.connect, e.read, e.write, e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    out:write(string.format('%s[%d, %d]', i > 1 and ", " or "", value, count))
  end
  out:write("]}\n")
  out:close()
end
"""

# The other process: promote the versions in turn, one every PROMOTE_EVERY seconds, until the
# deadline; one JSON line per promote (stdlib only: it is not the load generator).
PROMOTER = r"""
import json, sys, time, urllib.request
base, token, order, seconds, every = sys.argv[1:6]
order, every = order.split(","), float(every)
start = time.monotonic()
k = 0
while time.monotonic() - start < float(seconds):
    version = order[k % len(order)]
    request = urllib.request.Request(
        f"{base}/v1/models/{version}/promote?reason=bench&override=true", method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            status = r.status
    except urllib.error.HTTPError as err:
        status = err.code
    print(json.dumps({"version": version, "status": status,
                      "seconds": time.perf_counter() - t0}), flush=True)
    k += 1
    time.sleep(max(0.0, start + k * every - time.monotonic()))
"""


@dataclass
class Phase:
    """What the runs of one phase at one concurrency add up to."""

    histogram: Counter[int] = field(default_factory=Counter)  # latency in us -> requests
    requests: int = 0
    seconds: float = 0.0
    wrk_cpu: float = 0.0  # CPU seconds wrk used (prorated to the timed part of its runs)
    served_by: Counter[str] = field(default_factory=Counter)
    promotes: list[float] = field(default_factory=list)  # durations, seconds

    def percentile(self, q: float) -> float:
        """The latency (ms) below which ``q`` percent of the requests fall."""
        values = np.array(sorted(self.histogram))
        counts = np.cumsum([self.histogram[v] for v in values])
        at = int(np.searchsorted(counts, q / 100 * counts[-1]))
        return float(values[min(at, len(values) - 1)]) / 1e3


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=int(os.environ.get("BENCH_EVENTS", 600_000)),
        help="approximate number of simulated events over 160 days; the last 60 (37%%) are "
        "the stream the predictions send (default 600,000: enough for an unloaded server)",
    )  # fmt: skip
    parser.add_argument(
        "--fresh", action="store_true",
        help=f"build the project again instead of using the one cached in {DATA}/",
    )  # fmt: skip
    parser.add_argument("--seconds", type=int, default=3, help="length of one run (default 3)")
    parser.add_argument("--rounds", type=int, default=6, help="runs per phase (default 6)")
    return parser.parse_args()


def _need_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(
            "This benchmark needs wrk (a C HTTP load generator): a Python client would be the "
            "bottleneck and hide what it measures. Install it (Debian/Ubuntu: sudo apt-get "
            "install wrk; macOS: brew install wrk) and run it again."
        )
    return wrk


def main() -> None:
    args = _args()
    wrk = _need_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cached, stream, v1, v2 = _built(args.events, args.fresh)
        root = folder / "p"
        shutil.copytree(cached, root)  # the cache stays as built: predictions go to a copy
        with ServingStore.open(root) as store:
            service_token, admin_token = store.create_token("service"), store.create_token("admin")
        port = _port()
        base = f"http://127.0.0.1:{port}"
        minder = str(Path(sys.executable).with_name("minder"))
        server = subprocess.Popen(
            [minder, "serve", "--port", str(port), "-p", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait(f"{base}/healthz")
            (folder / "predict.lua").write_text(LUA)
            runner = _Runner(wrk, folder, base, service_token, admin_token, stream, (v1, v2))
            print(
                f"{machine()}; load average {os.getloadavg()[0]:.1f}; "
                f"{stream[1]:,} stream events; versions {v1}, {v2} (same files)"
            )
            runner.warm_up()
            phases = {(c, p): Phase() for c in CONNECTIONS for p in "ab"}
            for r in range(args.rounds):
                for c in CONNECTIONS:
                    for p in "ab" if r % 2 == 0 else "ba":
                        runner.run(phases[c, p], c, args.seconds, promote=p == "b")
            load = os.getloadavg()[0]
        finally:
            server.terminate()
            server.wait(timeout=60)
    _report(phases, args, load)


def _built(events: int, fresh: bool) -> tuple[Path, tuple[Path, int], str, str]:
    """The cached project (trained, two versions of the champion's files) and the stream's
    request bodies (file, count), built on the first run (training is most of the time)."""
    cards = max(100, round(events / EVENTS_PER_CARD * DAYS / WORLD_DAYS))
    folder = DATA / f"promote-{WORLD_DAYS}d-{cards}c"
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if not folder.exists():
        t0 = time.perf_counter()
        building = DATA / f".{folder.name}-{os.getpid()}"
        try:
            _build(building, cards)
            building.rename(folder)  # whole or not at all
        finally:
            shutil.rmtree(building, ignore_errors=True)
        print(f"built and trained in {time.perf_counter() - t0:.0f} s -> {folder}")
    info = json.loads((folder / "built.json").read_text())
    return folder / "p", (folder / "stream.jsonl", info["stream"]), *info["versions"]


def _build(folder: Path, cards: int) -> None:
    root = folder / "p"
    init_project(root, builtin=True)
    # The simulated world is dated 2026: let the live path take it whatever today's date.
    config = root / "minder.toml"
    config.write_text(
        config.read_text().replace('max_event_age = "365d"', 'max_event_age = "36500d"')
    )
    project = load_project(root)
    world_config = WorldConfig(
        days=WORLD_DAYS, cards=cards, seed=9, fraud_card_share=0.15, schedule="steady"
    )
    world = simulate(world_config)
    train_end = world_config.start + dt.timedelta(days=TRAIN_DAYS)
    history = world.events.filter(pl.col("ts") < train_end)
    live = world.events.filter(pl.col("ts") >= train_end).sort("ts")  # as it would arrive
    with project.open_log() as log:
        log.append_events(history)
        log.append_labels(world.labels)
    # The served model is the default LightGBM ensemble; fewer rows and no baseline only
    # shorten the training, and its guard report.
    trained = train_and_register(
        project, TrainConfig(trials=0, baseline=False, max_train_rows=20_000)
    )
    with project.open_log() as log, Registry.open(root, log) as reg:
        # Latency does not depend on the verdict; the bench promotes the model either way.
        first = trained.record.version
        reg.set_alias(
            "champion", first, actor="bench", reason="bench",
            override=not trained.result.verdict.passed,
        )  # fmt: skip
        second = reg.register(
            reg.load_files(first), reg.get(first).meta, status="accepted", created_by="bench"
        ).version
    with (folder / "stream.jsonl").open("w") as out:
        for row in live.iter_rows(named=True):
            out.write(json.dumps({"events": [_body(row)]}, separators=(",", ":")) + "\n")
    info = {"stream": live.height, "versions": [first, second]}
    (folder / "built.json").write_text(json.dumps(info))


class _Runner:
    """Runs wrk against the server, with or without the promoter alongside."""

    def __init__(
        self,
        wrk: str,
        folder: Path,
        base: str,
        token: str,
        admin: str,
        stream: tuple[Path, int],
        versions: tuple[str, str],
    ) -> None:
        self.wrk, self.folder, self.base = wrk, folder, base
        self.token, self.admin = token, admin
        self.bodies, self.available = stream
        self.used = 0  # stream events handed out so far: never sent twice
        self.champion, self.other = versions

    def warm_up(self) -> None:
        """Untimed: a short run at 8 connections, and a promote there and back."""
        self.run(Phase(), 8, 2, promote=False)
        self.run(Phase(), 8, 2, promote=True)

    def run(self, phase: Phase, connections: int, seconds: int, *, promote: bool) -> None:
        result = self.folder / "wrk.json"
        before = self._served()
        promoter = None
        if promote:
            promoter = subprocess.Popen(
                [sys.executable, "-c", PROMOTER, self.base, self.admin,
                 f"{self.other},{self.champion}", str(seconds - 0.5), str(PROMOTE_EVERY)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        cmd = [
            self.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
            "-s", str(self.folder / "predict.lua"), f"{self.base}/v1/predict",
            "--", str(self.bodies), self.token, str(self.used),
        ]  # fmt: skip
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, env={**os.environ, "WRK_RESULT": str(result)}
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"wrk exited with {proc.returncode}: {' '.join(cmd)}")
        if promoter is not None:
            out, _ = promoter.communicate(timeout=120)
            moves = [json.loads(line) for line in out.splitlines()]
            failed = [m for m in moves if m["status"] != 200]
            if failed or not moves:
                raise RuntimeError(f"promotes failed: {failed or 'none was made'}")
            phase.promotes += [m["seconds"] for m in moves]
            if len(moves) % 2:  # the champion is now the other version
                self.champion, self.other = self.other, self.champion
        got = json.loads(result.read_text())
        self.used += got["sent"]
        errors = {k: got[k] for k in ("status", "connect", "read", "write", "timeout") if got[k]}
        if got["wrapped"] or self.used > self.available:
            raise RuntimeError(
                f"The stream ran out of new events ({self.available:,}); a repeated event is "
                "a cheap retry, not a prediction. Run with a larger --events."
            )
        if errors:
            raise RuntimeError(f"wrk counted failed requests: {errors}")
        phase.histogram.update({int(v): int(n) for v, n in got["histogram"]})
        phase.requests += got["requests"]
        phase.seconds += got["duration_us"] / 1e6
        phase.wrk_cpu += (usage.ru_utime + usage.ru_stime) * got["duration_us"] / 1e6 / wall
        phase.served_by.update(self._served() - before)

    def _served(self) -> Counter[str]:
        """Predictions served so far by model version (the server's /metrics)."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=30) as r:
            text = r.read().decode()
        found = re.findall(r'^minder_predictions_total\{version="([^"]+)"\} (\S+)$', text, re.M)
        return Counter({v: int(float(n)) for v, n in found})


def _report(phases: dict[tuple[int, str], Phase], args: argparse.Namespace, load: float) -> None:
    names = {"a": "(a) predictions only", "b": "(b) with a promote every ~1 s"}
    print(
        f"\n{args.rounds} runs of {args.seconds} s per phase and concurrency, phases "
        f"alternating; load average at the end {load:.1f}"
    )
    print(
        f"{'connections / phase':38s} {'p50':>8s} {'p99':>8s} {'p99.9':>8s} {'max':>8s} "
        f"{'req/s':>6s} {'wrk CPU':>8s}  served by"
    )
    verdicts = []
    for c in CONNECTIONS:
        for p in "ab":
            ph = phases[c, p]
            by = ", ".join(f"{v} {n:,}" for v, n in sorted(ph.served_by.items()))
            print(
                f"{c} / {names[p]:34s} {ph.percentile(50):5.2f} ms {ph.percentile(99):5.2f} ms "
                f"{ph.percentile(99.9):5.1f} ms {max(ph.histogram) / 1e3:5.0f} ms "
                f"{ph.requests / ph.seconds:6.0f} {ph.wrk_cpu / ph.seconds:7.0%}  {by}"
            )
        a, b = phases[c, "a"], phases[c, "b"]
        ratio = b.percentile(99) / a.percentile(99)
        # Both versions must have served in (b): else no swap happened under load.
        ok = ratio <= BOUND and len(b.served_by) == 2
        verdicts.append(ok)
        took = np.array(b.promotes) * 1e3
        print(
            f"  RATIO p99 (b)/(a) at {c} connection(s) = {ratio:.2f}  (bound <= {BOUND:g}: "
            f"{'PASS' if ok else 'FAIL'}); p99.9 ratio "
            f"{b.percentile(99.9) / a.percentile(99.9):.2f}; req/s ratio "
            f"{(b.requests / b.seconds) / (a.requests / a.seconds):.2f}; {len(took)} promotes "
            f"took p50 {np.percentile(took, 50):.0f} ms, max {took.max():.0f} ms"
        )
    print(f"\n{'PASS' if all(verdicts) else 'FAIL'}: p99 during promotes <= {BOUND:g}x p99 without")


if __name__ == "__main__":
    main()
