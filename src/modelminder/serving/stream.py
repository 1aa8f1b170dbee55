"""Play a recorded stream through the live path, as if it arrived now.

Events go in file order; labels are interleaved at their ``label_ts``. In-process (the
default) a simulated clock follows the stream's times, so a label is known from its
``label_ts`` exactly as it would have been live; against a running server (``url``) the
server's clock decides. The demo, the tests and users' backtests of the whole live loop use it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from modelminder.clock import SimulatedClock
from modelminder.errors import MinderError
from modelminder.events.schema import parse_ts
from modelminder.project import Project


@dataclass
class StreamStats:
    events: int = 0
    labels: int = 0
    duplicates: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    latencies_us: list[float] = field(default_factory=list)

    def summary(self) -> str:
        lat = np.asarray(self.latencies_us) if self.latencies_us else np.zeros(1)
        return (
            f"{self.events:,} events ({self.duplicates:,} already logged), {self.labels:,} labels; "
            f"decisions {dict(self.decisions)}; latency per event p50 "
            f"{np.percentile(lat, 50):.0f} us, p99 {np.percentile(lat, 99):.0f} us"
        )


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _us(value: Any) -> int:
    us = parse_ts(value)
    if us is None:
        if isinstance(value, int):
            return value
        raise MinderError(f"Cannot read the time {value!r}: use ISO-8601 like 2026-03-01T12:00Z.")
    return us


def _merged(
    events: pl.DataFrame, labels: pl.DataFrame | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """("label", row) and ("event", row) in play order."""
    pending = (
        labels.with_columns(_t=pl.col("label_ts")).sort("_t", maintain_order=True).to_dicts()
        if labels is not None and labels.height
        else []
    )
    i = 0
    for row in events.iter_rows(named=True):
        t = _us(row["ts"])
        while i < len(pending) and _us(pending[i]["_t"]) <= t:
            yield "label", {k: v for k, v in pending[i].items() if k != "_t"}
            i += 1
        yield "event", row
    for rest in pending[i:]:
        yield "label", {k: v for k, v in rest.items() if k != "_t"}


def play(
    project: Project,
    events: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    speed: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> StreamStats:
    """Send ``events`` (and ``labels``) through the live path; see the module docstring."""
    if speed is not None and speed <= 0:
        raise MinderError(f"--speed must be a positive factor (2 = twice real time). Got {speed}.")
    for name in ("event_id", "ts"):
        if name not in events.columns:
            raise MinderError(f"The events file has no '{name}' column.")
    stats = StreamStats()
    send_event, send_label, close = _sender(project, url, token)
    wall_start = time.perf_counter()
    first_t: int | None = None
    try:
        for kind, row in _merged(events, labels):
            if kind == "label":
                send_label(row)
                stats.labels += 1
                continue
            t = _us(row["ts"])
            if speed is not None:
                first_t = t if first_t is None else first_t
                due = (t - first_t) / 1e6 / speed
                wait = due - (time.perf_counter() - wall_start)
                if wait > 0:
                    time.sleep(wait)
            started = time.perf_counter()
            answer = send_event(row)
            stats.latencies_us.append((time.perf_counter() - started) * 1e6)
            stats.events += 1
            if answer.get("duplicate"):
                stats.duplicates += 1
            elif answer.get("decision"):
                stats.decisions[answer["decision"]] += 1
            if progress is not None:
                progress(1)
    finally:
        close()
    return stats


def _sender(
    project: Project, url: str | None, token: str | None
) -> tuple[
    Callable[[dict[str, Any]], dict[str, Any]],
    Callable[[dict[str, Any]], None],
    Callable[[], None],
]:
    if url is None:
        from modelminder.serving.service import Service

        clock = SimulatedClock()
        service = Service(project, clock=clock)

        def event(row: dict[str, Any]) -> dict[str, Any]:
            clock.advance_to(_us(row["ts"]))
            return service.predict([row])[0]

        def label(row: dict[str, Any]) -> None:
            clock.advance_to(_us(row["label_ts"]))
            service.add_labels([row])

        def close() -> None:
            service.flush_shadow()
            service.close()

        return event, label, close

    import httpx2 as httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30.0)

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = client.post(path, json=body)
        if r.status_code >= 400:
            raise MinderError(f"{path} answered {r.status_code}: {r.text[:500]}")
        result: dict[str, Any] = r.json()
        return result

    def remote_event(row: dict[str, Any]) -> dict[str, Any]:
        body = {k: _iso(v) for k, v in row.items()}
        predictions: list[dict[str, Any]] = post("/v1/predict", {"events": [body]})["predictions"]
        return predictions[0]

    def remote_label(row: dict[str, Any]) -> None:
        body = {
            k: _iso(v)
            for k, v in row.items()
            if k not in ("offset", "known_at")  # the rest is the label as the project names it
        }
        post("/v1/labels", {"labels": [body]})

    return remote_event, remote_label, client.close
