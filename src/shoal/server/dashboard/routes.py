"""The dashboard's HTTP routes: server-rendered pages (Jinja2) under ``/dashboard``, refreshed in place by a small
script that re-reads the page every 700 ms (``static/dashboard.js``), and two actions (cancel a call, stop a
container). Access rules are in ``access.py``."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ...protocol.routes import DASHBOARD
from .. import clock
from ..auth import Denied, RateLimiter
from ..control import ControlPlane
from ..core.records import shown_tag
from ..errors import RequestError
from . import pages
from .access import COOKIE, Access, NeedsLogin, Visitor

log = logging.getLogger("shoal.server")
if TYPE_CHECKING:
    import jinja2

PREFIX = DASHBOARD
STATIC = {"dashboard.js": "text/javascript", "style.css": "text/css"}
PageHandler = Callable[[Request, Visitor], Awaitable[Response]]


def _environment() -> jinja2.Environment:
    import jinja2  # on the first page: a server that nobody browses does not import it (start-up time)

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("shoal.server.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, ago=_ago, secs=_secs, num=_num, pct=lambda x: f"{x:.1f}", shown=shown_tag)
    env.globals.update(prefix=PREFIX, quote=lambda s: quote(str(s), safe=""))
    return env


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _ago(ts: float | None) -> str:
    if not ts:
        return "—"
    return _secs(max(0.0, clock.now() - ts), coarse=True) + " ago"


def _secs(value: float | None, coarse: bool = False) -> str:
    """A duration for people: 850 µs, 12.3 ms, 4.2 s, 3 min 5 s, 2 h 10 min."""
    if value is None:
        return "—"
    if value < 0.001 and not coarse:
        return f"{value * 1e6:.0f} µs"
    if value < 1 and not coarse:
        return f"{value * 1000:.1f} ms"
    if value < 60:
        return f"{value:.1f} s" if not coarse else f"{value:.0f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 or float(value).is_integer() else f"{value:,.1f}"


class Dashboard:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.access = Access(plane.authorizer, plane.config.client_token, plane.config.url)
        self._templates: jinja2.Environment | None = None
        self.login_limiter = RateLimiter(1.0)  # a token guessed at most about once a second per address

    def render(self, template: str, visitor: Visitor | None, status: int = 200, **context: Any) -> HTMLResponse:
        if self._templates is None:
            self._templates = _environment()
        html = self._templates.get_template(template).render(
            visitor=visitor,
            logged_in=True,
            open_server=self.access.open,
            trouble=self.plane.backend.trouble(),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def page(self, handler: PageHandler, action: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """Admit the request (host, visitor, and for actions the form key and origin), then answer it."""

        async def endpoint(request: Request) -> Response:
            if not self.access.check_host(request):
                return Response("unknown host: open the dashboard at the server's own address", 421)
            try:
                visitor = self.access.visitor(request)
                if action:
                    form = await _form(request)
                    self.access.check_action(request, visitor, form.get("form_key", ""))
                return await handler(request, visitor)
            except NeedsLogin:
                if action:
                    return Response("log in first", 401)
                if "token" in request.query_params:  # a link the SDK or CLI printed: log in, and drop the token
                    return self._login_and_go(request, request.query_params["token"], request.url.path)
                return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", 303)
            except Denied as exc:
                return self.render("error.html", None, exc.status, message=exc.message)
            except RequestError as exc:
                return self.render("error.html", None, exc.status, message=str(exc))

        return endpoint

    # ---- login ----------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        target = _local_path(request.query_params.get("next"))
        if "token" in request.query_params:
            return self._login_and_go(request, request.query_params["token"], target)
        return self.render("login.html", None, next=_local_path(request.query_params.get("next")), error=None)

    async def login(self, request: Request) -> Response:
        try:
            form = await _form(request)
        except Denied as exc:
            return self.render("error.html", None, exc.status, message=exc.message)
        target = _local_path(form.get("next", ""))
        return self._login_and_go(request, form.get("token", ""), target)

    def _login_and_go(self, request: Request, token: str, target: str) -> Response:
        """A session for a valid token, and on to ``target``; the login page again otherwise."""
        address = request.client.host if request.client else ""
        if self.login_limiter.check("login:" + address) is not None:
            return self.render("login.html", None, 429, next=target, error="Too many attempts: wait a second.")
        try:
            session = self.access.login(token, address)
        except Denied:
            return self.render("login.html", None, 401, next=target, error="That token is not valid here.")
        answer = RedirectResponse(target, 303)
        answer.set_cookie(COOKIE, session, httponly=True, samesite="strict", path="/",
                          secure=request.url.scheme == "https")  # fmt: skip
        return answer

    async def logout(self, request: Request, visitor: Visitor) -> Response:
        self.access.logout(request)
        answer = RedirectResponse(f"{PREFIX}/login", 303)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    # ---- pages ----------------------------------------------------------------------------------

    async def apps(self, request: Request, visitor: Visitor) -> Response:
        return self.render("apps.html", visitor, **pages.apps(self.plane))

    async def app(self, request: Request, visitor: Visitor) -> Response:
        return self.render("app.html", visitor, **pages.app(self.plane, request.path_params["app_id"]))

    async def call(self, request: Request, visitor: Visitor) -> Response:
        index = request.query_params.get("input", "").strip()
        if index.isdigit():  # the "go to input" box
            url = f"{PREFIX}/calls/{request.path_params['call_id']}/inputs/{index}"
            return RedirectResponse(url, 303)
        return self.render("call.html", visitor, **pages.call(self.plane, request.path_params["call_id"]))

    async def input(self, request: Request, visitor: Visitor) -> Response:
        context = pages.input_page(self.plane, request.path_params["call_id"], request.path_params["index"])
        return self.render("input.html", visitor, **context)

    async def containers(self, request: Request, visitor: Visitor) -> Response:
        context = pages.containers(self.plane, request.query_params.get("all", "0") == "1")
        return self.render("containers.html", visitor, **context)

    async def container(self, request: Request, visitor: Visitor) -> Response:
        context = pages.container(self.plane, request.path_params["container_id"])
        return self.render("container.html", visitor, **context)

    async def logs(self, request: Request, visitor: Visitor) -> Response:
        return self.render("logs.html", visitor, **pages.logs(self.plane, dict(request.query_params)))

    async def storage(self, request: Request, visitor: Visitor) -> Response:
        return self.render("storage.html", visitor, **pages.storage(self.plane))

    async def volume(self, request: Request, visitor: Visitor) -> Response:
        context = pages.volume(self.plane, request.path_params["name"], request.query_params.get("path", ""))
        return self.render("volume.html", visitor, **context)

    async def kv_object(self, request: Request, visitor: Visitor) -> Response:
        context = pages.kv_object(self.plane, request.path_params["kind"], request.path_params["object_id"])
        return self.render("kv.html", visitor, **context)

    # ---- actions --------------------------------------------------------------------------------

    async def cancel_call(self, request: Request, visitor: Visitor) -> Response:
        call_id = request.path_params["call_id"]
        pages.call(self.plane, call_id)  # 404 for an unknown call
        log.info("dashboard: %s cancels %s", visitor.identity, call_id)
        await self.plane.cancel_call(call_id, False, "the call was cancelled from the dashboard")
        return RedirectResponse(f"{PREFIX}/calls/{call_id}", 303)

    async def retry_call(self, request: Request, visitor: Visitor) -> Response:
        call_id = request.path_params["call_id"]
        pages.call(self.plane, call_id)  # 404 for an unknown call
        log.info("dashboard: %s retries the failed inputs of %s", visitor.identity, call_id)
        self.plane.retry_call(call_id, ["FAILURE", "CRASHED", "INIT_FAILED"])
        return RedirectResponse(f"{PREFIX}/calls/{call_id}", 303)

    async def stop_container(self, request: Request, visitor: Visitor) -> Response:
        container_id = request.path_params["container_id"]
        log.info("dashboard: %s stops %s", visitor.identity, container_id)
        await self.plane.stop_container(container_id)
        return RedirectResponse(f"{PREFIX}/containers/{container_id}", 303)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", 404)
        data = resources.files("shoal.server.dashboard").joinpath("static", name).read_bytes()
        return Response(data, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    def routes(self) -> list[Route]:
        p = self.page
        return [
            Route("/", lambda request: RedirectResponse(f"{PREFIX}/apps", 303)),
            Route(PREFIX, lambda request: RedirectResponse(f"{PREFIX}/apps", 303)),
            Route(PREFIX + "/", lambda request: RedirectResponse(f"{PREFIX}/apps", 303)),
            Route(PREFIX + "/static/{name}", self.static),
            Route(PREFIX + "/login", self.login_form, methods=["GET"]),
            Route(PREFIX + "/login", self.login, methods=["POST"]),
            Route(PREFIX + "/logout", p(self.logout, action=True), methods=["POST"]),
            Route(PREFIX + "/apps", p(self.apps)),
            Route(PREFIX + "/apps/{app_id}", p(self.app)),
            Route(PREFIX + "/calls/{call_id}", p(self.call)),
            Route(PREFIX + "/calls/{call_id}/inputs/{index:int}", p(self.input)),
            Route(PREFIX + "/calls/{call_id}/cancel", p(self.cancel_call, action=True), methods=["POST"]),
            Route(PREFIX + "/calls/{call_id}/retry", p(self.retry_call, action=True), methods=["POST"]),
            Route(PREFIX + "/containers", p(self.containers)),
            Route(PREFIX + "/containers/{container_id}", p(self.container)),
            Route(PREFIX + "/containers/{container_id}/stop", p(self.stop_container, action=True), methods=["POST"]),
            Route(PREFIX + "/logs", p(self.logs)),
            Route(PREFIX + "/storage", p(self.storage)),
            Route(PREFIX + "/volumes/{name}", p(self.volume)),
            Route(PREFIX + "/storage/{kind}/{object_id}", p(self.kv_object)),
        ]


# pages are never framed by other sites, never cached, and load scripts and styles from this server only
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
}


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form (the dashboard's only kind), parsed with the standard library."""
    body = await request.body()
    if len(body) > 16 * 1024:
        raise Denied(413, "the form is too large")
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


def _local_path(target: str | None) -> str:
    """Where to go after logging in: a path of this dashboard only (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/apps"


def dashboard_routes(plane: ControlPlane) -> list[Route]:
    """The dashboard's routes, mounted by ``server/routes`` next to the API."""
    return Dashboard(plane).routes()
