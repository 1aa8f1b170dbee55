"""The API keeps the contract its own OpenAPI document states, for every caller.

Schemathesis reads the app's OpenAPI document (what ``/openapi.json`` serves) and fuzzes
every route and method with valid and invalid requests, in-process (ASGI, no network), as four
callers: no token, and a ``service``, ``reviewer`` and ``admin`` token. Every answer must be
documented: no 5xx, a status code the route lists, a body and content type matching the
route's schema; and every 4xx is the JSON envelope ``{"error": {"type": str, "message": str}}``
(the README's promise), whoever produced it: a route, the auth check, or the framework's
own 404/405 and body parsing.

State-changing routes (events, labels, promote, rollback) are fuzzed too: the project is the
test's own, so moving its aliases or appending to its log harms nothing.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelminder.project import init_project, load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Service
from modelminder.serving.store import ROLES

from .conftest import live_project

# Generated examples per route and caller, on top of the coverage phase's fixed probes
# (unsupported methods, content types, edge values): ~15 s of requests on two cores. A run with
# 500 found nothing these did not (7 min).
MAX_EXAMPLES = 25
CALLERS = ("no token", *ROLES)
SERVED = 50  # events scored before the tests


def error_envelope(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx body is ``{"error": {"type": str, "message": str, ...}}`` and nothing else."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(
            f"A {response.status_code} answer must be a JSON error envelope "
            f'{{"error": {{"type", "message"}}}}. Got a non-JSON body: {response.text[:200]!r}.'
        ) from None
    error = body.get("error") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or set(body) != {"error"}
        or not isinstance(error, dict)
        or not isinstance(error.get("type"), str)
        or not isinstance(error.get("message"), str)
    ):
        raise AssertionError(
            f"A {response.status_code} answer must be the JSON error envelope "
            f'{{"error": {{"type": str, "message": str}}}}. Got {str(body)[:200]}.'
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_envelope,
]


def _served_document() -> dict[str, Any]:
    """The OpenAPI document the app serves. It depends on the project's event schema only, so
    an empty builtin project gives the document the fixture's app serves (checked there)."""
    with tempfile.TemporaryDirectory() as tmp:
        init_project(Path(tmp), builtin=True)
        service = Service(load_project(Path(tmp)))
        try:
            return create_app(service, open_access=False).openapi()
        finally:
            service.close()


# Loaded at collection, not from a fixture: schemathesis' lazy loader
# (`schemathesis.pytest.from_fixture`) fails on pytest 9 ("'Function' object has no attribute
# '_nodeid'"). Requests go to the fixture's app (`app=` below), in-process.
DOCUMENT = _served_document()
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
# The callers bring their own Authorization header (or none); generated bearer values would
# all be unknown tokens.
schema.config.generation.update(with_security_parameters=False)


@dataclass(frozen=True)
class Served:
    """The app under test and what a caller needs to send it valid requests."""

    app: FastAPI
    tokens: dict[str, str]  # role -> bearer token
    pending: list[dict[str, Any]]  # world events not yet in the log, as JSON
    scored: dict[str, Any]  # an event the champion has scored
    champion: str  # its version


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A closed app (tokens required) over a small project with a champion that has already
    scored some events (so the prediction and monitor routes have something to answer)."""
    # A small world: serving needs a champion, not a good one (~1s on an idle machine).
    project, world, cut = live_project(tmp_path_factory.mktemp("fuzz") / "p", cards=40)
    pending = [
        row | {"ts": row["ts"].isoformat()} for row in world.events.slice(cut).iter_rows(named=True)
    ]
    service = Service(project)
    answers = service.predict(pending[:SERVED])
    tokens = {role: service.store.create_token(role) for role in ROLES}
    app = create_app(service, open_access=False)
    assert app.openapi() == DOCUMENT, "the fuzzed document must be the one this app serves"
    yield Served(app, tokens, pending[SERVED:], pending[0], answers[0]["model_version"])
    # Schemathesis keeps an app's lifespan running for the rest of the process; end it before
    # the service closes under it.
    asgi.shutdown_lifespans()
    service.close()


@pytest.fixture(scope="module", params=CALLERS)
def caller(request: pytest.FixtureRequest) -> str:
    """One kind of caller: a role, or "no token"."""
    kind: str = request.param
    return kind


def _authorization(served: Served, caller: str) -> dict[str, str]:
    token = served.tokens.get(caller)
    return {"Authorization": f"Bearer {token}"} if token else {}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_is_documented(case: Case[Any], served: Served, caller: str) -> None:
    case.headers.pop("Authorization", None)  # case-insensitive
    case.headers.update(_authorization(served, caller))
    case.call_and_validate(checks=CHECKS, app=served.app)


def test_valid_requests_answer_as_documented(served: Served, caller: str) -> None:
    """Random input rarely gets past validation (a valid ``ts``, a known version or event id),
    so each route also gets a valid request: the roles it names get past auth (a 2xx whose
    body must match the document, where the request can succeed), the others a 401/403."""
    k = CALLERS.index(caller)
    event_id, ts = served.scored["event_id"], served.scored["ts"]
    predict = {"body": {"events": [served.pending[k]]}}
    ingest = {"body": {"events": [served.pending[len(CALLERS) + k]]}}
    label = {"body": {"labels": [{"event_id": event_id, "is_fraud": 0.0, "label_ts": ts}]}}
    record = {"path_parameters": {"event_id": event_id}}
    promote = {"path_parameters": {"version": served.champion}}
    readers = ("service", "reviewer")
    # path, method, request, the roles allowed besides admin, whether it must succeed
    requests: list[tuple[str, str, dict[str, Any], tuple[str, ...], bool]] = [
        ("/v1/predict", "POST", predict, ("service",), True),
        ("/v1/events", "POST", ingest, ("service",), True),
        ("/v1/labels", "POST", label, ("service",), True),
        ("/v1/predictions/{event_id}", "GET", record, readers, True),
        ("/v1/models", "GET", {}, readers, True),
        # The small world's model fails the gate (it is champion by override), so promoting
        # it is refused (409); with one champion in the history, so is a rollback.
        ("/v1/models/{version}/promote", "POST", promote, (), False),
        ("/v1/models/rollback", "POST", {}, (), False),
        ("/v1/monitor/alerts", "GET", {}, ("reviewer",), True),
        ("/v1/monitor/report", "GET", {}, ("reviewer",), True),
        ("/healthz", "GET", {}, CALLERS, True),
        ("/readyz", "GET", {}, CALLERS, True),
        ("/metrics", "GET", {}, CALLERS, True),
    ]
    for path, method, data, allowed, succeeds in requests:
        case = schema[path][method].Case(headers=_authorization(served, caller), **data)
        response = case.call_and_validate(checks=CHECKS, app=served.app)
        status, said = response.status_code, f"{method} {path} as {caller}: {response.text}"
        if caller in (*allowed, "admin"):
            assert status not in (401, 403), said
            assert 200 <= status < 300 or not succeeds, said
        else:
            assert status == (401 if caller == "no token" else 403), said
