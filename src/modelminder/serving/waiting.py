"""Labels that arrived before their event: they wait for it, within bounds.

A label whose event is not in the log yet is logged at once (a 2xx means it is durable) and
waits, in memory, for its event; when the event arrives the label is folded into the live
state just before it, as replay does. Waiting is bounded two ways (``[serving]`` in
``minder.toml``):

* **Time** (``label_wait``, default 7 days): a label that has waited longer *expires*. The
  expiry is recorded in the log, so replay agrees with what was served: the label stays in the
  labels topic (training and monitoring use it if its event ever arrives), but label-aware
  features never count it. Expiry happens when labels arrive and at start.
* **Count** (``max_waiting_labels``, default 10,000): when that many labels wait, a batch that
  would add more (after expiring what is due) is refused whole with
  :class:`LabelsWaitingFull` (HTTP 409); nothing of it is written. Labels for events already
  in the log are never refused for this reason.

Memory is therefore bounded by ``max_waiting_labels`` entries, and the log grows by at most
that many orphan labels per ``label_wait``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelminder.errors import MinderError
from modelminder.events.log import EventLog


class LabelsWaitingFull(MinderError):
    """Too many labels wait for events that have not arrived: send events before their
    labels, or raise ``[serving].max_waiting_labels``."""


@dataclass(frozen=True)
class Waiting:
    source: str
    value: float
    known_at: int


class WaitingLabels:
    """The labels waiting for their events (see the module docstring)."""

    def __init__(self, capacity: int, wait_us: int) -> None:
        self.capacity = capacity
        self.wait_us = wait_us
        self._by_event: dict[str, list[Waiting]] = {}
        self._count = 0
        self._oldest: int | None = None  # known_at of the oldest waiting label
        self.expired = 0  # labels expired since start (for metrics and tests)

    def __len__(self) -> int:
        return self._count

    @classmethod
    def from_log(cls, log: EventLog, capacity: int, wait_us: int, now_us: int) -> WaitingLabels:
        """The labels in ``log`` still waiting (their event absent, not expired); those that
        have waited longer than ``wait_us`` are expired (recorded in the log)."""
        room = cls(capacity, wait_us)
        for event_id, source, value, known_at in log.labels_without_events():
            room._add(event_id, Waiting(source, value, known_at))
        room.expire_due(log, now_us)
        return room

    def pop(self, event_id: str) -> list[Waiting]:
        """The labels waiting for ``event_id`` (which has just arrived), removed."""
        found = self._by_event.pop(event_id, None)
        if not found:
            return []
        self._count -= len(found)
        return found

    def expire_due(self, log: EventLog, now_us: int) -> None:
        """Expire every label that has waited longer than ``wait_us`` (recorded in the log
        first: if that fails, nothing changes)."""
        cutoff = now_us - self.wait_us
        if self._oldest is None or self._oldest >= cutoff:
            return
        due = [
            (event_id, w.source)
            for event_id, waiting in self._by_event.items()
            for w in waiting
            if w.known_at < cutoff
        ]
        log.expire_labels(due, at_us=now_us)
        for event_id in {e for e, _ in due}:
            kept = [w for w in self._by_event[event_id] if w.known_at >= cutoff]
            self._count -= len(self._by_event[event_id]) - len(kept)
            if kept:
                self._by_event[event_id] = kept
            else:
                del self._by_event[event_id]
        self.expired += len(due)
        self._oldest = min(
            (w.known_at for waiting in self._by_event.values() for w in waiting), default=None
        )

    def admit(self, log: EventLog, event_ids: Sequence[str], now_us: int) -> None:
        """Make room for labels of ``event_ids`` (events not in the log), or raise
        :class:`LabelsWaitingFull` before anything is written."""
        if not event_ids:
            return
        self.expire_due(log, now_us)
        if self._count + len(event_ids) > self.capacity:
            shown = ", ".join(repr(e) for e in list(dict.fromkeys(event_ids))[:3])
            raise LabelsWaitingFull(
                f"{self._count:,} labels already wait for events that are not in the log (at "
                f"most [serving].max_waiting_labels = {self.capacity:,}); this batch would add "
                f"{len(event_ids):,} more (events {shown}...). Send events before their labels "
                "(or import history with minder ingest); waiting labels expire after "
                "[serving].label_wait. Nothing was written."
            )

    def add(self, event_id: str, source: str, value: float, known_at: int) -> None:
        """A newly logged label whose event is not in the log (after :meth:`admit`)."""
        self._add(event_id, Waiting(source, value, known_at))

    def _add(self, event_id: str, waiting: Waiting) -> None:
        self._by_event.setdefault(event_id, []).append(waiting)
        self._count += 1
        if self._oldest is None or waiting.known_at < self._oldest:
            self._oldest = waiting.known_at
