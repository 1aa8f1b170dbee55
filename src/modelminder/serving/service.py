"""The live path: log the event, compute features with the online engine, score, decide, record.

:class:`Service` owns the online engine (rebuilt from the log at start), the loaded champion and
shadow models, and the prediction log. It is transport-free: the HTTP app and the stream runner
call it. Order of work per event: append to the log first (a 2xx means it is durable), then
features (the same engine as replay), then the champion's score and decision, then the record.
An event id already in the log is never folded into the state twice: a retry gets the
prediction recorded the first time.

What is served follows the registry: before each batch the service asks whether another
process committed to the registry since it last looked (``PRAGMA data_version``, tens of
microseconds), and if the aliases moved (``minder models promote|rollback`` from a shell, the
retraining loop), it loads what they now name through the checked path before scoring. A
model that fails to load is not served: the previous one keeps serving and a warning is
logged.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelminder.clock import Clock, WallClock
from modelminder.errors import MinderError, SchemaError
from modelminder.events.predictions import (
    Prediction,
    PredictionTopic,
    json_value,
    served_features,
)
from modelminder.events.schema import refuse_ahead, validate_label_rows, validate_rows
from modelminder.logreplay import engine_from_log
from modelminder.model.ensemble import Ensemble
from modelminder.model.reference import Reference
from modelminder.monitoring.alerts import Alert, AlertLog
from modelminder.project import Project
from modelminder.registry import Registry, changes
from modelminder.review.policies import DriftTarget
from modelminder.review.queue import ReviewQueue
from modelminder.serving.store import ServingStore
from modelminder.serving.waiting import WaitingLabels

_RETIRED_KEPT = 2  # models served before, kept loaded: a rollback swaps without a load
logger = logging.getLogger(__name__)

_NOT_SCORED = (
    "This event was logged earlier without a score (e.g. via /v1/events); its features were "
    "folded into the state then, so it cannot be scored again. Send events to /v1/predict to "
    "score them."
)


class NoChampionError(MinderError):
    """No model is champion yet: promote one (``minder models promote VERSION``)."""


class ShuttingDown(MinderError):
    """The server is stopping and takes no new work: retry after it restarts."""


@dataclass(frozen=True)
class DecisionPolicy:
    """Decisions by calibrated score: ``approve`` below ``review_at``, ``block`` from
    ``block_at``, ``review`` in between."""

    review_at: float = 0.2
    block_at: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.review_at <= self.block_at <= 1.0:
            raise MinderError(
                "The decision thresholds must satisfy 0 <= review_at <= block_at <= 1. "
                f"Got review_at={self.review_at}, block_at={self.block_at}."
            )

    def decide(self, score: float) -> str:
        if score >= self.block_at:
            return "block"
        return "review" if score >= self.review_at else "approve"


@dataclass
class Loaded:
    version: str
    model: Ensemble


_TARGETS_EVERY_US = 300_000_000  # how often open drift alerts are re-read for review


def drift_targets(
    alerts: Sequence[Alert], reference: Reference | None, names: Sequence[str], version: str
) -> tuple[DriftTarget, ...]:
    """The review queue's drift targets for the open data-drift alerts on ``version``'s
    numeric features: outside each drifted feature's training 5-95% range."""
    if reference is None:
        return ()
    ranges = {n.name: _central(n.grid, n.counts) for n in reference.numeric}
    drifted = {
        a.subject for a in alerts
        if a.open and a.kind == "data_drift" and a.model_version == version
    }  # fmt: skip
    return tuple(
        DriftTarget(f, names.index(f), *ranges[f])
        for f in sorted(drifted)
        if f in ranges and f in names
    )


def _central(grid: Any, counts: Any) -> tuple[float, float]:
    """The reference's 5-95% range from its quantile grid and cell counts (ties merged, so
    the grid may hold fewer than 101 points): the grid points where the share below first
    reaches 5% and 95%, widened to the cells' edges. Cell j (j >= 1) holds values in
    ``[g_(j-1), g_j)``."""
    share = np.cumsum(np.asarray(counts, dtype=float))
    share = share / share[-1] if share[-1] > 0 else share
    g = np.asarray(grid, dtype=float)
    low, high = np.searchsorted(share, [0.05, 0.95])  # the cells holding each quantile
    return float(g[max(int(low) - 1, 0)]), float(g[min(int(high), len(g) - 1)])


class Service:
    """The live loop for one project (one process; calls are serialized by a lock).

    Examples
    --------
    A new project has no champion yet: events are logged and update the live features, but
    nothing can be scored until a model is promoted (``minder models promote``).

    >>> import tempfile
    >>> from modelminder.project import init_project, load_project
    >>> root = tempfile.mkdtemp()
    >>> _ = init_project(root, builtin=True)
    >>> service = Service(load_project(root))
    >>> import datetime as dt
    >>> now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    >>> event = {"event_id": "e1", "ts": now, "card_id": "c1", "merchant_id": "m1",
    ...          "amount": 12.5, "country": "FR", "channel": "pos"}
    >>> service.ingest([event])
    {'received': 1, 'appended': 1, 'duplicates': 0}
    >>> service.ready
    False
    >>> service.predict([event])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.serving.service.NoChampionError: No model is champion yet, ...
    >>> service.close()
    0
    """

    def __init__(
        self, project: Project, *, policy: DecisionPolicy | None = None, clock: Clock | None = None
    ) -> None:
        self.project = project
        self.policy = policy or DecisionPolicy()
        self.clock = clock or WallClock()
        self.plan = project.plan()
        self.log = project.open_log(self.clock)  # one clock: the log's "now" is the service's
        self._lock = threading.RLock()
        self._closed = False
        self._targets_at = 0
        self.shadow_errors = 0
        self.reload_errors = 0  # alias changes whose models could not be loaded (old kept)
        self.champion: Loaded | None = None
        self.shadow: Loaded | None = None
        self._retired: dict[str, Loaded] = {}
        self._follow_lock = threading.Lock()
        try:
            # Kept open: asking it whether anything changed costs one PRAGMA per batch.
            self.registry = Registry.open(project.root)
            self._registry_seen = self.registry.data_version()
            self.predictions = PredictionTopic(self.log)
            self.review = ReviewQueue(
                self.log, project.review, (self.policy.review_at, self.policy.block_at)
            )
            self.store = ServingStore.open(project.root)
            self._rebuild()
            self.reload_models()  # a model refused here (unsafe, tampered) stops the start
        except BaseException:
            # Close what was opened: a refused start must not leave connections behind.
            if hasattr(self, "store"):
                self.store.close()
            if hasattr(self, "registry"):
                self.registry.close()
            self.log.close()
            raise
        self._shadow_queue: queue.Queue[tuple[list[Prediction], Any, Any] | None] = queue.Queue()
        self._shadow_thread = threading.Thread(target=self._shadow_worker, daemon=True)
        self._shadow_thread.start()

    # -- models ---------------------------------------------------------------------------
    def load_model(self, version: str) -> Loaded:
        """Load a version (see :func:`modelminder.registry.changes.load_model`); raises
        without changing anything."""
        loaded = changes.load_model(
            self.project.root, version, fingerprint=self.plan.feature_set.fingerprint()
        )
        return Loaded(loaded.version, loaded.model)

    def promote(
        self, version: str, *, alias: str, actor: str, reason: str = "", override: bool = False
    ) -> str:
        """Move ``alias`` to ``version`` through the one state-change path (the model is
        loaded and checked first; the move is audited), then serve it. Blocking: call it off
        the event loop."""
        loaded = changes.promote(
            self.project.root, self.log, version, alias=alias,
            fingerprint=self.plan.feature_set.fingerprint(), actor=actor, reason=reason,
            override=override,
        )  # fmt: skip
        self.reload_models({loaded.version: Loaded(loaded.version, loaded.model)})
        return version

    def rollback(self, *, actor: str, reason: str = "rollback") -> str:
        """Move champion back (checked and audited, see :func:`changes.rollback`), then
        serve it. Returns the new champion's version. Blocking: call it off the event loop."""
        loaded = changes.rollback(
            self.project.root, self.log, fingerprint=self.plan.feature_set.fingerprint(),
            actor=actor, reason=reason,
        )  # fmt: skip
        self.reload_models({loaded.version: Loaded(loaded.version, loaded.model)})
        return loaded.version

    def reload_models(self, loaded: Mapping[str, Loaded] | None = None) -> None:
        """Load the champion and the shadow (or challenger) named by the registry's aliases.
        Versions in ``loaded`` (just checked by a promote), those served now and the last
        :data:`_RETIRED_KEPT` served before are not loaded again. Raises (and changes
        nothing) if a model cannot be loaded."""
        aliases = self.registry.aliases()
        previous = [m for m in (self.champion, self.shadow) if m is not None]
        known = {**self._retired, **{m.version: m for m in previous}, **(loaded or {})}

        def load(alias: str) -> Loaded | None:
            version = aliases.get(alias)
            if version is None:
                return None
            return known[version] if version in known else self.load_model(version)

        champion = load("champion")
        shadow = load("shadow") or load("challenger")
        with self._lock:
            self.champion, self.shadow = champion, shadow
            serving = {m.version for m in (champion, shadow) if m is not None}
            retired = {v: m for v, m in self._retired.items() if v not in serving}
            for m in previous:  # the ones just replaced are the most recent (last)
                retired.pop(m.version, None)
                if m.version not in serving:
                    retired[m.version] = m
            self._retired = dict(list(retired.items())[-_RETIRED_KEPT:])
        self.refresh_review_targets()

    def follow_registry(self) -> bool:
        """Serve what the registry's aliases name now, if another process moved them since
        the last look (called before each batch). Cheap when nothing changed: one ``PRAGMA
        data_version``. A model that cannot be loaded (tampered, another feature set) is
        not served: the models served so far stay, a warning is logged and
        :attr:`reload_errors` counts it; it is tried again at the registry's next change.
        Returns whether the served models changed."""
        if self._closed:
            return False
        try:
            version = self.registry.data_version()
        except Exception as exc:  # a registry that cannot be read must not stop scoring
            logger.warning("could not check the model registry for changes: %s", exc)
            return False
        if version == self._registry_seen:
            return False
        with self._follow_lock:  # one reload at a time; the others then see it done
            if version == self._registry_seen:
                return False
            # Seen before loading: a model that fails is not retried on every request.
            self._registry_seen = version
            before = self._serving()
            wanted: tuple[str | None, str | None] = ("?", "?")
            try:
                aliases = self.registry.aliases()
                wanted = (
                    aliases.get("champion"),
                    aliases.get("shadow") or aliases.get("challenger"),
                )
                if wanted == before:
                    return False  # another version registered, or this server's own promote
                self.reload_models()
            except Exception as exc:  # serving goes on with what it has
                self.reload_errors += 1
                logger.warning(
                    "The model registry now names champion %s and shadow %s, but they could "
                    "not be served (%s: %s); serving champion %s and shadow %s. Fix the "
                    "model or move the alias back (minder models rollback).",
                    *(v or "none" for v in wanted),
                    type(exc).__name__,
                    exc,
                    *(v or "none" for v in self._serving()),
                )
                return self._serving() != before
            return self._serving() != before

    def _serving(self) -> tuple[str | None, str | None]:
        """The versions served now: (champion, shadow)."""
        champion, shadow = self.champion, self.shadow
        return (
            None if champion is None else champion.version,
            None if shadow is None else shadow.version,
        )

    def refresh_review_targets(self) -> None:
        """Point the review queue's drift policy at the open data-drift alerts on the
        champion's features: values outside the training's 5-95% range of a drifted feature
        (:class:`~modelminder.review.policies.DriftTarget`). Called when models change, when
        the monitor runs here, and every few minutes while serving (alerts recorded by
        ``minder monitor`` in another process count too)."""
        self._targets_at = self.clock.now_us()
        champion = self.champion
        if champion is None:
            self.review.drift_targets = ()
            return
        reference = self.registry.get(champion.version).card.reference
        with self._lock:
            alerts = AlertLog(self.log).read()
        self.review.drift_targets = drift_targets(
            alerts, reference, self.plan.names, champion.version
        )

    @property
    def ready(self) -> bool:
        return self.champion is not None

    # -- events ---------------------------------------------------------------------------
    def validate(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The batch's rows, normalized; raises :class:`SchemaError` (naming the field) if any
        event is invalid. Touches nothing."""
        rows = validate_rows(events, self.log.schema.fields, ("ts",), self.log.schema.rules)
        self._check_times(rows, "ts", "Event", not_before=True)
        ids = [r["event_id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise SchemaError("The batch repeats an event_id; send each event once.")
        return rows

    def _check_times(
        self, rows: list[dict[str, Any]], name: str, what: str, *, not_before: bool
    ) -> None:
        """Refuse times implausibly far from the server's clock ([serving] in minder.toml).
        A time in the future would sit in every window until its time came and then vanish;
        one decades old would stretch every report over empty windows: clock or data errors
        at the source, refused rather than folded."""
        cfg = self.project.serving
        now = self.clock.now_us()
        refuse_ahead(
            [r["event_id"] for r in rows], [r[name] for r in rows], name, what, now=now,
            lead_us=cfg.max_event_lead_us, lead_text=cfg.max_event_lead,
            setting="[serving].max_event_lead",
        )  # fmt: skip
        if not_before:  # (a label's time may be old: it is when it became true)
            old = [r for r in rows if r[name] < now - cfg.max_event_age_us]
            if old:
                raise SchemaError(
                    f"Event {old[0]['event_id']!r}: field 'ts' is more than "
                    f"{cfg.max_event_age} before the server's clock ({len(old)} such event(s) "
                    "in the batch; [serving].max_event_age). Import history with minder "
                    "ingest instead. Nothing was written."
                )

    def _new_events(self, rows: list[dict[str, Any]]) -> set[str]:
        """Append validated rows (see :meth:`validate`); the ids that were already logged."""
        ids = [r["event_id"] for r in rows]
        new = self.log.append_event_rows(rows)
        return {i for i, is_new in zip(ids, new, strict=True) if not is_new}

    def _fold(self, row: dict[str, Any]) -> Any:
        """Fold one new event into the live state (after any label that arrived before it,
        as replay does); its features as a vector."""
        waiting = self._waiting.pop(row["event_id"])
        if waiting:  # the first known counts (events.outcomes.feature_label_rule)
            first = min(waiting, key=lambda w: w.known_at)
            self.engine.add_label(row, first.value, first.known_at)
        return self.engine.process_vector(row)

    @contextmanager
    def _consistent(self) -> Iterator[None]:
        """One transaction whose failure also undoes what it did to the live state: the state
        is rebuilt from the log, which the rollback left as the truth."""
        with self._lock:
            self._check_open()
            try:
                with self.log.transaction():
                    yield
            except BaseException:
                self._rebuild()
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise ShuttingDown(
                "The server is shutting down and takes no new work; retry after it restarts."
            )

    def _rebuild(self) -> None:
        started = time.perf_counter()
        self.engine = engine_from_log(self.log, self.plan)
        cfg = self.project.serving
        self._waiting = WaitingLabels.from_log(
            self.log, cfg.max_waiting_labels, cfg.label_wait_us, self.clock.now_us()
        )
        self.rebuild_seconds = time.perf_counter() - started

    def ingest(self, events: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Append events without scoring; new ones are folded into the live state."""
        rows = self.validate(events)  # before the transaction: a bad batch costs no rebuild
        with self._consistent():
            known = self._new_events(rows)
            fresh = [r for r in rows if r["event_id"] not in known]
            for row in fresh:
                self._fold(row)
        return {"received": len(rows), "appended": len(fresh), "duplicates": len(known)}

    def predict(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Score a batch of events (in order) with the champion; see the module docstring."""
        self.follow_registry()
        champion = self.champion
        if champion is None:
            raise NoChampionError(
                "No model is champion yet, so nothing can be scored. Train one (minder train) "
                "and promote it (minder models promote VERSION)."
            )
        results: list[dict[str, Any] | None] = []
        served: list[Prediction] = []
        started = time.perf_counter()
        rows = self.validate(events)  # before the transaction: a bad batch costs no rebuild
        # One transaction: the events and their predictions commit together, once.
        with self._consistent():
            known = self._new_events(rows)
            fresh: list[tuple[int, str]] = []  # (position in the answer, event_id)
            vectors = []
            for row in rows:
                event_id = row["event_id"]
                if event_id in known:
                    results.append(self._previous(event_id))
                    continue
                # Fold in order: each event's features see exactly the events before it.
                vectors.append(self._fold(row))
                fresh.append((len(results), event_id))
                results.append(None)
            if fresh:
                X = np.vstack(vectors)
                scores = champion.model.predict(X)  # one call for the batch: same scores
                latency_us = int((time.perf_counter() - started) * 1e6)
                now = self.clock.now_us()
                for k, (at, event_id) in enumerate(fresh):
                    score = float(scores[k])
                    decision = self.policy.decide(score)
                    # Reasons where someone acts on the decision: contributions cost more than
                    # the prediction itself, and most events are approved.
                    x = X[k : k + 1]
                    reasons = (
                        _reasons(champion.model, x, self.plan.names)
                        if decision != "approve"
                        else []
                    )
                    p = Prediction(
                        event_id=event_id,
                        served_at=now,
                        model_version=champion.version,
                        role="champion",
                        score=score,
                        decision=decision,
                        latency_us=latency_us,
                        features=served_features(x[0].tolist()),
                        reasons=reasons,
                    )
                    served.append(p)
                    results[at] = p.to_dict() | {"duplicate": False}
            self.predictions.append(served)
            by_id = {r["event_id"]: r for r in rows}
            if served and self.shadow is None:  # review samples what was served, same commit
                self.review.consider(served, by_id, now=served[0].served_at)
            self.last_batch_seconds = time.perf_counter() - started
        if served and served[0].served_at - self._targets_at > _TARGETS_EVERY_US:
            # Off the batch's transaction: the registry and alert reads hold no write lock.
            self.refresh_review_targets()
        if self.shadow is not None and served:  # only once the events are committed
            # With a shadow, review sampling waits for its decisions (the disagreement
            # policy needs both); the worker queues them a moment later.
            self._shadow_queue.put((served, self.shadow, by_id))
        return [r for r in results if r is not None]

    def _previous(self, event_id: str) -> dict[str, Any]:
        """The answer first given for an event already logged (a retry)."""
        previous = [p for p in self.predictions.for_event(event_id) if p.role == "champion"]
        if previous:
            return previous[0].to_dict() | {"duplicate": True}
        return {"event_id": event_id, "duplicate": True, "score": None, "note": _NOT_SCORED}

    def _shadow_worker(self) -> None:
        """Score served features with the shadow, off the request path; record, never decide.
        A failure is reported and skipped: it never stops the worker or the live path."""
        while True:
            item = self._shadow_queue.get()
            try:
                if item is None:
                    return
                served, shadow, rows = item
                decided: dict[str, str] | None = None
                try:
                    decided = self._score_shadow(served, shadow)
                finally:  # queue for review even when the shadow failed (no disagreement)
                    with self._lock, self.log.transaction():
                        self.review.consider(served, rows, now=served[0].served_at, shadow=decided)
            except Exception as exc:  # a broken shadow must not take serving down
                self.shadow_errors += 1
                logging.getLogger(__name__).warning("shadow scoring failed: %s", exc)
            finally:
                self._shadow_queue.task_done()

    def _score_shadow(self, served: list[Prediction], shadow: Loaded) -> dict[str, str]:
        """Score served features with the shadow and record them; its decisions by event."""
        X = np.array([[math.nan if v is None else v for v in p.features] for p in served])
        scores = shadow.model.predict(X)
        made = [
            Prediction(
                p.event_id, self.clock.now_us(), shadow.version, "shadow", float(s),
                self.policy.decide(float(s)), 0, p.features, [],
            )
            for p, s in zip(served, scores, strict=True)
        ]  # fmt: skip
        self.predictions.append(made)
        return {p.event_id: p.decision for p in made}

    def flush_shadow(self) -> None:
        """Wait until every queued shadow score is recorded (or has failed)."""
        self._shadow_queue.join()

    # -- labels ---------------------------------------------------------------------------
    def add_labels(self, labels: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Append labels arriving live (known from the later of label_ts and now) and fold the
        new ones into the label-aware state; a label whose event has not arrived yet waits for
        it (bounded: :mod:`modelminder.serving.waiting`). A re-sent label (same event and
        source) changes nothing."""
        return self.log_labels(validate_label_rows(labels, self.log.schema.label))

    def log_labels(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """:meth:`add_labels` for rows already validated (``label_ts`` in UTC microseconds),
        which may also carry ``revision``, ``reviewer`` and ``note``: the review queue's
        labels and corrections (:mod:`modelminder.review.queue`)."""
        label = self.log.schema.label
        self.log.refuse_future_labels(rows)  # the log's rule, asked before any work
        now = self.clock.now_us()
        with self._lock:
            self._check_open()
            logged = {
                r["event_id"]: r
                for r in self.log.events_by_id([r["event_id"] for r in rows]).iter_rows(named=True)
            }
            # Refused before the transaction: a full waiting room costs no rebuild.
            orphans = [r["event_id"] for r in rows if r["event_id"] not in logged]
            self._waiting.admit(self.log, orphans, now)
            with self._consistent():
                # Only an event's first known label feeds label-aware features (the rule in
                # events.outcomes): those already counted are skipped, as replay skips them.
                counted = self.log.feature_labelled(list(logged))
                inserted = self.log.append_label_rows(rows, received_at_us=now)
                fresh = [r for r, new in zip(rows, inserted, strict=True) if new]
                for lab in fresh:
                    known_at = max(int(lab["label_ts"]), now)
                    value = float(lab[label])
                    event = logged.get(lab["event_id"])
                    if event is None:
                        self._waiting.add(lab["event_id"], lab["source"], value, known_at)
                    elif lab["event_id"] not in counted:
                        counted.add(lab["event_id"])
                        self.engine.add_label(event, value, known_at)
        return {"received": len(rows), "appended": len(fresh)}

    def close(self) -> int:
        """Stop taking work (later calls raise :class:`ShuttingDown`), wait for the request in
        progress, record every queued shadow score, then close the log (SQLite folds its WAL
        back into the database file). Returns the shadow batches drained; idempotent."""
        with self._lock:  # a request in progress finishes first
            if self._closed:
                return 0
            self._closed = True
        drained = self._shadow_queue.qsize()
        self._shadow_queue.put(None)  # after everything queued: the worker drains in order
        self._shadow_thread.join()
        self.log.close()
        self.store.close()
        self.registry.close()
        return drained


def _reasons(
    model: Ensemble, x: np.ndarray, names: list[str], top: int = 3
) -> list[dict[str, Any]]:
    """The features that pushed the score most (see :meth:`Ensemble.contributions`)."""
    contrib = model.contributions(x)
    if contrib is None:
        return []
    order = np.argsort(-np.abs(contrib))[:top]
    return [
        {
            "feature": names[i],
            "value": json_value(float(x[0, i])),  # missing is null, ±inf "Infinity"
            "contribution": float(contrib[i]),
        }
        for i in order
    ]
