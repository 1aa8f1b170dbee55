"""The event log: append-only topics in one SQLite file (WAL), ordered by offset.

Promises
--------
* ``append`` is atomic per batch: the whole batch is validated first and written in one
  transaction, or nothing is written.
* Idempotent: a record whose id is already in the topic (``event_id`` for events;
  ``(event_id, source)`` for labels) is skipped and counted as a duplicate.
* Offsets are assigned by the log, strictly increasing, never reused.
* Reads come back as Arrow-backed Polars frames in offset order (no row-by-row Python).
* The ``audit`` topic records who changed what and why (e.g. a model registry alias change),
  one row per change: ``offset, ts, kind, actor, payload`` with ``payload`` a JSON string.
  Audit records have no id and are never deduplicated: each call is one change.

Every table in the log's file (this module's and the other topics') is created and upgraded by
:mod:`modelminder.store.migrations.log` when the log opens; a log written by a newer
modelminder is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from modelminder.clock import Clock, WallClock
from modelminder.errors import LogError, SchemaError
from modelminder.events.outcomes import first_known
from modelminder.events.schema import EventSchema, normalize, normalize_labels, refuse_ahead
from modelminder.store.migrations import migrate
from modelminder.store.migrations.log import migrations as log_migrations
from modelminder.store.sqlite import Database, RowInsert

CHUNK = 50_000
TOPICS = ("events", "labels", "audit")
# The column that read(from_ts=, to_ts=) filters on, per topic.
_TIME_COLUMN = {"events": "ts", "labels": "known_at", "audit": "ts"}


@dataclass(frozen=True)
class AppendResult:
    """What an append did."""

    topic: str
    received: int
    inserted: int
    duplicates: int
    first_offset: int | None
    last_offset: int | None

    def summary(self) -> str:
        if self.inserted == 0 and self.received:
            return (
                f"{self.topic}: all {self.received} records were already in the log; "
                "nothing changed."
            )
        dup = f", {self.duplicates} already in the log (skipped)" if self.duplicates else ""
        return (
            f"{self.topic}: {self.inserted} appended at offsets "
            f"{self.first_offset}..{self.last_offset}{dup}."
        )


def _ident(name: str) -> str:
    # Field names are validated identifiers from the config; quote them anyway.
    return '"' + name.replace('"', '""') + '"'


def _check_topic(topic: str) -> None:
    # Topic names are interpolated into SQL as table names, so only these three may pass.
    if topic not in TOPICS:
        raise LogError(f"Unknown topic {topic!r}. Topics: {', '.join(TOPICS)}.")


def _label_insert(label: str) -> RowInsert:
    return RowInsert(
        "labels",
        {
            "event_id": "str",
            label: "float",
            "label_ts": "int",
            "known_at": "int",
            "source": "str",
            "revision": "int",
            "reviewer": "str",
            "note": "str",
        },
        "ON CONFLICT(event_id, source, revision) DO NOTHING",
    )


# A checkpoint copies each page's latest version once, so a larger WAL (16 MB before an
# automatic checkpoint, against SQLite's 4 MB) writes hot index pages less often: measured
# -15% mean and -60% p99 on one-event transactions (the live path's).
_PRAGMAS = ("journal_mode=WAL", "busy_timeout=10000", "wal_autocheckpoint=4000")
# How a commit reaches the disk. In WAL mode, NORMAL syncs at checkpoints only: a commit
# survives a crash of the process (the WAL file is written), but the last commits before an
# OS crash or power cut may be lost. FULL syncs the WAL at every commit.
_SYNCHRONOUS = {"normal": "synchronous=NORMAL", "full": "synchronous=FULL"}


class EventLog:
    """An event log in a SQLite file.

    Examples
    --------
    >>> import tempfile, datetime as dt, polars as pl
    >>> d = tempfile.mkdtemp()
    >>> log = EventLog.open(d + "/log.db", EventSchema({"card_id": "str", "amount": "float"}))
    >>> batch = pl.DataFrame({"event_id": ["a"], "ts": [dt.datetime(2026, 1, 1)],
    ...                       "card_id": ["c1"], "amount": [12.5]})
    >>> log.append_events(batch).inserted
    1
    >>> log.append_events(batch).summary()
    'events: all 1 records were already in the log; nothing changed.'
    >>> log.close()
    """

    def __init__(
        self,
        path: Path,
        schema: EventSchema,
        clock: Clock | None = None,
        durability: str = "normal",
        max_lead: tuple[int, str] = (3_600_000_000, "1h"),
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise LogError(
                f"The log's durability must be one of {', '.join(map(repr, _SYNCHRONOUS))}. "
                f"Got {durability!r}."
            )
        self.path = path
        self.max_lead = max_lead
        self.schema = schema
        self.durability = durability
        # Stamps audit records that do not bring their own time.
        self.clock: Clock = clock if clock is not None else WallClock()
        self._db = Database(path, pragmas=(*_PRAGMAS, _SYNCHRONOUS[durability]))
        self._lock = self._db.lock
        self._fetch = self._db.fetch
        self._tx = self._db.tx
        self._event_insert = RowInsert(
            "events", {"event_id": "str", "ts": "int", **schema.fields},
            "ON CONFLICT(event_id) DO NOTHING",
        )  # fmt: skip

    @classmethod
    def open(
        cls,
        path: str | Path,
        schema: EventSchema,
        *,
        clock: Clock | None = None,
        durability: str = "normal",
        max_lead: tuple[int, str] = (3_600_000_000, "1h"),
    ) -> EventLog:
        """Open (creating if needed) the log at ``path`` for events with ``schema``.

        ``clock`` stamps audit records appended without an explicit time (default: the wall
        clock). ``durability``: ``"normal"`` (a commit survives the process's crash) or
        ``"full"`` (also an OS crash or power cut: fsync per commit). ``max_lead``
        (microseconds, as written in the config): a label dated further ahead of the clock is
        refused, whatever door it comes through (``[serving].max_event_lead``).
        """
        p = Path(path)
        if not p.parent.exists():
            raise LogError(f"Cannot create the log at {p}: folder {p.parent} does not exist.")
        log = cls(p, schema, clock, durability, max_lead)
        try:
            log._migrate()
        except BaseException:
            log.close()
            raise
        return log

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._db.close()

    @property
    def database(self) -> Database:
        """The log's connection, for topics kept by other modules of this package."""
        return self._db

    def transaction(self) -> Any:
        """Group appends into one atomic commit: ``with log.transaction(): ...``."""
        return self._db.tx()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        # The log's tables are created and upgraded in one place: store.migrations.log.
        label = self.schema.label
        migrate(self._db, log_migrations(self.schema.fields, label), what="the event log")
        columns = [row[1] for row in self._fetch("PRAGMA table_info(labels)")]
        if label not in columns:
            kept = [
                c
                for c in columns
                if c
                not in (
                    "offset",
                    "event_id",
                    "label_ts",
                    "known_at",
                    "source",
                    "revision",
                    "reviewer",
                    "note",
                )
            ]
            raise LogError(
                f"The log at {self.path} stores labels named {', '.join(map(repr, kept))}, but "
                f"the configuration declares [events].label = {label!r}. Use the original "
                "name, or start a new log file."
            )
        self._label_insert = _label_insert(label)
        fields = dict(self.schema.fields)
        stored = self._fetch("SELECT value FROM log_meta WHERE key='event_fields'")[0][0]
        if json.loads(stored) != fields:
            raise LogError(
                f"The log at {self.path} was created for event fields {stored}, but the "
                f"configuration declares {json.dumps(fields)}. Use the original fields, or "
                "start a new log file."
            )

    # -- append ---------------------------------------------------------------------------
    def append_events(
        self, frame: pl.DataFrame, progress: Callable[[int], None] | None = None
    ) -> AppendResult:
        """Validate and append a batch of events, atomically and idempotently by event_id."""
        batch = normalize(frame, self.schema.fields, ("ts",), self.schema.rules)
        names = ["event_id", "ts", *self.schema.fields]
        sql = (
            f"INSERT INTO events ({', '.join(_ident(n) for n in names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) ON CONFLICT(event_id) DO NOTHING"
        )
        return self._insert("events", batch, sql, progress)

    def append_event_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Append a few events already validated by :func:`validate_rows` (the live path),
        one statement each; for each, whether it was new (False: its id was already logged).
        Atomic with the caller's transaction, if any."""
        with self._tx():
            return [self._event_insert.run(self._db, row) == 1 for row in rows]

    def refuse_future_labels(self, rows: pl.DataFrame | Sequence[Mapping[str, Any]]) -> None:
        """Raise SchemaError if a label is dated after the log's clock by more than
        ``max_lead``: the log's own invariant, checked on every append whatever the door
        (``minder ingest``, the API, Python); callers may ask early, before other work."""
        if isinstance(rows, pl.DataFrame):
            ids: Sequence[str] | pl.Series = rows.get_column("event_id")
            times: Sequence[int] | pl.Series = rows.get_column("label_ts")
        else:
            ids = [str(r["event_id"]) for r in rows]
            times = [int(r["label_ts"]) for r in rows]
        lead_us, lead_text = self.max_lead
        refuse_ahead(
            ids, times, "label_ts", "Label", now=self.clock.now_us(), lead_us=lead_us,
            lead_text=lead_text, setting="[serving].max_event_lead",
        )  # fmt: skip

    def append_label_rows(
        self, rows: Sequence[Mapping[str, Any]], *, received_at_us: int
    ) -> list[bool]:
        """Append a few labels arriving live (already normalized: ``label_ts`` in UTC
        microseconds), known from ``max(label_ts, received_at_us)``; for each, whether it was
        new (False: already logged for the same event, source and revision). A row may carry
        ``revision`` (default 0: a correction from the same source is the next revision),
        ``reviewer`` and ``note`` (review labels)."""
        self.refuse_future_labels(rows)
        label = self.schema.label
        inserted = []
        with self._tx():
            for r in rows:
                label_ts = int(r["label_ts"])
                row = {
                    "event_id": r["event_id"], label: float(r[label]),
                    "label_ts": label_ts, "known_at": max(label_ts, int(received_at_us)),
                    "source": r["source"], "revision": int(r.get("revision", 0)),
                    "reviewer": str(r.get("reviewer", "")), "note": str(r.get("note", "")),
                }  # fmt: skip
                inserted.append(self._label_insert.run(self._db, row) == 1)
        return inserted

    def append_labels(
        self,
        frame: pl.DataFrame,
        *,
        received_at_us: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> AppendResult:
        """Append labels. ``received_at_us=None`` is a backfill (``known_at = label_ts``);
        a live arrival passes the clock's time and gets ``known_at = max(label_ts, received)``.
        """
        label = self.schema.label
        batch = normalize_labels(frame, label)
        self.refuse_future_labels(batch)
        known = pl.col("label_ts")
        if received_at_us is not None:
            known = pl.max_horizontal(pl.col("label_ts"), pl.lit(received_at_us, pl.Int64))
        batch = batch.select("event_id", label, "label_ts", known.alias("known_at"), "source")
        sql = (
            f"INSERT INTO labels (event_id, {_ident(label)}, label_ts, known_at, source) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(event_id, source, revision) DO NOTHING"
        )
        return self._insert("labels", batch, sql, progress)

    def append_audit(
        self,
        kind: str,
        actor: str,
        payload: Mapping[str, Any],
        *,
        ts_us: int | None = None,
    ) -> int:
        """Append one audit record and return its offset.

        Parameters
        ----------
        kind : str
            What happened, e.g. ``"alias_changed"``.
        actor : str
            Who did it (a user name or a job name).
        payload : Mapping[str, Any]
            The details; stored as a JSON string (keys sorted), so it must be JSON-serializable.
        ts_us : int, optional
            When it happened, in UTC microseconds; defaults to the log's clock.

        Examples
        --------
        >>> import tempfile
        >>> log = EventLog.open(tempfile.mkdtemp() + "/log.db", EventSchema({"card_id": "str"}))
        >>> log.append_audit("alias_changed", "alice", {"version": "v2"}, ts_us=1_000)
        1
        >>> log.read("audit").select("ts", "kind", "actor", "payload").row(0)
        (1000, 'alias_changed', 'alice', '{"version": "v2"}')
        >>> log.close()
        """
        for name, value in (("kind", kind), ("actor", actor)):
            if not isinstance(value, str) or not value.strip():
                raise SchemaError(
                    f"The audit record's {name!r} must be a non-empty string. Got {value!r}."
                )
        if not isinstance(payload, Mapping):
            raise SchemaError(
                f"The payload of audit record {kind!r} must be a mapping (a dict). "
                f"Got {type(payload).__name__}."
            )
        try:
            text = json.dumps(dict(payload), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise SchemaError(
                f"The payload of audit record {kind!r} is not JSON-serializable: {err}. "
                "Convert values to str, int, float (finite), bool, None, lists or dicts."
            ) from None
        if ts_us is None:
            ts_us = self.clock.now_us()
        elif isinstance(ts_us, bool) or not isinstance(ts_us, int):
            raise SchemaError(
                f"The 'ts_us' of audit record {kind!r} must be an int (UTC microseconds). "
                f"Got {ts_us!r}."
            )
        with self._tx():
            rows = self._fetch(
                "INSERT INTO audit (ts, kind, actor, payload) VALUES (?, ?, ?, ?) "
                'RETURNING "offset"',
                [ts_us, kind, actor, text],
            )
        return int(rows[0][0])

    def _insert(
        self,
        topic: str,
        batch: pl.DataFrame,
        sql: str,
        progress: Callable[[int], None] | None,
    ) -> AppendResult:
        inserted = 0
        with self._tx():
            before = self._fetch(f'SELECT COALESCE(MAX("offset"), 0) FROM {topic}')[0][0]
            cur = self._db.cursor()
            try:
                for start in range(0, batch.height, CHUNK):
                    chunk = batch.slice(start, CHUNK)
                    cur.executemany(sql, chunk.to_arrow())
                    inserted += max(cur.rowcount, 0)
                    if progress is not None:
                        progress(chunk.height)
            finally:
                cur.close()
            first, last = self._fetch(
                f'SELECT MIN("offset"), MAX("offset") FROM {topic} WHERE "offset" > ?', [before]
            )[0]
        return AppendResult(
            topic=topic,
            received=batch.height,
            inserted=inserted,
            duplicates=batch.height - inserted,
            first_offset=int(first) if inserted else None,
            last_offset=int(last) if inserted else None,
        )

    # -- read -----------------------------------------------------------------------------
    def read(
        self,
        topic: str,
        *,
        from_offset: int | None = None,
        to_offset: int | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
    ) -> pl.DataFrame:
        """Records of ``topic`` in offset order, filtered by offset range ``[from, to]`` and/or
        time range ``[from_ts, to_ts)`` (event time for events, ``known_at`` for labels, ``ts``
        for audit). Times are int64 microseconds in the ``ts``/``label_ts``/``known_at``
        columns."""
        _check_topic(topic)
        time_col = _TIME_COLUMN[topic]
        where: list[str] = []
        params: list[Any] = []
        for cond, val in (
            ('"offset" >= ?', from_offset),
            ('"offset" <= ?', to_offset),
            (f"{time_col} >= ?", from_ts),
            (f"{time_col} < ?", to_ts),
        ):
            if val is not None:
                where.append(cond)
                params.append(int(val))
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        sql = f'SELECT * FROM {topic}{clause} ORDER BY "offset"'
        return self._query(sql, params, topic)

    def _query(self, sql: str, params: list[Any], topic: str) -> pl.DataFrame:
        frame = pl.from_arrow(self._db.arrow(sql, params))
        assert isinstance(frame, pl.DataFrame)
        if frame.height == 0:
            return self._empty(topic)
        casts: dict[str, type[pl.DataType]] = {"offset": pl.Int64}
        if topic == "audit":
            casts.update(ts=pl.Int64, kind=pl.String, actor=pl.String, payload=pl.String)
        elif topic == "events":
            casts["ts"] = pl.Int64
            for n, t in self.schema.fields.items():
                casts[n] = {
                    "str": pl.String,
                    "float": pl.Float64,
                    "int": pl.Int64,
                    "bool": pl.Boolean,
                }[t]
        return frame.with_columns([pl.col(n).cast(dt) for n, dt in casts.items()])

    def _empty(self, topic: str) -> pl.DataFrame:
        if topic == "labels":
            schema: dict[str, Any] = {
                "offset": pl.Int64,
                "event_id": pl.String,
                self.schema.label: pl.Float64,
                "label_ts": pl.Int64,
                "known_at": pl.Int64,
                "source": pl.String,
                "revision": pl.Int64,
                "reviewer": pl.String,
                "note": pl.String,
            }
        elif topic == "audit":
            schema = {
                "offset": pl.Int64,
                "ts": pl.Int64,
                "kind": pl.String,
                "actor": pl.String,
                "payload": pl.String,
            }
        else:
            schema = {"offset": pl.Int64, "event_id": pl.String, "ts": pl.Int64}
            for n, t in self.schema.fields.items():
                schema[n] = {
                    "str": pl.String,
                    "float": pl.Float64,
                    "int": pl.Int64,
                    "bool": pl.Boolean,
                }[t]
        return pl.DataFrame(schema=schema)

    def count(self, topic: str) -> int:
        """Number of records in ``topic``."""
        _check_topic(topic)
        return int(self._fetch(f"SELECT COUNT(*) FROM {topic}")[0][0])

    def labels_without_events(self) -> list[tuple[str, str, float, int]]:
        """``(event_id, source, value, known_at)`` of the labels whose event is not logged
        yet and that have not expired (:meth:`expire_labels`), oldest known first."""
        rows = self._fetch(
            f"SELECT l.event_id, l.source, l.{_ident(self.schema.label)}, l.known_at FROM labels l "
            "LEFT JOIN events e ON e.event_id = l.event_id "
            "LEFT JOIN label_expiry x ON x.event_id = l.event_id AND x.source = l.source "
            'WHERE e.event_id IS NULL AND x.event_id IS NULL ORDER BY l.known_at, l."offset"'
        )
        return [(str(e), str(s), float(v), int(k)) for e, s, v, k in rows]

    def expire_labels(self, keys: Sequence[tuple[str, str]], *, at_us: int) -> None:
        """Record that the labels ``(event_id, source)`` gave up waiting for their event at
        ``at_us``. They stay in the labels topic (training and monitoring use them if the event
        ever arrives), but label-aware features never count them, in replay as live
        (:meth:`feature_labels`)."""
        with self._tx():
            for event_id, source in keys:
                self._fetch(
                    "INSERT INTO label_expiry (event_id, source, expired_at) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [event_id, source, int(at_us)],
                )

    def feature_labels(self) -> pl.DataFrame:
        """The labels that label-aware features count, in offset order: of each event's
        labels that did not expire (:meth:`expire_labels`), the first known (ties: the first
        logged) -- :func:`modelminder.events.outcomes.first_known`."""
        labels = self.read("labels")
        if self._fetch("SELECT 1 FROM label_expiry LIMIT 1"):
            expired = pl.DataFrame(
                self._db.arrow("SELECT event_id, source FROM label_expiry")
            ).cast(pl.String)
            labels = labels.join(
                expired, on=["event_id", "source"], how="anti", maintain_order="left"
            )
        return first_known(labels)

    def feature_labelled(self, event_ids: Sequence[str]) -> set[str]:
        """Those of ``event_ids`` that already have a label counted by label-aware features
        (one that did not expire): a later label for them is not counted again."""
        found: set[str] = set()
        ids = [str(i) for i in event_ids]
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self._fetch(
                f"SELECT DISTINCT l.event_id FROM labels l LEFT JOIN label_expiry x ON "
                "x.event_id = l.event_id AND x.source = l.source "
                f"WHERE x.event_id IS NULL AND l.event_id IN ({marks})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    def events_by_id(self, event_ids: Sequence[str]) -> pl.DataFrame:
        """The logged events among ``event_ids`` (any order; unknown ids are absent)."""
        ids = [str(i) for i in event_ids]
        frames = []
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            frames.append(
                self._query(f"SELECT * FROM events WHERE event_id IN ({marks})", chunk, "events")
            )
        return pl.concat(frames) if frames else self._empty("events")

    def max_event_ts(self) -> int | None:
        """The latest event time in the log (microseconds), or None when it is empty."""
        rows = self._fetch("SELECT MAX(ts) FROM events")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def offset_of_nth(self, n: int, topic: str = "events") -> int | None:
        """Offset of the ``n``-th record (1-based) of ``topic``, or the last one if fewer."""
        _check_topic(topic)
        rows = self._fetch(
            f'SELECT MAX("offset") FROM (SELECT "offset" FROM {topic} ORDER BY "offset" LIMIT ?)',
            [int(n)],
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None
