"""The ``minder`` command: a thin shell over the library (parse, call, format)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from modelminder.cli_common import (
    ProjectOpt,
    console,
    out,
    parse_time,
    progress_bar,
    read_file,
)
from modelminder.cli_loop import register_loop
from modelminder.cli_models import models_app, register_commands
from modelminder.cli_monitor import register_monitoring
from modelminder.cli_review import register_review
from modelminder.cli_serve import register_commands as register_serving
from modelminder.errors import MinderError

app = typer.Typer(
    help="modelminder: keep ML models working after they ship.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    builtin: Annotated[
        bool, typer.Option(help="Use the built-in card-fraud feature set instead of a module.")
    ] = False,
) -> None:
    """Create a project: minder.toml and a features module you edit.

    Example: minder init myproj && minder ingest events.parquet -p myproj
    """
    from modelminder.project import init_project

    path = init_project(directory, builtin=builtin)
    out.print(f"Created {path}. Next: minder ingest FILE --topic events --project {directory}")


SCHEDULE_HELP = (
    "steady: all four fraud scenarios run the whole time, a stationary world where a first "
    "model should pass the gate. adaptive: the scenarios take turns as fraudsters change "
    "tactics, to exercise drift monitoring and retraining (a model trained on the early "
    "tactics can fail the gate on the later ones)."
)


def _at_least(least: int, what: str) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < least:
            raise typer.BadParameter(f"{what} must be at least {least}. Got {value}.")
        return value

    return check


def _check_fraud_card_share(value: float) -> float:
    if not 0.0 < value <= 0.5:
        raise typer.BadParameter(
            f"the share of cards hit by each fraud scenario must be above 0 and at most 0.5 "
            f"(the demo uses 0.15). Got {value}."
        )
    return value


def _check_delay_days(value: float | None) -> float | None:
    if value is not None and not 0.0 < value <= 365.0:
        raise typer.BadParameter(f"a chargeback delay must be in (0, 365] days. Got {value}.")
    return value


@app.command()
def simulate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the Parquet files.")],
    days: Annotated[
        int, typer.Option(callback=_at_least(1, "the number of days"), help="Days of transactions.")
    ] = 90,
    cards: Annotated[
        int, typer.Option(callback=_at_least(10, "the number of cards"), help="Number of cards.")
    ] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same world).")] = 7,
    schedule: Annotated[Literal["steady", "adaptive"], typer.Option(help=SCHEDULE_HELP)] = "steady",
    fraud_card_share: Annotated[
        float,
        typer.Option(
            callback=_check_fraud_card_share,
            help="Share of the cards hit by each fraud scenario, in (0, 0.5]; the demo uses 0.15.",
        ),
    ] = 0.15,
    label_delay_days: Annotated[
        float,
        typer.Option(
            callback=_check_delay_days,
            help="Median chargeback delay in days (log-normal; 95% arrive within ~2.7x it).",
        ),
    ] = 10.0,
    max_label_delay_days: Annotated[
        float | None,
        typer.Option(
            callback=_check_delay_days,
            help="Longest chargeback delay in days (default: no cap), e.g. 7 for labels "
            "that all arrive within a week.",
        ),
    ] = None,
) -> None:
    """Write a simulated card-fraud world: events.parquet, labels.parquet, truth.parquet.

    Start with the steady world (the default, as in `minder demo`): a first model
    trained on it should pass the gate. Use --schedule adaptive to exercise drift
    monitoring and retraining. Labels arrive days to weeks late (--label-delay-days,
    --max-label-delay-days) and training uses events older than the --maturity that
    `minder train` estimates from them (about 4 weeks here by default), so simulate
    about 90 days.

    Example: minder simulate --days 90 --cards 2000 --schedule steady --out data/
    """
    from modelminder.sim.world import WorldConfig
    from modelminder.sim.world import simulate as run

    t0 = time.perf_counter()
    config = WorldConfig(
        days=days, cards=cards, seed=seed, schedule=schedule, fraud_card_share=fraud_card_share,
        label_delay_days=label_delay_days, max_label_delay_days=max_label_delay_days,
    )  # fmt: skip
    world = run(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    world.events.write_parquet(out_dir / "events.parquet")
    world.labels.write_parquet(out_dir / "labels.parquet")
    world.truth.write_parquet(out_dir / "truth.parquet")
    frauds = int(world.truth.get_column("is_fraud").sum())
    out.print(
        f"Simulated a {schedule} world: {world.events.height:,} events ({frauds:,} fraudulent) "
        f"and {world.labels.height:,} labels in {time.perf_counter() - t0:.1f}s -> {out_dir}/"
    )


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="Parquet, CSV or JSON-lines file.")],
    topic: Annotated[str, typer.Option(help="events or labels.")] = "events",
    project: ProjectOpt = Path("."),
) -> None:
    """Append a file to the log (atomic, idempotent by event_id; labels are a backfill).

    Example: minder ingest data/events.parquet --topic events --project myproj
    """
    from modelminder.project import load_project

    if topic not in ("events", "labels"):
        raise MinderError(f"--topic must be 'events' or 'labels'. Got {topic!r}.")
    proj = load_project(project)
    frame = read_file(file)
    t0 = time.perf_counter()
    with proj.open_log() as log, progress_bar() as bar:
        task = bar.add_task(f"ingest {topic}", total=frame.height)
        step = lambda n: bar.advance(task, n)  # noqa: E731
        if topic == "events":
            result = log.append_events(frame, progress=step)
        else:
            result = log.append_labels(frame, progress=step)
        waiting = len(log.labels_without_events()) if topic == "labels" else 0
    secs = time.perf_counter() - t0
    out.print(f"{result.summary()} ({frame.height / max(secs, 1e-9):,.0f} records/s)")
    if waiting:
        out.print(
            f"{waiting:,} label(s) in the log name events not logged yet: they wait, and count "
            "(features, training, monitoring) once their events are ingested."
        )


@app.command()
def replay(
    out_file: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    from_: Annotated[str | None, typer.Option("--from", help="Start time (inclusive).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End time (exclusive).")] = None,
    online: Annotated[
        bool, typer.Option("--online", help="Feed events one by one through the online path.")
    ] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Compute the feature table (event_id + features) over the log.

    Example: minder replay --out features.parquet --from 2026-02-01 -p myproj
    """
    from modelminder.logreplay import replay_log, replay_log_online
    from modelminder.project import load_project

    proj = load_project(project)
    plan = proj.plan()
    f, t = parse_time(from_, "--from"), parse_time(to, "--to")
    t0 = time.perf_counter()
    with proj.open_log() as log:
        if online:
            with progress_bar() as bar:
                task = bar.add_task("online replay", total=log.count("events"))
                table = replay_log_online(
                    log, plan, from_ts=f, to_ts=t, progress=lambda n: bar.advance(task, n)
                )
        else:
            with console.status("replaying the log"):
                table = replay_log(log, plan, from_ts=f, to_ts=t)
    secs = time.perf_counter() - t0
    tmp = out_file.with_suffix(out_file.suffix + ".tmp")
    table.write_parquet(tmp)
    tmp.replace(out_file)  # never leave a half-written output
    out.print(
        f"Wrote {table.height:,} events x {len(plan.names)} features to {out_file} in "
        f"{secs:.1f}s ({table.height / max(secs, 1e-9):,.0f} events/s)"
    )


@app.command("check-parity")
def check_parity(
    sample: Annotated[
        int | None, typer.Option(help="Check only the first N events of the log.")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Replay the log both ways (batch and one-by-one online) and report mismatches per feature.

    Exits 1 if any feature differs.

    Example: minder check-parity --sample 20000 --project myproj
    """
    from modelminder.logreplay import compare_tables, replay_log, replay_log_online
    from modelminder.project import load_project

    proj = load_project(project)
    plan = proj.plan()
    if sample is not None and sample < 1:
        raise MinderError(f"--sample must be a positive number of events. Got {sample}.")
    with proj.open_log() as log:
        to_offset = None if sample is None else (log.offset_of_nth(sample) or 0)
        with console.status("batch replay"):
            batch = replay_log(log, plan, to_offset=to_offset)
        with progress_bar() as bar:
            task = bar.add_task("online path", total=batch.height)
            online_table = replay_log_online(
                log, plan, to_offset=to_offset, progress=lambda n: bar.advance(task, n)
            )
    report = compare_tables(batch, online_table, plan.names)
    table = Table(title=f"Parity over {report.events:,} events")
    table.add_column("feature")
    table.add_column("mismatches", justify="right")
    table.add_column("examples (replay vs online)")
    for name in plan.names:
        table.add_row(name, str(report.mismatches[name]), "; ".join(report.examples[name]))
    out.print(table)
    if not report.ok:
        out.print("[red]FAIL: replay and online disagree.[/red]")
        raise typer.Exit(1)
    out.print(f"OK: all {len(plan.names)} features agree on {report.events:,} events.")


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Folder for the demo project.")] = Path(
        "demo-run"
    ),
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 120,
    cards: Annotated[int, typer.Option(help="Cards to simulate.")] = 2_500,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    schedule: Annotated[str, typer.Option(help=SCHEDULE_HELP)] = "steady",
    trials: Annotated[int, typer.Option(help="Search trials for the training step.")] = 0,
    loop_days: Annotated[
        int, typer.Option(help="Days of the adaptive world the loop is backtested on (0: skip).")
    ] = 100,
    loop_cards: Annotated[int, typer.Option(help="Cards of that world.")] = 1_000,
) -> None:
    """Simulate, ingest, replay, verify parity, train under the guard, promote a champion,
    stream the latest events live and check skew, review, monitor, then backtest the
    retraining loop on an adaptive world (make demo).

    Example: minder demo --days 30 --cards 2000
    """
    from modelminder.demo import run_demo

    run_demo(
        workdir, days=days, cards=cards, seed=seed, console=out, schedule=schedule, trials=trials,
        loop_days=loop_days, loop_cards=loop_cards,
    )  # fmt: skip


register_commands(app)
register_serving(app)
register_monitoring(app)
register_review(app)
register_loop(app, models_app)


def main() -> None:
    """Entry point: run the app, turning modelminder errors into a message and exit code 2."""
    try:
        app()
    except MinderError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None
