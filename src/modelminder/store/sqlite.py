"""One SQLite connection (ADBC) with a lock: statements, transactions and Arrow reads.

Every SQLite access in modelminder goes through ADBC: mixing it with the stdlib ``sqlite3``
module on one file in one process broke WAL visibility (the two bundle separate copies of
SQLite, whose file locks do not see each other). Statements take bound parameters only.

The live path runs a few small statements per request, so :meth:`Database.execute` skips the
result set and binds through a typed Arrow schema: about 5x cheaper than :meth:`Database.fetch`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import adbc_driver_manager
import adbc_driver_sqlite.dbapi as adbc
import pyarrow as pa


class Database:
    """A connection in autocommit mode; :meth:`tx` wraps statements in one transaction.

    Examples
    --------
    >>> import tempfile
    >>> db = Database(Path(tempfile.mkdtemp()) / "x.db", pragmas=("journal_mode=WAL",))
    >>> _ = db.fetch("CREATE TABLE t (x INTEGER)")
    >>> with db.tx():
    ...     _ = db.fetch("INSERT INTO t VALUES (?)", [1])
    >>> db.fetch("SELECT x FROM t")
    [(1,)]
    >>> db.close()
    """

    def __init__(self, path: Path, *, pragmas: Sequence[str]) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._depth = 0  # nesting of tx(): only the outermost begins and commits
        self._cur: Any = None
        self._statements: dict[str, Any] = {}  # prepared statements of execute()
        self._conn: Any = adbc.connect(str(path), autocommit=True)
        try:
            for pragma in pragmas:
                self.fetch(f"PRAGMA {pragma}")
        except BaseException:
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return self._conn is None

    def cursor(self) -> Any:
        """A raw cursor (callers close it); hold :attr:`lock` while using it."""
        if self._conn is None:
            raise RuntimeError(f"The database {self.path} is closed.")
        return self._conn.cursor()

    def fetch(self, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
        """Run one statement; its rows (empty for statements without a result set)."""
        with self.lock:
            if self._cur is None:  # one reused cursor: creating one per statement doubles the cost
                self._cur = self.cursor()
            cur = self._cur
            cur.execute(sql, parameters=list(params) if params else None)
            try:
                return list(cur.fetchall())
            except Exception:  # statements without a result set
                return []

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | pa.RecordBatch | None = None,
    ) -> int:
        """Run one statement without a result set; the number of rows it changed.

        ``params``: values (types inferred) or a one-row record batch, bound as it is.

        >>> import tempfile
        >>> db = Database(Path(tempfile.mkdtemp()) / "x.db", pragmas=())
        >>> db.execute("CREATE TABLE t (k TEXT UNIQUE, v REAL)")
        0
        >>> db.execute("INSERT INTO t VALUES (?, ?) ON CONFLICT DO NOTHING", ["a", 1.5])
        1
        >>> db.execute("INSERT INTO t VALUES (?, ?) ON CONFLICT DO NOTHING", ["a", 2.0])
        0
        >>> db.close()
        """
        with self.lock:
            stmt = self._statements.get(sql)
            if stmt is None:
                if self._conn is None:
                    raise RuntimeError(f"The database {self.path} is closed.")
                if len(self._statements) >= 64:  # statements are constants; bound it anyway
                    self._statements.pop(next(iter(self._statements))).close()
                # The low-level statement, prepared once: the DB-API cursor re-prepares on
                # every change of SQL text and swaps the SIGINT handler around each call.
                stmt = adbc_driver_manager.AdbcStatement(self._conn.adbc_connection)
                try:
                    stmt.set_sql_query(sql)
                    stmt.prepare()
                except BaseException:
                    stmt.close()  # an open statement would keep the connection from closing
                    raise
                self._statements[sql] = stmt
            if isinstance(params, pa.RecordBatch):
                stmt.bind(params)
            elif params:
                stmt.bind(pa.record_batch([[v] for v in params], names=_names(len(params))))
            return int(stmt.execute_update())

    def arrow(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """Run a query; its result as a pyarrow Table."""
        with self.lock:
            cur = self.cursor()
            try:
                cur.execute(sql, parameters=list(params) if params else None)
                return cur.fetch_arrow_table()
            finally:
                cur.close()

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front, so
        read-then-write steps cannot race another process. Nested calls join the outer
        transaction (one commit for several appends)."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self.execute("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails: never leave the connection inside a transaction.
                with contextlib.suppress(Exception):
                    self.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def close(self) -> None:
        """Close the connection (idempotent; waits for a statement in progress)."""
        with self.lock:
            for stmt in self._statements.values():
                stmt.close()
            self._statements.clear()
            if self._cur is not None:
                self._cur.close()
                self._cur = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class RowInsert:
    """A prepared one-row INSERT for the live path, cheap to bind: the text, integer and bool
    values travel as one JSON array (SQLite unpacks it exactly with ``->>``), and each float as
    its own float64 parameter, so no float is ever parsed back from text.

    Examples
    --------
    >>> import tempfile
    >>> db = Database(Path(tempfile.mkdtemp()) / "x.db", pragmas=())
    >>> db.execute("CREATE TABLE t (k TEXT UNIQUE, n INTEGER, v REAL)")
    0
    >>> ins = RowInsert("t", {"k": "str", "n": "int", "v": "float"}, "ON CONFLICT(k) DO NOTHING")
    >>> [ins.run(db, {"k": k, "n": 2**62, "v": 0.1}) for k in ("k1", "k1")]
    [1, 0]
    >>> db.fetch("SELECT k, n, v FROM t")
    [('k1', 4611686018427387904, 0.1)]
    >>> db.close()
    """

    def __init__(self, table: str, columns: Mapping[str, str], conflict: str = "") -> None:
        self.packed = [c for c, kind in columns.items() if kind != "float"]
        self.floats = [c for c, kind in columns.items() if kind == "float"]
        values = [f"j ->> {i}" for i in range(len(self.packed))]
        values += [f"?{i + 2}" for i in range(len(self.floats))]
        names = ", ".join(quote_name(c) for c in [*self.packed, *self.floats])
        # INSERT ... SELECT needs a WHERE before an ON CONFLICT clause (SQLite's grammar).
        self.sql = (
            f"INSERT INTO {quote_name(table)} ({names}) SELECT {', '.join(values)} "
            f"FROM (SELECT ?1 AS j) WHERE true {conflict}"
        )
        self.names = _names(1 + len(self.floats))

    def run(self, db: Database, row: Mapping[str, Any]) -> int:
        """Insert ``row`` (already validated); the number of rows inserted (0 on a conflict
        the clause ignores)."""
        packed = json.dumps([row[c] for c in self.packed], ensure_ascii=False)
        columns = [_text(packed), *(_float(row[c]) for c in self.floats)]
        return db.execute(self.sql, pa.RecordBatch.from_arrays(columns, names=self.names))


def _text(value: str) -> pa.Array:
    # One-value arrays straight from their buffers: pa.array() infers and checks, 3x slower.
    data = value.encode()
    offsets = struct.pack("<ii", 0, len(data))
    return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _float(value: float | None) -> pa.Array:
    if value is None:
        return pa.array([None], type=pa.float64())
    return pa.Array.from_buffers(pa.float64(), 1, [None, pa.py_buffer(struct.pack("<d", value))])


def quote_name(name: str) -> str:
    """``name`` as a quoted SQL identifier (a table or column name)."""
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def _names(n: int) -> list[str]:
    return [str(i) for i in range(n)]
