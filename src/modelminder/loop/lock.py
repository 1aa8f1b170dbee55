"""A lease in the store that keeps two loops from working at once.

``minder loop`` and ``minder backtest`` (on its own scratch project) take the ``loop`` lease
before they act and renew it while they work; a second loop that finds the lease held by a
live holder does nothing and says who holds it. A holder that crashed stops renewing, so its
lease expires and the next run takes over (at once when the holder was a process of the same
host that no longer exists) (its half-done work is never the champion: only a
finished, evaluated candidate is ever promoted).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

from modelminder.errors import MinderError
from modelminder.events.log import EventLog

DEFAULT_LEASE_US = 2 * 3_600_000_000


class LockHeld(MinderError):
    """Another loop holds the lease: wait for it to finish (or for its lease to expire if it
    crashed) and run again."""


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: int


def holder_id() -> str:
    """Who takes a lease: host, process and a random part (two loops in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LoopLock:
    """The lease ``name`` in ``log``'s database, held by ``holder`` for ``lease_us`` at a time.

    Examples
    --------
    >>> import tempfile
    >>> from modelminder.events.schema import EventSchema
    >>> log = EventLog.open(tempfile.mkdtemp() + "/log.db", EventSchema({"card_id": "str"}))
    >>> a, b = LoopLock(log, holder="a"), LoopLock(log, holder="b")
    >>> a.acquire(now=0).holder
    'a'
    >>> b.acquire(now=10)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    modelminder.loop.lock.LockHeld: Another loop (a) holds the 'loop' lease until 1970-01-01
    >>> a.release(); b.acquire(now=20).holder
    'b'
    >>> log.close()
    """

    def __init__(
        self,
        log: EventLog,
        *,
        name: str = "loop",
        holder: str | None = None,
        lease_us: int = DEFAULT_LEASE_US,
    ) -> None:
        self._db = log.database
        self.name = name
        self.holder = holder or holder_id()
        self.lease_us = lease_us

    def acquire(self, *, now: int) -> Lease:
        """Take (or renew) the lease; raises :class:`LockHeld` if a live holder has it. One
        write transaction, so two processes racing for it cannot both win."""
        with self._db.tx():
            rows = self._db.fetch(
                "SELECT holder, expires_at FROM loop_lock WHERE name = ?", [self.name]
            )
            held = rows and str(rows[0][0]) != self.holder and int(rows[0][1]) > now
            if held and not _dead(str(rows[0][0])):
                raise LockHeld(
                    f"Another loop ({rows[0][0]}) holds the {self.name!r} lease until "
                    f"{_iso(int(rows[0][1]))}; nothing was done. Run again after it finishes."
                )
            self._db.fetch(
                "INSERT INTO loop_lock (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
                [self.name, self.holder, now, now + self.lease_us],
            )
        return Lease(self.name, self.holder, now + self.lease_us)

    def release(self) -> None:
        """Give the lease up (only if this holder has it)."""
        with self._db.tx():
            self._db.fetch(
                "DELETE FROM loop_lock WHERE name = ? AND holder = ?", [self.name, self.holder]
            )


def _dead(holder: str) -> bool:
    """The holder is a process of this host that no longer exists (it crashed: its lease
    need not be waited out). A holder elsewhere is taken at its word until it expires."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _iso(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
