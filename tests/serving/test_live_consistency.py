"""The live state never drifts from the log: failures, retried labels, early labels, shadow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pytest

from modelminder.clock import SimulatedClock
from modelminder.errors import SchemaError
from modelminder.events.schema import validate_label_rows
from modelminder.logreplay import replay_log
from modelminder.project import Project
from modelminder.serving.service import Loaded, Service
from modelminder.sim.world import World

from .conftest import live_project


def _body(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in row.items()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, World, int]]:
    yield live_project(tmp_path_factory.mktemp("consistency") / "p", share=0.95, cards=120)


def _served_equals_replay(service: Service, project: Project, ids: list[str]) -> None:
    served = {}
    for event_id in ids:
        p = next(x for x in service.predictions.for_event(event_id) if x.role == "champion")
        served[event_id] = [np.nan if v is None else v for v in p.features]
    replayed = replay_log(service.log, project.plan()).filter(pl.col("event_id").is_in(ids))
    for row in replayed.iter_rows(named=True):
        expected = np.array([row[n] for n in project.plan().names], dtype=float)
        np.testing.assert_allclose(served[row["event_id"]], expected, rtol=1e-9, equal_nan=True)


def test_a_failed_batch_leaves_no_trace_in_the_live_state(
    setup: tuple[Project, World, int],
) -> None:
    project, world, cut = setup
    service = Service(project)
    try:
        rest = world.events.slice(cut)
        card = rest.get_column("card_id")[0]
        same_card = [_body(r) for r in rest.filter(pl.col("card_id") == card).head(2).to_dicts()]
        assert service.champion is not None
        real = service.champion
        calls = {"n": 0}

        class Flaky:
            def predict(self, X: Any) -> Any:
                calls["n"] += 1
                if calls["n"] == 1:  # the batch's one call, after both events were folded
                    raise RuntimeError("model crashed")
                return real.model.predict(X)

        service.champion = Loaded(real.version, Flaky())  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="model crashed"):
            service.predict(same_card)
        service.champion = real
        assert service.log.events_by_id([e["event_id"] for e in same_card]).height == 0
        service.predict(same_card)  # the retry is served as if the failure never happened
        _served_equals_replay(service, project, [e["event_id"] for e in same_card])
    finally:
        service.close()


def test_retried_early_and_second_source_labels_count_once_and_like_replay(
    setup: tuple[Project, World, int],
) -> None:
    project, world, cut = setup
    rest = world.events.slice(cut + 50).to_dicts()
    merchant = rest[0]["merchant_id"]
    first, early, later = [r for r in rest if r["merchant_id"] == merchant][:3]
    us = dt.timedelta(microseconds=1)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    clock = SimulatedClock((first["ts"] - epoch) // us)
    service = Service(project, clock=clock)  # the clock follows the stream, as in replay
    try:
        before = service.predict([_body(first)])[0]["features"]
        label = {
            "event_id": first["event_id"],
            "is_fraud": 1.0,
            "label_ts": (first["ts"] + dt.timedelta(seconds=1)).isoformat(),
            "source": "chargeback",
        }
        for _ in range(3):  # the same label, re-sent: counted once
            assert service.add_labels([label])["appended"] == (1 if _ == 0 else 0)
        # A second source for the same event (a reviewer agrees, then corrects to legit):
        # logged, but the features keep the first known label (events.outcomes.first_known).
        review = {**label, "source": "review"}
        assert service.add_labels([review])["appended"] == 1
        correction = validate_label_rows([review])[0] | {"is_fraud": 0.0, "revision": 1}
        assert service.log_labels([correction | {"reviewer": "ann"}])["appended"] == 1
        # A label that arrives before its event (known 10 s before the event happens)...
        early_label = {
            **label,
            "event_id": early["event_id"],
            "label_ts": (early["ts"] - dt.timedelta(seconds=10)).isoformat(),
        }
        clock.advance_to((early["ts"] - epoch) // us - 10_000_000)
        service.add_labels([early_label, {**early_label, "source": "review"}])  # both wait
        clock.advance_to((early["ts"] - epoch) // us)
        service.predict([_body(early)])  # ... is folded when the event arrives
        clock.advance_to((later["ts"] - epoch) // us)
        served = service.predict([_body(later)])[0]
        # Two events more than when the first was served, each counted once whatever its
        # labels: among the merchant's frauds of the last 28 days and among the chargebacks it
        # received this week (the window over the time labels became known).
        names = project.plan().names
        for name in ("merchant_frauds_28d", "merchant_chargebacks_7d"):
            i = names.index(name)
            assert served["features"][i] - before[i] == 2.0, name
        with pytest.raises(SchemaError, match="'is_fraud' must be 0 or 1"):
            service.add_labels([{**label, "is_fraud": 5.0}])
        _served_equals_replay(service, project, [r["event_id"] for r in (first, early, later)])
    finally:
        service.close()


def test_a_failing_shadow_never_blocks_serving(setup: tuple[Project, World, int]) -> None:
    project, world, cut = setup
    service = Service(project)
    try:

        class Broken:
            def predict(self, X: Any) -> Any:
                raise ValueError("shadow exploded")

        service.shadow = Loaded("vX", Broken())  # type: ignore[arg-type]
        event = _body(world.events.slice(cut + 200).to_dicts()[0])
        result = service.predict([event])[0]
        service.flush_shadow()  # returns although the shadow failed
        assert result["role"] == "champion" and service.shadow_errors == 1
    finally:
        service.close()


def test_a_shadow_that_disagrees_sends_events_to_review(
    setup: tuple[Project, World, int],
) -> None:
    from modelminder.review.policies import Candidate, rates

    project, world, cut = setup
    service = Service(project)
    try:
        champion = service.champion
        assert champion is not None

        class Contrary:  # decides the opposite of the champion on every event
            def predict(self, X: Any) -> Any:
                return 1.0 - champion.model.predict(X)

        service.shadow = Loaded("vS", Contrary())  # type: ignore[arg-type]
        events = [_body(r) for r in world.events.slice(cut + 300, 120).to_dicts()]
        served = service.predict(events)
        service.flush_shadow()  # review selection waits for the shadow's decisions
        items = {i.event_id: i for i in service.review.items(now=2**62, limit=10_000)}
        thresholds = (service.policy.review_at, service.policy.block_at)
        disagreeing = 0
        for s in served:
            shadow = service.policy.decide(1.0 - s["score"])
            c = Candidate(s["event_id"], s["score"], s["decision"], shadow_decision=shadow)
            p = rates(c, thresholds, project.review)
            if s["event_id"] in items:
                item = items[s["event_id"]]
                expected = 1.0
                for r in p.values():
                    expected *= 1.0 - r
                assert item.propensity == pytest.approx(1.0 - expected)
                disagreeing += "disagreement" in item.reasons
        assert disagreeing >= 20  # half of ~120 disagreeing events, drawn by hash
    finally:
        service.close()
