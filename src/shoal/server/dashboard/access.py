"""Who may see the dashboard and act from it: the API's rules, for a browser.

- A server without a configured token serves loopback only, and asks for its local token: containers share the
  machine's loopback, so an address says nothing of who asks. The links the SDK and CLI print carry it
  (``?token=``, as Jupyter's do), and a browser that follows one gets a session and is sent on without it.
- A server with a token asks for it once (the login page). The browser then holds a session cookie (HttpOnly,
  SameSite=Strict); the token stays in the server's memory, checked again on every request, so revoking an
  issued token ends its sessions at once. A restart of the server ends every session.
- Pages and actions need the ``client`` role, as the API's listings, cancel and stop do.
- Actions are POSTs carrying a per-session form key, and a foreign ``Origin`` is refused (no cross-site requests).
- On a server without a token, the ``Host`` header must name this server or a loopback name, so a DNS-rebinding
  page cannot read it.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request

from ..auth import Authorizer, Denied
from ..listen import is_loopback

COOKIE = "shoal_session"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


class NeedsLogin(Exception):
    """The request carries no valid session: show the login page."""


class Visitor(msgspec.Struct, frozen=True):
    identity: str  # as auth.Authorizer names it
    form_key: str  # what this visitor's action forms carry


class Access:
    def __init__(self, authorizer: Authorizer, configured_token: str | None, server_url: str) -> None:
        self.authorizer = authorizer
        self.open = configured_token is None  # loopback-only server: its local token logs in
        self.hosts = LOOPBACK_NAMES | {urlsplit(server_url).hostname or ""}
        self.sessions: dict[str, str] = {}  # session id -> the token it logged in with
        self._key = secrets.token_bytes(32)

    def check_host(self, request: Request) -> bool:
        """Whether the page was asked for under a name of this server. Only an open (loopback, no token) server
        checks: a page of another site that rebinds its name to 127.0.0.1 could read it otherwise. With a token,
        such a page has no session (the cookie belongs to the server's own name), and users may reach the
        server under any name (a DNS name, a proxy)."""
        if not self.open:
            return True
        host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        return host in self.hosts

    def visitor(self, request: Request) -> Visitor:
        """Who is asking (raises NeedsLogin, or Denied for a browser that may not see the dashboard at all)."""
        address = request.client.host if request.client else ""
        if self.open and not is_loopback(address):
            raise Denied(403, "this server serves loopback only")
        session = request.cookies.get(COOKIE, "")
        token = self.sessions.get(session)
        if token is None:
            raise NeedsLogin()
        try:
            identity = self.authorizer.identify("client", token, address)
        except Denied as exc:
            self.sessions.pop(session, None)
            raise NeedsLogin() from exc
        return Visitor(identity, self._form_key(session))

    def login(self, token: str, address: str) -> str:
        """A new session for a valid client token (raises Denied)."""
        self.authorizer.identify("client", token.strip(), address)
        session = secrets.token_urlsafe(32)
        self.sessions[session] = token.strip()
        return session

    def logout(self, request: Request) -> None:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)

    def check_action(self, request: Request, visitor: Visitor, form_key: str) -> None:
        """An action must come from this dashboard's own page (raises Denied)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise Denied(403, f"refused an action from another site ({origin})")
        if not hmac.compare_digest(form_key, visitor.form_key):
            raise Denied(403, "the form is out of date: reload the page and try again")

    def _form_key(self, session: str) -> str:
        return hmac.new(self._key, session.encode(), "sha256").hexdigest()[:32]
