"""Who may call what, and how often.

Roles of a route:
  public     no token (``/health``)
  admin      the server's own token (``SHOAL_TOKEN``): issuing and revoking tokens
  client     the admin token or an issued client token: deploy, create and stop apps, everything else
  caller     a client token, or a container token: what code running in a container may do (call functions,
             read results and blobs), but not deploy, create or stop apps
  container  a container's own token, on the routes of that container only (``/containers/{its id}/...``)

Each container gets its own token, ``shc-<container id>.<mac>``: an HMAC of its id under a key the server makes at
each start (``ContainerKeys``). A container's token names the container it was minted for, so container routes
admit it for that container only: a container can read only its own spec (and secrets), lease and report only its
own inputs. Nothing is stored per container; a server restart (which stops every container) ends every token.

With no token configured the server serves loopback only and makes a *local token* at each start, published in
``$SHOAL_HOME/servers/`` (readable by this user only, invisible to sandboxed containers): clients of this home
present it as they would a configured token. Issuing tokens needs a configured token: an issued token is bound to
the admin token it was issued under, so it stops working when the server runs with another token (or none).
Container routes always need the token of the container in the path. Client routes are rate-limited per token
(or per address when open): a token bucket of ``rate`` requests/s with a burst of ``2 * rate``; over it: 429 +
Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import msgspec

from .errors import Conflict, Invalid
from .store.base import TokensPart

CONTAINER_PREFIX = "shc-"


class ContainerKeys:
    """Mints and checks per-container tokens (see the module's docstring)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, container_id: str) -> str:
        return hmac.new(self._key, container_id.encode(), "sha256").hexdigest()[:40]

    def mint(self, container_id: str) -> str:
        """The token of ``container_id``."""
        return f"{CONTAINER_PREFIX}{container_id}.{self._mac(container_id)}"

    def web_key(self, container_id: str) -> str:
        """What the gateway presents to a web function's container (``x-shoal-gateway-key``), which answers
        nobody else: its port may be reachable from its node's network, or by any process of this machine."""
        return hmac.new(self._key, f"web:{container_id}".encode(), "sha256").hexdigest()[:40]

    def holder(self, presented: str) -> str | None:
        """The container a presented token was minted for, or None when it is not a valid container token."""
        if not presented.startswith(CONTAINER_PREFIX):
            return None
        container_id, _, mac = presented[len(CONTAINER_PREFIX) :].rpartition(".")
        if not container_id or not hmac.compare_digest(mac, self._mac(container_id)):
            return None
        return container_id


def container_of(identity: str) -> str | None:
    """The container an identity of :meth:`Authorizer.identify` acts for, or None for people and clients."""
    return identity.removeprefix("container:") if identity.startswith("container:") else None


class Denied(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRegistry:
    """Issued client tokens, stored hashed (the plain token is shown once, at creation)."""

    def __init__(self, rows: TokensPart, admin_token: str | None) -> None:
        self.rows = rows
        self.issuer = token_hash(admin_token) if admin_token else ""

    def create(self, name: str) -> str:
        if not self.issuer:
            raise Conflict("issuing tokens needs a server started with its own token (--token or SHOAL_TOKEN)")
        if not name or len(name) > 64:
            raise Invalid("a token name is 1 to 64 characters")
        token = "sht-" + secrets.token_urlsafe(24)
        self.rows.add(name, token_hash(token), self.issuer)
        return token

    def revoke(self, name: str) -> None:
        self.rows.revoke(name)

    def list(self) -> list[dict[str, object]]:
        return self.rows.list()

    def lookup(self, token: str) -> str | None:
        """The name of a valid (not revoked) issued token."""
        return self.rows.valid(token_hash(token), self.issuer) if self.issuer else None


class _Bucket(msgspec.Struct):
    tokens: float
    stamp: float


class RateLimiter:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = 2 * rate
        self.buckets: dict[str, _Bucket] = {}

    def check(self, key: str) -> float | None:
        """None when allowed, else the seconds to wait."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        bucket = self.buckets.setdefault(key, _Bucket(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) / self.rate


class Authorizer:
    def __init__(self, admin_token: str | None, containers: ContainerKeys, registry: TokenRegistry) -> None:
        self.admin_token = admin_token
        self.containers = containers
        self.registry = registry

    def identify(self, role: str, presented: str, address: str, container_id: str | None = None) -> str:
        """The identity a request acts as under ``role`` (``container:<id>`` for a container); raises Denied.

        ``container_id`` is the container a container route is about: only that container's token is admitted.
        """
        if role == "public":
            return "public"
        holder = self.containers.holder(presented) if presented else None
        is_container = holder is not None
        if role == "container":
            if holder is None:
                raise Denied(401, "this route needs the token the server gave this container")
            if container_id is not None and holder != container_id:
                raise Denied(403, "a container may act only for itself: this token belongs to another container")
            return f"container:{holder}"
        if role == "caller" and is_container:
            return f"container:{holder}"
        if not self.admin_token:
            if is_container:
                raise Denied(403, "a container token may call functions, not deploy, create or stop apps")
            return f"address:{address}"
        if presented and hmac.compare_digest(presented, self.admin_token):
            return "admin"
        if role != "admin" and presented:
            name = self.registry.lookup(presented)
            if name is not None:
                return f"token:{name}"
        if is_container:
            raise Denied(403, "a container token may call functions, not deploy, create or stop apps")
        if role == "admin":
            raise Denied(401, "only the server's own token (SHOAL_TOKEN) can manage tokens")
        raise Denied(401, "missing, wrong or revoked token: set SHOAL_TOKEN to a token of this server")
