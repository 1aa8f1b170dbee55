"""An infinite served feature is a value, not a missing one: logged, read back and compared as
``inf`` (the skew check sees no skew), and sent over HTTP as the string "Infinity"."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from modelminder.clock import SimulatedClock
from modelminder.events.predictions import PredictionTopic
from modelminder.logreplay import mismatched_rows
from modelminder.project import Project, init_project, load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Loaded, Service
from modelminder.workflows import check_skew

FEATURES = """
from modelminder.features.dsl import Compute, FeatureSet, Window, col, count, lit, mean

FEATURES = FeatureSet(
    "ratios",
    [
        Window("card_count_1d", count(), by="card_id", window="1d"),
        Window("card_amount_mean_1d", mean("amount"), by="card_id", window="1d"),
        # Over a mean of one subnormal amount: +inf and -inf (a division by exactly 0 is
        # missing, by the engine's rules; this is a division by a tiny number).
        Compute("amount_vs_mean", col("amount") / col("card_amount_mean_1d")),
        Compute("minus_amount_vs_mean", (lit(0.0) - col("amount")) / col("card_amount_mean_1d")),
    ],
    allowed_lateness="1h",
)
"""
NAMES = ["card_count_1d", "card_amount_mean_1d", "amount_vs_mean", "minus_amount_vs_mean"]


class Constant:
    """A stand-in champion: scores every event 0.01 (approve, so no reasons are computed)."""

    def predict(self, X: Any) -> Any:
        return np.full(len(X), 0.01)


def _event(event_id: str, ts: str, amount: float) -> dict[str, Any]:
    return {
        "event_id": event_id, "ts": ts, "card_id": "c1", "merchant_id": "m1",
        "amount": amount, "country": "US", "channel": "online",
    }  # fmt: skip


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Project, Service]]:
    root = tmp_path / "p"
    init_project(root)
    (root / "features.py").write_text(FEATURES)
    project = load_project(root)
    assert project.plan().names == NAMES
    now = dt.datetime(2024, 3, 1, 12, 5, tzinfo=dt.UTC)
    service = Service(project, clock=SimulatedClock(int(now.timestamp()) * 1_000_000))
    service.champion = Loaded("v-test", Constant())  # type: ignore[arg-type]
    try:
        service.predict(
            [
                _event("e1", "2024-03-01T12:00:00Z", 5e-324),  # its own features: missing
                _event("e2", "2024-03-01T12:01:00Z", 100.0),  # 100 / 5e-324 = inf
            ]
        )
        yield project, service
    finally:
        service.close()


def test_an_infinite_served_feature_reads_back_as_inf_and_shows_no_skew(
    served: tuple[Project, Service],
) -> None:
    project, service = served
    (first,) = service.predictions.for_event("e1")
    (second,) = service.predictions.for_event("e2")
    assert first.features == [0.0, None, None, None]  # missing stays missing
    assert second.features == [1.0, 5e-324, math.inf, -math.inf]
    with project.open_log() as log:
        frame = PredictionTopic(log).frame()
    vectors = frame.get_column("features").to_list()
    assert vectors[1] == [1.0, 5e-324, math.inf, -math.inf]
    assert all(math.isnan(v) for v in vectors[0][1:])
    report, checked = check_skew(project)
    assert checked == 2
    assert report.ok, report.examples


def test_http_sends_an_infinite_feature_as_the_string_infinity(
    served: tuple[Project, Service],
) -> None:
    _, service = served
    with TestClient(create_app(service, open_access=True)) as client:
        second = client.get("/v1/predictions/e2")
        first = client.get("/v1/predictions/e1")
    assert second.status_code == 200, second.text
    assert second.json()["predictions"][0]["features"] == [1.0, 5e-324, "Infinity", "-Infinity"]
    assert first.json()["predictions"][0]["features"] == [0.0, None, None, None]


def test_skew_comparison_tells_inf_from_missing() -> None:
    """inf == inf and NaN == NaN (no skew); inf against NaN, or against -inf, is skew."""
    inf, nan = math.inf, math.nan
    a = pl.DataFrame({"event_id": ["a", "b", "c", "d"], "x": [inf, nan, inf, inf]})
    b = pl.DataFrame({"event_id": ["a", "b", "c", "d"], "x": [inf, nan, nan, -inf]})
    assert mismatched_rows(a, b, ["x"])["x"].tolist() == [2, 3]
