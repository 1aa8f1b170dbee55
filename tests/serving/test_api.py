"""The HTTP API: parity with replay, auth, validation, idempotent retries, shadow, ops."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from modelminder.logreplay import replay_log
from modelminder.project import Project, init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.app import create_app
from modelminder.serving.schemas import PredictionRecord, PredictResponse
from modelminder.serving.service import Service
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

from .conftest import accept_history

WORLD = WorldConfig(days=100, cards=250, seed=21, fraud_card_share=0.25, schedule="steady")


def _json(row: dict[str, Any]) -> dict[str, Any]:
    ts = row["ts"]
    return row | {"ts": ts.isoformat() if isinstance(ts, dt.datetime) else ts}


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Project, list[dict[str, Any]]]]:
    """A project whose log holds the first 95% of a world, with a champion; the rest of the
    events are left for the tests to send live."""
    root: Path = tmp_path_factory.mktemp("live")
    init_project(root, builtin=True)
    accept_history(root)
    project = load_project(root)
    world = simulate(WORLD)
    cut = world.events.height * 95 // 100
    with project.open_log() as log:
        log.append_events(world.events.head(cut))
        log.append_labels(world.labels)
    trained = train_and_register(project, TrainConfig(trials=0, folds=3, max_train_rows=20_000))
    assert trained.result.verdict.passed, trained.result.verdict.summary()
    with project.open_log() as log, Registry.open(root, log) as reg:
        reg.set_alias("champion", trained.record.version, actor="test", reason="fixture")
    yield project, [_json(r) for r in world.events.slice(cut).iter_rows(named=True)]


@pytest.fixture(scope="module")
def service(live: tuple[Project, list[dict[str, Any]]]) -> Iterator[Service]:
    svc = Service(live[0])
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service, open_access=True)) as c:
        yield c


def test_features_served_over_http_equal_replay(
    client: TestClient, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    project, pending = live
    sent = pending[:300]
    for event in sent:
        r = client.post("/v1/predict", json={"events": [event]})
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        assert 0.0 <= p["score"] <= 1.0 and p["decision"] in ("approve", "review", "block")
        assert p["model_version"]
        # reasons come with the decisions someone acts on
        assert len(p["reasons"]) == (0 if p["decision"] == "approve" else 3)
    served = {}
    for event in sent:
        body = client.get(f"/v1/predictions/{event['event_id']}").json()
        champion = next(p for p in body["predictions"] if p["role"] == "champion")
        served[event["event_id"]] = [np.nan if v is None else v for v in champion["features"]]
    with project.open_log() as log:
        replayed = replay_log(log, project.plan())
    ids = [e["event_id"] for e in sent]
    table = replayed.filter(pl.col("event_id").is_in(ids)).sort(
        pl.col("event_id").replace_strict({i: k for k, i in enumerate(ids)})
    )
    expected = table.drop("event_id").to_numpy()
    got = np.array([served[i] for i in ids])
    # Same engine; the state was rebuilt from the log at start, so sums agree to rounding.
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_a_retry_is_not_scored_twice(
    client: TestClient, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    project, pending = live
    event = pending[400]
    first = client.post("/v1/predict", json={"events": [event]}).json()["predictions"][0]
    with project.open_log() as log:
        before = log.count("events")
    again = client.post("/v1/predict", json={"events": [event]}).json()["predictions"][0]
    with project.open_log() as log:
        assert log.count("events") == before
    assert again["duplicate"] is True and again["score"] == first["score"]


def test_answers_match_the_documented_schemas(
    client: TestClient, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    """The OpenAPI document describes what the server really sends (predict is documented,
    not validated, on the hot path)."""
    pending = live[1]
    answer = client.post("/v1/predict", json={"events": pending[700:710]}).json()
    assert len(PredictResponse.model_validate(answer).predictions) == 10
    record = client.get(f"/v1/predictions/{pending[700]['event_id']}").json()
    assert PredictionRecord.model_validate(record).predictions[0].role == "champion"
    # An event ingested without scoring has no score to give back, and says why.
    client.post("/v1/events", json={"events": [pending[711]]})
    late = client.post("/v1/predict", json={"events": [pending[711]]}).json()
    p = PredictResponse.model_validate(late).predictions[0]
    assert p.duplicate and p.score is None and p.note is not None and "/v1/events" in p.note
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/PredictResponse")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"amount": "12.5"}, "amount: Input should be a valid number"),
        ({"country": 3}, "country: Input should be a valid string"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": "2099-01-01T00:00:00Z"}, "ahead of the server's clock"),
    ],
)
def test_bad_requests_are_422_and_write_nothing(
    client: TestClient,
    live: tuple[Project, list[dict[str, Any]]],
    change: dict[str, Any],
    needle: str,
) -> None:
    project, pending = live
    good, bad = pending[500], pending[501] | change
    with project.open_log() as log:
        before = log.count("events")
    r = client.post("/v1/predict", json={"events": [good, bad]})
    assert r.status_code == 422, r.text
    assert needle in r.json()["error"]["message"]
    with project.open_log() as log:
        assert log.count("events") == before  # the whole batch was rejected


def test_nan_and_oversized_batches_are_refused(
    client: TestClient, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    body = '{"events": [' + '{"event_id": "x", "ts": "2026-01-01", "amount": NaN}' + "]}"
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422
    many = {"events": [live[1][0]] * 1001}
    assert client.post("/v1/predict", json=many).status_code == 422
    # Too large, declared or streamed (chunked: no length up front).
    big = b'{"events": [' + b" " * 2_100_000 + b"]}"
    declared = client.post("/v1/predict", content=big)
    assert declared.status_code == 413 and "at most" in declared.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 65_536):
            yield big[i : i + 65_536]

    streamed = client.post(
        "/v1/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["error"]["type"] == "PayloadTooLarge"


def test_labels_arrive_live_and_are_known_from_receipt(
    client: TestClient, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    project, pending = live
    event = pending[0]  # already served
    r = client.post(
        "/v1/labels",
        json={"labels": [{"event_id": event["event_id"], "is_fraud": 1, "label_ts": "2026-01-01"}]},
    )
    assert r.status_code == 200 and r.json()["appended"] == 1
    with project.open_log() as log:
        lab = log.read("labels").filter(pl.col("event_id") == event["event_id"])
    # label_ts is in the past, so it is known from when it was received (now).
    assert lab.get_column("known_at").item() > lab.get_column("label_ts").item()
    # A label from the future would mature every event for the monitors: refused.
    later = {"event_id": pending[1]["event_id"], "is_fraud": 1, "label_ts": "2062-03-01"}
    refused = client.post("/v1/labels", json={"labels": [later]})
    assert refused.status_code == 422 and "ahead of the server's clock" in refused.text


def test_shadow_scores_are_logged_never_returned(
    client: TestClient, service: Service, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    pending = live[1]
    champion = client.get("/v1/models").json()["aliases"]["champion"]
    r = client.post(f"/v1/models/{champion}/promote", params={"alias": "shadow"})
    assert r.status_code == 200
    event = pending[600]
    answer = client.post("/v1/predict", json={"events": [event]}).json()["predictions"]
    assert [p["role"] for p in answer] == ["champion"]
    service.flush_shadow()
    logged = client.get(f"/v1/predictions/{event['event_id']}").json()["predictions"]
    roles = sorted(p["role"] for p in logged)
    assert roles == ["champion", "shadow"]
    shadow = next(p for p in logged if p["role"] == "shadow")
    champion_logged = next(p for p in logged if p["role"] == "champion")
    assert "features" not in answer[0]  # the answer stays small; the log has them
    assert shadow["features"] == champion_logged["features"]  # the same served features


def test_tokens_and_roles(service: Service) -> None:
    service_token = service.store.create_token("service")
    reviewer = service.store.create_token("reviewer")
    admin = service.store.create_token("admin")
    with TestClient(create_app(service, open_access=False)) as c:

        def auth(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        r = c.post("/v1/models/rollback")
        assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
        assert c.post("/v1/models/rollback", headers=auth("mm_admin_forged")).status_code == 401
        r = c.post("/v1/models/rollback", headers=auth(service_token))
        assert r.status_code == 403 and "needs admin" in r.json()["error"]["message"]
        assert c.get("/v1/models", headers=auth(reviewer)).status_code == 200
        assert c.post("/v1/labels", json={"labels": []}, headers=auth(reviewer)).status_code == 403
        champion = c.get("/v1/models", headers=auth(admin)).json()["aliases"]["champion"]
        r = c.post(f"/v1/models/{champion}/promote", headers=auth(admin))
        assert r.status_code == 200
    # tokens are stored hashed: the database never holds the token itself
    assert admin.encode() not in service.store.path.read_bytes()


def test_ops_endpoints(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["champion"]
    text = client.get("/metrics").text
    assert 'minder_requests_total{route="/v1/predict",status="200"}' in text
    assert "minder_scores_bucket" in text and "minder_decisions_total" in text
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/predict", "/v1/events", "/v1/labels", "/v1/predictions/{event_id}", "/v1/models",
        "/v1/models/{version}/promote", "/v1/models/rollback", "/healthz", "/readyz", "/metrics",
    ):  # fmt: skip
        assert path in spec["paths"]


def test_openapi_documents_errors_and_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    predict = spec["paths"]["/v1/predict"]["post"]
    assert {"401", "403", "413", "422", "503"} <= set(predict["responses"])
    ref = predict["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ErrorBody")
    assert predict["security"] == [{"HTTPBearer": []}]


def test_concurrent_requests_are_scored_together_and_answered_alone(
    service: Service, live: tuple[Project, list[dict[str, Any]]]
) -> None:
    """Requests waiting together share one model call and one commit, yet each gets its own
    answer: a bad one its own 422, a repeated event_id its first answer back; features as
    served equal a replay of the log."""
    import asyncio

    import httpx2

    from modelminder.monitoring.skew import check_served

    project, pending = live
    app = create_app(service, open_access=False)
    batcher = app.state.batcher
    goods = pending[800:830]
    token = service.store.create_token("service")

    async def send() -> list[Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(
            transport=transport, base_url="http://test",
            headers={"Authorization": f"Bearer {token}"},
        ) as c:  # fmt: skip
            calls = [c.post("/v1/predict", json={"events": [e]}) for e in goods]
            calls.append(c.post("/v1/predict", json={"events": [pending[830] | {"amount": "x"}]}))
            calls += [c.post("/v1/predict", json={"events": [pending[831]]}) for _ in range(2)]
            return list(await asyncio.gather(*calls))

    answers = asyncio.run(send())
    assert [r.status_code for r in answers] == [200] * 30 + [422, 200, 200]
    got = [r.json()["predictions"][0] for r in answers[:30]]
    assert [p["event_id"] for p in got] == [e["event_id"] for e in goods]
    assert sorted(r.json()["predictions"][0]["duplicate"] for r in answers[31:]) == [False, True]
    assert 0 < batcher.batches < 30  # scored in fewer batches than requests
    with project.open_log() as log:
        served = [
            p
            for e in goods
            for p in service.predictions.for_event(e["event_id"])
            if p.role == "champion"
        ]
        result = check_served(
            log, project.plan(), [p.event_id for p in served], [p.features for p in served]
        )
    assert result.checked == 30 and result.ok, result.mismatches
