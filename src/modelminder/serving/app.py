"""The HTTP API (FastAPI, versioned under /v1). Routes only parse, call :class:`Service`, and
format; errors become JSON ``{"error": {"type", "message"}}`` with the right status.

Auth: ``Authorization: Bearer <token>``; roles ``service`` (predict, events, labels),
``reviewer``, ``admin`` (everything, including promote and rollback). Without any token the
app runs open only when created with ``open_access=True`` (the CLI allows that on 127.0.0.1
only, with a warning).

(No ``from __future__ import annotations`` here: FastAPI reads the route annotations at run
time, and the request models are built per app.)
"""

import math
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelminder.errors import (
    ArtifactError,
    MinderError,
    MonitorError,
    RegistryError,
    SchemaError,
)
from modelminder.events.schema import MAX_ID_CHARS, MAX_SOURCE_CHARS, EventSchema
from modelminder.registry import Registry
from modelminder.review.queue import ReviewError, UnknownItem
from modelminder.serving.auth import Authenticator, caller, requires
from modelminder.serving.batching import MicroBatcher
from modelminder.serving.envelope import error_response, responses
from modelminder.serving.monitor_routes import add_monitor_routes
from modelminder.serving.review_routes import add_review_routes
from modelminder.serving.review_ui import review_app
from modelminder.serving.schemas import (
    IngestResult,
    LabelsResult,
    ModelInfo,
    ModelsOut,
    PredictionRecord,
    PredictResponse,
    Ready,
)
from modelminder.serving.service import NoChampionError, Service, ShuttingDown
from modelminder.serving.waiting import LabelsWaitingFull

MAX_BATCH = 1000
MAX_BODY_BYTES = 2_000_000
_TYPES: dict[str, Any] = {"str": str, "float": float, "int": int, "bool": bool}


_TIME = "ISO-8601 time, e.g. 2026-03-01T12:00:00Z (no zone = UTC; a date alone is midnight UTC)"


_DATE_TIME: dict[str, Any] = {"format": "date-time"}  # documented; other ISO-8601 forms pass


def _label_model(label: str) -> type[BaseModel]:
    """A strict request model for one label, its value named as the project declares
    ([events].label, ``is_fraud`` by default)."""
    spec: dict[str, Any] = {
        "event_id": (str, Field(min_length=1, max_length=MAX_ID_CHARS)),
        label: (
            float,
            Field(
                # 0 or 1 is checked once, by the library (events.schema.validate_label_rows)
                description="1 = positive (e.g. fraud), 0 = negative (numbers only)",
                json_schema_extra={"enum": [0, 1]},
            ),
        ),
        "label_ts": (
            str,
            Field(
                description="When the label became true. " + _TIME,
                max_length=64,
                json_schema_extra=_DATE_TIME,
            ),
        ),
        "source": (str, Field(default="api", min_length=1, max_length=MAX_SOURCE_CHARS)),
    }
    return create_model("LabelIn", __config__=ConfigDict(extra="forbid", strict=True), **spec)


def _event_model(schema: EventSchema) -> type[BaseModel]:
    """A strict request model for the project's event schema, documenting its limits (the
    library checks them again: :func:`~modelminder.events.schema.validate_rows`)."""
    rules = schema.rules
    spec: dict[str, Any] = {
        "event_id": (str, Field(min_length=1, max_length=MAX_ID_CHARS)),
        "ts": (str, Field(description=_TIME, max_length=64, json_schema_extra=_DATE_TIME)),
    }
    for name, typ in schema.fields.items():
        limits: dict[str, Any] = {}
        if name in rules.ranges:
            limits["ge"], limits["le"] = rules.ranges[name]
        if name in rules.max_chars:
            limits["max_length"] = rules.max_chars[name]
        spec[name] = (_TYPES[typ], Field(**limits))

    def finite(cls: Any, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number (no NaN or infinity)")
        return v

    floats = [n for n, t in schema.fields.items() if t == "float"]
    validators: dict[str, Any] = {"finite": field_validator(*floats or ["ts"])(classmethod(finite))}
    return create_model(
        "Event", __config__=ConfigDict(extra="forbid", strict=True), __validators__=validators,
        **spec,
    )  # fmt: skip


def create_app(
    service: Service,
    *,
    open_access: bool = False,
    approve: Callable[[str, str], str] | None = None,
) -> FastAPI:
    """The API over ``service``."""
    Event = _event_model(service.log.schema)
    LabelIn = _label_model(service.log.schema.label)

    class Batch(BaseModel):
        model_config = ConfigDict(extra="forbid")
        events: list[Event] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]

    class Labels(BaseModel):
        model_config = ConfigDict(extra="forbid")
        labels: list[LabelIn] = Field(min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]

    app = FastAPI(
        title="modelminder",
        version="1",
        description="Score events with the champion model; ingest events and labels; manage "
        "model aliases. Every state-changing route needs a bearer token with the right role.",
    )
    metrics = CollectorRegistry()
    requests = Counter(
        "minder_requests_total", "HTTP requests", ["route", "status"], registry=metrics
    )
    latency = Histogram(
        "minder_request_seconds", "HTTP request latency", ["route"], registry=metrics,
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    )  # fmt: skip
    scores = Histogram(
        "minder_scores", "Champion scores", registry=metrics,
        buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
    )  # fmt: skip
    decisions = Counter("minder_decisions_total", "Decisions", ["decision"], registry=metrics)
    served_by = Counter(
        "minder_predictions_total", "Predictions by model version", ["version"], registry=metrics
    )

    # Added first, so it runs inside _Measure: refusals are counted and timed too.
    app.add_middleware(Authenticator, api=app, store=service.store, open_access=open_access)
    app.add_middleware(_Measure, requests=requests, latency=latency)
    batcher = MicroBatcher(service)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid_input(request, exc)

    @app.exception_handler(MinderError)
    async def refused(_: Request, exc: MinderError) -> JSONResponse:
        if isinstance(exc, NoChampionError | ShuttingDown):
            kind = "NoChampion" if isinstance(exc, NoChampionError) else "ShuttingDown"
            return error_response(503, kind, str(exc))
        if isinstance(exc, SchemaError | MonitorError):  # the input (body or query) is wrong
            return error_response(422, type(exc).__name__, str(exc))
        if isinstance(exc, UnknownItem):
            return error_response(404, type(exc).__name__, str(exc))
        if isinstance(exc, RegistryError | ArtifactError | LabelsWaitingFull | ReviewError):
            return error_response(409, type(exc).__name__, str(exc))  # the state refuses it
        return error_response(422, type(exc).__name__, str(exc))  # the request's input

    @app.exception_handler(StarletteHTTPException)  # also the router's own 404 and 405
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the framework could not read the body (e.g. not UTF-8)
            return error_response(
                422, "InvalidJSON",
                f"The body could not be read as JSON ({exc.detail}); send UTF-8 JSON with "
                "content-type: application/json.",
            )  # fmt: skip
        kind = _KINDS.get(exc.status_code, "HTTPError")
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "No such route. The routes are listed at /docs (OpenAPI: /openapi.json)."
        return error_response(exc.status_code, kind, message, headers=headers or None)

    @app.post(
        "/v1/predict", tags=["scoring"],
        responses={200: {"model": PredictResponse}, **responses(*_BODY, 503)},
    )  # fmt: skip
    async def predict(body: Batch, _: str = Depends(requires("service"))) -> dict[str, Any]:
        """Score events (in order) with the champion: score, decision, model version and the
        top reasons (the served features are logged: GET /v1/predictions/{event_id}). Events
        are appended to the log first; a retried event_id is not scored again and gets the
        first answer (``duplicate: true``)."""
        results = await batcher.predict(_dumps(body.events))
        for r in results:
            # The served features stay in the log (GET /v1/predictions/{event_id}).
            r.pop("features", None)
            if not r.get("duplicate") and r.get("score") is not None:
                scores.observe(r["score"])
                decisions.labels(r["decision"]).inc()
                served_by.labels(r["model_version"]).inc()
        # Plain JSON data: skip FastAPI's generic encoder walk.
        return JSONResponse({"predictions": results})  # type: ignore[return-value]

    @app.post("/v1/events", tags=["ingest"], responses=responses(*_BODY, 503))
    async def events(body: Batch, _: str = Depends(requires("service"))) -> IngestResult:
        """Append events without scoring (they still update the live feature state)."""
        return IngestResult(**await run_in_threadpool(service.ingest, _dumps(body.events)))

    @app.post("/v1/labels", tags=["ingest"], responses=responses(*_BODY, 409, 503))
    async def labels(body: Labels, _: str = Depends(requires("service"))) -> LabelsResult:
        """Ground truth arriving live: known from the later of label_ts and now."""
        rows = [x.model_dump() for x in cast(list[BaseModel], body.labels)]
        return LabelsResult(**await run_in_threadpool(service.add_labels, rows))

    @app.get("/v1/predictions/{event_id}", tags=["scoring"], responses=responses(401, 403, 404))
    async def prediction(
        event_id: str, _: str = Depends(requires("service", "reviewer"))
    ) -> PredictionRecord:
        """What was served for an event (champion and shadow), with the features."""
        found = await run_in_threadpool(service.predictions.for_event, event_id)
        if not found:
            raise HTTPException(404, f"No prediction for event {event_id!r}.")
        return PredictionRecord.model_validate(
            {
                "event_id": event_id,
                "feature_names": service.plan.names,
                "predictions": [p.to_dict() for p in found],
            }
        )

    # Registry reads, model loading and SQLite writes block: these routes run them in the
    # thread pool, so predictions in flight keep their latency while a model is promoted.
    @app.get("/v1/models", tags=["models"], responses=responses(401, 403))
    async def models(_: str = Depends(requires("service", "reviewer"))) -> ModelsOut:
        """Registered versions, their status and the aliases."""
        return await run_in_threadpool(_models)

    def _models() -> ModelsOut:
        with Registry.open(service.project.root) as reg:
            return ModelsOut(
                aliases=reg.aliases(),
                models=[
                    ModelInfo(version=r.version, status=r.status, reasons=list(r.reasons))
                    for r in reg.list()
                ],
            )

    @app.post("/v1/models/{version}/promote", tags=["models"], responses=responses(401, 403, 409))
    async def promote(
        request: Request,
        version: str,
        alias: Annotated[str, Query(description="champion, challenger or shadow.")] = "champion",
        reason: Annotated[
            str, Query(max_length=500, description="Recorded in the audit log.")
        ] = "api promote",
        override: Annotated[
            bool, Query(description="Promote a rejected model to champion anyway (needs a reason).")
        ] = False,
        _: str = Depends(requires("admin")),
    ) -> dict[str, str]:
        """Point an alias at a version: the model is loaded and checked first, the move is
        audited (by token id), and the service serves it at once."""
        who = caller(request) + " (api)"
        await run_in_threadpool(
            lambda: service.promote(
                version, alias=alias, actor=who, reason=reason, override=override
            )
        )
        return {alias: version}

    @app.post("/v1/models/rollback", tags=["models"], responses=responses(401, 403, 409))
    async def rollback(
        request: Request,
        reason: Annotated[
            str, Query(max_length=500, description="Recorded in the audit log.")
        ] = "api rollback",
        _: str = Depends(requires("admin")),
    ) -> dict[str, str]:
        """Move champion back to the previous champion (checked first, audited)."""
        who = caller(request) + " (api)"
        version = await run_in_threadpool(lambda: service.rollback(actor=who, reason=reason))
        return {"champion": version}

    @app.post("/v1/models/{version}/approve", tags=["models"],
              responses=responses(401, 403, 409))  # fmt: skip
    async def approve_candidate(
        request: Request, version: str, _: str = Depends(requires("admin"))
    ) -> dict[str, str]:
        """Approve the candidate the retraining loop holds for a human (``[loop].promotion =
        "approve"``): it becomes champion at once through the checked path (409 if it is not
        the one waiting), and the service serves it."""
        if approve is None:
            raise HTTPException(409, "This server was started without the retraining loop.")
        who = caller(request) + " (api)"
        text = await run_in_threadpool(lambda: approve(version, who))
        await run_in_threadpool(service.reload_models)
        return {"champion": version, "decision": text}

    add_monitor_routes(app, service, requires("reviewer"), responses)
    add_review_routes(app, service, requires("reviewer"), responses)
    app.mount("/review", review_app(service))  # the reviewers' web pages (HTML, cookie login)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={200: {"model": Ready}, 503: {"model": Ready}})
    async def readyz() -> JSONResponse:
        """Ready once the state is rebuilt and a champion is loaded (503 until then)."""
        body = {
            "state_rebuilt": True,
            "rebuild_seconds": round(service.rebuild_seconds, 3),
            "champion": service.champion.version if service.champion else None,
        }
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get(
        "/metrics", tags=["ops"], response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    )  # fmt: skip
    async def prometheus() -> Response:
        """Prometheus metrics: requests and latency by route and status, scores, decisions,
        predictions by model version."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    return app


class _Measure:
    """Pure ASGI middleware: the body size limit, and request counts and latency by route and
    status (cheaper than Starlette's BaseHTTPMiddleware on every request)."""

    def __init__(self, app: Any, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and int(length or 0) > MAX_BODY_BYTES:
            await _too_large(f"{int(length)} bytes")(scope, receive, send)
            return
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # A chunked upload declares no length: read it (up to the limit) before the app.
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > MAX_BODY_BYTES:
                    await _too_large(f"over {MAX_BODY_BYTES} bytes")(scope, receive, send)
                    return
            receive = _replay(body, receive)
        started = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.requests.labels(path, str(status[0])).inc()
            self.latency.labels(path).observe(time.perf_counter() - started)


def _too_large(size: str) -> JSONResponse:
    return error_response(
        413, "PayloadTooLarge",
        f"The body is {size}; at most {MAX_BODY_BYTES} bytes are accepted. Send smaller batches.",
    )  # fmt: skip


def _replay(body: bytes, then: Any) -> Callable[[], Awaitable[Any]]:
    """A ``receive`` that hands the app a body already read, then the connection's own
    messages (a disconnect)."""
    sent = False

    async def receive() -> Any:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _dumps(items: list[Any]) -> list[dict[str, Any]]:
    return [cast(BaseModel, item).model_dump() for item in items]


# What any route with a JSON body can answer besides its own statuses.
_BODY = (401, 403, 413, 415, 422)
_KINDS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
}  # fmt: skip


def _invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request the route could not parse: not JSON (415), malformed JSON, or fields that do
    not fit (422, each bad field named)."""
    errors = list(exc.errors())
    for e in errors:
        if e.get("type") == "json_invalid":
            where = e["loc"][1] if len(e["loc"]) > 1 else "?"
            why = (e.get("ctx") or {}).get("error", "malformed")
            return error_response(
                422, "InvalidJSON",
                f"The body is not valid JSON: {why} at character {where}. Send a JSON object "
                'like {"events": [...]} with content-type: application/json.',
                fields=[f"body: {why} at character {where}"],
            )  # fmt: skip
        kind = request.headers.get("content-type", "")
        if tuple(e["loc"]) == ("body",) and not _is_json(kind):
            return error_response(
                415, "UnsupportedMediaType",
                f"The body must be JSON sent with content-type: application/json; the request "
                f"has content-type: {kind or '(none)'}.",
            )  # fmt: skip
    problems = [_problem(e) for e in errors]
    return error_response(422, "ValidationError", "; ".join(problems), fields=problems)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _problem(e: Any) -> str:
    where = ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0])
    return f"{where}: {e['msg']}"
