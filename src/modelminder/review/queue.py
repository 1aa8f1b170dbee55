"""The review queue: items sampled from served predictions, claimed under a lease, labelled.

Storage (the log's file; tables created by :mod:`modelminder.store.migrations.log`):
``review_items`` -- one row per selected event, with its reasons and its selection
probability; ``review_events`` -- ``claimed`` (with ``lease_until``), ``skipped``,
``labelled`` (with the verdict). Both are append-only; an item's state is derived:

* ``closed`` once labelled (fraud, legit or unsure);
* ``expired`` when a label for its event arrived by another route (e.g. a chargeback) before
  a review: nobody needs to look any more;
* ``leased`` while its last claim's lease runs (until ``lease_until``);
* ``open`` otherwise (never claimed, skipped, or its lease ran out -- a crashed reviewer's
  item comes back by itself).

Every change goes through :class:`ReviewQueue` inside one write transaction, so two
reviewers racing for items never hold (or label) the same one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelminder.errors import MinderError, SchemaError
from modelminder.events.log import EventLog
from modelminder.events.predictions import Prediction
from modelminder.project import ReviewConfig
from modelminder.review.policies import POLICIES, select

VERDICTS: dict[str, float | None] = {"fraud": 1.0, "legit": 0.0, "unsure": None}
STATUSES = ("open", "leased", "closed", "expired")
SOURCE = "review"
DAY_US = 86_400_000_000


class ReviewError(MinderError):
    """The queue refused a review action (an item held by someone else, a lease that ran
    out, an item already closed, the day's budget spent). Nothing changed; read the message."""


class UnknownItem(ReviewError):
    """No review item has that id. List the queue (``minder review queue``)."""


@dataclass(frozen=True)
class ReviewItem:
    """One item and its derived state (see the module docstring)."""

    item_id: int
    event_id: str
    created_at: int
    ts: int
    model_version: str
    score: float
    decision: str
    reasons: tuple[str, ...]
    propensity: float
    priority: float
    status: str
    reviewer: str | None = None
    lease_until: int | None = None
    verdict: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id, "event_id": self.event_id, "created_at": self.created_at,
            "ts": self.ts, "model_version": self.model_version, "score": self.score,
            "decision": self.decision, "reasons": list(self.reasons),
            "propensity": self.propensity, "priority": self.priority, "status": self.status,
            "reviewer": self.reviewer, "lease_until": self.lease_until, "verdict": self.verdict,
        }  # fmt: skip


# Each item with its latest event (its state) and whether a non-review label names its event.
_ITEMS = (
    "SELECT i.item_id, i.event_id, i.created_at, i.ts, i.model_version, i.score, i.decision, "
    "i.reasons, i.propensity, i.priority, e.kind, e.reviewer, e.lease_until, e.verdict, "
    "EXISTS (SELECT 1 FROM labels l WHERE l.event_id = i.event_id AND l.source != 'review') "
    'FROM review_items i LEFT JOIN review_events e ON e."offset" = '
    '(SELECT MAX("offset") FROM review_events x WHERE x.item_id = i.item_id)'
)


class ReviewQueue:
    """The queue of a project's log (see the module docstring)."""

    def __init__(
        self, log: EventLog, config: ReviewConfig, thresholds: tuple[float, ...] = (0.2, 0.8)
    ) -> None:
        self.log = log
        self.config = config
        self.thresholds = thresholds

    # -- filling ----------------------------------------------------------------------------
    def consider(self, served: Sequence[Prediction], ts_of: Mapping[str, int], *, now: int) -> int:
        """Queue the served champion predictions the policies select; how many were queued.
        Joins the caller's transaction (the serving path calls it with the predictions)."""
        rows = []
        for p in served:
            if p.role != "champion":
                continue
            sel = select(p.event_id, p.score, p.decision, self.thresholds, self.config)
            if sel is not None:
                rows.append(
                    [p.event_id, now, int(ts_of[p.event_id]), p.model_version, p.score,
                     p.decision, json.dumps(list(sel.reasons)), sel.propensity, sel.priority]
                )  # fmt: skip
        if not rows:
            return 0
        db = self.log.database
        with self.log.transaction():
            for row in rows:
                db.fetch(
                    "INSERT INTO review_items (event_id, created_at, ts, model_version, score, "
                    "decision, reasons, propensity, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(event_id) DO NOTHING",
                    row,
                )
        return len(rows)

    # -- reading ----------------------------------------------------------------------------
    def items(
        self,
        *,
        now: int,
        status: str | None = None,
        reason: str | None = None,
        limit: int = 100,
    ) -> list[ReviewItem]:
        """Items by priority (highest first, then oldest), optionally one status or reason."""
        if status is not None and status not in STATUSES:
            raise SchemaError(f"'status' must be one of {', '.join(STATUSES)}. Got {status!r}.")
        if reason is not None and reason not in POLICIES:
            raise SchemaError(f"'reason' must be one of {', '.join(POLICIES)}. Got {reason!r}.")
        found = [self._item(r, now) for r in self.log.database.fetch(_ITEMS)]
        found = [
            i for i in found
            if (status is None or i.status == status) and (reason is None or reason in i.reasons)
        ]  # fmt: skip
        found.sort(key=lambda i: (-i.priority, i.created_at, i.item_id))
        return found[: max(0, int(limit))]

    def get(self, item_id: int, *, now: int) -> ReviewItem:
        """One item by id (raises :class:`UnknownItem`)."""
        if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 < item_id < 2**62:
            raise UnknownItem(f"No review item {item_id!r}: item ids are positive integers.")
        rows = self.log.database.fetch(_ITEMS + " WHERE i.item_id = ?", [item_id])
        if not rows:
            raise UnknownItem(f"No review item {item_id!r}. List them: minder review queue.")
        return self._item(rows[0], now)

    def by_event(self, event_id: str, *, now: int) -> ReviewItem:
        """The item of a served event (raises :class:`UnknownItem`)."""
        rows = self.log.database.fetch(_ITEMS + " WHERE i.event_id = ?", [str(event_id)])
        if not rows:
            raise UnknownItem(
                f"Event {event_id!r} is not in the review queue (only sampled predictions "
                "are). List them: minder review queue."
            )
        return self._item(rows[0], now)

    @staticmethod
    def _item(row: Sequence[Any], now: int) -> ReviewItem:
        (item_id, event_id, created, ts, version, score, decision, reasons, propensity,
         priority, kind, reviewer, lease_until, verdict, other_labels) = row  # fmt: skip
        if kind == "labelled":
            status = "closed"
        elif other_labels:
            status = "expired"
        elif kind == "claimed" and lease_until is not None and int(lease_until) > now:
            status = "leased"
        else:
            status = "open"
        held = status in ("leased", "closed")
        return ReviewItem(
            int(item_id), str(event_id), int(created), int(ts), str(version), float(score),
            str(decision), tuple(json.loads(reasons)), float(propensity), float(priority),
            status, str(reviewer) if held and reviewer else None,
            int(lease_until) if status == "leased" else None,
            str(verdict) if status == "closed" and verdict else None,
        )  # fmt: skip

    def reviewed_on(self, day_start: int) -> int:
        """Items labelled in the UTC day starting at ``day_start``."""
        rows = self.log.database.fetch(
            "SELECT COUNT(*) FROM review_events WHERE kind = 'labelled' AND at >= ? AND at < ?",
            [day_start, day_start + DAY_US],
        )
        return int(rows[0][0])

    # -- changing ---------------------------------------------------------------------------
    def claim(self, reviewer: str, *, now: int, item_id: int | None = None) -> ReviewItem:
        """Lease an item to ``reviewer`` for ``[review].lease``: the given one, or the open
        item of highest priority that this reviewer has not skipped. A reviewer who already
        holds a lease gets that item back (one item at a time)."""
        _check_reviewer(reviewer)
        with self.log.transaction():
            every = self.items(now=now, limit=10_000_000)  # one read, under the write lock
            held = [i for i in every if i.status == "leased" and i.reviewer == reviewer]
            if item_id is None and held:
                return held[0]
            spent = self.reviewed_on(now - now % DAY_US)
            if spent >= self.config.daily_budget:
                raise ReviewError(
                    f"Today's review budget is spent ({spent} of {self.config.daily_budget}; "
                    "[review].daily_budget). Claims open again at 00:00 UTC."
                )
            if item_id is not None:
                item = self.get(item_id, now=now)
                if item.status != "open":
                    who = f" by {item.reviewer}" if item.reviewer else ""
                    raise ReviewError(
                        f"Item {item_id} is {item.status}{who}; only open items can be claimed."
                    )
            else:
                skipped = {
                    int(r[0]) for r in self.log.database.fetch(
                        "SELECT item_id FROM review_events WHERE kind = 'skipped' "
                        "AND reviewer = ?", [reviewer],
                    )
                }  # fmt: skip
                candidates = [i for i in every if i.status == "open" and i.item_id not in skipped]
                if not candidates:
                    raise ReviewError("The queue has no open item for you right now.")
                item = candidates[0]
            lease_until = now + self.config.lease_us
            self._append(item.item_id, now, "claimed", reviewer, lease_until=lease_until)
            return self.get(item.item_id, now=now)

    def label(
        self,
        item_id: int,
        reviewer: str,
        verdict: str,
        *,
        now: int,
        note: str = "",
        append_labels: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> ReviewItem:
        """Record ``reviewer``'s verdict (``fraud``, ``legit`` or ``unsure``) on an item they
        hold. ``fraud``/``legit`` also append a label (``source = "review"``, known now) in
        the same transaction, through ``append_labels`` (the live service passes its own, so
        its label-aware state sees the label) or straight to the log."""
        _check_reviewer(reviewer)
        if verdict not in VERDICTS:
            raise SchemaError(f"'verdict' must be one of {', '.join(VERDICTS)}. Got {verdict!r}.")
        if not isinstance(note, str) or len(note) > 1000:
            raise SchemaError("'note' must be text of at most 1000 characters.")
        with self.log.transaction():
            item = self.get(item_id, now=now)
            self._check_holder(item, reviewer)
            self._append(item.item_id, now, "labelled", reviewer, verdict=verdict, note=note)
            value = VERDICTS[verdict]
            if value is not None:
                row = {
                    "event_id": item.event_id,
                    self.log.schema.label: value,
                    "label_ts": now,
                    "source": SOURCE,
                }
                if append_labels is not None:
                    append_labels([row])
                else:
                    self.log.append_label_rows([row], received_at_us=now)
            return self.get(item.item_id, now=now)

    def skip(self, item_id: int, reviewer: str, reason: str, *, now: int) -> ReviewItem:
        """Give an item back (with a reason); it returns to the queue for others."""
        _check_reviewer(reviewer)
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 1000:
            raise SchemaError("A skip needs a 'reason' (1 to 1000 characters).")
        with self.log.transaction():
            item = self.get(item_id, now=now)
            self._check_holder(item, reviewer)
            self._append(item.item_id, now, "skipped", reviewer, note=reason)
            return self.get(item.item_id, now=now)

    @staticmethod
    def _check_holder(item: ReviewItem, reviewer: str) -> None:
        if item.status == "leased" and item.reviewer == reviewer:
            return
        if item.status == "closed":
            raise ReviewError(
                f"Item {item.item_id} is already closed ({item.verdict} by {item.reviewer}). "
                "A correction is a new label: minder ingest FILE --topic labels."
            )
        if item.status == "leased":
            raise ReviewError(f"Item {item.item_id} is held by {item.reviewer}, not you.")
        raise ReviewError(
            f"Item {item.item_id} is {item.status}: you hold no lease on it (a lease lasts "
            "[review].lease). Claim it again: minder review next."
        )

    def _append(
        self,
        item_id: int,
        at: int,
        kind: str,
        reviewer: str,
        *,
        lease_until: int | None = None,
        verdict: str | None = None,
        note: str = "",
    ) -> None:
        self.log.database.fetch(
            "INSERT INTO review_events (item_id, at, kind, reviewer, lease_until, verdict, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [item_id, at, kind, reviewer, lease_until, verdict, note],
        )

    # -- numbers ----------------------------------------------------------------------------
    def stats(self, *, now: int) -> dict[str, Any]:
        """Counts by status and reason, reviewed today against the budget, verdicts, and the
        median turnaround (queued to labelled, seconds)."""
        items = self.items(now=now, limit=10_000_000)
        turn = sorted(
            int(a) - int(c)
            for a, c in self.log.database.fetch(
                "SELECT e.at, i.created_at FROM review_events e JOIN review_items i "
                "ON i.item_id = e.item_id WHERE e.kind = 'labelled'"
            )
        )
        return {
            "items": len(items),
            "by_status": {s: sum(i.status == s for i in items) for s in STATUSES},
            "by_reason": {r: sum(r in i.reasons for i in items) for r in POLICIES},
            "verdicts": {v: sum(i.verdict == v for i in items) for v in VERDICTS},
            "reviewed_today": self.reviewed_on(now - now % DAY_US),
            "daily_budget": self.config.daily_budget,
            "median_turnaround_s": turn[len(turn) // 2] / 1e6 if turn else None,
        }


def _check_reviewer(reviewer: object) -> None:
    if not isinstance(reviewer, str) or not reviewer.strip() or len(reviewer) > 64:
        raise SchemaError("'reviewer' must be a name of 1 to 64 characters.")
