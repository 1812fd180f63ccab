"""Who may call what, and how often.

Roles of a route:
  public     no token (``/health``)
  admin      the server's own token (``SHOAL_TOKEN``): issuing and revoking tokens
  client     the admin token or an issued client token: deploy, create and stop apps, everything else
  caller     a client token, or a container token: what code running in a container may do (call functions,
             read results and blobs), but not deploy, create or stop apps
  container  the container token the server gave its containers

With no token configured the server serves loopback only and makes a *local token* at each start, published in
``$SHOAL_HOME/servers/`` (readable by this user only, invisible to sandboxed containers): clients of this home
present it as they would a configured token. Issuing tokens needs a configured token: an issued token is bound to
the admin token it was issued under, so it stops working when the server runs with another token (or none).
Container routes always need the container token. Client routes are rate-limited per token (or per address
when open): a token bucket of ``rate`` requests/s with a burst of ``2 * rate``; over it: 429 + Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from .errors import Conflict, Invalid
from .store.base import TokensPart


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


@dataclass
class _Bucket:
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
    def __init__(self, admin_token: str | None, container_token: str, registry: TokenRegistry) -> None:
        self.admin_token = admin_token
        self.container_token = container_token
        self.registry = registry

    def identify(self, role: str, presented: str, address: str) -> str:
        """The identity a request acts as under ``role``; raises Denied."""
        if role == "public":
            return "public"
        is_container = bool(presented) and hmac.compare_digest(presented, self.container_token)
        if role == "container":
            if not is_container:
                raise Denied(401, "this route needs the container token the server gave its containers")
            return "container"
        if role == "caller" and is_container:
            return "container"
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
