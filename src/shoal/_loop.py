"""Run a server's event loop on uvloop where it is installed (``uvicorn[standard]`` brings it on Linux).

uvloop's socket I/O costs about half of the stdlib loop's; the control plane (API and gateway) and a web
container's app server are I/O-bound, so they run on it. Without uvloop (another platform, a slim image)
the stdlib loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on a uvloop loop when uvloop can be imported."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
