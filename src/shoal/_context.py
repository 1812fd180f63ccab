"""Where code is running: on the client, or inside a container (and then for which input)."""

from __future__ import annotations

import contextvars

from .config import in_container

_current_input: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("shoal_input", default=None)


def is_local() -> bool:
    """True on the client, False inside a Shoal container."""
    return not in_container()


def current_input_id() -> str | None:
    """The id of the input being processed by this container (``in-...``), or None outside one."""
    from ._ids import input_id

    current = _current_input.get()
    return input_id(*current) if current else None


def current_function_call_id() -> str | None:
    """The id of the function call whose input is being processed (``fc-...``), or None outside one."""
    current = _current_input.get()
    return current[0] if current else None


def set_current_input(call_id: str | None, index: int = 0) -> contextvars.Token[tuple[str, int] | None]:
    return _current_input.set((call_id, index) if call_id else None)


_detached_apps: set[str] = set()


def set_detached(app_id: str, detached: bool) -> None:
    """Record whether this process runs ``app_id`` detached (its work must outlive this process)."""
    if detached:
        _detached_apps.add(app_id)
    else:
        _detached_apps.discard(app_id)


def is_detached(app_id: str | None) -> bool:
    """True when this process runs ``app_id`` detached: leaving must not cancel its calls."""
    return app_id is not None and app_id in _detached_apps
