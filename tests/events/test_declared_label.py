"""The label is named by the project ([events].label), not hard-coded: the log, the checks,
the label-aware features, the outcome rule and the HTTP API all follow the one declaration."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from modelminder.errors import ConfigError, LogError, SchemaError
from modelminder.events.log import EventLog
from modelminder.events.outcomes import LabelPolicy, outcomes
from modelminder.events.schema import EventSchema
from modelminder.logreplay import replay_log
from modelminder.project import init_project, load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Service

FEATURES = """
from modelminder.features.dsl import FeatureSet, LabelWindow, Window, count, label_sum

FEATURES = FeatureSet(
    "abuse",
    [
        Window("user_posts_1d", count(), by="user", window="1d"),
        LabelWindow("user_abuse_30d", label_sum(), by="user", window="30d"),
    ],
    label_value="is_abuse",
)
"""


def _project(root: Path) -> Path:
    init_project(root)
    config = root / "minder.toml"
    text = config.read_text()
    start = text.index("fields = ")
    end = text.index("\n", text.index("channel", start))
    text = text[:start] + 'fields = { user = "str", length = "float" }' + text[end:]
    text = text.replace("ranges = { amount = [-1000000, 1000000] }", "")
    text = text.replace('value_field = "amount"', 'value_field = "length"')
    text = text.replace('label = "is_fraud"', 'label = "is_abuse"')
    text = text.replace('max_event_age = "365d"', 'max_event_age = "36500d"')
    config.write_text(text)
    (root / "features.py").write_text(FEATURES)
    return root


def _events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": ["p1", "p2", "p3"],
            "ts": ["2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z", "2026-01-10T00:00:00Z"],
            "user": ["u", "u", "u"],
            "length": [10.0, 20.0, 30.0],
        }
    )


def test_a_project_with_its_own_label_name_logs_counts_and_serves_it(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path))
    labels = pl.DataFrame(
        {"event_id": ["p1"], "is_abuse": [1.0], "label_ts": ["2026-01-02T00:00:00Z"],
         "source": ["moderator"]}
    )  # fmt: skip
    with project.open_log() as log:
        log.append_events(_events())
        log.append_labels(labels)
        stored = log.read("labels")
        table = replay_log(log, project.plan())
        assert "is_abuse" in stored.columns and "is_fraud" not in stored.columns
        # The label-aware feature counts the declared label: p1's abuse is known by p2.
        assert table.get_column("user_abuse_30d").to_list() == [0.0, 1.0, 1.0]
        out = outcomes(
            log.read("events"), stored, LabelPolicy("exclude"), as_of=2**60, value="is_abuse"
        )
        assert out.get_column("outcome").to_list() == [1, None, None]
        half = labels.with_columns(pl.lit(0.5).alias("is_abuse"), pl.lit("p2").alias("event_id"))
        with pytest.raises(SchemaError, match="field 'is_abuse' must be 0 or 1"):
            log.append_labels(half)
    service = Service(project)
    try:
        with TestClient(create_app(service, open_access=True)) as client:
            doc = client.get("/openapi.json").json()
            names = set(doc["components"]["schemas"]["LabelIn"]["properties"])
            assert names == {"event_id", "is_abuse", "label_ts", "source"}
            ok = {"event_id": "p3", "is_abuse": 0, "label_ts": "2026-01-11T00:00:00Z"}
            assert client.post("/v1/labels", json={"labels": [ok]}).status_code == 200
            old = {"event_id": "p3", "is_fraud": 1, "label_ts": "2026-01-11T00:00:00Z"}
            r = client.post("/v1/labels", json={"labels": [old]})
            assert r.status_code == 422 and "is_abuse" in r.text
    finally:
        service.close()


def test_the_feature_set_must_count_the_declared_label(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "features.py").write_text(FEATURES.replace('    label_value="is_abuse",\n', ""))
    with pytest.raises(ConfigError, match=r"counts labels named 'is_fraud'.*is 'is_abuse'"):
        load_project(root).plan()


def test_a_log_keeps_the_label_name_it_was_made_with(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    EventLog.open(path, EventSchema({"user": "str"})).close()
    with pytest.raises(LogError, match=r"stores labels named 'is_fraud'.*'is_abuse'"):
        EventLog.open(path, EventSchema({"user": "str"}, label="is_abuse"))


@pytest.mark.parametrize("bad", ["source", "1abc", "drop table", ""])
def test_label_names_are_plain_identifiers(bad: str) -> None:
    with pytest.raises(SchemaError, match=r"\[events\].label"):
        EventSchema({"user": "str"}, label=bad)
