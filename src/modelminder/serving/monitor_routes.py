"""``/v1/monitor/...``: the monitors' results as JSON, for dashboards and scripts.

Reading alerts is cheap (the log's append-only alert events, folded into states). A report
runs every monitor over the asked range (seconds for days of traffic), in FastAPI's thread
pool so the event loop keeps answering. It is read-only: alerts are recorded in the log by
``minder monitor`` runs.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from modelminder.errors import SchemaError
from modelminder.events.schema import parse_ts
from modelminder.monitoring.alerts import AlertLog
from modelminder.monitoring.monitor import MonitorConfig, run_monitor
from modelminder.serving.service import Service


class AlertOut(BaseModel):
    kind: str = Field(description="data_drift, data_quality, performance, concept_drift, ...")
    severity: str = Field(description="warn or severe")
    subject: str = Field(description="The feature, metric or entity concerned")
    model_version: str
    window_start: int = Field(description="UTC microseconds")
    window_end: int
    evidence: dict[str, Any]
    action: str = Field(description="What to do about it")
    count: int = Field(description="Findings folded into this alert")
    open: bool


class AlertsOut(BaseModel):
    alerts: list[AlertOut]


class MonitorOut(BaseModel):
    as_of: int = Field(description="The run's time (UTC µs) for label maturity")
    window_us: int
    windows: list[dict[str, Any]] = Field(
        description="One row per window x model version: volume, measured performance with "
        "label coverage, and the label-free estimate (est_*)"
    )
    alerts: list[AlertOut]
    open_severe: int
    skew: dict[str, Any]
    notes: list[str]
    detectors: dict[str, Any] = Field(
        description="Per model version and error stream: where river's detectors (defaults) "
        "signalled, as window starts; only the alarm policy raises alerts"
    )
    drift: dict[str, list[dict[str, Any]]] = Field(
        description="Per model version: one row per window x feature (ratio to threshold...)"
    )


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    us = parse_ts(value)
    if us is None:
        raise SchemaError(
            f"'{name}' must be an ISO-8601 time like 2026-03-01T00:00:00Z. Got {value!r}."
        )
    return us


def add_monitor_routes(
    app: FastAPI,
    service: Service,
    reader: Any,
    errors: Callable[..., dict[int | str, dict[str, Any]]],
) -> None:
    """Add the routes; ``reader`` is the auth dependency for reviewers (and admins)."""

    @app.get("/v1/monitor/alerts", tags=["monitoring"], responses=errors(401, 403, 422))
    def alerts(
        _: Annotated[str, Depends(reader)],
        since: Annotated[
            str | None, Query(description="Alerts whose windows end after this")
        ] = None,
    ) -> AlertsOut:
        """Recorded alerts (every monitor run's), oldest window first."""
        with service.project.open_log() as log:
            found = AlertLog(log).read(since_us=_time(since, "since"))
        return AlertsOut(alerts=[AlertOut(**a.to_dict()) for a in found])

    @app.get("/v1/monitor/report", tags=["monitoring"], responses=errors(401, 403, 422))
    def report(
        _: Annotated[str, Depends(reader)],
        start: Annotated[str | None, Query(alias="from", description="First event time")] = None,
        end: Annotated[str | None, Query(alias="to", description="End (excluded)")] = None,
        window: Annotated[str, Query(description="hour, day, week or like 6h")] = "day",
        skew: Annotated[bool, Query(description="Also replay 2,000 served events")] = False,
    ) -> MonitorOut:
        """Run every monitor over the range (see ``minder monitor``) and return the result."""
        config = MonitorConfig(
            window=window, from_ts=_time(start, "from"), to_ts=_time(end, "to"),
            skew_sample=2000 if skew else 0,
        )  # fmt: skip
        # A GET changes nothing: a read-only run (alerts are recorded by `minder monitor`).
        return MonitorOut(**run_monitor(service.project, config, record_alerts=False).to_dict())
