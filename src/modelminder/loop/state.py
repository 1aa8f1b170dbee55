"""Where the loop stands, folded from its own audit records in the log.

Every step the loop takes is an audit record (kind ``loop.<step>``, the details in the
payload, stamped with the loop's clock), and the loop's state is the fold of those records,
never a mutable row: a crash between two steps leaves the records of the steps that finished,
and the next run resumes from them. The stages:

* ``idle``: the champion serves; triggers are watched.
* ``shadow``: a candidate that passed the gate and its backtest scores live traffic as
  ``shadow`` until the shadow period is over.
* ``approval``: the candidate is waiting for a human (``minder models approve V``).
* ``probation``: a new champion is watched against the previous one, which shadows it.

A retrain that started and never finished (the process died) is reported, and a new retrain
may start: its half-made model was never registered, or was registered but never moved an
alias, so the champion is untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from modelminder.events.log import EventLog

STAGES = ("idle", "shadow", "approval", "probation")
PREFIX = "loop."


@dataclass(frozen=True)
class LoopState:
    """The loop's state after its audit records so far (see the module docstring)."""

    stage: str = "idle"
    candidate: str | None = None  # shadow/approval: the candidate; probation: the new champion
    since: int | None = None  # when the stage began
    previous: str | None = None  # probation: the champion before the promotion
    evidence: dict[str, Any] | None = None  # the candidate's backtest comparison (JSON)
    last_retrain_at: int | None = None  # when the last retrain finished (or was requested)
    retrain_requested: bool = False  # a manual `minder retrain` waits for the next run
    unfinished: int | None = None  # a retrain started at this time and never finished
    retrains: int = 0
    last_monitor_at: int | None = None


def read_records(log: EventLog) -> pl.DataFrame:
    """The loop's audit records (``ts, kind, actor, payload``) in log order."""
    audit = log.read("audit")
    return audit.filter(pl.col("kind").str.starts_with(PREFIX)).select(
        "offset", "ts", "kind", "actor", "payload"
    )


def fold(records: pl.DataFrame) -> LoopState:
    """The state after ``records`` (as :func:`read_records` returns them), in order.

    Examples
    --------
    >>> rows = [(1, "loop.retrain_started", {}), (2, "loop.retrain_finished", {"version": "v2"}),
    ...         (3, "loop.shadow_started", {"version": "v2", "evidence": {}})]
    >>> frame = pl.DataFrame({"ts": [r[0] for r in rows], "kind": [r[1] for r in rows],
    ...                       "payload": [json.dumps(r[2]) for r in rows]})
    >>> s = fold(frame); s.stage, s.candidate, s.since, s.last_retrain_at
    ('shadow', 'v2', 3, 2)
    """
    state = LoopState()
    for ts, kind, payload in records.select("ts", "kind", "payload").iter_rows():
        state = apply(state, kind.removeprefix(PREFIX), int(ts), json.loads(payload))
    return state


def apply(state: LoopState, step: str, ts: int, p: dict[str, Any]) -> LoopState:
    """One record's effect on the state (unknown steps change nothing)."""
    if step == "monitored":
        return replace(state, last_monitor_at=ts)
    if step == "retrain_requested":
        return replace(state, retrain_requested=True)
    if step == "retrain_started":
        return replace(state, unfinished=ts, retrain_requested=False)
    if step == "retrain_failed" and p.get("interrupted"):
        return replace(state, unfinished=None)  # a process died: the next step retries
    if step in ("retrain_finished", "retrain_failed"):
        return replace(state, unfinished=None, last_retrain_at=ts, retrains=state.retrains + 1)
    if step == "shadow_started":
        return replace(
            state, stage="shadow", candidate=p.get("version"), since=ts, previous=None,
            evidence=p.get("evidence"),
        )  # fmt: skip
    if step == "awaiting_approval":
        return replace(state, stage="approval", since=ts)
    if step == "promoted":
        return replace(
            state, stage="probation", candidate=p.get("version"), previous=p.get("previous"),
            since=ts, evidence=None,
        )  # fmt: skip
    if step in ("candidate_rejected", "probation_ended", "rolled_back", "reset"):
        return replace(state, stage="idle", candidate=None, since=None, previous=None,
                       evidence=None)  # fmt: skip
    return state
