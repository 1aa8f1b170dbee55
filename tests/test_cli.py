"""The ``minder`` command: every command (found by walking the real command tree) has
``--help`` with an example that parses against that tree, and the quickstart runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from modelminder.cli import app

runner = CliRunner()
ROOT = typer.main.get_command(app)
EXAMPLE = re.compile(r"^\s*Example: (minder .*?)\s*$", re.MULTILINE)


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf command's path below ``command`` (groups are recursed into, not listed)."""
    if not isinstance(command, typer.core.TyperGroup):
        return [path]
    found: list[tuple[str, ...]] = []
    for name in sorted(command.commands):
        found += _walk(command.commands[name], (*path, name))
    return found


COMMANDS = [" ".join(path) for path in _walk(ROOT)]


def _check_example(example: str) -> None:
    """Parse ``example`` (``minder ...``, several joined by ``&&``) with the CLI's own parser
    against the real tree: the command path must exist, and its options, arguments and values
    must be accepted. Raises the parser's error (or ``AssertionError``) if not."""
    for part in example.split("&&"):
        words = shlex.split(part)
        assert words[0] == "minder", f"{part!r} does not start with 'minder'"
        command, args = ROOT, words[1:]
        while isinstance(command, typer.core.TyperGroup):
            assert args, f"{part!r} names a group but no command in it"
            sub = command.commands.get(args[0])
            assert sub is not None, f"{part!r}: {args[0]!r} is not a command of {command.name}"
            command, args = sub, args[1:]
        # Not resilient_parsing: that mode swallows unknown options, the rot this guards against.
        command.make_context(command.name, args)


def test_the_walk_finds_every_command() -> None:
    # The hand-kept list this replaced missed `monitor` and `report`.
    assert {"monitor", "report", "simulate", "models promote", "tokens revoke"} <= set(COMMANDS)
    assert len(COMMANDS) >= 21


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_a_runnable_example(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    examples = EXAMPLE.findall(result.output)
    # On one line of the 80-column help, so it can be copied as it is shown.
    assert examples, (
        f"`minder {command} --help` has no one-line 'Example: minder ...':\n{result.output}"
    )
    for example in examples:
        assert example.split("&&")[0].split()[1 : 1 + len(command.split())] == command.split()
        _check_example(example)


@pytest.mark.parametrize(
    "example",
    [
        "minder trian --trials 3",  # no such command
        "minder models lst",  # no such command in the group
        "minder train --trails 3",  # no such option
        "minder simulate --days 30",  # --out is required
        "minder simulate --out d --schedule weekly",  # not an allowed value
        "minder models promote",  # the version argument is missing
        "minder init myproj && minder ingest --nope",  # the second part is broken
    ],
)
def test_a_rotten_example_is_caught(example: str) -> None:
    with pytest.raises((typer.TyperException, AssertionError)):
        _check_example(example)


def test_train_help_names_the_torch_extra() -> None:
    # Rich markup once swallowed "[torch]", leaving "mlp (needs )".
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "[torch]" in result.output
    assert "needs )" not in result.output


def test_simulate_help_says_what_each_world_is_for() -> None:
    text = " ".join(runner.invoke(app, ["simulate", "--help"]).output.split())
    for phrase in ("steady", "adaptive", "--fraud-card-share", "pass the gate", "drift"):
        assert phrase in text


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
    from modelminder import logreplay

    real = logreplay.replay_log

    def broken(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        table = real(*args, **kwargs)  # type: ignore[arg-type]
        return table.with_columns(table.get_column("card_count_1h") + 1)

    monkeypatch.setattr(logreplay, "replay_log", broken)
    r = runner.invoke(app, ["check-parity", "-p", str(proj)])
    assert r.exit_code == 1
    assert "FAIL" in r.output


def test_bad_input_gives_a_clear_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["replay", "--out", str(tmp_path / "x.parquet"), "-p", str(tmp_path)])
    assert r.exit_code != 0
    assert "minder init" in str(r.exception) or "minder init" in r.output


def test_simulate_exposes_the_world_the_demo_uses(tmp_path: Path) -> None:
    import polars as pl

    def first_half_scenarios(*options: str) -> set[str]:
        out = tmp_path / "-".join(options)
        args = ["simulate", "--days", "20", "--cards", "400", "--out", str(out), *options]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        events = pl.read_parquet(out / "events.parquet")
        truth = pl.read_parquet(out / "truth.parquet").join(events, on="event_id")
        early = truth.filter(pl.col("ts") < pl.col("ts").min() + pl.duration(days=9))
        return set(early.filter(pl.col("is_fraud") == 1).get_column("scenario"))

    # steady (the default): every scenario all the time; adaptive: they take turns.
    assert "low_and_slow" in first_half_scenarios()
    assert "low_and_slow" in first_half_scenarios("--schedule", "steady")
    assert "low_and_slow" not in first_half_scenarios("--schedule", "adaptive")

    def frauds(share: str) -> int:
        out = tmp_path / f"share-{share}"
        args = ["simulate", "--days", "10", "--cards", "400", "--out", str(out)]
        assert runner.invoke(app, [*args, "--fraud-card-share", share]).exit_code == 0
        return pl.read_parquet(out / "truth.parquet").get_column("is_fraud").sum()

    assert frauds("0.3") > 2 * frauds("0.05")


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--schedule", "weekly", ["--schedule", "weekly", "steady", "adaptive"]),
        ("--fraud-card-share", "0", ["--fraud-card-share", "0.5", "Got 0.0"]),
        ("--fraud-card-share", "0.9", ["--fraud-card-share", "0.5", "Got 0.9"]),
        ("--days", "0", ["--days", "at least 1", "Got 0"]),
        ("--cards", "5", ["--cards", "at least 10", "Got 5"]),
    ],
)
def test_simulate_refuses_bad_options_naming_them(
    tmp_path: Path, option: str, value: str, named: list[str]
) -> None:
    r = runner.invoke(app, ["simulate", "--out", str(tmp_path), option, value])
    assert r.exit_code == 2
    text = " ".join(r.output.replace("│", " ").split())
    for word in named:
        assert word in text
    assert not (tmp_path / "events.parquet").exists()
