"""The review queue: selection recorded with its probability, leases, verdicts as labels."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from modelminder.errors import SchemaError
from modelminder.events.log import EventLog
from modelminder.events.predictions import Prediction
from modelminder.events.schema import EventSchema
from modelminder.project import ReviewConfig
from modelminder.review.policies import draw
from modelminder.review.queue import ReviewError, ReviewQueue, UnknownItem

MIN = 60_000_000
NOW = 1_780_000_000_000_000
CFG = ReviewConfig(
    exploration_rate=0.0, uncertain_rate=1.0, overlap_rate=0.0, daily_budget=100, lease="15m"
)
SCHEMA = EventSchema({"card_id": "str"})


def _pred(event_id: str, score: float, decision: str) -> Prediction:
    return Prediction(event_id, NOW, "v1", "champion", score, decision, 0, [], [])


_OPEN: list[EventLog] = []


@pytest.fixture(autouse=True)
def _close_logs() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _open(path: Path) -> EventLog:
    log = EventLog.open(path, SCHEMA)
    _OPEN.append(log)
    return log


def _queue(path: Path, n: int = 6, cfg: ReviewConfig = CFG) -> tuple[EventLog, ReviewQueue]:
    log = _open(path)
    log.append_events(
        pl.DataFrame({"event_id": [f"e{i}" for i in range(n)],
                      "ts": ["2026-05-28T00:00:00Z"] * n, "card_id": ["c"] * n})
    )  # fmt: skip
    queue = ReviewQueue(log, cfg)
    served = [_pred(f"e{i}", 0.9, "block") for i in range(n)] + [_pred("x", 0.22, "review")]
    queue.consider(served, {p.event_id: {"ts": NOW - MIN} for p in served}, now=NOW)
    return log, queue


def test_selection_is_recorded_with_its_probability(tmp_path: Path) -> None:
    log = _open(tmp_path / "log.db")
    cfg = ReviewConfig(exploration_rate=0.5, uncertain_rate=0.3, uncertain_band=0.05)
    queue = ReviewQueue(log, cfg)
    served = [_pred(f"e{i}", 0.21, "review") for i in range(400)]
    served += [_pred("b", 0.95, "block")]
    queue.consider(served, {p.event_id: {"ts": NOW} for p in served}, now=NOW)
    items = {i.event_id: i for i in queue.items(now=NOW, limit=10_000)}
    assert items["b"].propensity == 1.0 and "must_review" in items["b"].reasons
    for i in range(400):  # recomputable: exactly the events whose draws fell under the rates
        e = f"e{i}"
        chosen = draw(e, "uncertain") < 0.3 or draw(e, "exploration") < 0.5
        assert (e in items) == chosen
        if chosen:
            assert items[e].propensity == pytest.approx(1 - 0.7 * 0.5)
    # Retrying the same predictions queues nothing twice.
    queue.consider(served, {p.event_id: {"ts": NOW} for p in served}, now=NOW)
    assert len(queue.items(now=NOW, limit=10_000)) == len(items)


def test_a_verdict_is_a_label_in_the_log_and_closes_the_item(tmp_path: Path) -> None:
    log, queue = _queue(tmp_path / "log.db")
    item = queue.claim("alice", now=NOW)
    assert item.status == "leased" and item.reviewer == "alice"
    done = queue.label(item.item_id, "alice", "fraud", now=NOW + MIN, note="card testing")
    assert (done.status, done.verdict) == ("closed", "fraud")
    labels = log.read("labels")
    assert labels.select("event_id", "is_fraud", "source", "known_at").rows() == [
        (item.event_id, 1.0, "review", NOW + MIN)
    ]
    unsure = queue.claim("alice", now=NOW + MIN)
    queue.label(unsure.item_id, "alice", "unsure", now=NOW + MIN)
    assert log.read("labels").height == 1  # unsure is recorded on the item, not as a label
    assert queue.stats(now=NOW + MIN)["verdicts"] == {"fraud": 1, "legit": 0, "unsure": 1}


def test_bad_actions_get_clear_errors_and_change_nothing(tmp_path: Path) -> None:
    log, queue = _queue(tmp_path / "log.db")
    item = queue.claim("alice", now=NOW)
    before = log.database.fetch("SELECT COUNT(*) FROM review_events")
    with pytest.raises(UnknownItem, match="No review item 999"):
        queue.label(999, "alice", "fraud", now=NOW)
    with pytest.raises(SchemaError, match="'verdict' must be one of fraud, legit, unsure"):
        queue.label(item.item_id, "alice", "maybe", now=NOW)
    with pytest.raises(ReviewError, match="held by alice, not you"):
        queue.label(item.item_id, "bob", "fraud", now=NOW)
    with pytest.raises(ReviewError, match="no lease"):  # alice's lease ran out
        queue.label(item.item_id, "alice", "fraud", now=NOW + 16 * MIN)
    assert log.database.fetch("SELECT COUNT(*) FROM review_events") == before
    assert log.read("labels").height == 0
    again = queue.claim("bob", now=NOW + 16 * MIN, item_id=item.item_id)  # it came back
    queue.label(again.item_id, "bob", "legit", now=NOW + 17 * MIN)
    with pytest.raises(ReviewError, match="already closed"):
        queue.label(again.item_id, "bob", "fraud", now=NOW + 18 * MIN)
    assert log.read("labels").get_column("is_fraud").to_list() == [0.0]


def test_skip_returns_the_item_to_others_and_an_outside_label_expires_it(tmp_path: Path) -> None:
    log, queue = _queue(tmp_path / "log.db", n=2)
    first = queue.claim("alice", now=NOW)
    queue.skip(first.item_id, "alice", "needs the merchant's records", now=NOW)
    assert queue.claim("alice", now=NOW).item_id != first.item_id  # not offered again to her
    assert queue.claim("bob", now=NOW).item_id == first.item_id  # but to others
    other = next(i for i in queue.items(now=NOW) if i.event_id == "x")
    log.append_labels(
        pl.DataFrame({"event_id": ["x"], "is_fraud": [1.0], "label_ts": ["2026-05-01"],
                      "source": ["chargeback"]})
    )  # fmt: skip
    assert queue.get(other.item_id, now=NOW).status == "expired"


def test_the_daily_budget_stops_claims(tmp_path: Path) -> None:
    _, queue = _queue(tmp_path / "log.db", cfg=ReviewConfig(exploration_rate=0.0, daily_budget=1))
    item = queue.claim("alice", now=NOW)
    queue.label(item.item_id, "alice", "legit", now=NOW)
    with pytest.raises(ReviewError, match="budget is spent"):
        queue.claim("alice", now=NOW)


def test_reviewers_racing_never_hold_or_label_the_same_item(tmp_path: Path) -> None:
    """Four reviewers, each with their own connection (as separate processes would have),
    claim and label as fast as they can; every item is labelled exactly once."""
    path = tmp_path / "log.db"
    log, _ = _queue(path, n=40)
    _OPEN.remove(log)
    log.close()
    labelled: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        mine: list[int] = []
        with EventLog.open(path, SCHEMA) as own:
            q = ReviewQueue(own, CFG)
            while True:
                try:
                    item = q.claim(name, now=NOW)
                except ReviewError:
                    break
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    break
                try:
                    q.label(item.item_id, name, "fraud", now=NOW)
                    mine.append(item.item_id)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    break
        labelled[name] = mine

    threads = [threading.Thread(target=work, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    done = [i for ids in labelled.values() for i in ids]
    assert len(done) == len(set(done)) == 41  # 40 blocked + 1 uncertain, each once
    with EventLog.open(path, SCHEMA) as check:
        assert check.read("labels").height == 41
        kinds = check.database.fetch("SELECT kind, COUNT(*) FROM review_events GROUP BY kind")
        assert dict(kinds) == {"claimed": 41, "labelled": 41}


def test_a_crashed_reviewers_lease_expires_and_the_item_returns(tmp_path: Path) -> None:
    _, queue = _queue(tmp_path / "log.db", n=1)
    held = queue.claim("crashed", now=NOW)
    with pytest.raises(ReviewError, match="is leased by crashed"):
        queue.claim("bob", now=NOW + 14 * MIN, item_id=held.item_id)
    back = queue.claim("bob", now=NOW + 15 * MIN, item_id=held.item_id)
    assert back.reviewer == "bob" and back.lease_until == NOW + 30 * MIN


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('value_field = "country"', "must name a numeric event field: one of amount"),
        ('value_field = "nope"', "[review].value_field"),
        ("drift_rate = 1.5", "[review].drift_rate must be a number in [0, 1]"),
        ("exploration_share = -0.1", "[review].exploration_share must be a number in [0, 1]"),
    ],
)
def test_bad_review_config_names_the_key_and_the_allowed_values(
    tmp_path: Path, line: str, said: str
) -> None:
    from modelminder.errors import ConfigError
    from modelminder.project import init_project, load_project

    init_project(tmp_path, builtin=True)
    config = tmp_path / "minder.toml"
    key = line.split(" = ")[0]
    text = "\n".join(x for x in config.read_text().splitlines() if not x.startswith(f"{key} = "))
    config.write_text(text.replace("[review]\n", f"[review]\n{line}\n"))
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_project(tmp_path)
