"""``/review/...``: the reviewers' web pages (queue, item, overview), served by ``minder serve``.

An app of its own, mounted at ``/review`` by :func:`~modelminder.serving.app.create_app`, so
its HTML pages, redirects and errors stay out of the JSON API's error envelope and OpenAPI
document. Server-rendered (autoescaped templates, :mod:`.review_assets`); a little script for
the keyboard shortcuts; nothing loaded from elsewhere.

Login: ``POST /review/login`` takes a ``reviewer`` (or ``admin``) token and keeps it in a cookie
(HttpOnly, SameSite=Strict, Path=/review, Secure over https). Every request asks the token
store for the token's role again, so a revoked token stops at its next request; a page asked
for without a valid cookie redirects (303) to the login page and shows nothing else.

CSRF: each form that changes something carries an HMAC of the session token (the login form:
of a nonce in a cookie of its own) under a secret made with the app; a POST whose token is
missing or wrong, or that a browser says came from another site (``Origin``,
``Sec-Fetch-Site``), is refused (403) before anything is done.

A reviewer is named as the JSON API names a caller (``"reviewer token <id>"``), so a lease
taken on one is held on the other; verdicts go through the live service's label door, as the
API's do. Handlers that touch SQLite are plain ``def`` (FastAPI's thread pool).

(No ``from __future__ import annotations``: FastAPI reads the annotations.)
"""

import hashlib
import hmac
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelminder.errors import MinderError, SchemaError
from modelminder.review.case import entity_keys, history, labels_of
from modelminder.review.policies import POLICIES
from modelminder.review.queue import SORTS, STATUSES, ReviewError, ReviewItem, UnknownItem
from modelminder.serving.review_assets import CSS, JS, age, environment, when
from modelminder.serving.service import Service, ShuttingDown
from modelminder.serving.store import token_id

COOKIE = "minder_review"
LOGIN_COOKIE = "minder_review_login"
ROLES = ("reviewer", "admin")
MAX_ROWS = 500  # queue rows on one page
NOTICES = {
    "no-next": "Saved. There is no next item for you: none is open (besides those you "
    "skipped), or today's review budget is spent.",
    "case-labelled": "Labelled: each picked event got its own label (source review).",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TITLES = {403: "Refused", 404: "Not found", 405: "Not allowed", 409: "Not possible now"}


@dataclass(frozen=True)
class Session:
    """A logged-in reviewer (a cookie whose token the store says is a reviewer's or an
    admin's, now): the name leases and verdicts are recorded under, and the CSRF token of
    their forms."""

    reviewer: str
    csrf: str


@dataclass(frozen=True)
class Posted:
    """A state-changing request that passed the session and CSRF checks, with its form."""

    session: Session
    form: dict[str, str]


class _NoSession(Exception):
    """No valid session cookie: answered with a redirect to the login page."""

    def __init__(self, stale: bool) -> None:
        super().__init__("login needed")
        self.stale = stale  # a cookie was sent: its token is unknown, revoked or not a reviewer's


def review_app(service: Service) -> FastAPI:
    """The reviewer UI over ``service`` (mount it at ``/review``)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    secret = secrets.token_bytes(32)  # per process: a restart asks open pages to reload
    env = environment(service.log.schema.label)

    def mac(purpose: str, value: str) -> str:
        return hmac.new(secret, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def page(
        request: Request, name: str, title: str, s: Session | None, code: int = 200, **v: Any
    ) -> HTMLResponse:
        body = env.get_template(name).render(
            root=_root(request), title=title, who=s.reviewer if s else None,
            csrf=s.csrf if s else "", **v,
        )  # fmt: skip
        return HTMLResponse(body, code, headers=_HEADERS)

    def session(request: Request) -> Session:  # def: the token store is SQLite
        token = request.cookies.get(COOKIE)
        role = service.store.role_of(token) if token else None
        if token is None or role not in ROLES:
            raise _NoSession(stale=token is not None)
        return Session(f"{role} token {token_id(token)}", mac("session", token))

    def posted(
        request: Request,
        s: Annotated[Session, Depends(session)],
        form: Annotated[dict[str, str], Depends(_form)],
    ) -> Posted:
        _check_site(request)
        _check_csrf(form, s.csrf)
        return Posted(s, form)

    Reviewer = Annotated[Session, Depends(session)]
    Form = Annotated[Posted, Depends(posted)]

    def now() -> int:
        return service.clock.now_us()

    def then_next(request: Request, s: Session) -> Response:
        """The next-item flow: claim the next item and show it, or the queue if none is left."""
        try:
            item = service.review.claim(s.reviewer, now=now())
        except ReviewError:
            return _redirect(request, "/?notice=no-next")
        return _redirect(request, f"/items/{item.item_id}")

    def login_page(request: Request, message: str | None, code: int) -> Response:
        nonce = secrets.token_urlsafe(16)
        response = page(
            request, "login", "Log in", None, code, message=message,
            login_csrf=mac("login", nonce),
        )  # fmt: skip
        _set_cookie(response, request, LOGIN_COOKIE, nonce)
        return response

    # -- handlers of what can go wrong ------------------------------------------------------
    @app.exception_handler(_NoSession)
    async def to_login(request: Request, exc: _NoSession) -> Response:
        response = _redirect(request, "/login?ended=1" if exc.stale else "/login")
        if exc.stale:
            _clear_cookie(response, request, COOKIE)
        return response

    @app.exception_handler(MinderError)
    async def refused(request: Request, exc: MinderError) -> Response:
        status = _status_of(exc)
        return page(request, "error", _TITLES.get(status, "Cannot do that"), None, status,
                    message=str(exc))  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "No such page. The review pages start at the queue."
        title = _TITLES.get(exc.status_code, "Cannot do that")
        return page(request, "error", title, None, exc.status_code, message=message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return page(request, "error", "Bad input", None, 422, message=problems)

    # -- login ------------------------------------------------------------------------------
    @app.get("/login")
    async def login_form(request: Request, ended: str = "") -> Response:
        message = "Your session ended (the token was revoked or is unknown)." if ended else None
        return login_page(request, message, 200)

    @app.post("/login")
    def login(request: Request, form: Annotated[dict[str, str], Depends(_form)]) -> Response:
        _check_site(request)
        nonce = request.cookies.get(LOGIN_COOKIE)  # set with the form; none: refused
        _check_csrf(form, mac("login", nonce) if nonce else "")
        token = form.get("token", "").strip()
        role = service.store.role_of(token) if token else None
        if role is None:
            return login_page(request, "Unknown or revoked token.", 401)
        if role not in ROLES:
            return login_page(
                request, f"A {role!r} token cannot review; log in with a reviewer or admin "
                "token (minder tokens create --role reviewer).", 403,
            )  # fmt: skip
        response = _redirect(request, "/")
        _set_cookie(response, request, COOKIE, token)
        _clear_cookie(response, request, LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request, form: Annotated[dict[str, str], Depends(_form)]) -> Response:
        token = request.cookies.get(COOKIE)
        if token is not None:  # even a revoked token's page may log out
            _check_site(request)
            _check_csrf(form, mac("session", token))
        response = _redirect(request, "/login")
        _clear_cookie(response, request, COOKIE)
        return response

    # -- pages ------------------------------------------------------------------------------
    @app.get("/")
    def queue(
        request: Request, s: Reviewer, reason: str = "", status: str = "", sort: str = "order",
        notice: str = "",
    ) -> Response:  # fmt: skip
        t = now()  # sort: the claim order (default), priority or age (the queue checks it)
        found = service.review.items(
            now=t, status=status or None, reason=reason or None, limit=10_000_000, sort=sort
        )
        stats = service.review.stats(now=t)
        return page(
            request, "queue", "Queue", s, items=found[:MAX_ROWS], more=len(found) > MAX_ROWS,
            now=t, me=s.reviewer, reason=reason, status=status, sort=sort, reasons=list(POLICIES),
            statuses=list(STATUSES), sorts=SORTS, notice=NOTICES.get(notice),
            reviewed=stats["reviewed_today"], budget=stats["daily_budget"],
        )  # fmt: skip

    @app.get("/items/{item_id}")
    def item_page(request: Request, s: Reviewer, item_id: int, notice: str = "") -> Response:
        t = now()
        item = service.review.get(item_id, now=t)
        view = _item_view(service, item, s.reviewer, t)
        return page(
            request, "item", f"Item {item.item_id}", s, item=item,
            notice=NOTICES.get(notice), **view,
        )  # fmt: skip

    @app.get("/overview")
    def overview(request: Request, s: Reviewer) -> Response:
        stats = service.review.stats(now=now())
        turn = stats.get("median_turnaround_s")
        return page(
            request, "overview", "Overview", s, stats=stats,
            turnaround="no item labelled yet" if turn is None else age(int(turn * 1e6)),
            agreement=_agreement(stats.get("agreement")),
            tables=[("By status", stats["by_status"]), ("By reason", stats["by_reason"]),
                    ("Verdicts", stats["verdicts"])],
        )  # fmt: skip

    # -- actions ----------------------------------------------------------------------------
    @app.post("/next")
    def next_item(request: Request, p: Form) -> Response:
        item = service.review.claim(p.session.reviewer, now=now())
        return _redirect(request, f"/items/{item.item_id}")

    @app.post("/items/{item_id}/claim")
    def claim(request: Request, p: Form, item_id: int) -> Response:
        item = service.review.claim(p.session.reviewer, now=now(), item_id=item_id)
        return _redirect(request, f"/items/{item.item_id}")

    @app.post("/items/{item_id}/label")
    def label(request: Request, p: Form, item_id: int) -> Response:
        service.review.label(
            item_id, p.session.reviewer, p.form.get("verdict", ""), now=now(),
            note=p.form.get("note", ""),
            append_labels=service.log_labels,  # the live door, as the API's verdicts
        )  # fmt: skip
        return then_next(request, p.session)

    @app.post("/items/{item_id}/case")
    def case(request: Request, p: Form, item_id: int) -> Response:
        """The case view: label the picked events of the item's card in one go."""
        picked = [k.removeprefix("event:") for k in p.form if k.startswith("event:")]
        if not picked:
            raise SchemaError("Pick at least one event of the card to label.")
        verdict = p.form.get("verdict", "")
        service.review.label_events(
            dict.fromkeys(picked, verdict), p.session.reviewer, now=now(),
            note=p.form.get("note", ""), append_labels=service.log_labels,
        )  # fmt: skip
        return _redirect(request, f"/items/{item_id}?notice=case-labelled")

    @app.post("/items/{item_id}/skip")
    def skip(request: Request, p: Form, item_id: int) -> Response:
        service.review.skip(item_id, p.session.reviewer, p.form.get("reason", ""), now=now())
        return then_next(request, p.session)

    # -- assets -----------------------------------------------------------------------------
    @app.get("/assets/review.css")
    async def stylesheet() -> Response:
        return Response(CSS, media_type="text/css", headers=_ASSET_HEADERS)

    @app.get("/assets/review.js")
    async def script() -> Response:
        return Response(JS, media_type="text/javascript", headers=_ASSET_HEADERS)

    return app


_ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


# -- request checks -------------------------------------------------------------------------
async def _form(request: Request) -> dict[str, str]:
    """The request's urlencoded form (what the pages' forms send), as text fields."""
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        return {}  # (then refused for its missing CSRF token)
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(
            415, "The review pages take forms sent as application/x-www-form-urlencoded; "
            f"this request has content-type {kind or '(none)'}.",
        )  # fmt: skip
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, max_num_fields=64
        )  # the case form: 20 picks + 3
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(422, f"The form could not be read: {exc}.") from None
    return dict(pairs)


def _check_site(request: Request) -> None:
    """Refuse a request the browser says another site made (the CSRF token is the main
    defence; this one needs no state)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    site = request.headers.get("sec-fetch-site")
    if (origin is not None and origin != own) or site not in (None, "same-origin", "none"):
        raise HTTPException(
            403, f"This form was sent from another site ({origin or site}); only these pages "
            "may send it. Nothing was changed.",
        )  # fmt: skip


def _check_csrf(form: dict[str, str], expected: str) -> None:
    sent = form.get("csrf", "")
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            403, "The form's CSRF token is missing or wrong (the page may be from before the "
            "server restarted): reload the page and try again. Nothing was changed.",
        )  # fmt: skip


def _status_of(exc: MinderError) -> int:
    if isinstance(exc, UnknownItem):
        return 404
    if isinstance(exc, ReviewError):
        return 409
    if isinstance(exc, ShuttingDown):
        return 503
    return 422  # the request's input (SchemaError and the like)


# -- responses ------------------------------------------------------------------------------
def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _redirect(request: Request, path: str) -> Response:
    return RedirectResponse(_root(request) + path, status_code=303)


def _set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name, value, path=_root(request) or "/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def _clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=_root(request) or "/", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


# -- views ----------------------------------------------------------------------------------
def _item_view(service: Service, item: ReviewItem, me: str, now: int) -> dict[str, Any]:
    """What the item page shows besides the item: its event, what was served, the entity's
    history, the labels and the lease."""
    found = service.log.events_by_id([item.event_id])
    event = found.row(0, named=True) if found.height else None
    fields = list(service.log.schema.fields)
    served = service.predictions.for_event(item.event_id)
    names = service.plan.names
    with_features = [p for p in served if len(p.features) == len(names)]
    keys = entity_keys(service.plan)
    return {
        "event": [("event_id", item.event_id), ("ts", when(int(event["ts"])))]
        + [(f, event[f]) for f in fields]
        if event
        else None,
        "served": served,
        "reasons": next((p.reasons for p in served if p.role == "champion"), []),
        "features": [(n, [p.features[i] for p in with_features]) for i, n in enumerate(names)]
        if with_features
        else [],
        "feature_roles": [p.role for p in with_features],
        "entity": _entity(keys, event),
        "history": history(service.log, service.predictions, item.event_id, keys),
        "history_fields": [f for f in fields if f not in keys],
        "own_labels": labels_of(service.log, [item.event_id]).get(item.event_id, []),
        "mine": item.status == "leased" and item.reviewer == me,
        "lease": _lease(item, me, now),
    }


def _entity(keys: tuple[str, ...], event: dict[str, Any] | None) -> str:
    if not keys:
        return "the entity (the feature set aggregates over no key)"
    if event is None:
        return ", ".join(keys)
    return ", ".join(f"{k} {event[k]}" for k in keys)


def _lease(item: ReviewItem, me: str, now: int) -> str:
    if item.status == "leased" and item.lease_until is not None:
        who = "you" if item.reviewer == me else item.reviewer
        left = age(item.lease_until - now)
        return f"Claimed by {who} until {when(item.lease_until)} ({left} left)."
    if item.status == "closed":
        return f"Closed: {item.verdict} by {item.reviewer}."
    if item.status == "expired":
        return "Expired: its event was labelled by another source before a review."
    if item.labelled_by:
        return (
            f"Open: labelled by {', '.join(item.labelled_by)}; it waits for a second reviewer "
            "(the overlap sample that measures agreement)."
        )
    return "Open: nobody holds it. Claim it to label it."


def _agreement(found: Any) -> str:
    """Reviewer agreement on the overlap sample, if the queue's stats report it."""
    if not isinstance(found, dict) or not found.get("items"):
        return "no item reviewed twice yet"
    rate = found.get("rate")
    share = f" ({rate:.0%})" if isinstance(rate, int | float) else ""
    return f"{found.get('agreeing', 0)} of {found['items']} items reviewed twice agree{share}"
