"""``/review``: the reviewers' pages. Cookie login re-checked per request, CSRF on every
form, verdicts as labels through the live service, clear 4xx pages that change nothing, and
escaped event data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from modelminder.events.predictions import Prediction, PredictionTopic
from modelminder.project import load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Service
from modelminder.serving.store import token_id

from ..review.factories import NOW, queued_project

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ID = "<img src=x onerror=alert(2)>"
CSRF = re.compile(r'name="csrf" value="([^"]*)"')
ITEM = re.compile(r"/review/items/(\d+)$")


@dataclass
class UI:
    client: TestClient
    service: Service
    tokens: dict[str, str]

    def login(self, role: str = "reviewer", client: TestClient | None = None) -> Response:
        c = client or self.client
        form = c.get("/review/login")
        return c.post(
            "/review/login",
            data={"csrf": _csrf(form), "token": self.tokens[role]},
            follow_redirects=False,
        )

    def csrf(self) -> str:
        return _csrf(self.client.get("/review/"))

    def post(self, path: str, **fields: str) -> Response:
        return self.client.post(path, data=fields, follow_redirects=False)

    def claim_next(self, csrf: str) -> int:
        """The item the "Next item" button claims (whichever the queue's order gives)."""
        return _item(self.post("/review/next", csrf=csrf))

    def event_of(self, item_id: int) -> str:
        return self.service.review.get(item_id, now=self.service.clock.now_us()).event_id

    def changes(self) -> tuple[int, int]:
        """What a refused request must not have touched: labels and review events."""
        db = self.service.log.database
        events = int(db.fetch("SELECT COUNT(*) FROM review_events")[0][0])
        return self.service.log.read("labels").height, events


def _csrf(page: Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


def _item(redirect: Response) -> int:
    """The item a 303 goes to."""
    assert redirect.status_code == 303, redirect.text
    found = ITEM.search(redirect.headers["location"])
    assert found, redirect.headers["location"]
    return int(found.group(1))


def served_project(root: Path) -> Path:
    """Four queued blocked events of card ``c`` (items 1-4: ``e0``, ``e1``, ``e2`` and one
    whose id is markup), and a later event of the card (``e9``, not queued) whose merchant is
    a script; each with a champion prediction holding features and reasons."""
    queued_project(root, ("e0", "e1", "e2", HOSTILE_ID))
    project = load_project(root)
    names = project.plan().names
    with project.open_log() as log:
        log.append_events(
            pl.DataFrame({
                "event_id": ["e9"], "ts": ["2026-05-28T01:00:00Z"], "card_id": ["c"],
                "merchant_id": [HOSTILE], "amount": [99.0], "country": ["FR"],
                "channel": ["online"],
            })
        )  # fmt: skip
        vector = [float(i) for i in range(len(names))]
        why = [{"feature": names[3], "value": 3.0, "contribution": 0.42}]
        ids = ("e0", "e1", "e2", HOSTILE_ID, "e9")
        PredictionTopic(log).append(
            [Prediction(e, NOW, "v1", "champion", 0.95, "block", 0, vector, why) for e in ids]
        )
    return root


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    root = served_project(tmp_path / "p")
    service = Service(load_project(root))
    tokens = {r: service.store.create_token(r) for r in ("service", "reviewer", "admin")}
    try:
        with TestClient(create_app(service)) as client:
            yield UI(client, service, tokens)
    finally:
        service.close()


def test_a_reviewer_logs_in_with_a_strict_httponly_cookie(ui: UI) -> None:
    r = ui.login()
    assert r.status_code == 303 and r.headers["location"] == "/review/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("minder_review="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/review"} <= attributes
    assert "secure" not in attributes  # plain http (a test client); see the https test
    page = ui.client.get("/review/")
    assert (
        page.status_code == 200 and "reviewer token " + token_id(ui.tokens["reviewer"]) in page.text
    )
    assert page.text.count('href="/review/items/') == 4
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_over_https_the_cookie_is_secure(ui: UI) -> None:
    with TestClient(ui.client.app, base_url="https://testserver") as client:
        r = ui.login(client=client)
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("minder_review="))
        assert "secure" in cookie.lower()


@pytest.mark.parametrize(
    ("role", "status", "said"), [("service", 403, "cannot review"), ("nobody", 401, "Unknown")]
)
def test_service_and_unknown_tokens_cannot_log_in(
    ui: UI, role: str, status: int, said: str
) -> None:
    ui.tokens["nobody"] = "mm_reviewer_" + "x" * 32
    r = ui.login(role)
    assert r.status_code == status and said in r.text
    assert not any(c.startswith("minder_review=") for c in r.headers.get_list("set-cookie"))
    assert ui.client.get("/review/", follow_redirects=False).status_code == 303


def test_a_login_form_from_elsewhere_is_refused(ui: UI) -> None:
    ui.client.get("/review/login")
    r = ui.post("/review/login", csrf="forged", token=ui.tokens["reviewer"])
    assert r.status_code == 403 and "CSRF" in r.text
    assert ui.client.get("/review/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "path", ["/review/", "/review/items/1", "/review/items/4", "/review/overview"]
)
def test_pages_without_a_session_redirect_to_the_login_and_show_nothing(ui: UI, path: str) -> None:
    r = ui.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review/login"
    assert "e0" not in r.text and "alert" not in r.text and "must_review" not in r.text
    # a forged cookie is no session either
    ui.client.cookies.set("minder_review", "mm_admin_" + "x" * 32, path="/review")
    r = ui.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review/login?ended=1"


def test_a_revoked_token_stops_at_the_next_request(ui: UI) -> None:
    ui.login()
    assert ui.client.get("/review/").status_code == 200
    csrf = ui.csrf()
    ui.service.store.revoke(token_id(ui.tokens["reviewer"]))
    r = ui.client.get("/review/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review/login?ended=1"
    assert 'minder_review=""' in r.headers["set-cookie"]  # cleared
    before = ui.changes()
    ui.client.cookies.set("minder_review", ui.tokens["reviewer"], path="/review")
    assert ui.post("/review/next", csrf=csrf).status_code == 303
    assert ui.changes() == before


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        ({}, {}),
        ({"csrf": "0" * 64}, {}),
        ({"csrf": "é"}, {}),
        ({"csrf": "right"}, {"Origin": "https://evil.example"}),
        ({"csrf": "right"}, {"Sec-Fetch-Site": "cross-site"}),
    ],
)
def test_posts_without_the_right_csrf_token_or_from_another_site_change_nothing(
    ui: UI, fields: dict[str, str], headers: dict[str, str]
) -> None:
    ui.login()
    csrf = ui.csrf()
    mine = ui.claim_next(csrf)
    other = next(i for i in (1, 2, 3, 4) if i != mine)
    before = ui.changes()
    form = {k: csrf if v == "right" else v for k, v in fields.items()}
    for path, extra in [
        (f"/review/items/{mine}/label", {"verdict": "fraud"}),
        (f"/review/items/{mine}/skip", {"reason": "busy"}),
        (f"/review/items/{other}/claim", {}),
        ("/review/next", {}),
        ("/review/logout", {}),
    ]:
        r = ui.client.post(path, data=form | extra, headers=headers, follow_redirects=False)
        assert r.status_code == 403, (path, r.text)
        assert "Nothing was changed" in r.text
    assert ui.changes() == before
    assert ui.service.review.get(mine, now=ui.service.clock.now_us()).status == "leased"
    assert ui.client.get("/review/").status_code == 200  # still logged in


def test_a_verdict_from_the_form_is_a_review_label_through_the_live_service(
    ui: UI, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    log_labels = ui.service.log_labels
    monkeypatch.setattr(
        ui.service, "log_labels", lambda rows: seen.append(rows) or log_labels(rows)
    )
    ui.login()
    csrf = ui.csrf()
    first = ui.claim_next(csrf)
    page = ui.client.get(f"/review/items/{first}")
    assert "Claimed by you" in page.text and 'value="fraud"' in page.text
    after = ui.post(f"/review/items/{first}/label", csrf=csrf, verdict="fraud", note="ring")
    second = _item(after)  # the next-item flow: the next item is claimed and shown
    assert second != first and "Claimed by you" in ui.client.get(after.headers["location"]).text
    labels = ui.service.log.read("labels")
    assert labels.select("event_id", "is_fraud", "source").rows() == [
        (ui.event_of(first), 1.0, "review")
    ]
    assert len(seen) == 1  # the live label door: label-aware state sees the verdict
    queue = ui.client.get("/review/").text
    assert re.search(rf'items/{first}">{first}</a></td>\s*<td>\w+ \(fraud\)</td>', queue)


def test_an_unsure_verdict_and_a_skip_write_no_label(ui: UI) -> None:
    ui.login()
    csrf = ui.csrf()
    first = ui.claim_next(csrf)
    second = _item(ui.post(f"/review/items/{first}/skip", csrf=csrf, reason="need the file"))
    assert second != first  # a skipped item is not offered to the same reviewer again
    third = _item(ui.post(f"/review/items/{second}/label", csrf=csrf, verdict="unsure"))
    assert ui.service.log.read("labels").height == 0
    r = ui.post(f"/review/items/{third}/skip", csrf=csrf, reason=" ")
    assert r.status_code == 422 and "reason" in r.text


def test_unknown_items_are_404_pages(ui: UI) -> None:
    ui.login()
    csrf = ui.csrf()
    before = ui.changes()
    for r in (
        ui.client.get("/review/items/999"),
        ui.client.get(f"/review/items/{2**70}"),
        ui.post("/review/items/999/label", csrf=csrf, verdict="fraud"),
        ui.post("/review/items/999/claim", csrf=csrf),
    ):
        assert r.status_code == 404 and "No review item" in r.text, r.text
        assert r.headers["content-type"].startswith("text/html")
    assert ui.changes() == before


def test_an_item_held_by_another_reviewer_is_409(ui: UI) -> None:
    held = ui.client.post(
        "/v1/reviews/claim", headers={"Authorization": f"Bearer {ui.tokens['admin']}"}
    ).json()
    ui.login()
    csrf = ui.csrf()
    item = held["item_id"]
    assert (
        f"Claimed by admin token {token_id(ui.tokens['admin'])}"
        in ui.client.get(f"/review/items/{item}").text
    )
    before = ui.changes()
    r = ui.post(f"/review/items/{item}/label", csrf=csrf, verdict="legit")
    assert r.status_code == 409 and "held by admin token" in r.text
    r = ui.post(f"/review/items/{item}/claim", csrf=csrf)
    assert r.status_code == 409 and "only open items can be claimed" in r.text
    assert ui.changes() == before


def test_bad_verdicts_and_an_empty_queue_are_clear_4xx(ui: UI) -> None:
    ui.login()
    csrf = ui.csrf()
    item = ui.claim_next(csrf)
    r = ui.post(f"/review/items/{item}/label", csrf=csrf, verdict="maybe")
    assert r.status_code == 422 and "fraud, legit, unsure" in r.text
    labelled = []
    for _ in range(4):  # label whatever comes next, four times
        labelled.append(item)
        r = ui.post(f"/review/items/{item}/label", csrf=csrf, verdict="legit")
        item = _item(r) if r.headers["location"] != "/review/?notice=no-next" else 0
    assert sorted(labelled) == [1, 2, 3, 4] and item == 0
    assert "There is no next item for you" in ui.client.get("/review/?notice=no-next").text
    r = ui.post("/review/next", csrf=csrf)
    assert r.status_code == 409 and "no open item for you" in r.text
    assert ui.service.log.read("labels").height == 4


@pytest.mark.parametrize(
    ("query", "allowed"),
    [
        ("status=bogus", "open, leased, closed, expired"),
        ("reason=bogus", "must_review"),
        ("sort=bogus", "priority, age"),
    ],
)
def test_bad_filters_name_the_allowed_values(ui: UI, query: str, allowed: str) -> None:
    ui.login()
    r = ui.client.get(f"/review/?{query}")
    assert r.status_code == 422 and allowed in r.text and "bogus" in r.text
    assert r.headers["content-type"].startswith("text/html")


def test_filters_and_sorting(ui: UI) -> None:
    ui.login()
    mine = ui.claim_next(ui.csrf())
    leased = ui.client.get("/review/?status=leased").text
    assert re.findall(r'href="/review/items/(\d+)"', leased) == [str(mine)] and ">you<" in leased
    by_age = ui.client.get("/review/?sort=age&reason=must_review").text
    assert re.findall(r'href="/review/items/(\d+)"', by_age) == ["1", "2", "3", "4"]
    assert ui.client.get("/review/?reason=exploration").text.count("/review/items/") == 0


def test_event_data_is_escaped(ui: UI) -> None:
    ui.login()
    for path in ("/review/items/4", "/review/items/1"):  # markup as an item's id; in a history
        page = ui.client.get(path).text
        assert HOSTILE not in page and HOSTILE_ID not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # e9's merchant
        assert "&lt;img src=x onerror=alert(2)&gt;" in page


def test_the_item_page_shows_what_was_served_and_the_cards_history(ui: UI) -> None:
    ui.service.add_labels(
        [{"event_id": "e2", "is_fraud": 1.0, "label_ts": "2026-05-29T00:00:00Z",
          "source": "chargeback"}]
    )  # fmt: skip
    ui.login()
    page = ui.client.get("/review/items/1").text
    names = ui.service.plan.names
    assert "<strong>champion</strong> v1: score 0.95" in page
    assert f'<td>{names[3]}</td><td class="num">3</td><td class="num">0.42</td>' in page
    assert f'<tr><td>{names[-1]}</td><td class="num">{len(names) - 1}</td></tr>' in page
    history = page.split("History of card_id c")[1]
    shown = re.findall(r"<td>2026-05-28 [\d:]+ UTC</td><td>([^<]*)</td>", history)
    assert shown == ["e9", "&lt;img src=x onerror=alert(2)&gt;", "e2", "e1"]  # newest first
    assert "is_fraud=1 from chargeback, 2026-05-29 00:00:00 UTC" in history
    assert "Expired" in ui.client.get("/review/items/3").text  # e2: a chargeback came first


def test_the_overview_with_and_without_agreement(ui: UI, monkeypatch: pytest.MonkeyPatch) -> None:
    ui.login()
    csrf = ui.csrf()
    ui.post(f"/review/items/{ui.claim_next(csrf)}/label", csrf=csrf, verdict="fraud")
    page = ui.client.get("/review/overview").text
    assert "<tr><th>Reviewed today</th><td>1 of 200</td></tr>" in page
    assert '<tr><th>leased</th><td class="num">1</td></tr>' in page  # the next item
    assert '<tr><th>fraud</th><td class="num">1</td></tr>' in page
    assert "no item reviewed twice yet" in page
    stats = ui.service.review.stats
    monkeypatch.setattr(
        ui.service.review, "stats",
        lambda now: stats(now=now) | {"agreement": {"items": 3, "agreeing": 2, "rate": 2 / 3}},
    )  # fmt: skip
    assert "2 of 3 items reviewed twice agree (67%)" in ui.client.get("/review/overview").text


def test_logout_forgets_the_session(ui: UI) -> None:
    ui.login()
    r = ui.post("/review/logout", csrf=ui.csrf())
    assert r.status_code == 303 and r.headers["location"] == "/review/login"
    assert ui.client.get("/review/", follow_redirects=False).status_code == 303


def test_the_assets_are_served_by_the_app(ui: UI) -> None:
    js = ui.client.get("/review/assets/review.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert ui.client.get("/review/assets/review.css").headers["content-type"].startswith("text/css")
    login = ui.client.get("/review/login").text
    assert "http" not in login  # nothing from elsewhere: works offline


def test_the_case_view_labels_picked_events_of_the_card_in_one_go(ui: UI) -> None:
    ui.login()
    page = ui.client.get("/review/items/1")
    assert 'name="event:e9"' in page.text and 'action="/review/items/1/case"' in page.text
    csrf = _csrf(page)
    before = ui.changes()
    fields = {"event:e9": "1", "event:e2": "1", "verdict": "fraud"}
    assert ui.post("/review/items/1/case", **fields).status_code == 403  # no CSRF token
    assert ui.post("/review/items/1/case", csrf=csrf, verdict="fraud").status_code == 422
    assert ui.changes() == before
    done = ui.post("/review/items/1/case", csrf=csrf, note="same card", **fields)
    assert done.status_code == 303 and "notice=case-labelled" in done.headers["location"]
    assert "each picked event got its own label" in ui.client.get(done.headers["location"]).text
    labels = ui.service.log.read("labels").sort("event_id")
    assert labels.select("event_id", "is_fraud", "source", "note").rows() == [
        ("e2", 1.0, "review", "same card"), ("e9", 1.0, "review", "same card")
    ]  # fmt: skip
    assert set(labels.get_column("reviewer")) == {
        ui.service.review.get(3, now=ui.service.clock.now_us()).labelled_by[0]
    }  # e2's item, closed through it
