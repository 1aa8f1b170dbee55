"""The one error shape of the HTTP API, ``{"error": {"type", "message", "fields"?}}``, and the
OpenAPI description of each status a route can answer with it.

(No ``from __future__ import annotations``: pydantic reads these models' annotations.)
"""

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

STATUS_TEXT = {
    400: "Bad request",
    401: "Missing, unknown or revoked bearer token",
    403: "The token's role may not do this",
    404: "Not found",
    405: "Method not allowed on this path",
    409: "Refused: the current state does not allow it (e.g. a rejected or unsafe model as "
    "champion, too many labels waiting for their events)",
    413: "Body too large",
    415: "The body must be JSON (content-type: application/json)",
    422: "Invalid input: the field is named; nothing was written",
    503: "Not ready: no champion model yet, or the server is shutting down",
}


class ErrorDetail(BaseModel):
    type: str = Field(description="NoChampion, SchemaError, ValidationError, Unauthorized, ...")
    message: str = Field(description="What is wrong and how to fix it")
    fields: list[str] | None = Field(default=None, description="One entry per bad field")


class ErrorBody(BaseModel):
    """Every error has this shape."""

    error: ErrorDetail


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry for error statuses ``codes``."""
    return {code: {"model": ErrorBody, "description": STATUS_TEXT[code]} for code in codes}


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    fields: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error answer in the envelope."""
    body: dict[str, Any] = {"error": {"type": kind, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return JSONResponse(body, status_code=status, headers=headers)
