"""The dashboard's web application: one page, its assets, and a JSON state it polls.

    GET  /                 the page (static/index.html with this server's CSRF token)
    GET  /static/...       its script and style, shipped in the package (works offline)
    GET  /api/state        everything the five tabs draw (Source.state), once a second
    GET  /api/plan         the latest plan's SVG and which tasks each box holds
    GET  /metrics          Prometheus text
    POST /api/cancel       {"task": id}: cancel a task of the latest plan (CSRF-checked)
    POST /api/kill-actor   {"actor": id}: kill a live actor for good (CSRF-checked)

Built on Starlette (served by uvicorn): a small, typed, well-kept ASGI toolkit whose
routes, static files and test client are all we need; aiohttp would do as well but brings
its own server and client we would not use. Sync endpoints run in Starlette's thread
pool, so a slow head never blocks the event loop. Every route sits behind guard.Guard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from plait.dashboard import view
from plait.dashboard.guard import Guard, csrf_of
from plait.dashboard.metrics import CONTENT_TYPE, metrics_text
from plait.dashboard.source import Source
from plait.errors import PlaitError

STATIC = Path(__file__).parent / "static"


def make_app(source: Source, token: str, host: str, port: int) -> Starlette:
    """The application for one head (``source``), whose ``cancel`` and ``kill_actor`` are
    the only actions: neither runs code, and the guard lets only the page's POSTs reach
    them."""
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "{{csrf}}", csrf_of(token))

    def index(request: Request) -> Response:
        return HTMLResponse(page)

    def state(request: Request) -> Response:
        return _answer(source.state)

    def plan(request: Request) -> Response:
        return _answer(source.plan_drawing)

    def metrics(request: Request) -> Response:
        def text() -> str:
            snapshot = source.latest()
            return metrics_text(snapshot, view.progress_rows(snapshot))
        return _answer(text, lambda body: PlainTextResponse(body, media_type=CONTENT_TYPE))

    async def cancel_task(request: Request) -> Response:
        return await _act(request, "task", source.cancel, "cancelled",
                          "no running task {} in the latest plan")

    async def kill_actor(request: Request) -> Response:
        return await _act(request, "actor", source.kill_actor, "killed",
                          "no live actor {} in this cluster")

    routes = [Route("/", index), Route("/api/state", state), Route("/api/plan", plan),
              Route("/metrics", metrics), Route("/api/cancel", cancel_task, methods=["POST"]),
              Route("/api/kill-actor", kill_actor, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes,
                     middleware=[Middleware(Guard, token=token, host=host, port=port)])


async def _act(request: Request, key: str, act: Callable[[str], bool], done: str,
               missing: str) -> Response:
    """One action on ``{key: id}``: 400 for a malformed body, 404 if ``act`` finds nothing
    to act on, else ``{done: id}``."""
    try:
        subject = str(json.loads(await request.body())[key])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": f'send {{"{key}": "<{key} id>"}}'}, 400)
    if not act(subject):
        return JSONResponse({"error": missing.format(subject)}, 404)
    return JSONResponse({done: subject})


def _answer(make: Callable[[], object], respond: Callable[[object], Response] = JSONResponse
            ) -> Response:
    """The value ``make`` returns, or a 503 saying why the head did not give it."""
    try:
        return respond(make())
    except PlaitError as error:
        return JSONResponse({"error": f"the plait head did not answer: {error}"}, 503)
