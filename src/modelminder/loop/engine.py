"""One run of the loop: monitor, watch the stage, maybe retrain, evaluate, shadow, promote.

:func:`run_once` is what ``minder loop`` runs on a schedule and what ``minder backtest`` runs
after each simulated day: the same function on a project, with the clock as the only
difference (the wall clock live, a simulated one in a backtest) and, in a backtest, a replay
computed once and sliced per retrain instead of recomputed (the same values: replay is
point-in-time correct). Each step is an audit record (:mod:`modelminder.loop.state`) with its
evidence, and a :class:`Decision` in plain words for the operator.

Safety: the champion moves only through :mod:`modelminder.registry.changes` (checked load,
audited move), only after a candidate passed the gate, its backtest and its shadow period
(or a human approved it), or when the probation rule rolls back. A crash anywhere leaves the
champion as it was; two loops never work at once (:class:`~modelminder.loop.lock.LoopLock`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from modelminder.clock import Clock, WallClock
from modelminder.errors import MonitorError, RegistryError, TrainingError
from modelminder.events.log import EventLog
from modelminder.events.outcomes import outcomes
from modelminder.events.predictions import PredictionTopic
from modelminder.loop import state as st
from modelminder.loop.compare import Comparison, compare
from modelminder.loop.lock import LockHeld, LoopLock
from modelminder.monitoring.alerts import Alert, AlertLog
from modelminder.monitoring.monitor import MonitorConfig, run_monitor
from modelminder.project import LoopConfig, Project
from modelminder.registry import Registry, changes
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

DAY_US = 86_400_000_000
ACTOR = "loop"
MIN_LIVE_POSITIVES = 20  # labelled frauds before live shadow/probation evidence is used
Say = Callable[[str], None]


@dataclass(frozen=True)
class Decision:
    """What one step decided, in plain words, with its time and evidence."""

    ts: int
    step: str
    text: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{_day(self.ts)}: {self.text}"


@dataclass
class RunContext:
    """What a run acts on: the project, its clock and, in a backtest, the replay computed
    once (``features``: ``event_id`` and one column per feature, for every event)."""

    project: Project
    clock: Clock = field(default_factory=WallClock)
    features: pl.DataFrame | None = None
    say: Say = field(default=lambda _m: None)


def request_retrain(
    project: Project, *, actor: str, reason: str, clock: Clock | None = None
) -> int:
    """Record a manual retrain request (``minder retrain``); the next run acts on it."""
    with project.open_log(clock) as log:
        return log.append_audit(st.PREFIX + "retrain_requested", actor, {"reason": reason})


def current_state(project: Project) -> st.LoopState:
    with project.open_log() as log:
        return st.fold(st.read_records(log))


def run_once(ctx: RunContext, *, force_retrain: str = "") -> list[Decision]:
    """One pass of the loop (see the module docstring). Returns what it decided; raises
    :class:`~modelminder.loop.lock.LockHeld` if another loop is working. ``force_retrain``,
    when not empty, is why a retrain must happen now whatever the triggers say."""
    project, now = ctx.project, ctx.clock.now_us()
    with project.open_log(ctx.clock) as log:
        lock = LoopLock(log)
        lock.acquire(now=now)
        try:
            return _run(ctx, log, lock, now, force_retrain)
        finally:
            lock.release()


def _run(ctx: RunContext, log: EventLog, lock: LoopLock, now: int, force: str) -> list[Decision]:
    project, cfg = ctx.project, ctx.project.loop
    out: list[Decision] = []

    def record(step: str, text: str, evidence: dict[str, Any] | None = None) -> Decision:
        ev = evidence or {}
        log.append_audit(st.PREFIX + step, ACTOR, {"text": text, **ev}, ts_us=now)
        d = Decision(now, step, text, ev)
        out.append(d)
        ctx.say(d.line())
        return d

    state = st.fold(st.read_records(log))
    with Registry.open(project.root, log) as reg:
        aliases = reg.aliases()
    champion = aliases.get("champion")
    if _reconcile(state, aliases, record):
        state = st.fold(st.read_records(log))
    if state.unfinished is not None:
        force = force or f"resuming the retrain interrupted on {_day(state.unfinished)}"
        record(
            "retrain_failed",
            f"the retrain started {_day(int(state.unfinished or 0))} never finished (the "
            "process stopped); the champion was untouched; retraining again",
            {"interrupted": True},
        )
        state = st.fold(st.read_records(log))
    alerts: list[Alert] = []
    if champion:
        due = state.last_monitor_at is None or now - state.last_monitor_at >= cfg.us(
            "monitor_every"
        )
        alerts = _monitor(ctx, log, now) if due else _open_alerts(log)
    if state.stage == "shadow" and state.candidate and champion:
        if now - (state.since or now) >= cfg.us("shadow_period"):
            _decide_shadow(ctx, log, state, champion, now, record)
        return out
    if state.stage == "approval":
        return out  # a human decides (minder models approve V)
    watch, evidence = "", ""
    if state.stage == "probation" and state.candidate and state.previous:
        watch, evidence = _watch_probation(ctx, log, state, now, record)
        if watch == "rolled":
            return out
    fired = _triggers(ctx, log, state, champion, alerts, now, force)
    if not fired:
        return out
    if watch == "waiting" and not force:
        # Retraining now would end the probation before the new champion could be judged
        # (its previous champion stops shadowing it): the retrain waits for the evidence.
        ctx.say(f"{_day(now)}: the retrain waits: {evidence}")
        return out
    record("triggered", "; ".join(fired), {"reasons": fired})
    if watch == "holds":
        _end_probation(project, log, f"{evidence}; a new candidate follows", record)
    lock.acquire(now=now)  # renew: a retrain can take minutes
    _retrain(ctx, log, champion, now, record)
    return out


# -- stages -------------------------------------------------------------------------------


def _reconcile(state: st.LoopState, aliases: dict[str, str], record: Any) -> bool:
    """A human may have moved the aliases under the loop: follow them (True: a record was
    written and the state must be read again)."""
    if state.stage in ("shadow", "approval") and aliases.get("champion") == state.candidate:
        record("promoted", f"{state.candidate} was promoted by hand; probation begins",
               {"version": state.candidate, "previous": None})  # fmt: skip
        return True
    if state.stage == "shadow" and aliases.get("shadow") != state.candidate:
        record("reset", f"the shadow alias no longer names {state.candidate}; back to idle")
        return True
    if state.stage == "probation" and aliases.get("champion") != state.candidate:
        record("reset", f"champion is no longer {state.candidate}; probation ends")
        return True
    return False


def _decide_shadow(
    ctx: RunContext, log: EventLog, state: st.LoopState, champion: str, now: int, record: Any
) -> None:
    project, cfg = ctx.project, ctx.project.loop
    candidate = str(state.candidate)
    live = live_comparison(project, log, champion, candidate, since=state.since or now, now=now)
    if live is not None and live.positives >= MIN_LIVE_POSITIVES:
        evidence, source = live, "live shadow traffic"
    elif state.evidence:
        evidence, source = Comparison.from_json(state.evidence), "the backtest"
    else:
        evidence, source = None, "nothing"
    metric = cfg.metric
    facts = {"version": candidate, "champion": champion, "evidence_from": source,
             "comparison": evidence.to_json() if evidence else None,
             "live": live.to_json() if live else None}  # fmt: skip
    if evidence is None or not evidence.better(metric, cfg.margin):
        why = (
            "no labelled evidence"
            if evidence is None
            else f"{_metric(metric)} {evidence.get(metric).describe()} on {source}"
        )
        record("candidate_rejected", f"candidate {candidate} is not better than {champion} "
               f"({why}; needed a gain of at least {cfg.margin:+.3f} with the interval above "
               "zero) -> discarded, champion kept", facts)  # fmt: skip
        with Registry.open(project.root, log) as reg:
            reg.clear_alias("shadow", actor=ACTOR, reason=f"candidate {candidate} not better")
        return
    gain = f"{_metric(metric)} {evidence.get(metric).describe()} on {source}"
    if cfg.promotion == "approve":
        record("awaiting_approval", f"candidate {candidate}: {gain} -> waiting for approval "
               f"(minder models approve {candidate})", facts)  # fmt: skip
        return
    promote_candidate(project, log, candidate, actor=ACTOR, reason=gain, record=record)


def promote_candidate(
    project: Project, log: EventLog, candidate: str, *, actor: str, reason: str, record: Any
) -> None:
    """Champion -> ``candidate`` through the one checked path; the previous champion shadows
    it during probation."""
    with Registry.open(project.root, log) as reg:
        previous = reg.alias("champion")
    fp = project.fingerprint()
    changes.promote(project.root, log, candidate, fingerprint=fp, actor=actor, reason=reason)
    if previous is not None:
        changes.promote(
            project.root, log, previous, alias="shadow", fingerprint=fp, actor=actor,
            reason=f"probation: the previous champion shadows {candidate}",
        )  # fmt: skip
    record("promoted", f"candidate {candidate} -> champion ({reason}); {previous or 'nothing'} "
           "shadows it during probation", {"version": candidate, "previous": previous})  # fmt: skip


def approve(project: Project, version: str, *, actor: str, clock: Clock | None = None) -> str:
    """A human approves the candidate waiting for approval: it is promoted at once."""
    with project.open_log(clock) as log:
        state = st.fold(st.read_records(log))
        if state.stage != "approval" or state.candidate != version:
            waiting = state.candidate if state.stage == "approval" else None
            raise RegistryError(
                f"Version {version!r} is not waiting for approval"
                + (f"; {waiting} is." if waiting else "; no candidate is (minder loop status).")
            )
        lines: list[str] = []

        def record(step: str, text: str, evidence: dict[str, Any] | None = None) -> None:
            log.append_audit(st.PREFIX + step, actor, {"text": text, **(evidence or {})})
            lines.append(text)

        promote_candidate(project, log, version, actor=actor, reason=f"approved by {actor}",
                          record=record)  # fmt: skip
        return lines[-1]


def _watch_probation(
    ctx: RunContext, log: EventLog, state: st.LoopState, now: int, record: Any
) -> tuple[str, str]:
    """Roll back when the new champion's live metric falls below the previous one's by the
    margin (paired, on the same events); end probation when its time is up. Returns what
    happened (``rolled``, ``ended``, ``holds``: judged and not worse, ``waiting``: too few
    labelled frauds yet) and the evidence in words."""
    project, cfg = ctx.project, ctx.project.loop
    new, old = str(state.candidate), str(state.previous)
    live = live_comparison(project, log, old, new, since=state.since or now, now=now)
    positives = 0 if live is None else live.positives
    enough = live is not None and positives >= MIN_LIVE_POSITIVES
    if live is not None and enough and live.worse(cfg.metric, cfg.rollback_margin):
        text = (
            f"{_metric(cfg.metric)} of champion {new} fell below {old}'s by "
            f"{live.get(cfg.metric).describe()} on {live.positives} labelled frauds since the "
            f"promotion -> rolled back to {old}"
        )
        changes.rollback(
            project.root, log, fingerprint=project.fingerprint(), actor=ACTOR, reason=text
        )
        with Registry.open(project.root, log) as reg:
            reg.clear_alias("shadow", actor=ACTOR, reason="rolled back")
        record("rolled_back", text, {"version": new, "to": old, "live": live.to_json()})
        return "rolled", text
    if now - (state.since or now) >= _probation_us(project, new):
        _end_probation(project, log, f"probation of {new} is over", record)
        return "ended", ""
    # Ended early (so that a due retrain may go ahead) only once the new champion is shown
    # better live; a tie on few frauds (both catching none of them) proves nothing.
    if live is not None and enough and live.better(cfg.metric, 0.0):
        held = f"champion {new} beats {old} live ({live.get(cfg.metric).describe()})"
        return "holds", held
    shown = f"{positives} labelled frauds" + (
        f", {live.get(cfg.metric).describe()}" if live is not None and enough else ""
    )
    return "waiting", (
        f"champion {new} is on probation against {old} ({shown}; it ends early only once "
        f"{new} is shown better on at least {MIN_LIVE_POSITIVES} frauds)"
    )


def _probation_us(project: Project, version: str) -> int:
    """How long a new champion stays on probation (``[loop].probation``; see LoopConfig)."""
    cfg = project.loop
    if cfg.probation != "auto":
        return cfg.us("probation")
    with Registry.open(project.root) as reg:
        maturity = reg.get(version).card.label_policy.maturity_us
    return max(14 * DAY_US, 2 * maturity + 7 * DAY_US)


def _end_probation(project: Project, log: EventLog, why: str, record: Any) -> None:
    with Registry.open(project.root, log) as reg:
        reg.clear_alias("shadow", actor=ACTOR, reason=why)
    record("probation_ended", why)


# -- triggers -----------------------------------------------------------------------------


def _monitor(ctx: RunContext, log: EventLog, now: int) -> list[Alert]:
    """Run the monitors over the recent past (alerts recorded in the log, as ``minder
    monitor`` does; earlier runs' alerts fold with them) and return the open alerts."""
    back = ctx.project.loop.us("monitor_lookback")
    mcfg = MonitorConfig(window="day", from_ts=max(0, now - back), to_ts=now, as_of=now,
                         skew_sample=0)  # fmt: skip
    note = ""
    try:
        report = run_monitor(ctx.project, mcfg, clock=ctx.clock)
        note = f"{len(report.open_severe)} severe alert(s) open"
    except MonitorError as exc:
        note = str(exc)
    log.append_audit(st.PREFIX + "monitored", ACTOR, {"text": note}, ts_us=now)
    return _open_alerts(log)


def _open_alerts(log: EventLog) -> list[Alert]:
    return [a for a in AlertLog(log).read() if a.open]


def _triggers(
    ctx: RunContext,
    log: EventLog,
    state: st.LoopState,
    champion: str | None,
    alerts: list[Alert],
    now: int,
    force: str,
) -> list[str]:
    """Why a retrain is due now (empty: it is not)."""
    cfg: LoopConfig = ctx.project.loop
    if force:
        return [force]
    if state.retrain_requested:
        return ["a retrain was requested by hand"]
    if champion is None:
        return ["there is no champion yet"]
    last = (
        state.last_retrain_at if state.last_retrain_at is not None else _trained_at(ctx, champion)
    )
    if now - last < cfg.us("min_interval"):
        return []
    fired: list[str] = []
    if cfg.on_alert != "off":
        severities = ("severe",) if cfg.on_alert == "severe" else ("severe", "warn")
        hits = [a for a in alerts if a.kind in cfg.alert_kinds and a.severity in severities
                and a.model_version == champion and a.window_end > last]  # fmt: skip
        for a in hits[:3]:
            fired.append(f"{a.severity} {a.kind} alert on {a.subject}: {_alert_words(a)}")
    if cfg.new_labels:
        labels = log.read("labels", from_ts=last, to_ts=now + 1)
        if labels.height >= cfg.new_labels:
            fired.append(f"{labels.height:,} new labels since the last training "
                         f"(threshold {cfg.new_labels:,})")  # fmt: skip
    if cfg.schedule and now - last >= cfg.schedule_us:
        fired.append(f"the schedule: {cfg.schedule} since the last training ({_day(last)})")
    return fired


def _alert_words(a: Alert) -> str:
    e = a.evidence
    if a.kind == "performance" and "auc" in e:
        ref = e.get("reference", "out_of_time")
        ref_auc = e.get("reference_auc", e.get("out_of_time_auc"))
        return (
            f"AUC fell to {e['auc']:.3f} from {ref_auc:.3f} ({ref}), recall at the review "
            f"threshold {e.get('recall', math.nan):.2f} on {e.get('positives', 0)} frauds"
        )
    first = a.action.split(". ")[0]  # the action's first sentence (not at a decimal point)
    return first if len(first) <= 200 else first[:197] + "..."


def _trained_at(ctx: RunContext, version: str) -> int:
    with Registry.open(ctx.project.root) as reg:
        return int(reg.get(version).card.training.cutoff)


# -- retrain and evaluate -----------------------------------------------------------------


def _retrain(ctx: RunContext, log: EventLog, champion: str | None, now: int, record: Any) -> None:
    project, cfg = ctx.project, ctx.project.loop
    start = max(0, now - cfg.us("train_window"))
    record("retrain_started", f"retraining on {_day(start)}..{_day(now)} with the labels known "
           "now", {"from_ts": start, "cutoff": now})  # fmt: skip
    config = TrainConfig(trials=cfg.trials, folds=4, max_train_rows=cfg.max_train_rows,
                         recency_half_life=cfg.recency_half_life or None)  # fmt: skip
    try:
        trained = train_and_register(
            project, config, cutoff=now, from_ts=start, maturity=cfg.maturity,
            features=ctx.features, clock=ctx.clock, progress=ctx.say,
        )  # fmt: skip
    except TrainingError as exc:
        record("retrain_failed", f"the retrain could not train a model: {exc}")
        return
    version, verdict = trained.record.version, trained.result.verdict
    record("retrain_finished", f"candidate {version} trained ({trained.data_summary})",
           {"version": version, "passed": verdict.passed})  # fmt: skip
    if not verdict.passed:
        record("candidate_rejected", f"candidate {version} failed the gate: "
               f"{'; '.join(verdict.reasons)} -> champion kept", {"version": version})  # fmt: skip
        return
    if champion is None:
        promote_candidate(project, log, version, actor=ACTOR, record=record,
                          reason="the first model that passed the gate")  # fmt: skip
        return
    comparison = backtest_candidate(project, trained, champion)
    metric = cfg.metric
    facts = {"version": version, "champion": champion, "evidence": comparison.to_json()}
    diff = comparison.get(metric)
    words = (f"candidate {version} vs {champion} on {comparison.block} "
             f"({comparison.positives} frauds): {_metric(metric)} {diff.describe()}")  # fmt: skip
    inconclusive = math.isnan(diff.low)
    if comparison.better(metric, cfg.margin) or inconclusive:
        with Registry.open(project.root, log) as reg:
            if reg.alias("shadow") is not None:
                reg.clear_alias("shadow", actor=ACTOR, reason=f"{version} takes the shadow")
        changes.promote(project.root, log, version, alias="shadow",
                        fingerprint=project.fingerprint(), actor=ACTOR, reason=words)  # fmt: skip
        record("shadow_started", words + " -> shadow", facts)
    else:
        record("candidate_rejected", words + " -> not better; champion kept", facts)


def backtest_candidate(project: Project, trained: Any, champion: str) -> Comparison:
    """Champion vs candidate on the candidate's out-of-time block (the latest labelled rows
    of its training set, which its own fitting never saw), limited to events after the
    champion's latest training event, so neither model trained on them."""
    cfg = project.loop
    data, plan = trained.data, trained.result.fold_plan
    rows = np.asarray(plan.holdout, np.int64)
    loaded = changes.load_model(project.root, champion, fingerprint=project.fingerprint())
    ts = data.ts()
    # The champion's rows end at its training set's latest event (``to_ts``; younger events
    # were immature at its cut-off and left out), so later rows are new to it.
    rows = rows[ts[rows] > int(loaded.record.card.training.to_ts)]
    X, y = data.X()[rows], data.y()[rows]
    cand = changes.load_model(project.root, trained.record.version,
                              fingerprint=project.fingerprint())  # fmt: skip
    block = (f"the out-of-time block {_day(int(ts[rows].min()))}..{_day(int(ts[rows].max()))}"
             if len(rows) else "an empty block (the champion trained on all of it)")  # fmt: skip
    if len(rows) == 0:
        empty = np.zeros(0)
        return compare(empty, empty, empty, block=block, alert_rate=cfg.alert_rate,
                       confidence=cfg.confidence)  # fmt: skip
    return compare(y, loaded.model.predict(X), cand.model.predict(X), block=block,
                   alert_rate=cfg.alert_rate, confidence=cfg.confidence,
                   ap_boot=300 if cfg.metric == "average_precision" else 0)  # fmt: skip


def live_comparison(
    project: Project, log: EventLog, champion: str, other: str, *, since: int, now: int
) -> Comparison | None:
    """``other`` against ``champion`` on the events both scored live since ``since`` (one as
    champion, the other as shadow, whichever way round), on the outcomes known now under the
    champion's label policy. None when there is nothing to compare."""
    topic = PredictionTopic(log)
    frames = [topic.frame(role, from_ts=since, features=False) for role in ("champion", "shadow")]
    both = pl.concat(frames).select("event_id", "ts", "model_version", "score")
    a = both.filter(pl.col("model_version") == champion).select("event_id", "ts", a="score")
    b = both.filter(pl.col("model_version") == other).select("event_id", b="score")
    joined = a.unique("event_id").join(b.unique("event_id"), on="event_id", how="inner")
    if joined.height == 0:
        return None
    with Registry.open(project.root) as reg:
        policy = reg.get(champion).card.label_policy
    known = outcomes(joined, log.read("labels"), policy, as_of=now,
                     value=project.schema.label)  # fmt: skip
    rows = joined.join(known, on="event_id").filter(pl.col("usable"))
    if rows.height == 0:
        return None
    cfg = project.loop
    return compare(
        rows.get_column("outcome").to_numpy(), rows.get_column("a").to_numpy(),
        rows.get_column("b").to_numpy(), block=f"live traffic since {_day(since)}",
        alert_rate=cfg.alert_rate, confidence=cfg.confidence,
    )  # fmt: skip


def _metric(name: str) -> str:
    return {"recall_at_alert_rate": "recall at the alert rate", "auc": "AUC",
            "average_precision": "average precision"}[name]  # fmt: skip


def day_text(us: int) -> str:
    """A UTC time as its date, as the loop's decisions print it."""
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d")


_day = day_text


__all__ = [
    "Decision",
    "LockHeld",
    "RunContext",
    "approve",
    "backtest_candidate",
    "current_state",
    "live_comparison",
    "request_retrain",
    "run_once",
]
