"""kill -9 during ``minder ingest``: a file lands in the log all at once or not at all.

Proves the event log's promise that an append is atomic per batch, across crashes: a large
events file (120 simulated days x 1000 cards, about 330k events, Parquet) is ingested with
``minder ingest FILE --topic events --project DIR``, and the process is killed with SIGKILL at a
chosen moment, 10 times, then run once to completion. A first, uninterrupted run in a copy of
the project measures when the write starts (the log's write-ahead file grows past 1 MB) and when
the command exits; a third of the kills land at a random time from the start (mostly before
the write), the others at a random time after the write began (up to 1.05x its calibrated
length, so a few hit the commit or come after it). After each kill the log is opened through
the library and must hold either none or all of the file's rows (``log.count("events")`` is 0
or the full count, never in between), and pass SQLite's integrity check. At the end it must
hold exactly the file's rows, each event_id once.

If the ingest had committed before a kill landed (the file is then fully in the log, which is
allowed), the next kills go to a fresh copy of the empty project so they still test something.

Exit code 0 when the property held, 1 otherwise.

    .venv/bin/python reliability/kill_ingest.py [--kills 10] [--days 120] [--cards 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from _common import (
    MINDER,
    add_world_options,
    machine,
    new_project,
    say,
    seeded_rng,
    verdict,
    workdir,
)

from modelminder.project import load_project

WRITING_BYTES = 1 << 20  # the write-ahead file past this: the big transaction is being written


@dataclass(frozen=True)
class Run:
    """One ``minder ingest`` run: when it was killed (None: ran to the end) and what it saw."""

    delay: float | None  # seconds from the start to the kill
    # before-write (WAL < 1 MB at the kill), mid-write (WAL > 1 MB), after-commit (killed, yet
    # all rows in the log: it was closing), exited (finished before the kill), completed (the
    # final run, not killed)
    state: str
    wal_mb: float  # size of the write-ahead file at the kill
    exit_code: int
    rows: int  # events in the log afterwards
    integrity: str


def ingest(
    root: Path, file: Path, delay: float | None, *, from_write: bool = False
) -> tuple[str, float, int, float, float | None]:
    """Run ``minder ingest`` and SIGKILL it ``delay`` s after it started, or after the write
    began if ``from_write`` (None: let it finish). The state at the kill, the WAL size then
    (MB), the exit code, the seconds from start to the kill (or exit), and when the WAL passed
    1 MB (s from start)."""
    wal = root / "minder.db-wal"
    t0 = time.perf_counter()
    with (root.parent / "ingest-output.txt").open("wb") as output:
        proc = subprocess.Popen(
            [MINDER, "ingest", str(file), "--topic", "events", "--project", str(root)],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    writing_at: float | None = None
    size = 0

    def due() -> bool:
        if delay is None:
            return False
        if from_write:
            return writing_at is not None and time.perf_counter() - t0 - writing_at >= delay
        return time.perf_counter() - t0 >= delay

    try:
        while proc.poll() is None and not due():
            size = wal.stat().st_size if wal.exists() else 0
            if writing_at is None and size > WRITING_BYTES:
                writing_at = time.perf_counter() - t0
            time.sleep(0.002)
        if proc.poll() is not None:
            state = "exited" if delay is not None else "completed"
            return state, size / 1e6, proc.wait(), time.perf_counter() - t0, writing_at
        size = wal.stat().st_size if wal.exists() else 0
        os.killpg(proc.pid, signal.SIGKILL)
        at = time.perf_counter() - t0
        code = proc.wait()
        if code == 0:  # it exited on its own between the last look and the kill
            return "exited", size / 1e6, code, at, writing_at
        state = "mid-write" if size > WRITING_BYTES else "before-write"
        return state, size / 1e6, code, at, writing_at
    finally:
        if proc.poll() is None:  # an error above: never leave it running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def inspect(root: Path) -> tuple[int, str, pl.Series]:
    """The number of events in the log, SQLite's integrity check, and the event_ids."""
    project = load_project(root)
    if not project.log_path.exists():
        return 0, "no log file yet", pl.Series("event_id", [], pl.String)
    with project.open_log() as log:
        integrity = str(log.database.fetch("PRAGMA integrity_check")[0][0])
        return log.count("events"), integrity, log.read("events").get_column("event_id")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kill -9 this many times (10)")
    parser.add_argument("--rng-seed", type=int, default=None, help="seed of the kill delays")
    add_world_options(parser)
    args = parser.parse_args()
    rng, rng_seed = seeded_rng(args.rng_seed)
    say(f"kill_ingest: {machine()}; kills={args.kills}, seed={rng_seed}")
    with workdir(args.keep) as folder:
        root, data = new_project(folder, args.days, args.cards, args.seed)
        file = data / "events.parquet"
        expected = pl.read_parquet(file, columns=["event_id"]).get_column("event_id")
        n = expected.len()
        pristine = folder / "pristine"
        shutil.copytree(root, pristine)
        say(f"{file.name}: {n:,} events, {file.stat().st_size / 1e6:.1f} MB")

        # Calibration in a copy: when does the write start, when does the command end?
        calib = folder / "calibration"
        shutil.copytree(pristine, calib)
        _, _, code, total, writing_at = ingest(calib, file, None)
        if code != 0 or writing_at is None:
            output = (folder / "ingest-output.txt").read_text()[-3000:]
            print(f"FAILED: the calibration run exited {code} (write seen at {writing_at}):\n")
            print(output)
            return 1
        say(f"calibration: write-ahead file past 1 MB at {writing_at:.2f}s, exit at {total:.2f}s")
        # A third of the kills at a random time from the start (mostly before the write:
        # reading the file, opening the log), the others at a random time after the write
        # began (up to 1.05x its calibrated length, so a few land at the commit or after it).
        plan = [
            (rng.uniform(0.3, 1.0) * writing_at, False)
            if k % 3 == 0
            else (rng.uniform(0.0, 1.05) * (total - writing_at), True)
            for k in range(args.kills)
        ]
        rng.shuffle(plan)

        runs: list[Run] = []
        failures: list[str] = []
        for delay, from_write in plan:
            state, wal_mb, code, at, _ = ingest(root, file, delay, from_write=from_write)
            rows, integrity, _ = inspect(root)
            if state != "exited" and rows == n:  # killed after the commit (closing the log)
                state = "after-commit"
            runs.append(Run(at, state, wal_mb, code, rows, integrity))
            if rows not in (0, n):
                failures.append(f"after a kill at {at:.2f}s the log holds {rows:,} of {n:,}")
            if integrity not in ("ok", "no log file yet"):
                failures.append(f"after a kill at {at:.2f}s integrity_check says {integrity}")
            say(f"kill #{len(runs)} at {at:.2f}s ({state}, WAL {wal_mb:.1f} MB): {rows:,} rows")
            if rows == n:  # finished before the kill: start the next one from an empty log
                shutil.rmtree(root)
                shutil.copytree(pristine, root)
        state, wal_mb, code, _, _ = ingest(root, file, None)
        rows, integrity, ids = inspect(root)
        runs.append(Run(None, state, wal_mb, code, rows, integrity))

        print(f"\n{'kill #':>6} {'kill at s':>9} {'state at kill':>14} {'WAL MB':>7} "
              f"{'exit':>5} {'rows in log after':>18} {'integrity':>9}")  # fmt: skip
        for k, r in enumerate(runs, 1):
            label = f"{k}" if r.delay is not None else "final"
            shown = f"{r.delay:.2f}" if r.delay is not None else "-"
            print(f"{label:>6} {shown:>9} {r.state:>14} {r.wal_mb:>7.1f} {r.exit_code:>5} "
                  f"{r.rows:>18,} {r.integrity:>9}")  # fmt: skip
        kinds = Counter(r.state for r in runs[:-1])
        print(f"\nkills: {dict(kinds)}; file rows: {n:,}")
        if code != 0:
            output = (folder / "ingest-output.txt").read_text()[-3000:]
            failures.append(f"the final run exited {code}:\n{output}")
        if rows != n or ids.n_unique() != n or not ids.is_in(expected.implode()).all():
            failures.append(
                f"at the end the log holds {rows:,} events ({ids.n_unique():,} distinct), "
                f"not exactly the file's {n:,}"
            )
    return verdict(
        failures,
        "after every kill the log held none or all of the file; at the end, all of it once.",
    )


if __name__ == "__main__":
    sys.exit(main())
