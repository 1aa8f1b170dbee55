from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelminder.cli import app

runner = CliRunner()
COMMANDS = [
    "init",
    "simulate",
    "ingest",
    "replay",
    "check-parity",
    "demo",
    "train",
    "score",
    "evaluate",
    "models list",
    "models show",
    "models promote",
    "models rollback",
    "serve",
    "stream",
    "check-skew",
    "tokens create",
    "tokens list",
    "tokens revoke",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_quickstart_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    data = tmp_path / "data"
    assert runner.invoke(app, ["init", str(proj)]).exit_code == 0
    r = runner.invoke(app, ["simulate", "--days", "8", "--cards", "150", "--out", str(data)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["ingest", str(data / "events.parquet"), "-p", str(proj)])
    assert r.exit_code == 0 and "appended" in r.output
    r = runner.invoke(
        app, ["ingest", str(data / "labels.parquet"), "--topic", "labels", "-p", str(proj)]
    )
    assert r.exit_code == 0, r.output
    out = tmp_path / "f.parquet"
    r = runner.invoke(app, ["replay", "--out", str(out), "-p", str(proj)])
    assert r.exit_code == 0, r.output
    out_online = tmp_path / "g.parquet"
    r = runner.invoke(app, ["replay", "--online", "--out", str(out_online), "-p", str(proj)])
    assert r.exit_code == 0, r.output
    import polars as pl

    assert pl.read_parquet(out).equals(pl.read_parquet(out_online))
    r = runner.invoke(app, ["check-parity", "--sample", "500", "-p", str(proj)])
    assert r.exit_code == 0 and "agree on 500 events" in r.output


def test_check_parity_fails_on_a_broken_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj = tmp_path / "proj"
    runner.invoke(app, ["init", str(proj)])
    runner.invoke(app, ["simulate", "--days", "3", "--cards", "50", "--out", str(tmp_path)])
    runner.invoke(app, ["ingest", str(tmp_path / "events.parquet"), "-p", str(proj)])
    from modelminder.features import runner as feature_runner

    real = feature_runner.replay_log

    def broken(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        table = real(*args, **kwargs)  # type: ignore[arg-type]
        return table.with_columns(table.get_column("card_count_1h") + 1)

    monkeypatch.setattr(feature_runner, "replay_log", broken)
    r = runner.invoke(app, ["check-parity", "-p", str(proj)])
    assert r.exit_code == 1
    assert "FAIL" in r.output


def test_bad_input_gives_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["replay", "--out", str(tmp_path / "x.parquet"), "-p", str(tmp_path)])
    assert r.exit_code != 0
    assert "minder init" in str(r.exception) or "minder init" in r.output
