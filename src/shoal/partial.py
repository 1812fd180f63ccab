"""Decorators that mark functions and methods: ``method``, ``enter``, ``exit``, ``batched``, ``concurrent``, the web
ones (``fastapi_endpoint``, ``asgi_app``, ``wsgi_app``, ``web_server``), and class ``parameter``s. They only record
intent as attributes; ``@app.function``/``@app.cls`` read them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from .exception import InvalidError

F = TypeVar("F", bound=Callable[..., Any])

MAX_BATCH_SIZE = 1000
MAX_WAIT_MS = 10 * 60 * 1000
PARAMETER_TYPES = (str, int, bool, bytes)
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class BatchConfig(msgspec.Struct, frozen=True):
    max_batch_size: int
    wait_ms: int


class ConcurrencyConfig(msgspec.Struct, frozen=True):
    max_inputs: int
    target_inputs: int


def _flag(f: F | None, attribute: str) -> Any:
    """Set ``attribute`` on the function; works as ``@decorator`` and ``@decorator()``."""

    def mark(g: F) -> F:
        setattr(g, attribute, True)
        return g

    return mark(f) if f is not None else mark


def method(_f: F | None = None, *, is_generator: bool | None = None) -> Any:
    """Mark a method of an ``@app.cls`` class as callable remotely (``Model().predict.remote(x)``; a generator
    method with ``.remote_gen``). ``is_generator`` is accepted for Modal's sake: Shoal sees it from the method."""

    return _flag(_f, "_shoal_method")


def enter(_f: F | None = None, *, snap: bool = False) -> Any:
    """Run this method once per container, before its first input (several run in definition order)."""
    if snap:
        raise InvalidError("memory snapshots (enter(snap=True)) are not supported")

    return _flag(_f, "_shoal_enter")


def exit(_f: F | None = None) -> Any:  # noqa: A001 - Modal's name
    """Run this method when the container stops (scale-down, app stop, SIGTERM), within a grace period."""
    return _flag(_f, "_shoal_exit")


def batched(*, max_batch_size: int, wait_ms: int) -> Callable[[F], F]:
    """Dynamic batching: callers send single inputs; the function receives lists of up to ``max_batch_size``
    (sent when full, or ``wait_ms`` after the first input arrived) and returns a list of the same length.

    Raises:
        InvalidError: 1 <= max_batch_size <= 1000 and 0 <= wait_ms < 600000 do not hold.
    """
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
        raise InvalidError("max_batch_size must be an integer")
    if not 1 <= max_batch_size <= MAX_BATCH_SIZE:
        raise InvalidError(f"max_batch_size must be between 1 and {MAX_BATCH_SIZE}, got {max_batch_size}")
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int) or not 0 <= wait_ms < MAX_WAIT_MS:
        raise InvalidError(f"wait_ms must be an integer from 0 to {MAX_WAIT_MS - 1}, got {wait_ms!r}")

    def mark(f: F) -> F:
        f._shoal_batched = BatchConfig(max_batch_size, wait_ms)  # type: ignore[attr-defined]
        return f

    return mark


def concurrent(*, max_inputs: int, target_inputs: int | None = None) -> Callable[[F], F]:
    """Let one container run up to ``max_inputs`` inputs at once (async functions as tasks, sync ones on
    threads); the autoscaler aims at ``target_inputs`` per container (default ``max_inputs``).
    """
    if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
        raise InvalidError(f"max_inputs must be a positive integer, got {max_inputs!r}")
    target = max_inputs if target_inputs is None else target_inputs
    if isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= max_inputs:
        raise InvalidError(f"target_inputs must be between 1 and max_inputs={max_inputs}, got {target_inputs!r}")

    def mark(f: F) -> F:
        f._shoal_concurrency = ConcurrencyConfig(max_inputs, target)  # type: ignore[attr-defined]
        return f

    return mark


class WebConfig(msgspec.Struct, frozen=True):
    """How a function serves HTTP (set by ``fastapi_endpoint``, ``asgi_app``, ``wsgi_app`` or ``web_server``)."""

    kind: str  # fastapi, asgi, wsgi, server
    method: str = "GET"  # fastapi_endpoint only
    label: str | None = None
    docs: bool = False
    requires_proxy_auth: bool = False
    port: int | None = None  # web_server only
    startup_timeout: float = 5.0


def _web(config: WebConfig) -> Callable[[F], F]:
    if config.label is not None and not _LABEL.fullmatch(config.label):
        raise InvalidError(f"label={config.label!r}: use lowercase letters, digits and '-' (at most 63)")

    def mark(f: F) -> F:
        f._shoal_web = config  # type: ignore[attr-defined]
        return f

    return mark


def fastapi_endpoint(
    _f: F | None = None, *, method: str = "GET", label: str | None = None, docs: bool = False,
    requires_proxy_auth: bool = False, custom_domains: Any = None,
) -> Any:  # fmt: skip
    """Serve the function at its own URL as a FastAPI route (query parameters and JSON bodies as FastAPI reads
    them); ``docs=True`` adds ``/docs``. Needs ``fastapi`` where the container runs."""
    if custom_domains:
        raise InvalidError("custom_domains= is not supported by Shoal: endpoints are served by the Shoal server")
    mark = _web(WebConfig("fastapi", method.upper(), label, docs, requires_proxy_auth))
    return mark(_f) if _f is not None else mark


def web_endpoint(_f: F | None = None, **kwargs: Any) -> Any:
    """Deprecated (Modal's old name): use ``fastapi_endpoint``."""
    from .exception import deprecation_warning

    deprecation_warning("web_endpoint is deprecated: use fastapi_endpoint", 3)
    return fastapi_endpoint(_f, **kwargs)


def asgi_app(_f: F | None = None, *, label: str | None = None, requires_proxy_auth: bool = False, **kw: Any) -> Any:
    """The function returns an ASGI app (FastAPI, Starlette, ...), served at its own URL; built once per container
    (after ``@enter``), with its lifespan run per container."""
    mark = _web(WebConfig("asgi", label=label, requires_proxy_auth=requires_proxy_auth))
    return mark(_f) if _f is not None else mark


def wsgi_app(_f: F | None = None, *, label: str | None = None, requires_proxy_auth: bool = False, **kw: Any) -> Any:
    """The function returns a WSGI app (Flask, Django, ...), served at its own URL."""
    mark = _web(WebConfig("wsgi", label=label, requires_proxy_auth=requires_proxy_auth))
    return mark(_f) if _f is not None else mark


def web_server(
    port: int, *, startup_timeout: float = 5.0, label: str | None = None, requires_proxy_auth: bool = False,
    **kw: Any,
) -> Callable[[F], F]:  # fmt: skip
    """The function starts an HTTP server on ``port`` inside the container; its URL reaches that server once it
    accepts connections (within ``startup_timeout`` seconds)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidError(f"web_server(port={port!r}): a TCP port number is needed")
    return _web(WebConfig("server", label=label, requires_proxy_auth=requires_proxy_auth, port=port,
                          startup_timeout=float(startup_timeout)))  # fmt: skip


class _Parameter:
    """What ``shoal.parameter()`` returns; replaced by the value on instances."""

    def __init__(self, default: Any, init: bool) -> None:
        self.default = default
        self.init = init

    def __repr__(self) -> str:
        return f"parameter(default={self.default!r})"


_NO_DEFAULT = object()


def parameter(*, default: Any = _NO_DEFAULT, init: bool = True) -> Any:
    """Declare a class parameter (``size: str = shoal.parameter(default="small")``): instances with different
    values (``Model(size="large")``) get their own containers. Types: str, int, bool, bytes.
    """
    if default is not _NO_DEFAULT and not isinstance(default, PARAMETER_TYPES):
        raise InvalidError(f"parameter defaults must be str, int, bool or bytes, not {type(default).__name__}")
    return _Parameter(default, init)


def has_default(p: _Parameter) -> bool:
    return p.default is not _NO_DEFAULT
