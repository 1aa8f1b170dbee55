"""Ingest throughput: a Parquet file of simulated events into the embedded log (SQLite, WAL).

The engine path is what ``minder ingest FILE --topic events`` runs: read the file, validate the
whole batch, append atomically and idempotently (by event_id) through ADBC. The baseline is
what a user would write by hand with the standard library: ``sqlite3`` ``executemany`` of the
rows into a table with a unique event_id, in one transaction, WAL mode, no validation.

Target (issue 2): >= 100,000 events/s on 5M events. The log it builds is kept as the project
``bench-data/project-<n>`` for ``replay_memory.py``.

    .venv/bin/python benchmarks/ingest_throughput.py [--events 5000000]
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import polars as pl
from _common import DATA, machine, parse, world

from modelminder.project import init_project, load_project


def project_for(events_path: Path) -> Path:
    return DATA / f"project-{events_path.parent.name}"


def ingest_engine(events_path: Path, root: Path) -> tuple[float, str]:
    if root.exists():
        shutil.rmtree(root)
    init_project(root, builtin=True)
    proj = load_project(root)
    t0 = time.perf_counter()
    frame = pl.read_parquet(events_path)
    with proj.open_log() as log:
        result = log.append_events(frame)
    return time.perf_counter() - t0, result.summary()


def ingest_sqlite3(events_path: Path, db: Path) -> float:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    frame = pl.read_parquet(events_path).with_columns(pl.col("ts").dt.epoch("us"))
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(
        "CREATE TABLE events (offset INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE, "
        "ts INTEGER, card_id TEXT, merchant_id TEXT, amount REAL, country TEXT, channel TEXT)"
    )
    with con:
        con.executemany(
            "INSERT INTO events (event_id, ts, card_id, merchant_id, amount, country, channel) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            frame.select(
                "event_id", "ts", "card_id", "merchant_id", "amount", "country", "channel"
            ).iter_rows(),
        )
    con.close()
    return time.perf_counter() - t0


def main() -> None:
    args = parse(__doc__.splitlines()[0], 5_000_000)
    ev_path, _ = world(args.events)
    n = pl.scan_parquet(ev_path).select(pl.len()).collect().item()
    print(f"{n:,} events from {ev_path}; {machine()}")
    t_engine, summary = ingest_engine(ev_path, project_for(ev_path))
    print(f"engine   {t_engine:7.2f} s  {n / t_engine:10,.0f} events/s  ({summary})")
    t_base = ingest_sqlite3(ev_path, DATA / "ingest-baseline.db")
    print(f"sqlite3  {t_base:7.2f} s  {n / t_base:10,.0f} events/s  (executemany, no checks)")
    print(f"RATIO engine/sqlite3 throughput = {t_base / t_engine:.2f}")
    print(f"engine throughput = {n / t_engine:,.0f} events/s  (target >= 100,000)")


if __name__ == "__main__":
    main()
