"""The live view's web layer (Starlette): the page, its static files, the state as JSON and as
server-sent events, and one POST endpoint for the whitelisted actions.

Safety, on every request (the page, its static files and the API alike):

* A token: the teacher's (``lab.token``) may read and act; the students' read-only one
  (``lab.read_token``) may read (page, static files, state, events, job keys) and its POSTs get
  403; its page has no buttons. GETs carry it as ``?token=`` (the URLs printed at start have it)
  or in the ``X-Token`` header; POSTs only in ``X-Token`` (a cross-site form cannot set a header,
  so another page in the teacher's browser cannot press our buttons). Tokens are compared in
  constant time, both of them every time.
* The Host header must be a loopback name (a page that rebinds its own DNS name to 127.0.0.1 is
  refused), or anything when listening beyond loopback (``hosts=["*"]``, where the token guards).
  ``testserver`` (Starlette's test client) is accepted only when the app is built with
  ``testing=True``.
* Every response carries ``Content-Security-Policy`` (only our own files; ``frame-ancestors
  'none'``), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
  no-referrer`` (the token is in the URL) and ``Cache-Control: no-store``.
* POST bodies: at most ``MAX_BODY`` bytes of JSON, an object with an ``action`` name; every
  error is a JSON ``{"error": message}`` with its status (400 for a bad body or parameter,
  403, 404 for an unknown action, 409 while another action runs, 413, 502 when a broker failed),
  never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from importlib import resources
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .broker_state import redis_job
from .lab import ACTIONS, ActionError, Lab, UnknownAction

PUSH_EVERY_S = 0.33   # about 3 updates a second
MAX_BODY = 64 * 1024  # an action's JSON is a few hundred bytes
STATIC = resources.files("benchmarks.live") / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
TEST_HOST = "testserver"
TEACHER, VIEWER = "teacher", "viewer"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
TEACHER_ONLY = re.compile(r"<!--teacher-->.*?<!--/teacher-->", re.S)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response, errors included (the outermost layer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class TokenGate:
    """Lets a request through only with a valid token, and records its role in
    ``scope["state"]["role"]``: GET/HEAD need either token, anything else the teacher's in
    ``X-Token``."""

    def __init__(self, app: ASGIApp, lab: Lab) -> None:
        self.app, self.lab = app, lab

    def role(self, given: str | None) -> str | None:
        data = (given or "").encode()
        teacher = secrets.compare_digest(data, self.lab.token.encode())
        viewer = secrets.compare_digest(data, self.lab.read_token.encode())   # both, every time
        return TEACHER if given and teacher else VIEWER if given and viewer else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("x-token")
        if request.method in ("GET", "HEAD"):
            role = self.role(header if header is not None else request.query_params.get("token"))
            refusal = None if role else "missing or wrong token: open the URL printed at start"
        else:
            role = self.role(header)
            refusal = None if role == TEACHER else (
                "read-only link: actions need the teacher's link" if role == VIEWER
                else "missing or wrong token (X-Token header)")
        if refusal is not None:
            await JSONResponse({"error": refusal}, status_code=403)(scope, receive, send)
            return
        scope.setdefault("state", {})["role"] = role
        await self.app(scope, receive, send)


def _error(message: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def build_app(lab: Lab, *, hosts: list[str] | None = None, testing: bool = False) -> Starlette:
    """The ASGI app over ``lab``. ``hosts``: the Host headers accepted (default: loopback names
    only; ``["*"]`` when listening beyond loopback). ``testing``: also accept ``testserver``, the
    Host of Starlette's test client (tests only: never in ``brokerbench live``)."""

    def page(request: Request) -> str:
        role = request.scope["state"]["role"]
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        if role != TEACHER:
            html = TEACHER_ONLY.sub("", html)
        token = lab.token if role == TEACHER else lab.read_token
        return html.replace("__TOKEN__", token).replace("__ROLE__", role)

    async def index(request: Request) -> Response:
        return HTMLResponse(page(request))

    async def state(request: Request) -> Response:
        return JSONResponse(lab.snapshot())

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            while not lab.stopping.is_set():
                if await request.is_disconnected():
                    return
                yield f"data: {json.dumps(lab.snapshot())}\n\n"
                await asyncio.sleep(PUSH_EVERY_S)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def action(request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY:
                return _error(f"the body is too large (at most {MAX_BODY} bytes)", 413)
        try:
            body: Any = json.loads(raw)
        except RecursionError:
            return _error("the body is nested too deeply to be an action", 400)
        except ValueError as exc:   # not JSON, or not UTF-8
            return _error(f"the body must be JSON: {str(exc)[:120]}", 400)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return _error('the body must be a JSON object {"action": NAME, ...}', 400)
        try:
            done = await asyncio.to_thread(lab.act, body["action"], body)
        except UnknownAction as exc:
            return _error(str(exc), exc.status, actions=sorted(ACTIONS))
        except ActionError as exc:
            return _error(str(exc), exc.status)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the page; the server goes on
            return _error(f"{type(exc).__name__}: {str(exc)[:300]}", 500)
        return JSONResponse({"done": done})

    async def job(request: Request) -> Response:
        side = lab.sides.get(request.path_params["side"])
        if side is None or not hasattr(side.admin, "lane_keys"):
            return _error("job keys are shown for the BullMQ-style Redis side only", 404)
        return JSONResponse(await asyncio.to_thread(redis_job, side.admin))

    allowed_hosts = list(hosts or LOOPBACK_HOSTS) + ([TEST_HOST] if testing else [])
    return Starlette(middleware=[
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts),
        Middleware(TokenGate, lab=lab),
    ], routes=[
        Route("/", index),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/action", action, methods=["POST"]),
        Route("/api/job/{side}", job),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ])
