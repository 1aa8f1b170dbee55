"""Alerts: what the monitors found, folded, recorded in the log and delivered through sinks.

An alert has a kind (``data_drift``, ``multivariate_drift``, ``data_quality``, ``volume``,
``performance``, ``estimate_gap``, ``concept_drift``, ``skew``, ``probing``), a severity
(``warn`` or ``severe``), the windows it covers, the model version, its subject (a feature, a
metric, an entity), the evidence (statistic, threshold, top features...) and a suggested action.

Findings of the same kind, subject and model version in consecutive windows fold into one alert
(first and last window, count, worst severity).

Alerts are events in the log: the ``alert_events`` topic (owned by this module, append-only;
the database refuses UPDATE and DELETE) holds one record per change of an alert's state, and
an alert's current state is the fold of its records (:func:`fold_states`): the latest record
of its key, listed at the place of its first. Recording an alert whose state is already the
current one appends nothing, so a monitor can be rerun over the same range; an alert that
grows, worsens or closes appends its new state, so the log keeps its history.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any, Protocol

from modelminder.errors import MinderError
from modelminder.events.log import EventLog
from modelminder.store.sqlite import RowInsert

KINDS = (
    "data_drift", "multivariate_drift", "data_quality", "volume", "performance",
    "estimate_gap", "concept_drift", "skew", "probing",
)  # fmt: skip
SEVERITIES = ("warn", "severe")


@dataclass(frozen=True)
class Alert:
    """One finding (or several folded). Times are UTC microseconds of window starts."""

    kind: str
    severity: str
    subject: str
    model_version: str
    window_start: int
    window_end: int  # start of the last window covered, plus the window size
    evidence: dict[str, Any]
    action: str
    count: int = 1
    open: bool = True  # the signal's latest evaluation is still in alarm

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MinderError(f"Alert kind must be one of {', '.join(KINDS)}. Got {self.kind!r}.")
        if self.severity not in SEVERITIES:
            raise MinderError(
                f"Alert severity must be one of {', '.join(SEVERITIES)}. Got {self.severity!r}."
            )

    @property
    def key(self) -> str:
        """Identity for deduplication: the same finding recorded twice is one alert."""
        return f"{self.kind}|{self.subject}|{self.model_version}|{self.window_start}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "severity": self.severity, "subject": self.subject,
            "model_version": self.model_version, "window_start": self.window_start,
            "window_end": self.window_end, "evidence": self.evidence, "action": self.action,
            "count": self.count, "open": self.open,
        }  # fmt: skip


def fold(alerts: Iterable[Alert], window_us: int) -> list[Alert]:
    """Merge findings of the same kind, subject and model version whose windows touch (or
    are at most one window apart) into one alert: worst severity, summed count, the latest
    evidence. Sorted by first window.

    Examples
    --------
    >>> day = 86_400_000_000
    >>> a = [Alert("data_drift", s, "amount", "v1", d * day, (d + 1) * day, {}, "look")
    ...      for d, s in [(0, "warn"), (1, "severe"), (5, "warn")]]
    >>> [(x.window_start // day, x.window_end // day, x.severity, x.count) for x in fold(a, day)]
    [(0, 2, 'severe', 2), (5, 6, 'warn', 1)]
    """
    groups: dict[tuple[str, str, str], list[Alert]] = {}
    for a in sorted(alerts, key=lambda x: x.window_start):
        group = groups.setdefault((a.kind, a.subject, a.model_version), [])
        last = group[-1] if group else None
        if last is not None and a.window_start <= last.window_end + window_us:
            group[-1] = replace(
                a,
                severity=max(last.severity, a.severity, key=SEVERITIES.index),
                window_start=last.window_start,
                window_end=max(last.window_end, a.window_end),
                count=last.count + a.count,
                open=a.open,
            )
        else:
            group.append(a)
    return sorted((a for g in groups.values() for a in g), key=lambda x: (x.window_start, x.kind))


class Sink(Protocol):
    """Where alerts go. ``deliver`` gets only alerts not delivered before."""

    def deliver(self, alerts: Sequence[Alert]) -> None: ...


_INSERT = RowInsert(
    "alert_events",
    {
        "recorded_at": "int", "key": "str", "kind": "str", "severity": "str", "subject": "str",
        "model_version": "str", "window_start": "int", "window_end": "int", "count": "int",
        "evidence": "str", "action": "str", "open": "int",
    },
)  # fmt: skip
_COLUMNS = (
    '"offset", recorded_at, kind, severity, subject, model_version, window_start, window_end, '
    "evidence, action, count, open"
)


@dataclass(frozen=True)
class AlertEvent:
    """One record of the ``alert_events`` topic: ``alert`` is the state its alert took at
    ``recorded_at`` (UTC microseconds), at log offset ``offset``."""

    offset: int
    recorded_at: int
    alert: Alert


def fold_states(events: Iterable[AlertEvent]) -> list[Alert]:
    """The current alerts from their events (in offset order): per key, the latest state, at the
    place of the key's first event; ordered by first window, then by that place. The one
    definition of an alert's state.

    Examples
    --------
    >>> warn = Alert("skew", "warn", "amount_sum_1h", "v1", 0, 10, {}, "look")
    >>> severe = replace(warn, severity="severe", open=False)
    >>> [(a.severity, a.open) for a in fold_states([AlertEvent(1, 5, warn),
    ...                                            AlertEvent(2, 9, severe)])]
    [('severe', False)]
    """
    first: dict[str, int] = {}
    latest: dict[str, Alert] = {}
    for e in events:
        first.setdefault(e.alert.key, e.offset)
        latest[e.alert.key] = e.alert
    return sorted(latest.values(), key=lambda a: (a.window_start, first[a.key]))


class AlertLog:
    """The ``alert_events`` topic of the log: alerts as events. Also a sink.

    Examples
    --------
    >>> import tempfile
    >>> from modelminder.events.schema import EventSchema
    >>> log = EventLog.open(tempfile.mkdtemp() + "/log.db", EventSchema({"card_id": "str"}))
    >>> alerts = AlertLog(log, clock_us=lambda: 7)
    >>> a = Alert("skew", "severe", "amount_sum_1h", "v1", 0, 10, {"mismatches": 3}, "fix it")
    >>> alerts.record([a, a])
    [Alert(kind='skew', ...)]
    >>> [x.subject for x in alerts.read()], len(alerts.events())
    (['amount_sum_1h'], 1)
    >>> log.close()
    """

    def __init__(self, log: EventLog, *, clock_us: Any = None) -> None:
        # The alert_events table is created with the log (store.migrations.log).
        self._db = log.database
        self._now = clock_us or log.clock.now_us

    def record(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Record alerts (atomically): each one whose state differs from its alert's current
        state is appended. Returns the ones to deliver elsewhere: new ones, and known ones whose
        severity rose (a warning that became severe is news)."""
        now = int(self._now())
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        with self._db.tx():
            current = {a.key: a for a in fold_states(self.events())}
            fresh: dict[str, Alert] = {}
            for a in alerts:
                before = current.get(a.key)
                if before is None or rank[a.severity] > rank[before.severity]:
                    fresh[a.key] = a
                if before is not None and _same_state(before, a):
                    continue
                current[a.key] = a
                row = a.to_dict() | {"key": a.key, "recorded_at": now, "open": int(a.open)}
                row["evidence"] = _evidence_json(a.evidence)
                _INSERT.run(self._db, row)
        return list(fresh.values())

    def deliver(self, alerts: Sequence[Alert]) -> None:
        self.record(alerts)

    def events(self) -> list[AlertEvent]:
        """Every recorded state change, in log order (an alert's history)."""
        rows = self._db.fetch(f'SELECT {_COLUMNS} FROM alert_events ORDER BY "offset"')
        return [_event(r) for r in rows]

    def read(self, *, since_us: int | None = None) -> list[Alert]:
        """The alerts in their current state, oldest window first (``since_us``: windows
        ending after it)."""
        alerts = fold_states(self.events())
        return alerts if since_us is None else [a for a in alerts if a.window_end > since_us]


def _event(row: Sequence[Any]) -> AlertEvent:
    offset, recorded_at, kind, severity, subject, version, start, end, *rest = row
    evidence, action, count, is_open = rest
    alert = Alert(
        str(kind), str(severity), str(subject), str(version), int(start), int(end),
        json.loads(evidence), str(action), int(count), bool(is_open),
    )  # fmt: skip
    return AlertEvent(int(offset), int(recorded_at), alert)


def _evidence_json(evidence: dict[str, Any]) -> str:
    return json.dumps(evidence, default=str)


def _same_state(stored: Alert, new: Alert) -> bool:
    # Evidence is compared as stored (JSON): a value JSON cannot hold exactly (a tuple, a
    # numpy float) reads back as its JSON form.
    same_fields = replace(stored, evidence={}) == replace(new, evidence={})
    return same_fields and _evidence_json(stored.evidence) == _evidence_json(new.evidence)


@dataclass
class StdoutSink:
    """One line per alert on a stream (stdout by default)."""

    stream: IO[str] = field(default_factory=lambda: sys.stdout)

    def deliver(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            print(
                f"[{a.severity}] {a.kind} {a.subject} (model {a.model_version}): {a.action}",
                file=self.stream,
            )


@dataclass
class WebhookSink:
    """POST each batch of alerts as JSON ``{"alerts": [...]}`` to ``url``, retrying with
    exponential backoff; raises :class:`MinderError` if every attempt fails (the alerts are in
    the log regardless)."""

    url: str
    retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise MinderError(
                f"The webhook URL must start with http:// or https://. Got {self.url!r}."
            )
        if self.retries < 0:
            raise MinderError(f"Webhook 'retries' must be >= 0. Got {self.retries}.")

    def deliver(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        body = json.dumps({"alerts": [a.to_dict() for a in alerts]}, default=str).encode()
        last = ""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url, data=body, headers={"content-type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    if 200 <= answer.status < 300:
                        return
                    last = f"HTTP {answer.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise MinderError(
            f"The webhook {self.url} refused {len(alerts)} alert(s) after {self.retries + 1} "
            f"attempts (last: {last}). The alerts are recorded in the log."
        )
