"""Nothing in the loop is card-specific: a sensor stream with its own fields, features and
label (``is_failure``) goes through ``minder backtest`` and ``minder loop``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from modelminder.project import init_project, load_project

DAY_US = 86_400_000_000
FEATURES = """
from modelminder.features.dsl import Compute, FeatureSet, Window, col, count, max_, mean, std

FEATURES = FeatureSet(
    "sensors",
    [
        Window("vib_mean_6h", mean("vibration"), by="machine_id", window="6h"),
        Window("vib_max_24h", max_("vibration"), by="machine_id", window="24h"),
        Window("vib_std_24h", std("vibration"), by="machine_id", window="24h"),
        Window("temp_mean_6h", mean("temperature"), by="machine_id", window="6h"),
        Window("readings_24h", count(), by="machine_id", window="24h"),
        Compute("vib_now_vs_6h", col("vibration") / col("vib_mean_6h")),
        Compute("temp_now_vs_6h", col("temperature") - col("temp_mean_6h")),
    ],
    allowed_lateness="1h",
    label_value="is_failure",
)
"""
CONFIG = """\
[project]
name = "sensors"
log = "minder.db"

[events]
fields = { machine_id = "str", site = "str", vibration = "float", temperature = "float" }
label = "is_failure"

[features]
module = "features.py"

[loop]
schedule = "7d"
min_interval = "3d"
train_window = "30d"
max_train_rows = 20000
maturity = "auto"
metric = "auc"
shadow_period = "2d"
"""


def sensor_stream(days: int, machines: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Readings every two hours; a reading fails (the label) more often when the machine
    vibrates hard for the first half of the time and when it runs hot for the second half (the
    failure mode changes); failures are confirmed 6 to 48 hours later."""
    rng = np.random.default_rng(seed)
    start = 1_767_225_600_000_000  # 2026-01-01
    per_day = 12
    n = days * machines * per_day
    machine = np.tile(np.arange(machines), days * per_day)
    step = np.repeat(np.arange(days * per_day), machines)
    ts = start + step * (DAY_US // per_day) + rng.integers(0, DAY_US // per_day, n)
    wear = rng.gamma(2.0, 1.0, machines)[machine]
    vibration = rng.normal(1.0 + 0.3 * wear, 0.3, n)
    temperature = rng.normal(60 + 3 * wear, 4.0, n)
    late = step >= days * per_day // 2
    risk = np.where(late, (temperature - 66) / 3.0, (vibration - 1.8) / 0.25)
    failed = rng.random(n) < 1 / (1 + np.exp(-(risk - 2.5)))
    order = np.argsort(ts, kind="stable")
    events = pl.DataFrame({
        "event_id": [f"r{i}" for i in range(n)], "ts": ts, "machine_id": [f"m{m}" for m in machine],
        "site": np.where(machine % 2 == 0, "north", "south"), "vibration": vibration,
        "temperature": temperature,
    })[order].with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))  # fmt: skip
    idx = np.flatnonzero(failed)
    delay = rng.integers(6 * 3_600_000_000, 2 * DAY_US, len(idx))
    labels = pl.DataFrame({
        "event_id": [f"r{i}" for i in idx], "is_failure": np.ones(len(idx)),
        "label_ts": ts[idx] + delay, "source": ["inspection"] * len(idx),
    }).with_columns(pl.col("label_ts").cast(pl.Datetime("us", "UTC")))  # fmt: skip
    end = start + days * DAY_US
    return events, labels.filter(pl.col("label_ts").dt.epoch("us") < end)


def test_a_sensor_project_runs_through_the_backtest_and_the_loop(tmp_path: Path) -> None:
    root = tmp_path / "sensors"
    init_project(root)
    (root / "minder.toml").write_text(CONFIG)
    (root / "features.py").write_text(FEATURES)
    project = load_project(root)
    events, labels = sensor_stream(days=36, machines=120, seed=1)
    with project.open_log() as log:
        log.append_events(events)
        log.append_labels(labels)
    out = subprocess.run(
        [str(Path(sys.executable).parent / "minder"), "backtest", "--from", "2026-01-15", "--to",
         "2026-02-06", "--json", "--project", str(root)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)
    steps = [d["step"] for d in data["decisions"]]
    assert steps[:4] == ["triggered", "retrain_started", "retrain_finished", "promoted"], steps
    assert steps.count("retrain_finished") >= 3  # the weekly schedule retrained
    assert data["metric"] == "auc" and len(data["windows"]) == 4
    measured = [w for w in data["windows"] if w["looped"] is not None]
    assert measured and all(0.5 < w["looped"] <= 1.0 for w in measured), data["windows"]
    assert (root / "backtest" / "backtest.html").read_text().startswith("<!DOCTYPE html>")
    # The project itself was only read: no model, no alias, no loop record in it.
    with project.open_log() as log:
        audit = log.read("audit")
    assert audit.filter(pl.col("kind").str.starts_with("loop.")).height == 0
    assert not (root / "models" / "registry.db").exists()
