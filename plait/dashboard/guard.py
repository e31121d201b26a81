"""Who may see the dashboard: safe by default, so that it cannot be the door Ray's was
(ShadowRay: jobs submitted to an open dashboard port).

- It binds loopback unless told otherwise, and then checks the Host header too, so a web
  page that rebinds its own DNS name to 127.0.0.1 is refused (DNS rebinding).
- Every request needs the token, a random secret printed in the URL (as Jupyter's): a
  ``?token=`` once, which the browser trades for an HttpOnly, SameSite=Strict cookie and a
  redirect to the same page without it (so it stays out of history and Referer); or an
  ``Authorization: Bearer`` header (Prometheus' ``bearer_token``). Without it: 403 and no
  data, whatever the path.
- It is read-only; the one action (cancel a task) is a POST that must also carry the CSRF
  token the page was given (``X-Plait-CSRF``, derived from the token) and come from the
  page's own origin. No request can run code: the head is only ever sent a Cancel.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from plait.executor.wire.security import is_loopback

REFUSED = ("403: this plait dashboard needs its token. Open the URL it printed when it "
           "started (the one ending in ?token=...).\n")
HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                      "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_of(token: str) -> str:
    """The CSRF token a page is given: derived from the secret, useless without the cookie."""
    return hmac.new(token.encode(), b"plait-dashboard-csrf", hashlib.sha256).hexdigest()[:32]


class Guard:
    """ASGI middleware in front of every route: Host, token (query, cookie or bearer),
    CSRF on POST, and the security headers on every answer."""

    def __init__(self, app: ASGIApp, token: str, host: str, port: int) -> None:
        self.app = app
        self.token = token
        self.csrf = csrf_of(token)
        self.cookie = f"plait-dashboard-{port}"          # cookies ignore ports: one each
        self.hosts = ({f"{host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"}
                      if is_loopback(host) else None)   # None: any Host (token still needed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            await self.headed(refusal)(scope, receive, send)
            return
        if self.matches(request.query_params.get("token")) and request.method == "GET" \
                and request.url.path != "/metrics":
            await self.headed(self.welcome(request))(scope, receive, send)
            return

        async def send_headed(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
            await send(message)

        await self.app(scope, receive, send_headed)

    def refusal(self, request: Request) -> Response | None:
        """Why this request gets nothing (a 403), or None."""
        if self.hosts is not None and request.headers.get("host") not in self.hosts:
            return PlainTextResponse("403: unknown Host header\n", 403)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not (self.matches(request.query_params.get("token"))
                or self.matches(request.cookies.get(self.cookie)) or self.matches(bearer)):
            return PlainTextResponse(REFUSED, 403)
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin", "")
            same = origin.split("://", 1)[-1] == request.headers.get("host")
            if not (same and hmac.compare_digest(request.headers.get("x-plait-csrf", ""),
                                                 self.csrf)):
                return PlainTextResponse("403: a change needs the page's CSRF token\n", 403)
        return None

    def matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def welcome(self, request: Request) -> Response:
        """The token in the URL: set the cookie, and send the browser to the URL without it."""
        query = urlencode([(k, v) for k, v in request.query_params.multi_items()
                           if k != "token"])
        response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict",
                            path="/")
        return response

    @staticmethod
    def headed(response: Response) -> Response:
        response.headers.update(HEADERS)
        return response
