"""``/v1/reviews/...``: the review queue over HTTP, for the ``reviewer`` role (and admins).

The reviewer is the caller's token (its role and id), so the audit of who labelled what needs
no trust in a name the client sends. Handlers are plain ``def``: the queue's SQLite work runs
in FastAPI's thread pool, off the event loop that serves predictions.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from modelminder.review.policies import POLICIES
from modelminder.review.queue import STATUSES, VERDICTS
from modelminder.serving.auth import caller
from modelminder.serving.service import Service


class ItemOut(BaseModel):
    item_id: int
    event_id: str
    created_at: int
    ts: int
    model_version: str
    score: float
    decision: str
    reasons: list[str] = Field(description=f"Why it was queued: {', '.join(POLICIES)}")
    propensity: float = Field(description="The probability it had of being queued")
    priority: float
    status: str = Field(description=f"One of {', '.join(STATUSES)}")
    reviewer: str | None
    lease_until: int | None
    verdict: str | None


class QueueOut(BaseModel):
    items: list[ItemOut]


EventId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class CaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    verdicts: dict[EventId, str] = Field(
        min_length=1, max_length=200,
        description=f"event_id -> verdict ({', '.join(VERDICTS)}): a card's events at once",
    )  # fmt: skip
    note: str = Field(default="", max_length=1000)


class CaseOut(BaseModel):
    labelled: int = Field(description="Labels appended (unsure appends none)")


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    verdict: str = Field(description=f"One of {', '.join(VERDICTS)}", max_length=16)
    note: str = Field(default="", max_length=1000)


_MAX_ID = 2**62  # item ids are SQLite integers


def add_review_routes(
    app: FastAPI,
    service: Service,
    reviewer: Any,
    errors: Callable[..., dict[int | str, dict[str, Any]]],
) -> None:
    """Add the routes; ``reviewer`` is the auth dependency for reviewers (and admins)."""

    @app.get("/v1/reviews/queue", tags=["review"], responses=errors(401, 403, 422))
    def queue(
        _: Annotated[str, Depends(reviewer)],
        status: Annotated[str | None, Query(description=", ".join(STATUSES))] = None,
        reason: Annotated[str | None, Query(description=", ".join(POLICIES))] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> QueueOut:
        """Review items by priority, with their reasons and selection probabilities."""
        found = service.review.items(
            now=service.clock.now_us(), status=status, reason=reason, limit=limit
        )
        return QueueOut(items=[ItemOut(**i.to_dict()) for i in found])

    @app.post("/v1/reviews/claim", tags=["review"], responses=errors(401, 403, 404, 409, 422))
    def claim(
        request: Request,
        _: Annotated[str, Depends(reviewer)],
        item_id: Annotated[
            int | None, Query(ge=1, le=_MAX_ID, description="A given item (default: the next)")
        ] = None,
    ) -> ItemOut:
        """Lease an item (the next by priority, or the given one) to the caller."""
        item = service.review.claim(caller(request), now=service.clock.now_us(), item_id=item_id)
        return ItemOut(**item.to_dict())

    @app.post(
        "/v1/reviews/case", tags=["review"], responses=errors(401, 403, 404, 409, 413, 415, 422)
    )
    def case(request: Request, body: CaseIn, _: Annotated[str, Depends(reviewer)]) -> CaseOut:
        """The case view's "label them in one go": a verdict for each of several logged
        events (e.g. a card's recent events after a confirmed fraud), each its own label
        event; an event with an open review item is labelled through it. All or nothing."""
        n = service.review.label_events(
            body.verdicts, caller(request), now=service.clock.now_us(), note=body.note,
            append_labels=service.log_labels,
        )  # fmt: skip
        return CaseOut(labelled=n)

    @app.post(
        "/v1/reviews/{item_id}", tags=["review"],
        responses=errors(401, 403, 404, 409, 413, 415, 422),
    )  # fmt: skip
    def label(
        request: Request,
        item_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
        body: VerdictIn,
        _: Annotated[str, Depends(reviewer)],
    ) -> ItemOut:
        """Record the caller's verdict on an item they hold; fraud/legit become labels in the
        log (source review) and reach the live label-aware features at once."""
        item = service.review.label(
            item_id, caller(request), body.verdict, now=service.clock.now_us(), note=body.note,
            append_labels=service.log_labels,
        )  # fmt: skip
        return ItemOut(**item.to_dict())
