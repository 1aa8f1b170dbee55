"""The log's label rules hold whatever the door: the Python API, `minder ingest`, HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from modelminder.clock import SimulatedClock
from modelminder.errors import SchemaError
from modelminder.project import init_project, load_project

MINDER = [sys.executable, "-c", "from modelminder.cli import main; main()"]
NOW = 1_780_000_000_000_000  # 2026-05-28


def _labels(label_ts: list[str], values: list[float] | None = None) -> pl.DataFrame:
    n = len(label_ts)
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "is_fraud": values or [1.0] * n,
            "label_ts": label_ts,
            "source": ["chargeback"] * n,
        }
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    init_project(tmp_path, builtin=True)
    return tmp_path


def test_python_api_refuses_a_label_from_the_future_and_writes_nothing(root: Path) -> None:
    project = load_project(root)
    with project.open_log(SimulatedClock(NOW)) as log:
        batch = _labels(["2026-05-01T00:00:00Z", "2026-06-30T00:00:00Z"])
        with pytest.raises(SchemaError, match=r"'e1'.*'label_ts'.*1h ahead.*max_event_lead"):
            log.append_labels(batch)
        with pytest.raises(SchemaError, match="'label_ts'"):
            log.append_label_rows(
                [{"event_id": "x", "is_fraud": 1.0, "label_ts": NOW + 7_200_000_000,
                  "source": "review"}],
                received_at_us=NOW,
            )  # fmt: skip
        assert log.read("labels").height == 0
        assert log.append_labels(batch.head(1)).inserted == 1  # the past is fine


def test_ingest_refuses_a_label_from_the_future_and_one_not_zero_or_one(root: Path) -> None:
    future = root / "future.parquet"
    _labels(["2026-05-01T00:00:00Z", "2999-01-01T00:00:00Z"]).write_parquet(future)
    half = root / "half.parquet"
    _labels(["2026-05-01T00:00:00Z"], [0.5]).write_parquet(half)
    for path, said in ((future, "ahead of the server's clock"), (half, "0 or 1")):
        run = subprocess.run(
            [*MINDER, "ingest", str(path), "--topic", "labels", "--project", str(root)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        text = " ".join((run.stdout + run.stderr).split())
        assert run.returncode == 2 and said in text, text
        assert "Traceback" not in text
    with load_project(root).open_log() as log:
        assert log.read("labels").height == 0
