"""Who may call what: bearer tokens and roles, decided for every request before its body is
read.

A route declares the roles it admits with ``Depends(requires("service"))``; ``admin`` may do
everything. :class:`Authenticator` (ASGI middleware) finds the route a request is for, and
before the route parses anything it answers 401 (no token, unknown or revoked token) or 403
(a role that may not), so a caller without a valid token learns nothing about the body it
sent. Routes without such a dependency (health, metrics, the docs) are public.

The decision is made per request against the token store, never cached: a token created or
revoked by ``minder tokens`` while the server runs counts from the next request. A server
started open (no tokens exist; loopback only) answers requests without a token as ``admin``
only while no token exists: once one is created, every request needs one.

(No ``from __future__ import annotations``: FastAPI reads the dependency's annotations.)
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.routing import Match

from modelminder.serving.envelope import error_response
from modelminder.serving.store import ServingStore, token_id

_SCOPE_KEY = "modelminder.role"
_CALLER_KEY = "modelminder.caller"
_bearer = HTTPBearer(auto_error=False, description="A token from `minder tokens create`.")


class _Requirement:
    """The dependency a route declares; it only hands the route the role the middleware
    admitted (and refuses, failing closed, if the middleware did not run)."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        self.roles = roles

    async def __call__(  # async: a sync dependency costs a thread hop per request
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        role = request.scope.get(_SCOPE_KEY)
        if role is None:
            raise HTTPException(401, "Missing bearer token (Authorization: Bearer ...).")
        return str(role)


def requires(*roles: str) -> Callable[..., Awaitable[str]]:
    """The dependency of a route that admits ``roles`` (and ``admin``)."""
    return _Requirement(roles)


def caller(request: Request) -> str:
    """Who made an admitted request, for the audit trail: the token's role and id (never
    the token itself), or the open server."""
    return str(request.scope.get(_CALLER_KEY, "unknown caller"))


def route_roles(app: FastAPI) -> dict[tuple[str, str], tuple[str, ...] | None]:
    """``(method, path) -> roles admitted`` for every route (None: public); the table the
    middleware enforces and the auth tests are generated from."""
    table: dict[tuple[str, str], tuple[str, ...] | None] = {}
    for route in app.router.routes:
        if not isinstance(route, APIRoute):
            continue
        roles = _roles_of(route)
        for method in route.methods or ():
            table[(method, route.path)] = roles
    return table


def _roles_of(route: APIRoute) -> tuple[str, ...] | None:
    for dep in route.dependant.dependencies:
        if isinstance(dep.call, _Requirement):
            return dep.call.roles
    return None


class Authenticator:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: Any, *, api: FastAPI, store: ServingStore, open_access: bool) -> None:
        self.app = app
        self.api = api
        self.store = store
        self.open_access = open_access
        self._routes: list[tuple[Any, tuple[str, ...] | None]] | None = None

    def _required(self, scope: Any) -> tuple[str, ...] | None:
        if self._routes is None:  # routes are all added before the first request
            self._routes = [
                (r, _roles_of(r) if isinstance(r, APIRoute) else None)
                for r in self.api.router.routes
            ]
        for route, roles in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return roles
        return None  # no such route, or another method: the router answers 404/405

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            roles = self._required(scope)
            if roles is not None:
                refusal = self.decide(scope, roles)
                if refusal is not None:
                    await refusal(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def decide(self, scope: Any, roles: tuple[str, ...]) -> Any:
        """Admit the request (its role stored in the scope; returns None) or the refusal."""
        header = _header(scope, b"authorization")
        if header is None or not header.startswith("Bearer "):
            if self.open_access and not self.store.has_tokens():
                scope[_SCOPE_KEY] = "admin"
                scope[_CALLER_KEY] = "open server (no tokens)"
                return None
            message = "Missing bearer token (Authorization: Bearer ...)."
            if self.open_access:
                message += " Tokens exist now, so every request needs one."
            return _unauthorized(message)
        token = header.removeprefix("Bearer ").strip()
        found = self.store.role_of(token)
        if found is None:
            return _unauthorized("Unknown or revoked token.")
        if found != "admin" and found not in roles:
            return error_response(
                403, "Forbidden", f"A {found!r} token cannot do this; it needs "
                f"{' or '.join(dict.fromkeys((*roles, 'admin')))}.",
            )  # fmt: skip
        scope[_SCOPE_KEY] = found
        scope[_CALLER_KEY] = f"{found} token {token_id(token)}"
        return None


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _unauthorized(message: str) -> Any:
    return error_response(401, "Unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
