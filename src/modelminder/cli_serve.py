"""``minder serve`` and ``minder tokens``."""

from __future__ import annotations

import gc
import signal
from pathlib import Path
from typing import Annotated

import typer

from modelminder.cli_common import ProjectOpt, console, out
from modelminder.errors import MinderError

tokens_app = typer.Typer(help="API tokens (stored hashed; shown once).")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
GRACE_SECONDS = 30  # how long a stopping server waits for requests in flight
_STOP = (signal.SIGTERM, signal.SIGINT)


def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (1 in the embedded mode).")] = 1,
    review_at: Annotated[float, typer.Option(help="Scores from here are 'review'.")] = 0.2,
    block_at: Annotated[float, typer.Option(help="Scores from here are 'block'.")] = 0.8,
    project: ProjectOpt = Path("."),
) -> None:
    """Serve the champion over HTTP: rebuilds the online state from the log, loads the models.

    Then POST events to /v1/predict; the API's documentation is at /docs.

    Example: minder serve --port 8000 --project myproj
    """
    import uvicorn

    from modelminder.project import load_project
    from modelminder.serving.app import create_app
    from modelminder.serving.service import DecisionPolicy, Service

    if workers != 1:
        raise MinderError(
            f"--workers {workers}: the embedded mode keeps the live feature state in one "
            "process, so it serves with exactly 1 worker (several workers need a shared state "
            "store). Use --workers 1."
        )
    proj = load_project(project)
    with console.status("rebuilding the online state from the log"):
        service = Service(proj, policy=DecisionPolicy(review_at, block_at))
    open_access = not service.store.has_tokens()
    if open_access and host not in LOOPBACK:
        service.close()
        raise MinderError(
            f"Refusing to serve on {host} without tokens. Create one first: minder tokens "
            f"create --role service --project {project} (or bind to 127.0.0.1)."
        )
    if open_access:
        console.print(
            "[yellow]warning:[/yellow] no tokens exist, so the API is open (loopback only) "
            "until the first one is created: minder tokens create --role admin"
        )
    champion = service.champion.version if service.champion else "none (predict answers 503)"
    out.print(
        f"state rebuilt in {service.rebuild_seconds:.1f}s; champion: {champion}; "
        f"http://{host}:{port}/docs"
    )
    gc.collect()
    gc.freeze()  # long-lived objects out of the collector's way (see docs/benchmarks.md)
    stopped_by: list[int] = []
    # uvicorn catches SIGTERM/SIGINT, stops accepting, lets requests in flight finish (up to
    # the grace period), then raises the signal again with the handlers found at start: these
    # ones note it instead of killing the process before the service is closed.
    previous = {sig: signal.signal(sig, lambda n, _f: stopped_by.append(n)) for sig in _STOP}
    try:
        from modelminder.loop.engine import approve

        def approver(version: str, who: str) -> str:
            return approve(service.project, version, actor=who)

        app = create_app(service, open_access=open_access, approve=approver)
        uvicorn.run(
            app, host=host, port=port, log_level="warning",
            timeout_graceful_shutdown=GRACE_SECONDS,
        )  # fmt: skip
    finally:
        drained = service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    why = signal.Signals(stopped_by[0]).name if stopped_by else "server exit"
    out.print(
        f"stopped ({why}): requests in flight answered, {drained} queued shadow batch(es) "
        "recorded, log closed."
    )


@tokens_app.command("create")
def create_token(
    role: Annotated[str, typer.Option(help="service, reviewer or admin.")] = "service",
    project: ProjectOpt = Path("."),
) -> None:
    """Create an API token for a role and print it (only its hash is stored).

    Example: minder tokens create --role admin --project myproj
    """
    from modelminder.project import load_project
    from modelminder.serving.store import ServingStore

    proj = load_project(project)
    with ServingStore.open(proj.root) as store:
        token = store.create_token(role)
    out.print(token)


@tokens_app.command("list")
def list_tokens(project: ProjectOpt = Path(".")) -> None:
    """List the tokens: id, role, created, revoked (the tokens themselves are not stored).

    Example: minder tokens list --project myproj
    """
    import datetime as dt

    from rich.table import Table

    from modelminder.project import load_project
    from modelminder.serving.store import ServingStore

    def when(seconds: int | None) -> str:
        if seconds is None:
            return ""
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    with ServingStore.open(load_project(project).root) as store:
        found = store.tokens()
    table = Table(title=f"{len(found)} token(s)")
    for column in ("id", "role", "created", "revoked"):
        table.add_column(column)
    for t in found:
        table.add_row(t.id, t.role, when(t.created_at), when(t.revoked_at))
    out.print(table)


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[str, typer.Argument(help="The id shown by 'minder tokens list'.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Revoke a token: a running server refuses it from its next request.

    Example: minder tokens revoke 3f2a9c01b7de --project myproj
    """
    from modelminder.project import load_project
    from modelminder.serving.store import ServingStore

    with ServingStore.open(load_project(project).root) as store:
        info = store.revoke(token_id)
    out.print(f"Revoked token {info.id} ({info.role}).")


def stream(
    events: Annotated[Path, typer.Option("--events", help="Events file (Parquet/CSV/JSONL).")],
    labels: Annotated[
        Path | None, typer.Option("--labels", help="Labels file, interleaved at label_ts.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="A running server (default: in-process).")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="MODELMINDER_TOKEN", help="Bearer token for --url.")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Pace at this multiple of real time (default: flat out).")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Play a recorded stream through the live path as if it arrived now.

    Example: minder stream --events new.parquet --labels new_labels.parquet --project myproj
    """
    from modelminder.cli_common import progress_bar, read_file
    from modelminder.project import load_project
    from modelminder.serving.stream import play

    proj = load_project(project)
    frame = read_file(events)
    label_frame = read_file(labels) if labels is not None else None
    with progress_bar() as bar:
        task = bar.add_task("stream", total=frame.height)
        stats = play(
            proj, frame, label_frame, url=url, token=token, speed=speed,
            progress=lambda n: bar.advance(task, n),
        )  # fmt: skip
    out.print(stats.summary())


def check_skew(project: ProjectOpt = Path(".")) -> None:
    """Replay the log and compare, feature by feature, with the features that were served.

    Exits 1 on any mismatch.

    Example: minder check-skew --project myproj
    """
    from rich.table import Table

    from modelminder.project import load_project
    from modelminder.workflows import check_skew as run

    with console.status("replaying the log"):
        report, n = run(load_project(project))
    table = Table(title=f"Served vs replayed features over {n:,} served events")
    table.add_column("feature")
    table.add_column("mismatches", justify="right")
    table.add_column("examples (replay vs served)")
    for name, count in report.mismatches.items():
        table.add_row(name, str(count), "; ".join(report.examples[name]))
    out.print(table)
    if not report.ok:
        out.print("[red]SKEW: served features differ from replay.[/red]")
        raise typer.Exit(1)
    out.print(f"OK: no skew in {len(report.mismatches)} features.")


def register_commands(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(stream)
    app.command("check-skew")(check_skew)
    app.add_typer(tokens_app, name="tokens")
