"""The control plane's HTTP API (one small router per noun) and its dashboard, assembled into one Starlette app.

Routes translate HTTP to calls on :class:`~shoal.server.control.ControlPlane`; admission and the translation of
errors to answers live in ``http.py``, route templates in ``shoal.protocol.routes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.types import ASGIApp

from ..control import ControlPlane
from ..dashboard.routes import dashboard_routes
from . import admin, apps, calls, containers, kv, volumes
from .hot import HotRoutes
from .http import Router, merge_by_path

NOUNS = (admin, apps, calls, containers, kv, volumes)


def create_app(plane: ControlPlane) -> ASGIApp:
    """Build the ASGI app serving ``plane`` (it starts and stops the plane with the app's lifespan)."""
    router = Router(plane)
    for noun in NOUNS:
        noun.add_routes(router)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await plane.start()
        yield
        await plane.stop()

    app = Starlette(routes=merge_by_path(router.routes) + dashboard_routes(plane), lifespan=lifespan)
    return HotRoutes(app, router)  # the containers' exchanges and beats skip Starlette's stack
