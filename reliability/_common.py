"""Shared helpers of the reliability scripts: a project built with the CLI, a served project.

A project is built the way a user builds one (``minder init``, ``simulate``, ``ingest``,
``train``, ``models promote``), so the scripts exercise the shipped commands, not library
shortcuts. :class:`Server` runs ``minder serve`` in its own process group and is always stopped
by :meth:`Server.stop` (call it in a ``finally``), which kills the whole group.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

MINDER = str(Path(sys.executable).with_name("minder"))


def say(message: str) -> None:
    """Progress on stdout, stamped with the time (these scripts run for minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> str:
    """The machine, the time, and which modelminder is under test (its source folder)."""
    import modelminder

    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"modelminder from {Path(modelminder.__file__).parent}"
    )


def minder(*args: str, ok: Sequence[int] = (0,), quiet: bool = True) -> int:
    """Run ``minder ARGS`` as a user would; raise if its exit code is not in ``ok``."""
    done = subprocess.run(
        [MINDER, *args], capture_output=quiet, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode not in ok:
        detail = f"\n{done.stdout}\n{done.stderr}" if quiet else ""
        raise RuntimeError(f"minder {' '.join(args)} exited {done.returncode}{detail}")
    return done.returncode


def seeded_rng(seed: int | None) -> tuple[random.Random, int]:
    """A random generator for kill moments, and its seed (drawn if not given) to print."""
    chosen = seed if seed is not None else random.randrange(2**31)
    return random.Random(chosen), chosen


def verdict(failures: Sequence[str], ok: str) -> int:
    """Print the result and return the exit code: 1 with every failure listed, else 0."""
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nOK: {ok}")
    return 0


def add_world_options(parser: argparse.ArgumentParser, *, days: int = 120) -> None:
    """Options of the simulated world (the training needs >= ~90 days: 30d label maturity)."""
    parser.add_argument("--days", type=int, default=days, help=f"simulated days ({days})")
    parser.add_argument("--cards", type=int, default=1000, help="simulated cards (1000)")
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (7)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary project folder (path printed)"
    )


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    """A temporary folder, removed at the end unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix="minder-reliability-"))
    try:
        yield path
    finally:
        if keep:
            say(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def new_project(folder: Path, days: int, cards: int, seed: int) -> tuple[Path, Path]:
    """``minder init --builtin`` and ``minder simulate``: the project and the data folder."""
    root, data = folder / "proj", folder / "data"
    minder("init", str(root), "--builtin")
    minder(
        "simulate", "--days", str(days), "--cards", str(cards), "--seed", str(seed),
        "--out", str(data),
    )  # fmt: skip
    return root, data


@dataclass(frozen=True)
class Built:
    """A trained, served-ready project and the events it has not seen yet."""

    root: Path
    history: int  # events ingested before serving
    live: pl.DataFrame  # the rest, in arrival order
    champion: str
    rejected: bool  # the gate rejected the model; promoted with --override


def build_served_project(
    folder: Path, days: int, cards: int, seed: int, *, room_days: int = 1
) -> Built:
    """Init, simulate, ingest the first ~90% of the events by time (and their labels), train
    with ``--trials 0 --folds 3`` and promote v1 (with ``--override`` if the gate rejected it:
    these scripts test durability, not model quality).

    The simulated world is moved in time (whole weeks) to end ``room_days`` to ``room_days +
    7`` days before now: the simulator starts on 2026-01-01, and the server refuses live events
    dated far from its clock (in the future, or too old)."""
    t0 = time.perf_counter()
    root, data = new_project(folder, days, cards, seed)
    events = pl.read_parquet(data / "events.parquet")
    labels = pl.read_parquet(data / "labels.parquet")
    end = events.get_column("ts").max()
    assert isinstance(end, dt.datetime)
    target = dt.datetime.now(dt.UTC) - dt.timedelta(days=room_days)
    shift = dt.timedelta(weeks=(target - end) // dt.timedelta(weeks=1))
    events = events.with_columns(pl.col("ts") + shift)
    labels = labels.with_columns(pl.col("label_ts") + shift)
    cut = events.get_column("ts").sort()[int(events.height * 0.9)]
    history = events.filter(pl.col("ts") < cut)
    live = events.filter(pl.col("ts") >= cut)  # arrival order kept (a few are late)
    history.write_parquet(folder / "history.parquet")
    labels.filter(pl.col("event_id").is_in(history.get_column("event_id").implode())).write_parquet(
        folder / "history_labels.parquet"
    )
    minder("ingest", str(folder / "history.parquet"), "--topic", "events", "-p", str(root))
    minder("ingest", str(folder / "history_labels.parquet"), "--topic", "labels", "-p", str(root))
    say(
        f"project {root}: {history.height:,} events ingested, {live.height:,} kept for serving "
        f"(world moved by {shift.days} days: live events from {cut:%Y-%m-%d})"
    )
    # Exit 1 = registered but rejected by the gate; anything else is a failure.
    rejected = minder("train", "--trials", "0", "--folds", "3", "-p", str(root), ok=(0, 1)) == 1
    promote = ["models", "promote", "v1", "-p", str(root)]
    minder(*promote, *(["--override", "--reason", "reliability test"] if rejected else []))
    verdict = "rejected by the gate, promoted with --override" if rejected else "accepted"
    say(f"trained and promoted v1 ({verdict}) in {time.perf_counter() - t0:.0f}s")
    return Built(root, history.height, live, "v1", rejected)


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """An event row as a JSON body item (datetimes as ISO-8601)."""
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One HTTP request on ``conn``; the status and the decoded JSON (None if not JSON).
    Raises OSError / http.client.HTTPException on a connection failure (the caller closes
    ``conn``; http.client reopens it on the next request)."""
    payload = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if payload is not None else {}
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, None


class Server:
    """``minder serve`` on a loopback port, in its own process group (no tokens: open on
    loopback). Output goes to ``log_file`` (appended across restarts)."""

    def __init__(self, root: Path, log_file: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not started"
        return self.proc.pid

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait for ``/readyz`` 200; the seconds it took."""
        t0 = time.perf_counter()
        with self.log_file.open("ab") as out:
            out.write(f"\n--- start {self.starts + 1} at {time.ctime()}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [MINDER, "serve", "--port", str(self.port), "--project", str(self.root)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() kills all of it
            )  # fmt: skip
        self.starts += 1
        self.wait_ready(timeout)
        return time.perf_counter() - t0

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"minder serve exited with {self.proc.returncode} before it was ready; "
                        f"see {self.log_file}:\n{self.log_file.read_text()[-2000:]}"
                    )
                try:
                    status, _ = request(conn, "GET", "/readyz")
                    if status == 200:
                        return
                except (OSError, http.client.HTTPException):
                    conn.close()
                time.sleep(0.1)
        finally:
            conn.close()
        raise RuntimeError(f"minder serve was not ready after {timeout:.0f}s; see {self.log_file}")

    def kill9(self) -> None:
        """SIGKILL the server process (the crash under test) and reap it."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def rss_mb(self) -> float:
        """The server's resident set size (VmRSS) in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS in /proc/{self.pid}/status")

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited in 15 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()


def percentiles(values: Sequence[float]) -> str:
    """``p50 / p99 / max`` of ``values`` (seconds) in milliseconds."""
    if not values:
        return "no samples"
    xs = sorted(values)

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1e3

    return f"p50 {q(0.50):.1f} ms, p99 {q(0.99):.1f} ms, max {xs[-1] * 1e3:.1f} ms"
