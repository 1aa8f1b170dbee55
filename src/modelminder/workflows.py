"""Project-level operations that span packages: train and register, score, evaluate.

The CLI (and later the HTTP API and the retraining loop) call these; they only compose the
packages' public APIs: the log, the feature engine, training and the registry.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from modelminder.clock import Clock
from modelminder.errors import ArtifactError, TrainingError
from modelminder.events.delays import maturity_from_log, parse_request
from modelminder.events.outcomes import LabelPolicy, latest_time, outcomes
from modelminder.features.plan import Plan
from modelminder.jsonable import jsonable
from modelminder.logreplay import replay_log
from modelminder.metrics import scores
from modelminder.model.card import ModelCard
from modelminder.model.ensemble import Ensemble
from modelminder.project import Project
from modelminder.registry import ModelRecord, Registry, changes
from modelminder.training.dataset import TrainingSet, build_training_set
from modelminder.training.gate import GateRules
from modelminder.training.train import TrainConfig, TrainResult, train_model

DAY_US = 86_400_000_000


def actor() -> str:
    """Who is acting: ``$MODELMINDER_ACTOR``, else the OS user."""
    return os.environ.get("MODELMINDER_ACTOR") or f"{getpass.getuser()} (cli)"


@dataclass
class Trained:
    record: ModelRecord
    result: TrainResult
    data_summary: str
    data: TrainingSet | None = None  # the rows it was trained and judged on


def train_and_register(
    project: Project,
    config: TrainConfig,
    *,
    cutoff: int | None = None,
    from_ts: int | None = None,
    policy: LabelPolicy | None = None,
    maturity: str | None = None,
    rules: GateRules | None = None,
    progress: Callable[[str], None] | None = None,
    on_trial: Callable[[int, int, float], None] | None = None,
    features: pl.DataFrame | None = None,
    clock: Clock | None = None,
) -> Trained:
    """Build the training set, train under the guard, register the model (accepted or
    rejected, with the reasons).

    ``maturity`` replaces the policy's: ``"auto"`` (or ``"auto:0.99"``) estimates it from how
    late the positive labels known by the cut-off arrived, a duration is used as given; None
    keeps the policy's (as given). Either way the evidence is printed with the fold plan and
    kept in the model card (:mod:`modelminder.events.delays`).

    ``features`` (a replay computed earlier, see :func:`build_training_set`) and ``clock``
    (the time of the registration and its audit records) are what the loop's backtest
    passes."""
    say = progress or (lambda _m: None)
    plan = project.plan()
    policy = policy or LabelPolicy()
    requested = policy.maturity if maturity is None else maturity
    _, given = parse_request(requested)  # a bad --maturity is refused before any work
    with project.open_log(clock) as log:
        now = log.clock.now_us()
        latest = log.max_event_ts()
        if latest is None:
            raise TrainingError("The log has no events yet. Ingest events (and labels) first.")
        cut = latest + 1 if cutoff is None else cutoff
        evidence = None
        if policy.unlabeled != "exclude":
            evidence = maturity_from_log(log, requested, as_of=cut)
            policy = replace(policy, maturity=evidence.maturity)
        elif given is not None:  # kept as given; unused, as excluded events never mature
            policy = replace(policy, maturity=given)
        data = build_training_set(
            log, plan, cutoff=cut, now=max(now, latest + 1), policy=policy, from_ts=from_ts,
            maturity=evidence, features=features,
        )  # fmt: skip
        say(f"training set: {data.describe()}")
        result = train_model(
            data, config, rules, log=log, plan=plan, progress=say, on_trial=on_trial
        )
        card = ModelCard(
            plan.feature_set.name,
            plan.feature_set.fingerprint(),
            tuple(plan.names),
            result.model.estimator,
            result.model.params,
            data.summary(),
            result.report,
            result.reference,
            {
                "trials": config.trials,
                "folds": config.folds,
                "holdout": config.holdout,
                "embargo": config.embargo,
                "scheme": config.scheme,
                "seed": config.seed,
                "recency_half_life": config.recency_half_life,
            },
        )
        with Registry.open(project.root, log) as reg:
            record = reg.register(
                result.model.to_files(),
                card.to_json(),
                status="accepted" if result.verdict.passed else "rejected",
                reasons=result.verdict.reasons,
                created_by=actor(),
            )
    return Trained(record, result, data.describe(), data)


def load_model(
    project: Project, ref: str, *, fingerprint: str | None = None
) -> tuple[ModelRecord, Ensemble]:
    """A registered model by version (``v3``) or alias (``champion``), checked against the
    project's feature set, then checksum-verified (see :func:`changes.load_model`)."""
    loaded = changes.load_model(project.root, ref, fingerprint=fingerprint or project.fingerprint())
    return loaded.record, loaded.model


def score_range(
    project: Project, ref: str, *, from_ts: int | None, to_ts: int | None
) -> pl.DataFrame:
    """Scores of the events with time in ``[from_ts, to_ts)`` by model ``ref``:
    ``event_id, ts, score``, in log order."""
    plan = project.plan()
    record, model = load_model(project, ref, fingerprint=plan.feature_set.fingerprint())
    return _score(project, plan, record, model, from_ts, to_ts)


def _score(
    project: Project,
    plan: Plan,
    record: ModelRecord,
    model: Ensemble,
    from_ts: int | None,
    to_ts: int | None,
) -> pl.DataFrame:
    if from_ts is not None and to_ts is not None and from_ts >= to_ts:
        raise TrainingError("The time range is empty: --from must be before --to.")
    with project.open_log() as log:
        table = replay_log(log, plan, from_ts=from_ts, to_ts=to_ts)
        ts = log.read("events", from_ts=from_ts, to_ts=to_ts).select("event_id", "ts")
    if table.height == 0:
        raise TrainingError("No events in that time range. Check --from/--to against the log.")
    X = np.ascontiguousarray(table.select(record.card.feature_names).to_numpy(), np.float64)
    out = table.select("event_id").with_columns(pl.Series("score", model.predict(X)))
    return ts.join(out, on="event_id", how="inner").select("event_id", "ts", "score")


def evaluate_range(
    project: Project, ref: str, *, from_ts: int | None, to_ts: int | None
) -> tuple[dict[str, float], pl.DataFrame, str]:
    """Metrics of model ``ref`` on the range, on labels known now (the model's label policy
    decides unlabelled events): overall, per day, and a note on label coverage."""
    plan = project.plan()
    record, model = load_model(project, ref, fingerprint=plan.feature_set.fingerprint())
    scored = _score(project, plan, record, model, from_ts, to_ts)
    policy = record.card.label_policy
    with project.open_log() as log:
        labels = log.read("labels")
        # "Now" in the log's terms: its latest event or label, never after the clock.
        as_of = min(latest_time(log.max_event_ts(), labels), log.clock.now_us())
    known = outcomes(scored, labels, policy, as_of=as_of, value=plan.feature_set.label_value)
    joined = scored.join(known, on="event_id", how="left").with_columns(
        label=pl.col("outcome"), _keep=pl.col("usable")
    )
    usable = joined.filter(pl.col("_keep"))
    note = (
        f"{usable.height:,} of {joined.height:,} scored events have a known outcome "
        f"({policy.describe()})"
    )
    if usable.height == 0:
        raise TrainingError(
            "None of the scored events has a known outcome yet: " + note + ". Wait for labels, "
            "or evaluate an older range."
        )
    overall = scores(usable.get_column("label").to_numpy(), usable.get_column("score").to_numpy())
    days = []
    by_day = usable.with_columns(day=(pl.col("ts") // DAY_US)).partition_by("day", as_dict=True)
    for (day,), part in sorted(by_day.items()):
        s = scores(part.get_column("label").to_numpy(), part.get_column("score").to_numpy())
        date = dt.datetime.fromtimestamp(int(day) * 86400, dt.UTC).date().isoformat()
        days.append({"day": date, **s})
    return overall, pl.DataFrame(days), note


def record_summary(record: ModelRecord, aliases: dict[str, str]) -> dict[str, Any]:
    """A short description of a registered model (for listings)."""
    try:
        card = record.card
        estimator, oot_auc, oot_ap = (
            card.estimator,
            card.metrics.oot.auc,
            card.metrics.oot.average_precision,
        )
    except ArtifactError:  # not a model card this version reads
        estimator, oot_auc, oot_ap = "?", math.nan, math.nan
    return {
        "version": record.version,
        "created": dt.datetime.fromtimestamp(record.created_at / 1e6, dt.UTC).strftime(
            "%Y-%m-%d %H:%M"
        ),
        "status": record.status,
        "estimator": estimator,
        "oot_auc": None if math.isnan(oot_auc) else oot_auc,
        "oot_ap": None if math.isnan(oot_ap) else oot_ap,
        "aliases": ",".join(a for a, v in sorted(aliases.items()) if v == record.version),
    }


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), indent=1)


def check_skew(project: Project) -> tuple[Any, int]:
    """Compare the features served (the champion's prediction log) with a replay of the log,
    feature by feature. Returns the parity report and the number of served events checked."""
    from modelminder.events.predictions import PredictionTopic
    from modelminder.monitoring.skew import check_served

    plan = project.plan()
    with project.open_log() as log:
        served = PredictionTopic(log).frame()
        if served.height == 0:
            raise TrainingError("Nothing has been served yet: the prediction log is empty.")
        result = check_served(
            log, plan, served.get_column("event_id").to_list(),
            served.get_column("features").to_list(),
        )  # fmt: skip
    return result.report, result.checked
