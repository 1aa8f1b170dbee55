"""Project-level operations that span packages: train and register, score, evaluate.

The CLI (and later the HTTP API and the retraining loop) call these; they only compose the
packages' public APIs: the log, the feature engine, training and the registry.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from modelminder.clock import WallClock
from modelminder.errors import RegistryError, TrainingError
from modelminder.features.plan import Plan
from modelminder.jsonable import jsonable
from modelminder.logreplay import replay_log
from modelminder.metrics import scores
from modelminder.model.ensemble import Ensemble
from modelminder.project import Project
from modelminder.registry import ALIASES, ModelRecord, Registry
from modelminder.training.dataset import LabelPolicy, build_training_set
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


def train_and_register(
    project: Project,
    config: TrainConfig,
    *,
    cutoff: int | None = None,
    from_ts: int | None = None,
    policy: LabelPolicy | None = None,
    rules: GateRules | None = None,
    progress: Callable[[str], None] | None = None,
    on_trial: Callable[[int, int, float], None] | None = None,
) -> Trained:
    """Build the training set, train under the guard, register the model (accepted or
    rejected, with the reasons)."""
    say = progress or (lambda _m: None)
    now = WallClock().now_us()
    plan = project.plan()
    with project.open_log() as log:
        latest = log.max_event_ts()
        if latest is None:
            raise TrainingError("The log has no events yet. Ingest events (and labels) first.")
        cut = latest + 1 if cutoff is None else cutoff
        data = build_training_set(
            log, plan, cutoff=cut, now=max(now, latest + 1), policy=policy, from_ts=from_ts
        )
        say(f"training set: {data.describe()}")
        result = train_model(
            data, config, rules, log=log, plan=plan, progress=say, on_trial=on_trial
        )
        meta = {
            "feature_set": plan.feature_set.name,
            "fingerprint": plan.feature_set.fingerprint(),
            "feature_names": plan.names,
            "estimator": result.model.estimator,
            "params": result.model.params,
            "training": data.to_meta(),
            "metrics": result.metrics,
            "report": result.report,
            "monitor_reference": result.reference,
            "config": {
                "trials": config.trials,
                "folds": config.folds,
                "holdout": config.holdout,
                "embargo": config.embargo,
                "scheme": config.scheme,
                "seed": config.seed,
            },
        }
        with Registry.open(project.root, log) as reg:
            record = reg.register(
                result.model.to_files(),
                jsonable(meta),
                status="accepted" if result.verdict.passed else "rejected",
                reasons=result.verdict.reasons,
                created_by=actor(),
            )
    return Trained(record, result, data.describe())


def resolve(reg: Registry, ref: str) -> str:
    """The version a reference names: an alias (``champion``...) or a version itself."""
    if ref not in ALIASES:
        return ref
    version = reg.alias(ref)
    if version is None:
        raise RegistryError(
            f"No model is {ref} yet. Promote one: minder models promote VERSION --alias {ref}"
        )
    return version


def load_model(
    project: Project, ref: str, *, fingerprint: str | None = None
) -> tuple[ModelRecord, Ensemble]:
    """A registered model by version (``v3``) or alias (``champion``), checked against the
    project's feature set (``fingerprint``, computed if not given), then checksum-verified."""
    fingerprint = fingerprint or project.plan().feature_set.fingerprint()
    with Registry.open(project.root) as reg:
        version = resolve(reg, ref)
        record = reg.get(version)
        if record.meta.get("fingerprint") != fingerprint:
            raise RegistryError(
                f"Model {version} was trained on a different feature set (fingerprint "
                f"{str(record.meta.get('fingerprint'))[:12]}, project has {fingerprint[:12]}). "
                "Its features cannot be computed here; retrain it on the current feature set."
            )
        return record, Ensemble.from_files(reg.load_files(version))


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
    X = np.ascontiguousarray(table.select(record.meta["feature_names"]).to_numpy(), np.float64)
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
    pol = record.meta.get("training", {}).get("label_policy", {})
    policy = LabelPolicy(
        pol.get("unlabeled", "negative_after_maturity"), pol.get("maturity", "30d")
    )
    with project.open_log() as log:
        latest = log.max_event_ts() or 0
        labels = (
            log.read("labels")
            .sort("known_at")
            .group_by("event_id")
            .agg(pl.col(plan.feature_set.label_value).last().alias("value"))
        )
    joined = scored.join(labels, on="event_id", how="left")
    mature = pl.col("ts") + policy.maturity_us <= latest
    labelled = pl.col("value").is_not_null()
    keep = labelled if policy.unlabeled == "exclude" else mature
    joined = joined.with_columns(
        label=(labelled & (pl.col("value") > 0.5)).cast(pl.Int8), _keep=keep
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
    metrics = record.meta.get("metrics", {})
    oot = metrics.get("oot") or {}
    return {
        "version": record.version,
        "created": dt.datetime.fromtimestamp(record.created_at / 1e6, dt.UTC).strftime(
            "%Y-%m-%d %H:%M"
        ),
        "status": record.status,
        "estimator": record.meta.get("estimator", "?"),
        "oot_auc": oot.get("auc"),
        "oot_ap": oot.get("average_precision"),
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
