"""The live view's web layer (Starlette): the page, its static files, the state as JSON and as
server-sent events, and one POST endpoint for the whitelisted actions.

Safety: every POST must carry the session token in the ``X-Token`` header (a cross-site form
cannot set a header, so another page in the teacher's browser cannot press our buttons). When
the server listens beyond loopback (``--host``), every request must carry the token too (the
URL printed at start has it as ``?token=``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from importlib import resources
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .broker_state import redis_job
from .lab import ACTIONS, Busy, Lab, UnknownAction

PUSH_EVERY_S = 0.33   # about 3 updates a second
STATIC = resources.files("benchmarks.live") / "static"


def build_app(lab: Lab, *, token_for_reads: bool = False, hosts: list[str] | None = None) -> Starlette:
    """The ASGI app over ``lab``. ``token_for_reads``: GETs need ``?token=`` as well (--host).
    ``hosts``: the Host headers accepted (default: loopback names only, so a page that rebinds
    its own DNS name to 127.0.0.1 cannot read the token)."""

    def same(given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), lab.token.encode())

    def allowed(request: Request) -> bool:
        if request.method == "POST":
            return same(request.headers.get("x-token"))
        return not token_for_reads or same(request.query_params.get("token"))

    def refuse() -> Response:
        return JSONResponse({"error": "missing or wrong token"}, status_code=403)

    async def index(request: Request) -> Response:
        if not allowed(request):
            return refuse()
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("__TOKEN__", lab.token))

    async def state(request: Request) -> Response:
        return JSONResponse(lab.snapshot()) if allowed(request) else refuse()

    async def events(request: Request) -> Response:
        if not allowed(request):
            return refuse()

        async def stream() -> AsyncIterator[str]:
            while not lab.stopping.is_set():
                if await request.is_disconnected():
                    return
                yield f"data: {json.dumps(lab.snapshot())}\n\n"
                await asyncio.sleep(PUSH_EVERY_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def action(request: Request) -> Response:
        if not allowed(request):
            return refuse()
        try:
            body: Any = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return JSONResponse({"error": 'the body must be {"action": NAME, ...}'}, status_code=400)
        name = body["action"]
        try:
            done = await asyncio.to_thread(lab.act, name, body)
        except UnknownAction:
            return JSONResponse({"error": f"unknown action {name!r}", "actions": sorted(ACTIONS)}, status_code=404)
        except Busy as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except PermissionError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # noqa: BLE001 - a broker error: said to the page, the server goes on
            return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=502)
        return JSONResponse({"done": done})

    async def job(request: Request) -> Response:
        if not allowed(request):
            return refuse()
        side = lab.sides.get(request.path_params["side"])
        if side is None or not hasattr(side.admin, "lane_keys"):
            return JSONResponse({"error": "job keys are shown for the BullMQ-style Redis side only"},
                                status_code=404)
        return JSONResponse(await asyncio.to_thread(redis_job, side.admin))

    allowed_hosts = hosts or ["127.0.0.1", "localhost", "[::1]", "::1", "testserver"]
    return Starlette(middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)], routes=[
        Route("/", index),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/action", action, methods=["POST"]),
        Route("/api/job/{side}", job),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ])
