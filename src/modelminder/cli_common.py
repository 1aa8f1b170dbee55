"""What every ``minder`` command shares: the consoles, the project option, progress, times."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from modelminder.errors import InputFileError, MinderError

console = Console(stderr=True)
# Wide enough for the tables when output is piped (rich falls back to 80 columns there).
out = Console(width=None if sys.stdout.isatty() else 120)

ProjectOpt = Annotated[
    Path, typer.Option("--project", "-p", help="Project folder (with minder.toml).")
]


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def parse_time(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MinderError(
            f"{option} must be an ISO-8601 time like 2026-03-01 or 2026-03-01T12:00:00Z. "
            f"Got {text!r}."
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp() * 1_000_000)


def read_file(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise InputFileError(f"File {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=10_000)
        if suffix in (".jsonl", ".ndjson"):
            return pl.read_ndjson(path)
    except Exception as exc:  # polars raises many types; report them uniformly
        raise InputFileError(f"Cannot read {path} as {suffix[1:]}: {exc}") from exc
    raise InputFileError(
        f"File {path} has extension {suffix!r}. Allowed: .parquet, .csv, .jsonl, .ndjson."
    )
