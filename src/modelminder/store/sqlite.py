"""One SQLite connection (ADBC) with a lock: statements, transactions and Arrow reads.

Every SQLite access in modelminder goes through ADBC: mixing it with the stdlib ``sqlite3``
module on one file in one process broke WAL visibility. Statements take bound parameters only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import adbc_driver_sqlite.dbapi as adbc


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
            self.fetch("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self.fetch("COMMIT")
            except BaseException:
                # Also when COMMIT itself fails: never leave the connection inside a transaction.
                with contextlib.suppress(Exception):
                    self.fetch("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def close(self) -> None:
        """Close the connection (idempotent; waits for a statement in progress)."""
        with self.lock:
            if self._cur is not None:
                self._cur.close()
                self._cur = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
