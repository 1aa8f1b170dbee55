"""Response shapes of the HTTP API, for the OpenAPI document.

The hot route (/v1/predict) returns plain JSON built by :class:`~modelminder.serving.service.
Service` and is documented with these models rather than validated through them (validation
would cost more than the rest of the response); a test validates real answers against them, so
the document cannot drift from what the server sends.

A served value is a JSON number, ``null`` (missing) or one of the strings ``"Infinity"`` and
``"-Infinity"`` (an infinite feature, e.g. a sum that overflowed): JSON has no infinity, and an
infinite value is not a missing one. The same convention as the stored prediction log
(:mod:`modelminder.events.predictions`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, PlainSerializer

from modelminder.events.predictions import json_value

# A served value: a float (±inf included) or None in Python; in JSON a number, null or
# "Infinity"/"-Infinity" (whichever way the model is dumped: JSON text or JSON-ready Python).
ServedValue = Annotated[
    float | None,
    PlainSerializer(
        json_value,
        return_type=float | Literal["Infinity", "-Infinity"] | None,
        when_used="json",
    ),
]


class Reason(BaseModel):
    feature: str
    value: ServedValue = Field(
        description='The feature\'s value as served (null = missing; "Infinity" or "-Infinity" '
        "for an infinite value)"
    )
    contribution: float = Field(description="Contribution to the score, in log-odds")


class PredictionOut(BaseModel):
    event_id: str
    score: float | None = Field(
        description="Calibrated probability of fraud; null only for an event that was logged "
        "earlier without being scored (see note)"
    )
    duplicate: bool = Field(description="True when the event_id was already logged (a retry)")
    served_at: int | None = Field(default=None, description="UTC microseconds")
    model_version: str | None = None
    role: str | None = Field(default=None, description="Always 'champion' in an answer")
    decision: str | None = Field(default=None, description="approve, review or block")
    latency_us: int | None = Field(default=None, description="Time to score, in microseconds")
    reasons: list[Reason] = Field(
        default_factory=list, description="Top features behind a review or block decision"
    )
    note: str | None = None


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class IngestResult(BaseModel):
    received: int
    appended: int = Field(description="New events, folded into the live feature state")
    duplicates: int = Field(description="Events whose event_id was already logged")


class LabelsResult(BaseModel):
    received: int
    appended: int = Field(description="New labels (a re-sent label changes nothing)")


class ServedPrediction(BaseModel):
    event_id: str
    served_at: int
    model_version: str
    role: str = Field(description="champion (decided) or shadow (only recorded)")
    score: float
    decision: str
    latency_us: int
    features: list[ServedValue] = Field(
        description='As served, in feature_names order: null = missing, "Infinity" and '
        '"-Infinity" = an infinite value'
    )
    reasons: list[Reason]


class PredictionRecord(BaseModel):
    event_id: str
    feature_names: list[str]
    predictions: list[ServedPrediction]


class ModelInfo(BaseModel):
    version: str
    status: str = Field(description="passed or rejected by the gate")
    reasons: list[str]


class ModelsOut(BaseModel):
    aliases: dict[str, str]
    models: list[ModelInfo]


class Ready(BaseModel):
    state_rebuilt: bool
    rebuild_seconds: float
    champion: str | None
