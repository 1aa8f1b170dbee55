"""``/v1/reviews``: reviewers claim and label over HTTP; roles are enforced per request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelminder.project import load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Service
from modelminder.serving.store import ServingStore

from ..review.factories import queued_project


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], Service]]:
    root = queued_project(tmp_path / "p")
    project = load_project(root)
    with ServingStore.open(root) as store:
        tokens = {role: store.create_token(role) for role in ("service", "reviewer", "admin")}
    service = Service(project)
    try:
        with TestClient(create_app(service)) as client:
            yield client, tokens, service
    finally:
        service.close()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_reviewer_claims_and_labels_and_the_label_is_in_the_log(
    api: tuple[TestClient, dict[str, str], Service],
) -> None:
    client, tokens, service = api
    queue = client.get("/v1/reviews/queue", headers=_h(tokens["reviewer"]))
    assert queue.status_code == 200
    items = queue.json()["items"]
    assert len(items) == 3 and all(i["propensity"] == 1.0 for i in items)
    item = client.post("/v1/reviews/claim", headers=_h(tokens["reviewer"])).json()
    assert item["status"] == "leased" and item["reviewer"].startswith("reviewer token ")
    r = client.post(
        f"/v1/reviews/{item['item_id']}", headers=_h(tokens["reviewer"]),
        json={"verdict": "fraud", "note": "known fraud ring"},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["verdict"] == "fraud", r.text
    labels = service.log.read("labels")
    assert labels.select("event_id", "is_fraud", "source").rows() == [
        (item["event_id"], 1.0, "review")
    ]


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ({"verdict": "maybe"}, 422, "fraud, legit, unsure"),
        ({"verdict": "fraud", "extra": 1}, 422, "extra"),
        ({"verdict": 1}, 422, "verdict"),
    ],
)
def test_bad_verdicts_are_refused_and_change_nothing(
    api: tuple[TestClient, dict[str, str], Service], body: dict[str, Any], status: int, said: str
) -> None:
    client, tokens, service = api
    item = client.post("/v1/reviews/claim", headers=_h(tokens["reviewer"])).json()
    r = client.post(f"/v1/reviews/{item['item_id']}", headers=_h(tokens["reviewer"]), json=body)
    assert r.status_code == status and said in r.text, r.text
    assert service.log.read("labels").height == 0


def test_unknown_items_closed_items_and_other_peoples_leases_are_4xx(
    api: tuple[TestClient, dict[str, str], Service],
) -> None:
    client, tokens, service = api
    rev, admin = _h(tokens["reviewer"]), _h(tokens["admin"])
    assert client.post("/v1/reviews/999", headers=rev, json={"verdict": "fraud"}).status_code == 404
    item = client.post("/v1/reviews/claim", headers=rev).json()
    taken = client.post(f"/v1/reviews/{item['item_id']}", headers=admin, json={"verdict": "legit"})
    assert taken.status_code == 409 and "held by" in taken.text
    ok = client.post(f"/v1/reviews/{item['item_id']}", headers=rev, json={"verdict": "legit"})
    assert ok.status_code == 200
    again = client.post(f"/v1/reviews/{item['item_id']}", headers=rev, json={"verdict": "fraud"})
    assert again.status_code == 409 and "already closed" in again.text
    assert service.log.read("labels").get_column("is_fraud").to_list() == [0.0]


def test_roles_service_cannot_review_and_reviewer_cannot_promote(
    api: tuple[TestClient, dict[str, str], Service],
) -> None:
    client, tokens, _ = api
    assert client.post("/v1/reviews/claim", headers=_h(tokens["service"])).status_code == 403
    assert client.get("/v1/reviews/queue").status_code == 401
    r = client.post("/v1/reviews/1", headers=_h(tokens["service"]), json={"verdict": "fraud"})
    assert r.status_code == 403
    assert client.post("/v1/models/v1/promote", headers=_h(tokens["reviewer"])).status_code == 403
    assert client.post("/v1/models/rollback", headers=_h(tokens["reviewer"])).status_code == 403


def test_the_case_view_labels_several_events_at_once_or_none(
    api: tuple[TestClient, dict[str, str], Service],
) -> None:
    client, tokens, service = api
    held = client.post("/v1/reviews/claim", headers=_h(tokens["admin"])).json()
    others = [e for e in ("e0", "e1", "e2") if e != held["event_id"]]

    def case(body: dict[str, Any], who: str = "reviewer") -> Any:
        return client.post("/v1/reviews/case", headers=_h(tokens[who]), json=body)

    # Refused whole, nothing written: an unknown event, an event another reviewer holds,
    # a bad verdict, a service token.
    assert case({"verdicts": {others[0]: "fraud", "nope": "fraud"}}).status_code == 404
    refused = case({"verdicts": {others[0]: "fraud", held["event_id"]: "fraud"}})
    assert refused.status_code == 409 and "held by admin token" in refused.text
    assert case({"verdicts": {others[0]: "maybe"}}).status_code == 422
    assert case({"verdicts": {}}).status_code == 422
    assert case({"verdicts": {others[0]: "fraud"}}, "service").status_code == 403
    assert service.log.count("labels") == 0
    done = case({"verdicts": dict.fromkeys(others, "fraud"), "note": "same card as a fraud"})
    assert done.status_code == 200 and done.json() == {"labelled": 2}
    labels = service.log.read("labels")
    assert sorted(labels.select("event_id", "source", "note").rows()) == [
        (e, "review", "same card as a fraud") for e in sorted(others)
    ]
    # Their queue items were labelled through the case view, so they are closed.
    for e in others:
        assert service.review.by_event(e, now=service.clock.now_us()).status == "closed"


def test_the_cli_case_view_lists_the_cards_events_and_labels_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelminder.cli import app

    root = str(queued_project(tmp_path / "p", ids=("e0", "e1", "e2", "e3")))
    run = CliRunner()
    shown = run.invoke(app, ["review", "case", "e0", "--project", root])
    assert shown.exit_code == 0, shown.output
    assert "3 other event(s) of card_id near e0" in shown.output
    stray = run.invoke(app, ["review", "case", "e0", "--label", "fraud", "--events", "e0",
                             "--project", root])  # fmt: skip
    assert stray.exit_code != 0 and "must be among the events shown" in str(stray.exception)
    done = run.invoke(app, ["review", "case", "e0", "--label", "fraud", "--events", "e1,e3",
                            "--reviewer", "ann", "--project", root])  # fmt: skip
    assert done.exit_code == 0 and "2 label(s) appended" in done.output, done.output
    with load_project(root).open_log() as log:
        rows = log.read("labels").select("event_id", "reviewer").rows()
    assert sorted(rows) == [("e1", "ann"), ("e3", "ann")]
