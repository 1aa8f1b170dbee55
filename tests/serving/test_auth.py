"""Who may call what, generated from the route table: every route x every kind of caller
(no token, each role, a forged and a revoked token), on a closed server and on one started
open that later gets a token. Decided per request, before the body is parsed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelminder.project import init_project, load_project
from modelminder.serving.app import create_app
from modelminder.serving.auth import route_roles
from modelminder.serving.service import Service
from modelminder.serving.store import ROLES, token_id

CALLERS = ("none", *ROLES, "forged", "revoked")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An empty project (no champion): admitted calls answer 2xx, 404, 409, 422 or 503, and
    nothing a refused call could do would show."""
    root: Path = tmp_path_factory.mktemp("auth")
    init_project(root, builtin=True)
    svc = Service(load_project(root))
    yield svc
    svc.close()


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "nope", template)


def _headers(tokens: dict[str, str], caller: str) -> dict[str, str]:
    return {} if caller == "none" else {"Authorization": f"Bearer {tokens[caller]}"}


def test_every_route_admits_exactly_its_roles(service: Service) -> None:
    app = create_app(service, open_access=False)
    tokens = {role: service.store.create_token(role) for role in ROLES}
    tokens["forged"] = "mm_admin_" + "x" * 32
    tokens["revoked"] = service.store.create_token("admin")
    service.store.revoke(token_id(tokens["revoked"]))
    table = route_roles(app)
    guarded = {k: v for k, v in table.items() if v is not None}
    # The table covers what the README documents as guarded.
    assert ("POST", "/v1/predict") in guarded and ("POST", "/v1/models/rollback") in guarded
    assert ("GET", "/v1/monitor/report") in guarded and ("GET", "/healthz") not in guarded
    checked = 0
    with TestClient(app) as client:
        for (method, template), roles in table.items():
            for caller in CALLERS:
                # A malformed body: refused callers must get 401/403, never a parse error.
                r = client.request(
                    method, _path(template), headers=_headers(tokens, caller)
                    | {"content-type": "application/json"},
                    content=b"{not json" if method == "POST" else None,
                )  # fmt: skip
                where = f"{method} {template} as {caller}: {r.status_code} {r.text[:200]}"
                assert r.status_code < 500 or r.status_code == 503, where  # 503: no champion
                if roles is None:
                    assert r.status_code not in (401, 403), where
                elif caller in ("none", "forged", "revoked"):
                    assert r.status_code == 401, where
                    assert r.json()["error"]["type"] == "Unauthorized", where
                    assert r.headers["www-authenticate"] == "Bearer", where
                elif caller == "admin" or caller in roles:
                    assert r.status_code not in (401, 403), where
                else:
                    assert r.status_code == 403, where
                    assert r.json()["error"]["type"] == "Forbidden", where
                checked += 1
    assert checked == len(table) * len(CALLERS)


def test_an_open_server_closes_when_a_token_is_created_while_it_runs(tmp_path: Path) -> None:
    init_project(tmp_path, builtin=True)
    service = Service(load_project(tmp_path))
    try:
        with TestClient(create_app(service, open_access=True)) as client:
            # Open: no token needed (an admin's rights; no champion to roll back to).
            assert client.post("/v1/models/rollback").status_code == 409
            assert client.get("/v1/models").status_code == 200
            token = service.store.create_token("service")  # e.g. `minder tokens create`
            r = client.post("/v1/models/rollback")
            assert r.status_code == 401 and "Tokens exist now" in r.json()["error"]["message"]
            assert client.get("/v1/models").status_code == 401
            r = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200
            # Revoking every token does not reopen it.
            service.store.revoke(token_id(token))
            assert client.get("/v1/models").status_code == 401
            r = client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
    finally:
        service.close()


def test_a_closed_server_refuses_without_a_token_even_with_a_bad_body(service: Service) -> None:
    with TestClient(create_app(service, open_access=False)) as client:
        r = client.post("/v1/predict", content=b"[[[", headers={"content-type": "text/plain"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "Unauthorized"
