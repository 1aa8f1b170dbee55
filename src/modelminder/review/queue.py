"""The review queue: items sampled from served predictions, claimed under a lease, labelled.

Storage (the log's file; tables created by :mod:`modelminder.store.migrations.log`):
``review_items`` -- one row per selected event, with its reasons, its selection probability,
its priority and how many reviewers it needs (2 for the overlap sample); ``review_events`` --
``claimed`` (with ``lease_until``), ``skipped``, ``labelled`` and ``corrected`` (with the
verdict). Both are append-only; an item's state is derived:

* ``closed`` once as many distinct reviewers as it needs labelled it (fraud, legit or unsure);
* ``expired`` when a label for its event arrived by another route (e.g. a chargeback) before
  that: nobody needs to look any more (the chargeback still counts in the estimates,
  :mod:`.sample`);
* ``leased`` while its last claim's lease runs (until ``lease_until``);
* ``open`` otherwise (never claimed, skipped, labelled by one of two reviewers, or its lease
  ran out -- a crashed reviewer's item comes back by itself).

Reviewers get items in priority-sampling order (:func:`~.policies.order_key`) from two
streams: items the exploration sample alone queued keep ``[review].exploration_share`` of the
daily budget, the targeted ones the rest (a stream with nothing open leaves its share). A
verdict of fraud or legit is also a label in the log (``source = "review"``, the reviewer and
the note, the next ``revision`` for the event); a correction is a further revision, never an
overwrite; which label wins is :mod:`modelminder.events.outcomes`' rule.

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
from modelminder.review.policies import (
    POLICIES,
    Candidate,
    DriftTarget,
    draw,
    order_key,
    select,
)

VERDICTS: dict[str, float | None] = {"fraud": 1.0, "legit": 0.0, "unsure": None}
STATUSES = ("open", "leased", "closed", "expired")
SORTS = ("order", "priority", "age")
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
    reviews_needed: int = 1
    labelled_by: tuple[str, ...] = ()

    @property
    def order(self) -> float:
        """The claim order within its stream (highest first): :func:`~.policies.order_key`."""
        return order_key(self.event_id, self.priority)

    @property
    def stream(self) -> str:
        """``exploration`` for items queued by the random sample alone, else ``targeted``:
        each has its share of the daily budget ([review].exploration_share)."""
        return "exploration" if self.reasons == ("exploration",) else "targeted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id, "event_id": self.event_id, "created_at": self.created_at,
            "ts": self.ts, "model_version": self.model_version, "score": self.score,
            "decision": self.decision, "reasons": list(self.reasons),
            "propensity": self.propensity, "priority": self.priority, "status": self.status,
            "reviewer": self.reviewer, "lease_until": self.lease_until, "verdict": self.verdict,
            "reviews_needed": self.reviews_needed, "labelled_by": list(self.labelled_by),
        }  # fmt: skip


@dataclass
class _Fold:
    """An item's review events folded in log order."""

    kind: str | None = None  # the latest event's kind
    reviewer: str | None = None  # ... and who made it
    lease_until: int | None = None
    verdict: str | None = None  # the latest verdict (a correction replaces it)
    labelled_by: tuple[str, ...] = ()  # distinct reviewers who labelled, first first


# Each item, and whether a label from another source than review names its event.
_ITEMS = (
    "SELECT i.item_id, i.event_id, i.created_at, i.ts, i.model_version, i.score, i.decision, "
    "i.reasons, i.propensity, i.priority, i.reviews_needed, "
    "EXISTS (SELECT 1 FROM labels l WHERE l.event_id = i.event_id AND l.source != 'review') "
    "FROM review_items i"
)
# Items with fewer distinct reviewers' labels than they need (not closed).
_NOT_CLOSED = (
    " WHERE (SELECT COUNT(DISTINCT e.reviewer) FROM review_events e WHERE e.item_id = "
    "i.item_id AND e.kind = 'labelled') < i.reviews_needed"
)
_EVENTS = "SELECT item_id, kind, reviewer, lease_until, verdict FROM review_events"


class ReviewQueue:
    """The queue of a project's log (see the module docstring)."""

    def __init__(
        self, log: EventLog, config: ReviewConfig, thresholds: tuple[float, ...] = (0.2, 0.8)
    ) -> None:
        self.log = log
        self.config = config
        self.thresholds = thresholds
        self.drift_targets: tuple[DriftTarget, ...] = ()  # set by the service from open alerts

    # -- filling ----------------------------------------------------------------------------
    def consider(
        self,
        served: Sequence[Prediction],
        rows: Mapping[str, Mapping[str, Any]],
        *,
        now: int,
        shadow: Mapping[str, str] | None = None,
    ) -> int:
        """Queue the served champion predictions the policies select; how many were queued.
        ``rows`` are the events by id; ``shadow`` the shadow model's decisions by event id,
        when one scored them. Joins the caller's transaction."""
        field = self.config.value_field
        found = []
        for p in served:
            if p.role != "champion":
                continue
            row = rows[p.event_id]
            value = float(row[field]) if field and row.get(field) is not None else 1.0
            drifted = any(t.hit(p.features) for t in self.drift_targets)
            decided = (shadow or {}).get(p.event_id)
            c = Candidate(p.event_id, p.score, p.decision, value, decided, drifted)
            sel = select(c, self.thresholds, self.config)
            if sel is not None:
                two = draw(p.event_id, "overlap") < self.config.overlap_rate
                found.append(
                    [p.event_id, now, int(row["ts"]), p.model_version, p.score, p.decision,
                     json.dumps(list(sel.reasons)), sel.propensity, sel.priority, 2 if two else 1]
                )  # fmt: skip
        if not found:
            return 0
        db = self.log.database
        with self.log.transaction():
            for values in found:
                db.fetch(
                    "INSERT INTO review_items (event_id, created_at, ts, model_version, score, "
                    "decision, reasons, propensity, priority, reviews_needed) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
                    values,
                )
        return len(found)

    # -- reading ----------------------------------------------------------------------------
    def items(
        self,
        *,
        now: int,
        status: str | None = None,
        reason: str | None = None,
        limit: int = 100,
        sort: str = "order",
    ) -> list[ReviewItem]:
        """Items in claim order (``sort="order"``: highest priority-sampling key first), by
        ``priority`` or by ``age`` (oldest first); optionally one status or reason."""
        if status is not None and status not in STATUSES:
            raise SchemaError(f"'status' must be one of {', '.join(STATUSES)}. Got {status!r}.")
        if reason is not None and reason not in POLICIES:
            raise SchemaError(f"'reason' must be one of {', '.join(POLICIES)}. Got {reason!r}.")
        if sort not in SORTS:
            raise SchemaError(f"'sort' must be one of {', '.join(SORTS)}. Got {sort!r}.")
        found = self._read("", [], now)
        found = [
            i for i in found
            if (status is None or i.status == status) and (reason is None or reason in i.reasons)
        ]  # fmt: skip
        if sort == "age":
            found.sort(key=lambda i: (i.created_at, i.item_id))
        elif sort == "priority":
            found.sort(key=lambda i: (-i.priority, i.created_at, i.item_id))
        else:
            found.sort(key=lambda i: (-i.order, i.created_at, i.item_id))
        return found[: max(0, int(limit))]

    def get(self, item_id: int, *, now: int) -> ReviewItem:
        """One item by id (raises :class:`UnknownItem`)."""
        if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 < item_id < 2**62:
            raise UnknownItem(f"No review item {item_id!r}: item ids are positive integers.")
        found = self._read(" WHERE i.item_id = ?", [item_id], now)
        if not found:
            raise UnknownItem(f"No review item {item_id!r}. List them: minder review queue.")
        return found[0]

    def by_event(self, event_id: str, *, now: int) -> ReviewItem:
        """The item of a served event (raises :class:`UnknownItem`)."""
        found = self._read(" WHERE i.event_id = ?", [str(event_id)], now)
        if not found:
            raise UnknownItem(
                f"Event {event_id!r} is not in the review queue (only sampled predictions "
                "are). List them: minder review queue."
            )
        return found[0]

    def _read(self, where: str, params: list[Any], now: int) -> list[ReviewItem]:
        db = self.log.database
        rows = _rows(db.arrow(_ITEMS + where, params))  # Arrow: the fast bulk path
        if not rows:
            return []
        ids = {int(r[0]) for r in rows}
        events = _rows(
            db.arrow(
                _EVENTS + " WHERE item_id IN (SELECT i.item_id FROM review_items i"
                f'{where}) ORDER BY "offset"',
                params,
            )
        )
        folds: dict[int, _Fold] = {}
        for item_id, kind, reviewer, lease_until, verdict in events:
            if int(item_id) not in ids:
                continue
            f = folds.setdefault(int(item_id), _Fold())
            f.kind, f.reviewer = str(kind), str(reviewer)
            f.lease_until = int(lease_until) if lease_until is not None else None
            if kind in ("labelled", "corrected"):
                f.verdict = str(verdict)
                if reviewer not in f.labelled_by:
                    f.labelled_by = (*f.labelled_by, str(reviewer))
        return [self._item(r, folds.get(int(r[0]), _Fold()), now) for r in rows]

    @staticmethod
    def _item(row: Sequence[Any], f: _Fold, now: int) -> ReviewItem:
        (item_id, event_id, created, ts, version, score, decision, reasons, propensity,
         priority, needed, other_labels) = row  # fmt: skip
        if len(f.labelled_by) >= int(needed):
            status = "closed"
        elif other_labels:
            status = "expired"
        elif f.kind == "claimed" and f.lease_until is not None and f.lease_until > now:
            status = "leased"
        else:
            status = "open"
        return ReviewItem(
            int(item_id), str(event_id), int(created), int(ts), str(version), float(score),
            str(decision), tuple(json.loads(reasons)), float(propensity), float(priority),
            status, f.reviewer if status == "leased" else (f.labelled_by or (None,))[-1],
            f.lease_until if status == "leased" else None, f.verdict, int(needed), f.labelled_by,
        )  # fmt: skip

    def reviewed_on(self, day_start: int) -> int:
        """Reviews (labels, not corrections) made in the UTC day starting at ``day_start``."""
        rows = self.log.database.fetch(
            "SELECT COUNT(*) FROM review_events WHERE kind = 'labelled' AND at >= ? AND at < ?",
            [day_start, day_start + DAY_US],
        )
        return int(rows[0][0])

    # -- changing ---------------------------------------------------------------------------
    def claim(self, reviewer: str, *, now: int, item_id: int | None = None) -> ReviewItem:
        """Lease an item to ``reviewer`` for ``[review].lease``: the given one, or the next
        open item in claim order that this reviewer has neither skipped nor labelled (an
        overlap item goes to a second reviewer). A reviewer who already holds a lease gets
        that item back (one item at a time)."""
        _check_reviewer(reviewer)
        with self.log.transaction():
            every = self._read(_NOT_CLOSED, [], now)  # one read, under the write lock
            every.sort(key=lambda i: (-i.order, i.created_at, i.item_id))
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
                if reviewer in item.labelled_by:
                    raise ReviewError(
                        f"You labelled item {item_id} already; it waits for a second "
                        "reviewer (the overlap sample)."
                    )
            else:
                skipped = {
                    int(r[0]) for r in self.log.database.fetch(
                        "SELECT item_id FROM review_events WHERE kind = 'skipped' "
                        "AND reviewer = ?", [reviewer],
                    )
                }  # fmt: skip
                candidates = [
                    i for i in every
                    if i.status == "open" and i.item_id not in skipped
                    and reviewer not in i.labelled_by
                ]  # fmt: skip
                if not candidates:
                    raise ReviewError("The queue has no open item for you right now.")
                item = self._next(candidates, now)
            lease_until = now + self.config.lease_us
            self._append(item.item_id, now, "claimed", reviewer, lease_until=lease_until)
            return self.get(item.item_id, now=now)

    def _next(self, candidates: list[ReviewItem], now: int) -> ReviewItem:
        """The exploration stream's best item while its share of today's budget is not
        used up, else the targeted stream's (each stream in its own claim order); a stream
        with nothing open leaves its share to the other."""
        explore = [i for i in candidates if i.stream == "exploration"]
        targeted = [i for i in candidates if i.stream == "targeted"]
        reserved = self.config.exploration_share * self.config.daily_budget
        if explore and (not targeted or self._explored_on(now - now % DAY_US) < reserved):
            return explore[0]
        return targeted[0]

    def _explored_on(self, day_start: int) -> int:
        rows = self.log.database.fetch(
            "SELECT COUNT(*) FROM review_events e JOIN review_items i ON i.item_id = e.item_id "
            "WHERE e.kind = 'labelled' AND e.at >= ? AND e.at < ? AND i.reasons = ?",
            [day_start, day_start + DAY_US, json.dumps(["exploration"])],
        )
        return int(rows[0][0])

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
        hold. ``fraud``/``legit`` also append a label (``source = "review"``, the reviewer,
        the note, known now) in the same transaction, through ``append_labels`` (the live
        service passes its own, so its label-aware state sees the label) or straight to the
        log. An item is closed once ``reviews_needed`` reviewers labelled it."""
        return self._verdict("labelled", item_id, reviewer, verdict, now, note, append_labels)

    def correct(
        self,
        item_id: int,
        reviewer: str,
        verdict: str,
        *,
        now: int,
        note: str = "",
        append_labels: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> ReviewItem:
        """Change the verdict of a closed item: a new review event and a new label (the next
        revision), never an overwrite; the latest review label wins
        (:mod:`modelminder.events.outcomes`)."""
        return self._verdict("corrected", item_id, reviewer, verdict, now, note, append_labels)

    def _verdict(
        self,
        kind: str,
        item_id: int,
        reviewer: str,
        verdict: str,
        now: int,
        note: str,
        append_labels: Callable[[list[dict[str, Any]]], Any] | None,
    ) -> ReviewItem:
        _check_verdict(reviewer, verdict, note)
        with self.log.transaction():
            item = self.get(item_id, now=now)
            if kind == "labelled":
                self._check_holder(item, reviewer)
            elif item.status != "closed":
                raise ReviewError(
                    f"Item {item_id} is {item.status}: only a closed item's verdict can be "
                    "corrected. Label it instead."
                )
            self._append(item.item_id, now, kind, reviewer, verdict=verdict, note=note)
            self._label_row(item.event_id, reviewer, verdict, note, now, append_labels)
            return self.get(item.item_id, now=now)

    def label_events(
        self,
        verdicts: Mapping[str, str],
        reviewer: str,
        *,
        now: int,
        note: str = "",
        append_labels: Callable[[list[dict[str, Any]]], Any] | None = None,
    ) -> int:
        """The case view's "label them in one go": a verdict for each of several logged
        events (e.g. a card's other recent events after a confirmed fraud), each its own
        label event. An event with an open review item is labelled through the item (it
        closes); all or nothing. How many labels were appended."""
        for verdict in verdicts.values():
            _check_verdict(reviewer, verdict, note)
        ids = list(verdicts)
        if not ids:
            raise SchemaError("Give at least one event to label.")
        logged = set(self.log.events_by_id(ids).get_column("event_id").to_list())
        missing = [e for e in ids if e not in logged]
        if missing:
            raise UnknownItem(f"No logged event {missing[0]!r}; nothing was labelled.")
        with self.log.transaction():
            # Every check before any write: a refusal leaves the log and the live state as
            # they were (append_labels folds into the live state as it goes).
            through: dict[str, int] = {}
            for event_id in ids:
                found = self._read(" WHERE i.event_id = ?", [event_id], now)
                if not found or found[0].status in ("closed", "expired"):
                    continue
                item = found[0]
                if item.status == "leased" and item.reviewer != reviewer:
                    raise ReviewError(
                        f"Event {event_id!r} is held by {item.reviewer} (item {item.item_id}); "
                        "nothing was labelled."
                    )
                if reviewer not in item.labelled_by:
                    through[event_id] = item.item_id
            appended = 0
            for event_id, verdict in verdicts.items():
                if event_id in through:
                    self._append(through[event_id], now, "labelled", reviewer, verdict=verdict,
                                 note=note or "case view")  # fmt: skip
                appended += self._label_row(event_id, reviewer, verdict, note, now, append_labels)
        return appended

    def _label_row(
        self,
        event_id: str,
        reviewer: str,
        verdict: str,
        note: str,
        now: int,
        append_labels: Callable[[list[dict[str, Any]]], Any] | None,
    ) -> int:
        value = VERDICTS[verdict]
        if value is None:  # unsure: no label
            return 0
        revision = self.log.database.fetch(
            "SELECT COALESCE(MAX(revision) + 1, 0) FROM labels WHERE event_id = ? AND source = ?",
            [event_id, SOURCE],
        )[0][0]
        row = {
            "event_id": event_id, self.log.schema.label: value, "label_ts": now,
            "source": SOURCE, "revision": int(revision), "reviewer": reviewer, "note": note,
        }  # fmt: skip
        if append_labels is not None:
            append_labels([row])
        else:
            self.log.append_label_rows([row], received_at_us=now)
        return 1

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
                f"Item {item.item_id} is already closed ({item.verdict} by "
                f"{', '.join(item.labelled_by)}). A correction is a new label: "
                f"minder review correct {item.item_id} VERDICT."
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
        """Counts by status and reason, reviewed today against the budget, verdicts, skips,
        the median turnaround (queued to first label, seconds) and the agreement of
        reviewers on the overlap sample (the first two reviewers' verdicts)."""
        items = self.items(now=now, limit=10_000_000)
        db = self.log.database
        firsts: dict[int, list[tuple[int, str, str]]] = {}
        for item_id, at, reviewer, verdict in db.fetch(
            "SELECT item_id, at, reviewer, verdict FROM review_events WHERE kind = 'labelled' "
            'ORDER BY "offset"'
        ):
            firsts.setdefault(int(item_id), []).append((int(at), str(reviewer), str(verdict)))
        created = {i.item_id: i.created_at for i in items}
        turn = sorted(v[0][0] - created[k] for k, v in firsts.items() if k in created)
        pairs = [
            (v[0][2], next(x[2] for x in v if x[1] != v[0][1]))
            for v in firsts.values()
            if len({x[1] for x in v}) >= 2
        ]
        skips = db.fetch("SELECT COUNT(*) FROM review_events WHERE kind = 'skipped'")[0][0]
        agreeing = sum(a == b for a, b in pairs)
        return {
            "items": len(items),
            "by_status": {s: sum(i.status == s for i in items) for s in STATUSES},
            "by_reason": {r: sum(r in i.reasons for i in items) for r in POLICIES},
            "verdicts": {v: sum(i.verdict == v for i in items) for v in VERDICTS},
            "skips": int(skips),
            "reviewed_today": self.reviewed_on(now - now % DAY_US),
            "daily_budget": self.config.daily_budget,
            "median_turnaround_s": turn[len(turn) // 2] / 1e6 if turn else None,
            "agreement": {
                "items": len(pairs),
                "agreeing": agreeing,
                "rate": agreeing / len(pairs) if pairs else None,
            },
        }


def _rows(table: Any) -> list[tuple[Any, ...]]:
    return list(zip(*(c.to_pylist() for c in table.columns), strict=True))


def _check_verdict(reviewer: object, verdict: object, note: object) -> None:
    _check_reviewer(reviewer)
    if verdict not in VERDICTS:
        raise SchemaError(f"'verdict' must be one of {', '.join(VERDICTS)}. Got {verdict!r}.")
    if not isinstance(note, str) or len(note) > 1000:
        raise SchemaError("'note' must be text of at most 1000 characters.")


def _check_reviewer(reviewer: object) -> None:
    if not isinstance(reviewer, str) or not reviewer.strip() or len(reviewer) > 64:
        raise SchemaError("'reviewer' must be a name of 1 to 64 characters.")
