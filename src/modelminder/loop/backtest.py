"""``minder backtest``: a project's history replayed through the whole loop in simulated time.

The history of a project (its log's events and labels) is played into a *scratch* project,
day by day, with a simulated clock: the day's events arrive in log order and are scored by
whatever is champion (and shadow) at the time, the day's labels arrive as they became known,
and then :func:`~modelminder.loop.engine.run_once` runs, exactly as ``minder loop`` would
have run at the end of that day: monitors, triggers, retrains, backtests of candidates,
shadowing, promotion, probation and rollback. The source project is only read.

Two things differ from a live deployment, both on purpose:

* the features are replayed *once* over the whole source log and sliced per scoring and per
  retrain, instead of being recomputed by the live path and by each retrain's replay. They
  are the same values: a replayed feature of an event sees only what came before it in the
  log (labels by the time they became known), which is what replay-equals-live guarantees;
* served predictions are written straight to the scratch log's prediction topic (with the
  features as served), not through HTTP, and the review queue is not simulated.

Next to the looped deployment, the first model is kept *frozen* (it scores every day too,
never replaced): the result is the metric over time for both, with the loop's decisions.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from modelminder.clock import SimulatedClock
from modelminder.errors import MinderError
from modelminder.events.outcomes import outcomes
from modelminder.events.predictions import Prediction, PredictionTopic, served_features
from modelminder.logreplay import replay_log
from modelminder.loop.engine import Decision, RunContext, run_once
from modelminder.loop.engine import day_text as _day
from modelminder.metrics import auc, recall_at_alert_rate
from modelminder.model.ensemble import Ensemble
from modelminder.project import CONFIG_NAME, LoopConfig, Project, load_project
from modelminder.registry import Registry, changes

DAY_US = 86_400_000_000
MARKER = ".minder-backtest"
FAILURES = ("candidate_rejected", "retrain_failed")
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BacktestResult:
    """The metric over time for the looped deployment and the frozen first model."""

    from_ts: int
    to_ts: int
    metric: str
    alert_rate: float
    window_days: int
    frozen_version: str
    windows: pl.DataFrame  # window_start, rows, positives, coverage, looped, frozen, versions
    decisions: list[Decision]
    labels: pl.DataFrame  # day, labels that became known that day
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "from": _day(self.from_ts),
            "to": _day(self.to_ts),
            "metric": self.metric,
            "alert_rate": self.alert_rate,
            "window_days": self.window_days,
            "frozen_version": self.frozen_version,
            "windows": [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in self.windows.with_columns(
                    window=pl.col("window_start").map_elements(_day, return_dtype=pl.String)
                ).to_dicts()
            ],
            "decisions": [
                {"date": _day(d.ts), "ts": d.ts, "step": d.step, "text": d.text}
                for d in self.decisions
            ],
            "labels": self.labels.to_dicts(),
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
        }


def run_backtest(
    source: Project,
    *,
    from_ts: int,
    to_ts: int,
    workdir: Path,
    config: LoopConfig | None = None,
    window_days: int = 7,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay ``source``'s history from ``from_ts`` to ``to_ts`` through the loop (see the
    module docstring) in the scratch project ``workdir`` (recreated; refused if it is a
    folder that a backtest did not make)."""
    import time

    t0 = time.perf_counter()
    tell = say or (lambda _m: None)
    if from_ts >= to_ts:
        raise MinderError("The backtest range is empty: --from must be before --to.")
    cfg = config or source.loop
    plan = source.plan()
    with source.open_log() as log:
        events = log.read("events")
        labels = log.read("labels")
        tell(f"replaying {events.height:,} events once (features sliced per day and retrain)")
        features = replay_log(log, plan)
    if events.height == 0:
        raise MinderError(f"The project {source.root} has no events to backtest.")
    first, last = int(events.get_column("ts").min()), int(events.get_column("ts").max())  # type: ignore[arg-type]
    if from_ts <= first or from_ts > last:
        raise MinderError(
            f"--from {_day(from_ts)} must fall inside the history ({_day(first)}..{_day(last)}), "
            "after its first day: the first model trains on what came before it."
        )
    to_ts = min(to_ts, last + 1)
    project = _scratch(source, workdir, cfg)
    clock = SimulatedClock(from_ts)
    # An event arrives no earlier than the latest event time seen before it in the log.
    arrival = events.get_column("ts").cum_max().to_numpy()
    order_ts = events.get_column("ts").to_numpy()
    ids = events.get_column("event_id")
    X_all = features.select("event_id", *plan.names)
    index = pl.DataFrame({"event_id": ids}).join(
        X_all, on="event_id", how="left", maintain_order="left"
    )
    X = np.ascontiguousarray(index.select(plan.names).to_numpy(), np.float64)
    known = labels.get_column("known_at").to_numpy()
    ingest = events.drop("offset").with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))

    def feed(lo_t: int, hi_t: int, log: Any) -> tuple[int, int]:
        mask = (arrival >= lo_t) & (arrival < hi_t)
        rows = np.flatnonzero(mask)
        if rows.size:
            log.append_events(ingest[rows])
        lab = labels.filter(pl.Series((known >= lo_t) & (known < hi_t)))
        _append_labels(log, lab, project.schema.label)
        return int(rows.size), lab.height

    with project.open_log(clock) as log:
        feed(-(2**62), from_ts, log)
    ctx = RunContext(project, clock, features, say=tell)
    decisions = run_once(ctx, force_retrain="the backtest starts: a first model to serve")
    # Until a first model passes the gate nothing is served (as in a new project); each
    # day's run retrains ("there is no champion yet"). The first champion is also kept frozen.
    with Registry.open(project.root) as reg:
        frozen: str | None = reg.alias("champion")
    fp = project.fingerprint()
    models: dict[str, Ensemble] = {}

    def model(version: str) -> Ensemble:
        if version not in models:
            models[version] = changes.load_model(project.root, version, fingerprint=fp).model
        return models[version]

    served: list[pl.DataFrame] = []
    label_days: list[dict[str, Any]] = []
    days = max(1, math.ceil((to_ts - from_ts) / DAY_US))
    review_at, block_at = 0.2, 0.8
    for d in range(days):
        lo = from_ts + d * DAY_US
        hi = min(lo + DAY_US, to_ts)
        clock.advance_to(hi)
        with project.open_log(clock) as log:
            with Registry.open(project.root) as reg:
                champion, shadow = reg.alias("champion"), reg.alias("shadow")
            rows = np.flatnonzero((arrival >= lo) & (arrival < hi))
            n_events, n_labels = feed(lo, hi, log)
            if rows.size and champion is not None:
                x = X[rows]
                scored = {"champion": (champion, model(champion).predict(x))}
                if shadow is not None:
                    scored["shadow"] = (shadow, model(shadow).predict(x))
                preds = []
                for role, (version, s) in scored.items():
                    for i, r in enumerate(rows):
                        score = float(s[i])
                        decision = (
                            "block" if score >= block_at else "review" if score >= review_at
                            else "approve"
                        )  # fmt: skip
                        preds.append(Prediction(
                            str(ids[int(r)]), int(order_ts[r]), version, role, score, decision,
                            0, served_features(x[i].tolist()), [],
                        ))  # fmt: skip
                PredictionTopic(log).append(preds)
                frozen = frozen or champion
                served.append(pl.DataFrame({
                    "event_id": ids.gather(rows), "ts": order_ts[rows],
                    "looped": scored["champion"][1], "version": [champion] * rows.size,
                    "frozen": model(frozen or champion).predict(x),
                }))  # fmt: skip
        label_days.append({"day": _day(lo), "events": n_events, "labels": n_labels})
        decisions += run_once(ctx)
        if progress is not None:
            progress(d + 1, days, _day(lo))
    if frozen is None:
        why = next((d.text for d in reversed(decisions) if d.step in FAILURES), "")
        raise MinderError(
            f"No model passed the gate between {_day(from_ts)} and {_day(to_ts)}, so nothing "
            f"was served; the last attempt: {why or 'no retrain ran'}."
        )
    frozen_version = frozen
    scored_all = pl.concat(served)
    with project.open_log(clock) as log:
        all_labels = log.read("labels")
        with Registry.open(project.root) as reg:
            policy = reg.get(frozen_version).card.label_policy
    windows = _windows(scored_all, all_labels, policy, to_ts, from_ts, window_days, cfg,
                       project.schema.label)  # fmt: skip
    notes = [
        "Outcomes are the labels known at the end of the range under the first model's label "
        f"policy ({policy.describe()}); windows whose outcomes are mostly unknown say so "
        "(coverage).",
        "The review queue is not simulated: shadow disagreements are not sent to reviewers.",
    ]
    return BacktestResult(
        from_ts, to_ts, cfg.metric, cfg.alert_rate, window_days, frozen_version, windows,
        decisions, pl.DataFrame(label_days), time.perf_counter() - t0, notes,
    )  # fmt: skip


def _append_labels(log: Any, lab: pl.DataFrame, label: str) -> None:
    """Labels as they became known: a backfilled one is known from its ``label_ts``; one that
    arrived live later than its stamp keeps that later ``known_at``."""
    if lab.height == 0:
        return
    lab = lab.filter(pl.col("revision") == 0) if "revision" in lab.columns else lab
    base = lab.select("event_id", label, pl.col("label_ts"), "source", "known_at")
    as_stamped = base.filter(pl.col("known_at") == pl.col("label_ts"))
    if as_stamped.height:
        log.append_labels(_as_datetimes(as_stamped.drop("known_at")))
    later = base.filter(pl.col("known_at") != pl.col("label_ts"))
    for (at,), part in later.group_by(["known_at"]):
        log.append_labels(_as_datetimes(part.drop("known_at")), received_at_us=int(at))


def _as_datetimes(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("label_ts").cast(pl.Datetime("us", "UTC")))


def _scratch(source: Project, workdir: Path, cfg: LoopConfig) -> Project:
    """A fresh project in ``workdir`` with ``source``'s configuration and features."""
    if workdir.exists():
        if not (workdir / MARKER).exists():
            raise MinderError(
                f"{workdir} exists and was not made by a backtest; pick another --workdir "
                "(it is recreated on every run)."
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("a scratch project made by minder backtest\n")
    shutil.copy(source.root / CONFIG_NAME, workdir / CONFIG_NAME)
    if source.features_module is not None:
        shutil.copy(source.features_module, workdir / source.features_module.name)
    text = (workdir / CONFIG_NAME).read_text()
    log_name = source.log_path.name
    if log_name != "minder.db":
        text = text.replace(f'"{log_name}"', '"minder.db"')
    (workdir / CONFIG_NAME).write_text(text)
    return replace(load_project(workdir), loop=cfg)


def _windows(
    scored: pl.DataFrame,
    labels: pl.DataFrame,
    policy: Any,
    as_of: int,
    start: int,
    days: int,
    cfg: LoopConfig,
    label: str,
) -> pl.DataFrame:
    cols = {"window_start": pl.Int64, "rows": pl.Int64, "positives": pl.Int64,
            "coverage": pl.Float64, "looped": pl.Float64, "frozen": pl.Float64,
            "looped_auc": pl.Float64, "frozen_auc": pl.Float64, "versions": pl.String}  # fmt: skip
    if scored.height == 0:
        return pl.DataFrame(schema=cols)
    known = outcomes(scored.select("event_id", "ts"), labels, policy, as_of=as_of, value=label)
    data = scored.join(known.select("event_id", "outcome", "usable"), on="event_id", how="left")
    size = days * DAY_US
    data = data.with_columns(window_start=start + (pl.col("ts") - start) // size * size)
    out = []
    for (w,), g in sorted(data.group_by(["window_start"]), key=lambda kv: kv[0][0]):
        use = g.filter(pl.col("usable").fill_null(False))
        y = use.get_column("outcome").to_numpy().astype(np.int64)
        looped, frozen = use.get_column("looped").to_numpy(), use.get_column("frozen").to_numpy()
        pick = _metric_fn(cfg)
        out.append({
            "window_start": int(w), "rows": g.height, "positives": int(y.sum()),
            "coverage": use.height / max(g.height, 1), "looped": pick(y, looped),
            "frozen": pick(y, frozen), "looped_auc": auc(y, looped), "frozen_auc": auc(y, frozen),
            "versions": ",".join(g.get_column("version").unique(maintain_order=True).to_list()),
        })  # fmt: skip
    return pl.DataFrame(out, schema=cols)


def _metric_fn(cfg: LoopConfig) -> Callable[[Any, Any], float]:
    from modelminder.metrics import average_precision

    if cfg.metric == "auc":
        return auc
    if cfg.metric == "average_precision":
        return average_precision
    return lambda y, p: recall_at_alert_rate(y, p, cfg.alert_rate) if len(y) else math.nan
